"""Safe checkpoint loading with MMEngine 0.10.7 under torch >= 2.6.

Torch's ``torch.load`` defaults to the safe ``weights_only=True`` unpickler,
which MMEngine 0.10.7 uses for local files; MMEngine's own training
checkpoints do not pass it (numpy arrays and statistics functions inside
``HistoryBuffer``). ``install()`` (run by ``import grc_mmdet``) makes our
checkpoints safe to load instead of loosening the loader:

1. Checkpoints we write hold no numpy objects and no functions:
   ``HistoryBuffer`` pickles its history as plain lists (its statistics
   functions are class-level and come back on load), and numpy scalars and
   arrays elsewhere in the checkpoint become Python numbers and lists.
2. The allow-list adds only ``HistoryBuffer`` (whose ``__setstate__``
   validates what it gets and builds the arrays itself) and
   ``collections.Counter`` (MultiStep schedulers keep their milestones in
   one). No numpy global is allowed, so a forged numpy object in a file is
   refused with an exception.
3. ``http(s)://`` checkpoints (``init_cfg`` Pretrained, ``load_from``) load
   with ``weights_only=True`` too; MMEngine's loader would run torch's hub
   loader with ``weights_only=False``. A downloaded file that holds a type
   safe loading refuses stops with an error naming it and the way to trust
   such a file: ``tools/misc/convert_trusted_checkpoint.py``.

A checkpoint written without ``grc_mmdet`` imported still holds numpy
objects and functions; torch refuses it with a message naming the global.
Convert it once with ``tools/misc/convert_trusted_checkpoint.py`` if you
trust it.
"""
import collections
import numbers

import numpy as np
import torch

TRUST_TOOL = 'tools/misc/convert_trusted_checkpoint.py'
_HB_KEYS = {'_log_history', '_count_history', 'max_length'}


def _history_buffer_getstate(self) -> dict:
    """HistoryBuffer state as builtins: lists, no numpy, no functions."""
    return {'_log_history': np.asarray(self._log_history, dtype=np.float64).tolist(),
            '_count_history': np.asarray(self._count_history, dtype=np.float64).tolist(),
            'max_length': int(self.max_length)}


def _history_buffer_setstate(self, state) -> None:
    """Validate a pickled HistoryBuffer state, then rebuild its arrays."""
    if not isinstance(state, dict) or set(state) != _HB_KEYS:
        raise ValueError(f'HistoryBuffer state must be a dict with keys {sorted(_HB_KEYS)}, '
                         f'got {type(state).__name__} '
                         f'{sorted(state) if isinstance(state, dict) else ""}')
    max_length = state['max_length']
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f'HistoryBuffer max_length must be a positive int, got {max_length!r}')
    arrays = {}
    for key in ('_log_history', '_count_history'):
        values = state[key]
        if not isinstance(values, list) or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise ValueError(f'HistoryBuffer {key} must be a list of numbers')
        arrays[key] = np.asarray(values, dtype=np.float64)
    self.max_length = max_length
    self._log_history = arrays['_log_history']
    self._count_history = arrays['_count_history']


def to_builtins(obj):
    """Numpy scalars -> Python numbers and numpy arrays -> lists, recursively
    through dicts, lists and tuples (other objects are returned as they are)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        items = [(k, to_builtins(v)) for k, v in obj.items()]
        if type(obj) in (dict, collections.OrderedDict):
            return type(obj)(items)
        obj.update(items)
        return obj
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return type(obj)(to_builtins(v) for v in obj)
    return obj


def _saving_builtins(save_checkpoint):
    def wrapper(checkpoint, *args, **kwargs):
        return save_checkpoint(to_builtins(checkpoint), *args, **kwargs)
    wrapper._grc_safe = True
    return wrapper


def load_url_weights_only(filename, map_location=None, model_dir=None, progress=False):
    """``http(s)://`` checkpoints through torch's hub cache, loaded with
    ``weights_only=True`` (rank 0 downloads first under torch.distributed)."""
    from mmengine.dist import get_dist_info

    def load():
        try:
            return torch.hub.load_state_dict_from_url(
                filename, model_dir=model_dir, map_location=map_location,
                progress=progress, weights_only=True)
        except Exception as e:  # torch raises UnpicklingError (or a subclass of it)
            if 'weights_only' not in str(e) and 'Weights only' not in str(e):
                raise
            raise RuntimeError(
                f'The checkpoint at {filename} holds a type that safe loading '
                f'(torch.load(weights_only=True)) refuses; it was not loaded. Torch said: '
                f'{str(e).splitlines()[0]}. If you trust this file, convert it once with '
                f'`python {TRUST_TOOL} {filename} local.pth` and use local.pth.') from e

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def install() -> None:
    """Idempotent; called by ``import grc_mmdet``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner import checkpoint as ckpt_mod
    from mmengine.runner import runner as runner_mod

    HistoryBuffer.__getstate__ = _history_buffer_getstate
    HistoryBuffer.__setstate__ = _history_buffer_setstate
    for mod in (ckpt_mod, runner_mod):
        if not getattr(mod.save_checkpoint, '_grc_safe', False):
            mod.save_checkpoint = _saving_builtins(mod.save_checkpoint)
    ckpt_mod.CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_url_weights_only, force=True)
    torch.serialization.add_safe_globals([collections.Counter, HistoryBuffer])

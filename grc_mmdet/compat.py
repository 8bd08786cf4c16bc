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
3. Every scheme MMEngine's ``CheckpointLoader`` knows loads with
   ``weights_only=True``: ``http(s)://`` and the names that resolve to URLs
   (``open-mmlab://``, ``mmcls://``, ``torchvision://``) download through
   :func:`load_url_weights_only` (MMEngine's would run torch's hub loader with
   ``weights_only=False``), and any scheme's loader, also one registered
   later, runs under :func:`forced_weights_only`. A download that is refused
   is removed from torch's hub cache. A file that is not a checkpoint (an
   HTML page) is reported as such; one that holds a type safe loading
   refuses stops with an error naming it and the way to trust such a file:
   ``tools/misc/convert_trusted_checkpoint.py``.

A checkpoint written without ``grc_mmdet`` imported still holds numpy
objects and functions; torch refuses it with a message naming the global.
Convert it once with ``tools/misc/convert_trusted_checkpoint.py`` if you
trust it.
"""
import collections
import contextlib
import numbers
import os
import os.path as osp
from typing import Optional
from urllib.parse import urlparse

import numpy as np
import torch

TRUST_TOOL = 'tools/misc/convert_trusted_checkpoint.py'
_FORCE_ENV = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'
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
    self._set_default_statistics()  # 'mean', 'current' ... (__init__ would register them)
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


def _hub_cached_file(url: str, model_dir: Optional[str] = None,
                     file_name: Optional[str] = None) -> str:
    """Where torch's hub keeps the download of ``url``."""
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    return osp.join(model_dir, file_name or osp.basename(urlparse(url).path))


def _check_looks_like_checkpoint(path: str, source: str) -> None:
    """A torch checkpoint is a zip archive (torch >= 1.6) or a pickle (protocol
    >= 2 starts with 0x80); anything else (an HTML error page, a truncated
    download) is reported as such, not as an unsafe type."""
    with open(path, 'rb') as f:
        head = f.read(16)
    if head[:4] == b'PK\x03\x04' or head[:1] == b'\x80':
        return
    raise RuntimeError(f'{source} is not a checkpoint: a torch checkpoint is a zip archive or a '
                       f'pickle, this file starts with {head!r} (an HTML page, a text file or '
                       f'a truncated download?). It was not loaded.')


def load_url_weights_only(url: str, model_dir: Optional[str] = None, map_location=None,
                          progress: bool = False, check_hash: bool = False,
                          file_name: Optional[str] = None):
    """``torch.hub.load_state_dict_from_url`` with ``weights_only=True``.

    The download goes to torch's hub cache as usual. A file that is refused
    (not a checkpoint, or holding a type safe loading refuses) is deleted from
    the cache, so a later load (``open-mmlab://`` names resolve to the same
    cached file) cannot pick it up as if it were good.
    """
    cached = _hub_cached_file(url, model_dir, file_name)
    if not osp.isfile(cached):
        os.makedirs(osp.dirname(cached), exist_ok=True)
        digest = None
        if check_hash:
            match = torch.hub.HASH_REGEX.search(osp.basename(cached))
            digest = match.group(1) if match else None
        torch.hub.download_url_to_file(url, cached, digest, progress=progress)
    try:
        _check_looks_like_checkpoint(cached, url)
        return torch.load(cached, map_location=map_location, weights_only=True)
    except Exception as e:
        os.remove(cached)
        if 'weights_only' not in str(e) and 'Weights only' not in str(e):
            raise
        raise RuntimeError(
            f'The checkpoint at {url} holds a type that safe loading '
            f'(torch.load(weights_only=True)) refuses; it was not loaded and was removed '
            f'from the download cache. Torch said: {str(e).splitlines()[0]}. If you trust '
            f'this file, convert it once with `python {TRUST_TOOL} {url} local.pth` and '
            f'use local.pth.') from e


def load_from_http_weights_only(filename, map_location=None, model_dir=None, progress=False):
    """MMEngine's ``http(s)://`` scheme with :func:`load_url_weights_only`
    (rank 0 downloads first under torch.distributed)."""
    from mmengine.dist import get_dist_info

    def load():
        return load_url_weights_only(filename, model_dir=model_dir, map_location=map_location,
                                     progress=progress)

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


@contextlib.contextmanager
def forced_weights_only():
    """Every ``torch.load`` inside runs with ``weights_only=True``, whatever
    its caller passes (torch's own switch, ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``)."""
    previous = os.environ.get(_FORCE_ENV)
    os.environ[_FORCE_ENV] = '1'
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_FORCE_ENV, None)
        else:
            os.environ[_FORCE_ENV] = previous


def _safe_scheme_loading(load_checkpoint):
    """``CheckpointLoader.load_checkpoint`` whose scheme loader, whichever it
    is (MMEngine's, or one registered later), runs under
    :func:`forced_weights_only`."""
    def wrapper(cls, filename, map_location=None, logger='current'):
        with forced_weights_only():
            return load_checkpoint.__func__(cls, filename, map_location, logger)
    wrapper._grc_safe = True
    return classmethod(wrapper)


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
    # open-mmlab://, mmcls://, torchvision:// ... call the module-level
    # load_from_http / load_url: replace both, and every scheme bound to them.
    loader_cls = ckpt_mod.CheckpointLoader
    if not hasattr(ckpt_mod, '_grc_original_load_from_http'):
        ckpt_mod._grc_original_load_from_http = ckpt_mod.load_from_http
    unsafe = ckpt_mod._grc_original_load_from_http
    ckpt_mod.load_from_http = load_from_http_weights_only
    ckpt_mod.load_url = load_url_weights_only
    for prefix, loader in list(loader_cls._schemes.items()):
        if loader is unsafe:
            loader_cls.register_scheme(prefix, loader=load_from_http_weights_only, force=True)
    if not getattr(loader_cls.load_checkpoint, '_grc_safe', False):
        loader_cls.load_checkpoint = _safe_scheme_loading(loader_cls.load_checkpoint)
    torch.serialization.add_safe_globals([collections.Counter, HistoryBuffer])

"""Loading MMEngine 0.10.7 checkpoints under torch >= 2.6 (``weights_only=True``).

MMEngine 0.10.7 calls ``torch.load`` with torch's default, which since 2.6 is
the safe ``weights_only=True`` unpickler; it refuses MMEngine's own
checkpoints (``--resume``, ``load_from``, ``tools/test.py``). We keep torch's
safe loading and make our checkpoints loadable by it:

1. Allow-list exactly the data types a training checkpoint pickles: numpy
   arrays, dtypes and scalars, ``collections.Counter``, ``_codecs.encode``
   (how numpy pickles raw bytes) and MMEngine's ``HistoryBuffer``.
2. Keep functions out of the checkpoints we write: ``HistoryBuffer`` pickles
   its statistics functions (by ``builtins.getattr``, which no safe
   allow-list may admit). They are class-level and re-registered on load, so
   the pickled state leaves them out.

Nothing here turns ``weights_only`` off. A checkpoint written by stock MMEngine
*without* ``grc_mmdet`` imported still holds those functions and is refused by
torch with a message naming ``builtins.getattr``.
"""
import _codecs
import collections

import numpy as np
import torch


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core
    items = [np.ndarray, np.dtype, core.multiarray._reconstruct, core.multiarray.scalar]
    dtypes_mod = getattr(np, 'dtypes', None)
    if dtypes_mod is not None:  # numpy >= 1.25 pickles dtypes by their class
        items += [getattr(dtypes_mod, n) for n in dir(dtypes_mod) if n.endswith('DType')]
    return items


def _history_buffer_getstate(self) -> dict:
    """HistoryBuffer state without the (class-level) statistics functions."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def install() -> None:
    """Idempotent; called by ``import grc_mmdet``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(
            _numpy_globals() + [collections.Counter, collections.OrderedDict,
                                _codecs.encode, HistoryBuffer])

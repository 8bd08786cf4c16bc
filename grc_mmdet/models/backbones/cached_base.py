"""What every cached backbone shares: cache arguments, where GRC layers go,
pretrained-weight checks and per-step bookkeeping. The GRC math itself lives
in ``grc_mmdet/models/grc.py``."""
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger

from ..grc import GatedRecurrentCache, StepClock, grc_layers, report_skipped_writes

#: Keyword arguments every cached backbone accepts on top of its parent's, with defaults.
CACHE_DEFAULTS = dict(cache_ratio=0.5, cache_lambda_init=0.0, cache_grids=None,
                      cache_stages=None, cache_blocks=None, cache_kv_grids='auto')
CACHE_ARGS = tuple(CACHE_DEFAULTS)

#: Buffers that plain checkpoints carry but models rebuild (ignored on load).
_REBUILT_BUFFERS = ('attn_mask', 'relative_position_index')


def _per_stage(value, default: list, num_stages: int, name: str) -> list:
    """None -> default; an int or a tuple (h, w) -> every stage; a list -> per stage."""
    if value is None:
        return list(default)
    if isinstance(value, (int, tuple)):
        return [value] * num_stages
    if not isinstance(value, list):
        raise ValueError(f'{name} must be None, an int, a tuple (h, w) or a list with one '
                         f'entry per stage, got {value!r}')
    if len(value) != num_stages:
        raise ValueError(f'{name} needs one entry per stage ({num_stages}), got {value!r}')
    return value


class CachedBackboneMixin:
    """Adds GRC layers to a plain MMDet backbone's attention modules.

    A subclass calls :meth:`_pop_cache_args` on its keyword arguments before
    its parent's ``__init__``, :meth:`_attach_caches` after it, and
    :meth:`_before_forward` at the start of ``forward``.
    """

    def _pop_cache_args(self, kwargs: dict) -> dict:
        """Take the cache arguments out of ``kwargs`` (defaults filled in);
        a misspelt one (``cache_*``/``grc_*``) is an error, not ignored."""
        args = {k: kwargs.pop(k, v) for k, v in CACHE_DEFAULTS.items()}
        unknown = sorted(k for k in kwargs if k.startswith('cache') or k.startswith('grc'))
        if unknown:
            raise ValueError(f'{type(self).__name__}: unknown cache argument(s) {unknown}; '
                             f'known cache arguments are {list(CACHE_ARGS)}')
        return args

    def _attach_caches(self,
                       attns_per_stage: List[List[nn.Module]],
                       dims: Sequence[int],
                       heads: Sequence[int],
                       default_grids: list,
                       default_kv_grids: list,
                       upgrade: Callable[[nn.Module, GatedRecurrentCache], None],
                       in_channels: int,
                       cache_ratio: float = 0.5,
                       cache_lambda_init: float = 0.0,
                       cache_grids=None,
                       cache_stages: Optional[Sequence[int]] = None,
                       cache_blocks: Optional[Sequence[Sequence[int]]] = None,
                       cache_kv_grids='auto') -> None:
        num_stages = len(attns_per_stage)
        stages = tuple(range(num_stages)) if cache_stages is None else tuple(cache_stages)
        bad = [s for s in stages if not isinstance(s, int) or not 0 <= s < num_stages]
        if bad:
            raise ValueError(f'cache_stages {bad} are not stages of this backbone '
                             f'(it has stages 0..{num_stages - 1})')
        grids = _per_stage(cache_grids, default_grids, num_stages, 'cache_grids')
        if cache_kv_grids == 'auto':
            kv_grids = list(default_kv_grids)
        elif cache_kv_grids is None:
            kv_grids = [None] * num_stages
        else:
            kv_grids = _per_stage(cache_kv_grids, default_kv_grids, num_stages, 'cache_kv_grids')
        if cache_blocks is None:
            blocks = [list(range(len(a))) for a in attns_per_stage]
        else:
            blocks = [list(b) for b in cache_blocks]
            if len(blocks) != num_stages:
                raise ValueError(f'cache_blocks needs one list per stage ({num_stages}), '
                                 f'got {cache_blocks!r}')
            for s, (b, attns) in enumerate(zip(blocks, attns_per_stage)):
                wrong = [i for i in b if not isinstance(i, int) or not 0 <= i < len(attns)]
                if wrong:
                    raise ValueError(f'cache_blocks: stage {s} has blocks 0..{len(attns) - 1}, '
                                     f'got {wrong}')
        self.cache_stages = stages
        self.cache_grids = grids
        self.cache_kv_grids = kv_grids
        self.cache_blocks = blocks
        self._in_channels = in_channels
        self._grc_clock = StepClock()
        self._grc_seen_skips = {}
        for s in stages:
            for b in blocks[s]:
                upgrade(attns_per_stage[s][b],
                        GatedRecurrentCache(dims[s], heads[s], cache_grid=grids[s],
                                            cache_ratio=cache_ratio,
                                            lambda_init=cache_lambda_init,
                                            kv_grid=kv_grids[s], clock=self._grc_clock))

    # ----------------------------------------------------------- per forward
    def _before_forward(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects images of shape (B, C, H, W), '
                             f'got {getattr(x, "shape", type(x))}')
        if x.shape[1] != self._in_channels:
            raise ValueError(f'{type(self).__name__} expects {self._in_channels} input '
                             f'channels, got {x.shape[1]} (input shape {tuple(x.shape)})')
        self._grc_clock.tick()
        if self.training:
            report_skipped_writes(self, self._grc_seen_skips)

    # ------------------------------------------------------ pretrained load
    def init_weights(self):
        """Parent's init (including ``init_cfg`` Pretrained and the official-
        checkpoint converters), with a strict check of what the checkpoint
        brought: unexpected keys or mismatched shapes raise, and the keys new
        to the cached model are logged."""
        if isinstance(self.init_cfg, dict) and not isinstance(self.init_cfg, ConfigDict):
            self.init_cfg = ConfigDict(self.init_cfg)  # the parents read init_cfg.checkpoint
        self._checking_pretrained = True
        try:
            super().init_weights()
        finally:
            self._checking_pretrained = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if getattr(self, '_checking_pretrained', False) and prefix == '':
            self._check_pretrained(state_dict)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_pretrained(self, state_dict: dict) -> None:
        logger = MMLogger.get_current_instance()
        name = type(self).__name__
        own = self.state_dict()
        grc_prefixes = tuple(f'{n}.' for n, _ in grc_layers(self))
        for key, value in state_dict.items():
            if key.endswith(_REBUILT_BUFFERS) and key not in own:
                continue
            if key not in own:
                raise ValueError(f'{name}: the pretrained checkpoint does not fit this model: '
                                 f'unexpected key {key!r} (a checkpoint of another '
                                 f'architecture?)')
            is_cache = key.startswith(grc_prefixes) and key.endswith('.cache')
            if tuple(value.shape) != tuple(own[key].shape) and not is_cache:
                raise ValueError(f'{name}: shape mismatch at {key!r}: checkpoint '
                                 f'{tuple(value.shape)} vs model {tuple(own[key].shape)}')
        missing = [k for k in own if k not in state_dict]
        new = [k for k in missing if k.startswith(grc_prefixes)]
        plain_missing = [k for k in missing if not k.startswith(grc_prefixes)]
        if len(plain_missing) == len([k for k in own if not k.startswith(grc_prefixes)]):
            raise ValueError(f'{name}: the pretrained checkpoint has none of the model\'s '
                             f'weights (first expected key {plain_missing[0]!r})')
        if plain_missing:
            logger.warning(f'{name}: {len(plain_missing)} plain key(s) not in the checkpoint, '
                           f'left at their init: {plain_missing}')
        logger.info(f'{name}: loaded {len(state_dict)} key(s) from the checkpoint; '
                    f'{len(new)} GRC key(s) are new (parameters at init, caches at zero): '
                    f'{new}')
        self.pretrained_new_keys = new

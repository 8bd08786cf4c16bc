"""What every cached backbone shares: the one step that attaches GRC to a
plain MMDet backbone, the cache arguments, and pretrained-weight loading.

A cached backbone is ``class Cached<X>(CachedBackboneMixin, <X>)`` that
declares three things:

* ``attention_map``: the plain attention class -> its cached subclass, which
  computes the same attention (same parameters) and calls ``self.grc`` on the
  heads before the output projection when ``self.grc`` is not None;
* :meth:`grc_attention_modules`: the attention modules of each stage, in order;
* :meth:`grc_grid_rule`: each stage's default cache grid and key/value grid.

The GRC math lives in ``grc_mmdet/models/grc.py``.
"""
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.runner.checkpoint import _load_checkpoint_with_prefix, load_state_dict

from ..grc import IMPLS, GatedRecurrentCache, StepClock, flush_cache_writes, grc_layers

Grid = Tuple[int, int]

#: Buffers that plain checkpoints carry but the models rebuild (never loaded).
_REBUILT_BUFFERS = ('attn_mask', 'relative_position_index')


def _per_stage(value, default: list, num_stages: int, name: str) -> list:
    """None -> default; an int or a tuple (h, w) -> every stage; a list -> per stage."""
    if value is None:
        return list(default)
    if isinstance(value, bool):
        raise ValueError(f'{name} must be None, an int, a tuple (h, w) or a list with one '
                         f'entry per stage, got a bool ({value!r})')
    if isinstance(value, (int, tuple)):
        return [value] * num_stages
    if not isinstance(value, list):
        raise ValueError(f'{name} must be None, an int, a tuple (h, w) or a list with one '
                         f'entry per stage, got {value!r}')
    if len(value) != num_stages:
        raise ValueError(f'{name} needs one entry per stage ({num_stages}), got {value!r}')
    return value


def _index_list(value, name: str, limit: int, what: str) -> List[int]:
    """A list/tuple of ints in [0, limit): a clear error for anything else."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f'{name} must be a list of {what} indices, got {value!r} '
                         f'({type(value).__name__})')
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int)
           or not 0 <= v < limit]
    if bad:
        raise ValueError(f'{name}: {bad} are not {what}s of this backbone '
                         f'(it has {what}s 0..{limit - 1})')
    return list(value)


def stage_token_grids(pretrain_img_size, strides: Sequence[int]) -> List[Grid]:
    """Token grid (h, w) of each stage for an input of ``pretrain_img_size``."""
    h, w = (pretrain_img_size, pretrain_img_size) if isinstance(pretrain_img_size, int) \
        else tuple(pretrain_img_size) * (2 if len(pretrain_img_size) == 1 else 1)
    grids = []
    for stride in strides:
        h, w = h // stride, w // stride
        grids.append((h, w))
    return grids


class CachedBackboneMixin:
    """Turns a plain MMDet backbone into a cached one (GRC-Attention).

    Every argument of the plain backbone works unchanged, positional ones
    included. The cache arguments below come on top; the math of each
    GRC layer, and ``cache_ratio``/``cache_lambda_init`` in detail, are
    documented in :class:`~grc_mmdet.models.GatedRecurrentCache`.

    Cache arguments:
        cache_ratio (float): r in (0, 1], cache channels D_m = r * D.
            Default 0.5 (paper).
        cache_lambda_init (float): initial lambda of every head; the cached
            branch's weight is sigmoid(lambda). Default 0 (paper: 0.5 mix).
        cache_grids (list | int | tuple | None): cache grid (h_m, w_m) per
            stage, or one for all. None: each stage's token grid at
            ``pretrain_img_size`` (224 -> 56x56, 28x28, 14x14, 7x7).
        cache_stages (list[int] | None): stages with GRC. None: all (paper).
        cache_blocks (list[list[int]] | None): per stage, the block indices
            with GRC (within ``cache_stages``). None: every block.
        cache_kv_grids ('auto' | list | int | tuple | None): grid the cache is
            average-pooled to for the cached keys/values. 'auto': the
            backbone's rule (PVT: cache grid / sr_ratio; Swin: window-sized).
            None: no pooling.
        cache_impl ('auto' | 'eager' | 'triton' | 'cuda_graph'): how the GRC
            layers run (``impl`` of
            :class:`~grc_mmdet.models.GatedRecurrentCache`; the same math).
            'auto': the layers choose at run time: on CUDA the token side
            (cached attention and mix) as fused Triton kernels, the cache
            side as a CUDA graph in a single process and eagerly under
            torch.distributed (graph capture inside DDP's forward fails);
            'triton' (no graphs) when the backbone uses activation
            checkpointing (``with_cp``).

    The backbone writes all its caches in one batch after its forward
    (:func:`~grc_mmdet.models.grc.flush_cache_writes`).

    Every attention module becomes the cached class (attention computed with
    ``F.scaled_dot_product_attention``), also those without GRC, so
    ``cache_stages=[]`` is the same kernels without the cache for every
    backbone: the fair baseline for timing.
    """

    #: plain attention class -> cached attention class (set by each backbone)
    attention_map: Dict[type, type] = {}
    #: the plain class whose ``__init__`` signature names the arguments
    plain_backbone: type = None

    def __init__(self, *args,
                 cache_ratio: float = 0.5,
                 cache_lambda_init: float = 0.0,
                 cache_grids=None,
                 cache_stages: Optional[Sequence[int]] = None,
                 cache_blocks: Optional[Sequence[Sequence[int]]] = None,
                 cache_kv_grids='auto',
                 cache_impl: str = 'auto',
                 **kwargs):
        unknown = sorted(k for k in kwargs if k.startswith(('cache', 'grc')))
        if unknown:
            raise ValueError(
                f'{type(self).__name__}: unknown cache argument(s) {unknown}; known cache '
                f'arguments are {list(CACHE_ARGS)}')
        super().__init__(*args, **kwargs)
        signature = inspect.signature(self.plain_backbone.__init__)
        init_args = signature.bind(self, *args, **kwargs)
        init_args.apply_defaults()
        stage_attns = self.grc_attention_modules()
        num_stages = len(stage_attns)
        default_grids, default_kv = self.grc_grid_rule(init_args.arguments)

        stages = list(range(num_stages)) if cache_stages is None else \
            _index_list(cache_stages, 'cache_stages', num_stages, 'stage')
        grids = _per_stage(cache_grids, default_grids, num_stages, 'cache_grids')
        if cache_kv_grids == 'auto':
            kv_grids = list(default_kv)
        elif cache_kv_grids is None:
            kv_grids = [None] * num_stages
        else:
            kv_grids = _per_stage(cache_kv_grids, default_kv, num_stages, 'cache_kv_grids')
        if cache_blocks is None:
            blocks = [list(range(len(a))) for a in stage_attns]
        else:
            if not isinstance(cache_blocks, (list, tuple)) or len(cache_blocks) != num_stages:
                raise ValueError(f'cache_blocks needs one list per stage ({num_stages}), '
                                 f'got {cache_blocks!r}')
            blocks = [_index_list(b, f'cache_blocks[{s}]', len(a), 'block')
                      for s, (b, a) in enumerate(zip(cache_blocks, stage_attns))]
        self.cache_stages = tuple(stages)
        self.cache_grids = grids
        self.cache_kv_grids = kv_grids
        self.cache_blocks = blocks
        self._grc_clock = StepClock()
        self._in_channels = next(m for m in self.modules()
                                 if isinstance(m, nn.Conv2d)).in_channels
        if cache_impl not in IMPLS:
            raise ValueError(f'cache_impl must be one of {IMPLS}, got {cache_impl!r}')
        if cache_impl == 'auto' and any(getattr(m, 'with_cp', False) for m in self.modules()):
            cache_impl = 'triton'  # checkpoint recomputation and graphs do not mix
        self.cache_impl = cache_impl

        for s, attns in enumerate(stage_attns):
            for b, attn in enumerate(attns):
                cached_cls = self.attention_map.get(type(attn))
                if cached_cls is None:
                    raise TypeError(
                        f'{type(self).__name__}: stage {s} block {b} has attention '
                        f'{type(attn).__name__}; GRC attaches only to exactly '
                        f'{[c.__name__ for c in self.attention_map]}')
                attn.__class__ = cached_cls
                grc = None
                if s in stages and b in blocks[s]:
                    dims, heads = attn.grc_dims_heads()
                    grc = GatedRecurrentCache(
                        dims, heads, cache_grid=grids[s], cache_ratio=cache_ratio,
                        lambda_init=cache_lambda_init, kv_grid=kv_grids[s],
                        clock=self._grc_clock, stage=s, block=b, impl=cache_impl)
                    grc.defer_writes = True
                attn.register_module('grc', grc)
        self._grc_modules = [m for _, m in grc_layers(self)]
        left = [n for n, m in self.named_modules() if type(m) in self.attention_map]
        if left:
            raise TypeError(f'{type(self).__name__}: attention modules {left} were not '
                            f'declared by grc_attention_modules()')

    # ------------------------------------------------- what a backbone declares
    def grc_attention_modules(self) -> List[List[nn.Module]]:
        """The attention modules of each stage, in forward order."""
        raise NotImplementedError

    def grc_grid_rule(self, init_args: dict) -> Tuple[List[Grid], List[Grid]]:
        """(cache grid, 'auto' key/value grid) per stage, from the ``__init__``
        arguments of the plain backbone (defaults filled in)."""
        raise NotImplementedError

    # ----------------------------------------------------------- per forward
    def forward(self, x: torch.Tensor):
        if not torch.is_tensor(x) or x.dim() != 4:
            raise ValueError(f'{type(self).__name__} expects images of shape (B, C, H, W), '
                             f'got {getattr(x, "shape", type(x))}')
        if x.shape[1] != self._in_channels:
            raise ValueError(f'{type(self).__name__} expects {self._in_channels} input '
                             f'channels, got {x.shape[1]} (input shape {tuple(x.shape)})')
        self._grc_clock.tick()
        outs = super().forward(x)
        flush_cache_writes(self._grc_modules)
        return outs

    def train(self, mode: bool = True):
        """As the parent (Swin keeps frozen stages frozen), returning self."""
        super().train(mode)
        return self

    # ------------------------------------------------------ pretrained load
    def init_weights(self):
        """The parent's init, ``init_cfg`` Pretrained with its converters for
        official checkpoints, plus:

        * ``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=...)``
          loads the backbone of a detector or classifier checkpoint (ours,
          caches included), without the official-checkpoint converters;
        * the loaded state dict is checked: keys this model does not use are
          logged as a warning; a checkpoint with none of the model's plain
          weights, or a plain tensor of another shape, is an error naming the
          key (GRC tensors are checked by the GRC layers themselves).
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and not isinstance(cfg, ConfigDict):
            cfg = self.init_cfg = ConfigDict(cfg)  # the parents read init_cfg.checkpoint
        self._checking_pretrained = True
        try:
            if isinstance(cfg, dict) and cfg.get('prefix'):
                if cfg.get('type', 'Pretrained') != 'Pretrained' or 'checkpoint' not in cfg:
                    raise ValueError(f'{type(self).__name__}: init_cfg with a prefix must be '
                                     f'Pretrained with a checkpoint, got {dict(cfg)}')
                self._init_plain_weights()
                try:
                    state_dict = _load_checkpoint_with_prefix(cfg.prefix, cfg.checkpoint,
                                                              map_location='cpu')
                except AssertionError as e:  # MMEngine asserts when no key has the prefix
                    raise ValueError(f'{type(self).__name__}: no key of checkpoint '
                                     f'{cfg.checkpoint!r} starts with prefix '
                                     f'{cfg.prefix!r}') from e
                load_state_dict(self, state_dict, strict=False,
                                logger=MMLogger.get_current_instance())
            else:
                super().init_weights()
        finally:
            self._checking_pretrained = False

    def _init_plain_weights(self):
        """The parent's from-scratch init (init_cfg None), before a prefixed
        load, without the parent's "No pre-trained weights ... training start
        from scratch" warning: the weights are loaded right after."""
        saved, self.init_cfg = self.init_cfg, None
        logger = MMLogger.get_current_instance()
        logger.addFilter(_drop_from_scratch_warning)
        try:
            super().init_weights()
        finally:
            self.init_cfg = saved
            logger.removeFilter(_drop_from_scratch_warning)
        logger.info(f'{type(self).__name__}: initialised, now loading the weights under prefix '
                    f'{saved.prefix!r} of {saved.checkpoint}')

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if getattr(self, '_checking_pretrained', False) and prefix == '':
            self._check_pretrained(state_dict)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check_pretrained(self, state_dict: dict) -> None:
        logger = MMLogger.get_current_instance()
        name = type(self).__name__
        own = self.state_dict()
        grc_prefixes = tuple(f'{n}.' for n, _ in grc_layers(self))
        plain_keys = [k for k in own if not k.startswith(grc_prefixes)]
        unused = [k for k in state_dict if k not in own]
        if not any(k in state_dict for k in plain_keys):
            raise ValueError(
                f'{name}: the pretrained checkpoint has none of the model\'s weights: '
                f'expected keys like {plain_keys[0]!r}, found keys like '
                f'{next(iter(state_dict), None)!r} (a checkpoint of another architecture, '
                f'or a detector checkpoint without init_cfg prefix=\'backbone.\'?)')
        for key in plain_keys:
            if key in state_dict and tuple(state_dict[key].shape) != tuple(own[key].shape):
                raise ValueError(f'{name}: shape mismatch at {key!r}: checkpoint '
                                 f'{tuple(state_dict[key].shape)} vs model '
                                 f'{tuple(own[key].shape)}')
        unused = [k for k in unused if not k.endswith(_REBUILT_BUFFERS)]
        if unused:
            logger.warning(f'{name}: {len(unused)} checkpoint key(s) not used by this model '
                           f'(ignored): {unused}')
        plain_missing = [k for k in plain_keys if k not in state_dict
                         and not k.endswith(_REBUILT_BUFFERS)]
        if plain_missing:
            logger.warning(f'{name}: {len(plain_missing)} plain key(s) not in the checkpoint, '
                           f'left at their init: {plain_missing}')
        new = [k for k in own if k.startswith(grc_prefixes) and k not in state_dict]
        logger.info(f'{name}: loaded {len(state_dict) - len(unused)} key(s) from the '
                    f'checkpoint; {len(new)} GRC key(s) are new (parameters at init, '
                    f'caches at zero): {new}')
        self.pretrained_new_keys = new


def _drop_from_scratch_warning(record: logging.LogRecord) -> bool:
    """A logging filter: False for MMDet's "No pre-trained weights" record."""
    return not str(record.msg).startswith('No pre-trained weights for')


#: The cache arguments every cached backbone takes on top of its parent's.
CACHE_ARGS = tuple(list(inspect.signature(CachedBackboneMixin.__init__).parameters)[2:-1])

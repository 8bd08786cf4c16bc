"""Cached PVT (v1): MMDet's PyramidVisionTransformer with GRC-Attention."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmdet.models.backbones.pvt import PyramidVisionTransformer, SpatialReductionAttention
from mmdet.models.layers import nchw_to_nlc, nlc_to_nchw
from mmdet.registry import MODELS

from ..grc import GatedRecurrentCache, sdpa
from .cached_base import CachedBackboneMixin


class CachedSpatialReductionAttention(SpatialReductionAttention):
    """PVT's spatial-reduction attention with an optional GRC branch.

    Same parameters as the parent (``attn.in_proj_*``, ``attn.out_proj``,
    ``sr``, ``norm``), computed with ``F.scaled_dot_product_attention`` so that
    the per-head output exists before the output projection, where
    :class:`GatedRecurrentCache` mixes in the cached branch. Without ``grc`` it
    computes exactly what the parent computes.
    """

    grc: Optional[GatedRecurrentCache]

    @classmethod
    def upgrade(cls, attn: SpatialReductionAttention,
                grc: Optional[GatedRecurrentCache]) -> None:
        """Turn a built plain attention into this class in place (weights kept)."""
        attn.__class__ = cls
        attn.grc = grc

    def self_attention(self, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
        """o_self: (B, T, D), heads concatenated, before ``out_proj``."""
        B, T, D = x_q.shape
        H = self.num_heads
        w_q, w_kv = self.attn.in_proj_weight.split([D, 2 * D])
        b_q, b_kv = (None, None) if self.attn.in_proj_bias is None else \
            self.attn.in_proj_bias.split([D, 2 * D])
        q = F.linear(x_q, w_q, b_q).view(B, T, H, D // H).transpose(1, 2)
        k, v = F.linear(x_kv, w_kv, b_kv).view(B, -1, 2, H, D // H).permute(2, 0, 3, 1, 4)
        o = sdpa(q, k, v, 'self', dropout_p=self.attn.dropout if self.training else 0.0)
        return o.transpose(1, 2).reshape(B, T, D)

    def forward(self, x, hw_shape, identity=None):
        x_kv = x
        if self.sr_ratio > 1:
            x_kv = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, hw_shape))))
        if identity is None:
            identity = x
        out = self.self_attention(x, x_kv)
        if getattr(self, 'grc', None) is not None:
            out = self.grc(x, hw_shape, out)
        out = self.attn.out_proj(out)
        return identity + self.dropout_layer(self.proj_drop(out))


def _pvt_grids(pretrain_img_size, strides, sr_ratios):
    """Token grid of each stage at pre-training size, and that grid / sr_ratio."""
    h, w = (pretrain_img_size, pretrain_img_size) if isinstance(pretrain_img_size, int) \
        else tuple(pretrain_img_size)
    grids, kv = [], []
    for stride, sr in zip(strides, sr_ratios):
        h, w = h // stride, w // stride
        grids.append((h, w))
        kv.append((max(h // sr, 1), max(w // sr, 1)))
    return grids, kv


@MODELS.register_module()
class CachedPyramidVisionTransformer(CachedBackboneMixin, PyramidVisionTransformer):
    """PVT with GRC-Attention in its attention layers (Cached Transformers).

    Every argument of :class:`mmdet.models.backbones.PyramidVisionTransformer`
    works unchanged (``pretrain_img_size``, ``embed_dims``, ``num_layers``,
    ``num_heads``, ``sr_ratios``, ``out_indices``, ``convert_weights``,
    ``init_cfg`` ...), so a PVT config becomes a cached one by its ``type``.
    Official ImageNet PVT checkpoints load through ``init_cfg`` as for the
    plain model; GRC parameters keep their init and caches start at zero.

    Cache arguments:
        cache_ratio (float): r, cache channels D_m = r * D. Default 0.5 (paper).
        cache_lambda_init (float): initial lambda per head; the cached branch
            weight is sigmoid(lambda). Default 0 (paper).
        cache_grids (list | int | tuple | None): cache grid (h_m, w_m) per
            stage. None: each stage's token grid at ``pretrain_img_size``
            (224 -> 56x56, 28x28, 14x14, 7x7).
        cache_stages (Sequence[int] | None): stages with GRC. None: all (paper).
        cache_blocks (Sequence[Sequence[int]] | None): per stage, the block
            indices with GRC (within ``cache_stages``). None: all blocks.
        cache_kv_grids ('auto' | list | None): grid the cache is
            average-pooled to for the cached keys/values. 'auto': the cache
            grid divided by the stage's ``sr_ratio`` (7x7 at every stage of
            PVT, like its own spatial reduction). None: no reduction.
    """

    def __init__(self, **kwargs):
        cache_args = self._pop_cache_args(kwargs)
        super().__init__(**kwargs)
        grids, kv_grids = _pvt_grids(kwargs.get('pretrain_img_size', 224),
                                     self.strides, self.sr_ratios)
        attns = []
        for stage in self.layers:
            blocks = [m for m in stage[1] if hasattr(m, 'attn')]
            for block in blocks:
                CachedSpatialReductionAttention.upgrade(block.attn, None)
            attns.append([block.attn for block in blocks])
        dims = [self.embed_dims * h for h in self.num_heads]
        self._attach_caches(attns, dims, self.num_heads, grids, kv_grids,
                            CachedSpatialReductionAttention.upgrade,
                            in_channels=kwargs.get('in_channels', 3), **cache_args)

    def forward(self, x):
        self._before_forward(x)
        return super().forward(x)

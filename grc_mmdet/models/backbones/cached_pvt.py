"""Cached PVT (v1): MMDet's PyramidVisionTransformer with GRC-Attention."""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.backbones.pvt import PyramidVisionTransformer, SpatialReductionAttention
from mmdet.models.layers import nchw_to_nlc, nlc_to_nchw
from mmdet.registry import MODELS

from ..grc import GatedRecurrentCache, sdpa
from .cached_base import CachedBackboneMixin, stage_token_grids


class CachedSpatialReductionAttention(SpatialReductionAttention):
    """PVT's spatial-reduction attention with an optional GRC branch.

    Same parameters as the parent (``attn.in_proj_*``, ``attn.out_proj``,
    ``sr``, ``norm``), computed with ``F.scaled_dot_product_attention`` so that
    the per-head output exists before the output projection, where ``grc``
    (a :class:`GatedRecurrentCache`, or None) mixes in the cached branch.
    With ``grc=None`` it computes exactly what the parent computes.
    """

    grc: Optional[GatedRecurrentCache]

    def grc_dims_heads(self) -> Tuple[int, int]:
        return self.embed_dims, self.num_heads

    def self_attention(self, x_q: torch.Tensor, x_kv: torch.Tensor) -> torch.Tensor:
        """o_self: (B, T, D), heads concatenated, before ``out_proj``."""
        B, T, D = x_q.shape
        H, Tk = self.num_heads, x_kv.shape[1]
        w_q, w_kv = self.attn.in_proj_weight.split([D, 2 * D])
        b_q, b_kv = (None, None) if self.attn.in_proj_bias is None else \
            self.attn.in_proj_bias.split([D, 2 * D])
        q = F.linear(x_q, w_q, b_q).view(B, T, H, D // H).transpose(1, 2)
        k, v = F.linear(x_kv, w_kv, b_kv).view(B, Tk, 2, H, D // H).permute(2, 0, 3, 1, 4)
        o = sdpa(q, k, v, dropout_p=self.attn.dropout if self.training else 0.0)
        return o.transpose(1, 2).reshape(B, T, D)

    def forward(self, x, hw_shape, identity=None):
        x_kv = x
        if self.sr_ratio > 1:
            x_kv = self.norm(nchw_to_nlc(self.sr(nlc_to_nchw(x, hw_shape))))
        if identity is None:
            identity = x
        out = self.self_attention(x, x_kv)
        if self.grc is not None:
            out = self.grc(x, hw_shape, out)
        out = self.attn.out_proj(out)
        return identity + self.dropout_layer(self.proj_drop(out))


class CachedPVTMixin(CachedBackboneMixin):
    """Where GRC goes in PVT and PVTv2, and their grid rule."""

    attention_map = {SpatialReductionAttention: CachedSpatialReductionAttention}
    plain_backbone = PyramidVisionTransformer

    def grc_attention_modules(self):
        # stage = [patch embedding, [position embedding?, blocks...], norm]
        return [[m.attn for m in stage[1] if hasattr(m, 'attn')] for stage in self.layers]

    def grc_grid_rule(self, init_args):
        """Cache: the token grid at ``pretrain_img_size``; keys/values: that
        grid divided by the stage's ``sr_ratio`` (PVT's own reduction)."""
        grids = stage_token_grids(init_args['pretrain_img_size'], self.strides)
        kv = [(max(h // sr, 1), max(w // sr, 1)) for (h, w), sr in zip(grids, self.sr_ratios)]
        return grids, kv


@MODELS.register_module()
class CachedPyramidVisionTransformer(CachedPVTMixin, PyramidVisionTransformer):
    """PVT with GRC-Attention in its attention layers (Cached Transformers).

    Every argument of :class:`mmdet.models.backbones.PyramidVisionTransformer`
    works unchanged, so a PVT config becomes a cached one by its ``type``.
    The cache arguments are those of
    :class:`~grc_mmdet.models.backbones.cached_base.CachedBackboneMixin`;
    'auto' key/value grids are the cache grid divided by the stage's
    ``sr_ratio`` (7x7 at every stage at 224, like PVT's own reduction).
    Official ImageNet PVT checkpoints load through ``init_cfg`` as for the
    plain model; GRC parameters keep their init and caches start at zero.
    """

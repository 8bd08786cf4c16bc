"""Cached PVTv2: MMDet's PyramidVisionTransformerV2 with GRC-Attention."""
from mmdet.models.backbones.pvt import PyramidVisionTransformerV2
from mmdet.registry import MODELS

from .cached_pvt import CachedPVTMixin


@MODELS.register_module()
class CachedPyramidVisionTransformerV2(CachedPVTMixin, PyramidVisionTransformerV2):
    """PVTv2 (b0-b5 by ``embed_dims``/``num_layers``) with GRC-Attention.

    MMDet's ``PyramidVisionTransformerV2`` (overlapping patch embeddings, a
    conv FFN, a norm after each stage) with the attention, grid rule and
    cache arguments of :class:`CachedPyramidVisionTransformer`.
    """

"""Cached PVTv2: MMDet's PyramidVisionTransformerV2 with GRC-Attention."""
from mmdet.registry import MODELS

from .cached_pvt import CachedPyramidVisionTransformer


@MODELS.register_module()
class CachedPyramidVisionTransformerV2(CachedPyramidVisionTransformer):
    """PVTv2 (b0-b5 by ``embed_dims``/``num_layers``) with GRC-Attention.

    MMDet's PVTv2 is PVT with overlapping patch embeddings, a conv FFN and a
    norm after each stage; the same four arguments are fixed here. Every other
    argument, and every cache argument, is that of
    :class:`CachedPyramidVisionTransformer`.
    """

    def __init__(self, **kwargs):
        super().__init__(patch_sizes=[7, 3, 3, 3], paddings=[3, 1, 1, 1],
                         use_abs_pos_embed=False, norm_after_stage=True,
                         use_conv_ffn=True, **kwargs)

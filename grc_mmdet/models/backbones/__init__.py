from .cached_pvt import CachedPyramidVisionTransformer, CachedSpatialReductionAttention
from .cached_pvtv2 import CachedPyramidVisionTransformerV2
from .cached_swin import CachedShiftWindowMSA, CachedSwinTransformer

__all__ = ['CachedPyramidVisionTransformer', 'CachedPyramidVisionTransformerV2',
           'CachedSwinTransformer', 'CachedSpatialReductionAttention', 'CachedShiftWindowMSA']

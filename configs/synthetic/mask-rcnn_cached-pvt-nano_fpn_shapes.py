# Embedded default (the main job): the nano PVT of the plain twin with
# GRC-Attention in every attention layer.
_base_ = './mask-rcnn_pvt-nano_fpn_shapes.py'
model = dict(
    backbone=dict(
        type='CachedPyramidVisionTransformer',
        cache_ratio=0.5,
        cache_lambda_init=0.0,
        cache_grids=None,  # None: token grid at 224 (56, 28, 14, 7)
        cache_stages=None,  # None: every stage
        cache_blocks=None,  # None: every block of those stages
        cache_kv_grids='auto',  # cache keys pooled by the stage's sr_ratio
    ))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

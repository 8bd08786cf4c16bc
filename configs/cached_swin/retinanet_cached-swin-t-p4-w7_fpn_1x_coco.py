_base_ = '../swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='CachedSwinTransformer',
        cache_ratio=0.5,
        cache_lambda_init=0.0,
        cache_grids=None,  # None: token grid at 224 (56, 28, 14, 7)
        cache_stages=None,
        cache_kv_grids='auto',  # cache keys pooled to a 7x7 (window) grid
    ))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

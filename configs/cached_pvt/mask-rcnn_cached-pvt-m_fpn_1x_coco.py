_base_ = '../pvt/mask-rcnn_pvt-m_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        type='CachedPyramidVisionTransformer',
        # GRC-Attention knobs (defaults of the paper / grc-spec.md):
        cache_ratio=0.5,  # D_m = r * D
        cache_lambda_init=0.0,  # sigmoid(0) = 0.5 mix per head
        cache_grids=None,  # None: token grid at 224 (56, 28, 14, 7)
        cache_stages=None,  # None: every stage, every block
        cache_kv_grids='auto',  # cache keys pooled by the stage's sr_ratio
    ))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

_base_ = '../imagenet/swin-t-p4-w7_8xb128_in1k.py'
# GRC-Attention with the paper's cache arguments (see the README's cache-argument table).
model = dict(backbone=dict(type='CachedSwinTransformer'))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

_base_ = '../imagenet/pvt-s_8xb128_in1k.py'
# GRC-Attention with the paper's cache arguments (see the README's cache-argument table).
model = dict(backbone=dict(type='CachedPyramidVisionTransformer'))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

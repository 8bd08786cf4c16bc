# The cached twin of pvt-nano_shapes-cls.py: the main job's pre-training of the
# cached nano backbone (same cache arguments as the cached detector config).
_base_ = './pvt-nano_shapes-cls.py'
model = dict(backbone=dict(type='CachedPyramidVisionTransformer'))
# lambda is a gate logit: no weight decay on it.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'cache_lambda': dict(decay_mult=0.)}))

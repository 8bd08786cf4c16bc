# PVT-Tiny on ImageNet-1k (DeiT recipe, stochastic depth 0.1): the plain twin
# of configs/cached_imagenet/cached-pvt-t_8xb128_in1k.py.
_base_ = '../_base_/imagenet_deit.py'
model = dict(
    backbone=dict(type='PyramidVisionTransformer', num_layers=[2, 2, 2, 2], out_indices=(3, ),
                  drop_path_rate=0.1),
    in_channels=512)

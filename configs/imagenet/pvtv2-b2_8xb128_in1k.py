# PVTv2-B2 on ImageNet-1k (its recipe: DeiT's, stochastic depth 0.1).
_base_ = '../_base_/imagenet_deit.py'
model = dict(
    backbone=dict(type='PyramidVisionTransformerV2', embed_dims=64, num_layers=[3, 4, 6, 3],
                  out_indices=(3, ), drop_path_rate=0.1),
    in_channels=512)

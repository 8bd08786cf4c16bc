# Swin-T on ImageNet-1k, as in its paper: DeiT's augmentations, 20 warm-up
# epochs, stochastic depth 0.2, no weight decay on position tables.
_base_ = '../_base_/imagenet_deit.py'
model = dict(
    backbone=dict(type='SwinTransformer', embed_dims=96, depths=[2, 2, 6, 2],
                  num_heads=[3, 6, 12, 24], window_size=7, out_indices=(3, ),
                  drop_path_rate=0.2),
    in_channels=768)
warmup_epochs = 20
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end={{_base_.max_epochs}}, convert_to_iter_based=True)
]
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'absolute_pos_embed': dict(decay_mult=0.), 'relative_position_bias_table': dict(decay_mult=0.)
}))

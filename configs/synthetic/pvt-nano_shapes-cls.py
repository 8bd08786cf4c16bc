# Pre-training of the embedded default's nano PVT as a classifier (plain
# twin) on GRC Shapes crops: objects cut from generated GRC Shapes images with
# their class (textured backgrounds, occlusion), ImageNet layout
# (tools/main_job.py writes it; make_shapes_crops in grc_mmdet.classification).
# Its checkpoint keeps the backbone under 'backbone.', which the detector
# loads with init_cfg=dict(type='Pretrained', prefix='backbone.', ...).
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)

# GRC_SHAPES_CLS_ROOT (environment) moves the dataset (trailing slash optional).
data_root = '{{$GRC_SHAPES_CLS_ROOT:data/shapes_cls/}}'.rstrip('/') + '/'
crop = 64  # crops are written at this size
model = dict(
    type='ImageClassifier',
    # the same backbone as configs/synthetic/mask-rcnn_pvt-nano_fpn_shapes.py
    backbone=dict(type='PyramidVisionTransformer', embed_dims=32, num_heads=[1, 2, 4, 8],
                  num_layers=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 4], use_conv_ffn=True,
                  drop_path_rate=0.0, init_cfg=None),
    num_classes=4,
    in_channels=256,
    data_preprocessor=dict(type='ClsDataPreprocessor', label_smoothing=0.1))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', size=crop, scale=(0.6, 1.0), interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackClsInputs')
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackClsInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ImageNetDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNetDataset', data_root=data_root, data_prefix='val',
                 ann_file='meta/val.txt', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator
max_iters = 1000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=30, end=max_iters, eta_min=1e-5)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='GRCMonitorHook', interval=20)]
randomness = dict(seed=0)

# ImageNet-1k training recipe of DeiT, used by PVT, PVTv2 and (with its own
# warm-up and stochastic depth) Swin: 300 epochs, AdamW, lr 5e-4 x batch / 512
# (1e-3 for 8 GPUs x 128 images; --auto-scale-lr keeps that rule for other
# batches), weight decay 0.05 (none on norms and biases), cosine schedule with 5
# warm-up epochs, 224x224, label smoothing 0.1, Mixup 0.8 / CutMix 1.0,
# RandAugment m9-mstd0.5 (increasing ops), random erasing 0.25.
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)
data_root = 'data/imagenet/'
num_classes = 1000
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', size=224, scale=(0.08, 1.0), interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ImageNetRandAugment', num_ops=2, magnitude=9, magnitude_std=0.5, prob=0.5),
    dict(type='ImageNetRandomErasing', prob=0.25),
    dict(type='PackClsInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackClsInputs')
]
train_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ImageNetDataset', data_root=data_root, data_prefix='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128, num_workers=8, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ImageNetDataset', data_root=data_root, data_prefix='val',
                 ann_file='meta/val.txt', pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
model = dict(
    type='ImageClassifier',
    num_classes=num_classes,
    # the preprocessor takes num_classes from the model
    data_preprocessor=dict(type='ClsDataPreprocessor', label_smoothing=0.1, mixup_alpha=0.8,
                           cutmix_alpha=1.0))
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-4 * 1024 / 512, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.,
                       custom_keys={'pos_embed': dict(decay_mult=0.)}))
warmup_epochs = 5
max_epochs = 300
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs,
         end=max_epochs, convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
auto_scale_lr = dict(enable=False, base_batch_size=1024)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3))
custom_hooks = [dict(type='GRCMonitorHook', interval=100)]

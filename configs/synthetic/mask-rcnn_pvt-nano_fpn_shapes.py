# Embedded default (plain twin): Mask R-CNN with a nano PVT on the generated
# "GRC Shapes" dataset (tools/misc/make_shapes_dataset.py), sized for a
# 2-core CPU. Same detector recipe as the COCO configs, smaller everywhere.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)

classes = ('circle', 'square', 'triangle', 'star')
# GRC_SHAPES_ROOT (environment) moves the dataset, e.g. for tests (with or
# without a trailing slash).
data_root = '{{$GRC_SHAPES_ROOT:data/shapes/}}'.rstrip('/') + '/'
image_scale = (256, 192)  # (w, h) of the generated images
feat = 64  # neck / head width

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='PyramidVisionTransformer',
        embed_dims=32,
        num_heads=[1, 2, 4, 8],
        num_layers=[1, 1, 1, 1],
        mlp_ratios=[4, 4, 4, 4],
        use_conv_ffn=True,
        drop_path_rate=0.0,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=feat),
    rpn_head=dict(in_channels=feat, feat_channels=feat),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=feat),
        bbox_head=dict(in_channels=feat, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=feat),
        mask_head=dict(in_channels=feat, conv_out_channels=feat, num_convs=2,
                       num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(
            # RoIs count as positives from IoU 0.7 (MMDetection's 0.5): a
            # proposal over part of a shape is trained as background, so it
            # no longer adds a second box of another class at test time
            assigner=dict(pos_iou_thr=0.7, neg_iou_thr=0.7, min_pos_iou=0.7),
            sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(max_per_img=50)))

metainfo = dict(classes=classes)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
shapes = dict(type='GRCShapesDataset', data_root=data_root, metainfo=metainfo)
loader = dict(batch_size=4, num_workers=1, persistent_workers=True)
train_dataloader = dict(
    **loader,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(**shapes, ann_file='annotations/train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    **loader,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**shapes, ann_file='annotations/val.json', data_prefix=dict(img='val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/val.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

# The main job fine-tunes from its pre-trained classifier (tools/main_job.py):
# 800 iterations, warm-up then cosine, fit 20 minutes on 2 CPU cores with the
# pre-training (128 sampled RoIs per image keep a CPU step near 0.85 s).
max_iters = 800
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=100, end=max_iters, eta_min=1e-5)
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10.0))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
# torch RNG state in checkpoints: a resumed run repeats an uninterrupted one (CPU).
custom_hooks = [dict(type='ResumeRNGHook'), dict(type='GRCMonitorHook', interval=20)]
randomness = dict(seed=0)

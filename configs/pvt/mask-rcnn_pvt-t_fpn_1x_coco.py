# Mask R-CNN + PVT-Tiny, COCO 1x: the plain twin of
# configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py (recipe of the PVT
# and Cached Transformers papers: 1333x800, 2 img x 8 GPU, AdamW 1e-4, 12 ep).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py'
]
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,
        type='PyramidVisionTransformer',
        num_layers=[2, 2, 2, 2],
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/whai362/PVT/releases/download/v2/pvt_tiny.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))
# 8 GPUs x 2 images; scale lr linearly with --auto-scale-lr on other setups.
train_dataloader = dict(batch_size=2, num_workers=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)

# RetinaNet + Swin-T, COCO 1x: MMDet's config (plain twin).
_base_ = 'mmdet::swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py'
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)

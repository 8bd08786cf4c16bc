# RetinaNet + PVT-T, COCO 1x: MMDetection's config (plain twin).
_base_ = 'mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py'
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)

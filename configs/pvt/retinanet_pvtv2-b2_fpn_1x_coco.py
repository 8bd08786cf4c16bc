# RetinaNet + PVTv2-B2, COCO 1x: MMDetection's config (plain twin).
_base_ = 'mmdet::pvt/retinanet_pvtv2-b2_fpn_1x_coco.py'
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)

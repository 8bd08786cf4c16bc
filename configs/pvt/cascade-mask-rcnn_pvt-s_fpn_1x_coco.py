# Cascade Mask R-CNN + PVT-Small, COCO 1x (plain twin).
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', '../_base_/pvt.py']
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)
model = dict(backbone={{_base_.pvt_s}}, neck={{_base_.pvt_neck}})
optim_wrapper = {{_base_.pvt_optim_wrapper}}

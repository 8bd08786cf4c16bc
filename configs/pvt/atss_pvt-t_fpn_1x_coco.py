# ATSS + PVT-Tiny, COCO 1x (plain twin).
_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py', '../_base_/pvt.py']
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)
model = dict(backbone={{_base_.pvt_t}}, neck={{_base_.pvt_neck}})
optim_wrapper = {{_base_.pvt_optim_wrapper}}

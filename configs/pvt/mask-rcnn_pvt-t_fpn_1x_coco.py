# Mask R-CNN + PVT-Tiny, COCO 1x: the plain twin of
# configs/cached_pvt/mask-rcnn_cached-pvt-t_fpn_1x_coco.py (recipe of the PVT
# and Cached Transformers papers: 1333x800, 2 img x 8 GPU, AdamW 1e-4, 12 ep;
# on other GPU counts scale the lr with --auto-scale-lr).
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py',
          '../_base_/pvt.py']
custom_imports = dict(imports=['grc_mmdet'], allow_failed_imports=False)
model = dict(backbone={{_base_.pvt_t}}, neck={{_base_.pvt_neck}})
optim_wrapper = {{_base_.pvt_optim_wrapper}}

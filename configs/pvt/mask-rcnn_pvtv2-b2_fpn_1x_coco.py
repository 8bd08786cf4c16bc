_base_ = './mask-rcnn_pvt-t_fpn_1x_coco.py'
model = dict(backbone={{_base_.pvtv2_b2}})

# Backbones of the PVT papers with their official ImageNet checkpoints, and
# the detection optimizer of the PVT and Cached Transformers papers (AdamW
# 1e-4). Variables only: a detector config lists this file in its _base_ and
# uses them, e.g. model = dict(backbone={{_base_.pvt_t}}).
_pvt_url = 'https://github.com/whai362/PVT/releases/download/v2/'
pvt_t = dict(_delete_=True, type='PyramidVisionTransformer', num_layers=[2, 2, 2, 2],
             init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_tiny.pth'))
pvt_s = dict(pvt_t, num_layers=[3, 4, 6, 3],
             init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_small.pth'))
pvt_m = dict(pvt_t, num_layers=[3, 4, 18, 3],
             init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_medium.pth'))
pvtv2_b0 = dict(pvt_t, type='PyramidVisionTransformerV2', embed_dims=32,
                init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_v2_b0.pth'))
pvtv2_b1 = dict(pvtv2_b0, embed_dims=64,
                init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_v2_b1.pth'))
pvtv2_b2 = dict(pvtv2_b1, num_layers=[3, 4, 6, 3],
                init_cfg=dict(type='Pretrained', checkpoint=_pvt_url + 'pvt_v2_b2.pth'))
pvt_neck = dict(in_channels=[64, 128, 320, 512])
pvtv2_b0_neck = dict(in_channels=[32, 64, 160, 256])
pvt_optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))

_base_ = './pvt-t_8xb128_in1k.py'
model = dict(backbone=dict(num_layers=[3, 4, 18, 3], drop_path_rate=0.3))

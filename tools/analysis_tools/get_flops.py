"""Parameters and FLOPs of a cached detector and its plain twin, side by side.

    python tools/analysis_tools/get_flops.py CACHED_CONFIG [--plain PLAIN_CONFIG]
        [--shape 800 1333] [--out-dir DIR] [--backbone-only]

Counts the attention matmuls inside scaled_dot_product_attention (see
grc_mmdet/analysis/complexity.py); one multiply-add = one FLOP. Prints the
overhead beside the paper's (ImageNet models at 224, docs/design.md). Detector
FLOPs of two-stage models depend on how many proposals the (randomly
initialised) RPN keeps, so they vary a little between runs.
"""
import argparse
import json
import os
import os.path as osp

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.logging import MMLogger

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import count_complexity, load_twin_configs

# Paper, ImageNet classification models at 224: (params M, GFLOPs) plain -> cached.
PAPER = {
    'pvt-t': ((13.3, 1.90), (15.0, 2.15)), 'pvt-s': ((24.5, 3.80), (28.3, 4.29)),
    'pvt-m': ((44.2, 6.70), (51.4, 7.61)), 'swin-t': ((28.0, 4.50), (32.8, 5.15)),
    'pvtv2-b2': ((25.4, 4.00), (29.1, 4.51)),
}


def detector_inputs(model, shape):
    """Preprocessed (inputs, data_samples) for one image of ``shape`` (h, w)."""
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape,
                                         scale_factor=(1.0, 1.0), pad_shape=shape,
                                         batch_input_shape=shape))
    data = model.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, *shape), dtype=torch.uint8)],
             data_samples=[sample]), False)
    return data['inputs'], data['data_samples']


def measure(cfg, shape, backbone_only):
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    out = {'backbone': count_complexity(model.backbone, torch.randn(1, 3, *shape))}
    if not backbone_only:
        inputs, samples = detector_inputs(model, shape)

        class TensorMode(torch.nn.Module):  # trace the detector's 'tensor' mode
            def __init__(self, det):
                super().__init__()
                self.det = det

            def forward(self, x):
                return self.det(x, samples, mode='tensor')

        out['detector'] = count_complexity(TensorMode(model), inputs)
    return out


def paper_key(path):
    name = osp.basename(path)
    for key in sorted(PAPER, key=len, reverse=True):
        if f'cached-{key}_' in name or f'cached-{key}-' in name:
            return key
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='a cached config')
    p.add_argument('--plain', help='its plain twin (default: found by name; without one, the '
                   'cached config with the parent backbone type)')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--backbone-only', action='store_true')
    p.add_argument('--out-dir', help='write complexity.json here')
    args = p.parse_args()
    register_all_modules()
    logger = MMLogger.get_instance('grc_flops', log_level='INFO')
    cached_cfg, plain_cfg = load_twin_configs(args.config, args.plain)
    shape = tuple(args.shape)
    res = {'shape': shape, 'cached': measure(cached_cfg, shape, args.backbone_only),
           'plain': measure(plain_cfg, shape, args.backbone_only)}
    lines = [f'Complexity at {shape[0]}x{shape[1]} (1 image; 1 multiply-add = 1 FLOP)',
             f'{"part":<10}{"plain params":>14}{"cached params":>15}{"d params":>10}'
             f'{"plain GFLOPs":>14}{"cached GFLOPs":>15}{"d FLOPs":>10}']
    for part in res['cached']:
        c, q = res['cached'][part], res['plain'][part]
        lines.append(f'{part:<10}{q["params"] / 1e6:>13.2f}M{c["params"] / 1e6:>14.2f}M'
                     f'{100 * (c["params"] / q["params"] - 1):>+9.1f}%'
                     f'{q["flops"] / 1e9:>14.2f}{c["flops"] / 1e9:>15.2f}'
                     f'{100 * (c["flops"] / q["flops"] - 1):>+9.1f}%')
    key = paper_key(args.config)
    if key:
        (pp, pf), (cp, cf) = PAPER[key]
        lines.append(f'paper ({key}, ImageNet model at 224): params {pp}M -> {cp}M '
                     f'({100 * (cp / pp - 1):+.1f}%), FLOPs {pf}G -> {cf}G '
                     f'({100 * (cf / pf - 1):+.1f}%)')
        res['paper'] = dict(model=key, params=(pp, cp), gflops=(pf, cf))
    logger.info('\n' + '\n'.join(lines))
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, 'complexity.json'), 'w') as f:
            json.dump(res, f, indent=2)


if __name__ == '__main__':
    main()

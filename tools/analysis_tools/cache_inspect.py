"""Per cached layer: the cache's norm, and how much training-mode writes change it.

    python tools/analysis_tools/cache_inspect.py CONFIG [--checkpoint CKPT]
        [--img IMAGE_OR_FOLDER] [--steps 5] [--batch 2] [--out-dir work_dirs/analysis]

Runs ``--steps`` training-mode backbone forwards (no weight update, images
from ``--img``) and records each write's relative change
|C_new - C_old| / |C_old|. Writes cache_inspect.png and cache_inspect.json.
"""
import argparse
import json
import os
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

import grc_mmdet  # noqa: E402,F401
from grc_mmdet.analysis import build_detector, find_images, load_images  # noqa: E402
from grc_mmdet.models import grc_layers  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint')
    p.add_argument('--img', help='image file or folder (default: data/shapes/val)')
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--out-dir', default='work_dirs/analysis')
    args = p.parse_args()
    logger = MMLogger.get_instance('grc_cache_inspect', log_level='INFO')
    model = build_detector(args.config, args.checkpoint)
    layers = list(grc_layers(model))
    if not layers:
        raise SystemExit(f'{args.config} has no GRC layers (is it a cached config?)')
    files = find_images(args.img, args.steps * args.batch)
    norms = {n: float(m.cache.norm()) for n, m in layers}
    deltas = {n: [] for n, _ in layers}
    model.backbone.train()
    with torch.no_grad():
        for step in range(args.steps):
            chunk = [files[(step * args.batch + i) % len(files)] for i in range(args.batch)]
            model.backbone(load_images(model, chunk, size=None))
            for n, m in layers:
                deltas[n].append(float(m.last_write_delta))
    model.eval()
    os.makedirs(args.out_dir, exist_ok=True)
    rows = [f'{"layer":<44}{"|cache|":>10}{"grid":>10}{"first write":>13}{"last write":>12}']
    for n, m in layers:
        rows.append(f'{n:<44}{norms[n]:>10.3f}{"x".join(map(str, m.cache_grid)):>10}'
                    f'{deltas[n][0]:>13.4f}{deltas[n][-1]:>12.4f}')
    logger.info('Cache norms (as loaded) and relative change of each write\n' + '\n'.join(rows))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.bar(range(len(layers)), [norms[n] for n, _ in layers])
    a1.set_xlabel('cached layer index')
    a1.set_ylabel('|cache| (Frobenius)')
    a1.set_title('cache norm as loaded', fontsize=9)
    for i, (n, _) in enumerate(layers):
        a2.plot(range(1, args.steps + 1), deltas[n], marker='.', label=f'{i}', lw=1)
    a2.set_xlabel('training-mode write')
    a2.set_ylabel('|C_new - C_old| / |C_old|')
    a2.set_yscale('log')
    a2.set_title('relative change per write', fontsize=9)
    a2.legend(fontsize=6, ncol=2, title='layer', title_fontsize=7)
    fig.tight_layout()
    fig.savefig(osp.join(args.out_dir, 'cache_inspect.png'), dpi=110)
    with open(osp.join(args.out_dir, 'cache_inspect.json'), 'w') as f:
        json.dump([dict(layer=n, norm=norms[n], grid=list(m.cache_grid), write_deltas=deltas[n])
                   for n, m in layers], f, indent=2)
    logger.info(f'wrote {args.out_dir}/cache_inspect.png and .json')


if __name__ == '__main__':
    main()

"""o_self and o_mem maps of every cached layer beside the image (the paper's
"roles of cached attention" figure).

    python tools/analysis_tools/feature_maps.py CONFIG [--checkpoint CKPT]
        [--img IMAGE_OR_FOLDER] [--out-dir work_dirs/analysis]

Each map is averaged over heads and channels and normalised to [0, 1].
Writes feature_maps.png and feature_maps.json (per-layer map statistics).
"""
import argparse
import json
import os
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

import grc_mmdet  # noqa: E402,F401
from grc_mmdet.analysis import build_detector, find_images, load_images  # noqa: E402
from grc_mmdet.models import grc_layers, set_recording  # noqa: E402


def to_map(heads: torch.Tensor, hw) -> torch.Tensor:
    """(1, H, T, d) -> (h, w) mean over heads and channels, scaled to [0, 1]."""
    m = heads[0].float().mean(dim=(0, 2)).reshape(hw)
    return (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint')
    p.add_argument('--img', help='image file or folder (default: data/shapes/val, first image)')
    p.add_argument('--out-dir', default='work_dirs/analysis')
    args = p.parse_args()
    logger = MMLogger.get_instance('grc_feature_maps', log_level='INFO')
    model = build_detector(args.config, args.checkpoint)
    file = find_images(args.img, 1)[0]
    x = load_images(model, [file])
    set_recording(model, True)
    with torch.no_grad():
        model.backbone(x)
    layers = [(n, m) for n, m in grc_layers(model)]
    if not layers:
        raise SystemExit(f'{args.config} has no GRC layers (is it a cached config?)')
    os.makedirs(args.out_dir, exist_ok=True)
    img = cv2.cvtColor(cv2.imread(file), cv2.COLOR_BGR2RGB)
    fig, axes = plt.subplots(len(layers), 3, figsize=(7.5, 2.0 * len(layers)), squeeze=False)
    stats = []
    for row, (name, m) in zip(axes, layers):
        o_self, o_mem = to_map(m.last_o_self, m.last_hw), to_map(m.last_o_mem, m.last_hw)
        for ax, data, title in zip(row, (img, o_self, o_mem), ('image', 'o_self', 'o_mem')):
            if title == 'image':
                ax.imshow(data)
            else:
                ax.imshow(data, cmap='viridis', vmin=0, vmax=1)
                title = f'{name.replace(".attn.grc", "")}: {title}'
            ax.set_title(title, fontsize=7)
            ax.axis('off')
        corr = torch.corrcoef(torch.stack([o_self.flatten(), o_mem.flatten()]))[0, 1]
        stats.append(dict(layer=name, hw=list(m.last_hw), corr_self_mem=float(corr)))
    fig.tight_layout()
    fig.savefig(osp.join(args.out_dir, 'feature_maps.png'), dpi=110)
    with open(osp.join(args.out_dir, 'feature_maps.json'), 'w') as f:
        json.dump(dict(image=file, layers=stats), f, indent=2)
    set_recording(model, False)
    logger.info('o_self vs o_mem map correlation per layer:\n' + '\n'.join(
        f'  {s["layer"]:<44}{s["corr_self_mem"]:+.3f}' for s in stats))
    logger.info(f'wrote {args.out_dir}/feature_maps.png and .json')


if __name__ == '__main__':
    main()

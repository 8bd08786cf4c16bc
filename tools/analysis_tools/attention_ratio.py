"""Attention ratio sigmoid(lambda^h) of every cached layer (the paper's
"significance of cached attention" figure).

    python tools/analysis_tools/attention_ratio.py CONFIG [--checkpoint CKPT]
        [--out-dir work_dirs/analysis]

Writes attention_ratio.png (per-head scatter and layer mean over layer index)
and attention_ratio.json; logs a table.
"""
import argparse
import json
import os
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

import grc_mmdet  # noqa: E402,F401
from grc_mmdet.analysis import build_detector  # noqa: E402
from grc_mmdet.models import grc_layers  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--checkpoint')
    p.add_argument('--out-dir', default='work_dirs/analysis')
    args = p.parse_args()
    logger = MMLogger.get_instance('grc_attention_ratio', log_level='INFO')
    model = build_detector(args.config, args.checkpoint)
    layers = [(n, m.attention_ratio().tolist()) for n, m in grc_layers(model)]
    if not layers:
        raise SystemExit(f'{args.config} has no GRC layers (is it a cached config?)')
    os.makedirs(args.out_dir, exist_ok=True)
    rows = [f'{"#":>3}  {"layer":<44}{"mean":>7}  per-head sigmoid(lambda)']
    for i, (name, ratios) in enumerate(layers):
        rows.append(f'{i:>3}  {name:<44}{sum(ratios) / len(ratios):>7.3f}  '
                    + ' '.join(f'{r:.3f}' for r in ratios))
    logger.info('Attention ratio per cached layer\n' + '\n'.join(rows))
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(layers)), 3.5))
    for i, (_, ratios) in enumerate(layers):
        ax.scatter([i] * len(ratios), ratios, s=12, color='tab:blue', alpha=0.6,
                   label='heads' if i == 0 else None, zorder=3)
    ax.plot(range(len(layers)), [sum(r) / len(r) for _, r in layers], color='tab:red',
            marker='o', label='mean over heads')
    ax.axhline(0.5, color='gray', lw=0.8, ls='--', label='init (0.5)')
    ax.set_xticks(range(len(layers)))
    ax.set_xlabel('cached layer index')
    ax.set_ylabel('sigmoid($\\lambda^h$)')
    ax.set_ylim(0, 1)
    ax.set_title(f'Attention ratio: {osp.basename(args.config)}', fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(osp.join(args.out_dir, 'attention_ratio.png'), dpi=120)
    with open(osp.join(args.out_dir, 'attention_ratio.json'), 'w') as f:
        json.dump([dict(layer=n, ratios=r) for n, r in layers], f, indent=2)
    logger.info(f'wrote {args.out_dir}/attention_ratio.png and .json')


if __name__ == '__main__':
    main()

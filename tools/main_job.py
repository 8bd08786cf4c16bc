"""The embedded default main job: GRC Shapes -> train a cached Mask R-CNN -> COCO metrics.

    python tools/main_job.py [--config CFG] [--work-dir DIR] [--data-root DIR]
                             [--iters N] [--skip-untrained]

1. writes the generated dataset if ``--data-root`` has none,
2. evaluates the untrained detector (COCO bbox/segm mAP, the reference point),
3. trains it (MMEngine logger: loss, lr, ETA) and evaluates again,
4. writes ``summary.json``, ``summary.md`` and ``predictions.png`` (predictions
   drawn on validation images) under the work dir.
"""
import argparse
import copy
import json
import os.path as osp
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.patches as mpatches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import grc_mmdet  # noqa: E402,F401
from grc_mmdet.datasets import dataset_ready, make_synthetic_coco  # noqa: E402

DEFAULT_CONFIG = 'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py'
COMPARISON = ('This trains one cached config. A comparison with its plain twin (same data '
              'order and initial weights, several seeds) is in docs/results.md; make one with '
              'tools/analysis_tools/cached_vs_plain.py.')
KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')


def scores(metrics: dict) -> dict:
    """COCO scores; CocoMetric returns nothing when a model predicts no box at
    all (an untrained model often does): its mAP is then 0."""
    return {k: float(metrics.get(k, 0.0)) for k in KEYS}


def set_data_root(cfg: Config, root: str) -> None:
    root = root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    for ev in ('val_evaluator', 'test_evaluator'):
        cfg[ev].ann_file = root + 'annotations/val.json'


def build_runner(cfg: Config, work_dir: str, name: str) -> Runner:
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    return Runner.from_cfg(cfg)


def draw_predictions(runner: Runner, out_file: str, num: int = 6, score_thr: float = 0.3):
    """Boxes, masks, labels and scores on ``num`` validation images, as one PNG."""
    model = runner.model.eval()
    classes = runner.test_dataloader.dataset.metainfo['classes']
    colors = plt.cm.tab10(np.arange(len(classes)))
    batch = {'inputs': [], 'data_samples': []}
    for i in range(num):
        item = runner.test_dataloader.dataset[i]
        batch['inputs'].append(item['inputs'])
        batch['data_samples'].append(item['data_samples'])
    with torch.no_grad():
        preds = model.test_step(batch)
    cols = 3
    fig, axes = plt.subplots((num + cols - 1) // cols, cols, figsize=(4 * cols, 3.2 * num / cols))
    for ax, pred in zip(np.ravel(axes), preds):
        img = plt.imread(pred.img_path)
        ax.imshow(img)
        inst = pred.pred_instances
        keep = inst.scores > score_thr
        for box, label, score, mask in zip(inst.bboxes[keep], inst.labels[keep],
                                           inst.scores[keep], inst.masks[keep]):
            c = colors[int(label)]
            overlay = np.zeros((*mask.shape, 4))
            overlay[mask.numpy().astype(bool)] = (*c[:3], 0.45)
            ax.imshow(overlay)
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                            edgecolor=c, linewidth=1.5))
            ax.text(x1, y1, f'{classes[int(label)]} {score:.2f}', color='white', fontsize=7,
                    bbox=dict(facecolor=c, alpha=0.8, pad=1, edgecolor='none'))
        ax.set_title(osp.basename(pred.img_path), fontsize=8)
        ax.axis('off')
    fig.suptitle(f'Predictions (score > {score_thr})')
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=DEFAULT_CONFIG)
    p.add_argument('--work-dir', default='work_dirs/main_job')
    p.add_argument('--data-root', default='data/shapes')
    p.add_argument('--iters', type=int, help='training iterations (default: the config\'s)')
    p.add_argument('--skip-untrained', action='store_true',
                   help='do not evaluate the untrained model first')
    args = p.parse_args()
    t0 = time.time()

    if not dataset_ready(args.data_root):
        print(f'[main job] writing the GRC Shapes dataset to {args.data_root}')
        make_synthetic_coco(args.data_root)
    cfg = Config.fromfile(args.config)
    set_data_root(cfg, args.data_root)
    if args.iters:
        cfg.train_cfg.max_iters = args.iters
        cfg.train_cfg.val_interval = args.iters + 1
        cfg.default_hooks.checkpoint.interval = args.iters
        for sched in cfg.param_scheduler:
            sched.end = min(sched.end, args.iters)
            sched.begin = min(sched.begin, max(args.iters - 1, 0))
    else:
        cfg.train_cfg.val_interval = cfg.train_cfg.max_iters + 1  # evaluate once, below

    summary = dict(config=args.config, iterations=cfg.train_cfg.max_iters)
    if not args.skip_untrained:
        print('[main job] evaluating the untrained detector (reference point)')
        runner = build_runner(cfg, osp.join(args.work_dir, 'untrained'), 'untrained')
        metrics = runner.test()
        summary['untrained'] = scores(metrics)
    print(f'[main job] training {cfg.train_cfg.max_iters} iterations')
    runner = build_runner(cfg, args.work_dir, 'train')
    t_train = time.time()
    runner.train()
    summary['train_seconds'] = round(time.time() - t_train, 1)
    metrics = runner.test()
    summary['trained'] = scores(metrics)
    png = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(runner, png)
    summary['predictions_png'] = png
    summary['total_seconds'] = round(time.time() - t0, 1)
    summary['comparison'] = COMPARISON

    with open(osp.join(args.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    rows = ['| model | bbox mAP | bbox mAP@50 | segm mAP | segm mAP@50 |', '|---|---|---|---|---|']
    for name in ('untrained', 'trained'):
        if name in summary:
            rows.append(f'| {name} | ' + ' | '.join(f'{summary[name][k]:.3f}' for k in KEYS) + ' |')
    text = '\n'.join([f'# Main job: {args.config}', '',
                      f'{summary["iterations"]} iterations, training {summary["train_seconds"]} s, '
                      f'whole job {summary["total_seconds"]} s', ''] + rows +
                     ['', f'Predictions: {png}', '', COMPARISON, ''])
    with open(osp.join(args.work_dir, 'summary.md'), 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()

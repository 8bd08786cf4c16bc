"""The embedded default main job, the whole workflow in miniature on the CPU:
pre-train the cached backbone, hand it on, detect, evaluate.

    python tools/main_job.py [--config CFG] [--cls-config CFG] [--work-dir DIR]
                             [--data-root DIR] [--cls-data-root DIR]
                             [--iters N] [--cls-iters N] [--skip-untrained]

1. writes the GRC Shapes detection dataset if ``--data-root`` has none, and
   the classification dataset (object crops of other generated GRC Shapes
   images, ImageNet layout) if ``--cls-data-root`` has none;
2. pre-trains the detector config's backbone as a classifier (the
   classification path of ``grc_mmdet.classification``; MMEngine's logger
   shows progress) and reports its top-1 on the crops' val split;
3. hands the backbone on to the detector with
   ``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=...)``,
   as a user would with an ImageNet checkpoint, and checks that every tensor
   (caches included) arrived;
4. evaluates the detector before fine-tuning (the reference point), fine-tunes
   it and evaluates again (COCO bbox/segm mAP, and the predicted boxes at score
   >= 0.3 per ground-truth object);
5. writes ``summary.json``, ``summary.md`` and ``predictions.png`` under the
   work dir.

``--config configs/synthetic/mask-rcnn_pvt-nano_fpn_shapes.py`` runs the same
job with the plain backbone (its classifier is pre-trained the same way).
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
from mmdet.structures.bbox import bbox_overlaps  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import grc_mmdet  # noqa: E402,F401
from grc_mmdet.classification import make_shapes_crops  # noqa: E402
from grc_mmdet.datasets import dataset_ready, make_synthetic_coco  # noqa: E402
from grc_mmdet.utils import positive_int  # noqa: E402
from grc_mmdet.utils.pretrain import (CLS_CONFIGS, check_handoff, classifier_config,  # noqa: E402
                                      is_cached, set_data_root, set_iters)

DEFAULT_CONFIG = 'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py'
COMPARISON = ('A comparison of cached and plain (same data order and initial weights, several '
              'seeds) is in docs/results.md; make one with '
              'tools/analysis_tools/cached_vs_plain.py, or run this job with --config '
              'configs/synthetic/mask-rcnn_pvt-nano_fpn_shapes.py.')
KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')
SCORE_THR = 0.3  # boxes a person sees in predictions.png


def scores(metrics: dict) -> dict:
    """COCO scores; CocoMetric returns nothing when a model predicts no box at
    all (an untrained model often does): its mAP is then 0."""
    return {k: float(metrics.get(k, 0.0)) for k in KEYS}


def build_runner(cfg: Config, work_dir: str, name: str) -> Runner:
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    return Runner.from_cfg(cfg)


def xywh_to_xyxy(boxes: list) -> torch.Tensor:
    """COCO's (x, y, w, h) boxes as an (N, 4) tensor of (x1, y1, x2, y2)."""
    xyxy = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    xyxy[:, 2:] += xyxy[:, :2]
    return xyxy


def boxes_per_object(prefix: str, ann_file: str, score_thr: float = SCORE_THR) -> dict:
    """Predicted boxes at score >= ``score_thr`` per ground-truth object, from
    the detections CocoMetric wrote (``prefix.bbox.json``), and what they are:
    ``right`` (IoU >= 0.5 with an object of the same class), ``wrong_class``
    (IoU >= 0.5 with an object, none of its class) or ``loose`` (no object at
    IoU >= 0.5)."""
    with open(prefix + '.bbox.json') as f:
        dets = [d for d in json.load(f) if d['score'] >= score_thr]
    with open(ann_file) as f:
        anns = json.load(f)['annotations']
    counts = dict(right=0, wrong_class=0, loose=0)
    for img in {d['image_id'] for d in dets}:
        mine = [d for d in dets if d['image_id'] == img]
        gts = [a for a in anns if a['image_id'] == img]
        iou = bbox_overlaps(xywh_to_xyxy([d['bbox'] for d in mine]),
                            xywh_to_xyxy([a['bbox'] for a in gts]))
        for d, row in zip(mine, iou.tolist()):
            hits = [a['category_id'] for a, v in zip(gts, row) if v >= 0.5]
            key = 'loose' if not hits else \
                'right' if d['category_id'] in hits else 'wrong_class'
            counts[key] += 1
    return dict(score_thr=score_thr, boxes=len(dets), objects=len(anns),
                boxes_per_object=round(len(dets) / max(len(anns), 1), 3), **counts)


def draw_predictions(runner: Runner, out_file: str, num: int = 6, score_thr: float = SCORE_THR):
    """Boxes, masks, labels and scores on ``num`` validation images, as one PNG."""
    model = runner.model.eval()
    dataset = runner.test_dataloader.dataset
    classes = dataset.metainfo['classes']
    num = min(num, len(dataset))  # a data root with few validation images
    colors = plt.cm.tab10(np.arange(len(classes)))
    batch = {'inputs': [], 'data_samples': []}
    for i in range(num):
        item = dataset[i]
        batch['inputs'].append(item['inputs'])
        batch['data_samples'].append(item['data_samples'])
    with torch.no_grad():
        preds = model.test_step(batch)
    cols = min(3, num)
    rows = (num + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax in np.ravel(axes)[num:]:
        ax.axis('off')
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
    p.add_argument('--config', default=DEFAULT_CONFIG, help='the detector config')
    p.add_argument('--cls-config', help='the pre-training config (default: the cached or plain '
                   'nano classifier, as the detector\'s backbone)')
    p.add_argument('--work-dir', default='work_dirs/main_job')
    p.add_argument('--data-root', default='data/shapes')
    p.add_argument('--cls-data-root', default='data/shapes_cls')
    p.add_argument('--iters', type=positive_int,
                   help='detector fine-tuning iterations (default: the config\'s)')
    p.add_argument('--cls-iters', type=positive_int,
                   help='classifier pre-training iterations (default: the config\'s)')
    p.add_argument('--skip-untrained', action='store_true',
                   help='do not evaluate the detector before fine-tuning')
    args = p.parse_args()
    t0 = time.time()
    seconds = {}

    t = time.time()
    if not dataset_ready(args.data_root):
        print(f'[main job] writing the GRC Shapes dataset to {args.data_root}')
        make_synthetic_coco(args.data_root)
    if not osp.isfile(osp.join(args.cls_data_root, 'meta', 'val.txt')):
        print(f'[main job] writing the GRC Shapes crops (classification) to {args.cls_data_root}')
        make_shapes_crops(args.cls_data_root)
    seconds['data'] = round(time.time() - t, 1)

    det_cfg = Config.fromfile(args.config)
    set_data_root(det_cfg, args.data_root)
    if args.iters is not None:
        set_iters(det_cfg, args.iters)
    else:
        det_cfg.train_cfg.val_interval = det_cfg.train_cfg.max_iters + 1  # evaluated below
    cached = is_cached(det_cfg)
    cls_cfg = classifier_config(args.cls_config or CLS_CONFIGS[cached], det_cfg,
                                args.cls_data_root)
    set_iters(cls_cfg, args.cls_iters or cls_cfg.train_cfg.max_iters)
    summary = dict(config=args.config, cls_config=args.cls_config or CLS_CONFIGS[cached])

    # 1. pre-train the backbone as a classifier
    print(f'[main job] 1/3 pre-training {det_cfg.model.backbone.type} as a classifier, '
          f'{cls_cfg.train_cfg.max_iters} iterations')
    t = time.time()
    runner = build_runner(cls_cfg, osp.join(args.work_dir, 'pretrain'), 'pretrain')
    runner.train()
    top1 = float(runner.test()['accuracy/top1'])
    seconds['pretrain'] = round(time.time() - t, 1)
    ckpt = osp.join(args.work_dir, 'pretrain', f'iter_{cls_cfg.train_cfg.max_iters}.pth')
    summary['classifier'] = dict(iterations=cls_cfg.train_cfg.max_iters, top1=top1,
                                 val_images=len(runner.test_dataloader.dataset))
    print(f'[main job] classifier top-1 on the crops\' val split: {top1:.2f}%')

    # 2. hand the backbone on, as a user would with an ImageNet checkpoint
    det_cfg.model.backbone.init_cfg = dict(type='Pretrained', prefix='backbone.',
                                           checkpoint=ckpt)
    prefix = osp.join(args.work_dir, 'predictions')
    det_cfg.test_evaluator.outfile_prefix = prefix  # detections as JSON, to count boxes
    runner = build_runner(det_cfg, args.work_dir, 'finetune')
    runner.model.init_weights()
    handoff = check_handoff(runner.model.backbone, ckpt)
    summary['handoff'] = handoff
    print(f'[main job] 2/3 hand-off: {handoff["equal"]}/{handoff["backbone_tensors"]} backbone '
          f'tensors equal to the classifier\'s, {handoff["caches_written"]}/{handoff["caches"]} '
          f'caches written')
    if handoff['missing'] or handoff['differ']:
        raise RuntimeError(f'the backbone did not arrive whole: {handoff}')

    # 3. fine-tune and evaluate the detector
    if not args.skip_untrained:
        print('[main job] evaluating the detector before fine-tuning (reference point)')
        summary['untrained'] = scores(runner.test())
    print(f'[main job] 3/3 fine-tuning the detector, {det_cfg.train_cfg.max_iters} iterations '
          f'(the weights were initialised and loaded above: MMEngine\'s "init_weights ... called '
          f'more than once" below means they are kept)')
    summary['iterations'] = det_cfg.train_cfg.max_iters
    t = time.time()
    runner.train()
    seconds['finetune'] = round(time.time() - t, 1)
    summary['trained'] = scores(runner.test())
    summary['boxes'] = boxes_per_object(prefix, det_cfg.test_evaluator.ann_file)
    png = osp.join(args.work_dir, 'predictions.png')
    draw_predictions(runner, png)
    summary['predictions_png'] = png
    seconds['total'] = round(time.time() - t0, 1)
    summary['seconds'] = seconds
    summary['comparison'] = COMPARISON
    write_summary(summary, args.work_dir)


def write_summary(summary: dict, work_dir: str) -> None:
    with open(osp.join(work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    rows = ['| detector | bbox mAP | bbox mAP@50 | segm mAP | segm mAP@50 |',
            '|---|---|---|---|---|']
    for name, label in (('untrained', 'pre-trained backbone, before fine-tuning'),
                        ('trained', f'fine-tuned, {summary["iterations"]} iterations')):
        if name in summary:
            rows.append(f'| {label} | ' + ' | '.join(f'{summary[name][k]:.3f}' for k in KEYS)
                        + ' |')
    cls, hand, boxes, sec = (summary[k] for k in ('classifier', 'handoff', 'boxes', 'seconds'))
    text = '\n'.join([
        f'# Main job: {summary["config"]}', '',
        f'1. Pre-training ({summary["cls_config"]}, {cls["iterations"]} iterations): '
        f'top-1 {cls["top1"]:.2f}% on {cls["val_images"]} val crops, {sec["pretrain"]} s.',
        f'2. Hand-off (init_cfg Pretrained, prefix backbone.): {hand["equal"]}/'
        f'{hand["backbone_tensors"]} tensors equal, {hand["caches_written"]}/{hand["caches"]} '
        f'caches written.',
        f'3. Fine-tuning: {sec["finetune"]} s.', ''] + rows + [
        '', f'Boxes at score >= {boxes["score_thr"]}: {boxes["boxes"]} for {boxes["objects"]} '
        f'objects, {boxes["boxes_per_object"]} per object (right class {boxes["right"]}, '
        f'wrong class {boxes["wrong_class"]}, loose {boxes["loose"]}: IoU >= 0.5 with an '
        f'object of its class, of another class only, or with none).', '',
        f'Data {sec["data"]} s, whole job {sec["total"]} s. Predictions: '
        f'{summary["predictions_png"]}', '', summary['comparison'], ''])
    with open(osp.join(work_dir, 'summary.md'), 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()

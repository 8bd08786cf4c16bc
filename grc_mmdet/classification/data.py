"""ImageNet-1k in its two usual layouts, an accuracy metric, and a generated
ImageNet-layout dataset for tests and smoke runs."""
import os
import os.path as osp
from typing import List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmdet.registry import DATASETS, METRICS
from mmengine.dataset import BaseDataset
from mmengine.evaluator import BaseMetric

from .model import topk_accuracy

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.webp')


@DATASETS.register_module()
class ImageNetDataset(BaseDataset):
    """ImageNet in the folder layout (``data_prefix/<class>/<image>``, classes
    sorted by folder name) or the annotation-file layout (``ann_file`` with one
    ``relative/path label`` per line, paths relative to ``data_prefix``).

    Args:
        data_root (str): root folder.
        data_prefix (str): image folder under ``data_root``.
        ann_file (str): annotation file under ``data_root``; '' for folders.
        classes (Sequence[str] | None): class names (annotation-file layout).
        **kwargs: ``pipeline``, ``test_mode`` ... of MMEngine's BaseDataset.
    """

    def __init__(self, data_root: str = '', data_prefix: str = '', ann_file: str = '',
                 classes: Optional[Sequence[str]] = None, **kwargs):
        self._classes = list(classes) if classes else None
        super().__init__(data_root=data_root, data_prefix=dict(img_path=data_prefix),
                         ann_file=ann_file, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = self.data_prefix['img_path']
        if self.ann_file:
            data = []
            with open(self.ann_file) as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    parts = line.rsplit(maxsplit=1)
                    if len(parts) != 2 or not parts[1].lstrip('-').isdigit():
                        raise ValueError(f'{self.ann_file}:{n}: expected "path label", '
                                         f'got {line.strip()!r}')
                    data.append(dict(img_path=osp.join(root, parts[0]), gt_label=int(parts[1])))
            classes = self._classes or [str(i) for i in range(
                max(d['gt_label'] for d in data) + 1)]
        else:
            if not osp.isdir(root):
                raise FileNotFoundError(f'ImageNetDataset: image folder {root} not found')
            classes = sorted(d for d in os.listdir(root) if osp.isdir(osp.join(root, d)))
            data = [dict(img_path=osp.join(root, c, f), gt_label=i)
                    for i, c in enumerate(classes)
                    for f in sorted(os.listdir(osp.join(root, c)))
                    if f.lower().endswith(IMG_EXTENSIONS)]
        if not data:
            raise ValueError(f'ImageNetDataset: no images under {root}')
        self._metainfo['classes'] = tuple(classes)
        return data


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy (percent), ``topk`` = (1, 5) by default."""

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1, 5), **kwargs):
        super().__init__(**kwargs)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((s['pred_score'].cpu(), int(s['gt_label']['label'][0])))

    def compute_metrics(self, results: list) -> dict:
        scores = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        return topk_accuracy(scores, labels, self.topk)


def make_synthetic_imagenet(root: str, per_class: int = 8, val_per_class: int = 2,
                            size: int = 64, seed: int = 0) -> None:
    """A small ImageNet-layout dataset of the GRC Shapes classes: one shape per
    image; ``train/<class>/`` (folder layout) and ``val/`` with
    ``meta/val.txt`` (annotation-file layout). Never overwrites."""
    from ..datasets.synthetic import CLASSES, _background, _shape_polygon
    if osp.isdir(root) and os.listdir(root):
        raise FileExistsError(f'make_synthetic_imagenet never overwrites: {root} is not empty')
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'))
    lines = []
    for split, n in (('train', per_class), ('val', val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = osp.join(root, split, name) if split == 'train' else osp.join(root, split)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                img = _background(rng, size, size)
                r = rng.uniform(0.25, 0.45) * size
                pts = _shape_polygon(label, size / 2 + rng.uniform(-r, r) / 3,
                                     size / 2 + rng.uniform(-r, r) / 3, r, rng.uniform(0, 6.3))
                cv2.fillPoly(img, [pts], tuple(int(v) for v in rng.integers(0, 256, 3)))
                fname = f'{name}_{i:04d}.png'
                cv2.imwrite(osp.join(folder, fname), img)
                if split == 'val':
                    lines.append(f'{fname} {label}')
    with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')

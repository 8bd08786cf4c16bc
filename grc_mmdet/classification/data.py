"""ImageNet-1k in its two usual layouts, an accuracy metric, and a generated
ImageNet-layout dataset for tests and smoke runs."""
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

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

    In the folder layout, hidden folders (``.ipynb_checkpoints``) are skipped
    and a class folder without images is an error naming it (it would shift
    every later label). Every label must be in ``[0, K)``, K the number of
    classes.

    Args:
        data_root (str): root folder.
        data_prefix (str): image folder under ``data_root``.
        ann_file (str): annotation file under ``data_root``; '' for folders.
        classes (Sequence[str] | None): class names (annotation-file layout).
        num_classes (int | None): K, checked against ``classes`` or the class
            folders when those are given. In the annotation-file layout
            without ``classes`` or ``num_classes``, K is the largest label + 1,
            and may not exceed the number of images.
        **kwargs: ``pipeline``, ``test_mode`` ... of MMEngine's BaseDataset.
    """

    def __init__(self, data_root: str = '', data_prefix: str = '', ann_file: str = '',
                 classes: Optional[Sequence[str]] = None, num_classes: Optional[int] = None,
                 **kwargs):
        if num_classes is not None and (isinstance(num_classes, bool) or
                                        not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f'ImageNetDataset: num_classes must be a positive int, '
                             f'got {num_classes!r}')
        self._classes = list(classes) if classes else None
        self._num_classes = num_classes
        super().__init__(data_root=data_root, data_prefix=dict(img_path=data_prefix),
                         ann_file=ann_file, **kwargs)

    def _read_ann_file(self, root: str) -> List[dict]:
        data = []
        with open(self.ann_file) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].isdigit():
                    raise ValueError(f'{self.ann_file}:{n}: expected "path label" with a '
                                     f'label >= 0, got {line.strip()!r}')
                data.append(dict(img_path=osp.join(root, parts[0]), gt_label=int(parts[1])))
        if not data:
            raise ValueError(f'ImageNetDataset: no images: {self.ann_file} lists none')
        return data

    def _read_folders(self, root: str) -> Tuple[List[dict], List[str]]:
        if not osp.isdir(root):
            raise FileNotFoundError(f'ImageNetDataset: image folder {root} not found')
        classes = sorted(d for d in os.listdir(root)
                         if osp.isdir(osp.join(root, d)) and not d.startswith('.'))
        data = []
        for i, c in enumerate(classes):
            files = [f for f in sorted(os.listdir(osp.join(root, c)))
                     if f.lower().endswith(IMG_EXTENSIONS)]
            if not files:
                raise ValueError(
                    f'ImageNetDataset: class folder {osp.join(root, c)} holds no image '
                    f'({", ".join(IMG_EXTENSIONS)}); it would become class {i} and shift the '
                    f'labels of every later class. Remove it.')
            data += [dict(img_path=osp.join(root, c, f), gt_label=i) for f in files]
        if not data:
            raise ValueError(f'ImageNetDataset: no images: no class folder under {root}')
        return data, classes

    def load_data_list(self) -> List[dict]:
        root = self.data_prefix['img_path']
        if self.ann_file:
            data = self._read_ann_file(root)
            classes = self._classes
            if classes is None:
                num = self._num_classes
                if num is None:
                    num = max(d['gt_label'] for d in data) + 1
                    if num > len(data):
                        raise ValueError(
                            f'ImageNetDataset: {self.ann_file} has label {num - 1} for '
                            f'{len(data)} images; give the class names (classes=...) or '
                            f'num_classes=K')
                classes = [str(i) for i in range(num)]
        else:
            data, classes = self._read_folders(root)
        if self._num_classes is not None and self._num_classes != len(classes):
            raise ValueError(f'ImageNetDataset: num_classes={self._num_classes} but '
                             f'{len(classes)} classes were found ({root})')
        for d in data:
            if d['gt_label'] >= len(classes):
                raise ValueError(f'ImageNetDataset: {d["img_path"]} has label '
                                 f'{d["gt_label"]}, but there are {len(classes)} classes')
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
    # labels as the folder layout reads train/: classes sorted by folder name
    folder_label = {name: i for i, name in enumerate(sorted(CLASSES))}
    for split, n in (('train', per_class), ('val', val_per_class)):
        for shape, name in enumerate(CLASSES):
            label = folder_label[name]
            folder = osp.join(root, split, name) if split == 'train' else osp.join(root, split)
            os.makedirs(folder, exist_ok=True)
            for i in range(n):
                img = _background(rng, size, size)
                r = rng.uniform(0.25, 0.45) * size
                pts = _shape_polygon(shape, size / 2 + rng.uniform(-r, r) / 3,
                                     size / 2 + rng.uniform(-r, r) / 3, r, rng.uniform(0, 6.3))
                cv2.fillPoly(img, [pts], tuple(int(v) for v in rng.integers(0, 256, 3)))
                fname = f'{name}_{i:04d}.png'
                cv2.imwrite(osp.join(folder, fname), img)
                if split == 'val':
                    lines.append(f'{fname} {label}')
    with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def make_shapes_crops(root: str, num_train: int = 600, num_val: int = 100, size: int = 64,
                      margin: float = 0.25, seed: int = 1, img_size=(192, 256)) -> dict:
    """An ImageNet-layout classification dataset from the GRC Shapes world:
    GRC Shapes images are generated (``seed``, never the detection split's
    images), and every object is cut out with a ``margin`` of context (its
    textured background, and the shapes that occlude it or that it occludes),
    made square and resized to ``size``. ``train/<class>/`` (folder layout)
    and ``val/`` with ``meta/val.txt`` (labels as the folder layout reads
    ``train/``). Never overwrites. Returns the number of crops per split."""
    import json
    import shutil
    import tempfile

    from ..datasets.synthetic import CLASSES, make_synthetic_coco
    if osp.isdir(root) and os.listdir(root):
        raise FileExistsError(f'make_shapes_crops never overwrites: {root} is not empty')
    folder_label = {name: i for i, name in enumerate(sorted(CLASSES))}
    counts = {}
    with tempfile.TemporaryDirectory() as src:
        make_synthetic_coco(src, num_train, num_val, img_size, seed=seed)
        os.makedirs(osp.join(root, 'meta'))
        for split in ('train', 'val'):
            with open(osp.join(src, 'annotations', f'{split}.json')) as f:
                coco = json.load(f)
            files = {im['id']: im['file_name'] for im in coco['images']}
            lines, images = [], {}
            for ann in coco['annotations']:
                name = CLASSES[ann['category_id'] - 1]
                img = images.get(ann['image_id'])
                if img is None:
                    img = images[ann['image_id']] = cv2.imread(
                        osp.join(src, split, files[ann['image_id']]))
                x, y, w, h = ann['bbox']
                side = max(w, h) * (1 + 2 * margin)
                cx, cy = x + w / 2, y + h / 2
                x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
                x1, y1 = int(round(cx + side / 2)), int(round(cy + side / 2))
                pad = max(0, -x0, -y0, x1 - img.shape[1], y1 - img.shape[0])
                padded = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
                patch = padded[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
                patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
                fname = f'{name}_{ann["id"]:05d}.png'
                folder = osp.join(root, split, name) if split == 'train' else osp.join(root, split)
                os.makedirs(folder, exist_ok=True)
                cv2.imwrite(osp.join(folder, fname), patch)
                lines.append(f'{fname} {folder_label[name]}')
            if split == 'val':
                with open(osp.join(root, 'meta', 'val.txt'), 'w') as f:
                    f.write('\n'.join(lines) + '\n')
            counts[split] = len(lines)
        shutil.rmtree(src, ignore_errors=True)
    return counts

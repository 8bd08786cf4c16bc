"""A seeded, generated COCO-format instance-segmentation dataset ("GRC Shapes").

Images hold several classes of filled shapes with real instance masks, varied
sizes and colours, occlusions (later shapes cover earlier ones; masks are
updated, heavily hidden instances dropped) and textured backgrounds. It needs
no download and trains a small detector on CPU in minutes.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from pycocotools import mask as mask_utils

CLASSES = ('circle', 'square', 'triangle', 'star')


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient + noise + random lines; three styles so backgrounds vary."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    grad = (c0[None] * (1 - t[:, None]) + c1[None] * t[:, None])
    img = np.broadcast_to(grad[None] if len(t) == w else grad[:, None], (h, w, 3)).copy()
    img += rng.normal(0, rng.uniform(3, 20), img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, 8)):
        p1 = tuple(int(v) for v in rng.integers(0, [w, h]))
        p2 = tuple(int(v) for v in rng.integers(0, [w, h]))
        cv2.line(img, p1, p2, tuple(int(v) for v in rng.integers(0, 256, 3)),
                 int(rng.integers(1, 3)))
    return img


def _shape_polygon(label: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if label == 0:  # circle
        n = 48
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radii = np.full(n, r)
    elif label == 1:  # square
        ang = angle + np.array([0.25, 0.75, 1.25, 1.75]) * np.pi
        radii = np.full(4, r)
    elif label == 2:  # triangle
        ang = angle + np.array([0, 2 / 3, 4 / 3]) * np.pi
        radii = np.full(3, r)
    else:  # five-pointed star
        ang = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    pts = np.stack([cx + radii * np.cos(ang), cy + radii * np.sin(ang)], 1)
    return np.round(pts).astype(np.int32)


def _make_image(rng: np.random.Generator, h: int, w: int, max_objects: int):
    img = _background(rng, h, w)
    masks, labels = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(0, len(CLASSES)))
        r = rng.uniform(0.06, 0.22) * min(h, w)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [_shape_polygon(label, cx, cy, r, rng.uniform(0, 2 * math.pi))], 1)
        if m.sum() < 30:
            continue
        color = rng.integers(0, 256, 3)
        shade = np.clip(color[None, None] + rng.normal(0, 8, (h, w, 3)), 0, 255)
        img[m > 0] = shade[m > 0].astype(np.uint8)
        masks = [prev & (1 - m) for prev in masks]  # the new shape occludes older ones
        masks.append(m)
        labels.append(label)
    return img, masks, labels


def make_synthetic_coco(root: str, num_train: int = 400, num_val: int = 80,
                        img_size=(192, 256), max_objects: int = 5, seed: int = 0) -> Dict:
    """Write ``root/{train,val}/*.png`` and ``root/annotations/{train,val}.json``.

    Args:
        root: output folder.
        num_train / num_val: images per split.
        img_size: (height, width).
        max_objects: at most this many shapes per image (at least one).
        seed: the same seed gives byte-identical annotations.

    Returns:
        dict: split -> annotation file path.

    Raises:
        FileExistsError: if ``root`` already holds images or annotations.
    """
    existing = [osp.join(root, d) for d in ('train', 'val', 'annotations')
                if osp.isdir(osp.join(root, d)) and os.listdir(osp.join(root, d))]
    if existing:
        raise FileExistsError(
            f'make_synthetic_coco never overwrites files, and {existing} already hold some'
            f'{"" if dataset_ready(root) else " (but the annotation files are incomplete)"}; '
            f'choose an empty folder or delete these first')
    h, w = img_size
    out = {}
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, num, split_seed in (('train', num_train, seed), ('val', num_val, seed + 10007)):
        rng = np.random.default_rng(split_seed)
        os.makedirs(osp.join(root, split), exist_ok=True)
        images: List[dict] = []
        anns: List[dict] = []
        for i in range(num):
            img, masks, labels = _make_image(rng, h, w, max_objects)
            name = f'{i:05d}.png'
            cv2.imwrite(osp.join(root, split, name), img)
            images.append(dict(id=i + 1, file_name=name, height=h, width=w))
            for m, label in zip(masks, labels):
                if m.sum() < 20:  # almost fully hidden
                    continue
                rle = mask_utils.encode(np.asfortranarray(m))
                x, y, bw, bh = mask_utils.toBbox(rle).tolist()
                rle['counts'] = rle['counts'].decode('ascii')
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=label + 1,
                                 segmentation=rle, area=float(mask_utils.area(rle)),
                                 bbox=[x, y, bw, bh], iscrowd=0))
        coco = dict(images=images, annotations=anns,
                    categories=[dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)],
                    info=dict(description='grc-mmdet GRC Shapes', seed=seed))
        path = osp.join(root, 'annotations', f'{split}.json')
        with open(path, 'w') as f:
            json.dump(coco, f)
        out[split] = path
    return out


def dataset_ready(root: str) -> bool:
    """Both annotation files exist under ``root``."""
    return all(osp.isfile(osp.join(root, 'annotations', f'{s}.json')) for s in ('train', 'val'))


@DATASETS.register_module()
class GRCShapesDataset(CocoDataset):
    """The generated GRC Shapes dataset: MMDet's CocoDataset with its classes,
    and an error that says how to make the data when it is missing."""

    METAINFO = dict(classes=CLASSES,
                    palette=[(220, 20, 60), (0, 128, 255), (0, 160, 0), (255, 160, 0)])

    def load_data_list(self):
        if not osp.isfile(self.ann_file):
            root = self.data_root or osp.dirname(osp.dirname(self.ann_file))
            raise FileNotFoundError(
                f'GRC Shapes annotations not found at {self.ann_file}. This dataset is '
                f'generated, not downloaded: write it with `python '
                f'tools/misc/make_shapes_dataset.py --out {root}` (from an installed package: '
                f'`python $(python -c "import grc_mmdet.utils as u; print(u.mim_root())")'
                f'/tools/misc/make_shapes_dataset.py --out {root}`), or point GRC_SHAPES_ROOT '
                f'at it.')
        return super().load_data_list()

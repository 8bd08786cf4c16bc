"""Build a detector from a config (optionally loading a checkpoint) and feed it images."""
import glob
import os.path as osp
from typing import List, Optional

import cv2
import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.runner import load_checkpoint


def build_detector(config: str, checkpoint: Optional[str] = None, device: str = 'cpu',
                   cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Detector of ``config`` with backbone pretrained weights disabled; weights
    from ``checkpoint`` if given."""
    register_all_modules()
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu')
    else:
        model.init_weights()
    model.cfg = cfg
    return model.to(device).eval()


def find_images(path: Optional[str], limit: int) -> List[str]:
    """Image files: ``path`` itself, the images in folder ``path``, or (None) the
    GRC Shapes validation images under data/shapes/val."""
    if path is None:
        path = 'data/shapes/val'
    if osp.isfile(path):
        return [path]
    files = sorted(f for ext in ('png', 'jpg', 'jpeg')
                   for f in glob.glob(osp.join(path, f'*.{ext}')))
    if not files:
        raise FileNotFoundError(f'no images at {path} (make the dataset with '
                                f'tools/misc/make_shapes_dataset.py or pass --img)')
    return files[:limit]


def load_images(model: torch.nn.Module, files: List[str], size=None) -> torch.Tensor:
    """(B, 3, H, W) normalised by the model's data preprocessor; all images
    resized to ``size`` (h, w) or to the first image's size."""
    imgs = []
    for f in files:
        img = cv2.imread(f)
        if img is None:
            raise ValueError(f'cannot read image {f}')
        if size is None:
            size = img.shape[:2]
        img = cv2.resize(img, (size[1], size[0]))
        imgs.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))))
    data = model.data_preprocessor(dict(inputs=imgs), False)
    return data['inputs']

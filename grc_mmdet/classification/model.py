"""An MMEngine classifier around any backbone (cached or plain), with the
DeiT-style batch augmentations: label smoothing, Mixup and CutMix.

Its checkpoint keeps the backbone under ``backbone.``, so a detector loads it
with ``init_cfg=dict(type='Pretrained', prefix='backbone.', checkpoint=...)``.
"""
import math
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModel, ImgDataPreprocessor


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) class indices -> (B, K) targets: 1 - eps + eps/K on the class, eps/K elsewhere."""
    off = smoothing / num_classes
    target = torch.full((labels.numel(), num_classes), off, device=labels.device)
    return target.scatter_(1, labels.view(-1, 1), 1. - smoothing + off)


def mixup(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor):
    """x' = lam x + (1 - lam) x[perm], the same for the soft targets y."""
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def cutmix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: torch.Tensor,
           rng: np.random.Generator):
    """Paste a box of area fraction about (1 - lam) from x[perm]; the targets
    mix by the exact fraction of pixels kept."""
    h, w = x.shape[-2:]
    cut = np.sqrt(1. - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
    x1, x2 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
    x = x.clone()
    x[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
    kept = 1. - (y2 - y1) * (x2 - x1) / (h * w)
    return x, kept * y + (1 - kept) * y[perm]


@MODELS.register_module()
class ClsDataPreprocessor(ImgDataPreprocessor):
    """Normalise images and make soft targets; in training, apply Mixup or
    CutMix to the batch (one of the two, chosen with ``switch_prob``).

    Args:
        num_classes (int): K.
        mean, std, bgr_to_rgb: as ``ImgDataPreprocessor``.
        label_smoothing (float): eps of the one-hot targets. Default 0.
        mixup_alpha (float): Beta(alpha, alpha) for Mixup; 0 disables. Default 0.
        cutmix_alpha (float): Beta(alpha, alpha) for CutMix; 0 disables. Default 0.
        switch_prob (float): probability of CutMix when both are on. Default 0.5.
    """

    def __init__(self, num_classes: int, mean=(123.675, 116.28, 103.53),
                 std=(58.395, 57.12, 57.375), bgr_to_rgb=True, label_smoothing=0.,
                 mixup_alpha=0., cutmix_alpha=0., switch_prob=0.5, **kwargs):
        super().__init__(mean=mean, std=std, bgr_to_rgb=bgr_to_rgb, **kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f'num_classes must be a positive int, got {num_classes!r}')
        if not 0 <= label_smoothing < 1:
            raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}')
        for name, alpha in (('mixup_alpha', mixup_alpha), ('cutmix_alpha', cutmix_alpha)):
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
                    not math.isfinite(alpha) or alpha < 0:
                raise ValueError(f'{name} must be a finite number >= 0 (0 disables it), '
                                 f'got {alpha!r}')
        if isinstance(switch_prob, bool) or not isinstance(switch_prob, (int, float)) or \
                not 0 <= switch_prob <= 1:
            raise ValueError(f'switch_prob must be a probability in [0, 1], got {switch_prob!r}')
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.mixup_alpha, self.cutmix_alpha, self.switch_prob = \
            mixup_alpha, cutmix_alpha, switch_prob
        self.rng = np.random.default_rng()

    def forward(self, data: dict, training: bool = False) -> dict:
        data = super().forward(data, training)
        samples = data['data_samples']
        labels = torch.cat([s.gt_label.label for s in samples])
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f'ClsDataPreprocessor: labels must be in [0, {self.num_classes}) '
                             f'(num_classes={self.num_classes}), got {labels.tolist()}')
        labels = labels.to(data['inputs'].device)
        target = smooth_one_hot(labels, self.num_classes, self.label_smoothing)
        x = data['inputs']
        if training and (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and len(samples) > 1:
            use_cutmix = self.cutmix_alpha > 0 and (
                self.mixup_alpha <= 0 or self.rng.random() < self.switch_prob)
            alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            lam = float(self.rng.beta(alpha, alpha))
            perm = torch.from_numpy(self.rng.permutation(len(samples))).to(x.device)
            x, target = cutmix(x, target, lam, perm, self.rng) if use_cutmix else \
                mixup(x, target, lam, perm)
        for s, t in zip(samples, target):
            s.gt_score = t
        data['inputs'] = x
        return data


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Backbone -> global average pool of its last output -> linear head.

    Args:
        backbone (dict): any backbone config, e.g. a cached PVT.
        num_classes (int): K.
        in_channels (int): channels of the backbone's last output.
        data_preprocessor (dict | None): a ClsDataPreprocessor config; its
            ``num_classes`` defaults to the classifier's.
        init_cfg (dict | None): MMEngine init config.
    """

    def __init__(self, backbone: dict, num_classes: int, in_channels: int,
                 data_preprocessor: Optional[dict] = None, init_cfg=None):
        if isinstance(data_preprocessor, dict) and \
                data_preprocessor.get('type') == 'ClsDataPreprocessor':
            data_preprocessor = dict(data_preprocessor)
            data_preprocessor.setdefault('num_classes', num_classes)
            if data_preprocessor['num_classes'] != num_classes:
                raise ValueError(f'ImageClassifier: num_classes={num_classes} but its '
                                 f'data_preprocessor has num_classes='
                                 f'{data_preprocessor["num_classes"]}')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = nn.Linear(in_channels, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.num_classes = num_classes

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(inputs)[-1]
        return feat.mean((2, 3))

    def forward(self, inputs: torch.Tensor, data_samples: Optional[List] = None,
                mode: str = 'tensor'):
        logits = self.head(self.extract_feat(inputs))
        if mode == 'tensor':
            return logits
        if mode == 'loss':
            target = torch.stack([s.gt_score for s in data_samples]).to(logits.dtype)
            loss = torch.sum(-target * F.log_softmax(logits.float(), -1), -1).mean()
            return dict(loss_cls=loss)
        if mode == 'predict':
            scores = logits.float().softmax(-1)
            for s, p in zip(data_samples, scores):
                s.pred_score = p
            return data_samples
        raise ValueError(f'unknown mode {mode!r}')


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor,
                  topk: Sequence[int] = (1, 5)) -> dict:
    """Percent of samples whose label is among the k highest scores."""
    k_max = min(max(topk), scores.shape[1])
    hit = scores.topk(k_max, dim=1).indices == labels.view(-1, 1)
    return {f'top{k}': float(hit[:, :min(k, k_max)].any(1).float().mean() * 100) for k in topk}

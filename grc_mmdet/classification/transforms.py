"""The ImageNet training transforms the DeiT/PVT/Swin recipe needs and mmcv
lacks: RandomResizedCrop, RandAugment ('rand-m9-mstd0.5-inc1'), RandomErasing,
ResizeEdge, and PackClsInputs. Images are HWC uint8 numpy arrays (BGR, as
mmcv loads them); every transform is registered in MMDet's TRANSFORMS."""
import math
import random
from typing import Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmengine.structures import LabelData

from .structures import ClsDataSample


def _rng(seed_from_np: bool = True) -> random.Random:
    return random.Random(np.random.randint(2**31)) if seed_from_np else random.Random()


def sample_crop(h: int, w: int, scale: Tuple[float, float], ratio: Tuple[float, float],
                rng: random.Random, attempts: int = 10) -> Tuple[int, int, int, int]:
    """(top, left, height, width) of a crop covering a fraction in ``scale`` of
    the image with width/height in ``ratio`` (log-uniform); after ``attempts``
    misses, the largest centred crop with its ratio clamped to ``ratio``."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Crop a random area (``scale`` of the image) with a random aspect ratio
    (``ratio``, log-uniform), then resize it to ``size`` (Inception/DeiT).

    Args:
        size (int | tuple[int, int]): output (h, w).
        scale (tuple[float, float]): range of the crop's area fraction.
        ratio (tuple[float, float]): range of the crop's width / height.
        interpolation (str): mmcv interpolation. Default 'bicubic'.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3. / 4., 4. / 3.),
                 interpolation='bicubic'):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f'RandomResizedCrop: bad scale {scale} or ratio {ratio}')
        self.scale, self.ratio, self.interpolation = tuple(scale), tuple(ratio), interpolation

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, ch, cw = sample_crop(*img.shape[:2], self.scale, self.ratio, _rng())
        crop = img[top:top + ch, left:left + cw]
        results['img'] = mmcv.imresize(crop, self.size[::-1], interpolation=self.interpolation)
        results['img_shape'] = self.size
        return results


@TRANSFORMS.register_module()
class ResizeEdge(BaseTransform):
    """Resize so that the short edge is ``scale`` (aspect kept): 256 before a
    224 centre crop in the ImageNet evaluation pipeline."""

    def __init__(self, scale: int, interpolation: str = 'bicubic'):
        self.scale, self.interpolation = scale, interpolation

    def transform(self, results: dict) -> dict:
        h, w = results['img'].shape[:2]
        k = self.scale / min(h, w)
        size = (max(1, int(round(w * k))), max(1, int(round(h * k))))
        results['img'] = mmcv.imresize(results['img'], size, interpolation=self.interpolation)
        results['img_shape'] = results['img'].shape[:2]
        return results


# RandAugment ops of the 'increasing' set; magnitude m in [0, 10] maps to
# the op's strength, with a random sign for the signed ones.
def _signed(v: float, rng: random.Random) -> float:
    return v if rng.random() < 0.5 else -v


_FILL = (128, 128, 128)
RAND_AUGMENT_OPS = {
    'AutoContrast': lambda img, m, r: mmcv.auto_contrast(img),
    'Equalize': lambda img, m, r: mmcv.imequalize(img),
    'Invert': lambda img, m, r: mmcv.iminvert(img),
    'Rotate': lambda img, m, r: mmcv.imrotate(img, _signed(30. * m / 10, r), border_value=_FILL),
    'Posterize': lambda img, m, r: mmcv.posterize(img, max(1, 4 - int(4 * m / 10))),
    'Solarize': lambda img, m, r: mmcv.solarize(img, 256 - int(256 * m / 10)),
    'SolarizeAdd': lambda img, m, r: np.where(
        img < 128, np.clip(img.astype(np.int16) + int(110 * m / 10), 0, 255), img
    ).astype(np.uint8),
    'Color': lambda img, m, r: mmcv.adjust_color(img, 1. + _signed(0.9 * m / 10, r)),
    'Contrast': lambda img, m, r: mmcv.adjust_contrast(img, 1. + _signed(0.9 * m / 10, r)),
    'Brightness': lambda img, m, r: mmcv.adjust_brightness(img, 1. + _signed(0.9 * m / 10, r)),
    'Sharpness': lambda img, m, r: mmcv.adjust_sharpness(img, 1. + _signed(0.9 * m / 10, r)),
    'ShearX': lambda img, m, r: mmcv.imshear(img, _signed(0.3 * m / 10, r), 'horizontal',
                                             border_value=_FILL),
    'ShearY': lambda img, m, r: mmcv.imshear(img, _signed(0.3 * m / 10, r), 'vertical',
                                             border_value=_FILL),
    'TranslateX': lambda img, m, r: mmcv.imtranslate(
        img, _signed(0.45 * m / 10, r) * img.shape[1], 'horizontal', border_value=_FILL),
    'TranslateY': lambda img, m, r: mmcv.imtranslate(
        img, _signed(0.45 * m / 10, r) * img.shape[0], 'vertical', border_value=_FILL),
}


@TRANSFORMS.register_module()
class ImageNetRandAugment(BaseTransform):
    """RandAugment as in DeiT ('rand-m9-mstd0.5-inc1'): ``num_ops`` ops drawn
    uniformly, each applied with probability ``prob`` at a magnitude drawn
    from N(``magnitude``, ``magnitude_std``) clipped to [0, 10]; the
    'increasing' op set (stronger with the magnitude).

    Args:
        num_ops (int): ops per image. Default 2.
        magnitude (float): mean magnitude in [0, 10]. Default 9.
        magnitude_std (float): its standard deviation. Default 0.5.
        prob (float): probability of applying each drawn op. Default 0.5.
        ops (Sequence[str] | None): subset of ``RAND_AUGMENT_OPS``; None: all.
    """

    def __init__(self, num_ops: int = 2, magnitude: float = 9., magnitude_std: float = 0.5,
                 prob: float = 0.5, ops: Optional[Sequence[str]] = None):
        unknown = sorted(set(ops or ()) - set(RAND_AUGMENT_OPS))
        if unknown:
            raise ValueError(f'RandAugment: unknown ops {unknown}; '
                             f'known: {sorted(RAND_AUGMENT_OPS)}')
        if not 0 <= magnitude <= 10:
            raise ValueError(f'RandAugment: magnitude must be in [0, 10], got {magnitude}')
        self.num_ops, self.magnitude, self.magnitude_std, self.prob = \
            num_ops, magnitude, magnitude_std, prob
        self.ops = list(ops or RAND_AUGMENT_OPS)

    def sample(self, rng: random.Random):
        """[(op name, magnitude)] to apply to one image."""
        out = []
        for name in rng.choices(self.ops, k=self.num_ops):
            if rng.random() < self.prob:
                m = rng.gauss(self.magnitude, self.magnitude_std) if self.magnitude_std > 0 \
                    else self.magnitude
                out.append((name, min(10., max(0., m))))
        return out

    def transform(self, results: dict) -> dict:
        rng = _rng()
        img = results['img']
        for name, m in self.sample(rng):
            img = RAND_AUGMENT_OPS[name](img, m, rng)
        results['img'] = np.ascontiguousarray(img, dtype=np.uint8)
        return results


@TRANSFORMS.register_module()
class ImageNetRandomErasing(BaseTransform):
    """With probability ``prob``, replace a random rectangle (area fraction in
    ``scale``, aspect in ``ratio``) with per-pixel normal noise ('pixel' mode
    of DeiT), on the uint8 image before normalisation.

    Args:
        prob (float): probability. Default 0.25.
        scale (tuple[float, float]): erased area fraction. Default (0.02, 1/3).
        ratio (tuple[float, float]): erased aspect. Default (0.3, 3.3).
    """

    def __init__(self, prob=0.25, scale=(0.02, 1. / 3.), ratio=(0.3, 3.3)):
        self.prob, self.scale, self.ratio = prob, tuple(scale), tuple(ratio)

    def transform(self, results: dict) -> dict:
        rng = _rng()
        if rng.random() >= self.prob:
            return results
        img = results['img'].copy()
        h, w = img.shape[:2]
        for _ in range(10):
            area = h * w * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top, left = rng.randint(0, h - eh), rng.randint(0, w - ew)
                noise = np.random.normal(128, 64, (eh, ew) + img.shape[2:])
                img[top:top + eh, left:left + ew] = np.clip(noise, 0, 255).astype(np.uint8)
                break
        results['img'] = img
        return results


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """``inputs``: CHW uint8 tensor; ``data_samples``: a ClsDataSample with the
    ground-truth label (``gt_label``) and ``meta_keys`` as metainfo."""

    def __init__(self, meta_keys=('img_path', 'ori_shape', 'img_shape')):
        self.meta_keys = meta_keys

    def transform(self, results: dict) -> dict:
        img = np.ascontiguousarray(results['img'])
        if img.ndim == 2:
            img = img[..., None]
        sample = ClsDataSample(metainfo={k: results[k] for k in self.meta_keys if k in results})
        sample.gt_label = LabelData(label=torch.tensor([int(results['gt_label'])]))
        return dict(inputs=torch.from_numpy(img).permute(2, 0, 1).contiguous(),
                    data_samples=sample)

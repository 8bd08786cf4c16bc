"""ImageNet pre-training of (cached) backbones with MMEngine alone: a
classifier, the ImageNet layouts, the DeiT/PVT/Swin training transforms,
top-k accuracy. No mmpretrain and no torchvision needed."""
from .data import Accuracy, ImageNetDataset, make_shapes_crops, make_synthetic_imagenet
from .model import ClsDataPreprocessor, ImageClassifier, smooth_one_hot, topk_accuracy
from .structures import ClsDataSample
from .transforms import (ImageNetRandAugment, ImageNetRandomErasing, PackClsInputs,
                         RandomResizedCrop, ResizeEdge, sample_crop)

__all__ = [
    'Accuracy', 'ImageNetDataset', 'make_shapes_crops', 'make_synthetic_imagenet',
    'ClsDataPreprocessor',
    'ImageClassifier', 'smooth_one_hot', 'topk_accuracy', 'ClsDataSample', 'PackClsInputs',
    'ImageNetRandAugment', 'ImageNetRandomErasing', 'RandomResizedCrop', 'ResizeEdge',
    'sample_crop'
]

"""Cached-vs-plain benchmarking helpers: a random batch (detection or
classification) and one model's timed parts: backbone, backbone-train, and
detector-infer / detector-train for a detector or classifier-infer /
classifier-train for an ``ImageClassifier``."""
import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, LabelData

from ..classification.structures import ClsDataSample

DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
DETECTOR_PARTS = ('backbone', 'backbone-train', 'detector-infer', 'detector-train')
CLASSIFIER_PARTS = ('backbone', 'backbone-train', 'classifier-infer', 'classifier-train')
PARTS = DETECTOR_PARTS + CLASSIFIER_PARTS[2:]


def is_classifier(cfg) -> bool:
    return cfg.model.get('type') == 'ImageClassifier'


def default_parts(cfg) -> tuple:
    return CLASSIFIER_PARTS if is_classifier(cfg) else DETECTOR_PARTS


def make_cls_batch(batch, shape, num_classes, seed=0):
    """Random images (uint8) with one random label each, as classifier data."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, *shape), dtype=torch.uint8, generator=g))
        s = ClsDataSample(metainfo=dict(img_shape=tuple(shape), ori_shape=tuple(shape)))
        s.gt_label = LabelData(label=torch.randint(0, num_classes, (1, ), generator=g))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def make_batch(batch, shape, num_classes, seed=0):
    """Random images (uint8) with 3-6 random boxes/masks each, as MMDet data."""
    g = torch.Generator().manual_seed(seed)
    h, w = shape
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g))
        n = int(torch.randint(3, 7, (1, ), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(n, 2, generator=g) * 0.25 + 0.05) * torch.tensor([w, h])
        boxes = torch.cat([xy, xy + wh], 1)
        masks = np.zeros((n, h, w), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[i, y1:y2, x1:x2] = 1
        s = DetDataSample(metainfo=dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                        scale_factor=(1.0, 1.0), batch_input_shape=shape))
        s.gt_instances = InstanceData(bboxes=boxes,
                                      labels=torch.randint(0, num_classes, (n, ), generator=g),
                                      masks=BitmapMasks(masks, h, w))
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


class Bench:
    """One model (a detector or an ``ImageClassifier``), its optimizer and the
    preprocessed batch (for a classifier with Mixup/CutMix: mixed once)."""

    def __init__(self, cfg, batch, shape, device, dtype, ddp=False):
        torch.manual_seed(0)
        self.model = MODELS.build(cfg.model).to(device)
        self.model.init_weights()
        # ddp: the trained modules wrapped in DistributedDataParallel (the
        # caller has initialised a process group), as under dist_train.sh
        self.wrapped = {}
        if ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [torch.device(device).index or 0] if device.startswith('cuda') else None
            self.wrapped = dict(backbone=DDP(self.model.backbone, device_ids=ids),
                                model=DDP(self.model, device_ids=ids,
                                          find_unused_parameters=True))
        self.parts = default_parts(cfg)
        if is_classifier(cfg):
            raw = make_cls_batch(batch, tuple(shape), cfg.model.num_classes)
        else:
            raw = make_batch(batch, tuple(shape), self._num_classes(cfg))
        self.data = self.model.data_preprocessor(raw, True)
        self.device, self.dtype = device, dtype
        self.optim = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.scaler = torch.amp.GradScaler(device) if dtype == torch.float16 else None

    @staticmethod
    def _num_classes(cfg):
        for head in ('roi_head', 'bbox_head'):
            h = cfg.model.get(head)
            if h is not None:
                return (h.bbox_head if head == 'roi_head' else h).num_classes
        return 80

    def autocast(self):
        return torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None)

    def run(self, part):
        if part not in self.parts:
            raise ValueError(f'part {part!r} does not apply to a {type(self.model).__name__}; '
                             f'choose from {self.parts}')
        m, x, samples = self.model, self.data['inputs'], self.data['data_samples']
        if part == 'backbone':
            m.eval()
            with torch.no_grad(), self.autocast():
                m.backbone(x)
        elif part == 'backbone-train':
            m.train()
            with self.autocast():
                loss = sum(o.float().mean() for o in self.wrapped.get('backbone', m.backbone)(x))
            loss.backward()
            self.optim.zero_grad(set_to_none=True)
        elif part in ('detector-infer', 'classifier-infer'):
            m.eval()
            with torch.no_grad(), self.autocast():
                m(x, samples, mode='predict')
        elif part in ('detector-train', 'classifier-train'):
            m.train()
            with self.autocast():
                loss, _ = m.parse_losses(self.wrapped.get('model', m)(x, samples, mode='loss'))
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optim)
                self.scaler.update()
            else:
                loss.backward()
                self.optim.step()
            self.optim.zero_grad(set_to_none=True)
        else:
            raise ValueError(f'unknown part {part!r}; choose from {PARTS}')

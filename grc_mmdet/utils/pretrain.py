"""The pre-train -> hand-off -> detect workflow, shared by ``tools/main_job.py``
and ``tools/analysis_tools/cached_vs_plain.py --pretrain``: derive the
classifier config from a detector's backbone, set a run's length, move its
data, check that a classifier's backbone arrived in a detector, and compose a
detector's initial weights from a classifier checkpoint."""
import copy
import os
import os.path as osp

import torch
from mmengine.config import Config

#: the GRC Shapes pre-training configs of the nano backbone: cached / plain
CLS_CONFIGS = {True: 'configs/synthetic/cached-pvt-nano_shapes-cls.py',
               False: 'configs/synthetic/pvt-nano_shapes-cls.py'}


def is_cached(cfg: Config) -> bool:
    """Whether the config's backbone is a cached one (``Cached...`` type)."""
    return str(cfg.model.backbone.type).startswith('Cached')


def set_iters(cfg: Config, iters: int, val_interval: int = None) -> None:
    """Train ``iters`` iterations and evaluate every ``val_interval`` (default:
    never inside the loop; a caller evaluates at the end). A scheduler that
    ends where training ended stretches or shrinks to the new length; one that
    ends later (a longer schedule stopped early) is cut at it."""
    if iters < 1:
        raise ValueError(f'iterations must be >= 1, got {iters}')
    old = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = val_interval or iters + 1
    cfg.default_hooks.checkpoint.interval = iters
    for sched in cfg.param_scheduler:
        sched.end = iters if sched.end == old else min(sched.end, iters)
        sched.begin = min(sched.begin, max(iters - 1, 0))


def set_data_root(cfg: Config, root: str) -> None:
    """Point every dataloader (and a COCO evaluator's annotation file) at ``root``."""
    root = root.rstrip('/') + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = root
    for ev in ('val_evaluator', 'test_evaluator'):
        if 'ann_file' in cfg[ev]:
            cfg[ev].ann_file = root + 'annotations/val.json'


def classifier_config(path: str, det_cfg: Config, data_root: str = None) -> Config:
    """The classifier config at ``path`` with exactly the detector's backbone
    (so that the hand-off loads every tensor), its output width and, if given,
    ``data_root``."""
    cfg = Config.fromfile(path)
    backbone = copy.deepcopy(det_cfg.model.backbone)
    backbone.pop('_delete_', None)
    backbone.init_cfg = None
    cfg.model.backbone = backbone
    cfg.model.in_channels = det_cfg.model.neck.in_channels[-1]
    if data_root is not None:
        set_data_root(cfg, data_root)
    return cfg


def strip_backbone(state: dict) -> dict:
    """The ``backbone.`` entries of a state dict, without the prefix."""
    return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}


def backbone_tensors(checkpoint: str) -> dict:
    """The ``backbone.`` tensors of a checkpoint, without the prefix."""
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    return strip_backbone(state.get('state_dict', state))


def check_handoff(backbone: torch.nn.Module, checkpoint: str) -> dict:
    """Compare a detector's backbone with the checkpoint's ``backbone.``
    tensors: how many arrived bit-exactly, which are missing or differ, and
    how many caches there are and hold values."""
    saved = backbone_tensors(checkpoint)
    own = backbone.state_dict()
    equal = [k for k, v in saved.items() if k in own and torch.equal(own[k], v)]
    caches = [k for k in own if k.endswith('.cache')]
    return dict(checkpoint=checkpoint, backbone_tensors=len(own), in_checkpoint=len(saved),
                equal=len(equal), missing=sorted(set(own) - set(saved)),
                differ=sorted(set(saved) - set(equal)), caches=len(caches),
                caches_written=sum(int(torch.count_nonzero(own[k]) > 0) for k in caches))


def compose_detector_init(detector_init: str, classifier: str, out: str) -> dict:
    """Write ``out``: the detector checkpoint ``detector_init`` with its
    backbone replaced by the classifier checkpoint's (every ``backbone.``
    tensor, GRC parameters and caches included). The classifier must hold
    every backbone tensor of ``detector_init`` with the same shape; returns
    how many tensors came from each file."""
    det = torch.load(detector_init, map_location='cpu', weights_only=True)
    det_state = det['state_dict']
    cls = backbone_tensors(classifier)
    det_backbone = strip_backbone(det_state)
    missing = sorted(set(det_backbone) - set(cls))
    shapes = sorted(k for k in set(det_backbone) & set(cls)
                    if det_backbone[k].shape != cls[k].shape)
    if not cls or missing or shapes:
        raise ValueError(
            f'{classifier} does not hold the backbone of {detector_init}: '
            f'{len(cls)} backbone tensors, missing {missing[:5]}{"..." if len(missing) > 5 else ""}'
            f', other shapes {shapes[:5]} (pre-train the same backbone config)')
    state = {k: v for k, v in det_state.items() if not k.startswith('backbone.')}
    state.update({'backbone.' + k: v for k, v in cls.items()})
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save({'state_dict': state, 'meta': dict(det.get('meta', {}), backbone_from=classifier)},
               out + '.tmp')
    os.replace(out + '.tmp', out)
    return dict(backbone_from_classifier=len(cls), rest_from_init=len(state) - len(cls))

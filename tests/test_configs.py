"""Every config loads and builds; paper recipe; cached configs differ from twins only in the backbone."""
import glob
import os.path as osp

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import twin_config_path
from grc_mmdet.models.backbones.cached_base import CACHE_ARGS

from conftest import ROOT

register_all_modules()
ALL = sorted(glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True))
CACHED = [p for p in ALL if 'cached-' in osp.basename(p)]
PAPER = [osp.join(ROOT, 'configs', d, f'{det}_{c}pvt-{s}_fpn_1x_coco.py')
         for d, c in (('cached_pvt', 'cached-'), ('pvt', '')) for det in ('mask-rcnn', 'retinanet')
         for s in 'tsm']


def rel(p):
    return osp.relpath(p, ROOT)


def test_there_are_configs():
    assert len(ALL) >= 34 and len(CACHED) == len(ALL) // 2


@pytest.mark.parametrize('path', ALL, ids=rel)
def test_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['grc_mmdet'], allow_failed_imports=False)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    cached = 'cached-' in osp.basename(path)
    assert type(model.backbone).__name__.startswith('Cached') == cached


@pytest.mark.parametrize('path', CACHED, ids=rel)
def test_cached_config_differs_from_twin_only_in_backbone(path):
    cached, plain = Config.fromfile(path).to_dict(), Config.fromfile(twin_config_path(path)).to_dict()
    cb, pb = cached['model'].pop('backbone'), plain['model'].pop('backbone')
    assert cb.pop('type') == 'Cached' + pb.pop('type')
    for k in CACHE_ARGS:
        cb.pop(k, None)
    assert cb == pb
    keys = cached['optim_wrapper'].get('paramwise_cfg', {}).get('custom_keys', {})
    assert keys.pop('cache_lambda') == dict(decay_mult=0.)
    plain_keys = plain['optim_wrapper'].get('paramwise_cfg', {}).get('custom_keys', {})
    assert keys == plain_keys
    for d in (cached, plain):
        d['optim_wrapper'].pop('paramwise_cfg', None)
        d.pop('filename', None)
    assert cached == plain


@pytest.mark.parametrize('path', PAPER, ids=rel)
def test_paper_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.train_cfg.max_epochs == 12
    step = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR'][0]
    assert step.milestones == [8, 11] and step.end == 12
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 1e-4, 1e-4)
    assert cfg.train_dataloader.batch_size == 2 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.dataset.ann_file.endswith('instances_train2017.json')
    assert cfg.val_dataloader.dataset.ann_file.endswith('instances_val2017.json')
    resize = [t for t in cfg.train_pipeline if t.type == 'Resize'][0]
    assert tuple(resize.scale) == (1333, 800)
    assert 'whai362/PVT' in cfg.model.backbone.init_cfg.checkpoint
    if 'mask-rcnn' in path:
        assert sorted(cfg.val_evaluator.metric) == ['bbox', 'segm']

"""Every config loads and builds; the paper recipe; cached configs differ from their
twins only in the backbone."""
import glob
import os.path as osp

import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import twin_config_path
from grc_mmdet.models.backbones.cached_base import CACHE_ARGS
from tests.helpers import ROOT, SMALL_CONFIG

register_all_modules()
ALL = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
             if '_base_' not in p)
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
    cached = Config.fromfile(path).to_dict()
    plain = Config.fromfile(twin_config_path(path)).to_dict()
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


def test_cache_args_are_the_documented_ones():
    assert CACHE_ARGS == ('cache_ratio', 'cache_lambda_init', 'cache_grids', 'cache_stages',
                          'cache_blocks', 'cache_kv_grids', 'cache_impl')


def test_lambda_rule_keeps_a_backbone_lr_mult_only_when_repeated():
    """The README's custom_keys note: the longest matching key wins."""
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(SMALL_CONFIG)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)

    def lambda_lrs(custom_keys):
        wrapper = build_optim_wrapper(model, dict(
            optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
            paramwise_cfg=dict(custom_keys=custom_keys)))
        lams = {id(p) for n, p in model.named_parameters() if n.endswith('cache_lambda')}
        groups = [g for g in wrapper.optimizer.param_groups if id(g['params'][0]) in lams]
        assert len(groups) == len(lams) > 0
        return {(g['lr'], g['weight_decay']) for g in groups}

    assert lambda_lrs({'backbone': dict(lr_mult=0.1),
                       'cache_lambda': dict(decay_mult=0.)}) == {(1.0, 0.0)}
    assert lambda_lrs({'backbone': dict(lr_mult=0.1),
                       'cache_lambda': dict(lr_mult=0.1, decay_mult=0.)}) == {(0.1, 0.0)}

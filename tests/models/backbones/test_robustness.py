"""Non-finite protection, cache-grid changes and clear errors for bad input."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_layers
from tests.helpers import SMALL_CONFIG

BACKBONE = dict(type='CachedPyramidVisionTransformer', embed_dims=8, num_heads=[1, 2, 2, 4],
                num_layers=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2])


def test_bad_batch_does_not_poison_the_cache():
    model = MODELS.build(BACKBONE).train()
    model(torch.randn(2, 3, 64, 64))
    good = {n: m.cache.clone() for n, m in grc_layers(model)}
    bad = torch.randn(2, 3, 64, 64)
    bad[0, :, 5, 5] = float('nan')
    model(bad)  # every layer's write would hold NaN: skipped, counted
    for n, m in grc_layers(model):
        assert torch.equal(m.cache, good[n]), n
        assert int(m.cache_skipped_writes) == 1
    model(torch.randn(2, 3, 64, 64))  # the next step writes again (GRCMonitorHook reports)
    for n, m in grc_layers(model):
        assert torch.isfinite(m.cache).all() and not torch.equal(m.cache, good[n])


def test_checkpoint_with_other_cache_grid_is_resized(tmp_path):
    src = MODELS.build(dict(BACKBONE, cache_grids=[(8, 8), (4, 4), (2, 2), (1, 1)])).train()
    src(torch.randn(2, 3, 64, 64))
    dst = MODELS.build(dict(BACKBONE))  # default grids 56, 28, 14, 7
    with pytest.warns(UserWarning, match='resizing the cache'):
        dst.load_state_dict(src.state_dict())
    for (n, a), (_, b) in zip(grc_layers(src), grc_layers(dst)):
        assert b.cache.shape[:2] == b.cache_grid
        # area-preserving-ish: a constant-free check that values came over
        assert torch.allclose(b.cache.mean((0, 1)), a.cache.mean((0, 1)), atol=1e-4), n


@pytest.mark.parametrize('x,word', [
    (torch.randn(3, 64, 64), 'shape'),
    (torch.randn(1, 1, 3, 64, 64), 'shape'),
    (torch.randn(1, 4, 64, 64), 'input channels'),
])
def test_wrong_images(x, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(BACKBONE)(x)


@pytest.mark.parametrize('override,word', [
    (dict(cache_size=7), 'unknown cache argument'),
    (dict(cache_ratio=0), 'cache_ratio'),
    (dict(cache_ratio=1.01), 'cache_ratio'),
    (dict(cache_stages=[5]), 'cache_stages'),
])
def test_bad_config_from_a_detector_config(override, word):
    cfg = Config.fromfile(SMALL_CONFIG)
    cfg.model.backbone.update(override)
    with pytest.raises(ValueError, match=word):
        MODELS.build(copy.deepcopy(cfg.model))


@pytest.mark.parametrize('size', [(64, 64), (256, 160)])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_backbone_cast_to_half_precision_runs_on_cpu(dtype, size):
    model = MODELS.build(BACKBONE).to(dtype).eval()
    outs = model(torch.randn(1, 3, *size, dtype=dtype))
    assert all(o.dtype == dtype and torch.isfinite(o).all() for o in outs)

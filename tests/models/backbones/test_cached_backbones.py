"""Cached PVT / PVTv2 / Swin backbones: one attach step, odd sizes, the plain
parent's behaviour, and clear errors for bad arguments."""
import pytest
import torch
from mmdet.models.backbones import (PyramidVisionTransformer, PyramidVisionTransformerV2,
                                    SwinTransformer)
from mmdet.registry import MODELS

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_layers
from grc_mmdet.models.backbones import (CachedPyramidVisionTransformer,
                                        CachedPyramidVisionTransformerV2, CachedShiftWindowMSA,
                                        CachedSpatialReductionAttention, CachedSwinTransformer)
from tests.helpers import CHANNELS
from tests.helpers import SMALL_BACKBONES as SMALL
from tests.helpers import cached_cfg


@pytest.mark.parametrize('name', list(SMALL))
@pytest.mark.parametrize('size', [(33, 47), (112, 137), (224, 224)])
@pytest.mark.parametrize('train', [True, False])
def test_forward_shapes(name, size, train):
    model = MODELS.build(cached_cfg(name))
    model.init_weights()
    model.train(train)
    x = torch.randn(2, 3, *size)
    outs = model(x)
    assert len(outs) == 4
    for i, (out, ch) in enumerate(zip(outs, CHANNELS[name])):
        stride = 4 * 2 ** i
        assert out.shape[:2] == (2, ch)
        # overlapping (PVTv2) and non-overlapping embeddings round differently
        assert abs(out.shape[2] - size[0] / stride) < 1.5
        assert abs(out.shape[3] - size[1] / stride) < 1.5
        assert torch.isfinite(out).all()
    if train:
        outs[-1].sum().backward()


@pytest.mark.parametrize('name', list(SMALL))
def test_every_attention_is_cached_by_default(name):
    model = MODELS.build(cached_cfg(name))
    plain = MODELS.build(SMALL[name])
    n_attn = sum(1 for n, _ in plain.named_modules() if n.endswith('.attn') and
                 hasattr(_, 'forward') and not n.endswith('attn.attn'))
    layers = list(grc_layers(model))
    assert len(layers) == n_attn > 0
    assert model.cache_grids == [(56, 56), (28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize('name', list(SMALL))
def test_zero_gate_equals_plain_backbone(name):
    """With sigmoid(lambda) = 0 everywhere, the cached backbone computes the plain one."""
    torch.manual_seed(0)
    plain = MODELS.build(SMALL[name])
    plain.init_weights()
    plain.eval()  # (MMDet's Swin.train() returns None)
    cached = MODELS.build(cached_cfg(name)).eval()
    missing, unexpected = cached.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(('grc.' in k) for k in missing)
    with torch.no_grad():
        for _, m in grc_layers(cached):
            m.cache_lambda.fill_(-float('inf'))
        x = torch.randn(1, 3, 61, 83)
        for a, b in zip(plain(x), cached(x)):
            assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_cache_arguments_reach_the_layers():
    model = MODELS.build(cached_cfg('PVT', cache_ratio=0.25, cache_lambda_init=-1.0,
                                    cache_stages=[1, 3], cache_grids=[4, (5, 6), 7, (2, 3)],
                                    cache_kv_grids=None))
    layers = dict(grc_layers(model))
    assert sorted({n.split('.')[1] for n in layers}) == ['1', '3']
    m = layers['layers.1.1.1.attn.grc']
    assert m.cache.shape == (5, 6, 4) and m.kv_grid is None
    assert torch.allclose(m.attention_ratio(), torch.sigmoid(torch.tensor(-1.0)))
    blocks = MODELS.build(cached_cfg('Swin', cache_blocks=[[1], [], [0, 1], []]))
    names = [n for n, _ in grc_layers(blocks)]
    assert names == ['stages.0.blocks.1.attn.grc', 'stages.2.blocks.0.attn.grc',
                     'stages.2.blocks.1.attn.grc']
    assert blocks.cache_kv_grids == [(7, 7), (7, 7), (7, 7), (7, 7)]


@pytest.mark.parametrize('kw,word', [
    (dict(cache_ratoi=0.5), 'unknown cache argument'),
    (dict(cache_ratio=2.0), 'cache_ratio'),
    (dict(cache_stages=[0, 4]), 'cache_stages'),
    (dict(cache_blocks=[[0], [5], [], []]), 'cache_blocks'),
    (dict(cache_grids=[7, 7]), 'cache_grids'),
])
def test_bad_cache_arguments(kw, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(cached_cfg('PVT', **kw))


@pytest.mark.parametrize('x,word', [
    (torch.randn(3, 32, 32), 'shape'),
    (torch.randn(1, 1, 32, 32), 'input channels'),
])
def test_bad_images(x, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(cached_cfg('Swin'))(x)


def test_swin_with_cp_and_frozen_stages():
    torch.manual_seed(0)
    ref = MODELS.build(cached_cfg('Swin', drop_path_rate=0.0)).train()
    cp = MODELS.build(cached_cfg('Swin', drop_path_rate=0.0, with_cp=True)).train()
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 64, 64)
    a, b = ref(x)[-1], cp(x.clone().requires_grad_())[-1]
    assert torch.allclose(a, b, atol=1e-5)
    a.sum().backward()
    b.sum().backward()
    for (n, p), (_, q) in zip(ref.named_parameters(), cp.named_parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-4), n
    for (n, m), (_, k) in zip(grc_layers(ref), grc_layers(cp)):
        assert torch.allclose(m.cache, k.cache, atol=1e-6), n
    frozen = MODELS.build(cached_cfg('Swin', frozen_stages=1)).train()
    before = {n: m.cache.clone() for n, m in grc_layers(frozen)}
    frozen(x)
    for n, m in grc_layers(frozen):
        if n.startswith('stages.0.'):
            assert not m.training and torch.equal(m.cache, before[n])
            assert all(not p.requires_grad for p in m.parameters())
        else:
            assert not torch.equal(m.cache, before[n])


def test_parameter_budget_pvt_tiny():
    """Cached PVT-Tiny adds <= 2.0M parameters (paper: +1.7M on 13.3M)."""
    plain = MODELS.build(dict(type='PyramidVisionTransformer', num_layers=[2, 2, 2, 2]))
    cached = MODELS.build(dict(type='CachedPyramidVisionTransformer', num_layers=[2, 2, 2, 2]))
    n_plain = sum(p.numel() for p in plain.parameters())
    n_cached = sum(p.numel() for p in cached.parameters())
    print(f'\nPVT-Tiny backbone params: plain {n_plain / 1e6:.3f}M, cached '
          f'{n_cached / 1e6:.3f}M, +{(n_cached - n_plain) / 1e6:.3f}M '
          f'({100 * (n_cached / n_plain - 1):.1f}%)')
    assert 0 < n_cached - n_plain <= 2.0e6


PLAIN_CLASSES = {'PVT': PyramidVisionTransformer, 'PVTv2': PyramidVisionTransformerV2,
                 'Swin': SwinTransformer}
CACHED_CLASSES = {'PVT': CachedPyramidVisionTransformer,
                  'PVTv2': CachedPyramidVisionTransformerV2, 'Swin': CachedSwinTransformer}
CACHED_ATTN = {'PVT': CachedSpatialReductionAttention,
               'PVTv2': CachedSpatialReductionAttention, 'Swin': CachedShiftWindowMSA}


@pytest.mark.parametrize('name', list(SMALL))
def test_cached_class_is_its_plain_parent(name):
    assert issubclass(CACHED_CLASSES[name], PLAIN_CLASSES[name])
    assert isinstance(MODELS.build(cached_cfg(name)), PLAIN_CLASSES[name])


def test_positional_arguments_as_the_parent():
    model = CachedPyramidVisionTransformer(224, 3, 8, num_heads=[1, 2, 2, 4],
                                           num_layers=[1, 1, 1, 1])
    assert model.embed_dims == 8 and len(list(grc_layers(model))) == 4
    swin = CachedSwinTransformer(224, 3, 12, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4])
    assert swin.cache_grids == [(56, 56), (28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize('name', list(SMALL))
@pytest.mark.parametrize('cache_stages', [[], [2]])
def test_every_attention_is_swapped_once_and_tagged(name, cache_stages):
    """All attention modules become the cached class (SDPA), GRC only where asked."""
    model = MODELS.build(cached_cfg(name, cache_stages=cache_stages))
    attns = [m for stage in model.grc_attention_modules() for m in stage]
    assert attns and all(type(m) is CACHED_ATTN[name] for m in attns)
    with_grc = [m.grc for m in attns if m.grc is not None]
    assert all(g.stage == 2 for g in with_grc) and len(with_grc) == (2 if cache_stages else 0)
    assert [(g.stage, g.block) for g in with_grc] == [(2, b) for b in range(len(with_grc))]


@pytest.mark.parametrize('name', list(SMALL))
def test_no_cache_stage_equals_the_plain_backbone(name):
    """cache_stages=[] runs the same attention as the plain MMDet backbone."""
    torch.manual_seed(0)
    plain = MODELS.build(SMALL[name])
    plain.init_weights()
    plain.eval()
    cached = MODELS.build(cached_cfg(name, cache_stages=[])).eval()
    cached.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 45, 70)
    with torch.no_grad():
        for a, b in zip(plain(x), cached(x)):
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize('name', list(SMALL))
@pytest.mark.parametrize('train', [True, False])
def test_empty_batch_gives_empty_outputs(name, train):
    model = MODELS.build(cached_cfg(name)).train(train)
    outs = model(torch.randn(0, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(0, c, 64 // 4 // 2 ** i, 96 // 4 // 2 ** i)
                                              for i, c in enumerate(CHANNELS[name])]
    assert all(int(m.cache_skipped_writes) == 0 for _, m in grc_layers(model))


@pytest.mark.parametrize('name', list(SMALL))
def test_inference_mode_forward_then_training_still_works(name):
    model = MODELS.build(cached_cfg(name)).train()
    with torch.inference_mode():
        model(torch.randn(1, 3, 64, 64))
    outs = model(torch.randn(2, 3, 64, 64))
    outs[-1].sum().backward()
    assert all(not m.cache.is_inference() for _, m in grc_layers(model))


@pytest.mark.parametrize('name', list(SMALL))
def test_double_precision(name):
    model = MODELS.build(cached_cfg(name)).double().train()
    outs = model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    assert all(o.dtype == torch.float64 for o in outs)
    assert all(m.cache.dtype == torch.float64 for _, m in grc_layers(model))


@pytest.mark.parametrize('kw,word', [
    (dict(cache_ratio=True), 'cache_ratio'),
    (dict(cache_grids=True), 'cache_grids'),
    (dict(cache_grids=[7, 7, True, 7]), 'cache_grid'),
    (dict(cache_kv_grids=True), 'cache_kv_grids'),
    (dict(cache_stages=4), 'cache_stages must be a list'),
    (dict(cache_stages=[True]), 'cache_stages'),
    (dict(cache_blocks=3), 'cache_blocks'),
    (dict(cache_lambda_init=None), 'lambda_init'),
])
def test_bad_cache_argument_types(kw, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(cached_cfg('PVT', **kw))

"""Cached PVT / PVTv2 / Swin backbones: build from dicts, odd sizes, pretrained loading."""
import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.runner import load_checkpoint

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_layers

SMALL = {
    'PVT': dict(type='PyramidVisionTransformer', embed_dims=8, num_heads=[1, 2, 2, 4],
                num_layers=[1, 1, 2, 1], mlp_ratios=[2, 2, 2, 2]),
    'PVTv2': dict(type='PyramidVisionTransformerV2', embed_dims=8, num_heads=[1, 2, 2, 4],
                  num_layers=[1, 1, 2, 1], mlp_ratios=[2, 2, 2, 2]),
    'Swin': dict(type='SwinTransformer', embed_dims=12, depths=[2, 2, 2, 2],
                 num_heads=[1, 2, 2, 4], window_size=7),
}
CHANNELS = {'PVT': [8, 16, 16, 32], 'PVTv2': [8, 16, 16, 32], 'Swin': [12, 24, 48, 96]}


def cached_cfg(name, **kw):
    cfg = copy.deepcopy(SMALL[name])
    cfg['type'] = 'Cached' + cfg['type']
    cfg.update(kw)
    return cfg


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
        assert abs(out.shape[2] - size[0] / stride) < 1.5 and abs(out.shape[3] - size[1] / stride) < 1.5
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


@pytest.mark.parametrize('name', list(SMALL))
def test_plain_checkpoint_loads_and_new_keys_are_exactly_grc(name, tmp_path):
    plain = MODELS.build(SMALL[name])
    plain.init_weights()
    ckpt = tmp_path / 'plain.pth'
    # MMDet's Swin loader reads 'backbone.'-prefixed keys (as its converter writes them)
    prefix = 'backbone.' if name == 'Swin' else ''
    torch.save({'state_dict': {prefix + k: v for k, v in plain.state_dict().items()}}, ckpt)
    cached = MODELS.build(cached_cfg(
        name, convert_weights=False,
        init_cfg=dict(type='Pretrained', checkpoint=str(ckpt))))
    cached.init_weights()
    own = cached.state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(own[k], v), k
    grc_keys = sorted(k for k in own if '.grc.' in k)
    assert sorted(cached.pretrained_new_keys) == grc_keys
    assert all(k.rsplit('.', 1)[-1] in ('cache', 'cache_skipped_writes', 'cache_lambda',
                                        'weight', 'bias') for k in grc_keys)
    for _, m in grc_layers(cached):
        assert torch.count_nonzero(m.cache) == 0
        assert torch.all(m.cache_lambda == 0)


def test_checkpoint_of_another_architecture_names_the_bad_key(tmp_path):
    other = MODELS.build(dict(type='ResNet', depth=18))
    torch.save({'state_dict': other.state_dict()}, tmp_path / 'r18.pth')
    cached = MODELS.build(cached_cfg('PVT', convert_weights=False, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'r18.pth'))))
    with pytest.raises(ValueError, match="unexpected key 'conv1.weight'"):
        cached.init_weights()


def test_mismatched_shape_names_the_key(tmp_path):
    plain = MODELS.build(dict(SMALL['PVT'], embed_dims=16))
    torch.save(plain.state_dict(), tmp_path / 'wide.pth')
    cached = MODELS.build(cached_cfg('PVT', convert_weights=False, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'wide.pth'))))
    with pytest.raises(ValueError, match='shape mismatch at'):
        cached.init_weights()


def test_cached_checkpoint_restores_the_cache(tmp_path):
    model = MODELS.build(cached_cfg('PVT')).train()
    model(torch.randn(2, 3, 64, 64))
    caches = {n: m.cache.clone() for n, m in grc_layers(model)}
    assert any(torch.count_nonzero(c) for c in caches.values())
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'cached.pth')
    fresh = MODELS.build(cached_cfg('PVT'))
    load_checkpoint(fresh, str(tmp_path / 'cached.pth'), map_location='cpu')
    for n, m in grc_layers(fresh):
        assert torch.equal(m.cache, caches[n])


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


def test_swin_checkpoint_without_usable_keys_is_a_clear_error(tmp_path):
    plain = MODELS.build(SMALL['Swin'])
    torch.save({'state_dict': plain.state_dict()}, tmp_path / 'noprefix.pth')  # no 'backbone.'
    cached = MODELS.build(cached_cfg('Swin', convert_weights=False, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'noprefix.pth'))))
    with pytest.raises(ValueError, match='no key this backbone can load'):
        cached.init_weights()


def test_monitor_hook_logs_ratios_and_skipped_writes():
    from mmengine.logging import MessageHub

    from grc_mmdet.engine import GRCMonitorHook

    class Runner:  # what the hook reads of an MMEngine runner
        iter = 0
        model = MODELS.build(cached_cfg('PVT', cache_lambda_init=1.0))
        message_hub = MessageHub.get_instance('grc_monitor_test')

    runner = Runner()
    GRCMonitorHook(interval=1).after_train_iter(runner, 0)
    scalars = runner.message_hub.log_scalars
    assert abs(scalars['train/grc_ratio_s2'].current() - torch.sigmoid(torch.tensor(1.0))) < 1e-6
    assert scalars['train/grc_skipped_writes'].current() == 0

"""Pretrained weights into cached backbones: a cached backbone accepts every
checkpoint its plain parent accepts, with the same plain weights; a detector's
or classifier's backbone loads with ``prefix='backbone.'``, caches included;
what does not fit stops with an error naming the key."""
import contextlib
import io
import logging

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from mmengine.runner import load_checkpoint

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_layers
from tests.helpers import SMALL_BACKBONES as SMALL
from tests.helpers import cached_cfg


@contextlib.contextmanager
def captured_log():
    """Text that MMEngine's current logger writes inside the block."""
    logger = MMLogger.get_current_instance()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def pretrained(path, **kw):
    # a ConfigDict, as from a config file (MMDet's plain backbones read init_cfg.checkpoint)
    return dict(init_cfg=ConfigDict(type='Pretrained', checkpoint=str(path), **kw))


def trained_cached(name):
    model = MODELS.build(cached_cfg(name)).train()
    model(torch.randn(2, 3, 64, 64))
    return model


def to_official_swin(state_dict):
    """MMDet Swin keys -> the official Swin repository's layout (the inverse
    renaming of MMDet's swin_converter), with the final norm and the head
    the official ImageNet checkpoints carry."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith('norm') and k[4].isdigit():  # MMDet's per-output norms
            continue
        k = k.replace('stages.', 'layers.', 1).replace('attn.w_msa.', 'attn.')
        k = k.replace('ffn.layers.0.0.', 'mlp.fc1.').replace('ffn.layers.1.', 'mlp.fc2.')
        k = k.replace('patch_embed.projection', 'patch_embed.proj')
        out[k] = v
    dim = state_dict['stages.3.blocks.0.norm1.weight'].shape[0]
    out.update({'norm.weight': torch.rand(dim), 'norm.bias': torch.rand(dim),
                'head.weight': torch.rand(10, dim), 'head.bias': torch.rand(10)})
    return out


def test_official_swin_layout_loads_like_the_plain_model(tmp_path):
    torch.manual_seed(0)
    source = MODELS.build(SMALL['Swin'])
    source.init_weights()
    torch.save({'model': to_official_swin(source.state_dict())}, tmp_path / 'official.pth')
    official = dict(convert_weights=True, **pretrained(tmp_path / 'official.pth'))
    plain = MODELS.build(dict(SMALL['Swin'], **official))
    plain.init_weights()
    cached = MODELS.build(cached_cfg('Swin', **official))
    with captured_log() as log:
        cached.init_weights()
    own = cached.state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(own[k], v), k
    assert "not used by this model (ignored): ['norm.weight', 'norm.bias']" in log.getvalue()


def test_swin_checkpoint_with_more_outputs_loads_with_a_warning(tmp_path):
    src = MODELS.build(SMALL['Swin'])  # out_indices (0, 1, 2, 3): norm0..norm3
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}},
               tmp_path / 'all_outs.pth')
    cached = MODELS.build(cached_cfg('Swin', out_indices=(1, 2, 3), convert_weights=False,
                                     **pretrained(tmp_path / 'all_outs.pth')))
    with captured_log() as log:
        cached.init_weights()
    assert 'norm0.weight' in log.getvalue() and 'not used by this model' in log.getvalue()
    assert torch.equal(cached.norm1.weight, src.norm1.weight)


@pytest.mark.parametrize('name', list(SMALL))
def test_plain_checkpoint_loads_and_new_keys_are_exactly_grc(name, tmp_path):
    plain = MODELS.build(SMALL[name])
    plain.init_weights()
    ckpt = tmp_path / 'plain.pth'
    # MMDet's Swin loader reads 'backbone.'-prefixed keys (as its converter writes them)
    prefix = 'backbone.' if name == 'Swin' else ''
    torch.save({'state_dict': {prefix + k: v for k, v in plain.state_dict().items()}}, ckpt)
    cached = MODELS.build(cached_cfg(name, convert_weights=False, **pretrained(ckpt)))
    cached.init_weights()
    own = cached.state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(own[k], v), k
    grc_keys = sorted(k for k in own if '.grc.' in k)
    assert sorted(cached.pretrained_new_keys) == grc_keys
    for _, m in grc_layers(cached):
        assert torch.count_nonzero(m.cache) == 0
        assert torch.all(m.cache_lambda == 0)


@pytest.mark.parametrize('name', list(SMALL))
def test_detector_backbone_reuse_with_prefix_brings_every_tensor(name, tmp_path):
    src = trained_cached(name)
    state = {'backbone.' + k: v for k, v in src.state_dict().items()}
    state['neck.conv.weight'] = torch.zeros(3)  # the rest of a detector
    torch.save({'meta': {}, 'state_dict': state}, tmp_path / 'detector.pth')
    reuse = pretrained(tmp_path / 'detector.pth', prefix='backbone.')
    dst = MODELS.build(cached_cfg(name, **reuse))
    with captured_log() as log:
        dst.init_weights()
    # no "training start from scratch" on the recommended path
    assert 'No pre-trained weights' not in log.getvalue()
    assert "now loading the weights under prefix 'backbone.'" in log.getvalue()
    own = dst.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(own[k], v), k
    assert dst.pretrained_new_keys == []
    assert any(torch.count_nonzero(m.cache) for _, m in grc_layers(dst))


def test_prefix_that_matches_nothing_is_a_clear_error(tmp_path):
    torch.save({'state_dict': {'neck.w': torch.zeros(1)}}, tmp_path / 'd.pth')
    model = MODELS.build(cached_cfg('PVT', **pretrained(tmp_path / 'd.pth', prefix='backbone.')))
    with pytest.raises(ValueError, match="starts with prefix 'backbone.'"):
        model.init_weights()


def test_checkpoint_of_another_architecture_is_an_error_naming_keys(tmp_path):
    other = MODELS.build(dict(type='ResNet', depth=18))
    torch.save({'state_dict': other.state_dict()}, tmp_path / 'r18.pth')
    cached = MODELS.build(cached_cfg('PVT', convert_weights=False,
                                     **pretrained(tmp_path / 'r18.pth')))
    with pytest.raises(ValueError, match="none of the model's weights.*'conv1.weight'"):
        cached.init_weights()


def test_extra_keys_are_a_warning_not_an_error(tmp_path):
    plain = MODELS.build(SMALL['PVT'])
    state = dict(plain.state_dict(), **{'head.weight': torch.zeros(3, 3)})
    torch.save(state, tmp_path / 'extra.pth')
    cached = MODELS.build(cached_cfg('PVT', convert_weights=False,
                                     **pretrained(tmp_path / 'extra.pth')))
    with captured_log() as log:
        cached.init_weights()
    assert "(ignored): ['head.weight']" in log.getvalue()


def test_mismatched_plain_shape_names_the_key(tmp_path):
    plain = MODELS.build(dict(SMALL['PVT'], embed_dims=16))
    torch.save(plain.state_dict(), tmp_path / 'wide.pth')
    cached = MODELS.build(cached_cfg('PVT', convert_weights=False,
                                     **pretrained(tmp_path / 'wide.pth')))
    with pytest.raises(ValueError, match='shape mismatch at'):
        cached.init_weights()


@pytest.mark.parametrize('name', list(SMALL))
def test_cache_of_another_channel_count_is_an_error(name, tmp_path):
    src = trained_cached(name)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}},
               tmp_path / 'r05.pth')
    dst = MODELS.build(cached_cfg(name, cache_ratio=0.25, **pretrained(
        tmp_path / 'r05.pth', prefix='backbone.')))
    with pytest.raises(ValueError, match=r'grc\.(cache|gate_x\.weight).*cache_ratio'):
        dst.init_weights()


@pytest.mark.parametrize('how', ['init_cfg', 'load_checkpoint'])
def test_checkpoint_with_a_nan_cache_is_refused(how, tmp_path):
    src = trained_cached('PVT')
    state = src.state_dict()
    key = next(k for k in state if k.endswith('.grc.cache'))
    state[key] = state[key].clone()
    state[key][0, 0, 0] = float('nan')
    torch.save({'state_dict': state}, tmp_path / 'nan.pth')
    if how == 'init_cfg':
        dst = MODELS.build(cached_cfg('PVT', convert_weights=False,
                                      **pretrained(tmp_path / 'nan.pth')))
        load = dst.init_weights
    else:
        dst = MODELS.build(cached_cfg('PVT'))

        def load():
            load_checkpoint(dst, str(tmp_path / 'nan.pth'), map_location='cpu')
    with pytest.raises(ValueError, match=f'{key}.*NaN/Inf'):
        load()


def test_cached_checkpoint_restores_the_cache(tmp_path):
    model = trained_cached('PVT')
    caches = {n: m.cache.clone() for n, m in grc_layers(model)}
    assert any(torch.count_nonzero(c) for c in caches.values())
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'cached.pth')
    fresh = MODELS.build(cached_cfg('PVT'))
    load_checkpoint(fresh, str(tmp_path / 'cached.pth'), map_location='cpu')
    for n, m in grc_layers(fresh):
        assert torch.equal(m.cache, caches[n])


def test_swin_checkpoint_without_usable_keys_is_a_clear_error(tmp_path):
    plain = MODELS.build(SMALL['Swin'])
    torch.save({'state_dict': plain.state_dict()}, tmp_path / 'noprefix.pth')  # no 'backbone.'
    cached = MODELS.build(cached_cfg('Swin', convert_weights=False,
                                     **pretrained(tmp_path / 'noprefix.pth')))
    with pytest.raises(ValueError, match='no key this backbone can load'):
        cached.init_weights()

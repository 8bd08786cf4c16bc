"""The batched cache write and the CUDA-graph path against the eager reference.

The CUDA tests need a GPU; CI has none, so they skip there (run them on a
GPU machine: ``pytest tests/models/test_grc_impls.py``)."""
import copy

import pytest
import torch
from mmdet.registry import MODELS

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_triton
from grc_mmdet.models.grc import GatedRecurrentCache, flush_cache_writes, grc_layers
from tests.helpers import SMALL_BACKBONES, cached_cfg, count_fused_calls

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs a CUDA GPU (the CI machines have none)')


def layer(impl='eager', device='cpu', num_heads=4, **kw):
    torch.manual_seed(0)
    m = GatedRecurrentCache(32, num_heads, cache_grid=(6, 8), kv_grid=(3, 4), impl=impl, **kw)
    with torch.no_grad():
        m.cache.copy_(torch.randn_like(m.cache))
        m.cache_lambda.copy_(torch.linspace(-1, 1, num_heads))
    return m.to(device)


def test_impl_is_checked():
    with pytest.raises(ValueError, match='impl'):
        GatedRecurrentCache(16, 2, impl='fast')
    with pytest.raises(ValueError, match='cache_impl'):
        MODELS.build(cached_cfg('PVT', cache_impl='fast'))


def test_deferred_batched_write_equals_each_layers_own_write():
    layers = [layer(), layer(cache_ratio=0.25)]
    twins = copy.deepcopy(layers)
    for m in layers:
        m.defer_writes = True
        m.train()
    for m in twins:
        m.train()
    x = torch.randn(3, 12 * 16, 32)
    x[1, 5, 12] = float('nan')  # in layer 0's D_m = 16 channels, not layer 1's 8
    for step in range(2):
        xs = x if step else torch.randn(3, 12 * 16, 32)
        for m, t in zip(layers, twins):
            o = torch.randn(3, 12 * 16, 32)
            torch.testing.assert_close(m(xs, (12, 16), o), t(xs, (12, 16), o),
                                       atol=1e-6, rtol=1e-6, equal_nan=True)
        flush_cache_writes(layers)
        for m, t in zip(layers, twins):
            torch.testing.assert_close(m.cache, t.cache, atol=1e-6, rtol=1e-6)
            assert torch.equal(m.cache_skipped_writes, t.cache_skipped_writes)
    assert int(layers[0].cache_skipped_writes) == 1 and int(layers[1].cache_skipped_writes) == 0


@pytest.mark.parametrize('name', list(SMALL_BACKBONES))
def test_backbone_writes_once_per_step_in_one_batch(name):
    model = MODELS.build(cached_cfg(name)).train()
    model(torch.randn(2, 3, 64, 64))
    layers = [m for _, m in grc_layers(model)]
    assert all(m._pending_write is None for m in layers)
    assert all(torch.count_nonzero(m.cache) > 0 for m in layers)


def test_auto_impl():
    # 'auto' stays 'auto' in the layers, which choose at run time (on CUDA the
    # fused token side, plus graphs in one process); with_cp: 'triton', no graphs
    model = MODELS.build(cached_cfg('PVT'))
    assert model.cache_impl == 'auto'
    assert {m.impl for _, m in grc_layers(model)} == {'auto'}
    model = MODELS.build(cached_cfg('Swin', with_cp=True))
    assert model.cache_impl == 'triton'
    assert {m.impl for _, m in grc_layers(model)} == {'triton'}


def test_cuda_graph_impl_runs_eagerly_on_cpu():
    eager, graph = layer('eager'), layer('cuda_graph')
    x, o = torch.randn(2, 12 * 16, 32), torch.randn(2, 12 * 16, 32)
    assert torch.equal(eager(x, (12, 16), o), graph(x, (12, 16), o))
    assert not graph._graphs


TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


@CUDA
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_graph_equals_eager_forward_and_gradients(dtype):
    eager = layer('eager', 'cuda').train()
    graph = copy.deepcopy(eager)
    graph.impl = 'cuda_graph'
    atol, rtol = TOL[dtype]
    for step in range(3):  # capture, then replays with new data and new caches
        x = torch.randn(2, 13 * 17, 32, device='cuda')
        o = torch.randn(2, 13 * 17, 32, device='cuda')
        w = torch.randn(2, 13 * 17, 32, device='cuda')
        res = []
        for m in (eager, graph):
            xi, oi = x.clone().requires_grad_(), o.clone().requires_grad_()
            with torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
                out = m(xi, (13, 17), oi)
            (out.float() * w).sum().backward()
            res.append((out.float(), [xi.grad, oi.grad] + [p.grad.clone() for p in m.parameters()]))
            m.zero_grad()
        assert graph._graphs, 'the graphed path was not used'
        torch.testing.assert_close(res[1][0], res[0][0], atol=atol, rtol=rtol)
        for a, b in zip(res[0][1], res[1][1]):
            scale = a.abs().max().clamp_min(1)
            torch.testing.assert_close(b / scale, a / scale, atol=atol, rtol=rtol)
        torch.testing.assert_close(graph.cache, eager.cache, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # eval: a forward-only replay
        eager.eval(), graph.eval()
        torch.testing.assert_close(graph(x, (13, 17), o), eager(x, (13, 17), o))


@CUDA
def test_cuda_graph_falls_back_while_a_backward_is_due():
    m = layer('cuda_graph', 'cuda').train()
    ref = copy.deepcopy(m)
    ref.impl = 'eager'
    x1, x2 = (torch.randn(2, 12 * 16, 32, device='cuda', requires_grad=True) for _ in range(2))
    o = torch.randn(2, 12 * 16, 32, device='cuda')
    a = m(x1, (12, 16), o)
    b = m(x2, (12, 16), o)  # a's backward is due: this call must not overwrite a's graph
    (a.sum() + b.sum()).backward()
    g_graph = m.gate_x.weight.grad.clone()
    (ref(x1, (12, 16), o).sum() + ref(x2, (12, 16), o).sum()).backward()
    torch.testing.assert_close(g_graph, ref.gate_x.weight.grad, atol=1e-5, rtol=1e-5)


@CUDA
@pytest.mark.parametrize('name', list(SMALL_BACKBONES))
def test_backbone_auto_equals_eager(name, monkeypatch):
    """'auto' on one GPU: graphed cache side and (with Triton) the fused token
    side, against the eager reference over three steps."""
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    # no stochastic depth: both models must compute the same function
    eager = MODELS.build(cached_cfg(name, cache_impl='eager', drop_path_rate=0.)).cuda().train()
    graph = MODELS.build(cached_cfg(name, drop_path_rate=0.)).cuda().train()  # 'auto'
    graph.load_state_dict(eager.state_dict())
    for _ in range(3):
        x = torch.randn(2, 3, 96, 128, device='cuda')
        outs = []
        for m in (eager, graph):
            with torch.autocast('cuda', dtype=torch.float16):
                y = m(x)
            sum(t.float().mean() for t in y).backward()
            outs.append([t.float() for t in y] + [p.grad.clone() for p in m.parameters()
                                                  if p.grad is not None])
            m.zero_grad()
        for a, b in zip(*outs):
            scale = a.abs().max().clamp_min(1)
            torch.testing.assert_close(b / scale, a / scale, atol=5e-3, rtol=5e-3)
    for (n, a), (_, b) in zip(grc_layers(eager), grc_layers(graph)):
        torch.testing.assert_close(b.cache, a.cache, atol=1e-3, rtol=1e-3)
        assert b._graphs, n
    assert calls or not grc_triton.HAS_TRITON, 'the fused token side was not used'

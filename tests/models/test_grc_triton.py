"""The fused Triton token side (``impl='triton'``, and 'auto' on CUDA)
against the eager reference.

The CUDA tests need a GPU with Triton; CI has none, so they skip there (run
them on a GPU machine: ``pytest tests/models/test_grc_triton.py``)."""
import copy
import os

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS

import grc_mmdet  # noqa: F401
from grc_mmdet.models import grc_triton
from grc_mmdet.models.grc import GatedRecurrentCache, grc_layers
from tests.helpers import SMALL_BACKBONES, cached_cfg, count_fused_calls

CUDA = pytest.mark.skipif(not (torch.cuda.is_available() and grc_triton.HAS_TRITON),
                          reason='needs a CUDA GPU and Triton (the CI machines have neither)')
# relative error ||a - ref|| / ||ref|| against a float64 reference
REL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def reference(q, k, v, o_self, lam):
    """Eqs. 5 and 7 in plain PyTorch (the math of GatedRecurrentCache.forward)."""
    B, T, _ = q.shape
    H, _, dm = k.shape[1:]
    D = o_self.shape[-1]
    o_mem = F.scaled_dot_product_attention(q.view(B, T, H, dm).transpose(1, 2), k, v)
    o_mem = F.pad(o_mem.transpose(1, 2), (0, D // H - dm))
    s = torch.sigmoid(lam).view(-1, 1)
    return torch.lerp(o_self.view(B, T, H, D // H), o_mem, s).view(B, T, D)


def rel_err(a, ref):
    return ((a.double() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def test_supported_names_the_reason_on_the_cpu():
    q, k, o = torch.randn(1, 5, 8), torch.randn(1, 2, 3, 4), torch.randn(1, 5, 16)
    ok, why = grc_triton.supported(q, k, o)
    assert not ok and ('CUDA' in why or 'Triton' in why)


@pytest.mark.parametrize('impl', ['triton', 'auto'])
def test_triton_impl_runs_the_reference_on_the_cpu(impl):
    torch.manual_seed(0)
    ref = GatedRecurrentCache(32, 4, cache_grid=(6, 8), kv_grid=(3, 4), impl='eager').train()
    fused = copy.deepcopy(ref)
    fused.impl = impl
    x, o = torch.randn(2, 12 * 16, 32), torch.randn(2, 12 * 16, 32)
    assert torch.equal(ref(x, (12, 16), o), fused(x, (12, 16), o))
    assert torch.equal(ref.cache, fused.cache)


def test_cache_impl_triton_is_accepted_by_every_backbone():
    for name in SMALL_BACKBONES:
        model = MODELS.build(cached_cfg(name, cache_impl='triton'))
        assert {m.impl for _, m in grc_layers(model)} == {'triton'}


# --------------------------------------------------------------------- CUDA
@CUDA
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('B,T,H,TK,dm,D', [
    (1, 1, 1, 49, 32, 64),        # one token
    (3, 997, 2, 49, 16, 64),      # odd token count, PVT-T-like stage 2 head
    (2, 4171, 1, 49, 32, 64),     # many token blocks per backward program
    (2, 300, 8, 16, 32, 512),     # kv grid 4x4, 8 heads
    (1, 77, 4, 6, 8, 32),         # cache_ratio 1: the cached head fills the head
    (2, 129, 5, 35, 3, 30),       # head widths below the kernel's 16, 5 heads
])
def test_kernel_equals_float64_reference(dtype, B, T, H, TK, dm, D):
    torch.manual_seed(B * 1000 + T)
    dev = 'cuda'
    q = torch.randn(B, T, H * dm, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(B, H, TK, dm, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(B, H, TK, dm, device=dev, dtype=dtype, requires_grad=True)
    o_self = torch.randn(B, T, D, device=dev, dtype=dtype, requires_grad=True)
    lam = torch.randn(H, device=dev, requires_grad=True)
    w = torch.randn(B, T, D, device=dev)
    ins = (q, k, v, o_self, lam)
    out = grc_triton.cached_attention_mix(*ins)
    assert out.dtype == dtype and out.shape == o_self.shape
    grads = torch.autograd.grad((out.float() * w).sum(), ins)
    ref_ins = [t.detach().double().requires_grad_() for t in ins]
    ref = reference(*ref_ins)
    ref_grads = torch.autograd.grad((ref * w.double()).sum(), ref_ins)
    tol = REL[dtype]
    assert rel_err(out, ref) < tol
    for name, g, r, t in zip(('q', 'k', 'v', 'o_self', 'lambda'), grads, ref_grads, ins):
        assert torch.isfinite(g).all(), name
        assert g.dtype == t.dtype and g.shape == t.shape, name
        assert rel_err(g, r) < tol, (name, rel_err(g, r))


@CUDA
def test_kernel_writes_every_output_and_is_deterministic():
    torch.manual_seed(1)
    q = torch.randn(2, 3001, 64, device='cuda', dtype=torch.float16, requires_grad=True)
    k = torch.randn(2, 2, 49, 32, device='cuda', dtype=torch.float16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    o_self = torch.randn(2, 3001, 128, device='cuda', dtype=torch.float16, requires_grad=True)
    lam = torch.randn(2, device='cuda', requires_grad=True)
    dout = torch.randn_like(o_self)
    runs = []
    for _ in range(2):
        out = grc_triton.cached_attention_mix(q, k, v, o_self, lam)
        runs.append([out] + list(torch.autograd.grad(out, (q, k, v, o_self, lam), dout)))
    for a, b in zip(*runs):
        assert torch.isfinite(a).all()
        assert torch.equal(a, b)  # bitwise: fixed-order partial sums


def cuda_layer(impl, num_heads=4, embed=64, kv_grid=(3, 4), ratio=0.5):
    torch.manual_seed(0)
    m = GatedRecurrentCache(embed, num_heads, cache_grid=(6, 8), kv_grid=kv_grid,
                            cache_ratio=ratio, impl=impl)
    with torch.no_grad():
        m.cache.copy_(torch.randn_like(m.cache))
        m.cache_lambda.copy_(torch.linspace(-1, 1, num_heads))
    return m.cuda().train()


@CUDA
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('batch', [0, 1, 3])
@pytest.mark.parametrize('num_heads,kv_grid,ratio', [(4, (3, 4), 0.5), (1, None, 0.5),
                                                     (2, (6, 8), 1.0), (8, (2, 3), 0.25)])
def test_layer_triton_equals_eager(dtype, batch, num_heads, kv_grid, ratio, monkeypatch):
    calls = count_fused_calls(monkeypatch)
    eager = cuda_layer('eager', num_heads, kv_grid=kv_grid, ratio=ratio)
    fused = copy.deepcopy(eager)
    fused.impl = 'triton'
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for step in range(2):  # the second step reads the cache the first one wrote
        x = torch.randn(batch, 13 * 17, 64, device='cuda')
        o = torch.randn(batch, 13 * 17, 64, device='cuda')
        w = torch.randn(batch, 13 * 17, 64, device='cuda')
        res = []
        for m in (eager, fused):
            xi, oi = x.clone().requires_grad_(), o.clone().requires_grad_()
            with torch.autocast('cuda', dtype=dtype, enabled=dtype != torch.float32):
                out = m(xi, (13, 17), oi)
            (out.float() * w).sum().backward()
            res.append([out.float(), xi.grad, oi.grad] +
                       [torch.zeros_like(p) if p.grad is None else p.grad.clone()
                        for p in m.parameters()])
            m.zero_grad(set_to_none=True)
        for a, b in zip(*res):
            scale = a.abs().amax().clamp_min(1) if a.numel() else 1.0  # batch 0: empty
            torch.testing.assert_close(b / scale, a / scale, atol=tol, rtol=tol)
        torch.testing.assert_close(fused.cache, eager.cache, atol=1e-5, rtol=1e-5)
    assert len(calls) == (2 if batch else 0)  # batch 0 runs the reference


@CUDA
def test_one_rank_nccl_ddp_step_runs_fused_and_matches_no_ddp(tmp_path, monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    calls = count_fused_calls(monkeypatch)
    torch.manual_seed(0)
    ref = MODELS.build(cached_cfg('PVT', cache_impl='eager', drop_path_rate=0.)).cuda().train()
    model = MODELS.build(cached_cfg('PVT', drop_path_rate=0.)).cuda().train()  # 'auto'
    model.load_state_dict(ref.state_dict())
    os.environ.setdefault('NCCL_NVLS_ENABLE', '0')
    dist.init_process_group('nccl', init_method=f'file://{tmp_path}/rendezvous', rank=0,
                            world_size=1)
    try:
        ddp = DDP(model, device_ids=[torch.cuda.current_device()])
        x = torch.randn(2, 3, 96, 128, device='cuda')
        outs = []
        for m in (ref, ddp):
            opt = torch.optim.SGD(m.parameters(), lr=0.1)
            with torch.autocast('cuda', dtype=torch.float16):
                y = m(x)
            sum(t.float().mean() for t in y).backward()
            opt.step()
            outs.append([t.float() for t in y])
    finally:
        dist.destroy_process_group()
    assert calls, 'the fused path did not run under DDP'
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, atol=5e-3, rtol=5e-3)
    for (n, a), (_, b) in zip(ref.named_parameters(), model.named_parameters()):
        torch.testing.assert_close(b, a, atol=5e-3, rtol=5e-3, msg=n)
    for (n, a), (_, b) in zip(grc_layers(ref), grc_layers(model)):
        torch.testing.assert_close(b.cache, a.cache, atol=1e-3, rtol=1e-3, msg=n)


def test_sdpa_of_an_empty_batch_is_empty_and_in_the_graph():
    from grc_mmdet.models.grc import sdpa
    q = torch.randn(0, 2, 5, 8, requires_grad=True)
    k, v = torch.randn(0, 2, 7, 8), torch.randn(0, 2, 7, 8)
    out = sdpa(q, k, v, attn_mask=torch.zeros(0, 2, 5, 7))
    assert out.shape == (0, 2, 5, 8) and out.requires_grad
    out.sum().backward()
    assert q.grad.shape == q.shape


@CUDA
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('name', list(SMALL_BACKBONES))
def test_backbone_batch_0_under_autocast_on_cuda(name, dtype):
    """SDPA returns None for an empty batch under CUDA autocast (torch 2.11);
    every attention of the cached backbones goes through grc.sdpa."""
    m = MODELS.build(cached_cfg(name, drop_path_rate=0.)).cuda().train()
    x = torch.randn(0, 3, 97, 131, device='cuda', requires_grad=True)
    with torch.autocast('cuda', dtype=dtype):
        outs = m(x)
    assert all(o.shape[0] == 0 for o in outs)
    sum(o.float().sum() for o in outs).backward()
    assert x.grad is not None and x.grad.shape == x.shape

"""GRC-Attention module: the spec's equations, cache semantics, precision, errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from grc_mmdet.models.grc import GatedRecurrentCache, StepClock, resize_tokens, set_recording


def make(D=16, H=2, grid=(3, 4), **kw):
    torch.manual_seed(0)
    m = GatedRecurrentCache(D, H, cache_grid=grid, **kw)
    with torch.no_grad():  # non-trivial lambda and cache
        m.cache_lambda.copy_(torch.linspace(-1, 1, H))
        m.cache.copy_(torch.randn_like(m.cache))
    return m


def reference(m, x, hw, o_self):
    """Eqs. 1-7 of docs/design.md, written out step by step (no fusion)."""
    B, T, D = x.shape
    Dm, Hh = m.cache_dims, m.num_heads
    hm, wm = m.cache_grid
    xbar = x[..., :Dm]                                                   # Eq. 1 slice
    img = xbar.transpose(1, 2).reshape(B, Dm, *hw)
    if hw[0] >= hm and hw[1] >= wm:
        img = F.adaptive_avg_pool2d(img, (hm, wm))
    else:
        img = F.interpolate(img, (hm, wm), mode='bilinear', align_corners=False, antialias=True)
    xg = img.flatten(2).transpose(1, 2)                                  # B,Tm,Dm
    C = m.cache.reshape(1, hm * wm, Dm).expand(B, -1, -1)                # C_{t-1}
    # The module stores each of W_u, W_r, W_c split by input (Xbar | C); the
    # paper's matrices on the concatenation are these blocks side by side.
    Wx, bx, Wc = m.gate_x.weight, m.gate_x.bias, m.gate_c.weight
    Wu = torch.cat([Wx[:Dm], Wc[:Dm]], 1)                                # Dm x 2Dm
    Wr = torch.cat([Wx[Dm:2 * Dm], Wc[Dm:]], 1)
    Wcand = torch.cat([Wx[2 * Dm:], m.cand_c.weight], 1)
    bu, br, bc = bx[:Dm], bx[Dm:2 * Dm], bx[2 * Dm:]
    g_u = torch.sigmoid(torch.cat([xg, C], -1) @ Wu.T + bu)              # Eq. 2
    g_r = torch.sigmoid(torch.cat([xg, C], -1) @ Wr.T + br)
    c_tilde = torch.cat([xg, g_r * C], -1) @ Wcand.T + bc                # Eq. 3
    C_t = (1 - g_u) * C + g_u * c_tilde                                  # Eq. 4
    mem = C_t
    if m.kv_grid is not None:
        mem = F.adaptive_avg_pool2d(C_t.transpose(1, 2).reshape(B, Dm, hm, wm), m.kv_grid)
        mem = mem.flatten(2).transpose(1, 2)
    dm = Dm // Hh
    q = xbar @ m.mem_q.weight.T + m.mem_q.bias
    kv = mem @ m.mem_kv.weight.T + m.mem_kv.bias
    k, v = kv[..., :Dm], kv[..., Dm:]
    out = o_self.clone()
    for h in range(Hh):                                                  # Eq. 5 and 7
        qh, kh, vh = (t[..., h * dm:(h + 1) * dm] for t in (q, k, v))
        attn = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(dm), -1)
        o_mem = attn @ vh
        s = torch.sigmoid(m.cache_lambda[h])
        d = D // Hh
        head = (1 - s) * o_self[..., h * d:(h + 1) * d]
        head[..., :dm] = head[..., :dm] + s * o_mem
        out[..., h * d:(h + 1) * d] = head
    return out, C_t.mean(0)


@pytest.mark.parametrize('hw,kv_grid', [((6, 8), None), ((5, 7), None), ((2, 3), (2, 2)),
                                        ((9, 4), (1, 2))])
def test_matches_hand_written_reference(hw, kv_grid):
    m = make(kv_grid=kv_grid).train()
    x = torch.randn(3, hw[0] * hw[1], 16)
    o_self = torch.randn(3, hw[0] * hw[1], 16)
    with torch.no_grad():
        ref_out, ref_cache = reference(m, x, hw, o_self)
        out = m(x, hw, o_self)
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(m.cache.reshape(-1, m.cache_dims), ref_cache, atol=1e-5)


def test_cache_buffer_exists_before_forward_and_is_saved():
    m = GatedRecurrentCache(32, 4, cache_grid=(5, 6))
    assert m.cache.shape == (5, 6, 16) and m.cache.dtype == torch.float32
    assert torch.count_nonzero(m.cache) == 0
    assert 'cache' in m.state_dict()


def test_train_writes_eval_does_not():
    m = make()
    x, o = torch.randn(2, 12, 16), torch.randn(2, 12, 16)
    before = m.cache.clone()
    m.eval()
    m(x, (3, 4), o)
    assert torch.equal(m.cache, before)
    m.train()
    m(x, (3, 4), o)
    assert not torch.allclose(m.cache, before)


def test_eval_uses_stored_cache_not_last_batch():
    m = make().eval()
    x = torch.randn(1, 12, 16)
    o = torch.randn(1, 12, 16)
    a = m(x, (3, 4), o)
    m(torch.randn(4, 12, 16), (3, 4), torch.randn(4, 12, 16))  # another batch
    assert torch.equal(a, m(x, (3, 4), o))


def test_state_dict_round_trip_gives_identical_eval_outputs(tmp_path):
    m = make().train()
    for _ in range(3):
        m(torch.randn(2, 20, 16), (4, 5), torch.randn(2, 20, 16))
    torch.save(m.state_dict(), tmp_path / 'grc.pth')
    m2 = GatedRecurrentCache(16, 2, cache_grid=(3, 4))
    m2.load_state_dict(torch.load(tmp_path / 'grc.pth'))
    x, o = torch.randn(2, 35, 16), torch.randn(2, 35, 16)
    assert torch.equal(m.eval()(x, (5, 7), o), m2.eval()(x, (5, 7), o))


@pytest.mark.parametrize('hw', [(1, 1), (1, 9), (7, 2), (13, 17), (3, 4)])
def test_odd_and_non_square_inputs(hw):
    m = make().train()
    T = hw[0] * hw[1]
    out = m(torch.randn(2, T, 16), hw, torch.randn(2, T, 16))
    assert out.shape == (2, T, 16) and torch.isfinite(out).all()


def test_gradients_reach_every_parameter():
    m = make(kv_grid=(2, 2)).train()
    x = torch.randn(2, 30, 16, requires_grad=True)
    o = torch.randn(2, 30, 16, requires_grad=True)
    m(x, (5, 6), o).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0 and o.grad.abs().sum() > 0


def test_two_training_steps_backward_after_cache_write():
    """The write must not break backward of a step that read the old cache."""
    m = make().train()
    for _ in range(2):
        m(torch.randn(2, 12, 16), (3, 4), torch.randn(2, 12, 16)).sum().backward()


def test_zero_gate_returns_wrapped_attention_output():
    m = make()
    with torch.no_grad():
        m.cache_lambda.fill_(-math.inf)  # sigmoid(lambda) = 0
    x, o = torch.randn(2, 12, 16), torch.randn(2, 12, 16)
    assert torch.equal(m.eval()(x, (3, 4), o), o)


def test_lambda_init_default_is_half():
    m = GatedRecurrentCache(16, 2)
    assert torch.allclose(m.attention_ratio(), torch.full((2,), 0.5))


def test_bf16_autocast_finite_and_cache_float32():
    m = make().train()
    x = torch.randn(2, 20, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        o = torch.randn(2, 20, 16).to(torch.bfloat16)
        out = m(x, (4, 5), o)
    assert torch.isfinite(out.float()).all()
    assert m.cache.dtype == torch.float32
    assert m.cache_lambda.dtype == torch.float32


def test_non_finite_write_is_skipped_and_counted():
    m = make().train()
    before = m.cache.clone()
    x = torch.randn(2, 12, 16)
    x[0, 0, 0] = float('nan')
    m(x, (3, 4), torch.randn(2, 12, 16))
    assert torch.equal(m.cache, before)
    assert int(m.cache_skipped_writes) == 1
    m(torch.randn(2, 12, 16), (3, 4), torch.randn(2, 12, 16))  # a good batch writes again
    assert torch.isfinite(m.cache).all() and not torch.equal(m.cache, before)


def test_checkpoint_recompute_reads_the_same_cache():
    """With a shared clock, a second call in the same step (activation
    checkpointing) reuses C_{t-1} and does not write twice."""
    clock = StepClock()
    m = make()
    m.clock = clock
    m.train()
    x, o = torch.randn(2, 12, 16), torch.randn(2, 12, 16)
    clock.tick()
    a = m(x, (3, 4), o)
    written = m.cache.clone()
    b = m(x, (3, 4), o)  # recompute
    assert torch.equal(a, b) and torch.equal(m.cache, written)
    clock.tick()
    m(x, (3, 4), o)
    assert not torch.equal(m.cache, written)


def test_recording_is_opt_in():
    m = make()
    m(torch.randn(1, 12, 16), (3, 4), torch.randn(1, 12, 16))
    assert m.last_o_self is None and m.last_o_mem is None
    set_recording(m, True)
    m(torch.randn(1, 12, 16), (3, 4), torch.randn(1, 12, 16))
    assert m.last_o_self.shape == (1, 2, 12, 8) and m.last_o_mem.shape == (1, 2, 12, 4)
    set_recording(m, False)
    assert m.last_o_self is None


def test_cache_resized_when_loading_other_grid():
    src = make(grid=(4, 4))
    dst = GatedRecurrentCache(16, 2, cache_grid=(2, 3))
    with pytest.warns(UserWarning, match='resizing the cache'):
        dst.load_state_dict(src.state_dict())
    assert dst.cache.shape == (2, 3, 8)
    expected = resize_tokens(src.cache.reshape(1, 16, 8), (4, 4), (2, 3))[0].permute(1, 2, 0)
    assert torch.allclose(dst.cache, expected)


@pytest.mark.parametrize('kwargs,word', [
    (dict(cache_ratio=0.0), 'cache_ratio'),
    (dict(cache_ratio=1.5), 'cache_ratio'),
    (dict(cache_grid=0), 'cache_grid'),
    (dict(cache_grid=(3, 0)), 'cache_grid'),
    (dict(num_heads=3), 'num_heads'),
    (dict(num_heads=8, cache_ratio=0.25), 'num_heads'),
    (dict(kv_grid=(0, 2)), 'kv_grid'),
    (dict(cache_ratio=True), 'cache_ratio'),
    (dict(cache_grid=True), 'cache_grid'),
    (dict(cache_grid=(True, 2)), 'cache_grid'),
    (dict(lambda_init=False), 'lambda_init'),
    (dict(lambda_init='0'), 'lambda_init'),
    (dict(cache_ratio=1e-8), 'cache_ratio=1e-08 gives D_m'),
])
def test_bad_arguments_raise_value_error(kwargs, word):
    args = dict(embed_dims=16, num_heads=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        GatedRecurrentCache(**args)


def test_wrong_input_shape_is_reported():
    m = make()
    with pytest.raises(ValueError, match='shape'):
        m(torch.randn(2, 12, 8), (3, 4), torch.randn(2, 12, 8))
    with pytest.raises(ValueError, match='hw_shape'):
        m(torch.randn(2, 12, 16), (3, 5), torch.randn(2, 12, 16))


def test_parameter_count_matches_paper_budget_formula():
    m = GatedRecurrentCache(64, 1)
    Dm = 32
    # W_u, W_r: 2Dm -> Dm each; W_c: 2Dm -> Dm; cached q: Dm -> Dm; k, v: Dm -> 2Dm; lambda
    expected = 3 * (2 * Dm * Dm + Dm) + (Dm * Dm + Dm) + (Dm * 2 * Dm + 2 * Dm) + 1
    assert sum(p.numel() for p in m.parameters()) == expected


def test_math_follows_the_cache_dtype_double():
    m = make().double().eval()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    o = torch.randn(2, 12, 16, dtype=torch.float64)
    out = m(x, (3, 4), o)
    assert out.dtype == torch.float64 and m.cache.dtype == torch.float64
    ref, _ = reference(m, x, (3, 4), o)
    assert torch.allclose(out, ref, atol=1e-12)
    m.train()(x, (3, 4), o)  # a training step writes a float64 cache
    assert m.cache.dtype == torch.float64


def test_empty_batch_gives_empty_output_and_no_write():
    m = make().train()
    before = m.cache.clone()
    out = m(torch.randn(0, 12, 16), (3, 4), torch.randn(0, 12, 16))
    assert out.shape == (0, 12, 16)
    assert torch.equal(m.cache, before) and int(m.cache_skipped_writes) == 0


def test_inference_mode_in_train_mode_does_not_poison_later_training():
    m = make().train()
    before = m.cache.clone()
    with torch.inference_mode():
        m(torch.randn(2, 12, 16), (3, 4), torch.randn(2, 12, 16))
    assert torch.equal(m.cache, before) and not m.cache.is_inference()
    x = torch.randn(2, 12, 16, requires_grad=True)
    m(x, (3, 4), torch.randn(2, 12, 16)).sum().backward()  # a normal step still works
    assert x.grad is not None and not torch.equal(m.cache, before)


@pytest.mark.parametrize('key,value,word', [
    ('cache', torch.zeros(3, 4, 6), 'cache_ratio'),
    ('cache', torch.zeros(12, 8), 'cache'),
    ('gate_x.weight', torch.zeros(12, 4), 'gate_x.weight'),
    ('cache_lambda', torch.zeros(3), 'cache_lambda'),
])
def test_grc_tensor_of_wrong_shape_is_an_error_naming_the_key(key, value, word):
    m = make()
    state = m.state_dict()
    state[key] = value
    with pytest.raises(ValueError, match=word):
        GatedRecurrentCache(16, 2, cache_grid=(3, 4)).load_state_dict(state)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_non_finite_cache_in_a_checkpoint_is_refused(bad):
    state = make().state_dict()
    state['cache'][1, 2, 3] = bad
    with pytest.raises(ValueError, match='NaN/Inf'):
        GatedRecurrentCache(16, 2, cache_grid=(3, 4)).load_state_dict(state)


@pytest.mark.parametrize('key,bad', [
    ('cache_lambda', float('nan')), ('gate_x.weight', float('inf')),
    ('mem_kv.bias', float('-inf')), ('cand_c.weight', float('nan'))])
def test_non_finite_grc_tensor_in_a_checkpoint_is_refused(key, bad):
    state = make().state_dict()
    state[key].view(-1)[0] = bad
    with pytest.raises(ValueError, match=f'{key}: the checkpoint holds NaN/Inf'):
        GatedRecurrentCache(16, 2, cache_grid=(3, 4)).load_state_dict(state)


@pytest.mark.parametrize('dtype', [torch.int64, torch.bool, torch.complex64])
def test_non_floating_cache_in_a_checkpoint_is_refused(dtype):
    state = make().state_dict()
    state['cache'] = torch.ones(3, 4, 8, dtype=dtype)
    with pytest.raises(ValueError, match=f'cache: the checkpoint stores a {dtype}'):
        GatedRecurrentCache(16, 2, cache_grid=(3, 4)).load_state_dict(state)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('hw', [(2, 3), (3, 4), (5, 9)])
def test_half_precision_module_runs_on_cpu(dtype, hw):
    """A model cast with .half()/.bfloat16(): growing and shrinking resizes work."""
    m = make().to(dtype).train()
    T = hw[0] * hw[1]
    out = m(torch.randn(2, T, 16, dtype=dtype), hw, torch.randn(2, T, 16, dtype=dtype))
    assert out.dtype == dtype and torch.isfinite(out).all() and m.cache.dtype == dtype

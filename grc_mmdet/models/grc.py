"""GRC-Attention: the Gated Recurrent Cache of Cached Transformers.

Zhang et al., "Cached Transformers: Improving Transformers with Differentiable
Memory Cache", AAAI 2024. Contract: ``shared/docs/grc-spec.md``.

:class:`GatedRecurrentCache` turns any multi-head self-attention into
GRC-Attention. The wrapped attention computes its own output ``o_self``
(heads concatenated, *before* its output projection); this module adds the
cached branch and mixes the two per head::

    Xbar_t   = X_t[..., :D_m]                           (Eq. 1, channel slice)
    Xbar_g   = resize2d(Xbar_t, H x W -> h_m x w_m)      (Eq. 1, 2-D area/bilinear)
    g_u, g_r = sigmoid(W_{u,r} [Xbar_g, C_{t-1}])        (Eq. 2)
    Ctilde_t = W_c [Xbar_g, g_r * C_{t-1}]               (Eq. 3)
    C_t      = (1 - g_u) * C_{t-1} + g_u * Ctilde_t      (Eq. 4, per sample)
    o_mem^h  = softmax(Qbar^h Kbar^h^T / sqrt(D_m/H)) Vbar^h   (Eq. 5)
               Qbar from Xbar_t (all T tokens), Kbar/Vbar from C_t
               (optionally average-pooled to ``kv_grid``)
    O^h      = s_h * pad(o_mem^h) + (1 - s_h) * o_self^h,  s_h = sigmoid(lambda_h)  (Eq. 7)

``pad`` places the D_m/H channels of o_mem^h in the first D_m/H channels of
head h's D/H channels (zeros elsewhere): parameter-free, so the parameter
budget is the paper's (gates 6*D_m^2 + cached q/k/v 3*D_m^2 per layer; PVT-Tiny
+1.74M). The caller applies its usual output projection to ``O``.

Cache semantics (Eq. 8 and our decisions): the buffer ``cache`` (h_m, w_m, D_m)
exists from construction. In training mode the batch mean of C_t (and the mean
over ranks under ``torch.distributed``) replaces it, under ``no_grad``;
gradients flow through C_t within the step only. In eval mode nothing is
written. A write containing NaN/Inf is skipped and counted in
``cache_skipped_writes``. The gates and the cache stay float32 under autocast.
"""
import math
import os
import warnings
from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

GridLike = Union[int, Sequence[int]]


def _as_grid(value: GridLike, name: str) -> Tuple[int, int]:
    """Validate an int or (h, w) pair of positive ints."""
    if isinstance(value, int):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f'{name} must be an int or a pair (h, w) of ints, got {value!r}')
    if min(value) <= 0:
        raise ValueError(f'{name} must be positive, got {value!r}')
    return value


def resize_tokens(x_bnc: torch.Tensor, hw_shape: Tuple[int, int],
                  out_hw: Tuple[int, int]) -> torch.Tensor:
    """Resize a token map (B, H*W, C) to (B, C, h, w) in 2-D.

    Pure shrinking uses area averaging (adaptive average pooling); any other
    case (growing, or one side growing) uses antialiased bilinear. Works for
    any H, W (odd, non-square).
    """
    B, N, C = x_bnc.shape
    H, W = hw_shape
    if N != H * W:
        raise ValueError(f'token count {N} does not match hw_shape {hw_shape}')
    x_bchw = x_bnc.transpose(1, 2).reshape(B, C, H, W)
    if (H, W) == tuple(out_hw):
        return x_bchw
    if H >= out_hw[0] and W >= out_hw[1]:
        return F.adaptive_avg_pool2d(x_bchw, out_hw)
    return F.interpolate(x_bchw, size=out_hw, mode='bilinear', align_corners=False,
                         antialias=True)


def gated_update(xbar_g: torch.Tensor, c_prev: torch.Tensor, w_x: torch.Tensor,
                 b_x: torch.Tensor, w_c: torch.Tensor, w_cc: torch.Tensor) -> torch.Tensor:
    """Eqs. 2-4 on the cache grid: (B, Tm, Dm) inputs, (Tm, Dm) C_{t-1} -> C_t.

    g = sigmoid(W [Xbar, C]) is computed as sigmoid(W_x Xbar + b + W_c C); the
    rows of ``w_x`` are (u | r | candidate), of ``w_c`` (u | r).
    """
    Dm = c_prev.shape[-1]
    x_part = F.linear(xbar_g, w_x, b_x)                                  # B,Tm,3Dm
    g_u, g_r = torch.sigmoid(x_part[..., :2 * Dm] + F.linear(c_prev, w_c)).chunk(2, -1)
    c_cand = x_part[..., 2 * Dm:] + F.linear(g_r * c_prev, w_cc)        # Eq. 3
    return torch.addcmul(c_prev, g_u, c_cand - c_prev)                  # Eq. 4: C + g_u (Ct - C)


def mix_heads(o_self_h: torch.Tensor, o_mem: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eq. 7: (1 - s_h) o_self^h + s_h pad(o_mem^h), s = sigmoid(lambda).

    o_self_h: (B, T, H, d); o_mem: (B, T, H, d_m), d_m <= d, zero-padded to d.
    """
    s = torch.sigmoid(lam).to(o_self_h.dtype).view(-1, 1)
    o_mem = F.pad(o_mem.to(o_self_h.dtype), (0, o_self_h.shape[-1] - o_mem.shape[-1]))
    return torch.lerp(o_self_h, o_mem, s)


# GRC_COMPILE=1 compiles the two elementwise-heavy pieces with torch.compile on
# CUDA (fewer kernel launches); off by default and never used on CPU.
_COMPILED = {}


def _maybe_compiled(fn, device_type: str):
    if device_type != 'cuda' or os.environ.get('GRC_COMPILE', '0') != '1':
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


def sdpa(q, k, v, which: str = 'cache', **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention``; the environment variable
    GRC_SDPA_CACHE / GRC_SDPA_SELF (e.g. ``flash,efficient``) restricts the
    kernels of the cached / self attention, for benchmarking backends."""
    names = os.environ.get(f'GRC_SDPA_{which.upper()}')
    if not names:
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [getattr(SDPBackend, {'flash': 'FLASH_ATTENTION', 'efficient': 'EFFICIENT_ATTENTION',
                                     'cudnn': 'CUDNN_ATTENTION'}.get(n, n.upper()))
                for n in names.split(',')]
    with sdpa_kernel(backends):
        return F.scaled_dot_product_attention(q, k, v, **kwargs)


class StepClock:
    """A counter shared by the GRC layers of one backbone.

    The backbone ticks it once per forward. A layer that sees the same tick
    twice in training is being recomputed by activation checkpointing
    (``with_cp``): it then reuses the cache it read the first time and does
    not write again, so the recomputation matches the original forward.
    """

    def __init__(self):
        self.step = 0

    def tick(self):
        self.step += 1


class GatedRecurrentCache(nn.Module):
    """Gated recurrent cache + cached attention + per-head mix (GRC-Attention).

    Args:
        embed_dims (int): D, channels of the wrapped attention.
        num_heads (int): H, heads of the wrapped attention (also used by the
            cached branch, on D_m channels).
        cache_grid (int | tuple[int, int]): (h_m, w_m) of the cache;
            T_m = h_m * w_m. Default: 7.
        cache_ratio (float): r in (0, 1]; D_m = r * D. Default: 0.5 (paper).
        lambda_init (float): initial lambda of every head; sigmoid(0) = 0.5
            (paper). Default: 0.
        kv_grid (int | tuple[int, int] | None): average-pool the cache to this
            grid before computing cached keys/values (parameter-free
            reduction, e.g. PVT's sr_ratio). None: attend to all T_m cache
            tokens. Default: None.
        qkv_bias (bool): bias on the cached query/key/value projections.
            Default: True.
        attn_drop (float): dropout on the cached attention weights. Default 0.
        clock (StepClock | None): shared step counter of the owning backbone,
            needed only with activation checkpointing. Default: None.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 cache_grid: GridLike = 7,
                 cache_ratio: float = 0.5,
                 lambda_init: float = 0.0,
                 kv_grid: Optional[GridLike] = None,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.0,
                 clock: Optional[StepClock] = None):
        super().__init__()
        if not isinstance(embed_dims, int) or embed_dims <= 0:
            raise ValueError(f'embed_dims must be a positive int, got {embed_dims!r}')
        if not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f'num_heads must be a positive int, got {num_heads!r}')
        if not isinstance(cache_ratio, (int, float)) or not 0 < cache_ratio <= 1:
            raise ValueError(f'cache_ratio must be in (0, 1], got {cache_ratio!r}')
        if embed_dims % num_heads:
            raise ValueError(f'num_heads={num_heads} must divide embed_dims={embed_dims}')
        cache_dims = embed_dims * cache_ratio
        if abs(cache_dims - round(cache_dims)) > 1e-6:
            raise ValueError(f'cache_ratio={cache_ratio} * embed_dims={embed_dims} '
                             f'must be a whole number of cache channels')
        cache_dims = int(round(cache_dims))
        if cache_dims % num_heads:
            raise ValueError(f'num_heads={num_heads} must divide the cache channels '
                             f'D_m = cache_ratio * embed_dims = {cache_dims}')
        if not math.isfinite(lambda_init):
            raise ValueError(f'lambda_init must be finite, got {lambda_init!r}')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.cache_dims = cache_dims
        self.cache_ratio = cache_ratio
        self.cache_grid = _as_grid(cache_grid, 'cache_grid')
        self.kv_grid = None if kv_grid is None else _as_grid(kv_grid, 'kv_grid')
        self.attn_drop = attn_drop
        self.lambda_init = float(lambda_init)
        self.clock = clock

        Dm = cache_dims
        # Eqs. 2-3 act on the concatenation [Xbar, C]; a linear map of a
        # concatenation is the sum of maps of its parts, so W_u, W_r, W_c are
        # stored split by input: [W_u; W_r; W_c]_x on Xbar (with the biases),
        # [W_u; W_r]_c on C_{t-1} and (W_c)_c on g_r * C_{t-1}. Same parameters
        # and result as one Linear(2*D_m, .) per gate; the C_{t-1} part of the
        # gates is computed once per step instead of once per sample.
        self.gate_x = nn.Linear(Dm, 3 * Dm)             # rows: u | r | candidate
        self.gate_c = nn.Linear(Dm, 2 * Dm, bias=False)  # rows: u | r
        self.cand_c = nn.Linear(Dm, Dm, bias=False)
        # Eq. 5: cached-attention projections (queries from Xbar, keys/values from C_t).
        self.mem_q = nn.Linear(Dm, Dm, bias=qkv_bias)
        self.mem_kv = nn.Linear(Dm, 2 * Dm, bias=qkv_bias)
        # Eq. 7: one lambda per head.
        self.cache_lambda = nn.Parameter(torch.full((num_heads,), self.lambda_init))
        # Eq. 8: the cache, a persistent float32 buffer from construction.
        self.register_buffer('cache', torch.zeros(*self.cache_grid, Dm))
        self.register_buffer('cache_skipped_writes', torch.zeros((), dtype=torch.long))

        self.record = False  # opt-in: keep the last o_self / o_mem for analysis
        self.last_o_self = self.last_o_mem = self.last_hw = None
        self._cache_before_write = None
        self._read_step = None
        self._read_cache = None
        self.reset_parameters()

    def reset_parameters(self):
        """timm-style init: trunc-normal(0.02) weights, zero biases; lambda=lambda_init."""
        for lin in (self.gate_x, self.gate_c, self.cand_c, self.mem_q, self.mem_kv):
            nn.init.trunc_normal_(lin.weight, std=0.02)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        with torch.no_grad():
            self.cache_lambda.fill_(self.lambda_init)

    def extra_repr(self) -> str:
        return (f'embed_dims={self.embed_dims}, num_heads={self.num_heads}, '
                f'cache_dims={self.cache_dims}, cache_grid={self.cache_grid}, '
                f'kv_grid={self.kv_grid}')

    # ------------------------------------------------------------------ cache
    def _cache_to_read(self) -> torch.Tensor:
        """C_{t-1}; under checkpoint recomputation, the one read the first time."""
        if self.training and self.clock is not None:
            if self._read_step == self.clock.step and self._read_cache is not None:
                return self._read_cache
            self._read_step, self._read_cache = self.clock.step, self.cache
        return self.cache

    @torch.no_grad()
    def _write(self, c_new_bmd: torch.Tensor, c_prev: torch.Tensor) -> None:
        """Eq. 8: store the batch (and rank) mean of C_t; skip non-finite writes."""
        new = c_new_bmd.detach().mean(0).view_as(self.cache)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(new)
            new = new / dist.get_world_size()
        finite = torch.isfinite(new).all()
        # No host sync here: torch.where keeps the old cache on a bad write and
        # the counter records it; `report_skipped_writes` warns (one sync a step).
        self.cache_skipped_writes.add_(~finite)
        # Assign a new tensor (never copy_ in place: this step's graph reads the old one).
        self.cache = torch.where(finite, new, c_prev)
        self._cache_before_write = c_prev

    @property
    def last_write_delta(self) -> Optional[torch.Tensor]:
        """|C_new - C_old| / |C_old| of the last write (None before any)."""
        prev = self._cache_before_write
        if prev is None:
            return None
        return (self.cache - prev).norm() / prev.norm().clamp_min(1e-12)

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, hw_shape: Tuple[int, int],
                o_self: torch.Tensor) -> torch.Tensor:
        """Mix the wrapped attention's output with attention over the cache.

        Args:
            x (Tensor): (B, T, D) tokens the wrapped attention received (its
                input after the block's norm), T = H * W.
            hw_shape (tuple[int, int]): (H, W) of the token map.
            o_self (Tensor): (B, T, D) wrapped attention output before its
                output projection, heads concatenated (head h = channels
                [h*D/H, (h+1)*D/H)).

        Returns:
            Tensor: (B, T, D), to be fed to the wrapped output projection.
        """
        B, T, D = x.shape
        if D != self.embed_dims or o_self.shape != x.shape:
            raise ValueError(f'GRC expects x and o_self of shape (B, T, {self.embed_dims}), '
                             f'got {tuple(x.shape)} and {tuple(o_self.shape)}')
        Hh, Dm = self.num_heads, self.cache_dims
        dm, d = Dm // Hh, D // Hh
        hm, wm = self.cache_grid
        xbar = x[..., :Dm]                                              # Eq. 1: B,T,Dm

        with torch.autocast(device_type=x.device.type, enabled=False):
            c_prev = self._cache_to_read()                              # hm,wm,Dm fp32
            c_prev_md = c_prev.view(hm * wm, Dm)
            xbar_g = resize_tokens(xbar.float(), hw_shape, (hm, wm))    # B,Dm,hm,wm
            c_new = _maybe_compiled(gated_update, x.device.type)(          # Eqs. 2-4
                xbar_g.flatten(2).transpose(1, 2), c_prev_md, self.gate_x.weight,
                self.gate_x.bias, self.gate_c.weight, self.cand_c.weight)  # B,Tm,Dm
        if self.training:
            self._write_once(c_new, c_prev)

        # Eq. 5: cached attention, heads of D_m/H channels, runs under autocast.
        mem = c_new
        if self.kv_grid is not None and self.kv_grid != self.cache_grid:
            mem = resize_tokens(c_new, (hm, wm), self.kv_grid).flatten(2).transpose(1, 2)
        q = self.mem_q(xbar).view(B, T, Hh, dm).transpose(1, 2)         # B,H,T,dm
        k, v = self.mem_kv(mem).view(B, -1, 2, Hh, dm).permute(2, 0, 3, 1, 4).unbind(0)
        o_mem = sdpa(
            q, k.to(q.dtype), v.to(q.dtype), 'cache',
            dropout_p=self.attn_drop if self.training else 0.0)      # B,H,T,dm
        o_mem = o_mem.transpose(1, 2)                                   # B,T,H,dm

        # Eq. 7: per-head mix; o_mem fills the first D_m/H channels of each head.
        o_self_h = o_self.view(B, T, Hh, d)
        mixed = _maybe_compiled(mix_heads, x.device.type)(o_self_h, o_mem, self.cache_lambda)
        if self.record:
            self.last_o_self = o_self_h.transpose(1, 2).detach()
            self.last_o_mem = o_mem.transpose(1, 2).detach()
            self.last_hw = tuple(hw_shape)
        return mixed.view(B, T, D)

    def _write_once(self, c_new: torch.Tensor, c_prev: torch.Tensor) -> None:
        """Write in training, once per backbone step (not again on recompute)."""
        if self.clock is not None and getattr(self, '_written_step', None) == self.clock.step:
            return
        self._write(c_new, c_prev)
        if self.clock is not None:
            self._written_step = self.clock.step

    # ------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        """Resize a cache saved on another grid to this layer's grid (with a warning)."""
        key = prefix + 'cache'
        saved = state_dict.get(key)
        if (saved is not None and saved.dim() == 3 and saved.shape[-1] == self.cache_dims
                and tuple(saved.shape[:2]) != self.cache_grid):
            warnings.warn(f'{key}: resizing the cache from grid {tuple(saved.shape[:2])} '
                          f'to {self.cache_grid}')
            h, w, c = saved.shape
            resized = resize_tokens(saved.float().reshape(1, h * w, c), (h, w), self.cache_grid)
            state_dict = dict(state_dict)
            state_dict[key] = resized[0].permute(1, 2, 0).contiguous()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def attention_ratio(self) -> torch.Tensor:
        """sigmoid(lambda) per head: the weight of the cached branch."""
        return torch.sigmoid(self.cache_lambda.detach())


# ---------------------------------------------------------------- utilities
def grc_layers(model: nn.Module) -> Iterator[Tuple[str, GatedRecurrentCache]]:
    """(name, module) of every GRC layer in ``model``, in forward order."""
    for name, module in model.named_modules():
        if isinstance(module, GatedRecurrentCache):
            yield name, module


def set_recording(model: nn.Module, enabled: bool = True) -> None:
    """Turn on/off keeping o_self / o_mem of the last forward in every GRC layer."""
    for _, m in grc_layers(model):
        m.record = enabled
        if not enabled:
            m.last_o_self = m.last_o_mem = m.last_hw = None


def report_skipped_writes(model: nn.Module, seen: dict) -> int:
    """Warn about cache writes skipped since the last call (one host sync).

    ``seen`` maps layer name -> count already reported; updated in place.
    Returns the total number of skipped writes.
    """
    layers = list(grc_layers(model))
    if not layers:
        return 0
    counts = torch.stack([m.cache_skipped_writes for _, m in layers]).tolist()
    for (name, _), count in zip(layers, counts):
        if count > seen.get(name, 0):
            warnings.warn(f'GRC layer {name}: {count - seen.get(name, 0)} cache write(s) '
                          f'with NaN/Inf skipped (total {count}); the cache kept its '
                          f'previous value')
            seen[name] = count
    return int(sum(counts))

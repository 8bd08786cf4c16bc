"""GRC-Attention: the Gated Recurrent Cache of Cached Transformers.

Zhang et al., "Cached Transformers: Improving Transformers with Differentiable
Memory Cache", AAAI 2024. Design notes: ``docs/design.md``.

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
exists from construction. In training mode the batch mean of C_t (the mean
over the samples of all ranks under ``torch.distributed``) replaces it, under
``no_grad``; gradients flow through C_t within the step only. In eval mode
nothing is written (nor under ``torch.inference_mode``, nor for an empty
batch, which under ``torch.distributed`` still joins the all-reduce). A write
containing NaN/Inf is skipped and counted in ``cache_skipped_writes``. A
backbone sets ``defer_writes`` and writes all its layers at once after its
forward (:func:`flush_cache_writes`, same values). The gates and the cache run
in the cache's dtype (float32 unless the model is cast) with autocast off.
"""
import functools
import math
import warnings
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from . import grc_triton

GridLike = Union[int, Sequence[int]]
IMPLS = ('auto', 'eager', 'cuda_graph', 'triton')


def _as_grid(value: GridLike, name: str) -> Tuple[int, int]:
    """Validate an int or (h, w) pair of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)):
        raise ValueError(f'{name} must be an int or a pair (h, w) of ints, got {value!r}')
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                  for v in value):
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
    if B == 0:  # CUDA's antialiased resize refuses an empty batch; the result is empty
        return x_bchw[..., :1, :1].expand(B, C, *out_hw)
    if H >= out_hw[0] and W >= out_hw[1]:
        return F.adaptive_avg_pool2d(x_bchw, out_hw)
    if x_bchw.device.type == 'cpu' and x_bchw.dtype in (torch.float16, torch.bfloat16):
        # torch has no antialiased bilinear for half types on the CPU
        return F.interpolate(x_bchw.float(), size=out_hw, mode='bilinear', align_corners=False,
                             antialias=True).to(x_bchw.dtype)
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


def _check_number(value, name: str) -> float:
    """A real number (int or float); bools and other types are errors."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{name} must be a number, got {value!r} ({type(value).__name__})')
    return value


class GatedRecurrentCache(nn.Module):
    """Gated recurrent cache + cached attention + per-head mix (GRC-Attention).

    The math is in this module's docstring; ``docs/design.md`` explains the
    choices. Every cached backbone builds one of these per attention layer.

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
        stage (int | None): index of the backbone stage this layer is in, for
            logs and analysis. Default: None.
        block (int | None): index of the block within its stage. Default: None.
        impl (str): 'eager' runs every operation eagerly (the reference,
            and the CPU path). 'triton' runs the token side (Eqs. 5 and 7:
            cached attention and mix) as one Triton kernel forward and one
            backward (:mod:`grc_mmdet.models.grc_triton`) on CUDA inputs,
            the cache side eagerly; it runs under torch.distributed too.
            'cuda_graph' runs the image-size-independent part (Eqs. 2-4 and
            the cached keys/values, :meth:`core`) as one captured CUDA graph
            forward and one backward, on CUDA inputs; the same math. It
            cannot run under torch.distributed (capturing inside
            DistributedDataParallel's forward fails with a CUDA
            stream-capture error), so it raises there. 'auto' takes the
            Triton token side wherever it applies, and the graphed cache side
            in a single process (eager under torch.distributed).
            Default: 'auto'.
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
                 clock: Optional[StepClock] = None,
                 stage: Optional[int] = None,
                 block: Optional[int] = None,
                 impl: str = 'auto'):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
        for value, name in ((embed_dims, 'embed_dims'), (num_heads, 'num_heads')):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        _check_number(cache_ratio, 'cache_ratio')
        if not 0 < cache_ratio <= 1:
            raise ValueError(f'cache_ratio must be in (0, 1], got {cache_ratio!r}')
        if embed_dims % num_heads:
            raise ValueError(f'num_heads={num_heads} must divide embed_dims={embed_dims}')
        cache_dims = embed_dims * cache_ratio
        if abs(cache_dims - round(cache_dims)) > 1e-6:
            raise ValueError(f'cache_ratio={cache_ratio} * embed_dims={embed_dims} '
                             f'must be a whole number of cache channels')
        cache_dims = int(round(cache_dims))
        if cache_dims < 1:
            raise ValueError(f'cache_ratio={cache_ratio} gives D_m = cache_ratio * embed_dims = '
                             f'{cache_dims} cache channels for embed_dims={embed_dims}; '
                             f'at least 1 is needed')
        if cache_dims % num_heads:
            raise ValueError(f'num_heads={num_heads} must divide the cache channels '
                             f'D_m = cache_ratio * embed_dims = {cache_dims}')
        if not math.isfinite(_check_number(lambda_init, 'lambda_init')):
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
        self.stage = stage
        self.block = block
        self.impl = impl
        #: set by the owning backbone, which then writes all its caches at once
        #: (:func:`flush_cache_writes`) after its forward: same values, one
        #: batched write (and one all-reduce) per step instead of one per layer
        self.defer_writes = False

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
        self._written_step = None
        self._pending_write = None
        self._graphs = {}
        self._graph_backward_due = False
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
        return (f'stage={self.stage}, block={self.block}, embed_dims={self.embed_dims}, '
                f'num_heads={self.num_heads}, cache_dims={self.cache_dims}, '
                f'cache_grid={self.cache_grid}, kv_grid={self.kv_grid}')

    # ------------------------------------------------------------------ cache
    def _cache_to_read(self) -> torch.Tensor:
        """C_{t-1}; under checkpoint recomputation, the one read the first time."""
        if self.training and self.clock is not None:
            if self._read_step == self.clock.step and self._read_cache is not None:
                return self._read_cache
            self._read_step, self._read_cache = self.clock.step, self.cache
        return self.cache

    def _should_write(self, batch_size: int) -> bool:
        """Training only, outside ``torch.inference_mode`` (whose tensors could
        never be used by a later training step), and once per backbone step
        (not again when activation checkpointing recomputes). An empty batch
        writes nothing, but under torch.distributed it still takes part in
        the write's all-reduce (with a count of 0), so no rank waits for it."""
        if not self.training or torch.is_inference_mode_enabled():
            return False
        if batch_size == 0 and not _distributed():
            return False
        return self.clock is None or self._written_step != self.clock.step

    @property
    def last_write_delta(self) -> Optional[torch.Tensor]:
        """|C_new - C_old| / |C_old| of the last write (None before any)."""
        prev = self._cache_before_write
        if prev is None:
            return None
        return (self.cache - prev).norm() / prev.norm().clamp_min(1e-12)

    # ---------------------------------------------------------------- forward
    def core(self, xbar_g: torch.Tensor, c_prev: torch.Tensor,
             kv_dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The image-size-independent part: Eqs. 2-4 and the cached keys/values.

        ``xbar_g`` (B, T_m, D_m) and ``c_prev`` (T_m, D_m) in the cache's dtype;
        returns C_t (B, T_m, D_m) and k, v (B, H, T_k, D_m/H) in ``kv_dtype``
        (what autocast would give the key/value projection). Its shapes depend
        on the batch size only, so on CUDA it can run as a captured graph.
        """
        B = xbar_g.shape[0]
        Hh, dm = self.num_heads, self.cache_dims // self.num_heads
        c_new = gated_update(xbar_g, c_prev, self.gate_x.weight, self.gate_x.bias,
                             self.gate_c.weight, self.cand_c.weight)     # Eqs. 2-4
        mem = c_new
        if self.kv_grid is not None and self.kv_grid != self.cache_grid:
            mem = resize_tokens(c_new, self.cache_grid, self.kv_grid).flatten(2).transpose(1, 2)
        w, b = self.mem_kv.weight.to(kv_dtype), self.mem_kv.bias
        kv = F.linear(mem.to(kv_dtype), w, None if b is None else b.to(kv_dtype))
        k, v = kv.view(B, mem.shape[1], 2, Hh, dm).permute(2, 0, 3, 1, 4).unbind(0)
        return c_new, k, v

    def _cache_side(self, x: torch.Tensor, hw_shape: Tuple[int, int]):
        """Eqs. 1-4 and the cached keys/values, plus the (deferred) write.

        Returns Xbar (B, T, D_m) and k, v (B, H, T_k, D_m/H)."""
        if x.dim() != 3 or x.shape[-1] != self.embed_dims:
            raise ValueError(f'GRC expects x of shape (B, T, {self.embed_dims}), '
                             f'got {tuple(x.shape)}')
        device = x.device.type
        kv_dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) \
            else self.mem_kv.weight.dtype
        xbar = x[..., :self.cache_dims]                                 # Eq. 1: B,T,Dm
        with torch.autocast(device_type=device, enabled=False):
            c_prev = self._cache_to_read()                              # hm,wm,Dm
            xbar_g = resize_tokens(xbar.to(c_prev.dtype), hw_shape, self.cache_grid)
            xbar_g = xbar_g.flatten(2).transpose(1, 2)                  # B,Tm,Dm
            c_prev_md = c_prev.view(-1, self.cache_dims)
            core = self._graphed_core(xbar_g, c_prev_md, kv_dtype) or \
                functools.partial(self.core, kv_dtype=kv_dtype)
            c_new, k, v = core(xbar_g, c_prev_md)                       # Eqs. 2-4
        if self._should_write(x.shape[0]):
            self._pending_write = (c_new.detach(), c_prev)
            if not self.defer_writes:  # else the owning backbone writes all layers at once
                flush_cache_writes([self])
            if self.clock is not None:
                self._written_step = self.clock.step
        return xbar, k, v

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
        if o_self.shape != x.shape:
            raise ValueError(f'GRC expects x and o_self of shape (B, T, {self.embed_dims}), '
                             f'got {tuple(x.shape)} and {tuple(o_self.shape)}')
        B, T, D = x.shape
        Hh, dm = self.num_heads, self.cache_dims // self.num_heads
        xbar, k, v = self._cache_side(x, hw_shape)
        q_btc = self.mem_q(xbar)                                        # B,T,Dm
        if self._token_side_in_triton(q_btc, k, o_self):                # Eqs. 5 and 7 fused
            return grc_triton.cached_attention_mix(q_btc, k, v, o_self, self.cache_lambda)
        # Eq. 5: cached attention, heads of D_m/H channels, under autocast.
        q = q_btc.view(B, T, Hh, dm).transpose(1, 2)                    # B,H,T,dm
        o_mem = sdpa(q, k.to(q.dtype), v.to(q.dtype),
                     dropout_p=self.attn_drop if self.training else 0.0).transpose(1, 2)
        # Eq. 7: per-head mix; o_mem fills the first D_m/H channels of each head.
        o_self_h = o_self.view(B, T, Hh, D // Hh)
        mixed = mix_heads(o_self_h, o_mem, self.cache_lambda)
        if self.record:
            self.last_o_self = o_self_h.transpose(1, 2).detach()
            self.last_o_mem = o_mem.transpose(1, 2).detach()
            self.last_hw = tuple(hw_shape)
        return mixed.view(B, T, D)

    def _token_side_in_triton(self, q: torch.Tensor, k: torch.Tensor,
                              o_self: torch.Tensor) -> bool:
        """Whether this call's Eqs. 5 and 7 run as the fused Triton kernels:
        impl 'triton' or 'auto', inputs the kernels take, and nothing they
        leave out (attention dropout in training, recording o_mem)."""
        if self.impl not in ('auto', 'triton') or self.record:
            return False
        if self.training and self.attn_drop > 0:
            return False
        return grc_triton.supported(q, k, o_self)[0]

    # ------------------------------------------------------ CUDA graph path
    def _graphed_core(self, xbar_g: torch.Tensor, c_prev: torch.Tensor,
                      kv_dtype: torch.dtype) -> Optional[Callable]:
        """:meth:`core` as captured CUDA graphs for this call, or None (eager).

        With ``impl`` 'cuda_graph' (or 'auto') on CUDA inputs, :meth:`core` is
        captured once per (batch size, dtypes, grad mode) with
        ``torch.cuda.make_graphed_callables``: its forward and its backward
        each become one graph replay instead of some thirty kernel launches.
        A graph reuses its memory, so a call made while the previous call's
        backward is still due (two forwards, then one backward) runs eagerly.
        """
        if self.impl in ('eager', 'triton') or not xbar_g.is_cuda or xbar_g.shape[0] == 0:
            return None
        if self.impl == 'auto' and dist.is_available() and dist.is_initialized():
            return None  # any process group, one rank included: capture inside DDP fails
        if _distributed():
            raise RuntimeError(
                "GRC impl 'cuda_graph' cannot run under torch.distributed with several "
                'processes: capturing the graph inside DistributedDataParallel\'s forward '
                "fails. Use cache_impl='auto' (eager there) or 'eager'.")
        grad = torch.is_grad_enabled()
        if not self.gate_x.weight.requires_grad:  # frozen: nothing to differentiate
            return None
        if grad and self._graph_backward_due:
            return None
        key = (xbar_g.shape[0], kv_dtype, c_prev.dtype, grad and xbar_g.requires_grad,
               xbar_g.device, self.gate_x.weight.data_ptr())
        graphed = self._graphs.get(key)
        if graphed is None:
            sample = (torch.zeros_like(xbar_g).requires_grad_(key[3]), torch.zeros_like(c_prev))
            with torch.enable_grad():
                graphed = torch.cuda.make_graphed_callables(
                    _CoreModule(self, kv_dtype), sample, allow_unused_input=True)
            self._graphs[key] = graphed
        if not grad:
            return graphed

        def run(xbar_g, c_prev):
            c_new, k, v = graphed(xbar_g, c_prev)
            if k.requires_grad:
                self._graph_backward_due = True
                k.register_hook(self._backward_done)
            return c_new, k, v
        return run

    def _backward_done(self, grad):
        self._graph_backward_due = False
        return grad

    # ------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs):
        """Check GRC tensors before loading them (whatever loader calls this).

        A tensor of another shape, a cache of another channel count, any GRC
        tensor holding NaN/Inf (lambda, gate weights, cache ...), or an
        integer/bool/complex tensor where the layer holds floats is an error
        naming the key (MMEngine's loaders would only log a shape mismatch,
        torch would cast silently). A cache saved on another grid is resized
        to this layer's grid, with a warning.
        """
        own = dict(self.named_parameters(recurse=True))
        own.update(self.named_buffers(recurse=True))
        for name, tensor in own.items():
            key = prefix + name
            saved = state_dict.get(key)
            if saved is None or not torch.is_tensor(saved):
                continue
            if tensor.is_floating_point() and not saved.is_floating_point():
                raise ValueError(
                    f'{key}: the checkpoint stores a {saved.dtype} tensor where this GRC '
                    f'layer holds floating-point values ({tensor.dtype}); refusing to cast it')
            if name == 'cache':
                if saved.dim() != 3 or saved.shape[-1] != self.cache_dims:
                    raise ValueError(
                        f'{key}: the checkpoint\'s cache has shape {tuple(saved.shape)}, '
                        f'this layer needs (h_m, w_m, {self.cache_dims}) (D_m = '
                        f'cache_ratio * embed_dims); a checkpoint of another cache_ratio '
                        f'or model?')
            elif saved.shape != tensor.shape:
                raise ValueError(
                    f'{key}: the checkpoint has shape {tuple(saved.shape)}, this GRC layer '
                    f'needs {tuple(tensor.shape)} (a checkpoint of another cache_ratio, '
                    f'embed_dims or num_heads?)')
            if saved.is_floating_point() and not torch.isfinite(saved).all():
                hint = ('Delete this key from the checkpoint to start this cache at zero.'
                        if name == 'cache' else 'The checkpoint comes from a diverged run?')
                raise ValueError(
                    f'{key}: the checkpoint holds NaN/Inf; refusing to load it (every output '
                    f'of this layer would be NaN). {hint}')
        key = prefix + 'cache'
        saved = state_dict.get(key)
        if saved is not None and tuple(saved.shape[:2]) != self.cache_grid:
            warnings.warn(f'{key}: resizing the cache from grid {tuple(saved.shape[:2])} '
                          f'to {self.cache_grid}')
            h, w, c = saved.shape
            resized = resize_tokens(saved.to(self.cache.dtype).reshape(1, h * w, c), (h, w),
                                    self.cache_grid)
            state_dict = dict(state_dict)
            state_dict[key] = resized[0].permute(1, 2, 0).contiguous()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def attention_ratio(self) -> torch.Tensor:
        """sigmoid(lambda) per head: the weight of the cached branch."""
        return torch.sigmoid(self.cache_lambda.detach())


class _CoreModule(nn.Module):
    """:meth:`GatedRecurrentCache.core` as a module over the same parameters,
    for ``torch.cuda.make_graphed_callables`` (never registered as a child)."""

    def __init__(self, grc: 'GatedRecurrentCache', kv_dtype: torch.dtype):
        super().__init__()
        self.gate_x, self.gate_c = grc.gate_x, grc.gate_c
        self.cand_c, self.mem_kv = grc.cand_c, grc.mem_kv
        self._grc = [grc]  # a list: not a submodule
        self.kv_dtype = kv_dtype

    def forward(self, xbar_g, c_prev):
        return self._grc[0].core(xbar_g, c_prev, self.kv_dtype)


_SEGMENTS = {}


def _segment_ids(sizes: Tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Layer index of every element of the concatenated caches (made once)."""
    key = (sizes, str(device))
    if key not in _SEGMENTS:
        _SEGMENTS[key] = torch.repeat_interleave(
            torch.arange(len(sizes)), torch.tensor(sizes)).to(device)
    return _SEGMENTS[key]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
         attn_mask: Optional[torch.Tensor] = None, scale: Optional[float] = None,
         dropout_p: float = 0.0) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (B, H, T, d) for every attention of
    the cached backbones. An empty input (batch 0) takes the explicit formula
    instead: on CUDA under fp16/bf16 autocast, SDPA returns None for it
    (torch 2.11). The result is empty either way, and stays in the graph."""
    if q.numel() == 0:
        scores = q @ k.transpose(-2, -1) * (q.shape[-1]**-0.5 if scale is None else scale)
        if attn_mask is not None:
            scores = scores + attn_mask
        return scores.softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale,
                                          dropout_p=dropout_p)


@torch.no_grad()
def flush_cache_writes(layers: Sequence[GatedRecurrentCache]) -> None:
    """Eq. 8 for every layer with a pending write, in one batch (the only
    write path: a layer that does not defer calls it with itself alone).

    Each cache becomes the mean of its C_t over the batch (over the samples
    of all ranks under torch.distributed: one all-reduce of the sums and the
    sample counts for all layers, so a rank with an empty batch contributes
    nothing and still takes part); a write holding NaN/Inf is skipped and
    counted; no samples anywhere, no write. A new tensor is assigned (never
    an in-place copy, this step's graph reads the old one). A fixed number
    of kernels per call, whatever the number of layers.
    """
    pending = [m for m in layers if m._pending_write is not None]
    if not pending:
        return
    news = [m._pending_write[0] for m in pending]
    olds = [m._pending_write[1] for m in pending]
    for m in pending:
        m._pending_write = None
    sizes = [o.numel() for o in olds]
    flat_sum = torch.cat([c.flatten(1).sum(0) for c in news])
    count = torch.tensor([float(c.shape[0]) for c in news], device=flat_sum.device,
                         dtype=flat_sum.dtype)
    if _distributed():
        both = torch.cat([flat_sum, count])
        dist.all_reduce(both)
        flat_sum, count = both[:flat_sum.numel()], both[flat_sum.numel():]
    seg = _segment_ids(tuple(sizes), flat_sum.device)
    flat = flat_sum / count.clamp_min(1)[seg]
    # a layer's write is bad when any entry is NaN/Inf: the max of |.| per
    # layer is then non-finite (multi-tensor kernels, no atomics)
    finite = torch.isfinite(torch.stack(torch._foreach_max(torch._foreach_abs(
        list(flat.split(sizes))))))
    ok = finite & (count > 0)
    flat = torch.where(ok[seg], flat, torch.cat([o.flatten() for o in olds]))
    skipped = ~finite & (count > 0)
    torch._foreach_add_([m.cache_skipped_writes for m in pending],
                        list(skipped.long().unbind(0)))
    for m, new, old in zip(pending, flat.split(sizes), olds):
        m.cache = new.view_as(old)
        m._cache_before_write = old


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

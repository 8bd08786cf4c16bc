"""Triton kernels for the token side of GRC-Attention (CUDA only).

The token side of a GRC layer is Eq. 5 (attention of every token's cached
query over the few cached keys) followed by Eq. 7 (the per-head mix with the
wrapped attention's output). :func:`cached_attention_mix` computes both in one
kernel forward and one kernel backward; the math is
:meth:`grc_mmdet.models.grc.GatedRecurrentCache.forward`'s, which stays the
reference (and the CPU path)::

    P        = softmax(q k^T / sqrt(d_m))              (B, H, T, T_k)
    o_mem    = P v                                     (B, H, T, d_m)
    out^h    = s_h pad(o_mem^h) + (1 - s_h) o_self^h,  s_h = sigmoid(lambda_h)

Why a kernel: T_k is tiny (49 cache tokens or fewer), so a flash-attention
backward, which parallelises over key blocks, runs on batch x heads thread
blocks and walks every query serially. Here the backward is parallel over
token blocks: each program takes a chunk of tokens, writes dq and d(o_self)
for them, and adds its share of dk, dv and d(lambda) to a per-chunk partial
sum; the partial sums are reduced afterwards in a fixed order
(deterministic). Nothing of size T x T_k is stored: the backward recomputes P.

Shapes the kernels take: any T, B >= 1, T_k <= 256, d_m <= 128, d_m <= d
(the head width of the wrapped attention). :func:`supported` says whether a
call qualifies; the layer falls back to the reference otherwise.
"""
import math
from typing import Tuple

import torch

try:  # Triton ships with CUDA builds of torch; CPU-only installs lack it
    import triton
    import triton.language as tl
    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the install
    triton = tl = None
    HAS_TRITON = False

MAX_KEYS = 256
MAX_HEAD_DIM = 128
BLOCK_T = 64


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << max(0, (n - 1).bit_length()))


def supported(q: torch.Tensor, k: torch.Tensor, o_self: torch.Tensor) -> Tuple[bool, str]:
    """Whether :func:`cached_attention_mix` can take these inputs, and why not."""
    if not HAS_TRITON:
        return False, 'Triton is not installed'
    if not (q.is_cuda and k.is_cuda and o_self.is_cuda):
        return False, 'the inputs are not on a CUDA device'
    if q.shape[0] == 0 or q.shape[1] == 0:
        return False, 'empty batch or token map'
    if k.shape[2] > MAX_KEYS:
        return False, f'{k.shape[2]} cached keys (the kernel takes <= {MAX_KEYS})'
    if k.shape[3] > MAX_HEAD_DIM:
        return False, f'cached head width {k.shape[3]} (the kernel takes <= {MAX_HEAD_DIM})'
    if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False, f'dtype {q.dtype}'
    return True, ''


if HAS_TRITON:

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        if IEEE:
            return tl.dot(a, b, input_precision='ieee')
        return tl.dot(a, b)

    @triton.jit
    def _load_kv(k_ptr, v_ptr, bh, TK, DM, TK_P: tl.constexpr, DM_P: tl.constexpr):
        keys = tl.arange(0, TK_P)
        cols = tl.arange(0, DM_P)
        mask = (keys[:, None] < TK) & (cols[None, :] < DM)
        offs = bh * TK * DM + keys[:, None] * DM + cols[None, :]
        k = tl.load(k_ptr + offs, mask=mask, other=0.0)
        v = tl.load(v_ptr + offs, mask=mask, other=0.0)
        return k, v

    @triton.jit
    def _probs(q, k, TK, scale, TK_P: tl.constexpr, IEEE: tl.constexpr):
        """softmax(q k^T * scale) over the TK valid keys, float32 (BLOCK_T, TK_P)."""
        s = _dot(q, tl.trans(k), IEEE) * scale
        keys = tl.arange(0, TK_P)
        s = tl.where(keys[None, :] < TK, s, float('-inf'))
        s = s - tl.max(s, axis=1)[:, None]
        p = tl.exp(s)
        return p / tl.sum(p, axis=1)[:, None]

    @triton.jit
    def _fwd_kernel(q_ptr, k_ptr, v_ptr, os_ptr, lam_ptr, out_ptr,
                    T, H, TK, DM, D, scale,
                    BLOCK: tl.constexpr, TK_P: tl.constexpr, DM_P: tl.constexpr,
                    REST_P: tl.constexpr, HAS_REST: tl.constexpr, IEEE: tl.constexpr):
        pid_t = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // H
        h = bh % H
        dh = D // H                       # head width of the wrapped attention
        rows = pid_t * BLOCK + tl.arange(0, BLOCK)
        rmask = rows < T
        cols = tl.arange(0, DM_P)
        cmask = cols < DM
        k, v = _load_kv(k_ptr, v_ptr, bh, TK, DM, TK_P, DM_P)
        q_offs = (b * T + rows[:, None]) * (H * DM) + h * DM + cols[None, :]
        q = tl.load(q_ptr + q_offs, mask=rmask[:, None] & cmask[None, :], other=0.0)
        p = _probs(q, k, TK, scale, TK_P, IEEE)
        o_mem = _dot(p.to(v.dtype), v, IEEE)                      # BLOCK, DM_P (fp32)
        s_h = tl.sigmoid(tl.load(lam_ptr + h).to(tl.float32))
        base = (b * T + rows[:, None]) * D + h * dh
        m = rmask[:, None] & cmask[None, :]
        o_self = tl.load(os_ptr + base + cols[None, :], mask=m, other=0.0).to(tl.float32)
        out = o_self + s_h * (o_mem - o_self)
        tl.store(out_ptr + base + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=m)
        if HAS_REST:                      # channels dm..dh of the head: o_mem is 0 there
            rcols = DM + tl.arange(0, REST_P)
            m = rmask[:, None] & (rcols[None, :] < dh)
            o_self = tl.load(os_ptr + base + rcols[None, :], mask=m, other=0.0).to(tl.float32)
            tl.store(out_ptr + base + rcols[None, :],
                     ((1.0 - s_h) * o_self).to(out_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _bwd_kernel(q_ptr, k_ptr, v_ptr, os_ptr, lam_ptr, dout_ptr,
                    dq_ptr, dos_ptr, dk_part_ptr, dv_part_ptr, ds_part_ptr,
                    T, H, TK, DM, D, scale, BLOCKS_PER_CHUNK,
                    BLOCK: tl.constexpr, TK_P: tl.constexpr, DM_P: tl.constexpr,
                    REST_P: tl.constexpr, HAS_REST: tl.constexpr, IEEE: tl.constexpr):
        chunk = tl.program_id(0)
        bh = tl.program_id(1)
        n_bh = tl.num_programs(1)
        b = bh // H
        h = bh % H
        dh = D // H
        cols = tl.arange(0, DM_P)
        cmask = cols < DM
        k, v = _load_kv(k_ptr, v_ptr, bh, TK, DM, TK_P, DM_P)
        s_h = tl.sigmoid(tl.load(lam_ptr + h).to(tl.float32))
        dk_acc = tl.zeros((TK_P, DM_P), dtype=tl.float32)
        dv_acc = tl.zeros((TK_P, DM_P), dtype=tl.float32)
        ds_acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for i in tl.range(0, BLOCKS_PER_CHUNK):
            rows = (chunk * BLOCKS_PER_CHUNK + i) * BLOCK + tl.arange(0, BLOCK)
            rmask = rows < T
            m = rmask[:, None] & cmask[None, :]
            q_offs = (b * T + rows[:, None]) * (H * DM) + h * DM + cols[None, :]
            q = tl.load(q_ptr + q_offs, mask=m, other=0.0)
            p = _probs(q, k, TK, scale, TK_P, IEEE)
            o_mem = _dot(p.to(v.dtype), v, IEEE)
            base = (b * T + rows[:, None]) * D + h * dh
            o_self = tl.load(os_ptr + base + cols[None, :], mask=m, other=0.0).to(tl.float32)
            dout = tl.load(dout_ptr + base + cols[None, :], mask=m, other=0.0).to(tl.float32)
            tl.store(dos_ptr + base + cols[None, :],
                     ((1.0 - s_h) * dout).to(dos_ptr.dtype.element_ty), mask=m)
            ds_acc += tl.sum(dout * (o_mem - o_self), axis=1)
            if HAS_REST:
                rcols = DM + tl.arange(0, REST_P)
                rm = rmask[:, None] & (rcols[None, :] < dh)
                r_self = tl.load(os_ptr + base + rcols[None, :], mask=rm,
                                 other=0.0).to(tl.float32)
                r_dout = tl.load(dout_ptr + base + rcols[None, :], mask=rm,
                                 other=0.0).to(tl.float32)
                tl.store(dos_ptr + base + rcols[None, :],
                         ((1.0 - s_h) * r_dout).to(dos_ptr.dtype.element_ty), mask=rm)
                ds_acc -= tl.sum(r_dout * r_self, axis=1)
            d_mem = s_h * dout                                     # d o_mem, BLOCK x DM_P
            dp = _dot(d_mem.to(v.dtype), tl.trans(v), IEEE)        # BLOCK x TK_P
            delta = tl.sum(d_mem * o_mem, axis=1)
            dsc = p * (dp - delta[:, None])                         # d scores (pre-scale)
            dq = _dot(dsc.to(k.dtype), k, IEEE) * scale
            tl.store(dq_ptr + q_offs, dq.to(dq_ptr.dtype.element_ty), mask=m)
            dk_acc += _dot(tl.trans(dsc.to(q.dtype)), q, IEEE) * scale
            dv_acc += _dot(tl.trans(p.to(v.dtype)), d_mem.to(v.dtype), IEEE)
        keys = tl.arange(0, TK_P)
        part = ((chunk * n_bh + bh) * TK_P + keys[:, None]) * DM_P + cols[None, :]
        tl.store(dk_part_ptr + part, dk_acc)
        tl.store(dv_part_ptr + part, dv_acc)
        tl.store(ds_part_ptr + chunk * n_bh + bh, tl.sum(ds_acc, axis=0))


def _meta(q: torch.Tensor, k: torch.Tensor, o_self: torch.Tensor) -> dict:
    B, H, TK, DM = k.shape
    D = o_self.shape[-1]
    rest = D // H - DM
    return dict(TK_P=_pow2(TK), DM_P=_pow2(DM), REST_P=_pow2(max(rest, 1)),
                HAS_REST=rest > 0, IEEE=q.dtype == torch.float32)


def _chunks(n_blocks: int, n_bh: int, device: torch.device) -> int:
    """Token blocks per backward program: enough programs to fill the GPU
    (about four per multiprocessor), no more (each writes a partial sum)."""
    sms = (torch.cuda.get_device_properties(device).multi_processor_count
           if device.type == 'cuda' else 4)  # 4: Triton's interpreter, on the CPU
    chunks = max(1, min(n_blocks, math.ceil(4 * sms / n_bh)))
    return math.ceil(n_blocks / chunks)


class _CachedAttentionMix(torch.autograd.Function):

    @staticmethod
    def forward(ctx, q, k, v, o_self, lam):
        B, T, _ = q.shape
        H, TK, DM = k.shape[1:]
        D = o_self.shape[-1]
        out = torch.empty_like(o_self)
        meta = _meta(q, k, o_self)
        scale = 1.0 / math.sqrt(DM)
        _fwd_kernel[(triton.cdiv(T, BLOCK_T), B * H)](
            q, k, v, o_self, lam, out, T, H, TK, DM, D, scale, BLOCK=BLOCK_T, **meta)
        ctx.save_for_backward(q, k, v, o_self, lam)
        ctx.meta, ctx.scale = meta, scale
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, o_self, lam = ctx.saved_tensors
        meta = ctx.meta
        B, T, _ = q.shape
        H, TK, DM = k.shape[1:]
        D = o_self.shape[-1]
        dout = dout.contiguous()
        n_blocks = triton.cdiv(T, BLOCK_T)
        per_chunk = _chunks(n_blocks, B * H, q.device)
        n_chunks = triton.cdiv(n_blocks, per_chunk)
        dq = torch.empty_like(q)
        dos = torch.empty_like(o_self)
        part_shape = (n_chunks, B, H, meta['TK_P'], meta['DM_P'])
        dk_part = q.new_empty(part_shape, dtype=torch.float32)
        dv_part = q.new_empty(part_shape, dtype=torch.float32)
        ds_part = q.new_empty((n_chunks, B, H), dtype=torch.float32)
        _bwd_kernel[(n_chunks, B * H)](
            q, k, v, o_self, lam, dout, dq, dos, dk_part, dv_part, ds_part,
            T, H, TK, DM, D, ctx.scale, per_chunk, BLOCK=BLOCK_T, **meta)
        dk = dk_part.sum(0)[..., :TK, :DM].to(k.dtype)
        dv = dv_part.sum(0)[..., :TK, :DM].to(v.dtype)
        s = torch.sigmoid(lam.float())
        dlam = (ds_part.sum((0, 1)) * s * (1 - s)).to(lam.dtype)
        return dq, dk, dv, dos, dlam


def cached_attention_mix(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         o_self: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Eqs. 5 and 7 in one kernel each way.

    Args:
        q (Tensor): (B, T, H * d_m) cached queries.
        k, v (Tensor): (B, H, T_k, d_m) cached keys and values (cast to q's dtype).
        o_self (Tensor): (B, T, D) the wrapped attention's output, heads of
            D / H channels concatenated.
        lam (Tensor): (H,) lambda of every head.

    Returns:
        Tensor: (B, T, D) in o_self's dtype.
    """
    return _CachedAttentionMix.apply(q.contiguous(), k.to(q.dtype).contiguous(),
                                     v.to(q.dtype).contiguous(), o_self.contiguous(), lam)

"""Time the cached branch's attention (many queries, few cached keys) with each
attention kernel PyTorch offers, forward + backward, on CUDA.

    python tools/analysis_tools/attention_backends.py [--batch 2 8]
        [--dtype fp16 bf16] [--reps 30]

The cached branch of GRC attends from every token of a stage (T queries) to
the pooled cache (49 keys for PVT-S at 800x1333), one head per D_m/H = 32
channels. This script times that attention alone at PVT-S's four stage shapes
(T = 66800, 16700, 4200, 1050 tokens; 1, 2, 5, 8 heads; 3, 4, 6, 3 layers)
with SDPA's default choice, each SDPA backend forced (flash, efficient,
cuDNN, math), and an explicit matmul-softmax-matmul, and sums the per-layer
forward + backward time over the backbone's layers. It reports the largest
difference of each output from the default's.
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16, 'fp32': torch.float32}
# (tokens, heads, layers) of PVT-S's stages at 800x1333; 49 cached keys of 32 channels
PVT_S_STAGES = ((66800, 1, 3), (16700, 2, 4), (4200, 5, 6), (1050, 8, 3))
NUM_KEYS, HEAD_DIMS = 49, 32


def cuda_ms(fn, reps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def explicit_attention(q, k, v):
    weights = torch.matmul(q * q.shape[-1]**-0.5, k.transpose(-1, -2)).softmax(-1)
    return torch.matmul(weights, v)


def sdpa_with(backend):
    def attend(q, k, v):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v)
    return attend


def variants() -> dict:
    out = {'default': F.scaled_dot_product_attention}
    for name, backend in (('flash', SDPBackend.FLASH_ATTENTION),
                          ('efficient', SDPBackend.EFFICIENT_ATTENTION),
                          ('cudnn', SDPBackend.CUDNN_ATTENTION), ('math', SDPBackend.MATH)):
        out[name] = sdpa_with(backend)
    out['explicit'] = explicit_attention
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, nargs='+', default=[2, 8])
    p.add_argument('--dtype', choices=list(DTYPES), nargs='+', default=['fp16', 'bf16'])
    p.add_argument('--reps', type=int, default=30)
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('attention_backends.py times CUDA kernels: no CUDA device found')
    torch.manual_seed(0)
    print(f'{torch.cuda.get_device_name()}, torch {torch.__version__}; ms per layer '
          f'(forward+backward), {NUM_KEYS} keys of {HEAD_DIMS} channels')
    for dtype_name in args.dtype:
        dtype = DTYPES[dtype_name]
        for batch in args.batch:
            totals = {}
            for tokens, heads, layers in PVT_S_STAGES:
                def rand(n):
                    return torch.randn(batch, heads, n, HEAD_DIMS, device='cuda', dtype=dtype,
                                       requires_grad=True)
                q, k, v = rand(tokens), rand(NUM_KEYS), rand(NUM_KEYS)
                grad = torch.randn_like(q)
                ref = F.scaled_dot_product_attention(q, k, v).float()
                cells = []
                for name, attend in variants().items():
                    try:
                        err = (attend(q, k, v).float() - ref).abs().max().item()
                    except RuntimeError as e:  # a backend that refuses these shapes
                        cells.append(f'{name}: n/a ({str(e).splitlines()[0][:40]})')
                        continue

                    def step(attend=attend):
                        attend(q, k, v).backward(grad)
                    ms = cuda_ms(step, args.reps)
                    totals[name] = totals.get(name, 0.0) + layers * ms
                    cells.append(f'{name} {ms:.3f} (err {err:.1e})')
                print(f'{dtype_name} batch {batch} T={tokens} heads={heads}: ' + ', '.join(cells))
            print(f'{dtype_name} batch {batch} PVT-S backbone total, ms: ' +
                  ', '.join(f'{n} {t:.2f}' for n, t in sorted(totals.items(), key=lambda x: x[1])),
                  flush=True)


if __name__ == '__main__':
    main()

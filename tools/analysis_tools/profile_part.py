"""torch.profiler table of one benchmark part, cached and plain twin.

    python tools/analysis_tools/profile_part.py CACHED_CONFIG [--part backbone-train]
        [--device cuda] [--dtype fp16] [--shape 800 1333] [--batch 2] [--rows 25]

Prints the top operators/kernels by self device time (CPU time on CPU) for
each model, after warm-up.
"""
import argparse

import torch
from mmdet.utils import register_all_modules
from torch.profiler import ProfilerActivity, profile

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import load_twin_configs
from grc_mmdet.analysis.bench import DTYPES, PARTS, Bench


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--plain')
    p.add_argument('--part', choices=PARTS, default='backbone-train')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', choices=list(DTYPES), default='fp16')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333])
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--rows', type=int, default=25)
    p.add_argument('--only', choices=['cached', 'plain'])
    args = p.parse_args()
    register_all_modules()
    cached_cfg, plain_cfg = load_twin_configs(args.config, args.plain)
    cuda = args.device == 'cuda'
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for name, cfg in (('cached', cached_cfg), ('plain', plain_cfg)):
        if args.only and name != args.only:
            continue
        bench = Bench(cfg, args.batch, args.shape, args.device, DTYPES[args.dtype])
        for _ in range(3):
            bench.run(args.part)
        if cuda:
            torch.cuda.synchronize()
        with profile(activities=acts) as prof:
            for _ in range(2):
                bench.run(args.part)
            if cuda:
                torch.cuda.synchronize()
        key = 'self_cuda_time_total' if cuda else 'self_cpu_time_total'
        print(f'===== {name}: {args.part} {args.dtype} {args.shape} x{args.batch} (2 runs)')
        print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=70))
        del bench
        if cuda:
            torch.cuda.empty_cache()


if __name__ == '__main__':
    main()

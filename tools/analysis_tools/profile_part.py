"""torch.profiler table of one benchmark part, cached and plain twin.

    python tools/analysis_tools/profile_part.py CACHED_CONFIG [--part backbone-train]
        [--device cuda] [--dtype fp16] [--shape 800 1333] [--batch 2] [--rows 25]
        [--plain-sdpa] [--count-kernels] [--cfg-options k=v ...]

Prints the top operators/kernels by self device time (CPU time on CPU) for
each model, after warm-up. ``--count-kernels`` (CUDA) also prints the number
of GPU kernels and memory copies one run launches, for each model, and the
difference per GRC layer.
"""
import argparse

import torch
from mmdet.utils import register_all_modules
from mmengine.config import DictAction
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import load_twin_configs
from grc_mmdet.analysis.bench import DTYPES, PARTS, Bench
from grc_mmdet.models import grc_layers


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
    p.add_argument('--plain-sdpa', action='store_true',
                   help='the plain model is the cached one with cache_stages=[]')
    p.add_argument('--count-kernels', action='store_true',
                   help='count GPU kernels and copies per run (CUDA)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = p.parse_args()
    register_all_modules()
    cached_cfg, plain_cfg = load_twin_configs(args.config, args.plain, args.cfg_options,
                                              args.plain_sdpa)
    counts = {}
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
        if args.count_kernels and cuda:
            gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
            counts[name] = (len(gpu) / 2, len(list(grc_layers(bench.model))))
            print(f'{name}: {counts[name][0]:.0f} GPU kernels/copies per run')
        del bench
        if cuda:
            torch.cuda.empty_cache()
    if len(counts) == 2 and counts['cached'][1]:
        extra = counts['cached'][0] - counts['plain'][0]
        print(f'GRC adds {extra:.0f} GPU kernels/copies per run, '
              f'{extra / counts["cached"][1]:.1f} per GRC layer ({counts["cached"][1]} layers)')


if __name__ == '__main__':
    main()

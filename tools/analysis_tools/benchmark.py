"""Time a cached detector against its plain twin, interleaved, on CPU or CUDA.

    python tools/analysis_tools/benchmark.py CACHED_CONFIG [--plain CFG]
        [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--shape 800 1333] [--batch 2]
        [--parts backbone backbone-train detector-infer detector-train
                 classifier-infer classifier-train]
        [--warmup 2] [--reps 5] [--ddp] [--out-dir DIR] [--cfg-options k=v ...]

Both models are built (random init, same seed), warmed up, then each
repetition times every part for plain and cached back to back, alternating
which goes first. Reports median and spread (min-max) in ms, the cached/plain
ratio of medians, images per second, and on CUDA the peak memory of each.
bf16/fp16 use autocast; the train step uses AdamW (and a GradScaler for fp16).
An ImageNet config (``ImageClassifier``) is timed as a classifier: parts
backbone, backbone-train, classifier-infer, classifier-train, e.g.
``--shape 224 224 --batch 128``. ``--ddp`` times the training parts with the
model wrapped in DistributedDataParallel in a process group of one rank
(NCCL on CUDA, gloo on CPU): the code path ``dist_train.sh`` runs.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import time

import torch
from mmdet.utils import register_all_modules
from mmengine.config import DictAction
from mmengine.logging import MMLogger

import grc_mmdet  # noqa: F401
from grc_mmdet.analysis import load_twin_configs
from grc_mmdet.analysis.bench import DTYPES, PARTS, Bench, default_parts


def timed(bench, part, device):
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    bench.run(part)
    if device == 'cuda':
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t) * 1e3
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == 'cuda' else None
    return ms, mem


def init_one_rank_group(device):
    """A process group of one rank on this machine (a free TCP port)."""
    import socket

    import torch.distributed as dist
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo',
                            init_method=f'tcp://127.0.0.1:{port}', rank=0, world_size=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='a cached config')
    p.add_argument('--plain', help='its plain twin (default: found by name; without one, the '
                   'cached config with the parent backbone type)')
    p.add_argument('--plain-sdpa', action='store_true',
                   help='compare against the cached backbone with no GRC layer '
                        '(cache_stages=[]): same SDPA attention kernels, so the ratio '
                        'is the cost of GRC alone')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', choices=list(DTYPES), default='fp32')
    p.add_argument('--shape', type=int, nargs=2, default=[800, 1333], metavar=('H', 'W'))
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--parts', nargs='+', choices=PARTS,
                   help='default: every part that applies to the model')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--reps', type=int, default=5)
    p.add_argument('--ddp', action='store_true',
                   help='wrap the trained modules in DDP, in a one-rank process group')
    p.add_argument('--out-dir', help='write benchmark.json here')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override settings of the cached config (and of the --plain-sdpa '
                        'baseline), e.g. model.backbone.cache_impl=eager')
    args = p.parse_args()
    register_all_modules()
    logger = MMLogger.get_instance('grc_benchmark', log_level='INFO')
    cached_cfg, plain_cfg = load_twin_configs(args.config, args.plain, args.cfg_options,
                                              args.plain_sdpa)
    dtype = DTYPES[args.dtype]
    if args.parts is None:
        args.parts = list(default_parts(cached_cfg))
    if args.ddp:
        init_one_rank_group(args.device)
    benches = {name: Bench(cfg, args.batch, args.shape, args.device, dtype, ddp=args.ddp)
               for name, cfg in (('plain', plain_cfg), ('cached', cached_cfg))}
    times = {(n, part): [] for n in benches for part in args.parts}
    mems = {(n, part): 0.0 for n in benches for part in args.parts}
    for rep in range(args.warmup + args.reps):
        order = ['plain', 'cached'] if rep % 2 == 0 else ['cached', 'plain']
        for part in args.parts:
            for name in order:
                ms, mem = timed(benches[name], part, args.device)
                if rep >= args.warmup:
                    times[(name, part)].append(ms)
                    if mem is not None:
                        mems[(name, part)] = max(mems[(name, part)], mem)
        logger.info(f'repetition {rep + 1}/{args.warmup + args.reps}'
                    f'{" (warm-up)" if rep < args.warmup else ""} done')
    device_name = torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'
    rows, result = [], dict(config=args.config, plain='cache_stages=[]' if args.plain_sdpa
                            else (args.plain or 'twin'), cfg_options=args.cfg_options,
                            device=device_name, dtype=args.dtype,
                            shape=args.shape, batch=args.batch, reps=args.reps, ddp=args.ddp,
                            torch=torch.__version__, parts={})
    head = (f'{"part":<18}{"plain ms":>24}{"cached ms":>24}{"ratio":>7}{"plain img/s":>12}'
            f'{"cached img/s":>13}{"plain MiB":>11}{"cached MiB":>11}{"mem ratio":>10}')
    for part in args.parts:
        entry = {}
        for name in benches:
            t = times[(name, part)]
            entry[name] = dict(median_ms=statistics.median(t), min_ms=min(t), max_ms=max(t),
                               img_per_s=args.batch * 1e3 / statistics.median(t),
                               peak_mib=mems[(name, part)] if args.device == 'cuda' else None)
        entry['time_ratio'] = entry['cached']['median_ms'] / entry['plain']['median_ms']
        if args.device == 'cuda':
            entry['mem_ratio'] = entry['cached']['peak_mib'] / entry['plain']['peak_mib']
        result['parts'][part] = entry

        def cell(e):
            return f'{e["median_ms"]:.1f} [{e["min_ms"]:.0f}-{e["max_ms"]:.0f}]'
        mem = (f'{entry["plain"]["peak_mib"]:>11.0f}{entry["cached"]["peak_mib"]:>11.0f}'
               f'{entry["mem_ratio"]:>10.3f}') if args.device == 'cuda' else f'{"n/a":>11}' * 2
        rows.append(f'{part:<18}{cell(entry["plain"]):>24}{cell(entry["cached"]):>24}'
                    f'{entry["time_ratio"]:>7.3f}{entry["plain"]["img_per_s"]:>12.1f}'
                    f'{entry["cached"]["img_per_s"]:>13.1f}{mem}')
    logger.info(f'\n{args.config} on {device_name}, {args.dtype}, batch {args.batch} at '
                f'{args.shape[0]}x{args.shape[1]}{" (DDP, one rank)" if args.ddp else ""}, '
                f'median [min-max] of {args.reps}\n'
                + head + '\n' + '\n'.join(rows))
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, 'benchmark.json'), 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main()

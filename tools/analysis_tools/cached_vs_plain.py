"""Train a cached config and its plain twin for several seeds and compare them.

    python tools/analysis_tools/cached_vs_plain.py CACHED_CONFIG [--seeds 0 1 2]
        [--work-dir DIR] [--val-interval N] [--jobs N] [--gpus ID ...] [--amp]
        [--launcher {none,pytorch,slurm,mpi}] [--cfg-options k=v ...]

For each seed, both arms are trained with everything else equal: the same
config apart from the backbone type (the twin), the same schedule and hooks,
the same data order (``randomness.seed``), and the same initial values of the
shared parameters (the plain model is built with the seed, saved, and both
arms start from that file through ``load_from``; the GRC parameters keep their
own initialisation and the caches start at zero). Each run evaluates every
``--val-interval`` iterations. A run that finished before (its ``result.json``
exists) is skipped, so an interrupted comparison resumes where it stopped, or
goes on with more seeds. What made the runs (configs and their contents,
``--cfg-options``, ``--amp``, ``--val-interval``) is recorded in
``recipe.json``; a later call with another recipe on the same ``--work-dir``
is refused, never mixed into one summary. Seeds must be distinct.

Writes under ``--work-dir``:

* ``ab_results.json``: every run's validation history, final metrics, mean
  training time per iteration and peak GPU memory (when on CUDA);
* ``ab_results.md``: per seed, both arms and the paired difference (cached
  minus plain) of bbox mAP (and segm mAP for mask models), then mean, standard deviation and a 95%
  confidence interval of the paired difference (Student's t, n-1 degrees of
  freedom, over the seeds);
* ``ab_curves.png``: validation mAP against iteration, every run drawn thin
  and each arm's mean thick.
"""
import argparse
import hashlib
import json
import math
import os
import os.path as osp
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch
from mmengine.config import Config, DictAction

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METRICS = ('coco/bbox_mAP', 'coco/segm_mAP')


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='a cached config (its plain twin is found by name)')
    p.add_argument('--plain', help='the plain twin (default: found by name)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--work-dir', help='default: work_dirs/cached_vs_plain/<config name>')
    p.add_argument('--val-interval', type=int,
                   help='iterations between evaluations (default: the config\'s)')
    p.add_argument('--jobs', type=int, default=1, help='runs trained at the same time')
    p.add_argument('--gpus', type=int, nargs='+', metavar='ID',
                   help='spread the runs over these GPUs, one GPU per run, in turn '
                        '(sets CUDA_VISIBLE_DEVICES of each run); default: as launched')
    p.add_argument('--amp', action='store_true', help='mixed precision (tools/train.py --amp)')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='overrides for both arms (key=value)')
    return p.parse_args()


def options_list(options: dict) -> list:
    return [f'{k}={json.dumps(v) if isinstance(v, (list, tuple, dict)) else v}'
            for k, v in options.items()]


def recipe(args, cached_cfg: str, plain_cfg: str) -> dict:
    """What makes a run: both configs (path and content), the options, --amp
    and --val-interval."""
    def digest(path):
        with open(path, 'rb') as f:
            return hashlib.sha256(f.read()).hexdigest()
    return dict(cached_config=cached_cfg, cached_config_sha256=digest(cached_cfg),
                plain_config=plain_cfg, plain_config_sha256=digest(plain_cfg),
                cfg_options=options_list(args.cfg_options), amp=bool(args.amp),
                val_interval=args.val_interval)


def check_recipe(work_dir: str, current: dict) -> None:
    """Record ``current`` in ``work_dir/recipe.json``, or refuse a work dir
    whose runs were made with another recipe."""
    path = osp.join(work_dir, 'recipe.json')
    if osp.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        diff = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
        if diff:
            raise SystemExit(
                f'error: {work_dir} holds runs made with another recipe; refusing to mix them '
                f'(use another --work-dir). Differences (before, now): ' +
                '; '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items()))
        return
    os.makedirs(work_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(current, f, indent=1)


def write_init(plain_cfg: str, seed: int, path: str, options: dict) -> None:
    """The plain model's initial weights for ``seed`` (shared by both arms)."""
    if osp.isfile(path):
        return
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import grc_mmdet  # noqa: F401
    register_all_modules()
    cfg = Config.fromfile(plain_cfg)
    cfg.merge_from_dict(options)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}}, path + '.tmp')
    os.replace(path + '.tmp', path)


def read_history(run_dir: str) -> dict:
    """Validation metrics per iteration, time per iteration and peak memory,
    from MMEngine's ``vis_data/scalars.json`` of the run's latest log folder."""
    from grc_mmdet.analysis.logs import is_train_record, read_scalars
    val, times, mems = [], [], []
    for rec in read_scalars(run_dir)[1]:
        if METRICS[0] in rec:
            val.append({'iter': rec['step'], **{k: rec.get(k) for k in METRICS}})
        elif is_train_record(rec):
            times.append(rec['time'])
            if 'memory' in rec:
                mems.append(rec['memory'])
    times = times[len(times) // 10:] or times  # leave out the first tenth (warm-up)
    return dict(val=val, s_per_iter=statistics.mean(times) if times else None,
                peak_memory_mb=max(mems) if mems else None)


def train_one(arm: str, cfg_path: str, seed: int, args, init: str,
              gpu: Optional[int] = None) -> dict:
    run_dir = osp.join(args.work_dir, f'seed{seed}', arm)
    done = osp.join(run_dir, 'result.json')
    if osp.isfile(done):
        print(f'[cached_vs_plain] seed {seed} {arm}: finished before, skipped', flush=True)
        with open(done) as f:
            return json.load(f)
    # validation metrics logged against the iteration (not the epoch) for the curves
    opts = dict(args.cfg_options, **{'randomness.seed': seed, 'load_from': init,
                                     'default_hooks.logger.log_metric_by_epoch': False})
    if args.val_interval:
        opts['train_cfg.val_interval'] = args.val_interval
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg_path, '--work-dir', run_dir,
           '--launcher', args.launcher] + (['--amp'] if args.amp else []) + \
        ['--cfg-options'] + options_list(opts)
    print(f'[cached_vs_plain] seed {seed} {arm}: training ({" ".join(cmd[1:3])} ...)',
          flush=True)
    os.makedirs(run_dir, exist_ok=True)
    env = dict(os.environ)
    if gpu is not None:
        env['CUDA_VISIBLE_DEVICES'] = str(gpu)
    with open(osp.join(run_dir, 'train_stdout.log'), 'w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'seed {seed} {arm} failed ({proc.returncode}); see '
                           f'{osp.join(run_dir, "train_stdout.log")}')
    result = dict(arm=arm, seed=seed, config=cfg_path, **read_history(run_dir))
    if not result['val']:
        raise RuntimeError(f'seed {seed} {arm}: no validation result in {run_dir}')
    result['final'] = {k: result['val'][-1][k] for k in METRICS}
    with open(done, 'w') as f:
        json.dump(result, f, indent=1)
    return result


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student t quantile."""
    try:
        from scipy.stats import t
        return float(t.ppf(0.975, df))
    except ImportError:  # a table is enough for the seed counts used here
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
                 8: 2.306, 9: 2.262, 10: 2.228}
        return table.get(df, 1.96)


def reported_metrics(results: list) -> list:
    """The metrics of METRICS that every run reports (bbox only for box models)."""
    return [m for m in METRICS if all(r['final'].get(m) is not None for r in results)]


def summarize(results: list, seeds: list) -> tuple:
    by = {(r['arm'], r['seed']): r for r in results}
    lines = ['| seed | metric | plain | cached | cached - plain |', '|---|---|---|---|---|']
    stats = {}
    for metric in reported_metrics(results):
        plain = [by[('plain', s)]['final'][metric] for s in seeds]
        cached = [by[('cached', s)]['final'][metric] for s in seeds]
        diff = [c - p for c, p in zip(cached, plain)]
        for s, p, c, d in zip(seeds, plain, cached, diff):
            lines.append(f'| {s} | {metric} | {p:.3f} | {c:.3f} | {d:+.3f} |')
        n = len(seeds)
        sd = statistics.stdev(diff) if n > 1 else float('nan')
        half = t_quantile_975(n - 1) * sd / math.sqrt(n) if n > 1 else float('nan')
        stats[metric] = dict(
            plain_mean=statistics.mean(plain), cached_mean=statistics.mean(cached),
            plain_std=statistics.stdev(plain) if n > 1 else float('nan'),
            cached_std=statistics.stdev(cached) if n > 1 else float('nan'),
            diff_mean=statistics.mean(diff), diff_std=sd,
            diff_ci95=[statistics.mean(diff) - half, statistics.mean(diff) + half])
    lines += ['', '| metric | plain mean ± sd | cached mean ± sd | paired diff mean | '
              '95% CI of the paired diff |', '|---|---|---|---|---|']
    for metric, st in stats.items():
        lines.append(f'| {metric} | {st["plain_mean"]:.3f} ± {st["plain_std"]:.3f} | '
                     f'{st["cached_mean"]:.3f} ± {st["cached_std"]:.3f} | '
                     f'{st["diff_mean"]:+.3f} | [{st["diff_ci95"][0]:+.3f}, '
                     f'{st["diff_ci95"][1]:+.3f}] |')
    lines += ['', f'{len(seeds)} seeds per arm. Paired difference: cached minus plain for '
              f'the same seed (same data order and shared initial weights). The 95% '
              f'confidence interval is mean ± t(0.975, n-1) · sd / sqrt(n) over the seeds '
              f'(Student\'s t, n = {len(seeds)}).']
    return '\n'.join(lines) + '\n', stats


def plot(results: list, path: str) -> None:
    from grc_mmdet.analysis.plots import iteration_figure, save_iteration_figure
    metrics = reported_metrics(results)
    fig, axes = iteration_figure(len(metrics))
    colors = {'plain': 'tab:blue', 'cached': 'tab:red'}
    for ax, metric in zip(axes, metrics):
        for arm, color in colors.items():
            runs = [r for r in results if r['arm'] == arm]
            for r in runs:
                ax.plot([v['iter'] for v in r['val']], [v[metric] for v in r['val']],
                        color=color, alpha=0.35, lw=1)
            iters = sorted(set.intersection(*[{v['iter'] for v in r['val']} for r in runs]))
            mean = [statistics.mean(next(v[metric] for v in r['val'] if v['iter'] == it)
                                    for r in runs) for it in iters]
            ax.plot(iters, mean, color=color, lw=2.5, label=f'{arm} (mean of {len(runs)})')
    save_iteration_figure(fig, axes, metrics, path)


def main():
    args = parse_args()
    sys.path.insert(0, ROOT)
    from grc_mmdet.analysis import twin_config_path
    cached_cfg = osp.abspath(args.config)
    plain_cfg = osp.abspath(args.plain or twin_config_path(args.config))
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', 'cached_vs_plain',
                                 osp.splitext(osp.basename(args.config))[0])
    args.work_dir = osp.abspath(args.work_dir)
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f'error: --seeds must be distinct (a repeated seed would count one '
                         f'run twice), got {args.seeds}')
    check_recipe(args.work_dir, recipe(args, cached_cfg, plain_cfg))
    jobs = []
    for seed in args.seeds:
        init = osp.join(args.work_dir, f'seed{seed}', 'init.pth')
        write_init(plain_cfg, seed, init, args.cfg_options)
        jobs += [('plain', plain_cfg, seed, init), ('cached', cached_cfg, seed, init)]
    gpus = [args.gpus[i % len(args.gpus)] if args.gpus else None for i in range(len(jobs))]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j, g: train_one(*j[:3], args, j[3], g), jobs, gpus))
    table, stats = summarize(results, args.seeds)
    out = dict(cached_config=args.config, plain_config=plain_cfg, seeds=args.seeds,
               cfg_options=args.cfg_options, amp=args.amp,
               device=torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
               runs=results, summary=stats)
    with open(osp.join(args.work_dir, 'ab_results.json'), 'w') as f:
        json.dump(out, f, indent=1)
    with open(osp.join(args.work_dir, 'ab_results.md'), 'w') as f:
        f.write(f'# {osp.basename(args.config)} vs its plain twin\n\n{table}')
    plot(results, osp.join(args.work_dir, 'ab_curves.png'))
    print(table)
    print(f'[cached_vs_plain] wrote ab_results.json, ab_results.md, ab_curves.png to '
          f'{args.work_dir}')


if __name__ == '__main__':
    main()

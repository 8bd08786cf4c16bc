"""Train a cached config and its plain twin for several seeds and compare them.

    python tools/analysis_tools/cached_vs_plain.py CACHED_CONFIG [--seeds 0 1 2]
        [--work-dir DIR] [--val-interval N] [--jobs N] [--gpus ID ...] [--amp]
        [--lambda-init-arm LAMBDA ...]
        [--pretrain [--cls-config CFG] [--cls-data-root DIR] [--cls-iters N]
                    [--cls-val-interval N] [--cls-cfg-options k=v ...]]
        [--launcher {none,pytorch,slurm,mpi}] [--cfg-options k=v ...]

For each seed, both arms are trained with everything else equal: the same
config apart from the backbone type (the twin), the same schedule and hooks,
the same data order (``randomness.seed``), and the same initial values of the
shared parameters (the plain model is built with the seed, saved, and both
arms start from that file through ``load_from``; the GRC parameters keep their
own initialisation and the caches start at zero). Each run evaluates every
``--val-interval`` iterations.

``--lambda-init-arm -4`` adds a third arm: the cached config whose gates start
at ``cache_lambda_init=-4`` (sigmoid(-4) = 0.018: the cached model starts
almost as the plain one), in both stages.

``--pretrain`` runs the paper's protocol in two stages. Stage 1 trains each
arm's backbone as a classifier (``--cls-config``, whose backbone is replaced
by the detector's; the plain arm uses its plain twin) on the same data and
schedule, from the plain classifier's initial weights of the seed, and
evaluates top-1 every ``--cls-val-interval`` iterations. Stage 2 fine-tunes
the detector from the seed's shared initial weights with the backbone replaced
by that arm's classifier (every ``backbone.`` tensor, GRC parameters and
caches included). The classification data (GRC Shapes crops, as the main job
uses) is written to ``--cls-data-root`` if it holds none.

A run that finished before (its ``result.json`` exists) is skipped, so an
interrupted comparison resumes where it stopped, or goes on with more seeds or
arms. What made the runs (configs and their contents, ``--cfg-options``,
``--amp``, ``--val-interval`` and the pre-training settings) is recorded in
``recipe.json``; a later call with another recipe on the same ``--work-dir``
is refused, never mixed into one summary. Seeds must be distinct.

Writes under ``--work-dir``:

* ``ab_results.json``: every run's validation history (and its pre-training's),
  final metrics, mean training time per iteration, peak GPU memory (when on
  CUDA) and the card it trained on (``devices`` lists them all);
* ``ab_results.md``: per seed, every arm and its paired difference to plain
  (the arm minus plain) of classifier top-1 (with ``--pretrain``), bbox mAP
  and segm mAP (mask models), then per arm mean, standard deviation and a 95%
  confidence interval of the paired difference (Student's t, n-1 degrees of
  freedom, over the seeds);
* ``ab_curves.png``: top-1 and validation mAP against iteration, every run
  drawn thin and each arm's mean thick.
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
CLS_METRICS = ('accuracy/top1', )
COLORS = ('tab:blue', 'tab:red', 'tab:green', 'tab:purple', 'tab:orange', 'tab:brown')


def parse_args():
    sys.path.insert(0, ROOT)
    from grc_mmdet.utils import positive_int
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config', help='a cached config (its plain twin is found by name)')
    p.add_argument('--plain', help='the plain twin (default: found by name)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--work-dir', help='default: work_dirs/cached_vs_plain/<config name>')
    p.add_argument('--val-interval', type=positive_int,
                   help='iterations between evaluations (default: the config\'s)')
    p.add_argument('--lambda-init-arm', type=float, nargs='+', default=[], metavar='LAMBDA',
                   help='add a cached arm per value whose gates start at cache_lambda_init='
                        'LAMBDA (e.g. -4: sigmoid(-4) = 0.018, the cache almost off)')
    p.add_argument('--pretrain', action='store_true',
                   help='two stages: pre-train each arm\'s backbone as a classifier, then '
                        'fine-tune the detector from that arm\'s classifier')
    p.add_argument('--cls-config',
                   help='the cached pre-training config (its plain twin is found by name; '
                        'default: the nano GRC Shapes classifier); its backbone is replaced '
                        'by the detector\'s')
    p.add_argument('--cls-data-root', default='data/shapes_cls',
                   help='the classification dataset (GRC Shapes crops are written there if '
                        'it holds none)')
    p.add_argument('--cls-iters', type=positive_int,
                   help='pre-training iterations (default: the --cls-config\'s)')
    p.add_argument('--cls-val-interval', type=positive_int,
                   help='iterations between top-1 evaluations (default: a fifth of the run)')
    p.add_argument('--cls-cfg-options', nargs='+', action=DictAction, default={},
                   help='overrides for the pre-training of every arm (key=value)')
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


def digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def in_repo(path: str) -> str:
    """``path`` relative to the repository when it lies inside it, so that a
    work dir's recipe holds in another checkout (the contents are compared by
    their digests)."""
    rel = osp.relpath(path, ROOT)
    return path if rel.startswith('..') else rel


def recipe(args, cached_cfg: str, plain_cfg: str) -> dict:
    """What makes a run: both configs (path and content), the options, --amp
    and --val-interval; with --pretrain also the pre-training configs, options
    and length. (Arms and seeds are not: more of them can join a work dir.)"""
    rec = dict(cached_config=in_repo(cached_cfg), cached_config_sha256=digest(cached_cfg),
               plain_config=in_repo(plain_cfg), plain_config_sha256=digest(plain_cfg),
               cfg_options=options_list(args.cfg_options), amp=bool(args.amp),
               val_interval=args.val_interval)
    if getattr(args, 'pretrain', False):
        cls_cfgs = cls_config_paths(args.cls_config)
        rec.update(pretrain=True, cls_config=in_repo(cls_cfgs[True]),
                   cls_config_sha256=digest(cls_cfgs[True]),
                   cls_plain_config=in_repo(cls_cfgs[False]),
                   cls_plain_config_sha256=digest(cls_cfgs[False]),
                   cls_cfg_options=options_list(args.cls_cfg_options),
                   cls_iters=args.cls_iters, cls_val_interval=args.cls_val_interval)
    return rec


def check_recipe(work_dir: str, current: dict) -> None:
    """Record ``current`` in ``work_dir/recipe.json``, or refuse a work dir
    whose runs were made with another recipe."""
    path = osp.join(work_dir, 'recipe.json')
    if osp.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        keys = sorted(set(saved) | set(current))
        diff = {k: (saved.get(k), current.get(k)) for k in keys if saved.get(k) != current.get(k)}
        if diff:
            raise SystemExit(
                f'error: {work_dir} holds runs made with another recipe; refusing to mix them '
                f'(use another --work-dir). Differences (before, now): ' +
                '; '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items()))
        return
    os.makedirs(work_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(current, f, indent=1)


def cls_config_paths(cached_cls: str) -> dict:
    """{True: the cached pre-training config, False: its plain twin}."""
    from grc_mmdet.analysis import twin_config_path
    cached_cls = osp.abspath(osp.join(ROOT, cached_cls) if not osp.isfile(cached_cls)
                             else cached_cls)
    return {True: cached_cls, False: osp.abspath(twin_config_path(cached_cls))}


def arm_options(arm: str) -> dict:
    """The config overrides that make an arm (beyond its config file)."""
    if arm.startswith('cached_lambda'):
        return {'model.backbone.cache_lambda_init': float(arm[len('cached_lambda'):])}
    return {}


def arms_of(args) -> list:
    return ['plain', 'cached'] + [f'cached_lambda{v:g}' for v in args.lambda_init_arm]


def build_and_save(cfg: Config, seed: int, path: str) -> None:
    """Build ``cfg.model`` with ``seed``, initialise it and save its weights."""
    if osp.isfile(path):
        return
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import grc_mmdet  # noqa: F401
    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}}, path + '.tmp')
    os.replace(path + '.tmp', path)


def write_init(plain_cfg: str, seed: int, path: str, options: dict) -> None:
    """The plain model's initial weights for ``seed`` (shared by both arms)."""
    cfg = Config.fromfile(plain_cfg)
    cfg.merge_from_dict(options)
    build_and_save(cfg, seed, path)


def detector_config(path: str, args, arm: str) -> Config:
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(dict(args.cfg_options, **arm_options(arm)))
    return cfg


def classifier_configs(args, det_paths: dict) -> dict:
    """Per arm, the pre-training config file (the arm's detector backbone in
    the classifier recipe), written under ``work_dir/configs``. The plain
    arm's also gives the shared initial weights of every arm's classifier."""
    from grc_mmdet.utils.pretrain import classifier_config, is_cached, set_iters
    cls_paths = cls_config_paths(args.cls_config)
    out = {}
    for arm in arms_of(args):
        det = detector_config(det_paths[arm], args, arm)
        cfg = classifier_config(cls_paths[is_cached(det)], det, args.cls_data_root)
        cfg.merge_from_dict(args.cls_cfg_options)
        iters = args.cls_iters or cfg.train_cfg.max_iters
        set_iters(cfg, iters, args.cls_val_interval or max(iters // 5, 1))
        path = osp.join(args.work_dir, 'configs', f'pretrain_{arm}.py')
        os.makedirs(osp.dirname(path), exist_ok=True)
        cfg.dump(path)
        out[arm] = path
    return out


def read_history(run_dir: str, metrics=METRICS) -> dict:
    """Validation metrics per iteration, time per iteration and peak memory,
    from MMEngine's ``vis_data/scalars.json`` of the run's latest log folder."""
    from grc_mmdet.analysis.logs import is_train_record, read_scalars
    val, times, mems = [], [], []
    for rec in read_scalars(run_dir)[1]:
        if metrics[0] in rec:
            val.append({'iter': rec['step'], **{k: rec.get(k) for k in metrics}})
        elif is_train_record(rec):
            times.append(rec['time'])
            if 'memory' in rec:
                mems.append(rec['memory'])
    times = times[len(times) // 10:] or times  # leave out the first tenth (warm-up)
    return dict(val=val, s_per_iter=statistics.mean(times) if times else None,
                peak_memory_mb=max(mems) if mems else None)


def launch(cfg_path: str, run_dir: str, opts: dict, args, gpu: Optional[int],
           label: str) -> None:
    """Train one config with tools/train.py in a subprocess, logging to
    ``run_dir/train_stdout.log``; validation metrics are logged against the
    iteration (not the epoch) for the curves."""
    opts = dict(opts, **{'default_hooks.logger.log_metric_by_epoch': False})
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), cfg_path, '--work-dir', run_dir,
           '--launcher', args.launcher] + (['--amp'] if args.amp else []) + \
        ['--cfg-options'] + options_list(opts)
    print(f'[cached_vs_plain] {label}: training ({" ".join(cmd[1:3])} ...)', flush=True)
    os.makedirs(run_dir, exist_ok=True)
    env = dict(os.environ)
    if gpu is not None:
        env['CUDA_VISIBLE_DEVICES'] = str(gpu)
    with open(osp.join(run_dir, 'train_stdout.log'), 'w') as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f'{label} failed ({proc.returncode}); see '
                           f'{osp.join(run_dir, "train_stdout.log")}')


def device_name(gpu: Optional[int]) -> str:
    """The card a run trained on (recorded per run: a resumed comparison can
    join runs made on several machines)."""
    if not torch.cuda.is_available():
        return 'cpu'
    return torch.cuda.get_device_name(gpu or 0)


def finished(run_dir: str, label: str) -> Optional[dict]:
    done = osp.join(run_dir, 'result.json')
    if osp.isfile(done):
        print(f'[cached_vs_plain] {label}: finished before, skipped', flush=True)
        with open(done) as f:
            return json.load(f)
    return None


def save_result(run_dir: str, result: dict, metrics, label: str,
                pretrain: Optional[dict] = None) -> dict:
    """Write ``run_dir/result.json`` (which marks the run finished): the
    history, the last evaluation's ``metrics`` and, for a fine-tuned
    detector, its pre-training (whose final top-1 joins ``final``)."""
    if not result['val']:
        raise RuntimeError(f'{label}: no validation result in {run_dir}')
    result['final'] = {k: result['val'][-1][k] for k in metrics}
    if pretrain is not None:
        result['pretrain'] = pretrain
        result['final'].update(pretrain['final'])
    with open(osp.join(run_dir, 'result.json'), 'w') as f:
        json.dump(result, f, indent=1)
    return result


def pretrain_one(arm: str, seed: int, args, cls_cfgs: dict, gpu: Optional[int]) -> dict:
    """Stage 1: the arm's backbone as a classifier, from the shared initial
    weights of the seed; returns its history and checkpoint."""
    run_dir = osp.join(args.work_dir, f'seed{seed}', f'pretrain_{arm}')
    label = f'seed {seed} {arm} pre-training'
    result = finished(run_dir, label)
    if result is None:
        init = osp.join(args.work_dir, f'seed{seed}', 'init_classifier.pth')
        launch(cls_cfgs[arm], run_dir, {'randomness.seed': seed, 'load_from': init}, args, gpu,
               label)
        with open(osp.join(run_dir, 'last_checkpoint')) as f:
            ckpt = f.read().strip()
        result = save_result(run_dir, dict(arm=arm, seed=seed, config=cls_cfgs[arm],
                                           checkpoint=ckpt, device=device_name(gpu),
                                           **read_history(run_dir, CLS_METRICS)),
                             CLS_METRICS, label)
    return result


def train_one(arm: str, cfg_path: str, seed: int, args, init: str,
              gpu: Optional[int] = None, cls_cfgs: Optional[dict] = None) -> dict:
    """One arm of one seed: (with ``cls_cfgs``: pre-training, then) detection
    training from ``init`` (with pre-training: ``init`` with the backbone
    replaced by the arm's classifier)."""
    run_dir = osp.join(args.work_dir, f'seed{seed}', arm)
    label = f'seed {seed} {arm}'
    result = finished(run_dir, label)
    if result is not None:
        return result
    pretrain = None
    if cls_cfgs:
        from grc_mmdet.utils.pretrain import compose_detector_init
        pretrain = pretrain_one(arm, seed, args, cls_cfgs, gpu)
        composed = osp.join(args.work_dir, f'seed{seed}', f'init_{arm}.pth')
        if not osp.isfile(composed):
            counts = compose_detector_init(init, pretrain['checkpoint'], composed)
            print(f'[cached_vs_plain] {label}: detector init = {init} with the backbone of '
                  f'{pretrain["checkpoint"]} ({counts})', flush=True)
        init = composed
    opts = dict(args.cfg_options, **arm_options(arm),
                **{'randomness.seed': seed, 'load_from': init})
    if args.val_interval:
        opts['train_cfg.val_interval'] = args.val_interval
    launch(cfg_path, run_dir, opts, args, gpu, label)
    result = dict(arm=arm, seed=seed, config=cfg_path, init=init, device=device_name(gpu),
                  **read_history(run_dir))
    return save_result(run_dir, result, METRICS, label, pretrain)


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
    """The metrics that every run reports: classifier top-1 (pre-trained runs),
    bbox mAP, segm mAP (mask models)."""
    return [m for m in CLS_METRICS + METRICS
            if all(r['final'].get(m) is not None for r in results)]


def arm_order(results: list) -> list:
    """plain, cached, then the other arms in the order of their names."""
    arms = {r['arm'] for r in results}
    return [a for a in ('plain', 'cached') if a in arms] + \
        sorted(arms - {'plain', 'cached'})


def mean_sd_ci(values: list) -> dict:
    """Mean, sample standard deviation and the 95% Student-t interval of the mean."""
    n = len(values)
    sd = statistics.stdev(values) if n > 1 else float('nan')
    half = t_quantile_975(n - 1) * sd / math.sqrt(n) if n > 1 else float('nan')
    mean = statistics.mean(values)
    return dict(mean=mean, std=sd, ci95=[mean - half, mean + half])


def summarize(results: list, seeds: list) -> tuple:
    """Per seed, every arm and its paired difference to plain (same seed);
    then per arm the mean ± sd and the paired difference's mean and 95%
    interval. ``stats[metric][arm]``: mean, std (and for arms other than
    plain: diff_mean, diff_std, diff_ci95)."""
    by = {(r['arm'], r['seed']): r for r in results}
    arms = arm_order(results)
    others = [a for a in arms if a != 'plain']
    lines = ['| seed | metric | ' + ' | '.join(arms) + ' | ' +
             ' | '.join(f'{a} - plain' for a in others) + ' |',
             '|---|---|' + '---|' * (len(arms) + len(others))]
    stats = {}
    for metric in reported_metrics(results):
        values = {a: [by[(a, s)]['final'][metric] for s in seeds] for a in arms}
        diffs = {a: [c - p for c, p in zip(values[a], values['plain'])] for a in others}
        for i, s in enumerate(seeds):
            lines.append(f'| {s} | {metric} | ' +
                         ' | '.join(f'{values[a][i]:.3f}' for a in arms) + ' | ' +
                         ' | '.join(f'{diffs[a][i]:+.3f}' for a in others) + ' |')
        stats[metric] = {}
        for a in arms:
            st = mean_sd_ci(values[a])
            stats[metric][a] = dict(mean=st['mean'], std=st['std'])
            if a != 'plain':
                d = mean_sd_ci(diffs[a])
                stats[metric][a].update(diff_mean=d['mean'], diff_std=d['std'],
                                        diff_ci95=d['ci95'])
    lines += ['', '| metric | arm | mean ± sd | paired diff to plain, mean | '
              '95% CI of the paired diff |', '|---|---|---|---|---|']
    for metric, per_arm in stats.items():
        for a, st in per_arm.items():
            diff = (f'{st["diff_mean"]:+.3f} | [{st["diff_ci95"][0]:+.3f}, '
                    f'{st["diff_ci95"][1]:+.3f}]') if a != 'plain' else ' | '
            lines.append(f'| {metric} | {a} | {st["mean"]:.3f} ± {st["std"]:.3f} | {diff} |')
    lines += ['', f'{len(seeds)} seeds per arm. Paired difference: an arm minus plain for '
              f'the same seed (same data order and shared initial weights). The 95% '
              f'confidence interval is mean ± t(0.975, n-1) · sd / sqrt(n) over the seeds '
              f'(Student\'s t, n = {len(seeds)}).']
    return '\n'.join(lines) + '\n', stats


def curve(result: dict, metric: str) -> list:
    """(iteration, value) of ``metric`` over a run (top-1: its pre-training)."""
    val = result['pretrain']['val'] if metric in CLS_METRICS else result['val']
    return [(v['iter'], v[metric]) for v in val]


def plot(results: list, path: str) -> None:
    """One panel per metric: every run thin, each arm's mean thick."""
    from grc_mmdet.analysis.plots import iteration_figure, save_iteration_figure
    metrics = reported_metrics(results)
    fig, axes = iteration_figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        for arm, color in zip(arm_order(results), COLORS):
            runs = [dict(curve(r, metric)) for r in results if r['arm'] == arm]
            for run in runs:
                ax.plot(list(run), list(run.values()), color=color, alpha=0.35, lw=1, marker='.')
            iters = sorted(set.intersection(*[set(run) for run in runs]))
            mean = [statistics.mean(run[it] for run in runs) for it in iters]
            ax.plot(iters, mean, color=color, lw=2.5, marker='o',
                    label=f'{arm} (mean of {len(runs)})')
        if metric in CLS_METRICS:
            ax.set_title('pre-training (classifier)')
    save_iteration_figure(fig, axes, metrics, path)


def main():
    args = parse_args()
    from grc_mmdet.analysis import twin_config_path
    cached_cfg = osp.abspath(args.config)
    plain_cfg = osp.abspath(args.plain or twin_config_path(args.config))
    if args.work_dir is None:
        args.work_dir = osp.join('work_dirs', 'cached_vs_plain',
                                 osp.splitext(osp.basename(args.config))[0])
    args.work_dir = osp.abspath(args.work_dir)
    args.cls_data_root = osp.abspath(args.cls_data_root)
    if args.cls_config is None:
        from grc_mmdet.utils.pretrain import CLS_CONFIGS
        args.cls_config = CLS_CONFIGS[True]
    if len(set(args.seeds)) != len(args.seeds):
        raise SystemExit(f'error: --seeds must be distinct (a repeated seed would count one '
                         f'run twice), got {args.seeds}')
    if len(set(args.lambda_init_arm)) != len(args.lambda_init_arm):
        raise SystemExit(f'error: --lambda-init-arm values must be distinct, got '
                         f'{args.lambda_init_arm}')
    if not args.pretrain:
        unused = [f for f in ('cls_iters', 'cls_val_interval') if getattr(args, f)]
        if unused or args.cls_cfg_options:
            raise SystemExit(f'error: --{(unused or ["cls_cfg_options"])[0].replace("_", "-")} '
                             f'needs --pretrain')
    check_recipe(args.work_dir, recipe(args, cached_cfg, plain_cfg))
    det_paths = {arm: plain_cfg if arm == 'plain' else cached_cfg for arm in arms_of(args)}
    cls_cfgs = None
    if args.pretrain:
        if not osp.isfile(osp.join(args.cls_data_root, 'meta', 'val.txt')):
            from grc_mmdet.classification import make_shapes_crops
            print(f'[cached_vs_plain] writing the GRC Shapes crops to {args.cls_data_root}')
            make_shapes_crops(args.cls_data_root)
        cls_cfgs = classifier_configs(args, det_paths)
    jobs = []
    for seed in args.seeds:
        init = osp.join(args.work_dir, f'seed{seed}', 'init.pth')
        write_init(plain_cfg, seed, init, args.cfg_options)
        if args.pretrain:
            build_and_save(Config.fromfile(cls_cfgs['plain']), seed,
                           osp.join(args.work_dir, f'seed{seed}', 'init_classifier.pth'))
        jobs += [(arm, det_paths[arm], seed, init) for arm in arms_of(args)]
    gpus = [args.gpus[i % len(args.gpus)] if args.gpus else None for i in range(len(jobs))]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j, g: train_one(*j[:3], args, j[3], g, cls_cfgs),
                                jobs, gpus))
    table, stats = summarize(results, args.seeds)
    out = dict(cached_config=args.config, plain_config=plain_cfg, seeds=args.seeds,
               arms=arm_order(results), pretrain=args.pretrain, cfg_options=args.cfg_options,
               cls_cfg_options=args.cls_cfg_options, amp=args.amp,
               devices=sorted({r.get('device', 'not recorded') for r in results}),
               runs=results, summary=stats)
    with open(osp.join(args.work_dir, 'ab_results.json'), 'w') as f:
        json.dump(out, f, indent=1)
    protocol = ('two stages: each arm\'s backbone pre-trained as a classifier, then the '
                'detector fine-tuned from it' if args.pretrain else 'detectors trained from '
                'the shared initial weights')
    with open(osp.join(args.work_dir, 'ab_results.md'), 'w') as f:
        f.write(f'# {osp.basename(args.config)} vs its plain twin\n\nProtocol: {protocol}.\n\n'
                f'{table}')
    plot(results, osp.join(args.work_dir, 'ab_curves.png'))
    print(table)
    print(f'[cached_vs_plain] wrote ab_results.json, ab_results.md, ab_curves.png to '
          f'{args.work_dir}')


if __name__ == '__main__':
    main()

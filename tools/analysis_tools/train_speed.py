"""Training speed and loss curve of finished (or running) training runs.

    python tools/analysis_tools/train_speed.py WORK_DIR [WORK_DIR ...]
        [--skip 20] [--out-dir DIR]

Reads each work dir's MMEngine log (the newest ``*/vis_data/scalars.json``,
its config dump and ``*.log``) and reports, after leaving out the first
``--skip`` logged iterations (warm-up, data loader start): the mean time per
iteration and its data-loading part, the global batch (the config's
``train_dataloader.batch_size`` times the GPU count the log names) and the
training throughput in images per second, plus the first and last logged
loss. With ``--out-dir`` it writes ``train_speed.json`` and ``train_loss.png``
(loss against iteration, one line per work dir).

MMEngine logs ``time`` averaged over each logging window, so the mean is over
windows of ``default_hooks.logger.interval`` iterations.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import statistics

from mmengine.config import Config

from grc_mmdet.analysis.logs import is_train_record, read_scalars
from grc_mmdet.analysis.plots import iteration_figure, save_iteration_figure


def newest(pattern: str) -> str:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise FileNotFoundError(f'nothing matches {pattern}: is this an MMEngine work dir?')
    return paths[-1]


def read_run(work_dir: str, skip: int) -> dict:
    run_dir, records = read_scalars(work_dir)
    records = [r for r in records if is_train_record(r)]
    if not records:
        raise ValueError(f'{run_dir} logged no training iterations')
    timed = [r for r in records if r['step'] > skip] or records
    cfg = Config.fromfile(newest(osp.join(run_dir, 'vis_data', '*.py')))
    gpus = 1
    log = glob.glob(osp.join(run_dir, '*.log'))
    if log:
        with open(log[0]) as f:
            m = re.search(r'GPU number: (\d+)', f.read())
        if m:
            gpus = int(m.group(1))
    batch = cfg.train_dataloader.batch_size * gpus
    s_per_iter = statistics.mean(r['time'] for r in timed)
    return dict(work_dir=work_dir, gpus=gpus, global_batch=batch,
                iters=records[-1]['step'], timed_from=timed[0]['step'],
                s_per_iter=s_per_iter,
                data_s_per_iter=statistics.mean(r.get('data_time', 0.0) for r in timed),
                img_per_s=batch / s_per_iter,
                loss_first=records[0]['loss'], loss_last=records[-1]['loss'],
                loss=[(r['step'], r['loss']) for r in records])


def plot(runs: list, path: str) -> None:
    fig, axes = iteration_figure(1, width=6.0)
    for r in runs:
        axes[0].plot(*zip(*r['loss']), label=osp.basename(osp.normpath(r['work_dir'])))
    save_iteration_figure(fig, axes, ['training loss'], path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('work_dirs', nargs='+')
    p.add_argument('--skip', type=int, default=20,
                   help='leave out the logged iterations up to this one (warm-up)')
    p.add_argument('--out-dir', help='write train_speed.json and train_loss.png here')
    args = p.parse_args()
    runs = []
    for w in args.work_dirs:
        try:
            runs.append(read_run(w, args.skip))
        except (FileNotFoundError, ValueError) as e:
            print(f'{w}: skipped ({e})')
    print(f'{"work dir":<40}{"GPUs":>5}{"batch":>7}{"s/iter":>9}{"data s":>9}{"img/s":>9}'
          f'{"loss first":>12}{"loss last":>11}')
    for r in runs:
        print(f'{osp.basename(osp.normpath(r["work_dir"])):<40}{r["gpus"]:>5}'
              f'{r["global_batch"]:>7}{r["s_per_iter"]:>9.3f}{r["data_s_per_iter"]:>9.3f}'
              f'{r["img_per_s"]:>9.1f}{r["loss_first"]:>12.3f}{r["loss_last"]:>11.3f}')
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(osp.join(args.out_dir, 'train_speed.json'), 'w') as f:
            json.dump(runs, f, indent=1)
        plot(runs, osp.join(args.out_dir, 'train_loss.png'))


if __name__ == '__main__':
    main()

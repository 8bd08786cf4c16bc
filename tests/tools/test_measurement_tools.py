"""Measurement tools: benchmark.py on a classifier config, train_speed.py on a
work dir whose numbers are known, and cached_vs_plain's --gpus placement."""
import json
import os
import os.path as osp
import types

import pytest
from mmdet.utils import register_all_modules
from mmengine.config import Config

from grc_mmdet.analysis.bench import CLASSIFIER_PARTS, Bench
from tests.helpers import ROOT, load_tool, run_tool

CLS_CONFIG = 'configs/cached_imagenet/cached-pvt-t_8xb128_in1k.py'


def test_benchmark_times_a_classifier(shapes_root, tmp_path):
    out = run_tool(['tools/analysis_tools/benchmark.py', CLS_CONFIG, '--device', 'cpu',
                    '--shape', '32', '32', '--batch', '2', '--warmup', '1', '--reps', '1',
                    '--out-dir', str(tmp_path)], shapes_root)
    res = json.load(open(tmp_path / 'benchmark.json'))
    assert tuple(res['parts']) == CLASSIFIER_PARTS  # the parts that apply, by default
    for part in res['parts'].values():
        for arm in ('plain', 'cached'):
            assert part[arm]['img_per_s'] == pytest.approx(2e3 / part[arm]['median_ms'])
    assert 'img/s' in out


def test_bench_refuses_a_part_of_another_model():
    register_all_modules()
    cfg = Config.fromfile(osp.join(ROOT, CLS_CONFIG))
    cfg.model.backbone.update(num_layers=[1, 1, 1, 1], embed_dims=16)
    cfg.model.in_channels = 128
    bench = Bench(cfg, 2, (32, 32), 'cpu', None)
    with pytest.raises(ValueError, match="'detector-train' does not apply to a ImageClassifier"):
        bench.run('detector-train')
    bench.run('classifier-train')


def write_work_dir(root, times, batch, gpus):
    run = osp.join(root, '20261130_000000')
    vis = osp.join(run, 'vis_data')
    os.makedirs(vis)
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        for i, t in enumerate(times):
            f.write(json.dumps(dict(step=(i + 1) * 5, time=t, data_time=t / 4,
                                    loss=2.0 - 0.1 * i)) + '\n')
        f.write(json.dumps({'step': 99, 'accuracy/top1': 50.0}) + '\n')  # a validation record
    with open(osp.join(vis, 'config.py'), 'w') as f:
        f.write(f'train_dataloader = dict(batch_size={batch})\n')
    with open(osp.join(run, '20261130_000000.log'), 'w') as f:
        f.write(f'    Distributed training: True\n    GPU number: {gpus}\n')


def test_train_speed_reads_throughput(tmp_path):
    work = str(tmp_path / 'run')
    write_work_dir(work, [9.0, 9.0, 0.5, 0.25, 0.75], batch=16, gpus=2)
    run = load_tool('train_speed').read_run(work, skip=10)
    # iterations 15-25 only (the first two windows are warm-up): mean 0.5 s
    assert run['timed_from'] == 15 and run['s_per_iter'] == pytest.approx(0.5)
    assert run['global_batch'] == 32 and run['img_per_s'] == pytest.approx(64.0)
    assert run['data_s_per_iter'] == pytest.approx(0.125)
    assert (run['loss_first'], run['loss_last']) == pytest.approx((2.0, 1.6))
    out = run_tool(['tools/analysis_tools/train_speed.py', work, str(tmp_path / 'none'),
                    '--skip', '10', '--out-dir', str(tmp_path / 'out')], str(tmp_path))
    assert 'none: skipped' in out and '64.0' in out
    assert osp.getsize(tmp_path / 'out' / 'train_loss.png') > 5000


def test_cached_vs_plain_spreads_runs_over_gpus(tmp_path, monkeypatch):
    tool = load_tool('cached_vs_plain')
    seen = []

    def fake_run(cmd, env=None, **kwargs):
        seen.append(env.get('CUDA_VISIBLE_DEVICES'))
        return types.SimpleNamespace(returncode=1)
    monkeypatch.setattr(tool.subprocess, 'run', fake_run)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    args = types.SimpleNamespace(work_dir=str(tmp_path), cfg_options={}, val_interval=None,
                                 launcher='none', amp=False)
    for gpu in (None, 1):
        with pytest.raises(RuntimeError, match='failed'):
            tool.train_one('plain', 'cfg.py', 0, args, 'init.pth', gpu)
    assert seen[1] == '1' and seen[0] is None

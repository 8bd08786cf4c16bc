"""Two CPU processes (gloo) through tools/dist_train.sh: identical caches on
every rank and in the checkpoint."""
import os
import os.path as osp
import subprocess
import sys

import torch

from tests.helpers import FAST, ROOT, SMALL_CONFIG


def test_dist_train_two_cpu_ranks_share_the_cache(shapes_root, tmp_path):
    work = str(tmp_path / 'dist')
    env = dict(os.environ, GRC_SHAPES_ROOT=shapes_root, PYTHON=sys.executable,
               OMP_NUM_THREADS='1', PORT='29613')
    opts = FAST + ['find_unused_parameters=False',
                   f'custom_hooks.1.dump_dir={work}/caches', 'custom_hooks.1.interval=2']
    proc = subprocess.run(['bash', 'tools/dist_train.sh', SMALL_CONFIG, '2', '--work-dir', work,
                           '--cfg-options'] + opts, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert 'Distributed training: True' in out
    r0 = torch.load(osp.join(work, 'caches', 'caches_rank0.pth'), weights_only=True)
    r1 = torch.load(osp.join(work, 'caches', 'caches_rank1.pth'), weights_only=True)
    ckpt = torch.load(osp.join(work, 'iter_4.pth'), weights_only=True)['state_dict']
    assert r0 and set(r0) == set(r1)
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name  # bitwise equal across ranks
        assert torch.count_nonzero(r0[name]) > 0, name  # and really written
        assert torch.equal(ckpt[name + '.cache'], r0[name]), name

"""The shell launchers build the command lines MMDetection users expect."""
import os
import subprocess

from tests.helpers import ROOT


def fake_srun(tmp_path):
    """A ``srun`` on PATH that prints its arguments."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/usr/bin/env bash\necho "SRUN $*"\n')
    srun.chmod(0o755)
    return dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', GPUS='4', GPUS_PER_NODE='4')


def run(args, env):
    return subprocess.run(['bash'] + args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout


def test_slurm_train_and_test(tmp_path):
    env = fake_srun(tmp_path)
    train = run(['tools/slurm_train.sh', 'part', 'job', 'cfg.py', 'work', '--amp'], env)
    assert '-p part --job-name=job --gres=gpu:4 --ntasks=4' in train
    assert 'tools/train.py cfg.py --work-dir=work --amp --launcher=slurm' in train
    test = run(['tools/slurm_test.sh', 'part', 'job', 'cfg.py', 'ckpt.pth', '--out', 'r.pkl'], env)
    assert 'tools/test.py cfg.py ckpt.pth --out r.pkl --launcher=slurm' in test


def fake_python(tmp_path):
    """A ``PYTHON`` that prints its arguments instead of starting torchrun."""
    py = tmp_path / 'fakepython'
    py.write_text('#!/usr/bin/env bash\necho "PY $*"\n')
    py.chmod(0o755)
    return dict(os.environ, PYTHON=str(py), PORT='29999')


def test_dist_train_and_test(tmp_path):
    env = fake_python(tmp_path)
    train = run(['tools/dist_train.sh', 'cfg.py', '2', '--amp'], env)
    assert '--nproc_per_node=2 --master_port=29999' in train
    assert 'tools/train.py cfg.py --amp --launcher pytorch' in train
    test = run(['tools/dist_test.sh', 'cfg.py', 'ckpt.pth', '4', '--out', 'r.pkl'], env)
    assert '--nproc_per_node=4' in test
    assert 'tools/test.py cfg.py ckpt.pth --out r.pkl --launcher pytorch' in test

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


def _empty_batch_worker(rank, world_size, port, out_dir):
    import datetime

    import torch.distributed as dist

    from grc_mmdet.models.grc import GatedRecurrentCache, resize_tokens
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(0)
    m = GatedRecurrentCache(16, 2, cache_grid=(3, 4)).train()
    x = torch.randn(2 if rank == 0 else 0, 12, 16)
    with torch.no_grad():
        xg = resize_tokens(x[..., :8], (3, 4), (3, 4)).flatten(2).transpose(1, 2)
        expected = m.core(xg, m.cache.view(-1, 8), torch.float32)[0].mean(0).view(3, 4, 8)
    caches = []
    for _ in range(2):  # two steps: the second reads the cache the first wrote
        out = m(x, (3, 4), torch.randn_like(x))
        out.sum().backward()
        caches.append(m.cache.clone())
    torch.save({'caches': caches, 'expected': expected, 'skipped': int(m.cache_skipped_writes)},
               f'{out_dir}/rank{rank}.pth')
    dist.destroy_process_group()


def test_rank_with_an_empty_batch_takes_part_in_the_cache_write(tmp_path):
    """Gloo, two ranks, one with batch 0: nobody waits for the other, and both
    caches become the mean over the samples that exist (rank 0's)."""
    import torch.multiprocessing as mp
    mp.start_processes(_empty_batch_worker, args=(2, 29631, str(tmp_path)), nprocs=2,
                       join=True, start_method='spawn')
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pth', weights_only=True) for r in (0, 1))
    for a, b in zip(r0['caches'], r1['caches']):
        assert torch.equal(a, b)  # bitwise equal on both ranks
    assert torch.allclose(r0['caches'][0], r0['expected'], atol=1e-6)  # rank 0's batch mean
    assert not torch.equal(r0['caches'][1], r0['caches'][0])
    assert r0['skipped'] == r1['skipped'] == 0

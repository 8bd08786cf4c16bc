"""Hooks for MMEngine runners."""
from typing import List

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..models.grc import grc_layers


@HOOKS.register_module()
class ResumeRNGHook(Hook):
    """Save torch's RNG state in checkpoints and restore it on resume.

    MMEngine resumes model, optimizer, schedulers and the data position, but
    not the global torch RNG that detectors consume every step (RoI samplers,
    dropout). Restoring it makes a killed-and-resumed CPU run take the same
    random decisions as an uninterrupted one. Data randomness (numpy, in the
    pipeline) is replayed by MMEngine's own skip of the trained batches.
    """

    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = {'torch': torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if not runner._resume or not state:  # only when resuming a run
            return
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])


def compare_rank_checksums(gathered: List[torch.Tensor], names: List[str]) -> None:
    """Raise if the caches are not finite or differ across ranks.

    ``gathered``: one tensor per rank, [sum of cache_i for each layer i,
    then sum of squares]; ``names``: the layer names, in the same order.
    """
    n = len(names)
    for rank, sums in enumerate(gathered):
        bad = [names[i] for i in range(n) if not torch.isfinite(sums[[i, n + i]]).all()]
        if bad:
            raise RuntimeError(f'GRC caches hold NaN/Inf on rank {rank}: {bad}; a checkpoint '
                               f'or a write outside training put them there (training skips '
                               f'non-finite writes)')
    differ = [names[i] for i in range(n)
              if any(not torch.equal(g[[i, n + i]], gathered[0][[i, n + i]]) for g in gathered)]
    if differ:
        raise RuntimeError(f'GRC caches differ across ranks in layers {differ}; every rank '
                           f'must write the same cache (the mean over ranks)')


@HOOKS.register_module()
class GRCMonitorHook(Hook):
    """Log GRC state during training and check the caches agree across ranks.

    At the first and every ``interval`` training iterations it puts the mean
    attention ratio sigmoid(lambda) of each stage's GRC layers
    (``train/grc_ratio_s{stage}``) and the count of skipped non-finite cache writes
    (``train/grc_skipped_writes``) in the log, and warns when that count grew:
    the model counts skipped writes, this hook is the one place that reports
    them. After training (and at every ``interval`` when ``check_sync``) it
    compares checksums of all caches across ranks and raises if they are not
    finite or differ. ``dump_dir``: each rank saves its caches there after
    training (``caches_rank{r}.pth``), for inspection. It runs before
    MMEngine's LoggerHook, so every log record (the first included) carries
    the ratios: ``analyze_logs.py plot_curve --keys grc_ratio_s0`` works.

    Args:
        interval (int): iterations between logs. Default 50.
        check_sync (bool): compare caches across ranks. Default True.
        dump_dir (str | None): where to save per-rank caches. Default None.
    """

    # before LoggerHook (BELOW_NORMAL): the ratios go into the same log record
    # as the loss of that iteration
    priority = 'NORMAL'

    def __init__(self, interval: int = 50, check_sync: bool = True, dump_dir=None):
        self.interval = interval
        self.check_sync = check_sync
        self.dump_dir = dump_dir
        self._reported_skips = 0

    @staticmethod
    def _layers(runner):
        from mmengine.model import is_model_wrapper
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return list(grc_layers(model))

    def _check(self, runner):
        import torch.distributed as dist
        from mmengine.dist import get_world_size
        layers = self._layers(runner)
        if not layers or get_world_size() == 1 or not self.check_sync:
            return
        local = torch.stack([m.cache.double().sum() for _, m in layers] +
                            [m.cache.double().square().sum() for _, m in layers])
        gathered = [torch.zeros_like(local) for _ in range(get_world_size())]
        dist.all_gather(gathered, local)
        compare_rank_checksums([g.cpu() for g in gathered], [n for n, _ in layers])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        # the first iteration too, so that every log record carries the ratios
        if runner.iter != 0 and not self.every_n_train_iters(runner, self.interval):
            return
        layers = self._layers(runner)
        if not layers:
            return
        stages = {}
        for _, m in layers:
            stages.setdefault(m.stage, []).append(m.attention_ratio().mean())
        for stage, vals in stages.items():
            runner.message_hub.update_scalar(f'train/grc_ratio_s{stage}',
                                             float(torch.stack(vals).mean()))
        counts = torch.stack([m.cache_skipped_writes for _, m in layers]).tolist()
        skipped = sum(counts)
        runner.message_hub.update_scalar('train/grc_skipped_writes', skipped)
        if skipped > self._reported_skips:
            bad = [n for (n, _), c in zip(layers, counts) if c]
            runner.logger.warning(
                f'GRC: {skipped - self._reported_skips} cache write(s) with NaN/Inf skipped '
                f'since the last report (total {skipped}; layers {bad}); those caches kept '
                f'their previous value')
            self._reported_skips = skipped
        self._check(runner)

    def after_train(self, runner):
        self._check(runner)
        if self.dump_dir:
            import os
            import os.path as osp

            from mmengine.dist import get_rank
            os.makedirs(self.dump_dir, exist_ok=True)
            torch.save({n: m.cache.clone() for n, m in self._layers(runner)},
                       osp.join(self.dump_dir, f'caches_rank{get_rank()}.pth'))

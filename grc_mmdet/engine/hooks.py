"""Hooks for MMEngine runners."""
import re

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


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


@HOOKS.register_module()
class GRCMonitorHook(Hook):
    """Log GRC state during training and check the caches agree across ranks.

    Every ``interval`` training iterations it puts the mean attention ratio
    sigmoid(lambda) of each cached layer group (per stage) and the count of
    skipped non-finite cache writes in the log. After training (and at every
    ``interval`` when ``check_sync``) it compares a checksum of all caches
    across ranks and raises if they differ. ``dump_dir``: each rank saves its
    caches there after training (``caches_rank{r}.pth``), for inspection.

    Args:
        interval (int): iterations between logs. Default 50.
        check_sync (bool): compare caches across ranks. Default True.
        dump_dir (str | None): where to save per-rank caches. Default None.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 50, check_sync: bool = True, dump_dir=None):
        self.interval = interval
        self.check_sync = check_sync
        self.dump_dir = dump_dir

    @staticmethod
    def _layers(runner):
        from mmengine.model import is_model_wrapper

        from ..models.grc import grc_layers
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
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError('GRC caches differ across ranks; every rank must write the '
                               'same cache (mean over ranks)')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self.every_n_train_iters(runner, self.interval):
            return
        layers = self._layers(runner)
        if not layers:
            return
        stages = {}
        for name, m in layers:
            m_stage = re.search(r'(?:layers|stages)\.(\d+)\.', name)
            key = m_stage.group(1) if m_stage else 'x'
            stages.setdefault(key, []).append(m.attention_ratio().mean())
        for key, vals in stages.items():
            runner.message_hub.update_scalar(f'train/grc_ratio_s{key}',
                                             float(torch.stack(vals).mean()))
        skipped = torch.stack([m.cache_skipped_writes for _, m in layers]).sum()
        runner.message_hub.update_scalar('train/grc_skipped_writes', int(skipped))
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

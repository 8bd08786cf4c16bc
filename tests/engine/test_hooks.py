"""GRCMonitorHook (ratios per stage tag, skipped writes, rank checks) and ResumeRNGHook."""
import io
import logging
import warnings

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.logging import MessageHub, MMLogger

import grc_mmdet  # noqa: F401
from grc_mmdet.engine import GRCMonitorHook
from grc_mmdet.engine.hooks import compare_rank_checksums
from grc_mmdet.models import grc_layers
from tests.helpers import cached_cfg


class FakeRunner:
    """What the hook reads of an MMEngine runner."""

    def __init__(self, model, name):
        self.iter = 0
        self.model = model
        self.message_hub = MessageHub.get_instance(name)
        self.logger = MMLogger.get_instance(name)


def test_monitor_hook_logs_ratios_per_stage_tag():
    model = MODELS.build(cached_cfg('Swin', cache_lambda_init=1.0, cache_stages=[0, 2]))
    runner = FakeRunner(model, 'grc_monitor_ratios')
    GRCMonitorHook(interval=1).after_train_iter(runner, 0)
    scalars = runner.message_hub.log_scalars
    for stage in (0, 2):
        assert abs(scalars[f'train/grc_ratio_s{stage}'].current()
                   - torch.sigmoid(torch.tensor(1.0))) < 1e-6
    assert 'train/grc_ratio_s1' not in scalars
    assert scalars['train/grc_skipped_writes'].current() == 0


def test_skipped_writes_are_reported_by_the_hook_not_the_forward():
    model = MODELS.build(cached_cfg('PVT')).train()
    bad = torch.randn(2, 3, 64, 64)
    bad[0, :, 5, 5] = float('nan')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the forward does not warn
        model(bad)
        model(torch.randn(2, 3, 64, 64))
    runner = FakeRunner(model, 'grc_monitor_skips')
    stream = io.StringIO()
    runner.logger.addHandler(logging.StreamHandler(stream))
    hook = GRCMonitorHook(interval=1)
    hook.after_train_iter(runner, 0)
    n_layers = len(list(grc_layers(model)))
    assert runner.message_hub.log_scalars['train/grc_skipped_writes'].current() == n_layers
    assert f'{n_layers} cache write(s) with NaN/Inf skipped' in stream.getvalue()
    stream.truncate(0)
    hook.after_train_iter(runner, 1)  # nothing new: no second warning
    assert 'skipped' not in stream.getvalue()


def test_rank_check_names_nan_instead_of_a_mismatch():
    same_nan = torch.tensor([float('nan'), 1.0, float('nan'), 1.0])
    with pytest.raises(RuntimeError, match=r"NaN/Inf on rank 0: \['a'\]"):
        compare_rank_checksums([same_nan, same_nan.clone()], ['a', 'b'])
    with pytest.raises(RuntimeError, match=r"differ across ranks in layers \['b'\]"):
        compare_rank_checksums([torch.tensor([1., 2., 1., 4.]), torch.tensor([1., 3., 1., 9.])],
                               ['a', 'b'])
    compare_rank_checksums([torch.tensor([1., 2., 1., 4.])] * 2, ['a', 'b'])

"""tools/main_job.py: its arguments are checked, and the whole chain
(pre-train -> hand-off -> detect) runs on a tiny setting, with the hand-off
checked tensor by tensor, on a data root with fewer validation images than
the PNG shows."""
import json
import os.path as osp

import pytest
import torch

from tests.helpers import ROOT, run_tool


@pytest.mark.parametrize('flag', ['--iters', '--cls-iters'])
@pytest.mark.parametrize('value', ['0', '-3', 'x'])
def test_iterations_must_be_positive(flag, value, tmp_path):
    with pytest.raises(AssertionError, match=f'argument {flag}'):
        run_tool(['tools/main_job.py', flag, value, '--work-dir', str(tmp_path)], '')


def test_set_iters_stretches_a_schedule_that_ends_with_training():
    """--cls-iters 600: the classifier's cosine ends at 600, not where the
    recipe ended (which would leave the rest at its floor); a longer schedule
    stopped early (1500 stopped at 1000) is cut, never stretched."""
    import importlib.util

    from mmengine.config import Config
    spec = importlib.util.spec_from_file_location('main_job', osp.join(ROOT, 'tools/main_job.py'))
    main_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main_job)
    cls = Config.fromfile(osp.join(ROOT, main_job.CLS_CONFIGS[True]))
    main_job.set_iters(cls, 600)
    assert [s.end for s in cls.param_scheduler] == [30, 600]
    main_job.set_iters(cls, 300)
    assert [s.end for s in cls.param_scheduler] == [30, 300]
    det = Config.fromfile(osp.join(ROOT, main_job.DEFAULT_CONFIG))
    det.param_scheduler[-1].end = 1500  # a 1500-iteration schedule ...
    det.train_cfg.max_iters = 1000  # ... stopped at 1000
    main_job.set_iters(det, 2000)
    assert det.train_cfg.max_iters == 2000 and det.param_scheduler[-1].end == 1500
    main_job.set_iters(det, 400)
    assert det.train_cfg.max_iters == 400 and det.param_scheduler[-1].end == 400
    assert det.param_scheduler[0].end == 100


@pytest.fixture(scope='module')
def crops_root(tmp_path_factory):
    from grc_mmdet.classification import make_shapes_crops
    root = str(tmp_path_factory.mktemp('crops') / 'data')
    counts = make_shapes_crops(root, num_train=12, num_val=4, img_size=(96, 128))
    assert counts['train'] > 0 and counts['val'] > 0
    return root


def test_pretrain_handoff_detect_chain(shapes_root, crops_root, tmp_path):
    work = str(tmp_path / 'job')
    out = run_tool(['tools/main_job.py', '--data-root', shapes_root, '--cls-data-root',
                    crops_root, '--iters', '2', '--cls-iters', '2', '--work-dir', work],
                   shapes_root, timeout=900)
    assert '1/3 pre-training CachedPyramidVisionTransformer' in out
    summary = json.load(open(osp.join(work, 'summary.json')))
    assert summary['iterations'] == 2 and summary['classifier']['iterations'] == 2
    assert 0 <= summary['classifier']['top1'] <= 100
    hand = summary['handoff']
    assert hand['equal'] == hand['backbone_tensors'] == hand['in_checkpoint'] > 0
    assert hand['caches'] == hand['caches_written'] == 4  # the classifier wrote them
    assert {'untrained', 'trained', 'boxes', 'seconds'} <= set(summary)
    assert summary['boxes']['objects'] > 0
    assert osp.getsize(osp.join(work, 'predictions.png')) > 5000
    # independently of the job's own check: the fine-tuned backbone is the
    # classifier's moved by two small steps (a fresh init would differ by ~0.02)
    cls = torch.load(osp.join(work, 'pretrain', 'iter_2.pth'), weights_only=True)['state_dict']
    det = torch.load(osp.join(work, 'iter_2.pth'), weights_only=True)['state_dict']
    keys = [k for k in cls if k.startswith('backbone.')]
    assert keys and set(keys) <= set(det)
    for k in keys:
        if cls[k].is_floating_point() and not k.endswith('.cache'):
            assert torch.allclose(det[k], cls[k], atol=5e-3), k  # 2 AdamW steps of <= 1e-3

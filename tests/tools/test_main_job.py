"""tools/main_job.py: its arguments are checked, and the whole chain
(pre-train -> hand-off -> detect) runs on a tiny setting, with the hand-off
checked tensor by tensor, on a data root with fewer validation images than
the PNG shows."""
import json
import os.path as osp

import pytest
import torch

from tests.helpers import ROOT, SMALL_CONFIG, load_tool, run_tool


@pytest.mark.parametrize('flag', ['--iters', '--cls-iters'])
@pytest.mark.parametrize('value', ['0', '-3', 'x'])
def test_iterations_must_be_positive(flag, value, tmp_path):
    with pytest.raises(AssertionError, match=f'argument {flag}'):
        run_tool(['tools/main_job.py', flag, value, '--work-dir', str(tmp_path)], '')


def test_set_iters_stretches_a_schedule_that_ends_with_training():
    """--cls-iters 600: the classifier's cosine ends at 600, not where the
    recipe ended (which would leave the rest at its floor); a longer schedule
    stopped early (1500 stopped at 1000) is cut, never stretched."""
    from mmengine.config import Config

    from grc_mmdet.utils.pretrain import CLS_CONFIGS, set_iters
    cls = Config.fromfile(osp.join(ROOT, CLS_CONFIGS[True]))
    set_iters(cls, 600)
    assert [s.end for s in cls.param_scheduler] == [30, 600]
    set_iters(cls, 300)
    assert [s.end for s in cls.param_scheduler] == [30, 300]
    det = Config.fromfile(SMALL_CONFIG)
    det.param_scheduler[-1].end = 1500  # a 1500-iteration schedule ...
    det.train_cfg.max_iters = 1000  # ... stopped at 1000
    set_iters(det, 2000)
    assert det.train_cfg.max_iters == 2000 and det.param_scheduler[-1].end == 1500
    set_iters(det, 400)
    assert det.train_cfg.max_iters == 400 and det.param_scheduler[-1].end == 400
    assert det.param_scheduler[0].end == 100


def test_boxes_are_split_into_right_wrong_class_and_loose(tmp_path):
    main_job = load_tool('main_job', folder='tools')
    anns = [dict(image_id=1, category_id=1, bbox=[0, 0, 10, 10]),
            dict(image_id=1, category_id=2, bbox=[20, 20, 10, 10]),
            dict(image_id=2, category_id=1, bbox=[0, 0, 10, 10])]
    dets = [dict(image_id=1, category_id=1, bbox=[0, 0, 10, 9], score=0.9),   # right
            dict(image_id=1, category_id=3, bbox=[1, 0, 10, 10], score=0.5),  # wrong class
            dict(image_id=1, category_id=2, bbox=[20, 20, 3, 3], score=0.8),  # loose (IoU .09)
            dict(image_id=2, category_id=1, bbox=[0, 0, 10, 10], score=0.2),  # under 0.3
            dict(image_id=3, category_id=1, bbox=[0, 0, 10, 10], score=0.7)]  # no object
    json.dump(dets, open(tmp_path / 'p.bbox.json', 'w'))
    json.dump(dict(annotations=anns), open(tmp_path / 'val.json', 'w'))
    out = main_job.boxes_per_object(str(tmp_path / 'p'), str(tmp_path / 'val.json'))
    assert (out['boxes'], out['objects'], out['right'], out['wrong_class'], out['loose']) == \
        (4, 3, 1, 1, 2)
    assert out['boxes_per_object'] == round(4 / 3, 3)


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
    boxes = summary['boxes']
    assert boxes['objects'] > 0
    assert boxes['right'] + boxes['wrong_class'] + boxes['loose'] == boxes['boxes']
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

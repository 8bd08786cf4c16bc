"""tools/analysis_tools/cached_vs_plain.py at a tiny size: both arms train from
the same initial weights, the JSON/Markdown/PNG are written, and a second
call with more seeds skips the runs already done; box-only metrics,
duplicate seeds and a changed recipe."""
import json
import os
import os.path as osp
import types

import pytest

from tests.helpers import FAST, ROOT, SMALL_CONFIG, load_tool, run_tool

TOOL = 'tools/analysis_tools/cached_vs_plain.py'


def test_ab_comparison_and_resume(shapes_root, tmp_path):
    work = str(tmp_path / 'ab')
    args = [TOOL, SMALL_CONFIG, '--work-dir', work, '--val-interval', '2', '--cfg-options'] + FAST
    out = run_tool(args[:4] + ['--seeds', '0'] + args[4:], shapes_root, timeout=900)
    assert 'skipped' not in out
    for arm in ('plain', 'cached'):
        log = open(osp.join(work, 'seed0', arm, 'train_stdout.log')).read()
        assert f'Load checkpoint from {osp.join(work, "seed0", "init.pth")}' in log
    out = run_tool(args[:4] + ['--seeds', '0', '1'] + args[4:], shapes_root, timeout=900)
    assert out.count('finished before, skipped') == 2  # seed 0, both arms
    res = json.load(open(osp.join(work, 'ab_results.json')))
    assert sorted((r['arm'], r['seed']) for r in res['runs']) == \
        [('cached', 0), ('cached', 1), ('plain', 0), ('plain', 1)]
    for r in res['runs']:
        assert [v['iter'] for v in r['val']] == [2, 4]
        assert r['s_per_iter'] > 0 and set(r['final']) == {'coco/bbox_mAP', 'coco/segm_mAP'}
    ci = res['summary']['coco/bbox_mAP']['cached']['diff_ci95']
    assert ci[0] <= res['summary']['coco/bbox_mAP']['cached']['diff_mean'] <= ci[1]
    md = open(osp.join(work, 'ab_results.md')).read()
    assert '95% CI of the paired diff' in md and "Student's t" in md
    assert osp.getsize(osp.join(work, 'ab_curves.png')) > 10000


def _result(arm, seed, bbox, segm=None):
    return dict(arm=arm, seed=seed, val=[dict(iter=2, **{'coco/bbox_mAP': bbox,
                                                         'coco/segm_mAP': segm})],
                final={'coco/bbox_mAP': bbox, 'coco/segm_mAP': segm})


def test_box_only_metrics_are_summarized_and_plotted(tmp_path):
    """RetinaNet/ATSS twins report no segm mAP."""
    tool = load_tool('cached_vs_plain')
    results = [_result('plain', 0, 0.30), _result('cached', 0, 0.35),
               _result('plain', 1, 0.20), _result('cached', 1, 0.22)]
    table, stats = tool.summarize(results, [0, 1])
    assert set(stats) == {'coco/bbox_mAP'} and 'segm' not in table
    assert abs(stats['coco/bbox_mAP']['cached']['diff_mean'] - 0.035) < 1e-9
    tool.plot(results, str(tmp_path / 'curves.png'))
    assert osp.getsize(tmp_path / 'curves.png') > 5000


def test_duplicate_seeds_are_refused(tmp_path):
    with pytest.raises(AssertionError, match='--seeds must be distinct'):
        run_tool([TOOL, SMALL_CONFIG, '--work-dir', str(tmp_path), '--seeds', '0', '0'], '')
    assert not os.listdir(tmp_path)


def test_resume_with_another_recipe_is_refused(tmp_path):
    tool = load_tool('cached_vs_plain')
    args = types.SimpleNamespace(cfg_options={'optim_wrapper.optimizer.lr': 0.01}, amp=False,
                                 val_interval=None)
    plain = tool.osp.join(ROOT, 'configs/synthetic/mask-rcnn_pvt-nano_fpn_shapes.py')
    tool.check_recipe(str(tmp_path), tool.recipe(args, SMALL_CONFIG, plain))
    tool.check_recipe(str(tmp_path), tool.recipe(args, SMALL_CONFIG, plain))  # same: fine
    # config paths inside the repository are kept relative: the work dir holds in
    # another checkout (a copy of the repository elsewhere gives the same recipe)
    with open(tmp_path / 'recipe.json') as f:
        saved = json.load(f)
    assert saved['plain_config'] == 'configs/synthetic/mask-rcnn_pvt-nano_fpn_shapes.py'
    elsewhere = str(tmp_path / 'configs' / 'outside.py')
    assert tool.in_repo(elsewhere) == elsewhere
    for change in (dict(amp=True), dict(cfg_options={'optim_wrapper.optimizer.lr': 0.02}),
                   dict(val_interval=5)):
        other = types.SimpleNamespace(**dict(vars(args), **change))
        with pytest.raises(SystemExit, match='another recipe'):
            tool.check_recipe(str(tmp_path), tool.recipe(other, SMALL_CONFIG, plain))
    # and through the command line, before anything trains
    with pytest.raises(AssertionError, match='another recipe'):
        run_tool([TOOL, SMALL_CONFIG, '--work-dir', str(tmp_path), '--seeds', '0', '--amp',
                  '--cfg-options', 'optim_wrapper.optimizer.lr=0.01'], '')
    assert sorted(os.listdir(tmp_path)) == ['recipe.json']


CLS_FAST = ['train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False', 'default_hooks.logger.interval=1']


def test_two_stage_protocol_with_a_lambda_arm(shapes_root, crops_root, tmp_path):
    """--pretrain: every arm's classifier starts from the seed's shared weights,
    its detector from the shared detector weights with the backbone replaced
    by that arm's classifier (tensor by tensor); the lambda arm's gates start
    at -4 in both stages; top-1 joins the summary; a second call resumes."""
    import torch
    work = str(tmp_path / 'ab2')
    args = [TOOL, SMALL_CONFIG, '--work-dir', work, '--seeds', '0', '--pretrain',
            '--lambda-init-arm', '-4', '--cls-data-root', crops_root, '--cls-iters', '2',
            '--cls-val-interval', '1', '--cls-cfg-options'] + CLS_FAST + \
        ['--val-interval', '2', '--cfg-options'] + FAST
    run_tool(args, shapes_root, timeout=1200)
    seed = osp.join(work, 'seed0')
    load = torch.load
    init = load(osp.join(seed, 'init.pth'), weights_only=True)['state_dict']
    for arm in ('plain', 'cached', 'cached_lambda-4'):
        cls_log = open(osp.join(seed, f'pretrain_{arm}', 'train_stdout.log')).read()
        assert f'Load checkpoint from {osp.join(seed, "init_classifier.pth")}' in cls_log
        det_log = open(osp.join(seed, arm, 'train_stdout.log')).read()
        assert f'Load checkpoint from {osp.join(seed, f"init_{arm}.pth")}' in det_log
        cls = load(osp.join(seed, f'pretrain_{arm}', 'iter_2.pth'),
                   weights_only=True)['state_dict']
        composed = load(osp.join(seed, f'init_{arm}.pth'), weights_only=True)['state_dict']
        backbone = [k for k in cls if k.startswith('backbone.')]
        assert backbone and all(torch.equal(composed[k], cls[k]) for k in backbone)
        rest = [k for k in init if not k.startswith('backbone.')]
        assert rest and all(torch.equal(composed[k], init[k]) for k in rest)
        assert set(composed) == set(backbone) | set(rest)
        lam = [v for k, v in cls.items() if k.endswith('cache_lambda')]
        assert (not lam) == (arm == 'plain')
        if arm == 'cached_lambda-4':  # two warm-up steps move it by far less than 0.05
            assert all(torch.allclose(v, torch.full_like(v, -4.0), atol=0.05) for v in lam)
        elif lam:
            assert all(v.abs().max() < 0.05 for v in lam)
    res = json.load(open(osp.join(work, 'ab_results.json')))
    assert res['arms'] == ['plain', 'cached', 'cached_lambda-4'] and res['pretrain']
    for r in res['runs']:
        assert [v['iter'] for v in r['pretrain']['val']] == [1, 2]
        assert 0 <= r['final']['accuracy/top1'] <= 100
        assert r['device'] == r['pretrain']['device'] == 'cpu'
    assert res['devices'] == ['cpu']
    top1 = res['summary']['accuracy/top1']
    for arm in ('cached', 'cached_lambda-4'):
        plain = res['runs'][0]['final']['accuracy/top1']
        own = next(r for r in res['runs'] if r['arm'] == arm)['final']['accuracy/top1']
        assert top1[arm]['diff_mean'] == pytest.approx(own - plain)
    md = open(osp.join(work, 'ab_results.md')).read()
    assert 'cached_lambda-4 - plain' in md and 'accuracy/top1' in md and 'two stages' in md
    assert osp.getsize(osp.join(work, 'ab_curves.png')) > 10000
    out = run_tool(args, shapes_root, timeout=600)
    assert out.count('finished before, skipped') == 3

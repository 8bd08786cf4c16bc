"""tools/analysis_tools/cached_vs_plain.py at a tiny size: both arms train from
the same initial weights, the JSON/Markdown/PNG are written, and a second
call with more seeds skips the runs already done."""
import json
import os.path as osp

from tests.helpers import FAST, SMALL_CONFIG, run_tool

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
    ci = res['summary']['coco/bbox_mAP']['diff_ci95']
    assert ci[0] <= res['summary']['coco/bbox_mAP']['diff_mean'] <= ci[1]
    md = open(osp.join(work, 'ab_results.md')).read()
    assert '95% CI of the paired diff' in md and "Student's t" in md
    assert osp.getsize(osp.join(work, 'ab_curves.png')) > 10000

"""tools/train.py, tools/test.py, MMDet's stock tools, resume and checkpoint loading."""
import glob
import json
import os
import os.path as osp
import re

import mmdet
import pytest
import torch

from tests.helpers import FAST, ROOT, SMALL_CONFIG, TEST_FAST, run_tool

STOCK_TOOLS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools')


def losses(log_text):
    """{iter: loss} from MMEngine log lines 'Iter(train) [ i/N] ... loss: x'."""
    out = {}
    for m in re.finditer(r'Iter\(train\) \[\s*(\d+)/\d+\].*? loss: ([0-9.]+)', log_text):
        out[int(m.group(1))] = float(m.group(2))
    return out


def test_train_resume_and_test(shapes_root, tmp_path):
    work = str(tmp_path / 'run')
    out = run_tool(['tools/train.py', SMALL_CONFIG, '--work-dir', work, '--cfg-options'] + FAST,
                   shapes_root)
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out
    assert osp.isfile(osp.join(work, 'iter_4.pth'))
    # our checkpoints load under torch's safe (weights_only) unpickler
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), map_location='cpu', weights_only=True)
    assert any(k.endswith('.cache') for k in ckpt['state_dict'])
    assert 'message_hub' in ckpt and 'optimizer' in ckpt

    # resume from iter 2 into a new work dir: it continues at iteration 3
    work2 = str(tmp_path / 'resumed')
    out2 = run_tool(['tools/train.py', SMALL_CONFIG, '--work-dir', work2, '--resume',
                     osp.join(work, 'iter_2.pth'), '--cfg-options'] + FAST, shapes_root)
    assert 'resumed epoch: 0, iter: 2' in out2.replace('Epoch', 'epoch').lower() or \
        'resumed' in out2.lower()
    l1, l2 = losses(out), losses(out2)
    assert sorted(l2) == [3, 4], l2
    for it in (3, 4):  # deterministic CPU run: same losses as uninterrupted
        assert abs(l1[it] - l2[it]) < 1e-3, (it, l1[it], l2[it])
    a = torch.load(osp.join(work, 'iter_4.pth'), weights_only=True)['state_dict']
    b = torch.load(osp.join(work2, 'iter_4.pth'), weights_only=True)['state_dict']
    for k in a:
        if k.endswith('.cache'):
            assert torch.allclose(a[k], b[k], atol=1e-5), k

    out3 = run_tool(['tools/test.py', SMALL_CONFIG, osp.join(work2, 'iter_4.pth'),
                     '--work-dir', str(tmp_path / 'test'), '--out', str(tmp_path / 'r.pkl'),
                     '--cfg-options'] + TEST_FAST, shapes_root)
    assert 'coco/segm_mAP' in out3 and osp.isfile(tmp_path / 'r.pkl')


def test_load_from_checkpoint(shapes_root, tmp_path):
    work = str(tmp_path / 'a')
    run_tool(['tools/train.py', SMALL_CONFIG, '--work-dir', work, '--cfg-options'] + FAST,
             shapes_root)
    out = run_tool(['tools/train.py', SMALL_CONFIG, '--work-dir', str(tmp_path / 'b'),
                    '--cfg-options', f'load_from={work}/iter_4.pth'] + FAST, shapes_root)
    assert 'Load checkpoint from' in out


def test_stock_mmdet_tools_train_and_test(shapes_root, tmp_path):
    """MMDetection's own tools run our config (custom_imports brings grc_mmdet)."""
    work = str(tmp_path / 'stock')
    run_tool([osp.join(STOCK_TOOLS, 'train.py'), SMALL_CONFIG, '--work-dir', work,
              '--cfg-options'] + FAST, shapes_root)
    ckpts = sorted(glob.glob(osp.join(work, 'iter_*.pth')))
    assert ckpts
    out = run_tool([osp.join(STOCK_TOOLS, 'test.py'), SMALL_CONFIG, osp.join(work, 'iter_4.pth'),
                    '--work-dir', str(tmp_path / 'stock_test'), '--cfg-options'] + TEST_FAST,
                   shapes_root)
    assert 'coco/bbox_mAP' in out
    # analyze_logs.py (seaborn): the GRC ratios are in every record, the first included
    (log,) = glob.glob(osp.join(work, '*', 'vis_data', '2*.json'))
    first = json.loads(open(log).readline())
    assert first['iter'] == 1 and 'grc_ratio_s0' in first and 'loss' in first
    png = str(tmp_path / 'ratio.png')
    run_tool([osp.join(STOCK_TOOLS, 'analysis_tools', 'analyze_logs.py'), 'plot_curve', log,
              '--keys', 'grc_ratio_s0', 'loss', '--out', png], shapes_root,
             env_extra=dict(MPLBACKEND='Agg'))
    assert osp.getsize(png) > 5000
    # benchmark.py (psutil), its dataset task (the inference task needs CUDA)
    out = run_tool([osp.join(STOCK_TOOLS, 'analysis_tools', 'benchmark.py'), SMALL_CONFIG,
                    '--task', 'dataset', '--max-iter', '3', '--num-warmup', '1',
                    '--log-interval', '1', '--work-dir', str(tmp_path / 'bench')], shapes_root)
    assert 'Done img [3' in out and 'img/s' in out
    # publish_model.py with grc_mmdet imported (the stock one cannot open our checkpoints)
    out = run_tool(['tools/model_converters/publish_model.py', osp.join(work, 'iter_4.pth'),
                    str(tmp_path / 'published.pth')], shapes_root)
    (published,) = glob.glob(str(tmp_path / 'published-*.pth'))
    assert re.fullmatch(r'published-[0-9a-f]{8}\.pth', osp.basename(published))
    pub = torch.load(published, weights_only=True)
    assert set(pub) == {'meta', 'state_dict'}
    assert any(k.endswith('.cache') for k in pub['state_dict'])


def test_tta_refuses_a_mask_model_with_a_message(shapes_root, tmp_path):
    import subprocess
    import sys
    ckpt = tmp_path / 'dummy.pth'
    torch.save({'state_dict': {}}, ckpt)
    proc = subprocess.run([sys.executable, 'tools/test.py', SMALL_CONFIG, str(ckpt), '--tta',
                           '--work-dir', str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, GRC_SHAPES_ROOT=shapes_root))
    assert proc.returncode != 0
    assert 'predicts masks' in proc.stderr and 'tta_model' in proc.stderr


def test_default_tta_for_a_box_model():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from grc_mmdet.utils import apply_default_tta
    register_all_modules()
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/cached_pvt/retinanet_cached-pvt-t_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg = None
    with pytest.warns(UserWarning, match='tta_model'):
        apply_default_tta(cfg)
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'RetinaNet'
    tta = cfg.test_dataloader.dataset.pipeline[-1]
    assert tta.type == 'TestTimeAug' and 'flip' in tta.transforms[1][0].meta_keys
    assert type(MODELS.build(cfg.model).module.backbone).__name__ == \
        'CachedPyramidVisionTransformer'

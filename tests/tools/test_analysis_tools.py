"""Analysis tools: each runs on the small config and a checkpoint the test writes."""
import json
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

from grc_mmdet.analysis import build_detector, count_complexity
from tests.helpers import SMALL_CONFIG, run_tool


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, shapes_root):
    """A cached nano detector with written caches and moved lambdas."""
    model = build_detector(SMALL_CONFIG)
    model.backbone.train()
    with torch.no_grad():
        model.backbone(torch.randn(2, 3, 96, 128))
        for i, p in enumerate(p for n, p in model.named_parameters() if n.endswith('cache_lambda')):
            p.fill_(0.3 * i - 1)
    path = tmp_path_factory.mktemp('ckpt') / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


def test_sdpa_flops_are_counted():
    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 5)
    # q k^T: 2*3*10*7*8 multiply-adds, weights @ v: 2*3*10*7*5
    assert count_complexity(Attn(), (q, k, v))['flops'] == 2 * 3 * 10 * 7 * (8 + 5)


def test_attention_ratio(checkpoint, shapes_root, tmp_path):
    out = run_tool(['tools/analysis_tools/attention_ratio.py', SMALL_CONFIG, '--checkpoint',
                    checkpoint, '--out-dir', str(tmp_path)], shapes_root)
    data = json.load(open(tmp_path / 'attention_ratio.json'))
    assert len(data) == 4  # one cached layer per stage in the nano PVT
    assert abs(data[0]['ratios'][0] - torch.sigmoid(torch.tensor(-1.0)).item()) < 1e-6
    assert osp.getsize(tmp_path / 'attention_ratio.png') > 1000
    assert 'Attention ratio per cached layer' in out


def test_feature_maps(checkpoint, shapes_root, tmp_path):
    run_tool(['tools/analysis_tools/feature_maps.py', SMALL_CONFIG, '--checkpoint', checkpoint,
              '--img', osp.join(shapes_root, 'val'), '--out-dir', str(tmp_path)], shapes_root)
    data = json.load(open(tmp_path / 'feature_maps.json'))
    assert [tuple(s['hw']) for s in data['layers']] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert osp.getsize(tmp_path / 'feature_maps.png') > 1000


def test_cache_inspect(checkpoint, shapes_root, tmp_path):
    run_tool(['tools/analysis_tools/cache_inspect.py', SMALL_CONFIG, '--checkpoint', checkpoint,
              '--img', osp.join(shapes_root, 'val'), '--steps', '3', '--out-dir', str(tmp_path)],
             shapes_root)
    data = json.load(open(tmp_path / 'cache_inspect.json'))
    assert len(data) == 4 and all(len(d['write_deltas']) == 3 for d in data)
    assert all(d['norm'] > 0 for d in data)  # the checkpoint's caches were written
    assert osp.getsize(tmp_path / 'cache_inspect.png') > 1000


def test_get_flops(shapes_root, tmp_path):
    out = run_tool(['tools/analysis_tools/get_flops.py', SMALL_CONFIG, '--shape', '96', '128',
                    '--out-dir', str(tmp_path)], shapes_root)
    res = json.load(open(tmp_path / 'complexity.json'))
    c, p = res['cached']['backbone'], res['plain']['backbone']
    assert c['params'] > p['params'] and c['flops'] > p['flops']
    # (detector FLOPs depend on how many proposals survive NMS, so on the
    # random weights: no ordering is asserted for them)
    assert res['cached']['detector']['flops'] > 0 and res['plain']['detector']['flops'] > 0
    # the detector adds exactly the backbone's extra parameters
    assert res['cached']['detector']['params'] - res['plain']['detector']['params'] == \
        res['cached']['backbone']['params'] - res['plain']['backbone']['params']
    assert 'Complexity at 96x128' in out


def test_benchmark(shapes_root, tmp_path):
    out = run_tool(['tools/analysis_tools/benchmark.py', SMALL_CONFIG, '--device', 'cpu',
                    '--shape', '96', '128', '--batch', '1', '--warmup', '1', '--reps', '2',
                    '--out-dir', str(tmp_path)], shapes_root)
    res = json.load(open(tmp_path / 'benchmark.json'))
    assert set(res['parts']) == {'backbone', 'backbone-train', 'detector-infer', 'detector-train'}
    for part in res['parts'].values():
        assert part['plain']['median_ms'] > 0 and part['cached']['median_ms'] > 0
        assert part['time_ratio'] > 0
    assert 'ratio' in out


def test_benchmark_under_one_rank_ddp(shapes_root, tmp_path):
    """--ddp: the training parts run through DistributedDataParallel (gloo on
    the CPU), the path dist_train.sh takes."""
    out = run_tool(['tools/analysis_tools/benchmark.py', SMALL_CONFIG, '--device', 'cpu',
                    '--shape', '96', '128', '--batch', '1', '--warmup', '1', '--reps', '1',
                    '--parts', 'backbone-train', 'detector-train', '--ddp',
                    '--out-dir', str(tmp_path)], shapes_root)
    res = json.load(open(tmp_path / 'benchmark.json'))
    assert res['ddp'] is True and set(res['parts']) == {'backbone-train', 'detector-train'}
    assert all(p['cached']['median_ms'] > 0 for p in res['parts'].values())
    assert '(DDP, one rank)' in out


def test_mmengine_default_counter_counts_sdpa_once_grc_mmdet_is_imported():
    """What MMDetection's stock get_flops.py calls gives our count."""
    from mmengine.analysis import get_model_complexity_info
    model = build_detector(SMALL_CONFIG).eval()
    x = torch.randn(1, 3, 96, 128)
    stock = get_model_complexity_info(model.backbone, inputs=(x, ), show_table=False,
                                      show_arch=False)
    ours = count_complexity(model.backbone, x)
    assert stock['flops'] == ours['flops'] and stock['params'] == ours['params']


def test_stock_get_flops_counts_the_cache(shapes_root):
    """MMDetection's own get_flops.py on the cached nano config (grc_mmdet
    comes in through custom_imports): SDPA is no longer an unsupported
    operator (it was, and the cache's attention went uncounted)."""
    import mmdet
    tool = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'analysis_tools',
                    'get_flops.py')
    out = run_tool([tool, SMALL_CONFIG, '--num-images', '1', '--cfg-options',
                    'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False'],
                   shapes_root)
    assert 'Flops:' in out
    assert 'Unsupported operator aten::scaled_dot_product_attention' not in out


def test_get_flops_of_a_cached_config_without_a_twin_file(shapes_root, tmp_path):
    """A user's own cached config: the plain baseline is the parent type."""
    from grc_mmdet.analysis.twins import load_twin_configs
    mine = tmp_path / 'my_detector.py'
    mine.write_text(f"_base_ = '{SMALL_CONFIG}'\n"
                    "model = dict(backbone=dict(cache_ratio=0.25, cache_lambda_init=-2.0))\n")
    cached, plain = load_twin_configs(str(mine))
    assert cached.model.backbone.type == 'CachedPyramidVisionTransformer'
    assert plain.model.backbone.type == 'PyramidVisionTransformer'
    assert not any(k.startswith('cache_') for k in plain.model.backbone)
    run_tool(['tools/analysis_tools/get_flops.py', str(mine), '--shape', '96', '128',
              '--backbone-only', '--out-dir', str(tmp_path)], shapes_root)
    res = json.load(open(tmp_path / 'complexity.json'))
    assert res['cached']['backbone']['params'] > res['plain']['backbone']['params']
    plain_mine = tmp_path / 'my_plain_detector.py'
    plain_mine.write_text(f"_base_ = '{SMALL_CONFIG.replace('cached-', '')}'\n")
    with pytest.raises(ValueError, match='not a cached backbone'):
        load_twin_configs(str(plain_mine))

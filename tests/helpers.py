"""Helpers shared by the tests (imported as ``tests.helpers``)."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SMALL_CONFIG = osp.join(ROOT, 'configs/synthetic/mask-rcnn_cached-pvt-nano_fpn_shapes.py')

# Tiny plain backbones (type names of MMDet); cached_cfg() turns one into its cached twin.
SMALL_BACKBONES = {
    'PVT': dict(type='PyramidVisionTransformer', embed_dims=8, num_heads=[1, 2, 2, 4],
                num_layers=[1, 1, 2, 1], mlp_ratios=[2, 2, 2, 2]),
    'PVTv2': dict(type='PyramidVisionTransformerV2', embed_dims=8, num_heads=[1, 2, 2, 4],
                  num_layers=[1, 1, 2, 1], mlp_ratios=[2, 2, 2, 2]),
    'Swin': dict(type='SwinTransformer', embed_dims=12, depths=[2, 2, 2, 2],
                 num_heads=[1, 2, 2, 4], window_size=7),
}
CHANNELS = {'PVT': [8, 16, 16, 32], 'PVTv2': [8, 16, 16, 32], 'Swin': [12, 24, 48, 96]}


def cached_cfg(name: str, **kwargs) -> dict:
    """The cached twin of ``SMALL_BACKBONES[name]``, with extra arguments."""
    cfg = dict(SMALL_BACKBONES[name], **kwargs)
    cfg['type'] = 'Cached' + cfg['type']
    return cfg


def load_tool(name: str, folder: str = 'tools/analysis_tools'):
    """A tool script of the repository, imported as a module."""
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, folder, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(args, shapes_root, timeout=600, env_extra=None, cwd=ROOT):
    """Run a Python tool as a subprocess (as a user would); returns stdout+stderr."""
    env = dict(os.environ, GRC_SHAPES_ROOT=shapes_root, PYTHONPATH=ROOT,
               OMP_NUM_THREADS='2')
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f'{args} failed ({proc.returncode}):\n{out[-6000:]}')
    return out


# Short runs of the small configs: few iterations, tiny images, no workers.
# TEST_FAST is what tools/test.py needs; FAST (for tools/train.py) includes it.
TEST_FAST = [
    # keep every detection so that COCO metrics exist after 4 iterations
    'model.test_cfg.rcnn.score_thr=0.0',
    'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
FAST = ['train_cfg.max_iters=4', 'train_cfg.val_interval=4',
        'default_hooks.checkpoint.interval=2', 'default_hooks.checkpoint.max_keep_ckpts=3',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'param_scheduler.0.end=2', 'param_scheduler.1.begin=2', 'param_scheduler.1.end=4'
        ] + TEST_FAST


def count_fused_calls(monkeypatch) -> list:
    """A list that gets one entry per call of the fused GRC token side."""
    from grc_mmdet.models import grc_triton
    calls = []
    fused_fn = grc_triton.cached_attention_mix
    monkeypatch.setattr(grc_triton, 'cached_attention_mix',
                        lambda *a: calls.append(1) or fused_fn(*a))
    return calls

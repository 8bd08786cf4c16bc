"""Test (evaluate) a checkpoint: MMDetection 3.3.0's tools/test.py flags, grc_mmdet imported.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show] [--show-dir DIR] [--wait-time S] [--tta]
                         [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os.path as osp

from mmdet.engine.hooks.utils import trigger_visualization_hook
from mmdet.evaluation import DumpDetResults
from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import grc_mmdet  # noqa: F401
from grc_mmdet.engine import setup_cpu_distributed
from grc_mmdet.utils import add_common_args, apply_default_tta, finish_distributed, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to this .pkl/.pickle file')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save drawn predictions under work_dir/timestamp/DIR')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation (the '
                        'config\'s tta_model/tta_pipeline, else a default flip TTA)')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args)
    setup_cpu_distributed(cfg)  # gloo + CPU DDP when there is no GPU
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)
    if args.tta:
        apply_default_tta(cfg)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out}')
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()

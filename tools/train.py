"""Train a detector: MMDetection 3.3.0's tools/train.py flags, grc_mmdet imported.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                                 [--resume [CKPT]] [--cfg-options k=v ...]
                                 [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import grc_mmdet  # noqa: F401  (registers the cached backbones, checkpoint loading)
from grc_mmdet.engine import setup_cpu_distributed
from grc_mmdet.utils import add_common_args, finish_distributed, load_config


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper, dynamic loss scale)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch size / auto_scale_lr.base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint of the work '
                             'dir when no path is given')
    add_common_args(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    cfg = load_config(args)
    setup_cpu_distributed(cfg)  # gloo + CPU DDP when there is no GPU
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict(enable=..., '
                               'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()

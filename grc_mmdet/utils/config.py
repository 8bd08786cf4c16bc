"""Command-line helpers shared by tools/train.py, tools/test.py and the analysis tools."""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected a positive integer, got {text!r}')
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags every MMDet tool has: --work-dir, --cfg-options, --launcher."""
    parser.add_argument('--work-dir', help='folder for logs, checkpoints and results')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs (e.g. model.backbone.cache_ratio=0.25)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, apply --cfg-options and --launcher, pick the work dir
    (CLI > config > ./work_dirs/<config name>)."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def apply_default_tta(cfg: Config) -> Config:
    """``--tta`` as MMDetection's test.py does it: a default ``tta_model``
    (DetTTAModel, NMS 0.5, 100 per image) and a default flip ``tta_pipeline``
    when the config has none, then the model and test pipeline wrapped.

    MMDetection's DetTTAModel merges boxes only, so a model that predicts
    masks needs the config's own ``tta_model``; without one this is an error
    saying so, not a crash in the middle of testing.
    """
    import copy
    import warnings

    from mmengine.config import ConfigDict
    if 'tta_model' not in cfg:
        roi_head = cfg.model.get('roi_head') or {}
        if roi_head.get('mask_head') is not None or cfg.model.get('mask_head') is not None:
            raise ValueError(
                '--tta: this model predicts masks, and MMDetection\'s default DetTTAModel '
                'merges boxes only. Add your own tta_model (and tta_pipeline) to the config, '
                'or test without --tta.')
        warnings.warn('--tta: no tta_model in the config; using DetTTAModel (nms 0.5, '
                      'max_per_img 100)')
        cfg.tta_model = dict(type='DetTTAModel',
                             tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5),
                                          max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('--tta: no tta_pipeline in the config; using the test pipeline with a '
                      'horizontal flip')
        data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in data_cfg:
            data_cfg = data_cfg['dataset']
        pipeline = copy.deepcopy(data_cfg.pipeline)
        meta_keys = tuple(pipeline[-1].get('meta_keys', (
            'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')))
        pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                        [dict(type='PackDetInputs',
                              meta_keys=meta_keys + ('flip', 'flip_direction'))]])
        cfg.tta_pipeline = pipeline
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    return cfg


def finish_distributed() -> None:
    """End a distributed run in order: wait for every rank, then destroy the
    process group, so no communication thread is alive at interpreter exit
    (a finished run then exits 0 instead of aborting in a C++ destructor)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mim_root() -> str:
    """The folder holding this project's ``configs/`` and ``tools/``: the
    clone's root when grc_mmdet runs from a clone, else the copy shipped in
    the installed package (``grc_mmdet/.mim``)."""
    pkg = osp.dirname(osp.dirname(osp.abspath(__file__)))
    clone = osp.dirname(pkg)
    if osp.isfile(osp.join(clone, 'setup.py')) and osp.isdir(osp.join(clone, 'configs')):
        return clone
    return osp.join(pkg, '.mim')

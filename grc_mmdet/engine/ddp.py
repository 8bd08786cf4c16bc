"""CPU distributed training (gloo), for debugging and tests without GPUs.

MMEngine 0.10.7 always passes ``device_ids=[LOCAL_RANK]`` to DDP and calls
``torch.cuda.set_device`` when it initialises the process group; both fail
on a CPU-only machine. :func:`setup_cpu_distributed` (used by
``tools/train.py`` and ``tools/test.py`` when CUDA is absent) starts the gloo
process group itself and selects this wrapper, which drops ``device_ids``.
"""
import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel for CPU modules (``device_ids`` ignored)."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=module, device_ids=None, **kwargs)


def setup_cpu_distributed(cfg) -> bool:
    """On a machine without CUDA and a non-'none' launcher: init gloo and set
    the CPU wrapper in ``cfg``. Returns True when it did."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']))
    cfg.model_wrapper_cfg = dict(
        type='CPUDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    return True

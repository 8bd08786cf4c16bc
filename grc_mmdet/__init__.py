"""grc-mmdet: Cached Transformers (GRC-Attention) for MMDetection 3.x.

``import grc_mmdet`` (or ``custom_imports = dict(imports=['grc_mmdet'])`` in a
config) registers the cached backbones in ``mmdet.registry.MODELS`` and makes
MMEngine checkpoints loadable under torch >= 2.6 (see ``grc_mmdet.compat``)
and lets mmcv's nms/RoIAlign run under bf16 autocast (``grc_mmdet.amp``).
"""
from . import classification  # noqa: F401
from . import amp, compat
from .engine import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .version import __version__  # noqa: F401

compat.install()
amp.install()

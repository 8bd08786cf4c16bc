"""grc-mmdet: Cached Transformers (GRC-Attention) for MMDetection 3.x.

``import grc_mmdet`` (or ``custom_imports = dict(imports=['grc_mmdet'])`` in a
config) registers the cached backbones in ``mmdet.registry.MODELS`` and makes
MMEngine checkpoints loadable under torch >= 2.6 (see ``grc_mmdet.compat``),
lets mmcv's nms/RoIAlign run under bf16 autocast (``grc_mmdet.amp``), and
makes MMEngine's FLOP counter count scaled_dot_product_attention
(``grc_mmdet.analysis.complexity``).
"""
from . import amp, classification, compat, datasets  # noqa: F401
from .analysis import complexity
from .engine import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .version import __version__  # noqa: F401

compat.install()
amp.install()
complexity.install()

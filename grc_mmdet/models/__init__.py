from .backbones import *  # noqa: F401,F403
from .grc import GatedRecurrentCache, grc_layers, set_recording  # noqa: F401

"""Find a cached config's plain twin (``configs/cached_pvt/x_cached-pvt-t_...`` ->
``configs/pvt/x_pvt-t_...``) and load both."""
import copy
import os.path as osp
from typing import Optional, Tuple

from mmengine.config import Config


def twin_config_path(path: str) -> str:
    """The plain twin of a cached config (same folder for configs/synthetic)."""
    folder, name = osp.split(path)
    parent, sub = osp.split(folder)
    twin = osp.join(parent, sub.replace('cached_', '', 1), name.replace('cached-', '', 1))
    if twin == path:
        raise ValueError(f'{path} is not a cached config (no "cached-" in its name)')
    if not osp.isfile(twin):
        raise FileNotFoundError(f'plain twin of {path} not found at {twin}')
    return twin


def load_twin_configs(cached: str, plain: Optional[str] = None, cfg_options: Optional[dict] = None,
                      plain_sdpa: bool = False) -> Tuple[Config, Config]:
    """(cached cfg, plain cfg) with backbone pretrained weights disabled.

    ``cfg_options`` override settings of the cached config. ``plain_sdpa``:
    the plain side is the cached config with no GRC layer
    (``cache_stages=[]``, overrides included): the same attention kernels
    without the cache, instead of the twin config.
    """
    cfgs = []
    for path in (cached, plain or twin_config_path(cached)):
        cfg = Config.fromfile(path)
        cfg.model.backbone.init_cfg = None
        cfgs.append(cfg)
    cached_cfg, plain_cfg = cfgs
    cached_cfg.merge_from_dict(cfg_options or {})
    if plain_sdpa:
        plain_cfg = copy.deepcopy(cached_cfg)
        plain_cfg.model.backbone.cache_stages = []
    return cached_cfg, plain_cfg

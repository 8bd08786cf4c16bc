"""Find a cached config's plain twin (``configs/cached_pvt/x_cached-pvt-t_...`` ->
``configs/pvt/x_pvt-t_...``) and load both; a cached config without a twin
file gets its plain baseline from itself (the parent backbone type)."""
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


def plain_from_cached(cfg: Config) -> Config:
    """The same config with the cached backbone replaced by its MMDet parent
    (``CachedX`` -> ``X``, the cache arguments removed)."""
    from ..models.backbones.cached_base import CACHE_ARGS
    backbone = cfg.model.backbone
    if not str(backbone.get('type', '')).startswith('Cached'):
        raise ValueError(f'the backbone of this config is {backbone.get("type")!r}, not a '
                         f'cached backbone: give a cached config (and --plain for its twin)')
    plain = copy.deepcopy(cfg)
    plain.model.backbone.type = backbone.type[len('Cached'):]
    for key in CACHE_ARGS:
        plain.model.backbone.pop(key, None)
    return plain


def load_twin_configs(cached: str, plain: Optional[str] = None, cfg_options: Optional[dict] = None,
                      plain_sdpa: bool = False) -> Tuple[Config, Config]:
    """(cached cfg, plain cfg) with backbone pretrained weights disabled.

    The plain side is ``plain`` if given, else the twin file found by name,
    else (no such file: a user's own cached config) :func:`plain_from_cached`
    of the cached config. ``cfg_options`` override settings of the cached
    config (and of a plain side derived from it). ``plain_sdpa``: the plain
    side is the cached config with no GRC layer (``cache_stages=[]``,
    overrides included): the same attention kernels without the cache.
    """
    cached_cfg = Config.fromfile(cached)
    cached_cfg.model.backbone.init_cfg = None
    cached_cfg.merge_from_dict(cfg_options or {})
    if plain_sdpa:
        plain_cfg = copy.deepcopy(cached_cfg)
        plain_cfg.model.backbone.cache_stages = []
        return cached_cfg, plain_cfg
    if plain is None:
        try:
            plain = twin_config_path(cached)
        except (ValueError, FileNotFoundError):
            return cached_cfg, plain_from_cached(cached_cfg)
    plain_cfg = Config.fromfile(plain)
    plain_cfg.model.backbone.init_cfg = None
    return cached_cfg, plain_cfg

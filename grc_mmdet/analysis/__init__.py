from .complexity import count_complexity, sdpa_flop_jit  # noqa: F401
from .model_io import build_detector, find_images, load_images  # noqa: F401
from .twins import load_twin_configs, twin_config_path  # noqa: F401

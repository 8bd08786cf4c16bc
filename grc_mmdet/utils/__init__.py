from .config import add_common_args, load_config  # noqa: F401

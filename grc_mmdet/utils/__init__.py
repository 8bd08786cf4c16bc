from .config import (add_common_args, apply_default_tta, finish_distributed,  # noqa: F401,E501
                     load_config, mim_root, positive_int)

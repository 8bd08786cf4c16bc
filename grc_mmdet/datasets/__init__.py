from .synthetic import CLASSES as SYNTHETIC_CLASSES  # noqa: F401
from .synthetic import GRCShapesDataset  # noqa: F401
from .synthetic import dataset_ready, make_synthetic_coco  # noqa: F401

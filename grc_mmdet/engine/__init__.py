from .ddp import CPUDistributedDataParallel, setup_cpu_distributed  # noqa: F401
from .hooks import GRCMonitorHook, ResumeRNGHook  # noqa: F401

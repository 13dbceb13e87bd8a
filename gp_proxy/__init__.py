"""Generic genetic-programming engine over named statistic tensors (knows nothing of ViTs)."""
from gp_proxy.errors import AutoproxError

__version__ = "0.1.0"
__all__ = ["AutoproxError", "__version__"]

"""robustseg: robustness benchmarking for semantic segmentation (SegFormer, Xie et al. 2021)."""

__version__ = "0.1.0"

from robustbench_seg.errors import RobustSegError  # noqa: E402

__all__ = ["RobustSegError", "__version__"]

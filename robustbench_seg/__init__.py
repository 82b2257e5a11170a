"""robustseg: robustness benchmarking for semantic segmentation (SegFormer, Xie et al. 2021)."""

__version__ = "0.1.0"

import os as _os

# OpenCV's own log lines (e.g. "PNG input buffer is incomplete") would add a second line to the
# one-line errors: decoding failures are reported by our code, naming the file.
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from robustbench_seg.errors import RobustSegError  # noqa: E402

__all__ = [
    "LoadedModel",
    "Preprocessing",
    "RobustSegError",
    "__version__",
    "compare",
    "create_model",
    "evaluate",
    "list_models",
    "load_model",
]


def __getattr__(name: str):
    # Lazy: `import robustbench_seg` stays light (no torch) until these are used.
    if name == "compare":
        from robustbench_seg.compare import compare

        return compare
    if name == "evaluate":
        from robustbench_seg.engine.evaluate import evaluate

        return evaluate
    if name == "Preprocessing":
        from robustbench_seg.models.registry import Preprocessing

        return Preprocessing
    if name in ("create_model", "list_models", "LoadedModel"):
        from robustbench_seg import models

        return getattr(models, name)
    if name == "load_model":
        from robustbench_seg.models import load

        return load
    raise AttributeError(f"module 'robustbench_seg' has no attribute {name!r}")

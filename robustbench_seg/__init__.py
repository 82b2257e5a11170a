"""robustseg: robustness benchmarking for semantic segmentation (SegFormer, Xie et al. 2021)."""

__version__ = "0.1.0"

from robustbench_seg.errors import RobustSegError  # noqa: E402

__all__ = [
    "LoadedModel",
    "Preprocessing",
    "RobustSegError",
    "__version__",
    "create_model",
    "evaluate",
    "list_models",
    "load_model",
]


def __getattr__(name: str):
    # Lazy: `import robustbench_seg` stays light (no torch) until these are used.
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

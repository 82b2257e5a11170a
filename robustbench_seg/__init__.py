"""robustseg: robustness benchmarking for semantic segmentation (SegFormer, Xie et al. 2021)."""

__version__ = "0.1.0"

from robustbench_seg.errors import RobustSegError  # noqa: E402

__all__ = ["RobustSegError", "__version__", "create_model", "evaluate", "list_models"]


def __getattr__(name: str):
    # Lazy: `import robustbench_seg` stays light (no torch) until these are used.
    if name == "evaluate":
        from robustbench_seg.engine.evaluate import evaluate

        return evaluate
    if name in ("create_model", "list_models"):
        from robustbench_seg.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'robustbench_seg' has no attribute {name!r}")

"""Model analyses: effective receptive fields (Luo et al. 2016; SegFormer Figure 3)."""

from robustbench_seg.analysis.erf import ErfResult, compute_erf, load_erf, render_erf_grid

__all__ = ["ErfResult", "compute_erf", "load_erf", "render_erf_grid"]

"""Paper-style reports of run directories (SegFormer, Xie et al. 2021, Table 5 / Figure 7)."""

from robustbench_seg.report.build import ReportResult, ReportWarning, build_report

__all__ = ["ReportResult", "ReportWarning", "build_report"]

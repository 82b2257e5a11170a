"""Cost of the per-image statistics of a full study: disk and bootstrap time.

A full Cityscapes-C study is 500 images x 73 cells (clean + 72 variants) x 19 classes. Measured:
  * disk: the 73 cell files (``runs.save_cell``: confusion, per-image TP/FP/FN, calibration sums,
    compressed npz) with per-image counts of Cityscapes' magnitudes (2048x1024 images: class
    areas drawn from the Cityscapes val class frequencies, errors of a ~75 mIoU model); target
    <= 50 MB;
  * bootstrap: every Table 5 figure with its 95% interval (B = 1000), with CD/mCD against a
    baseline run over the same images (paired), on one core; target <= 10 s. The reference in
    the same run: the same figures' point estimates from the confusion matrices alone.

Run: OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_statistics.py
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from corruptions import make_protocol
from robustbench_seg import runs
from robustbench_seg.metrics import Calibration
from robustbench_seg.results.cells import cell_name

N, K = 500, 19
# Cityscapes val pixel shares of the 19 classes (road .. bicycle), rounded
SHARES = np.array([0.33, 0.05, 0.2, 0.006, 0.008, 0.011, 0.002, 0.005, 0.15, 0.01, 0.035,
                   0.011, 0.002, 0.06, 0.003, 0.003, 0.002, 0.001, 0.004])  # fmt: skip


def fake_counts(rng: np.random.Generator) -> np.ndarray:
    """(N, K, 3) TP/FP/FN of one cell at Cityscapes' magnitudes."""
    pixels = 2048 * 1024
    present = rng.random((N, K)) < np.clip(SHARES * 20, 0.1, 1.0)
    area = rng.gamma(2.0, SHARES * pixels / 2.0, (N, K)) * present
    tp = np.floor(area * rng.beta(8, 2, (N, K)))
    fn = area - tp
    fp = np.floor(fn * rng.uniform(0.5, 1.5, (N, K)))
    return np.stack([tp, fp, fn], -1).astype(np.int64)


def main() -> None:
    rng = np.random.default_rng(0)
    cells = ["clean"] + [cell_name(c, s) for c, s in make_protocol().variants()]
    cal = Calibration.empty()
    with tempfile.TemporaryDirectory() as tmp:
        runs_made = []
        for name in ("model", "baseline"):
            run = Path(tmp) / name
            (run / "cells").mkdir(parents=True)
            records = {}
            for cell in cells:
                counts = fake_counts(rng)
                conf = np.zeros((K, K), np.int64)
                np.fill_diagonal(conf, counts[:, :, 0].sum(0))
                runs.save_cell(run, cell, conf, N, "h", per_image=counts, calibration=cal)
                records[cell] = runs.CellRecord(conf, N, counts, cal)
            runs_made.append((run, records))
        disk = sum(p.stat().st_size for p in (runs_made[0][0] / "cells").iterdir())
        raw = N * len(cells) * K * 3 * 8

        ids = [f"img{i}" for i in range(N)]
        t0 = time.perf_counter()
        a = runs.RunStatistics.from_records(runs_made[0][1], ids, "images")
        b = runs.RunStatistics.from_records(runs_made[1][1], ids, "images")
        figures = a.figures(baseline=b)
        b.figures()
        a.cell_intervals()
        t_boot = time.perf_counter() - t0

        t0 = time.perf_counter()
        for stats in (a, b):
            stats_point = runs.RunStatistics(stats.cells, stats.counts.sum(0, keepdims=True),
                                             {}, ids[:1], "images")  # fmt: skip
            stats_point.miou(resamples=1)
        t_point = time.perf_counter() - t0

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"# statistics of a full study: {N} images x {len(cells)} cells x {K} classes; "
          f"{platform.processor() or platform.machine()}, OMP_NUM_THREADS={threads}, "
          f"{datetime.now(timezone.utc):%Y-%m-%d}")  # fmt: skip
    print(
        f"disk, 73 cell files: {disk / 1e6:.1f} MB ({raw / 1e6:.1f} MB of raw int64 counts); target <= 50 MB"
    )
    print(
        f"bootstrap, B=1000, {len(figures)} figures with intervals (CD/mCD paired with a baseline), "
        f"two runs: {t_boot:.2f} s; target <= 10 s"
    )
    print(f"reference, point estimates only: {t_point:.3f} s; ratio {t_boot / t_point:.0f}x")


if __name__ == "__main__":
    main()

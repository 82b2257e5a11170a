"""Image-level bootstrap for the robustness figures (Efron & Tibshirani 1993, percentile
intervals) and paired comparisons of runs with Holm's correction (Holm 1979).

Resampling unit: the image. Each resample draws the dataset's N images with replacement,
i.e. multinomial weights ``w`` (``(B, N)``, each row summing to N); a cell's per-class TP, FP and
FN are then ``w @ counts`` (one matrix product for all resamples and cells, never a Python loop
over resamples), and every figure (a cell's mIoU, a corruption's mean over its severities, mPC,
rPC, CD, mCD) is computed from those sums exactly as the point estimate is from the full sums
(``weights = 1``).

The resamples depend only on the image list (its hash) and a seed: all cells of a run, and all
runs evaluated on the same images, share them, so differences between cells or runs are paired.

Why not ``scipy.stats.bootstrap``: it draws its own resamples on every call, so two runs (or the
cells of one run) could not share them, and paired differences between runs would need every
run's per-image data in one call; its statistic would also be re-evaluated per resample in
Python where a single matrix product serves all cells. The percentile interval is what its
``method="percentile"`` computes.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from robustbench_seg.metrics import miou_from_counts
from robustbench_seg.results.cells import CLEAN, severity_groups

__all__ = [
    "DEFAULT_RESAMPLES",
    "LEVEL",
    "cell_miou",
    "holm",
    "interval",
    "p_value",
    "resample_weights",
    "table5_figures",
]

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


@functools.lru_cache(maxsize=8)  # 1001 x 500 float64: 4 MB each
def resample_weights(n: int, key: str, *, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                     include_full: bool = True) -> np.ndarray:  # fmt: skip
    """Bootstrap weights over ``n`` images: ``(1 + resamples, n)`` float64, row 0 all ones
    (the point estimate) when ``include_full``, then one multinomial draw of ``n`` per row.

    Args:
        n: Number of images.
        key: Identifies the image list (e.g. its sha256): the same key and seed give the same
            resamples, so runs over the same images are paired.
        resamples: B.
        seed: Seed of the draws.

    Returns:
        The weights, read-only and cached (every cell and run over the same images reuses
        them).
    """
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)
    rng = np.random.default_rng(np.random.SeedSequence([seed, digest, n]))
    draws = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    if include_full:
        draws = np.concatenate([np.ones((1, n)), draws])
    draws.setflags(write=False)  # cached: the cells of a run and the runs over its images share it
    return draws


def cell_miou(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mIoU of every cell under every weighting.

    Args:
        counts: ``(N, C, K, 3)`` per-image TP, FP, FN of C cells (int).
        weights: ``(R, N)`` image weights (:func:`resample_weights`).

    Returns:
        ``(R, C)`` mIoU (fractions; NaN where no class is present).
    """
    n, c, k, three = counts.shape
    sums = weights @ counts.reshape(n, c * k * three).astype(np.float64)
    return miou_from_counts(sums.reshape(-1, c, k, three))


def table5_figures(
    cells: Sequence[str],
    miou: np.ndarray,
    baseline: tuple[Sequence[str], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Every figure of a Table 5 row, per weighting, in percent (CD in percent of the
    baseline's): ``clean``, each corruption's mean over its severities, ``mPC``, ``rPC``, and
    with a baseline ``CD:<corruption>`` and ``mCD``.

    Args:
        cells: Cell names (``clean``, ``<corruption>-<severity>``), the columns of ``miou``.
        miou: ``(R, C)`` mIoU fractions (:func:`cell_miou`).
        baseline: The baseline run's cells and mIoU under the same weights (paired).

    Returns:
        Figure name -> ``(R,)`` values.
    """
    index = {cell: j for j, cell in enumerate(cells)}
    groups = severity_groups(cells)
    out: dict[str, np.ndarray] = {}
    if CLEAN in index:
        out[CLEAN] = 100 * miou[:, index[CLEAN]]
    means = {c: 100 * miou[:, [index[x] for x in xs]].mean(1) for c, xs in groups.items()}
    out.update(means)
    if means:
        out["mPC"] = np.mean(np.stack(list(means.values()), 1), 1)
        if CLEAN in out:
            out["rPC"] = 100 * out["mPC"] / out[CLEAN]
    if baseline is not None and groups:
        b_cells, b_miou = baseline
        b_index = {cell: j for j, cell in enumerate(b_cells)}
        cds = {}
        for corruption, xs in groups.items():
            if not all(x in b_index for x in xs):
                continue
            err = (1 - miou[:, [index[x] for x in xs]]).sum(1)
            ref = (1 - b_miou[:, [b_index[x] for x in xs]]).sum(1)
            cds[corruption] = 100 * (err / ref)
            out[f"CD:{corruption}"] = cds[corruption]
        if cds:
            out["mCD"] = np.mean(np.stack(list(cds.values()), 1), 1)
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (``(B,)``; NaN resamples left out)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    lo, hi = np.quantile(samples, [alpha, 1 - alpha])
    return float(lo), float(hi)


def p_value(differences: np.ndarray) -> float:
    """Two-sided paired-bootstrap p-value of "no difference": twice the share of resampled
    differences on the far side of zero, ``(k + 1) / (B + 1)`` so that it is never 0."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return float("nan")
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2 * (tail + 1) / (d.size + 1)))


def holm(p_values: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error over the columns), in the order
    given (NaN stays NaN and does not count)."""
    p = np.asarray(list(p_values.values()) if isinstance(p_values, Mapping) else p_values,
                   dtype=np.float64)  # fmt: skip
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out

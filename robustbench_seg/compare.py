"""Paired comparison of two runs over the same images: per Table 5 column, the difference with
its bootstrap interval and a paired-bootstrap p-value, Holm-corrected over the columns
(``robustbench_seg.stats``)."""

from __future__ import annotations

import os
from pathlib import Path

from robustbench_seg import stats as stats_mod
from robustbench_seg.errors import RobustSegError
from robustbench_seg.runs import ImageSet, RunInfo, RunStatistics, load_statistics, read_run_info

__all__ = [
    "COMPARE_COLUMNS",
    "check_comparable",
    "check_images",
    "check_natural",
    "compare",
    "compare_statistics",
    "format_comparison",
]

COMPARE_COLUMNS = ("figure", "a", "b", "difference", "difference_lo", "difference_hi", "p_value",
                   "p_holm", "significant")  # fmt: skip


def _load(run: str | os.PathLike) -> tuple[RunStatistics, RunInfo]:
    path = Path(run)
    if not path.is_dir():
        raise RobustSegError(f"{path} is not a run directory (not a directory)")
    info = read_run_info(path)
    if info is None:
        raise RobustSegError(f"{path} is not a run directory (no readable run.json)")
    stats = load_statistics(path)
    if stats is None:
        raise RobustSegError(
            f"{path} has no per-image statistics (a run from an earlier robustseg, or unfinished); "
            f"run robustseg evaluate again with the same options to complete it"
        )
    return stats, info


_PAIRED = "a paired comparison needs the same images"
Named = tuple[str, RunInfo | None]  # a run's name and its record (None: no run.json)


def check_comparable(a: Named, b: Named, why: str = _PAIRED) -> None:
    """Refuses two runs over different images or cells (protocols), natural-shift cells
    included (:func:`check_images`, :func:`check_natural`, then the cells in order).

    Args:
        a, b: Each run's name and record (``None``: the run has no ``run.json``).
        why: What needs them alike (ends the messages).

    Raises:
        RobustSegError: One line naming the two runs and what differs.
    """
    (name_a, ca), (name_b, cb) = a, b
    check_images(a, b, why)
    check_natural(a, b, why)
    cells_a, cells_b = (ca.cells if ca else []), (cb.cells if cb else [])
    if cells_a != cells_b:
        only = sorted(set(cells_a) ^ set(cells_b))
        raise RobustSegError(
            f"{name_a} and {name_b} were evaluated on different cells (protocols): "
            f"{', '.join(only[:5]) or 'another order'}; evaluate both with the same "
            "--corruptions, --severities and --natural"
        )


def check_images(a: Named, b: Named, why: str = _PAIRED) -> None:
    """Refuses two runs (name, record) over different images of the evaluated dataset: other
    image lists, or the same names with other pixels (their content digests, where both runs
    record one: runs from before it was kept are paired by names, as then); ``why`` ends the
    message."""
    (name_a, ca), (name_b, cb) = a, b
    ia, ib = (ca.images if ca else ImageSet()), (cb.images if cb else ImageSet())
    if (ia.names_sha256, ia.count) != (ib.names_sha256, ib.count):
        raise RobustSegError(
            f"{name_a} and {name_b} were evaluated on different images ({ia.count} vs "
            f"{ib.count} images of {ia.split}/{ib.split}, image lists differ); {why}"
        )
    if _other_pixels(ia, ib):
        raise RobustSegError(
            f"{name_a} and {name_b} were evaluated on different images (the same "
            f"{ia.count} file names with other pixels: the images' content digests "
            f"differ); {why}"
        )


def _other_pixels(a: ImageSet, b: ImageSet) -> bool:
    """Both runs record a content digest and they differ."""
    return None not in (a.content_sha256, b.content_sha256) and a.content_sha256 != b.content_sha256


def check_natural(a: Named, b: Named, why: str = _PAIRED) -> None:
    """Refuses two runs (name, record) with other natural-shift cells (``acdc:fog``), or with
    one over other images (or whose images a run does not record); ``why`` ends the message."""
    (name_a, ca), (name_b, cb) = a, b
    na, nb = (ca.natural if ca else {}), (cb.natural if cb else {})
    if set(na) != set(nb):
        raise RobustSegError(
            f"{name_a} and {name_b} were evaluated on different natural-shift cells "
            f"({', '.join(sorted(set(na) ^ set(nb))[:5])}); {why}: evaluate them with the same "
            "--natural"
        )
    for cell in sorted(na):
        for name, images in ((name_a, na[cell]), (name_b, nb[cell])):
            if images.names_sha256 is None:
                raise RobustSegError(
                    f"cannot tell which images {name} evaluated {cell} on (its run.json records "
                    f"no image hash of the cell); {why}"
                )
    cells = sorted(
        c for c in na if (na[c].names_sha256, na[c].count) != (nb[c].names_sha256, nb[c].count)
    )
    if cells:
        n_a, n_b = na[cells[0]].count, nb[cells[0]].count
        raise RobustSegError(
            f"{name_a} and {name_b} evaluated the natural-shift cells {', '.join(cells[:5])} on "
            f"different images (different images of {cells[0]}: {n_a} vs {n_b} images, image "
            f"lists differ); {why}"
        )
    cells = sorted(c for c in na if _other_pixels(na[c], nb[c]))
    if cells:
        raise RobustSegError(
            f"{name_a} and {name_b} evaluated the natural-shift cells {', '.join(cells[:5])} on "
            f"different images (the same file names of {cells[0]} with other pixels: the images' "
            f"content digests differ); {why}"
        )


def compare_statistics(a: RunStatistics, b: RunStatistics, *, resamples: int = stats_mod.DEFAULT_RESAMPLES,
                       seed: int = 0, alpha: float = 0.05):  # fmt: skip
    """The comparison table of two runs' statistics (same images and cells: not checked here)."""
    import pandas as pd

    fa = a.figure_samples(resamples=resamples, seed=seed)
    fb = b.figure_samples(resamples=resamples, seed=seed)
    names = [n for n in fa if n in fb]
    rows = []
    for name in names:
        d = fa[name] - fb[name]
        lo, hi = stats_mod.interval(d[1:], 1 - alpha)
        rows.append({"figure": name, "a": float(fa[name][0]), "b": float(fb[name][0]),
                     "difference": float(d[0]), "difference_lo": lo, "difference_hi": hi,
                     "p_value": stats_mod.p_value(d[1:])})  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS[:-2]))
    frame["p_holm"] = stats_mod.holm(frame["p_value"].to_numpy())
    frame["significant"] = frame["p_holm"] < alpha
    return frame


def compare(run_a: str | os.PathLike, run_b: str | os.PathLike, *,
            resamples: int = stats_mod.DEFAULT_RESAMPLES, seed: int = 0, alpha: float = 0.05):  # fmt: skip
    """Paired comparison of two run directories, column by column of Table 5.

    The image-level bootstrap resamples are the same for both runs (same images, same seed), so
    each resample gives a paired difference ``a - b``. Per figure (clean, each corruption's
    mean, mPC, rPC, in percent): both values, the difference, its ``1 - alpha`` percentile
    interval, the two-sided paired-bootstrap p-value of "no difference" and its Holm
    correction over all the columns; ``significant`` where the corrected p-value is below
    ``alpha``.

    Args:
        run_a, run_b: Run directories of ``robustseg evaluate`` over the same images and cells.
        resamples: Bootstrap resamples.
        seed: Seed of the resamples.
        alpha: Family-wise error rate (and 1 - the interval's level).

    Returns:
        A DataFrame with the columns ``COMPARE_COLUMNS``, one row per figure.

    Raises:
        RobustSegError: Not run directories, runs without per-image statistics, or runs over
            different images or cells.
    """
    if resamples < 1:
        raise RobustSegError(f"--resamples must be >= 1, got {resamples}")
    if not 0 < alpha < 1:
        raise RobustSegError(f"--alpha must be between 0 and 1, got {alpha}")
    sa, ca = _load(run_a)
    sb, cb = _load(run_b)
    check_comparable((str(run_a), ca), (str(run_b), cb))
    return compare_statistics(sa, sb, resamples=resamples, seed=seed, alpha=alpha)


def format_comparison(frame, name_a: str, name_b: str) -> str:
    """The comparison as an aligned text table."""
    lines = [f"{'figure':<18} {name_a[:14]:>14} {name_b[:14]:>14} {'a - b':>8} {'95% interval':>17} "
             f"{'p':>7} {'p (Holm)':>8}"]  # fmt: skip
    for row in frame.itertuples():
        star = " *" if row.significant else ""
        lines.append(
            f"{row.figure:<18} {row.a:14.2f} {row.b:14.2f} {row.difference:+8.2f} "
            f"[{row.difference_lo:+7.2f}, {row.difference_hi:+7.2f}] {row.p_value:7.4f} "
            f"{row.p_holm:8.4f}{star}"
        )
    if frame["significant"].any():
        lines.append("* significant after Holm's correction")
    return "\n".join(lines)

"""``robustseg demo``: the whole study on the synthetic city with the two bundled models.

Renders ``images`` synthetic validation scenes (the same images as the val split the bundled
models were validated on), writes their Cityscapes-C (the full 72-variant protocol), evaluates
SegFormer-B0 and DeepLabV3+ MobileNetV2 on the clean images and every variant, computes both
models' effective receptive fields and renders the report. Minutes on a laptop CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import claim_dir, cpu_info, package_versions, write_json_atomic
from robustbench_seg.procs import check_workers
from robustbench_seg.runs import TIMING_JSON

__all__ = ["DEMO_MODELS", "DemoResult", "default_work", "run_demo"]

# (architecture.weights tag, run folder): SegFormer first, the DeepLabV3+ baseline second.
DEMO_MODELS = (
    ("segformer-b0.synthetic", "segformer-b0"),
    ("deeplabv3plus-mobilenetv2-w256-os16.synthetic", "deeplabv3plus-mobilenetv2-w256-os16"),
)
DEMO_JSON = "demo.json"
# Every library whose arithmetic reaches the demo's bytes (pinned in .ci/constraints.txt).
_VERSIONED = ("robustseg", "torch", "numpy", "opencv-python-headless", "scipy", "scikit-image",
              "numba", "pillow", "isal", "pandas", "matplotlib")  # fmt: skip
# What a demo writes into --out (besides what `report` writes): an --out holding anything else
# is not a demo folder and is refused rather than overwritten. TIMING_JSON (here and in each
# run) holds when and how long; every other file is the same, byte for byte, on every run.
_DEMO_ENTRIES = {
    "runs", "erf", "tables", "figures", "index.md", "index.html", DEMO_JSON, TIMING_JSON,
}  # fmt: skip


def default_work() -> Path:
    """The demo's data folder when none is given: ``robustseg-demo-<uid>`` in the temporary
    folder, a fixed name because ``evaluate`` records the data paths in ``run.json`` and hashes
    them into every cell (a random name would change every committed file of the demo)."""
    user = os.getuid() if hasattr(os, "getuid") else 0  # one folder per user
    return Path(tempfile.gettempdir()) / f"robustseg-demo-{user}"


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        out: The demo folder.
        report: The report (``robustbench_seg.report.ReportResult``).
        headline: Table 5 of the demo in Markdown (what the CLI prints).
        runs: Evaluation run directories, one per model.
        timings: Seconds per step (``synthetic``, ``cityscapes_c``, ``evaluate``, ``erf``,
            ``report``) and ``total``.
    """

    out: Path
    report: object
    headline: str
    runs: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _is_demo(out: Path) -> bool:
    """An earlier demo folder from before output folders were marked: its demo.json and only
    what a demo writes."""
    return (out / DEMO_JSON).is_file() and all(p.name in _DEMO_ENTRIES for p in out.iterdir())


def run_demo(
    out: str | os.PathLike = "reports/demo",
    *,
    images: int = 10,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
    work: str | os.PathLike | None = None,
    workers: int | None = None,
    qualitative: int = 3,
    device: str = "auto",
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the embedded demo end to end.

    Args:
        out: Report folder (created). An earlier demo there is replaced; any other non-empty
            folder is refused.
        images: Synthetic validation images (the first ``images`` of the val split).
        size: ``(H, W)`` of the images; the bundled models were trained at 256x512.
        seed: Seed of the synthetic city and of the corruptions (0: the bundled models' val
            split).
        work: Folder for the generated images and Cityscapes-C (kept); default:
            :func:`default_work`, emptied first and deleted at the end (a second demo at the
            same time is refused: give it a ``work`` of its own).
        workers: Worker processes for rendering and corrupting (default: all cores; 0: all in
            this process); evaluation uses at most 2 loader processes.
        qualitative: Images in the qualitative grid (0: none).
        device: Torch device for evaluation and ERFs.
        progress: Show progress bars.
        echo: Called with one line per finished step (the CLI prints them).

    Returns:
        The demo's report, headline table, runs and timings.

    Raises:
        RobustSegError: Bad arguments, or an --out that is not a demo folder.
    """
    from robustbench_seg.analysis.erf import compute_erf
    from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
    from robustbench_seg.data.datasets import FOGGY_BETAS
    from robustbench_seg.data.synthetic import make_synthetic_city
    from robustbench_seg.engine.evaluate import evaluate
    from robustbench_seg.report import ReportWarning, build_report, tables

    if images < 1:
        raise RobustSegError(f"--images must be >= 1, got {images}")
    if qualitative < 0:
        raise RobustSegError(f"--qualitative must be >= 0, got {qualitative}")
    h, w = size
    if h < 32 or w < 32:
        raise RobustSegError(f"--size must be at least 32x32, got {w}x{h}")
    out = Path(out)
    lock = claim_dir(out, "demo", recognise=_is_demo)  # before any work: refused, or ours
    say = echo or (lambda _line: None)
    workers = check_workers(workers, os.cpu_count() or 1)
    start = time.perf_counter()
    timings: dict[str, float] = {}

    @contextmanager
    def timed(step: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        timings[step] = time.perf_counter() - t

    own_work = work is None
    work = default_work() if own_work else Path(work)
    city, city_c = work / "synthetic-city", work / "synthetic-city-c"
    work_lock = None
    try:
        if own_work:
            work_lock = claim_dir(work, "demo-work", option="--work")
            for sub in (city, city_c):  # what a demo that was killed left
                shutil.rmtree(sub, ignore_errors=True)
        with timed("synthetic"):
            make_synthetic_city(
                city,
                train=0,
                val=images,
                size=size,
                seed=seed,
                workers=workers,
                progress=progress,
                fog=True,  # a natural-shift-style set: depth-based fog, as Foggy Cityscapes
            )
        say(
            f"synthetic city: {images} val images at {w}x{h}, and in depth-based fog "
            f"({timings['synthetic']:.1f} s)"
        )

        with timed("cityscapes_c"):  # the full protocol: 16 corruptions, 72 variants
            gen = generate_cityscapes_c(city, city_c, seed=seed, workers=workers, progress=progress)
        if gen.failed:
            raise RobustSegError(f"Cityscapes-C generation failed for {gen.failed[0][0]}")
        say(
            f"Cityscapes-C: {gen.images} images x {gen.variants} variants "
            f"({timings['cityscapes_c']:.1f} s)"
        )

        runs = [out / "runs" / name for _, name in DEMO_MODELS]
        for run in runs:  # evaluated afresh: the cells of an earlier demo (a clone's committed
            shutil.rmtree(run, ignore_errors=True)  # ones) have the same configuration hash
        with timed("evaluate"):
            for (model, _), run in zip(DEMO_MODELS, runs, strict=True):
                evaluate(
                    model, weights="default", cityscapes_root=city, cityscapes_c=city_c,
                    inference="whole", batch_size=2, workers=min(2, workers), device=device,
                    out=run, overwrite=True, save_predictions=qualitative, progress=progress,
                    natural=["foggy-cityscapes"],
                )  # fmt: skip
        say(
            f"evaluated {len(runs)} models on {images} images x "
            f"{gen.variants + 1 + len(FOGGY_BETAS)} cells "
            f"({timings['evaluate']:.1f} s)"
        )

        with timed("erf"):
            erf = compute_erf(
                [m for m, _ in DEMO_MODELS], weights="default", cityscapes_root=city,
                num_images=images, size=size, seed=seed, device=device, out=out / "erf",
                progress=progress,
            )  # fmt: skip
        say(erf.line())

        with timed("report"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ReportWarning)
            report = build_report(
                runs, out, baseline=runs[-1], reference="none",
                qualitative=min(qualitative, images), cityscapes_root=city, erf=out / "erf",
                title=f"robustseg demo: {images} synthetic city images under the Cityscapes-C "
                "protocol and in depth-based fog (read as Foggy Cityscapes)", progress=progress,
                owned=True, ci=True,
            )  # fmt: skip
        timings["total"] = time.perf_counter() - start
        say(f"report ({timings['report']:.1f} s)")
    finally:
        lock.release()
        if work_lock is not None:
            work_lock.release()
            shutil.rmtree(work, ignore_errors=True)

    headline = tables.table5_markdown(report.table5)
    write_json_atomic(
        out / DEMO_JSON,
        {
            "command": "robustseg demo",
            "models": [m for m, _ in DEMO_MODELS],
            "images": images,
            "size": [h, w],
            "seed": seed,
            "device": device,
            "versions": package_versions(_VERSIONED),
            # the committed outputs are byte-identical on a CPU of this class (README: bytes)
            "cpu": cpu_info(),
        },
    )
    write_json_atomic(
        out / TIMING_JSON,
        {
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return DemoResult(out, report, headline, runs, timings)

"""End-to-end evaluation overhead: model-only, corruption-only and on-the-fly `evaluate` in one run.

Same images, cells and settings for the three measurements:
  * corruption-only: read each image and corrupt it (main process, sequential);
  * model-only: the same corrupted images held in memory -> preprocess, inference, argmax,
    confusion matrix;
  * end-to-end: `robustbench_seg.evaluate` corrupting on the fly in DataLoader workers.
Target on a 2-core CPU: end-to-end <= 1.1x (model-only + corruption-only). On a GPU: end-to-end
throughput >= 90% of model-only (corruption hidden in the workers). The statistics evaluate
keeps (per-image counts, calibration sums) are measured three ways: model-only with and without
them, end-to-end with ``statistics=True`` against ``statistics=False`` (noisy on two cores: the
loader workers share them with the model), and the statistics' own steps clocked inside the
end-to-end runs; target <= 1.05x on CPU.

Run: .venv/bin/python benchmarks/bench_evaluate.py [--model b0] [--images 4] [--size 512x1024]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

import cv2
import numpy as np
import torch

from corruptions import corrupt
from corruptions.protocol import variant_rng
from robustbench_seg import metrics, runs
from robustbench_seg.data.cityscapes import list_pairs, load_label
from robustbench_seg.data.images import read_rgb
from robustbench_seg.engine import scoring
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.metrics import per_image_counts
from robustbench_seg.models import load
from robustbench_seg.runtime import resolve_device

CELLS = [("clean", None)] + [(c, 3) for c in (
    "motion_blur", "defocus_blur", "glass_blur", "gaussian_blur", "gaussian_noise", "impulse_noise",
    "shot_noise", "speckle_noise", "brightness", "contrast", "saturate", "jpeg_compression",
    "snow", "spatter", "fog", "frost")]  # fmt: skip


def make_dataset(root: Path, n: int, h: int, w: int) -> None:
    import skimage.data

    photos = [
        skimage.data.astronaut(),
        skimage.data.coffee(),
        skimage.data.chelsea(),
        skimage.data.rocket(),
    ]
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.resize(photos[i % 4], (w, h), interpolation=cv2.INTER_CUBIC)
        stem = f"benchcity_{i:06d}_000019"
        ip = root / "leftImg8bit/val/benchcity" / f"{stem}_leftImg8bit.png"
        lp = root / "gtFine/val/benchcity" / f"{stem}_gtFine_labelIds.png"
        ip.parent.mkdir(parents=True, exist_ok=True)
        lp.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ip), img[:, :, ::-1])
        cv2.imwrite(str(lp), rng.integers(0, 34, (h, w), dtype=np.uint8))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="b0")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", default="512x1024", help="HxW of the images")
    ap.add_argument("--inference", default="whole", choices=["whole", "slide"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument(
        "--repeats",
        type=int,
        default=4,
        help="rounds of model-only and end-to-end runs with and without statistics",
    )
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    dev = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cs"
        make_dataset(root, args.images, h, w)
        pairs = list_pairs(root, "val")
        torch.manual_seed(0)
        loaded = load(args.model)
        scorer = Segmenter(
            loaded.module, loaded.preprocessing, dev, mode=args.inference, crop=1024, stride=768,
            batch_size=2, precision=args.precision,
        )  # fmt: skip

        # corruption-only (incl. reading the image and its label)
        t0 = time.perf_counter()
        data = []
        for corruption, sev in CELLS:
            for pair in pairs:
                img = read_rgb(pair.image.path)
                if corruption != "clean":
                    img = corrupt(
                        img, corruption, sev, variant_rng(0, pair.image_id, corruption, sev)
                    )
                data.append((img, load_label(pair, img.shape[:2])))
        t_corrupt = time.perf_counter() - t0

        # model-only: plain (confusion matrix) and with the statistics evaluate keeps (per-image
        # counts and calibration sums), alternated image by image (A B, then B A) so that the
        # machine's drifting load falls on both alike
        def plain(img, lab):
            scorer.score(img[None], torch.from_numpy(lab).to(dev)[None])

        def with_statistics(img, lab):
            m = scorer.measure(img[None], torch.from_numpy(lab).to(dev)[None])
            per_image_counts(m.confusion.cpu().numpy())
            [t.cpu() for t in m.calibration]

        with torch.inference_mode():
            for img, lab in data[:2]:  # warm-up (allocator, kernels, the numba cache)
                plain(img, lab)
                with_statistics(img, lab)
            times = {"plain": [], "stats": []}
            for i in range(args.repeats):
                total = {"plain": 0.0, "stats": 0.0}
                for j, (img, lab) in enumerate(data):
                    pair = (("plain", plain), ("stats", with_statistics))
                    for name, fn in pair[:: 1 - 2 * ((i + j) % 2)]:
                        t0 = time.perf_counter()
                        fn(img, lab)
                        if dev.type == "cuda":
                            torch.cuda.synchronize()
                        total[name] += time.perf_counter() - t0
                for name, t in total.items():
                    times[name].append(t)
        t_model, t_model_stats = min(times["plain"]), min(times["stats"])

        # end-to-end, on the fly; the statistics' own steps are clocked inside the runs: the
        # calibration sums, the per-image counts (TP, FP, FN from each image's confusion
        # matrix) and, once per run, the per-image table and the bootstrap intervals of the cells
        corr = ",".join(c for c, _ in CELLS[1:])
        e2e = {True: [], False: []}
        inside: list[float] = []
        clocked = [(scoring, "calibration_sums"), (metrics, "per_image_counts"),
                   (runs.RunStatistics, "from_records"), (runs.RunStatistics, "cell_intervals")]  # fmt: skip
        originals = [owner.__dict__[name] for owner, name in clocked]

        def clock(fn):
            def timed(*a, **kw):
                t0 = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    inside[-1] += time.perf_counter() - t0

            return timed

        order = [v for i in range(args.repeats) for v in ((False, True), (True, False))[i % 2]]
        for (owner, name), fn in zip(clocked, originals, strict=True):
            wrapped = (classmethod(clock(fn.__func__)) if isinstance(fn, classmethod)
                       else clock(fn))  # fmt: skip
            setattr(owner, name, wrapped)
        try:
            for statistics in order:
                inside.append(0.0)
                t0 = time.perf_counter()
                evaluate(loaded.module, preprocessing=loaded.preprocessing, cityscapes_root=root,
                         corruptions=corr, severities="3", inference=args.inference, crop=1024,
                         stride=768, batch_size=2, workers=args.workers, device=str(dev),
                         precision=args.precision, progress=False, statistics=statistics)  # fmt: skip
                e2e[statistics].append(time.perf_counter() - t0)
        finally:
            for (owner, name), fn in zip(clocked, originals, strict=True):
                setattr(owner, name, fn)
        t_e2e, t_e2e_plain = min(e2e[True]), min(e2e[False])
        mine = [c for c, v in zip(inside, order, strict=True) if v]
        share = [c / t for c, t in zip(mine, e2e[True], strict=True)]
        model_ratio = sum(times["stats"]) / sum(times["plain"])
        e2e_ratio = median(s / p for s, p in zip(e2e[True], e2e[False], strict=True))

    n = len(data)
    print(f"# evaluate overhead: {args.model}, {n} image-cells ({len(CELLS)} cells x {args.images} images), "
          f"{h}x{w}, {args.inference}, device {dev}, torch threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}, {datetime.now(timezone.utc):%Y-%m-%d}")  # fmt: skip
    print("| part | seconds | images/s |")
    print("|---|---:|---:|")
    print(
        f"| corruption-only (read + corrupt, 1 process) | {t_corrupt:.2f} | {n / t_corrupt:.2f} |"
    )
    print(f"| model-only (in-memory images) | {t_model:.2f} | {n / t_model:.2f} |")
    print(f"| sum of the parts | {t_corrupt + t_model:.2f} | |")
    print(f"| end-to-end evaluate (on the fly) | {t_e2e:.2f} | {n / t_e2e:.2f} |")
    print(
        f"| model-only with statistics (per-image counts, calibration) | {t_model_stats:.2f} | {n / t_model_stats:.2f} |"
    )
    print(f"| end-to-end without calibration sums | {t_e2e_plain:.2f} | {n / t_e2e_plain:.2f} |")
    print(
        f"end-to-end / sum = {t_e2e / (t_corrupt + t_model):.2f} (CPU target <= 1.10); "
        f"end-to-end / model-only throughput = {t_model / t_e2e:.2f} (GPU target >= 0.90)"
    )
    print(
        f"statistics cost: model-only {t_model_stats / t_model:.3f}x, end-to-end "
        f"{t_e2e / t_e2e_plain:.3f}x (best against best); model-only alternated image by image "
        f"{model_ratio:.3f}x (all rounds), end-to-end median of the rounds' ratios "
        f"{e2e_ratio:.3f}x (target <= 1.05)"
    )
    print(f"statistics' own steps inside the end-to-end runs (calibration sums, per-image counts, "
          f"per-image table, bootstrap intervals): {min(share):.1%}-{max(share):.1%} of their time "
          f"({sum(mine) / len(share) / n * 1e3:.1f} ms per image)")  # fmt: skip
    print("model-only rounds (s, summed over the images): without statistics "
          + ", ".join(f"{t:.2f}" for t in times["plain"]) + "; with "
          + ", ".join(f"{t:.2f}" for t in times["stats"]))  # fmt: skip
    print("end-to-end runs (s): without calibration "
          + ", ".join(f"{t:.2f}" for t in e2e[False]) + "; with "
          + ", ".join(f"{t:.2f}" for t in e2e[True]))  # fmt: skip


if __name__ == "__main__":
    main()

"""Cityscapes-C corruption and writing speed, one core: `fast` vs `reference` in the same run.

1. The 72-variant grid (Cityscapes-C protocol) on one 2048x1024 photo: per corruption and total,
   fast vs reference (imagecorruptions). Target: total >= 8x faster.
2. Writing: the 72 variants corrupted and written as lossless PNG: fast + our PNG writer vs
   imagecorruptions + Pillow's default PNG settings. Target: <= 8 s in total.
3. Encoder choice: seconds and bytes per 2048x1024 variant for our writer, OpenCV levels 1/3
   and Pillow's default, on the same 72 images, and the disk a full 500-image Cityscapes-C takes.

4. With --fidelity, instead: fast vs reference for every corruption and severity on three
   scikit-image photos (astronaut, coffee, chelsea) at 97x131, 256x320 and 480x640, the same
   rng for both: identical cells, worst mean signed difference, worst fraction within +-1.

Run: .venv/bin/python benchmarks/bench_corruptions.py [--image PATH] [--json OUT] [--fidelity]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from corruptions import CITYSCAPES_C, corrupt, get_corruption_names  # noqa: E402
from corruptions.protocol import variant_rng  # noqa: E402
from corruptions.reference import NOT_PAIRED  # noqa: E402
from robustbench_seg.data.png import encode_png, write_png_atomic  # noqa: E402

VAL_IMAGES = 500  # Cityscapes val


def load_image(path: str | None) -> np.ndarray:
    if path:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        return np.ascontiguousarray(cv2.resize(bgr, (2048, 1024))[:, :, ::-1])
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (2048, 1024), interpolation=cv2.INTER_CUBIC)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--image", help="a photo (resized to 2048x1024); default: scikit-image astronaut"
    )
    ap.add_argument("--json", help="also write the figures as JSON here")
    ap.add_argument("--fidelity", action="store_true", help="measure fast vs reference instead")
    args = ap.parse_args()
    if args.fidelity:
        fidelity()
        return

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    image = load_image(args.image)
    variants = CITYSCAPES_C.variants()
    image_id = "bench/bench_000000_000000"

    # Warm-up: numba compilation and caches are a one-off cost per process, not per image.
    small = np.ascontiguousarray(image[:64, :64])
    for name, sev in variants:
        corrupt(small, name, sev, 0)

    fast_t, ref_t = defaultdict(float), defaultdict(float)
    fast_out, ref_out = [], []
    for name, sev in variants:
        out, dt = timed(lambda n=name, s=sev: corrupt(image, n, s, variant_rng(0, image_id, n, s)))
        fast_t[name] += dt
        fast_out.append(out)
        rng = variant_rng(0, image_id, name, sev)
        out, dt = timed(lambda n=name, s=sev, r=rng: corrupt(image, n, s, r, backend="reference"))
        ref_t[name] += dt
        ref_out.append(out)

    print(
        f"# 1. 72-variant grid on one 2048x1024 image, one core ({platform.processor() or platform.machine()})"
    )
    print("| corruption | severities | fast (s) | reference (s) | speed-up |")
    print("|---|---|---:|---:|---:|")
    for name in CITYSCAPES_C.corruptions:
        sev = ",".join(map(str, CITYSCAPES_C.severities[name]))
        print(
            f"| {name} | {sev} | {fast_t[name]:.3f} | {ref_t[name]:.3f} | {ref_t[name] / fast_t[name]:.1f}x |"
        )
    tf, tr = sum(fast_t.values()), sum(ref_t.values())
    print(
        f"| **total** | 72 variants | **{tf:.2f}** | **{tr:.2f}** | **{tr / tf:.1f}x** (target >= 8x) |"
    )

    # 2. Corrupt + write, end to end, to a real folder.
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ours_bytes = 0
        for i, (name, sev) in enumerate(variants):
            out = corrupt(image, name, sev, variant_rng(0, image_id, name, sev))
            ours_bytes += write_png_atomic(Path(tmp, f"f{i}.png"), out)[1]
        ours_total = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, out in enumerate(ref_out):
            Image.fromarray(out).save(Path(tmp, f"r{i}.png"))
        pil_write = time.perf_counter() - t0
        pil_bytes = sum(Path(tmp, f"r{i}.png").stat().st_size for i in range(len(ref_out)))
    ref_total = tr + pil_write
    print("\n# 2. 72 variants corrupted and written as lossless PNG, one core")
    print("| pipeline | seconds | MB written |")
    print("|---|---:|---:|")
    print(
        f"| fast + robustseg PNG writer (ISA-L deflate 1, Sub filter) | **{ours_total:.2f}** | {ours_bytes / 1e6:.0f} |"
    )
    print(f"| imagecorruptions + Pillow default PNG | {ref_total:.2f} | {pil_bytes / 1e6:.0f} |")
    print(f"ratio: {ref_total / ours_total:.1f}x; target: ours <= 8 s")

    # 3. Encoders on the same 72 images.
    encoders = {
        "robustseg (ISA-L 1, Sub)": lambda x: encode_png(x),
        "OpenCV level 1": lambda x: cv2.imencode(
            ".png", x[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )[1],
        "OpenCV level 3 (default)": lambda x: cv2.imencode(".png", x[:, :, ::-1])[1],
        "Pillow default (level 6)": lambda x: _pil_png(x),
    }
    print("\n# 3. PNG encoders on the 72 fast variants (per 2048x1024 image)")
    print("| encoder | ms / image | MB / image | full 500-image Cityscapes-C (GB) |")
    print("|---|---:|---:|---:|")
    enc_rows = {}
    for label, enc in encoders.items():
        t0 = time.perf_counter()
        n = sum(len(enc(x)) for x in fast_out)
        dt = time.perf_counter() - t0
        enc_rows[label] = (dt / len(fast_out), n / len(fast_out))
        print(f"| {label} | {1000 * dt / len(fast_out):.0f} | {n / len(fast_out) / 1e6:.2f} | "
              f"{n * VAL_IMAGES / 1e9:.0f} |")  # fmt: skip

    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(), "fast_s": dict(fast_t), "reference_s": dict(ref_t),
            "grid_speedup": tr / tf, "write_ours_s": ours_total, "write_reference_s": ref_total,
            "encoders": enc_rows,
        }, indent=2))  # fmt: skip


FIDELITY_PHOTOS = ("astronaut", "coffee", "chelsea")
FIDELITY_SIZES = ((97, 131), (256, 320), (480, 640))


def _photo(name: str, h: int, w: int) -> np.ndarray:
    """A scikit-image photo resized to h x w, as tests/conftest.py's natural_image."""
    import skimage.data

    img = getattr(skimage.data, name)()[:, :, :3]
    interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def fidelity() -> None:
    """Fast vs reference, same rng, per corruption over photos x sizes x severities."""
    images = {(p, s): _photo(p, *s) for p in FIDELITY_PHOTOS for s in FIDELITY_SIZES}
    cells = len(images) * 5
    print(f"# fast vs reference (imagecorruptions), same rng (seed 0), {cells} cells per "
          f"corruption: {', '.join(FIDELITY_PHOTOS)} x {FIDELITY_SIZES} x severities 1-5")  # fmt: skip
    print("| corruption | identical cells | worst mean signed difference | worst pixels differing "
          "| worst within +-1 | max abs difference |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name in get_corruption_names("all"):
        rows = []
        for sev in range(1, 6):
            for (photo, size), img in images.items():
                d = corrupt(img, name, sev, 0).astype(np.int16) - corrupt(
                    img, name, sev, 0, backend="reference"
                )
                where = f"s{sev} {photo} {size[0]}x{size[1]}"
                rows.append((not d.any(), d.mean(), np.mean(d != 0), np.mean(np.abs(d) <= 1),
                             int(np.abs(d).max()), where, d.size, float(d.sum()),
                             float(np.square(d, dtype=np.float64).sum())))  # fmt: skip
        same = sum(r[0] for r in rows)
        if name in NOT_PAIRED:  # independent draws: pixels differ; the pooled mean says more
            n, s1, s2 = (sum(r[i] for r in rows) for i in (6, 7, 8))
            se = np.sqrt((s2 / n - (s1 / n) ** 2) / n)
            print(f"| {name} | not paired | pooled over the {cells} cells: {s1 / n:+.3f} "
                  f"(standard error {se:.3f}) | own draws: the same law, other pixels | | |")  # fmt: skip
            continue
        if same == cells:
            print(f"| {name} | **{same}/{cells}** | 0 | 0 | 100% | 0 |")
            continue
        m = max(rows, key=lambda r: abs(r[1]))
        f = max(rows, key=lambda r: r[2])
        c = min(rows, key=lambda r: r[3])
        print(f"| {name} | {same}/{cells} | {m[1]:+.1e} ({m[5]}) | {100 * f[2]:.4f}% ({f[5]}) | "
              f"{_within(c)} | {max(r[4] for r in rows)} |")  # fmt: skip


def _within(row: tuple) -> str:
    return "100%" if row[3] == 1 else f"{100 * row[3]:.3f}% ({row[5]})"


def _pil_png(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()

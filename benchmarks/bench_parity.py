"""Corruption parity downstream: one fixed model's mIoU on `fast` vs `reference` corruptions.

The same model, images, seed and protocol are evaluated twice, corrupting on the fly with each
backend; the script prints, per corruption (mean over its severities, as Table 5), both mIoU and
their difference. Target: |fast - reference| <= 0.5 mIoU points for every corruption.

Run: .venv/bin/python benchmarks/bench_parity.py --model b0 --weights W.safetensors \
        --cityscapes-root DATA [--limit 20] [--severities protocol]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from robustbench_seg.engine.evaluate import evaluate, summary_frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="b0")
    ap.add_argument("--weights", required=True)
    ap.add_argument("--cityscapes-root", required=True)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--severities", default="protocol")
    ap.add_argument("--inference", default="whole")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None, help="keep the two run directories here")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    base = Path(args.out or tmp.name)
    rows = {}
    times = {}
    for backend in ("fast", "reference"):
        t0 = time.perf_counter()
        res = evaluate(args.model, weights=args.weights, cityscapes_root=args.cityscapes_root,
                       severities=args.severities, limit=args.limit, inference=args.inference,
                       backend=backend, workers=args.workers, out=base / backend, progress=False)  # fmt: skip
        times[backend] = time.perf_counter() - t0
        rows[backend] = summary_frame(res).iloc[0]
    fast, ref = rows["fast"], rows["reference"]
    cols = [c for c in fast.index if c not in ("model",)]
    print(f"# parity: {fast['model']} ({args.weights}), {args.limit} images of {args.cityscapes_root}, "
          f"severities {args.severities}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d}")  # fmt: skip
    print("| column | fast | reference | fast - reference |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for c in cols:
        d = float(fast[c] - ref[c])
        if c not in ("clean", "mPC", "rPC"):
            worst = max(worst, abs(d))
        print(f"| {c} | {fast[c]:.2f} | {ref[c]:.2f} | {d:+.2f} |")
    print(f"largest |difference| over the corruptions: {worst:.2f} mIoU points (target <= 0.5); "
          f"time fast {times['fast']:.0f} s, reference {times['reference']:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()

"""A/B of end-to-end `evaluate` between an earlier commit and the working tree, in one run.

Both trees evaluate the same dataset with the same settings in fresh processes (the same venv;
the earlier tree is a temporary `git worktree`; each run starts in its tree, which Python
puts first on sys.path), in rounds A B B A, and
the ratio B / A of each round's pair of wall times is reported with its median. Default: the
4-image 512x1024 set of bench_evaluate.py, SegFormer-B0 with random weights, clean + the 16
corruptions at severity 3, on the fly in 2 DataLoader workers.

Run: .venv/bin/python benchmarks/bench_ab.py --base 5c9245f [--rounds 3] [--model b0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# One end-to-end evaluation in a fresh process, timed inside it (imports excluded).
CHILD = """
import json, sys, time
import torch
import robustbench_seg, corruptions
assert corruptions.__file__.startswith(sys.argv[1]), corruptions.__file__
from robustbench_seg.engine.evaluate import evaluate
assert robustbench_seg.__file__.startswith(sys.argv[1]), robustbench_seg.__file__
torch.manual_seed(0)
cells = ["motion_blur", "defocus_blur", "glass_blur", "gaussian_blur", "gaussian_noise",
         "impulse_noise", "shot_noise", "speckle_noise", "brightness", "contrast", "saturate",
         "jpeg_compression", "snow", "spatter", "fog", "frost"]
t = time.perf_counter()
df = evaluate(sys.argv[2], weights=None, cityscapes_root=sys.argv[3], corruptions=cells,
              severities=[3], inference="whole", workers=2, progress=False, out=None)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "miou": float(df.groupby("cell")["iou"].mean().sum())}))
"""


def _run(tree: Path, model: str, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # run in the tree (python -c puts the working folder first on sys.path)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), model, str(data)], env=env,
                         cwd=tree, capture_output=True, text=True, check=False)  # fmt: skip
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.strip().splitlines()[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench_evaluate import make_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the earlier commit (A)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of A B B A")
    ap.add_argument("--model", default="b0")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", default="512x1024")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base),
                        args.base], check=True, capture_output=True)  # fmt: skip
        try:
            data = Path(tmp) / "cs"
            make_dataset(data, args.images, h, w)
            trees = {"A": base, "B": ROOT}
            _run(ROOT, args.model, data)  # warm the caches (numba, files) once
            times: dict[str, list[float]] = {"A": [], "B": []}
            miou = {}
            for _ in range(args.rounds):
                for which in ("A", "B", "B", "A"):
                    r = _run(trees[which], args.model, data)
                    times[which].append(r["seconds"])
                    miou[which] = r["miou"]
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)  # fmt: skip
    ratios = [(times["B"][2 * i] + times["B"][2 * i + 1]) / (times["A"][2 * i] + times["A"][2 * i + 1])
              for i in range(args.rounds)]  # fmt: skip
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# A/B end-to-end evaluate: {args.model}, {args.images} images {h}x{w} x 17 cells, "
          f"A = {args.base}, B = working tree, {platform.machine()}, {when}")  # fmt: skip
    print("| round | A s (2 runs) | B s (2 runs) | B / A |\n|---|---|---|---:|")
    for i, r in enumerate(ratios):
        a = times["A"][2 * i : 2 * i + 2]
        b = times["B"][2 * i : 2 * i + 2]
        print(f"| {i + 1} | {a[0]:.2f}, {a[1]:.2f} | {b[0]:.2f}, {b[1]:.2f} | {r:.3f} |")
    print(f"median B / A = {median(ratios):.3f}; sum of mIoU over cells A {miou['A']:.6f}, "
          f"B {miou['B']:.6f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Wall time and peak memory of ``robustseg demo`` against its budget (5 minutes, 4 GB).

Usage: ``python benchmarks/bench_demo.py [--images 10] [--size 512x256] [--keep DIR]``

Runs ``python -m robustbench_seg demo`` in a subprocess (into a temporary folder, or ``--keep``)
exactly as ``make demo`` does, and samples every 0.1 s the resident memory of the whole process
tree (the demo and its worker processes): the sum of ``VmRSS`` over the tree, from ``/proc``.
Shared pages count once per process, so the sum over-estimates; the largest single process
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is printed too. The demo's own step timings come
from its ``demo.json``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 300.0
BUDGET_BYTES = 4 * 10**9


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _tree_rss(pid: int) -> int:
    """Sum of VmRSS (bytes) over ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        stack += _children(p)
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--size", default="512x256")
    ap.add_argument("--keep", type=Path, default=None, help="Write the demo here and keep it.")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        out = args.keep or Path(tmp) / "demo"
        cmd = [sys.executable, "-m", "robustbench_seg", "demo", "--out", str(out),
               "--images", str(args.images), "--size", args.size]  # fmt: skip
        env = {**os.environ, "ROBUSTSEG_NO_PROGRESS": "1"}
        peak = 0
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, _ = proc.communicate()
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        if proc.returncode != 0:
            sys.exit(f"demo failed (exit {proc.returncode}):\n{stdout}")
        largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        steps = json.loads((out / "timing.json").read_text())["timings_s"]

    print(f"# robustseg demo, {args.images} images at {args.size}, {os.cpu_count()} cores "
          f"({platform.processor() or platform.machine()}), "
          f"{datetime.now(timezone.utc):%Y-%m-%d}")  # fmt: skip
    print(f"command: {' '.join(cmd[1:])}")
    print("| measure | value | budget | ratio to budget |")
    print("|---|---:|---:|---:|")
    print(f"| wall time (s) | {wall:.1f} | {BUDGET_S:.0f} | {wall / BUDGET_S:.2f} |")
    print(
        f"| peak memory, process tree (GB) | {peak / 1e9:.2f} | {BUDGET_BYTES / 1e9:.0f} | "
        f"{peak / BUDGET_BYTES:.2f} |"
    )
    print(f"| peak memory, largest process (GB) | {largest / 1e9:.2f} | | |")
    print("steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))


if __name__ == "__main__":
    main()

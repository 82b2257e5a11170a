"""Training throughput and peak memory of the SegFormer recipe (mmseg Cityscapes pipeline).

Usage: ``python benchmarks/bench_train.py [--iters 8] [--threads N] [--skip-gpu]``

Each case runs ``robustbench_seg.engine.train.train`` in a fresh subprocess on a synthetic
Cityscapes-shaped tree (four 1024x2048 images with block labels, recipe augmentation: resize
0.5-2.0 of 2048x1024, cat_max_ratio crop, flip, photometric distortion, in-process loading),
``init="none"``, no validation. Iterations per second are the median over the iterations after
the first two (warm-up); peak memory is the subprocess's ``getrusage().ru_maxrss`` (CPU) or
``torch.cuda.max_memory_allocated`` (GPU).

1. CPU: SegFormer-B0, crop 512x512, batch 2, fp32.
2. GPU (when one is available): SegFormer-B5, crop 1024x1024, batch 2, bf16.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys, time
import torch
sys.path.insert(0, sys.argv[1])
args = json.loads(sys.argv[2])
if args.pop("threads"):
    torch.set_num_threads(args["threads_n"])
args.pop("threads_n")
from robustbench_seg.engine.train import train
res = train(args.pop("model"), **args)
rows = [json.loads(x) for x in open(res.log)]
times = [r["time"] for r in rows][2:]
peak_gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
print(json.dumps({"times": times, "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  / 2**20, "gpu_gib": peak_gpu}))
"""


def make_tree(root: Path, n: int = 4) -> None:
    """Four 1024x2048 images (smooth noise) with 19-class block labels, as labelIds."""
    import cv2
    import numpy as np

    from robustbench_seg.data.cityscapes import train_id_to_label_id_lut

    rng = np.random.default_rng(0)
    lut = train_id_to_label_id_lut()
    for i in range(n):
        img = cv2.resize(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8), (2048, 1024))
        tid = np.kron(rng.integers(0, 19, (8, 16)), np.ones((128, 128), np.int64))
        stem = f"aachen_{i:06d}_000019"
        ip = root / "leftImg8bit" / "train" / "aachen" / f"{stem}_leftImg8bit.png"
        lp = root / "gtFine" / "train" / "aachen" / f"{stem}_gtFine_labelIds.png"
        ip.parent.mkdir(parents=True, exist_ok=True)
        lp.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(ip), img)
        cv2.imwrite(str(lp), lut[tid.astype(np.uint8)])


def run_case(root: Path, out: Path, case: dict, threads: int | None) -> dict:
    """Trains one case in a subprocess; returns it/s and peak memory."""
    args = {
        **case,
        "cityscapes_root": str(root),
        "out": str(out),
        "init": "none",
        "eval_every": 0,
        "workers": 0,
        "log_every": 1,
        "progress": False,
        "threads": threads is not None,
        "threads_n": threads or 0,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(ROOT), json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    median = statistics.median(res["times"])
    return {"it_per_s": 1.0 / median, "s_per_it": median, **res}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-gpu", action="store_true")
    args = parser.parse_args()
    import torch

    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"threads {args.threads or torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cs"
        make_tree(root)
        cpu = dict(
            model="segformer-b0",
            crop=512,
            batch_size=2,
            accumulate=1,
            iters=args.iters,
            precision="fp32",
            device="cpu",
        )
        r = run_case(root, Path(tmp) / "cpu", cpu, args.threads)
        print(
            f"CPU  B0 crop 512 batch 2 fp32: {r['it_per_s']:.3f} it/s ({r['s_per_it']:.2f} "
            f"s/it), peak RSS {r['rss_gib']:.2f} GiB"
        )
        if args.skip_gpu or not torch.cuda.is_available():
            print("GPU  B5 crop 1024 batch 2 bf16: no GPU")
            return
        gpu = dict(
            model="segformer-b5",
            crop=1024,
            batch_size=2,
            accumulate=1,
            iters=max(args.iters, 12),
            precision="bf16",
            device="cuda",
        )
        r = run_case(root, Path(tmp) / "gpu", gpu, args.threads)
        print(
            f"GPU  B5 crop 1024 batch 2 bf16 ({torch.cuda.get_device_name()}): "
            f"{r['it_per_s']:.2f} it/s, peak allocated {r['gpu_gib']:.2f} GiB, "
            f"peak RSS {r['rss_gib']:.2f} GiB"
        )


if __name__ == "__main__":
    main()

"""What checking a cached checkpoint against its catalog sha256 on every use costs.

Writes a checkpoint the size of SegFormer-B5's (84,607,955 fp32 parameters, 338 MB) to a
temporary folder, then times ``io.sha256_file`` on it (what ``models.weights.verify_sha256``
reads) and, for scale, ``models.convert.load_pickle`` of the same file (the read that follows
the check). Both from the page cache (the file was just written), median of ``--repeat`` runs;
prints MB/s and the seconds for the catalog's checkpoint sizes.

Run: .venv/bin/python benchmarks/bench_weights_hash.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

from robustbench_seg.io import sha256_file
from robustbench_seg.models.convert import load_pickle

# fp32 parameters of the checkpoints a cached catalog file holds: SegFormer-B5 (DESIGN.md) and
# mmseg's DeepLabV3+ files with their auxiliary heads (tests/data/mmseg_deeplabv3plus_keys.json).
SIZES = {
    "segformer-b5": 84_607_955 * 4,
    "deeplabv3plus-r101": 62_710_831 * 4,
    "deeplabv3plus-r50": 43_666_428 * 4,
    "deeplabv3plus-mobilenetv2": 15_288_856 * 4,
}


def _timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = 84_607_955
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b5.pth"
        g = torch.Generator().manual_seed(0)
        torch.save({"state_dict": {"w": torch.randn(n, generator=g)}}, path)
        size = path.stat().st_size
        hash_s = _timed(lambda: sha256_file(path), args.repeat)
        load_s = _timed(lambda: load_pickle(path), args.repeat)
    mb_s = size / 1e6 / hash_s
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    print(f"{platform.machine()}, SHA extensions: {'sha_ni' in flags}, torch {torch.__version__}")
    print(f"file {size / 1e6:.1f} MB, median of {args.repeat}, from the page cache")
    print(f"sha256: {hash_s:.3f} s = {mb_s:.0f} MB/s; load_pickle of the same file: {load_s:.3f} s")
    for name, nbytes in SIZES.items():
        print(f"  {name} ({nbytes / 1e6:.0f} MB): sha256 {nbytes / 1e6 / mb_s:.2f} s per use")


if __name__ == "__main__":
    main()

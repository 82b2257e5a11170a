"""Cost of the input checks that evaluate runs before its first cell, on 500 Cityscapes-sized
images (2048x1024, as the val split).

Measured in one run, same files, warm page cache:
  * checks: ``check_pairs`` (every PNG checked whole, every label map decoded and its ids
    checked) and ``check_tree`` (each source image's sha256 against the tree's metadata, every
    variant of the 72-variant protocol present);
  * reference: one decode of every image and label (what the clean cell reads anyway), i.e.
    the cost of 1 of the 73 cells' input side.
Printed: seconds and the ratio checks / reference.

Run: .venv/bin/python benchmarks/bench_input_checks.py [--images 500] [--size 2048x1024]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2

from corruptions import make_protocol
from robustbench_seg.data.cityscapes import check_pairs, list_pairs, load_label
from robustbench_seg.data.cityscapes_c import METADATA, PIXELS, check_tree, variant_path
from robustbench_seg.data.images import read_rgb
from robustbench_seg.data.synthetic import render_image
from robustbench_seg.sizes import parse_size


def make_dataset(root: Path, n: int, h: int, w: int) -> None:
    """``n`` val pairs: 10 distinct synthetic street scenes (real label statistics), copied."""
    scenes = []
    for k in range(10):
        image, labels = render_image(0, "val", k, (h, w))
        ok1, png = cv2.imencode(".png", image[:, :, ::-1])
        ok2, lab = cv2.imencode(".png", labels)
        scenes.append((png.tobytes(), lab.tobytes()))
    for i in range(n):
        city = f"city{i % 3}"
        stem = f"{city}_{i:06d}_000019"
        ip = root / "leftImg8bit/val" / city / f"{stem}_leftImg8bit.png"
        lp = root / "gtFine/val" / city / f"{stem}_gtFine_labelIds.png"
        ip.parent.mkdir(parents=True, exist_ok=True)
        lp.parent.mkdir(parents=True, exist_ok=True)
        ip.write_bytes(scenes[i % 10][0])
        lp.write_bytes(scenes[i % 10][1])


def make_tree(tree: Path, root: Path, pairs, variants) -> None:
    """A tree's metadata with the sources' sha256 and an empty file for every variant (only
    their presence is checked)."""
    sources = {
        p.image.rel_path: hashlib.sha256(p.image.path.read_bytes()).hexdigest() for p in pairs
    }
    meta = {"dataset": "cityscapes-c", "split": "val", "pixels": PIXELS, "sources": sources,
            "cityscapes_root": str(root)}  # fmt: skip
    tree.mkdir(parents=True)
    (tree / METADATA).write_text(json.dumps(meta))
    for pair in pairs:
        for c, s in variants:
            path = variant_path(tree, c, s, pair.image)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--size", default="2048x1024", help="WxH")
    args = ap.parse_args()
    h, w = parse_size(args.size)
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    try:
        root = tmp / "cs"
        make_dataset(root, args.images, h, w)
        pairs = list_pairs(root, "val")
        variants = make_protocol("benchmark", "protocol").variants()
        make_tree(tmp / "tree", root, pairs, variants)
        for _ in range(2):  # the second pass runs on a warm page cache
            t0 = time.perf_counter()
            for pair in pairs:
                image = read_rgb(pair.image.path)
                load_label(pair, image.shape[:2])
            reference = time.perf_counter() - t0
            t0 = time.perf_counter()
            check_pairs(pairs)
            t_pairs = time.perf_counter() - t0
            t0 = time.perf_counter()
            check_tree(tmp / "tree", pairs, variants, split="val", root=root)
            t_tree = time.perf_counter() - t0
        checks = t_pairs + t_tree
        print(f"machine: {platform.processor() or platform.machine()}, "
              f"{datetime.now(timezone.utc):%Y-%m-%d}")  # fmt: skip
        print(f"{len(pairs)} images at {w}x{h}, {len(variants)} variants each")
        print(f"check_pairs (PNG chunks + label decode): {t_pairs:.2f} s")
        print(
            f"check_tree (source sha256 + {len(pairs) * len(variants)} files present): {t_tree:.2f} s"
        )
        print(f"reference, one decode of every image and label: {reference:.2f} s")
        print(f"checks / reference: {checks / reference:.2f}x "
              f"(= {checks / reference / 73:.3f} of the input side of a 73-cell study)")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

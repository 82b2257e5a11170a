"""A tiny Cityscapes-shaped tree for tests: natural-photo crops and random labelIds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.conftest import natural_image


def make_fake_cityscapes(
    root: Path, n_per_city=(2, 1), split="val", size=(64, 128), seed=0
) -> list[str]:
    """Write ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and ``gtFine`` labelIds; returns ids."""
    rng = np.random.default_rng(seed)
    ids = []
    h, w = size
    k = 0
    for ci, n in enumerate(n_per_city):
        city = ["aachen", "bochum", "cologne"][ci]
        for j in range(n):
            stem = f"{city}_{j:06d}_000019"
            img = natural_image(k % 4, h, w)
            k += 1
            ip = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            lp = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ip), img[:, :, ::-1])
            cv2.imwrite(str(lp), rng.integers(0, 34, size=(h, w), dtype=np.uint8))
            ids.append(f"{city}/{stem}")
    return ids

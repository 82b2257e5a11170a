"""The PNG writer: lossless for every decoder, deterministic; the structural check."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from robustbench_seg.data.png import check_png, encode_png, write_png_atomic
from robustbench_seg.errors import RobustSegError


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 53, 3), (64, 128, 3), (40, 31)])
def test_lossless_with_pil_and_cv2(shape):
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    data = encode_png(img)
    assert data == encode_png(img)
    pil = np.asarray(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(pil, img)
    flag = cv2.IMREAD_UNCHANGED
    dec = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    np.testing.assert_array_equal(dec[..., ::-1] if img.ndim == 3 else dec, img)


def test_atomic_write_and_check(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    sha, n = write_png_atomic(tmp_path / "a" / "x.png", img)
    assert len(sha) == 64 and n == (tmp_path / "a" / "x.png").stat().st_size
    assert check_png(tmp_path / "a" / "x.png") == (50, 70)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["x.png"]
    data = (tmp_path / "a" / "x.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[:-30])
    with pytest.raises(RobustSegError, match="truncated"):
        check_png(tmp_path / "t.png")
    flipped = bytearray(data)
    flipped[60] ^= 0xFF
    (tmp_path / "c.png").write_bytes(bytes(flipped))
    with pytest.raises(RobustSegError, match="bad CRC"):
        check_png(tmp_path / "c.png")
    (tmp_path / "j.png").write_bytes(b"\xff\xd8\xff" + data)
    with pytest.raises(RobustSegError, match="not a PNG"):
        check_png(tmp_path / "j.png")

"""Reading images and label maps (PNG spec, ISO/IEC 15948; JPEG through Pillow), and checking
a dataset's files before any work.

What is read, and how:

- images are 8-bit RGB. Grayscale images are repeated to three channels, the alpha channel of
  RGBA and grayscale+alpha images is dropped (not composited), palette images are expanded to
  their colours, 1/2/4-bit grayscale is scaled to 0..255. 16-bit images are refused (no
  silent rescaling: OpenCV would divide by 256 and a 16-bit file holding 0..255 would turn
  black).
- label maps are 8-bit, one channel (grayscale, or a palette PNG, read as its indices); anything
  else is refused.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robustbench_seg.errors import RobustSegError

__all__ = ["ImageInfo", "check_image_file", "file_shape", "image_info", "read_label", "read_rgb"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # (ISO/IEC 15948, 5.2); png.py writes and checks with it
# PNG colour type -> channels (ISO/IEC 15948, 11.2.2)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_KIND = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says.

    Attributes:
        height, width: Pixels.
        bit_depth: Bits per sample (8 for JPEG).
        kind: ``RGB``, ``RGBA``, ``grayscale``, ``grayscale+alpha``, ``palette``, or the
            Pillow mode of other formats.
        format: ``PNG``, ``JPEG``, ...
    """

    height: int
    width: int
    bit_depth: int
    kind: str
    format: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def image_info(path: str | os.PathLike, head: bytes | None = None) -> ImageInfo:
    """The header of an image file, without decoding its pixels.

    Raises:
        RobustSegError: Not an image (or a PNG whose header is cut or corrupt).
        OSError: The file cannot be read (a failure of the system, not of the input).
    """
    if head is None:
        with open(path, "rb") as fh:
            head = fh.read(33)
    if head.startswith(PNG_SIGNATURE):
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise RobustSegError(f"corrupt PNG (no IHDR header): {path}")
        w, h, depth, color = struct.unpack(">IIBB", head[16:26])
        if color not in _PNG_KIND:
            raise RobustSegError(f"corrupt PNG (colour type {color}): {path}")
        return ImageInfo(h, w, depth, _PNG_KIND[color], "PNG")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            mode, fmt = im.mode, im.format or "?"
    except UnidentifiedImageError:
        raise RobustSegError(f"not an image file (PNG, JPEG, ...): {path}") from None
    depth = {"I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(mode, 8)
    return ImageInfo(h, w, depth, {"L": "grayscale", "LA": "grayscale+alpha"}.get(mode, mode), fmt)


def check_image_info(info: ImageInfo, path: str | os.PathLike) -> ImageInfo:
    """Refuses what :func:`read_rgb` would not read as it is documented (16-bit, odd modes)."""
    if info.bit_depth > 8:
        raise RobustSegError(
            f"{path} is a {info.bit_depth}-bit {info.kind} image; robustseg reads 8-bit images "
            "(convert it to 8 bits per channel first)"
        )
    if info.format != "PNG" and info.kind not in ("RGB", "grayscale", "RGBA", "P", "CMYK"):
        raise RobustSegError(f"{path}: unsupported image mode {info.kind}; use 8-bit RGB")
    if info.height < 1 or info.width < 1:
        raise RobustSegError(f"{path} is an empty image ({info.width}x{info.height})")
    return info


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB ``(H, W, 3)`` (conversions in the module docstring).

    Raises:
        RobustSegError: Not decodable, or 16-bit.
        OSError: The file cannot be read.
    """
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise RobustSegError(f"cannot decode image {path} (truncated, corrupt or not an image)")
    if img.dtype != np.uint8:
        bits = img.dtype.itemsize * 8
        raise RobustSegError(
            f"{path} is a {bits}-bit image; robustseg reads 8-bit images (convert it to 8 bits "
            "per channel first)"
        )
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    if img.shape[2] == 2:  # grayscale + alpha
        return np.ascontiguousarray(np.repeat(img[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Decode a label map to uint8 ``(H, W)``: 8-bit grayscale, or a palette PNG's indices.

    Raises:
        RobustSegError: Not decodable, 16-bit, or several channels (a colour image).
        OSError: The file cannot be read.
    """
    import cv2

    info = image_info(path)
    if info.format == "PNG" and info.kind == "palette":
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im, dtype=np.uint8)
    data = np.fromfile(str(path), dtype=np.uint8)
    label = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if label is None:
        raise RobustSegError(f"cannot decode label map {path} (truncated, corrupt or not an image)")
    if label.dtype != np.uint8 or label.ndim != 2:
        what = f"{label.dtype.itemsize * 8}-bit" if label.dtype != np.uint8 else "a colour image"
        raise RobustSegError(
            f"label map {path} is {what}; expected 8-bit, one channel (labelIds or labelTrainIds)"
        )
    return label


def check_image_file(
    path: str | os.PathLike, *, digest: bool = False
) -> tuple[tuple[int, int], str | None]:
    """Checks an image file that :func:`read_rgb` reads, reading it once: a PNG whole (every
    chunk's CRC, no decoding), other formats by their header.

    Args:
        path: The file.
        digest: Also return the sha256 of its bytes (what a corrupted tree records).

    Returns:
        ``((height, width), sha256 or None)``.

    Raises:
        RobustSegError: Not an image, cut or corrupt, 16-bit, or an unsupported mode.
        OSError: The file cannot be read.
    """
    from robustbench_seg.data.png import check_png_bytes

    with open(path, "rb") as fh:
        head = fh.read(33)
        png = head.startswith(PNG_SIGNATURE)
        raw = head + fh.read() if png or digest else head  # another format: its header only
    if png:
        check_png_bytes(raw, path)
    shape = check_image_info(image_info(path, head), Path(path)).shape
    return shape, hashlib.sha256(raw).hexdigest() if digest else None


def file_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file that :func:`read_rgb` reads (:func:`check_image_file`)."""
    return check_image_file(path)[0]

"""Synthetic city: procedural street scenes in the Cityscapes layout (Cordts et al. 2016)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from robustbench_seg.data.cityscapes import IMAGE_SUFFIX, LABELS
from robustbench_seg.data.datasets import FOG_BETAS, foggy_suffix
from robustbench_seg.data.png import write_png_atomic
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import check_dir, claim_dir, write_json_atomic
from robustbench_seg.procs import check_workers, run_pool
from robustbench_seg.sizes import format_size

LABEL_SUFFIX = "_gtFine_labelIds.png"
METADATA = "synthetic_city.json"
# Bump when the renderer changes its pixels: a re-run refuses to mix versions in one folder.
RENDERER_VERSION = 1
SPLIT_INDEX = {"train": 0, "val": 1}
# Fake cities, disjoint between splits as in Cityscapes; image i goes to city i % len(cities).
CITIES = {"train": ("alphaburg", "betadorf", "gammastadt"), "val": ("deltaheim", "epsilonau")}
FRAME = 19  # Cityscapes' annotated frames are *_000019
MIN_SIZE = (64, 128)  # (H, W)

_ID = {name: lid for name, lid, _ in LABELS}
EGO, GROUND = _ID["ego vehicle"], _ID["ground"]
ROAD, SIDEWALK, BUILDING, WALL, FENCE = (
    _ID[n] for n in ("road", "sidewalk", "building", "wall", "fence")
)
POLE, LIGHT, SIGN = _ID["pole"], _ID["traffic light"], _ID["traffic sign"]
VEGETATION, TERRAIN, SKY = _ID["vegetation"], _ID["terrain"], _ID["sky"]
PERSON, RIDER, CAR, TRUCK, BUS = (_ID[n] for n in ("person", "rider", "car", "truck", "bus"))
TRAIN, MOTORCYCLE, BICYCLE = _ID["train"], _ID["motorcycle"], _ID["bicycle"]

_SHIFT = 4  # cv2 drawing with 1/16-pixel vertex precision
_SUB = 1 << _SHIFT
_Z_MIN = 0.5  # metres; projections clamp depth here
_Z_FAR = 2000.0
_PX_LIMIT = 16000.0  # pixel coordinates beyond this get clipped before cv2 sees them
_STREET_END = 260.0  # metres of street that get buildings and objects

# Per-labelId texture amplitudes (pixel noise, 2-px grain, blotches ~1/16 frame), relative.
_TEXTURE = {
    ROAD: (0.05, 0.05, 0.06), SIDEWALK: (0.04, 0.04, 0.05), GROUND: (0.06, 0.06, 0.08),
    BUILDING: (0.03, 0.03, 0.06), WALL: (0.05, 0.07, 0.12), FENCE: (0.03, 0.03, 0.05),
    POLE: (0.02, 0.02, 0.04), LIGHT: (0.02, 0.02, 0.02), SIGN: (0.02, 0.02, 0.03),
    VEGETATION: (0.10, 0.30, 0.18), TERRAIN: (0.10, 0.16, 0.15), SKY: (0.004, 0.0, 0.02),
    PERSON: (0.03, 0.04, 0.03), RIDER: (0.03, 0.04, 0.03), CAR: (0.015, 0.02, 0.02),
    TRUCK: (0.015, 0.02, 0.02), BUS: (0.015, 0.02, 0.02), TRAIN: (0.015, 0.02, 0.02),
    MOTORCYCLE: (0.02, 0.02, 0.04), BICYCLE: (0.02, 0.02, 0.04), EGO: (0.01, 0.0, 0.03),
}  # fmt: skip
_TEXTURE_LUT = np.zeros((3, 256), np.float32)
for _lid, _amp in _TEXTURE.items():
    _TEXTURE_LUT[:, _lid] = _amp
# Cast shadows darken only the ground (objects standing in them keep their own shading).
_GROUND_LUT = np.zeros(256, bool)
_GROUND_LUT[[ROAD, SIDEWALK, GROUND, TERRAIN]] = True

# Base colours (RGB, 0-255); every instance jitters them.
_FACADES = (
    (190, 175, 150), (212, 202, 182), (150, 150, 148), (158, 92, 72), (200, 188, 140),
    (168, 178, 186), (226, 224, 218), (118, 108, 98), (182, 140, 120), (140, 150, 130),
)  # fmt: skip
_CAR_COLOURS = (
    (225, 225, 225), (30, 30, 32), (165, 168, 172), (95, 98, 102), (160, 25, 25),
    (30, 55, 130), (20, 30, 60), (40, 80, 50), (190, 175, 140), (210, 170, 30),
)  # fmt: skip
_BIG_COLOURS = ((235, 235, 230), (200, 40, 35), (230, 190, 30), (40, 90, 170), (50, 130, 70))
_SKIN = ((230, 190, 160), (200, 150, 115), (150, 100, 70), (95, 65, 45))
_SKIES = {  # (top, horizon)
    "clear": ((60, 110, 185), (175, 200, 225)),
    "overcast": ((165, 170, 178), (205, 207, 210)),
    "dusk": ((80, 90, 140), (235, 170, 120)),
}

# Shapes in metres (lateral, up) for billboards: sign pictograms, two-wheelers and their riders.
_ARROW = np.array([[-0.1, -0.5], [0.1, -0.5], [0.1, 0.1], [0.3, 0.1], [0, 0.55], [-0.3, 0.1],
                   [-0.1, 0.1]])  # fmt: skip
_BIKE_JOINTS = {"rh": (-0.52, 0.34), "bb": (-0.05, 0.3), "seat": (-0.2, 0.85),
                "head": (0.38, 0.85), "fh": (0.52, 0.34), "bar": (0.33, 1.0)}  # fmt: skip
_BIKE_TUBES = (("rh", "bb"), ("bb", "seat"), ("seat", "rh"), ("seat", "head"), ("bb", "head"),
               ("head", "fh"), ("head", "bar"))  # fmt: skip
_BIKE_SADDLE = np.array([[-0.3, 0.86], [-0.1, 0.86], [-0.12, 0.92], [-0.3, 0.9]])
_BIKE_POSE = {"hip": (-0.18, 0.95), "shoulder": (0.12, 1.48), "hand": (0.33, 1.02),
              "foot": (0.0, 0.3)}  # fmt: skip
_MOTO_BODY = np.array([[-0.85, 0.55], [-0.55, 0.82], [-0.1, 0.8], [0.15, 0.97], [0.45, 0.97],
                       [0.6, 0.62], [0.35, 0.36], [-0.3, 0.36]])  # fmt: skip
_MOTO_SEAT = np.array([[-0.6, 0.78], [-0.1, 0.78], [-0.12, 0.86], [-0.55, 0.86]])
_MOTO_POSE = {"hip": (-0.3, 0.88), "shoulder": (0.0, 1.42), "hand": (0.45, 1.05),
              "foot": (0.1, 0.45)}  # fmt: skip


# ----------------------------------------------------------------------------- canvas


class _Scene:
    """Camera, lighting and the two canvases (float RGB, labelIds) of one image."""

    def __init__(self, rng: np.random.Generator, h: int, w: int, depth: bool = False) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.f = w * rng.uniform(0.95, 1.25)  # Cityscapes: f ~ 1.1 W
        self.cx = w * rng.uniform(0.42, 0.58)
        self.cy = h * rng.uniform(0.36, 0.5)  # horizon row
        self.hc = rng.uniform(1.2, 1.7)  # camera height, metres
        self.z_bot = 0.8 * self.f * self.hc / (h - self.cy)  # nearer than the bottom row
        self.img = np.zeros((h, w, 3), np.float32)
        self.lab = np.full((h, w), SKY, np.uint8)
        # metres, what is drawn last is seen; only kept when asked for (fog)
        self.depth = np.full((h, w), np.inf, np.float32) if depth else None
        self._z_hint: float | None = None  # the depth of the billboard about to be filled
        self.shadow = np.ones((h, w), np.float32)
        self.weather = str(rng.choice(list(_SKIES), p=[0.55, 0.3, 0.15]))
        elev, azim = rng.uniform(0.3, 1.0), rng.uniform(-np.pi, np.pi)
        self.sun = np.array(
            [np.cos(elev) * np.sin(azim), np.sin(elev), np.cos(elev) * np.cos(azim)]
        )
        overcast = self.weather == "overcast"
        self.ambient = 0.8 if overcast else rng.uniform(0.4, 0.55)
        self.direct = 0.2 if overcast else rng.uniform(0.55, 0.8)
        self.cast = not overcast
        self.ground_light = self.light((0.0, 1.0, 0.0))
        # Cast shadows keep the ambient part only.
        self.shadow_factor = self.ambient / (self.ambient + self.direct * max(self.sun[1], 0.05))

    def light(self, normal: tuple[float, float, float]) -> float:
        """Brightness of a face with this outward normal (1 ~ a face lit at 45 degrees)."""
        lit = self.ambient + self.direct * max(0.0, float(np.dot(normal, self.sun)))
        return lit / (self.ambient + 0.7 * self.direct)

    def uv(self, p: np.ndarray | list) -> np.ndarray:
        """Project world points (..., 3) in metres (x right, y up, z forward) to pixels (..., 2)."""
        p = np.asarray(p, np.float64)
        s = self.f / np.maximum(p[..., 2], _Z_MIN)
        out = np.empty(p.shape[:-1] + (2,))
        out[..., 0] = self.cx + s * p[..., 0]
        out[..., 1] = self.cy + s * (self.hc - p[..., 1])
        return out

    def fill(self, polys: np.ndarray, colour, label: int | None) -> None:
        """Fill pixel polygons, (N, 2) or (K, N, 2), in the image and (unless None) the labels."""
        pts = self._clipped(polys)
        z, self._z_hint = self._z_hint, None
        if not pts:
            return
        colour = tuple(min(max(float(c), 0.0), 255.0) for c in colour)
        cv2.fillPoly(self.img, pts, colour, cv2.LINE_8, _SHIFT)
        if label is not None:
            cv2.fillPoly(self.lab, pts, int(label), cv2.LINE_8, _SHIFT)
        if z is not None and self.depth is not None:
            cv2.fillPoly(self.depth, pts, float(z), cv2.LINE_8, _SHIFT)

    def ring(self, centre: np.ndarray, radius: float, width: float, colour, label: int) -> None:
        """A circle outline (pixels; width at least 1 px) in the image and the labels."""
        c = tuple(int(v) for v in np.round(np.asarray(centre) * _SUB))
        axes = (int(radius * _SUB),) * 2
        thick = max(1, int(round(width)))
        colour = tuple(float(v) for v in colour)
        cv2.ellipse(self.img, c, axes, 0, 0, 360, colour, thick, cv2.LINE_8, _SHIFT)
        cv2.ellipse(self.lab, c, axes, 0, 0, 360, int(label), thick, cv2.LINE_8, _SHIFT)
        z, self._z_hint = self._z_hint, None
        if z is not None and self.depth is not None:
            cv2.ellipse(self.depth, c, axes, 0, 0, 360, float(z), thick, cv2.LINE_8, _SHIFT)

    def _clipped(self, polys: np.ndarray) -> list[np.ndarray]:
        """Polygons as cv2 points (1/16 px); those reaching far off-frame are clipped first:
        cv2 rasterizes in fixed point and misplaces edges with vertices beyond ~32k px."""
        polys = np.asarray(polys, np.float64)
        if polys.size == 0:
            return []
        if polys.ndim == 2:
            polys = polys[None]
        if -_PX_LIMIT < polys.min() and polys.max() < _PX_LIMIT:
            return list(np.round(polys * _SUB).astype(np.int32))
        lo, hi = np.full(2, -_PX_LIMIT), np.full(2, _PX_LIMIT)
        far = ((polys < lo) | (polys > hi)).any(axis=(1, 2))
        out = list(np.round(polys[~far] * _SUB).astype(np.int32))
        for poly in polys[far]:
            clipped = _clip_polygon(poly, lo, hi)
            if len(clipped) >= 3:
                out.append(np.round(clipped * _SUB).astype(np.int32))
        return out

    def fill3d(self, pts: np.ndarray, colour, label: int | None) -> None:
        """Fill planar 3-D polygons, (N, 3) or (K, N, 3); their depth is their plane's, pixel
        by pixel."""
        self._z_hint = None
        uv = self.uv(pts)
        self.fill(uv, colour, label)
        if self.depth is None:
            return
        pts = np.asarray(pts, np.float64)
        if pts.ndim == 2:  # (N, 3) -> (1, N, 3)
            pts, uv = pts[None], uv[None]
        for poly, poly_uv in zip(pts, uv, strict=True):
            self._plane_depth(poly, poly_uv)

    def _plane_depth(self, pts: np.ndarray, uv: np.ndarray) -> None:
        """Depth of the polygon's plane (``pts``, projected to ``uv``) where the polygon covers
        the image: a pixel's ray ``(z (u - cx) / f, hc - z (v - cy) / f, z)`` meets the plane
        ``n . p = d``."""
        normal = np.cross(pts[1] - pts[0], pts[2] - pts[0])  # Newell's method would average
        if not np.any(normal):
            return
        poly = self._clipped(uv)
        if not poly:
            return
        x0, y0 = np.floor(np.min([p.min(0) for p in poly], 0) / _SUB).astype(int)
        x1, y1 = np.ceil(np.max([p.max(0) for p in poly], 0) / _SUB).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.w), min(y1, self.h)
        if x0 >= x1 or y0 >= y1:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        shift = np.array([x0, y0]) * _SUB
        cv2.fillPoly(mask, [p - shift for p in poly], 1, cv2.LINE_8, _SHIFT)
        vv, uu = np.nonzero(mask)
        u, v = uu + x0 + 0.0, vv + y0 + 0.0
        d = float(normal @ pts[0])
        den = normal[0] * (u - self.cx) / self.f - normal[1] * (v - self.cy) / self.f + normal[2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (d - normal[1] * self.hc) / den
        z = np.where(np.isfinite(z) & (z > 0), z, np.mean(pts[:, 2]))
        self.depth[vv + y0, uu + x0] = np.maximum(z, _Z_MIN)

    def cast_shadow(self, ground_pts: np.ndarray) -> None:
        """Darken ground polygons (x, z) pairs, (N, 2) or (K, N, 2), as a cast shadow."""
        if not self.cast:
            return
        g = np.asarray(ground_pts, np.float64)
        p = np.stack([g[..., 0], np.zeros(g.shape[:-1]), g[..., 1]], -1)
        pts = self._clipped(self.uv(p))
        cv2.fillPoly(self.shadow, pts, float(self.shadow_factor), cv2.LINE_8, _SHIFT)

    def shadow_offset(self, height: float) -> np.ndarray:
        """Ground (x, z) displacement of the shadow of a point ``height`` m up."""
        k = height / max(self.sun[1], 0.15)
        return -k * np.array([self.sun[0], self.sun[2]])

    def box(self, x0, x1, y0, y1, z0, z1, colour, label: int | None) -> None:
        """An axis-aligned box: the faces a camera at x=0 sees, each lit by the sun."""
        c = np.asarray(colour, np.float64)
        if x1 < 0:
            q = _rect_x(x1, y0, y1, z0, z1)
            self.fill3d(q, c * self.light((1, 0, 0)), label)
        elif x0 > 0:
            q = _rect_x(x0, y0, y1, z0, z1)
            self.fill3d(q, c * self.light((-1, 0, 0)), label)
        if y1 < self.hc:
            q = [[x0, y1, z0], [x1, y1, z0], [x1, y1, z1], [x0, y1, z1]]
            self.fill3d(q, c * self.light((0, 1, 0)), label)
        q = _rect_z(x0, x1, y0, y1, z0)
        self.fill3d(q, c * self.light((0, 0, -1)), label)

    def billboard(self, x: float, z: float, pts: np.ndarray, flip: float = 1.0) -> np.ndarray:
        """Pixels of points (..., 2) given in metres (lateral, up) on the plane at depth z."""
        u0, v0 = self.uv([x, 0.0, z])
        s = self.f / max(z, _Z_MIN)
        self._z_hint = max(z, _Z_MIN)
        pts = np.asarray(pts, np.float64)
        return np.stack([u0 + flip * s * pts[..., 0], v0 - s * pts[..., 1]], -1)


def _clip_polygon(poly: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of polygon (N, 2) inside the box [lo, hi]."""
    for axis in (0, 1):
        for bound, sign in ((lo[axis], 1.0), (hi[axis], -1.0)):
            if len(poly) == 0:
                return poly
            d = sign * (poly[:, axis] - bound)  # >= 0 inside
            nxt = np.roll(poly, -1, axis=0)
            dn = np.roll(d, -1)
            out = []
            for p, q, dp, dq in zip(poly, nxt, d, dn, strict=True):
                if dp >= 0:
                    out.append(p)
                if (dp >= 0) != (dq >= 0):
                    out.append(p + (q - p) * (dp / (dp - dq)))
            poly = np.array(out, np.float64).reshape(-1, 2)
    return poly


def _jitter(rng: np.random.Generator, base, gain: float = 0.12, shift: float = 10.0) -> np.ndarray:
    """A colour near ``base`` (overall gain, per-channel shift): no class has one exact colour."""
    c = np.asarray(base, np.float64) * rng.uniform(1 - gain, 1 + gain) + rng.normal(0, shift, 3)
    return np.clip(c, 0, 255)


def _seg(p, q, width: float) -> np.ndarray:
    """A quad (4, 2) of ``width`` around the segment p-q (metres or pixels)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    d = q - p
    n = np.array([-d[1], d[0]]) / max(np.hypot(*d), 1e-9) * width / 2
    return np.array([p + n, q + n, q - n, p - n])


def _ellipse(c, rx: float, ry: float, n: int = 16, jitter: np.ndarray | None = None) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 if jitter is None else 1.0 + jitter
    return np.stack([c[0] + rx * r * np.cos(t), c[1] + ry * r * np.sin(t)], -1)


def _rect(x0, x1, y0, y1) -> np.ndarray:
    """The rectangle [x0, x1] x [y0, y1] as a (4, 2) polygon."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _rect_z(x0, x1, y0, y1, z) -> np.ndarray:
    """The rectangle [x0, x1] x [y0, y1] in the plane at depth z, as a (4, 3) quad."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], np.float64)


def _rect_x(x, y0, y1, z0, z1) -> np.ndarray:
    """The rectangle [y0, y1] x [z0, z1] in the side plane at x, as a (4, 3) quad."""
    return np.array([[x, y0, z0], [x, y1, z0], [x, y1, z1], [x, y0, z1]], np.float64)


def _bars_x(x, y0, y1, zs: np.ndarray, width: float) -> np.ndarray:
    """(K, 4, 3) vertical bars [y0, y1] x [z, z + width] in the side plane at x."""
    zs = np.asarray(zs, np.float64)
    return np.stack(
        [
            np.stack(np.broadcast_arrays(x, y, zs + dz), -1)
            for y, dz in ((y0, 0.0), (y1, 0.0), (y1, width), (y0, width))
        ],
        1,
    )


def _ground(x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    return np.array([[x0, 0, z0], [x1, 0, z0], [x1, 0, z1], [x0, 0, z1]], np.float64)


def _ground_quads(x0, x1, z0, z1) -> np.ndarray:
    """(K, 4, 3) ground quads from arrays of bounds."""
    x0, x1, z0, z1 = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(a, np.float64)) for a in (x0, x1, z0, z1))
    )
    zero = np.zeros_like(x0)
    return np.stack(
        [np.stack(c, -1) for c in ((x0, zero, z0), (x1, zero, z0), (x1, zero, z1), (x0, zero, z1))],
        1,
    )


def _face_grid(origin, axis, length, y0, y1, pitch, size, margin) -> np.ndarray:
    """(K, 4, 3) window quads on a vertical face: ``axis`` is its horizontal unit vector,
    ``pitch``/``size``/``margin`` are (horizontal, vertical) pairs in metres."""
    origin, axis = np.asarray(origin, np.float64), np.asarray(axis, np.float64)
    nc = int((length - 2 * margin[0] + pitch[0] - size[0]) // pitch[0])
    nr = int((y1 - y0 - margin[1] + pitch[1] - size[1]) // pitch[1])
    if nc < 1 or nr < 1:
        return np.zeros((0, 4, 3))
    slack = length - 2 * margin[0] - (nc - 1) * pitch[0] - size[0]
    s0 = margin[0] + slack / 2 + pitch[0] * np.arange(nc)
    t0 = y0 + margin[1] + pitch[1] * np.arange(nr)
    s0, t0 = (a.ravel() for a in np.meshgrid(s0, t0))
    corners = [(s0, t0), (s0 + size[0], t0), (s0 + size[0], t0 + size[1]), (s0, t0 + size[1])]
    up = np.array([0.0, 1.0, 0.0])
    return np.stack([origin + s[:, None] * axis + t[:, None] * up for s, t in corners], 1)


# ----------------------------------------------------------------------------- static world


def _draw_sky(sc: _Scene) -> None:
    top, bottom = (_jitter(sc.rng, c, 0.08, 8) for c in _SKIES[sc.weather])
    t = np.clip(np.arange(sc.h, dtype=np.float32) / max(sc.cy, 1.0), 0, 1) ** 0.8
    sc.img[:] = (top[None, :] * (1 - t[:, None]) + bottom[None, :] * t[:, None])[:, None, :]


def _draw_skyline(sc: _Scene) -> None:
    """Distant blocks and tree lines at the horizon (hundreds of metres away)."""
    rng = sc.rng
    x = -rng.uniform(300, 600)
    while x < 600:
        wdt = rng.uniform(15, 70)
        z = rng.uniform(350, 900)
        if rng.random() < 0.65:
            hb = rng.uniform(8, 45)
            sc.fill3d(
                _rect_z(x, x + wdt, 0, hb, z), _jitter(rng, (150, 152, 160), 0.15, 12), BUILDING
            )
        else:
            n = 12
            xs = np.linspace(x, x + wdt, n)
            ys = rng.uniform(6, 16, n)
            pts = np.concatenate(
                [np.stack([xs, ys, np.full(n, z)], -1), [[x + wdt, 0, z], [x, 0, z]]]
            )
            sc.fill3d(pts, _jitter(rng, (70, 90, 60), 0.15, 8), VEGETATION)
        x += wdt * rng.uniform(0.6, 1.2)


@dataclass
class _Street:
    """The street's cross-section (x in metres; the camera is at x=0) and layout."""

    lane_w: float
    lanes: list[tuple[float, int]]  # (centre x, +1 same direction as camera / -1 oncoming)
    road: tuple[float, float]
    curb: tuple[float, float]  # road-side edge of each sidewalk (verges in between)
    edge: tuple[float, float]  # outer edge of each sidewalk
    parking: tuple[bool, bool]
    tram_x: float | None
    junction: tuple[float, float] | None  # z range of a cross street


def _plan_street(sc: _Scene) -> _Street:
    rng = sc.rng
    lw = rng.uniform(2.9, 3.6)
    n = int(rng.choice([2, 3, 4], p=[0.45, 0.25, 0.3]))
    n_oncoming = n // 2 if rng.random() < 0.85 else 0
    own = int(rng.integers(n_oncoming, n))
    left = -(own + 0.5) * lw + rng.uniform(-0.5, 0.5)
    lanes = [(left + (i + 0.5) * lw, -1 if i < n_oncoming else 1) for i in range(n)]
    parking = (bool(rng.random() < 0.4), bool(rng.random() < 0.5))
    rl = left - 2.3 * parking[0]
    rr = left + n * lw + 2.3 * parking[1]
    verge = [rng.uniform(1.0, 3.0) if rng.random() < 0.3 else 0.0 for _ in range(2)]
    cl, cr = rl - verge[0], rr + verge[1]
    el, er = cl - rng.uniform(1.8, 5.0), cr + rng.uniform(1.8, 5.0)
    tram = lanes[int(rng.integers(0, n))][0] if rng.random() < 0.35 else None
    zj = rng.uniform(18, 70)
    junction = (zj, zj + rng.uniform(10, 18)) if rng.random() < 0.55 else None
    return _Street(lw, lanes, (rl, rr), (cl, cr), (el, er), parking, tram, junction)


def _draw_ground(sc: _Scene, st: _Street, outer: tuple[int, int]) -> None:
    rng, z0 = sc.rng, sc.z_bot
    g = sc.ground_light
    outer_col = {TERRAIN: (100, 122, 60), GROUND: (128, 118, 100), SIDEWALK: (150, 145, 140)}
    for side, lab in zip((-1, 1), outer, strict=True):
        sc.fill3d(_ground(0, side * 400, z0, _Z_FAR), _jitter(rng, outer_col[lab]) * g, lab)
    walk = _jitter(rng, rng.choice([(150, 146, 142), (165, 150, 140), (140, 140, 145)]), 0.15, 8)
    for x0, x1 in ((st.edge[0], st.curb[0]), (st.curb[1], st.edge[1])):
        sc.fill3d(_ground(x0, x1, z0, _Z_FAR), walk * g, SIDEWALK)
        if abs(x1 - x0) > 0:  # paving joints, near part only
            zs = np.arange(np.ceil(z0), 45.0, rng.uniform(0.6, 1.2))
            q = _ground_quads(x0, x1, zs, zs + 0.03)
            sc.fill3d(q, walk * g * 0.82, None)
    for c0, c1 in ((st.road[0], st.curb[0]), (st.road[1], st.curb[1])):
        if c0 != c1:  # grass verge
            sc.fill3d(_ground(c0, c1, z0, _Z_FAR), _jitter(rng, (95, 125, 55)) * g, TERRAIN)
    asphalt = _jitter(rng, (92, 92, 96), 0.2, 5)
    sc.fill3d(_ground(st.road[0], st.road[1], z0, _Z_FAR), asphalt * g, ROAD)
    # Repairs: darker patches.
    for _ in range(int(rng.integers(0, 5))):
        x = rng.uniform(*st.road)
        z = rng.uniform(z0, 60)
        sc.fill3d(
            _ground(x, x + rng.uniform(0.5, 3), z, z + rng.uniform(1, 6)),
            asphalt * g * rng.uniform(0.75, 0.9),
            ROAD,
        )
    if st.junction is not None:
        ja, jb = st.junction
        sc.fill3d(_ground(-400, 400, ja, jb), asphalt * g, ROAD)
    # Curbs: a lighter strip on the sidewalk side of the road edge.
    curb = _jitter(rng, (180, 178, 172), 0.08, 5) * g
    for x in st.curb:
        sc.fill3d(_ground(x - 0.09, x + 0.09, z0, _Z_FAR), curb, SIDEWALK)
    _draw_markings(sc, st, asphalt)
    if st.junction is not None:  # junction repaints the cross street over sidewalks and curbs
        sc.fill3d(_ground(st.curb[0] - 400, st.curb[0], *st.junction), asphalt * g, ROAD)
        sc.fill3d(_ground(st.curb[1], st.curb[1] + 400, *st.junction), asphalt * g, ROAD)


def _draw_markings(sc: _Scene, st: _Street, asphalt: np.ndarray) -> None:
    rng, z0, g = sc.rng, sc.z_bot, sc.ground_light
    paint = (
        np.clip(_jitter(rng, (225, 225, 220), 0.05, 4) * rng.uniform(0.7, 1.0), asphalt, 255) * g
    )
    w = rng.uniform(0.1, 0.16)
    lanes = st.lanes
    xl, xr = lanes[0][0] - st.lane_w / 2, lanes[-1][0] + st.lane_w / 2
    quads = [_ground_quads([xl - w, xr], [xl, xr + w], z0, _Z_FAR)]  # edge lines
    dash, period = rng.uniform(2, 4), rng.uniform(7, 12)
    zs = np.arange(z0 - rng.uniform(0, period), 300, period)
    for (a, da), (b, db) in zip(lanes[:-1], lanes[1:], strict=True):
        x = (a + b) / 2
        if da != db:  # centre line: solid
            quads.append(_ground_quads(x - w, x + w, z0, _Z_FAR))
        else:
            quads.append(_ground_quads(x - w / 2, x + w / 2, zs, zs + dash))
    if st.junction is not None:  # zebra crossing before the junction
        ja = st.junction[0]
        xs = np.arange(st.road[0], st.road[1] - 0.5, 1.0)
        quads.append(_ground_quads(xs, xs + 0.5, ja - 4.5, ja - 1.0))
        quads.append(_ground_quads(st.road[0], st.road[1], ja - 0.6, ja - 0.3))  # stop line
    q = np.concatenate([np.asarray(a).reshape(-1, 4, 3) for a in quads])
    sc.fill3d(q, paint, ROAD)
    if st.tram_x is not None:  # rails
        steel = _jitter(rng, (170, 170, 168), 0.1, 5) * g
        xs = st.tram_x + np.array([-0.75, 0.72])
        sc.fill3d(_ground_quads(xs, xs + 0.05, z0, _Z_FAR), steel, ROAD)


# ----------------------------------------------------------------------------- buildings, walls


def _building(
    sc: _Scene, side: int, xf: float, depth: float, za: float, zb: float, hb: float
) -> None:
    """A block whose road-facing facade is the plane x=xf, from za to zb; windows on it."""
    rng = sc.rng
    colour = _jitter(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.12, 10)
    x0, x1 = sorted((xf, xf + side * depth))
    if sc.cast:  # the block's shadow on the ground: hull of its footprint and the roof's shadow
        foot = _rect(x0, x1, za, zb)
        hull = cv2.convexHull(
            np.concatenate([foot, foot + sc.shadow_offset(hb)]).astype(np.float32)
        )
        sc.cast_shadow(hull[:, 0, :])
    sc.box(x0, x1, 0, hb, za, zb, colour, BUILDING)
    glass = _jitter(
        rng, rng.choice([(45, 55, 70), (70, 80, 95), (30, 35, 40), (110, 125, 140)]), 0.2, 10
    )
    frame = colour * rng.uniform(0.75, 1.15)
    floor_h = rng.uniform(2.8, 3.7)
    pitch = (rng.uniform(2.2, 4.2), floor_h)
    size = (rng.uniform(0.8, min(1.8, pitch[0] - 0.5)), rng.uniform(1.1, floor_h - 0.9))
    ground_floor = rng.uniform(3.0, 4.5)
    nside, nfront = (1.0 if side < 0 else -1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
    faces = [((xf, 0, za), (0, 0, 1), zb - za, nside), ((x0, 0, za), (1, 0, 0), x1 - x0, nfront)]
    for origin, axis, length, normal in faces:
        shade = sc.light(normal)
        if rng.random() < 0.5:  # cornice
            o = np.asarray(origin, np.float64)
            a = np.asarray(axis, np.float64)
            q = np.array(
                [
                    o + [0, hb - 0.5, 0],
                    o + a * length + [0, hb - 0.5, 0],
                    o + a * length + [0, hb, 0],
                    o + [0, hb, 0],
                ]
            )
            sc.fill3d(q, frame * shade, BUILDING)
        win = _face_grid(origin, axis, length, ground_floor, hb - 0.6, pitch, size, (1.0, 0.9))
        if len(win):
            k = rng.integers(0, 3, len(win))  # three glass tones per facade
            for i, t in enumerate((0.8, 1.0, 1.35)):
                sc.fill3d(win[k == i], glass * t * (0.6 + 0.4 * shade), BUILDING)
        shop = _face_grid(
            origin,
            axis,
            length,
            0.0,
            ground_floor,
            (rng.uniform(3, 6), 9.0),
            (rng.uniform(1.5, 2.6), ground_floor - 1.0),
            (0.8, 0.4),
        )
        if len(shop) and rng.random() < 0.7:
            sc.fill3d(shop, glass * 0.7 * (0.6 + 0.4 * shade), BUILDING)


def _wall(sc: _Scene, x: float, side: int, za: float, zb: float) -> None:
    rng = sc.rng
    h = rng.uniform(0.8, 2.8)
    colour = _jitter(rng, rng.choice([(160, 155, 145), (150, 88, 68), (125, 120, 110)]), 0.12, 8)
    x0, x1 = sorted((x, x + side * rng.uniform(0.25, 0.5)))
    sc.box(x0, x1, 0, h, za, zb, colour, WALL)
    # Mortar / panel joints on the road-facing face (image only).
    xf = x1 if side < 0 else x0
    zs = np.arange(za, zb, rng.uniform(1.0, 3.0))
    q = _bars_x(xf, 0.0, h, zs, 0.05)
    sc.fill3d(q, colour * 0.7 * sc.light((-side, 0, 0)), WALL)


def _fence(sc: _Scene, x: float, side: int, za: float, zb: float) -> None:
    """A fence along x from za to zb: the label covers it whole, the image shows bars or planks
    over what is behind (metal) or solid planks (wood)."""
    rng = sc.rng
    h = rng.uniform(0.9, 2.0)
    shade = sc.light((-side, 0, 0))
    face = sc.uv(_rect_x(x, 0, h, za, zb))
    cv2.fillPoly(sc.lab, [np.round(face * _SUB).astype(np.int32)], FENCE, cv2.LINE_8, _SHIFT)
    metal = rng.random() < 0.6
    colour = _jitter(rng, (85, 92, 90) if metal else (125, 95, 65), 0.15, 8) * shade
    if not metal:  # wooden planks: solid with dark gaps
        sc.fill(face, colour, None)
    spacing = rng.uniform(0.1, 0.2) if metal else rng.uniform(0.12, 0.2)
    zs = np.arange(za, zb, spacing)
    bw = 0.025 if metal else 0.02
    bars = _bars_x(x, 0.0, h, zs, bw)
    sc.fill3d(bars, colour * (1.0 if metal else 0.55), None)
    for y in (0.1, h - 0.08):  # rails
        sc.fill3d(_rect_x(x, y, y + 0.08, za, zb), colour, None)
    zs = np.arange(za, zb, rng.uniform(2.0, 3.0))  # posts
    posts = _bars_x(x, 0.0, h + 0.05, zs, 0.08)
    sc.fill3d(posts, colour * 0.8, FENCE)


def _hedge(sc: _Scene, x: float, side: int, za: float, zb: float) -> None:
    rng = sc.rng
    h = rng.uniform(0.7, 1.8)
    x0, x1 = sorted((x, x + side * rng.uniform(0.6, 1.2)))
    sc.box(x0, x1, 0, h, za, zb, _jitter(rng, (55, 90, 40), 0.2, 8), VEGETATION)


def _tree(sc: _Scene, x: float, z: float, scale: float = 1.0) -> None:
    rng = sc.rng
    trunk_h = rng.uniform(1.8, 4.0) * scale
    r = rng.uniform(1.4, 3.5) * scale
    top = trunk_h + r * 0.8
    if sc.cast:
        off = sc.shadow_offset(top)
        c = np.array([x, z]) + off
        sc.cast_shadow(_ellipse(c, r, r * 0.8, 14))
    bark = _jitter(rng, (80, 65, 50), 0.2, 8)
    tw = rng.uniform(0.2, 0.4) * scale
    trunk = np.array(
        [[-tw / 2, 0], [tw / 2, 0], [tw / 3, trunk_h + r * 0.3], [-tw / 3, trunk_h + r * 0.3]]
    )
    sc.fill(sc.billboard(x, z, trunk), bark * sc.light((0, 0, -1)), VEGETATION)
    leaf = _jitter(
        rng, rng.choice([(55, 90, 40), (75, 110, 45), (45, 75, 40), (95, 115, 50)]), 0.15, 8
    )
    blobs = []
    for _ in range(int(rng.integers(3, 7))):
        c = (rng.normal(0, r * 0.45), top + rng.normal(0, r * 0.3))
        rb = r * rng.uniform(0.45, 0.75)
        blobs.append((c, rb))
    blobs.sort(key=lambda b: b[0][1])  # lower (shaded) blobs first, upper (lit) ones on top
    for c, rb in blobs:
        jit = np.convolve(rng.normal(0, 0.12, 20), np.ones(3) / 3, mode="same")
        pts = _ellipse(c, rb, rb * rng.uniform(0.8, 1.0), 20, jit)
        t = (c[1] - top) / r
        sc.fill(
            sc.billboard(x, z, pts), leaf * (0.85 + 0.25 * t) * sc.light((0, 0.7, -0.7)), VEGETATION
        )


def _bush(sc: _Scene, x: float, z: float) -> None:
    rng = sc.rng
    r = rng.uniform(0.4, 1.2)
    jit = np.convolve(rng.normal(0, 0.15, 18), np.ones(3) / 3, mode="same")
    pts = _ellipse((0, r * 0.7), r * rng.uniform(1, 1.8), r * 0.8, 18, jit)
    pts[:, 1] = np.maximum(pts[:, 1], 0)
    sc.fill(sc.billboard(x, z, pts), _jitter(sc.rng, (60, 95, 45), 0.2, 8), VEGETATION)


# ----------------------------------------------------------------------------- street furniture


def _pole_quad(x: float, width: float, y0: float, y1: float) -> np.ndarray:
    return _rect(-width / 2, width / 2, y0, y1) + [x, 0]


def _sign_shape(
    rng: np.random.Generator, size: float
) -> tuple[np.ndarray, np.ndarray | None, tuple, tuple]:
    """Outline (N, 2) around (0, 0) in metres, optional inner shape, rim and inner colours."""
    kind = int(rng.integers(0, 6))
    r = size / 2
    if kind == 0:  # prohibition: red ring, white inside
        return (
            _ellipse((0, 0), r, r, 20),
            _ellipse((0, 0), r * 0.75, r * 0.75, 20),
            (200, 30, 35),
            (235, 235, 235),
        )
    if kind == 1:  # mandatory: blue disc, white arrow
        return _ellipse((0, 0), r, r, 20), _ARROW * r, (30, 75, 165), (235, 235, 235)
    if kind == 2:  # warning: red triangle, white inside
        t = np.array([[-1, -0.85], [1, -0.85], [0, 0.95]]) * r
        return t, t * 0.65 + [0, -0.05 * r], (200, 30, 35), (240, 240, 235)
    if kind == 3:  # priority: yellow diamond with white rim
        d = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]]) * r
        return d, d * 0.65, (235, 235, 230), (230, 185, 30)
    if kind == 4:  # information: blue/green rectangle
        q = _rect(-1.3, 1.3, -0.8, 0.8) * r
        return q, q * 0.8, (235, 235, 235), (30, 75, 165) if rng.random() < 0.6 else (30, 120, 70)
    # back of a sign: plain grey disc or rectangle
    shape = _ellipse((0, 0), r, r, 20) if rng.random() < 0.5 else _rect(-1, 1, -1, 1) * r
    return shape, None, (150, 152, 155), (150, 152, 155)


def _signpost(sc: _Scene, x: float, z: float, n_signs: int = 1, height: float = 2.6) -> None:
    rng = sc.rng
    pole_col = _jitter(rng, rng.choice([(120, 120, 120), (70, 80, 75), (150, 150, 150)]), 0.1, 6)
    w = rng.uniform(0.06, 0.1)
    top = height + 0.6 * n_signs
    sc.fill(sc.billboard(x, z, _pole_quad(0, w, 0, top)), pole_col * sc.light((0, 0, -1)), POLE)
    y = top - 0.35
    for _ in range(n_signs):
        outline, inner, rim, fill = _sign_shape(rng, rng.uniform(0.55, 0.85))
        shade = sc.light((0, 0, -1)) * rng.uniform(0.85, 1.1)
        sc.fill(sc.billboard(x, z, outline + [0, y]), _jitter(rng, rim, 0.08, 6) * shade, SIGN)
        if inner is not None:
            sc.fill(sc.billboard(x, z, inner + [0, y]), _jitter(rng, fill, 0.06, 5) * shade, SIGN)
        y -= rng.uniform(0.65, 0.9)


def _light_head(sc: _Scene, x: float, z: float, y: float, facing: bool) -> None:
    """A traffic light housing (0.32 x 0.95 m) at height y; lamps when it faces the camera."""
    rng = sc.rng
    housing = _jitter(rng, (35, 35, 35) if rng.random() < 0.7 else (90, 90, 55), 0.2, 6)
    w, h = 0.32, 0.95
    box = _rect(-w / 2, w / 2, 0, h) + [0, y]
    sc.fill(sc.billboard(x, z, box), housing * sc.light((0, 0, -1)), LIGHT)
    if not facing:
        return
    on = int(rng.integers(0, 3))
    lamps = ((255, 45, 35), (255, 175, 20), (40, 235, 130))
    for i, col in enumerate(lamps):
        c = (0, y + h - 0.17 - i * 0.305)
        colour = np.asarray(col, np.float64) if i == on else np.asarray(col) * 0.18 + 25
        sc.fill(sc.billboard(x, z, _ellipse(c, 0.1, 0.1, 12)), colour, LIGHT)


def _light_pole(sc: _Scene, x: float, z: float, over_road: float = 0.0) -> None:
    """A traffic-light pole; with ``over_road`` (m, signed) an arm carries a second head."""
    rng = sc.rng
    pole_col = _jitter(rng, rng.choice([(110, 110, 110), (60, 70, 65), (40, 40, 40)]), 0.1, 6)
    lit = pole_col * sc.light((0, 0, -1))
    height = 3.2 if not over_road else rng.uniform(5.0, 6.5)
    sc.fill(sc.billboard(x, z, _pole_quad(0, 0.14, 0, height)), lit, POLE)
    if over_road:
        arm = _seg((0, height - 0.3), (over_road, height - 0.3), 0.12)
        sc.fill(sc.billboard(x, z, arm), lit, POLE)
        _light_head(sc, x + over_road * 0.85, z, height - 1.4, True)
    _light_head(sc, x + 0.25 * np.sign(-x), z, rng.uniform(2.0, 2.4), rng.random() < 0.85)


def _lamp_post(sc: _Scene, x: float, z: float) -> None:
    rng = sc.rng
    col = _jitter(rng, rng.choice([(120, 120, 120), (60, 75, 70), (45, 45, 45)]), 0.1, 6)
    lit = col * sc.light((0, 0, -1))
    h = rng.uniform(5.5, 9.0)
    sc.fill(sc.billboard(x, z, [[-0.11, 0], [0.11, 0], [0.06, h], [-0.06, h]]), lit, POLE)
    reach = -np.sign(x) * rng.uniform(0.8, 2.2)
    sc.fill(sc.billboard(x, z, _seg((0, h - 0.05), (reach, h + 0.2), 0.08)), lit, POLE)
    head = np.array([[-0.35, -0.12], [0.35, -0.12], [0.25, 0.08], [-0.25, 0.08]]) + [
        reach,
        h + 0.12,
    ]
    sc.fill(sc.billboard(x, z, head), lit * 0.9, POLE)
    if rng.random() < 0.25:  # a sign on the lamp post
        outline, inner, rim, fill = _sign_shape(rng, 0.6)
        y = rng.uniform(2.3, 2.8)
        sc.fill(sc.billboard(x, z, outline + [0, y]), _jitter(rng, rim, 0.08, 6), SIGN)
        if inner is not None:
            sc.fill(sc.billboard(x, z, inner + [0, y]), _jitter(rng, fill, 0.06, 5), SIGN)


# ----------------------------------------------------------------------------- people, two-wheelers


def _clothes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    hsv = np.array(
        [[[rng.integers(0, 180), rng.integers(30, 230), rng.integers(40, 230)]]], np.uint8
    )
    shirt = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)
    trousers = _jitter(
        rng, rng.choice([(35, 40, 60), (30, 30, 30), (80, 80, 85), (170, 150, 120), (60, 80, 120)])
    )
    skin = _jitter(rng, _SKIN[int(rng.integers(len(_SKIN)))], 0.08, 6)
    hair = _jitter(
        rng, rng.choice([(30, 25, 20), (90, 60, 35), (160, 130, 80), (120, 120, 120)]), 0.15, 6
    )
    return shirt, trousers, skin, hair


def _person(sc: _Scene, x: float, z: float) -> None:
    rng = sc.rng
    hp = rng.uniform(1.5, 1.95)
    shirt, trousers, skin, hair = _clothes(rng)
    shade = sc.light((0, 0, -1))
    flip = 1.0 if rng.random() < 0.5 else -1.0
    stride = rng.uniform(-1, 1)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    if rng.random() < 0.5:  # side view, walking
        for s in (stride, -stride):
            parts.append((_seg((0, 0.5), (s * 0.17, 0.02), 0.08), trousers))
        parts.append((np.array([[-0.07, 0.8], [0.08, 0.8], [0.07, 0.47], [-0.07, 0.47]]), shirt))
        parts.append((_seg((0, 0.78), (-stride * 0.12, 0.47), 0.05), shirt))
    else:  # front / back view
        for s in (-1, 1):
            parts.append(
                (_seg((s * 0.055, 0.5), (s * (0.06 + 0.02 * stride), 0.02), 0.075), trousers)
            )
            parts.append((_seg((s * 0.13, 0.78), (s * 0.16, 0.47), 0.05), shirt))
        parts.append((np.array([[-0.12, 0.81], [0.12, 0.81], [0.1, 0.47], [-0.1, 0.47]]), shirt))
    if rng.random() < 0.3:  # a bag or coat panel
        parts.append((_rect(0.05, 0.16, 0.45, 0.62), _jitter(rng, (60, 45, 35), 0.4, 20)))
    parts.append((_ellipse((0, 0.92), 0.058, 0.07, 12), skin))
    parts.append((_ellipse((0, 0.945), 0.06, 0.05, 12), hair))
    for pts, col in parts:
        sc.fill(sc.billboard(x, z, pts * hp, flip), col * shade, PERSON)


def _bicycle_side(sc: _Scene, x: float, z: float, flip: float, rider: bool) -> None:
    """A bicycle seen from the side (thin tubes, tyres as rings), with or without its rider."""
    rng = sc.rng
    frame_col = _jitter(rng, rng.choice(_CAR_COLOURS), 0.15, 10) * sc.light((0, 0, -1))
    s, r = sc.f / z, _BIKE_JOINTS["fh"][1]
    for cx in (-0.52, 0.52):
        sc.ring(sc.billboard(x, z, np.array([cx, r]), flip), r * s, 0.05 * s, (25, 25, 25), BICYCLE)
    quads = np.array([_seg(_BIKE_JOINTS[a], _BIKE_JOINTS[b], 0.04) for a, b in _BIKE_TUBES])
    sc.fill(sc.billboard(x, z, quads, flip), frame_col, BICYCLE)
    sc.fill(sc.billboard(x, z, _BIKE_SADDLE, flip), (30, 30, 30), BICYCLE)
    if rider:
        _rider(sc, x, z, flip, **_BIKE_POSE)


def _motorcycle_side(sc: _Scene, x: float, z: float, flip: float, rider: bool) -> None:
    """A motorcycle seen from the side, with or without its rider (helmet)."""
    rng = sc.rng
    colour = _jitter(rng, rng.choice(_BIG_COLOURS + _CAR_COLOURS[:3]), 0.15, 10)
    for cx in (-0.7, 0.7):
        tyre = sc.billboard(x, z, _ellipse((cx, 0.32), 0.32, 0.32, 16), flip)
        sc.fill(tyre, (22, 22, 22), MOTORCYCLE)
        rim = sc.billboard(x, z, _ellipse((cx, 0.32), 0.14, 0.14, 12), flip)
        sc.fill(rim, (140, 140, 140), MOTORCYCLE)
    body = sc.billboard(x, z, _MOTO_BODY, flip)
    sc.fill(body, colour * sc.light((0, 0, -1)), MOTORCYCLE)
    fork = sc.billboard(x, z, _seg((0.45, 0.97), (0.7, 0.32), 0.07), flip)
    sc.fill(fork, (60, 60, 60), MOTORCYCLE)
    sc.fill(sc.billboard(x, z, _MOTO_SEAT, flip), (25, 25, 25), MOTORCYCLE)
    if rider:
        _rider(sc, x, z, flip, helmet=True, **_MOTO_POSE)


def _rider(sc, x, z, flip, hip, shoulder, hand, foot, helmet: bool = False) -> None:
    rng = sc.rng
    shirt, trousers, skin, hair = _clothes(rng)
    shade = sc.light((0, 0, -1))
    knee = (hip[0] + 0.3, hip[1] - 0.15)
    parts = [
        (_seg(hip, knee, 0.13), trousers),
        (_seg(knee, foot, 0.1), trousers),
        (np.array([_seg(hip, shoulder, 0.3)]).reshape(4, 2), shirt),
        (_seg(shoulder, hand, 0.08), shirt),
    ]
    head_c = (shoulder[0] + 0.08, shoulder[1] + 0.16)
    parts.append((_ellipse(head_c, 0.1, 0.12, 12), skin))
    top = _jitter(rng, rng.choice(_BIG_COLOURS), 0.2, 10) if helmet else hair
    parts.append((_ellipse((head_c[0], head_c[1] + 0.03), 0.115 if helmet else 0.1, 0.1, 12), top))
    for pts, col in parts:
        sc.fill(sc.billboard(x, z, pts, flip), col * shade, RIDER)


def _two_wheeler_rear(sc: _Scene, x: float, z: float, motor: bool) -> None:
    """A cyclist or motorcyclist seen from behind (in a lane)."""
    rng = sc.rng
    label = MOTORCYCLE if motor else BICYCLE
    tyre = _rect(-0.07, 0.07, 0, 0.62) * (1.0 if motor else 0.4)
    sc.fill(sc.billboard(x, z, tyre), (25, 25, 25), label)
    if motor:
        body = _jitter(rng, rng.choice(_BIG_COLOURS), 0.15, 10) * sc.light((0, 0, -1))
        sc.fill(
            sc.billboard(x, z, np.array([[-0.28, 0.4], [0.28, 0.4], [0.33, 0.85], [-0.33, 0.85]])),
            body,
            label,
        )
        sc.fill(sc.billboard(x, z, _rect(-0.08, 0.08, 0.55, 0.62)), (230, 40, 30), label)
    else:
        sc.fill(sc.billboard(x, z, _seg((-0.28, 1.0), (0.28, 1.0), 0.03)), (40, 40, 40), label)
    shirt, trousers, skin, hair = _clothes(rng)
    shade = sc.light((0, 0, -1))
    y0 = 0.85 if motor else 0.9
    parts = [
        (_seg((-0.12, y0), (-0.14, 0.3), 0.11), trousers),
        (_seg((0.12, y0), (0.14, 0.3), 0.11), trousers),
        (np.array([[-0.2, y0], [0.2, y0], [0.22, y0 + 0.58], [-0.22, y0 + 0.58]]), shirt),
        (_seg((-0.2, y0 + 0.52), (-0.3, 1.0), 0.08), shirt),
        (_seg((0.2, y0 + 0.52), (0.3, 1.0), 0.08), shirt),
        (
            _ellipse((0, y0 + 0.72), 0.11 if motor else 0.09, 0.13, 12),
            _jitter(rng, rng.choice(_BIG_COLOURS), 0.2, 10) if motor else hair,
        ),
    ]
    for pts, col in parts:
        sc.fill(sc.billboard(x, z, pts), col * shade, RIDER)


# ----------------------------------------------------------------------------- vehicles


def _wheel(xs: float, zc: float, r: float) -> np.ndarray:
    """A wheel on the vehicle side plane x=xs, centred at depth zc (perspective-correct)."""
    t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    pts = np.stack([np.full_like(t, xs), r + r * np.sin(t), zc + r * np.cos(t)], -1)
    return pts


def _vehicle_sides(x0: float, x1: float) -> float | None:
    return x1 if x1 < 0 else (x0 if x0 > 0 else None)


def _car(sc: _Scene, x: float, z0: float, facing: int) -> None:
    """A car centred at x, nearest point at depth z0; facing +1 shows its rear, -1 its front."""
    rng = sc.rng
    w, ln, h = rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.9), rng.uniform(1.38, 1.75)
    colour = _jitter(rng, _CAR_COLOURS[int(rng.integers(len(_CAR_COLOURS)))], 0.08, 8)
    x0, x1 = x - w / 2, x + w / 2
    z1 = z0 + ln
    if sc.cast:
        c = _rect(x0, x1, z0, z1) + [[-0.2, -0.2], [0.2, -0.2], [0.2, 0.2], [-0.2, 0.2]]
        sc.cast_shadow(c)
    tyre = (20, 20, 20)
    for xa, xb in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
        sc.box(xa, xb, 0, 0.6, z0 + 0.55, z0 + 1.1, tyre, CAR)
    belt = 0.2 + 0.55 * (h - 0.2)
    sc.box(x0, x1, 0.2, belt, z0, z1, colour, CAR)
    near_gap, far_gap = (rng.uniform(0.7, 1.2), rng.uniform(1.1, 1.6))
    if facing < 0:
        near_gap, far_gap = far_gap, near_gap
    ca, cb = z0 + near_gap, z1 - far_gap
    sc.box(x0 + 0.12, x1 - 0.12, belt, h, ca, cb, colour, CAR)
    glass = _jitter(rng, (40, 48, 58), 0.25, 8) * rng.uniform(0.8, 1.3)
    # Near window on the cabin face; side windows; wheels on the visible side.
    sc.fill3d(
        [
            [x0 + 0.22, belt + 0.05, ca],
            [x1 - 0.22, belt + 0.05, ca],
            [x1 - 0.3, h - 0.06, ca],
            [x0 + 0.3, h - 0.06, ca],
        ],
        glass,
        CAR,
    )
    xs = _vehicle_sides(x0 + 0.12, x1 - 0.12)
    if xs is not None:
        sc.fill3d(
            [
                [xs, belt + 0.05, ca + 0.15],
                [xs, h - 0.08, ca + 0.3],
                [xs, h - 0.08, cb - 0.3],
                [xs, belt + 0.05, cb - 0.1],
            ],
            glass * 0.9,
            CAR,
        )
    xs = _vehicle_sides(x0, x1)
    if xs is not None:
        for zc in (z0 + 0.8, z1 - 0.8):
            sc.fill3d(_wheel(xs, zc, 0.33), tyre, CAR)
            sc.fill3d(_wheel(xs, zc, 0.15) + [0, 0.18, 0], (120, 120, 125), CAR)
    lamp = (210, 30, 30) if facing > 0 else (235, 235, 220)
    yl = belt - 0.28
    for xa, xb in ((x0 + 0.08, x0 + 0.4), (x1 - 0.4, x1 - 0.08)):
        sc.fill3d(_rect_z(xa, xb, yl, yl + 0.15, z0), lamp, CAR)
    sc.fill3d(_rect_z(x - 0.26, x + 0.26, 0.35, 0.46, z0), (225, 225, 215), CAR)


def _truck(sc: _Scene, x: float, z0: float, facing: int) -> None:
    rng = sc.rng
    w = rng.uniform(2.3, 2.55)
    lc, hc = rng.uniform(5.5, 9.0), rng.uniform(3.2, 4.0)
    cargo = _jitter(
        rng, rng.choice([(235, 235, 232), (170, 172, 175), (40, 80, 150), (170, 40, 35)]), 0.1, 8
    )
    cab = _jitter(rng, rng.choice(_BIG_COLOURS + _CAR_COLOURS[:3]), 0.1, 8)
    x0, x1 = x - w / 2, x + w / 2
    total = lc + 2.5
    if sc.cast:
        sc.cast_shadow(_rect(x0, x1, z0, z0 + total) + [0, -0.3])
    if facing > 0:
        parts = [("cargo", z0, z0 + lc), ("cab", z0 + lc + 0.3, z0 + total)]
    else:
        parts = [("cab", z0, z0 + 2.2), ("cargo", z0 + 2.5, z0 + total)]
    xs = _vehicle_sides(x0, x1)
    for za in (z0 + total - 1.4, z0 + 0.6):  # tyres, seen under the body from behind / ahead
        for xa in (x0 + 0.05, x1 - 0.55):
            sc.box(xa, xa + 0.5, 0, 1.0, za, za + 0.9, (20, 20, 20), TRUCK)
    for name, za, zb in sorted(parts, key=lambda p: -p[1]):
        if name == "cargo":
            sc.box(x0 + 0.3, x1 - 0.3, 0.4, 0.9, za + 0.3, zb, (40, 40, 40), TRUCK)  # chassis
            sc.box(x0, x1, 0.9, hc, za, zb, cargo, TRUCK)
            sc.fill3d(_rect_z(x - 0.02, x + 0.02, 1.0, hc - 0.1, za), cargo * 0.6, TRUCK)
            if xs is not None and rng.random() < 0.6:  # a logo band on the side
                sc.fill3d(
                    _rect_x(xs, 1.6, 2.3, za + 1, zb - 1),
                    _jitter(rng, rng.choice(_BIG_COLOURS), 0.2, 20),
                    TRUCK,
                )
        else:
            sc.box(x0, x1, 0.5, 2.9, za, zb, cab, TRUCK)
            glass = _jitter(rng, (40, 48, 58), 0.2, 8)
            sc.fill3d(_rect_z(x0 + 0.15, x1 - 0.15, 1.7, 2.7, za), glass, TRUCK)
            if xs is not None:
                sc.fill3d(_rect_x(xs, 1.7, 2.7, za + 0.2, zb - 0.9), glass, TRUCK)
    if xs is not None:
        for zc in np.linspace(z0 + 1.0, z0 + total - 1.0, 3):
            sc.fill3d(_wheel(xs, zc, 0.5), (20, 20, 20), TRUCK)
    for xa in (x0 + 0.1, x1 - 0.4):
        col = (210, 35, 30) if facing > 0 else (235, 235, 220)
        sc.fill3d(_rect_z(xa, xa + 0.3, 0.6, 0.8, z0), col, TRUCK)


def _bus(sc: _Scene, x: float, z0: float, facing: int) -> None:
    rng = sc.rng
    w, ln, h = (
        2.55,
        rng.uniform(10.5, 13.0) * (1.5 if rng.random() < 0.2 else 1.0),
        rng.uniform(2.9, 3.3),
    )
    colour = _jitter(rng, _BIG_COLOURS[int(rng.integers(len(_BIG_COLOURS)))], 0.08, 8)
    stripe = _jitter(rng, _BIG_COLOURS[int(rng.integers(len(_BIG_COLOURS)))], 0.1, 10)
    x0, x1, z1 = x - w / 2, x + w / 2, z0 + ln
    if sc.cast:
        sc.cast_shadow(_rect(x0, x1, z0, z1) + [0, -0.3])
    sc.box(x0, x1, 0.3, h, z0, z1, colour, BUS)
    glass = _jitter(rng, (35, 42, 50), 0.2, 8)
    xs = _vehicle_sides(x0, x1)
    if xs is not None:
        sc.fill3d(_rect_x(xs, 0.7, 0.95, z0 + 0.3, z1 - 0.3), stripe, BUS)
        sc.fill3d(_rect_x(xs, 1.15, 2.55, z0 + 0.4, z1 - 0.4), glass, BUS)
        zs = np.arange(z0 + 1.5, z1 - 0.5, rng.uniform(1.2, 1.8))  # window pillars
        q = _bars_x(xs, 1.15, 2.55, zs, 0.12)
        sc.fill3d(q, colour * sc.light((np.sign(-xs), 0, 0)), BUS)
        for zc in (z0 + 2.3, z1 - 2.8):
            sc.fill3d(_wheel(xs, zc, 0.5), (20, 20, 20), BUS)
    if facing > 0:
        sc.fill3d(_rect_z(x0 + 0.2, x1 - 0.2, 2.0, 2.8, z0), glass, BUS)
        lamp = (210, 35, 30)
    else:
        sc.fill3d(_rect_z(x0 + 0.1, x1 - 0.1, 1.0, 2.9, z0), glass, BUS)
        sc.fill3d(
            _rect_z(x0 + 0.3, x1 - 0.3, 2.9, 3.1, z0), (230, 150, 30), BUS
        )  # destination display
        lamp = (235, 235, 220)
    for xa in (x0 + 0.1, x1 - 0.4):
        sc.fill3d(_rect_z(xa, xa + 0.3, 0.55, 0.8, z0), lamp, BUS)


def _tram(sc: _Scene, x: float, z0: float) -> None:
    rng = sc.rng
    w, h = rng.uniform(2.3, 2.65), rng.uniform(3.3, 3.6)
    colour = _jitter(rng, rng.choice(_BIG_COLOURS + ((150, 150, 150),)), 0.08, 8)
    skirt = colour * rng.uniform(0.3, 0.6)
    x0, x1 = x - w / 2, x + w / 2
    nseg = int(rng.integers(2, 5))
    seg_l = rng.uniform(8, 11)
    zs = [(z0 + i * (seg_l + 0.4), z0 + i * (seg_l + 0.4) + seg_l) for i in range(nseg)]
    glass = _jitter(rng, (35, 42, 50), 0.2, 8)
    xs = _vehicle_sides(x0, x1)
    for za, zb in reversed(zs):
        sc.box(x0 + 0.15, x1 - 0.15, 0.4, h - 0.2, zb - 0.1, zb + 0.5, (45, 45, 45), TRAIN)  # joint
        sc.box(x0, x1, 0.35, h, za, zb, colour, TRAIN)
        if xs is not None:
            sc.fill3d(_rect_x(xs, 0.35, 0.8, za, zb), skirt, TRAIN)
            sc.fill3d(_rect_x(xs, 1.0, 2.6, za + 0.4, zb - 0.4), glass, TRAIN)
            zp = np.arange(za + 1.4, zb - 0.5, 1.3)
            q = _bars_x(xs, 1.0, 2.6, zp, 0.12)
            sc.fill3d(q, colour * sc.light((np.sign(-xs), 0, 0)), TRAIN)
    # Pantograph on the roof of the first segment: thin struts up to the contact bar.
    zc = z0 + seg_l * 0.5
    top = h + rng.uniform(0.9, 1.4)
    lit = (70, 70, 70)
    for (ya, za), (yb, zb) in (
        ((h, zc - 0.8), (h + (top - h) * 0.5, zc)),
        ((h + (top - h) * 0.5, zc), (top, zc - 0.6)),
    ):
        sc.fill3d(
            [[x - 0.03, ya, za], [x + 0.03, ya, za], [x + 0.03, yb, zb], [x - 0.03, yb, zb]],
            lit,
            TRAIN,
        )
    sc.fill3d(_rect_z(x - 0.8, x + 0.8, top, top + 0.06, zc - 0.6), lit, TRAIN)
    # Front: big windscreen, lights, dark skirt.
    sc.fill3d(
        [
            [x0 + 0.15, 1.1, z0],
            [x1 - 0.15, 1.1, z0],
            [x1 - 0.3, h - 0.3, z0],
            [x0 + 0.3, h - 0.3, z0],
        ],
        glass,
        TRAIN,
    )
    sc.fill3d(_rect_z(x0, x1, 0.35, 0.7, z0), skirt, TRAIN)
    for xa in (x0 + 0.15, x1 - 0.45):
        sc.fill3d(_rect_z(xa, xa + 0.3, 0.8, 0.95, z0), (240, 240, 225), TRAIN)


# ----------------------------------------------------------------------------- planning


_Item = tuple[float, Callable[..., None], tuple]
# Lane traffic: kind -> (probability, draw function, length in metres for the spacing).
_TRAFFIC = {
    "car": (0.78, _car, 4.8), "truck": (0.09, _truck, 11.0), "bus": (0.07, _bus, 14.0),
    "moto": (0.06, _two_wheeler_rear, 2.2),
}  # fmt: skip


def _plan_side(
    sc: _Scene, st: _Street, side: int, back: list[_Item], edge_items: list[_Item],
    street: list[_Item],
) -> int:  # fmt: skip
    """Plan one side of the street (-1 left, +1 right) into the three draw lists (each item is
    ``(depth, draw function, args)``); returns the labelId of the ground beyond the sidewalk."""
    rng, u = sc.rng, sc.rng.uniform
    i = 0 if side < 0 else 1
    edge, curb, road = st.edge[i], st.curb[i], st.road[i]
    junction = st.junction or (np.inf, np.inf)
    start = sc.z_bot * u(0.2, 0.9)
    gaps: list[tuple[float, float]] = []
    if rng.random() < 0.72:  # a row of buildings, with gaps and a cross street
        outer = GROUND if rng.random() < 0.6 else TERRAIN
        z = start
        while z < _STREET_END:
            if junction[0] - 1.5 <= z + 8 and z < junction[1]:
                gaps.append((z, junction[1] + 1.5))
                z = junction[1] + 1.5
            elif rng.random() < 0.15:  # a gap: a building further back, or trees
                gap = u(4, 16)
                gaps.append((z, z + gap))
                if rng.random() < 0.6:
                    args = (side, edge + side * u(8, 25), u(8, 20), z + gap * 0.3, z + gap + 15,
                            u(6, 25))  # fmt: skip
                    back.append((z + gap, _building, args))
                else:
                    for _ in range(int(rng.integers(1, 4))):
                        zt = z + u(0, gap)
                        back.append((zt, _tree, (edge + side * u(2, 10), zt)))
                z += gap
            else:
                ln = u(8, 40)
                if z < junction[0] < z + ln:
                    ln = junction[0] - 1.5 - z
                setback = u(0, 0.3) if rng.random() < 0.8 else u(3, 7)
                if ln > 2:
                    args = (side, edge + side * setback, u(10, 25), z, z + ln, u(7, 28))
                    back.append((z, _building, args))
                    if setback > 2:  # front yard: wall, fence or hedge at the sidewalk edge
                        fn = (_wall, _fence, _hedge)[int(rng.integers(0, 3))]
                        edge_items.append((z, fn, (edge, side, z, z + ln)))
                z += max(ln, 2.0)
    else:  # a park: grass, trees, bushes, maybe a building far behind
        outer = TERRAIN
        for _ in range(int(rng.integers(15, 35))):
            zt = u(sc.z_bot, 200)
            back.append((zt, _tree, (edge + side * u(1.5, 45), zt, u(0.9, 1.5))))
        for _ in range(int(rng.integers(3, 12))):
            zt = u(sc.z_bot, 80)
            back.append((zt, _bush, (edge + side * u(0.8, 10), zt)))
        if rng.random() < 0.4:
            args = (side, edge + side * u(40, 70), 20, 30, 30 + u(30, 80), u(10, 30))
            back.append((1e4, _building, args))
        gaps.append((start, _STREET_END))
    # Walls, fences and hedges along the sidewalk's outer edge (mostly in gaps).
    for fn, p in ((_wall, 0.5), (_fence, 0.55), (_hedge, 0.2)):
        if rng.random() < p:
            if gaps and rng.random() < 0.7:
                za, zb = gaps[int(rng.integers(len(gaps)))]
                zb = min(zb, za + u(5, 40))
            else:
                za = u(sc.z_bot, 60)
                zb = za + u(5, 30)
            if not (za < junction[1] and zb > junction[0] - 1):
                edge_items.append((za, fn, (edge - side * 0.05, side, za, zb)))
    # Street furniture along the curb.
    xp = curb + side * u(0.3, 0.6)
    z = u(sc.z_bot, 15)
    while z < 180:
        if not (junction[0] - 1 < z < junction[1] + 1):
            k = rng.random()
            if k < 0.45:
                street.append((z, _lamp_post, (xp, z)))
            elif k < 0.8:
                street.append((z, _signpost, (xp, z, int(rng.integers(1, 3)), u(2.2, 2.8))))
            else:
                street.append((z, _light_pole, (xp, z)))
        z += u(10, 30)
    if rng.random() < 0.5:  # avenue trees, on the verge when there is one
        xt = (road + curb) / 2 if curb != road else curb + side * u(1.0, 1.6)
        z = u(sc.z_bot, 12)
        while z < 200:
            if not (junction[0] - 2 < z < junction[1] + 2):
                street.append((z, _tree, (xt, z, u(0.8, 1.2))))
            z += u(7, 16)
    # Pedestrians and parked bicycles on the sidewalk.
    lo, hi = sorted((curb + side * 0.4, edge - side * 0.4))
    for _ in range(int(rng.poisson(4.0))):
        z = sc.z_bot + rng.exponential(25.0)
        street.append((z, _person, (u(lo, hi), z)))
    if rng.random() < 0.35:
        z = u(sc.z_bot + 2, 40)
        for k in range(int(rng.integers(1, 4))):
            street.append(
                (z + 0.7 * k, _bicycle_side, (hi if side > 0 else lo, z + 0.7 * k, 1.0, False))
            )
    return outer


def _plan_traffic(sc: _Scene, st: _Street, street: list[_Item]) -> None:
    """Plan vehicles in the lanes, parked vehicles, a tram, cyclists and the junction's users."""
    rng, u = sc.rng, sc.rng.uniform
    junction = st.junction or (np.inf, np.inf)
    kinds = list(_TRAFFIC)
    probs = np.array([p for p, _, _ in _TRAFFIC.values()])
    # Rarer classes get a boost so that most images hold some of them.
    forced = [k for k, p in (("truck", 0.45), ("bus", 0.4), ("moto", 0.35)) if rng.random() < p]
    for xc, facing in st.lanes:
        z = u(8, 25) if abs(xc) < st.lane_w / 2 else u(sc.z_bot, 25)  # own lane: a gap ahead
        while z < 220:
            if forced and z > 8 and rng.random() < 0.5:
                kind = forced.pop()
            else:
                kind = str(rng.choice(kinds, p=probs))
            _, fn, length = _TRAFFIC[kind]
            x = xc + rng.normal(0, 0.25)
            street.append((z, fn, (x, z, True) if fn is _two_wheeler_rear else (x, z, facing)))
            z += length + u(4, 12) + rng.exponential(30.0)
    if st.tram_x is not None:  # the tram's lane is cleared around it
        z = u(10, 90)
        street[:] = [
            it for it in street
            if not (abs(it[2][0] - st.tram_x) < 1.5 and z - 15 < it[0] < z + 45)
        ]  # fmt: skip
        street.append((z, _tram, (st.tram_x, z)))
    for side, parked in zip((-1, 1), st.parking, strict=True):
        x = st.road[0 if side < 0 else 1] - side * 1.15
        z = u(sc.z_bot - 3, 10)
        while parked and z < 150:
            if not (junction[0] - 6 < z < junction[1] + 1):
                flip = 1 if rng.random() < 0.7 else -1
                if rng.random() < 0.85:
                    street.append((z, _car, (x, z, flip)))
                else:
                    street.append((z + 1, _motorcycle_side, (x, z + 1, float(flip), False)))
            z += u(5.0, 9.0)
    for _ in range(int(rng.integers(0, 4))):  # cyclists at the right edge
        z = u(sc.z_bot + 3, 60)
        street.append((z, _two_wheeler_rear, (st.lanes[-1][0] + st.lane_w * 0.3, z, False)))
    if st.junction is None:
        if rng.random() < 0.6:  # a cyclist crossing
            z = u(sc.z_bot + 4, 50)
            street.append((z, _bicycle_side, (u(*st.road), z, 1.0, True)))
        return
    ja, jb = st.junction
    for _ in range(int(rng.integers(0, 6))):  # pedestrians on the zebra crossing
        z = ja - u(1.2, 4.2)
        street.append((z, _person, (u(*st.road), z)))
    for _ in range(int(rng.integers(1, 4))):  # two-wheelers crossing
        z = u(ja + 1, jb - 1)
        fn = _bicycle_side if rng.random() < 0.5 else _motorcycle_side
        street.append((z, fn, (u(*st.edge), z, 1.0 if rng.random() < 0.5 else -1.0, True)))
    for side in (-1, 1):  # traffic lights at the corners, some with an arm over the road
        if rng.random() < 0.85:
            xp = st.curb[0 if side < 0 else 1] + side * 0.5
            reach = -side * u(2.5, 6.0) if rng.random() < 0.5 else 0.0
            street.append((ja - 0.5, _light_pole, (xp, ja - 0.5, reach)))


def _draw_end_facade(sc: _Scene, st: _Street) -> None:
    """Buildings across the end of the street (a T-junction far ahead)."""
    rng = sc.rng
    z = rng.uniform(90, 300)
    x = -rng.uniform(150, 250)
    while x < 250:
        wdt = rng.uniform(10, 35)
        colour = _jitter(rng, _FACADES[int(rng.integers(len(_FACADES)))], 0.12, 10)
        hb = rng.uniform(8, 30)
        sc.box(x, x + wdt, 0, hb, z, z + 20, colour, BUILDING)
        glass = _jitter(rng, (55, 65, 80), 0.2, 10)
        win = _face_grid(
            (x, 0, z),
            (1, 0, 0),
            wdt,
            3.5,
            hb - 0.5,
            (rng.uniform(2.4, 4), rng.uniform(2.8, 3.6)),
            (1.2, 1.5),
            (0.8, 0.8),
        )
        sc.fill3d(win, glass * sc.light((0, 0, -1)), BUILDING)
        x += wdt


def _draw_ego(sc: _Scene) -> None:
    """The ego car's bonnet at the bottom (labelId 1, ignored like in Cityscapes)."""
    rng = sc.rng
    hh = sc.h * rng.uniform(0.05, 0.1)
    u = np.linspace(-0.05 * sc.w, 1.05 * sc.w, 24)
    v = sc.h - hh * (1 - 0.5 * ((u - sc.cx) / sc.w) ** 2)
    pts = np.concatenate(
        [np.stack([u, v], -1), [[1.05 * sc.w, sc.h + 5], [-0.05 * sc.w, sc.h + 5]]]
    )
    sc.fill(pts, _jitter(rng, rng.choice(_CAR_COLOURS), 0.1, 6) * 0.7, EGO)


# ----------------------------------------------------------------------------- finishing


def _noise(rng: np.random.Generator, h: int, w: int, factor: int) -> np.ndarray:
    """Unit-variance-ish smooth noise: normal at 1/factor resolution, resized up (cubic)."""
    small = rng.standard_normal(
        (max(2, -(-h // factor)), max(2, -(-w // factor))), dtype=np.float32
    )
    return cv2.resize(
        small, (w, h), interpolation=cv2.INTER_CUBIC if factor > 2 else cv2.INTER_LINEAR
    )


def _finish(sc: _Scene) -> np.ndarray:
    """Clouds, textures per class, cast shadows, global lighting, optics blur, sensor noise."""
    rng, h, w = sc.rng, sc.h, sc.w
    lab, img = sc.lab, sc.img
    sky = lab == SKY
    sky_rows = np.flatnonzero(sky.any(axis=1))
    if sc.weather != "overcast" and len(sky_rows):  # clouds, computed on the rows with sky only
        hs = int(sky_rows[-1]) + 1
        c = _noise(rng, hs, w, 40) + 0.5 * _noise(rng, hs, w, 12)
        cover = np.clip((c - rng.uniform(0.0, 1.2)) * 0.8, 0, 1) * sky[:hs]
        cloud = _jitter(rng, (238, 238, 242), 0.05, 4).astype(np.float32)
        img[:hs] += cover[..., None] * (cloud - img[:hs])
    # One multiplier per pixel: texture x cast shadow (ground only) x exposure field.
    tex = 1.0 + _TEXTURE_LUT[0][lab] * rng.standard_normal((h, w), dtype=np.float32)
    tex += _TEXTURE_LUT[1][lab] * _noise(rng, h, w, 2)
    tex += _TEXTURE_LUT[2][lab] * _noise(rng, h, w, 16)
    shadow = cv2.GaussianBlur(sc.shadow, (0, 0), max(0.7, w / 700))
    tex *= np.where(_GROUND_LUT[lab], shadow, np.float32(1.0))
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    tex *= 1.0 + rng.uniform(-0.15, 0.15) * yy - rng.uniform(0.0, 0.5) * (xx**2 + yy**2)
    temp = rng.uniform(-1, 1) * 0.1  # colour temperature
    gain = rng.uniform(0.7, 1.2) * np.array([1 + temp, 1.0, 1 - temp], np.float32)
    img *= tex[..., None] * gain
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.45, 0.9) * w / 1024 + 0.25)
    img += rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(rng.uniform(1.0, 3.5))
    img += 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def render_scene(
    rng: np.random.Generator, height: int, width: int, *, with_depth: bool = False
) -> tuple[np.ndarray, ...]:
    """Render one street scene.

    A street is laid out in metres (lanes, parking, verges, sidewalks, a junction with a zebra
    crossing, facades with window grids, parks, walls, fences, poles with signs and traffic
    lights, vehicles, two-wheelers, pedestrians) and seen through a pinhole camera at a random
    height, focal length and horizon, so sizes follow depth. Everything is drawn back to front
    with OpenCV polygons into both the image and the label map, each face lit by a random sun
    (or overcast light); then per-class texture noise, cloud cover, blurred cast shadows on the
    ground, exposure / colour temperature / vignetting, optics blur and sensor noise are applied
    to the whole frame at once. Colours are jittered per instance.

    Args:
        rng: the only source of randomness (same state, same pixels).
        height: image height in pixels (>= 64).
        width: image width in pixels (>= 128).

    Returns:
        ``(image, label_ids)``: HxWx3 uint8 RGB and HxW uint8 Cityscapes labelIds; besides the
        19 evaluated classes, ``ground`` (6) beyond sidewalks and the ego car's bonnet (1) occur.

    Raises:
        RobustSegError: a size below 128x64 (WxH).
    """
    if height < MIN_SIZE[0] or width < MIN_SIZE[1]:
        raise RobustSegError(
            f"size {width}x{height} is too small: at least {MIN_SIZE[1]}x{MIN_SIZE[0]} (WxH)"
        )
    sc = _Scene(rng, int(height), int(width), depth=with_depth)
    st = _plan_street(sc)
    back: list[_Item] = []
    edge_items: list[_Item] = []
    street: list[_Item] = []
    outer = tuple(_plan_side(sc, st, side, back, edge_items, street) for side in (-1, 1))
    _plan_traffic(sc, st, street)
    _draw_sky(sc)
    _draw_skyline(sc)
    _draw_ground(sc, st, outer)
    if rng.random() < 0.4:
        _draw_end_facade(sc, st)
    for items in (back, edge_items, street):
        for _, fn, args in sorted(items, key=lambda t: -t[0]):
            fn(sc, *args)
    if rng.random() < 0.5:
        _draw_ego(sc)
    image = _finish(sc)
    if with_depth:
        depth = sc.depth.copy()
        depth[sc.lab == SKY] = np.inf
        return image, sc.lab.copy(), depth
    return image, sc.lab.copy()


# ----------------------------------------------------------------------------- dataset


@dataclass
class SyntheticSummary:
    """What :func:`make_synthetic_city` did."""

    out: Path
    train: int
    val: int
    written: int = 0  # image + label pairs rendered and written
    skipped: int = 0  # pairs already there from an earlier run with the same settings
    bytes_written: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"written {self.written}, skipped {self.skipped} (already there) image/label pairs; "
            f"{self.seconds:.1f} s, {self.bytes_written / 1e6:.1f} MB written -> {self.out}"
        )


def image_stem(split: str, index: int) -> tuple[str, str]:
    """``(city, stem)`` of image ``index`` of ``split``: ``stem = <city>_<seq:06d>_<frame:06d>``."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f"{city}_{index // len(cities):06d}_{FRAME:06d}"


def pair_paths(out: Path, split: str, index: int) -> tuple[Path, Path]:
    """Where image ``index`` of ``split`` and its ``labelIds`` map are written under ``out``."""
    city, stem = image_stem(split, index)
    return (
        out / "leftImg8bit" / split / city / f"{stem}{IMAGE_SUFFIX}",
        out / "gtFine" / split / city / f"{stem}{LABEL_SUFFIX}",
    )


def render_image(
    seed: int, split: str, index: int, size: tuple[int, int], *, with_depth: bool = False
) -> tuple[np.ndarray, ...]:
    """Image ``index`` of ``split`` (RGB, labelIds[, depth]) as :func:`make_synthetic_city`
    writes it."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLIT_INDEX[split], index]))
    return render_scene(rng, *size, with_depth=with_depth)


# ----------------------------------------------------------------------------- fog


def atmospheric_light(image: np.ndarray) -> np.ndarray:
    """The mean colour of the brightest 0.1% of the dark channel (He et al. 2009), float32 RGB."""
    x = image.astype(np.float32)
    dark = x.min(axis=2).ravel()
    top = np.argsort(dark, kind="stable")[-max(1, dark.size // 1000) :]
    return x.reshape(-1, 3)[top].mean(axis=0)


def foggy(image: np.ndarray, depth: np.ndarray, beta: float,
          light: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Koschmieder's law, as Foggy Cityscapes applies it (Sakaridis et al. 2018):
    ``I = R t + L (1 - t)``, ``t = exp(-beta depth)``, the atmospheric light ``L`` the mean
    colour of the brightest 0.1% of the dark channel (He et al. 2009). Here with the scene's
    true depth (the renderer's depth buffer: every polygon's plane, billboards at their
    depth, sky at infinity) instead of a depth estimated from stereo.

    Args:
        image: uint8 RGB.
        depth: Metres per pixel (``inf``: sky).
        beta: Attenuation coefficient (1/m).
        light: The atmospheric light, if already known (:func:`atmospheric_light`).

    Returns:
        The foggy image, uint8 RGB.
    """
    x = image.astype(np.float32)
    if light is None:
        light = atmospheric_light(image)
    t = np.exp(-beta * depth.astype(np.float64)).astype(np.float32)[..., None]
    out = x * t + light * (1 - t)
    return np.clip(np.floor(out), 0, 255).astype(np.uint8)


def foggy_path(out: Path, split: str, index: int, beta: float) -> Path:
    """Where the foggy variant of an image goes: Foggy Cityscapes' layout
    ``leftImg8bit_foggy/<split>/<city>/<stem>_leftImg8bit_foggy_beta_<beta>.png``."""
    city, stem = image_stem(split, index)
    return out / "leftImg8bit_foggy" / split / city / (stem + foggy_suffix(beta))


@dataclass(frozen=True)
class _Job:
    out: Path
    split: str
    index: int
    seed: int
    size: tuple[int, int]
    fog: bool = False


def _run_job(job: _Job) -> int:
    image, labels, *depth = render_image(job.seed, job.split, job.index, job.size,
                                         with_depth=job.fog)  # fmt: skip
    image_path, label_path = pair_paths(job.out, job.split, job.index)
    # Label first: an image on disk always has its label (list_pairs needs both).
    _, n_label = write_png_atomic(label_path, labels)
    n = n_label
    if job.fog:
        light = atmospheric_light(image)
        for beta in FOG_BETAS:
            n += write_png_atomic(foggy_path(job.out, job.split, job.index, beta),
                                  foggy(image, depth[0], beta, light))[1]  # fmt: skip
    _, n_image = write_png_atomic(image_path, image)
    return n + n_image


def _is_city(out: Path) -> bool:
    """A synthetic city of ours from before output folders were marked."""
    return (out / METADATA).is_file()


def _check_out(out: Path, seed: int, size: tuple[int, int]) -> dict | None:
    """The metadata of an earlier run in ``out``; refuses a folder that is not ours."""
    check_dir(out, "synthetic-city", recognise=_is_city)
    if not out.exists() or not (out / METADATA).is_file():
        return None
    meta_path = out / METADATA
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise RobustSegError(f"{meta_path} is unreadable; use a new --out") from None
    theirs = (meta.get("seed"), meta.get("size"), meta.get("renderer_version"))
    if theirs != (seed, list(size), RENDERER_VERSION):
        raise RobustSegError(
            f"{out} holds a synthetic city made with seed={theirs[0]}, size "
            f"{format_size(theirs[1]) if theirs[1] else None}, renderer version {theirs[2]}, "
            f"not seed={seed}, size {format_size(size)}, version "
            f"{RENDERER_VERSION}; use a new --out (nothing was changed)"
        )
    return meta


def make_synthetic_city(
    out: str | os.PathLike,
    *,
    train: int,
    val: int,
    size: tuple[int, int] = (512, 1024),
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    fog: bool = False,
) -> SyntheticSummary:
    """Render a synthetic city into ``out`` in the Cityscapes layout.

    Writes ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`` for ``train`` and
    ``val`` images, plus ``synthetic_city.json``. Re-running over its own output with the same
    seed and size only writes what is missing (more images extend the set); files are written
    atomically, so an interrupted run resumes.

    Args:
        out: output folder: new, empty, or an earlier synthetic city of the same seed and size.
        train: number of train images.
        val: number of val images.
        size: (height, width) in pixels, at least (64, 128).
        seed: base seed; image ``i`` of split ``s`` uses
            ``SeedSequence([seed, SPLIT_INDEX[s], i])``.
        workers: worker processes (default: all cores; 0: in this process); the bytes do not
            depend on it.
        progress: show a progress bar.
        fog: also render each image in fog, as Foggy Cityscapes does (Koschmieder's law on
            the scene's depth, beta 0.005, 0.01, 0.02), in Foggy Cityscapes' layout
            ``leftImg8bit_foggy/`` (:func:`foggy`): a natural-shift-style set that the
            ``foggy-cityscapes`` dataset reads.

    Returns:
        A SyntheticSummary.

    Raises:
        RobustSegError: no images asked for, a size below 64x128, a negative seed or count, a
        bad worker count, or an ``out`` that is neither empty nor a synthetic city of the same
        settings (checked before anything is written).
    """
    t0 = time.perf_counter()
    out = Path(out).expanduser()
    if train < 0 or val < 0:
        raise RobustSegError(f"image counts must be >= 0, got --train {train} --val {val}")
    if train + val == 0:
        raise RobustSegError("nothing to render: --train and --val are both 0")
    if len(size) != 2:
        raise RobustSegError(f"size must be (height, width), got {size!r}")
    size = (int(size[0]), int(size[1]))
    if size[0] < MIN_SIZE[0] or size[1] < MIN_SIZE[1]:
        raise RobustSegError(
            f"size {size[1]}x{size[0]} (WxH) is too small: at least {MIN_SIZE[1]}x{MIN_SIZE[0]}"
        )
    if seed < 0:
        raise RobustSegError(f"--seed must be >= 0, got {seed}")
    workers = check_workers(workers, os.cpu_count() or 1)
    previous = _check_out(out, seed, size)

    counts = {"train": train, "val": val}
    if previous:  # the folder holds the union of all runs
        for split, n in previous.get("images", {}).items():
            counts[split] = max(counts.get(split, 0), int(n))
    meta = {
        "dataset": "synthetic-city",
        "renderer_version": RENDERER_VERSION,
        "seed": seed,
        "size": list(size),
        "images": counts,
        "cities": CITIES,
        "seeding": "SeedSequence([seed, split_index (train 0, val 1), image_index])",
        "labels": "gtFine *_gtFine_labelIds.png: Cityscapes labelIds",
        "fog_betas": list(FOG_BETAS) if fog or (previous or {}).get("fog_betas") else [],
        "created": (previous or {}).get("created")
        or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    lock = claim_dir(out, "synthetic-city", recognise=_is_city)
    try:
        return _render(out, meta, train, val, seed, size, workers, progress, t0,
                       bool(meta["fog_betas"]))  # fmt: skip
    finally:
        lock.release()


def _render(out: Path, meta: dict, train: int, val: int, seed: int, size: tuple[int, int],
            workers: int, progress: bool, t0: float, fog: bool) -> SyntheticSummary:  # fmt: skip
    write_json_atomic(out / METADATA, meta)
    for stale in out.glob("**/.*.tmp"):  # left by an interrupted run
        stale.unlink(missing_ok=True)

    summary = SyntheticSummary(out=out, train=train, val=val)
    jobs = []
    for split, n in (("train", train), ("val", val)):
        for index in range(n):
            paths = list(pair_paths(out, split, index))
            if fog:
                paths += [foggy_path(out, split, index, beta) for beta in FOG_BETAS]
            if all(p.is_file() for p in paths):
                summary.skipped += 1
            else:
                jobs.append(_Job(out, split, index, seed, size, fog))

    from robustbench_seg.progress import Progress

    bar = Progress(len(jobs), "synthetic-city", unit="img", enabled=progress)
    try:
        for n_bytes in run_pool(_run_job, jobs, workers):
            summary.written += 1
            summary.bytes_written += n_bytes
            bar.update(1)
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - t0
    return summary

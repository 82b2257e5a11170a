"""Registry of the 19 imagecorruptions corruptions (Hendrycks & Dietterich 2019; Michaelis et al. 2019).

Names, order and categories follow ``imagecorruptions``. Each corruption has two backends behind
the same name: ``fast`` (this package's implementations) and ``reference`` (imagecorruptions
itself). The category of the four "validation" corruptions is the one Cityscapes-C uses
(Kamann & Rother 2020): speckle_noise → noise, gaussian_blur → blur, spatter → weather,
saturate → digital.
"""

from __future__ import annotations

import copy
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from corruptions.errors import CorruptionError

CorruptionFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

CATEGORIES = ("noise", "blur", "digital", "weather")
BACKENDS = ("fast", "reference")


@dataclass(frozen=True)
class Corruption:
    """One corruption.

    Attributes:
        name: imagecorruptions name, e.g. ``"gaussian_noise"``.
        category: one of ``CATEGORIES``.
        index: position in imagecorruptions' order (0..18); part of the seeding rule, never
            renumbered.
        validation: True for the four corruptions imagecorruptions holds out for validation.
        module: the module of this package that holds the fast implementation.
        motion: For a geometric corruption (one that moves pixels), the two functions of
            ``module`` that make its fast implementation: ``field(shape, severity, rng) ->
            (dx, dy)`` (output pixel ``(y, x)`` samples the input at ``(y + dy, x + dx)``;
            drawing from ``rng`` what the corruption draws, both backends alike) and
            ``warp(image, field) -> image``. A label map moves by the same field (nearest
            neighbour: :func:`corrupt_pair`). ``None`` for the others: they leave every pixel
            where it is, and the labels unchanged.
    """

    name: str
    category: str
    index: int
    validation: bool
    module: str
    motion: tuple[str, str] | None = None

    @property
    def geometric(self) -> bool:
        """True when the corruption moves pixels, so that it moves the labels too."""
        return self.motion is not None

    def motion_fns(self) -> tuple[Callable, Callable]:
        """``(field, warp)`` of a geometric corruption (see ``motion``)."""
        if self.motion is None:
            raise CorruptionError(f"{self.name} moves no pixels")
        mod = importlib.import_module(f"corruptions.{self.module}")
        return getattr(mod, self.motion[0]), getattr(mod, self.motion[1])

    def fn(self, backend: str = "fast") -> CorruptionFn:
        """The implementation for ``backend`` (``fast`` or ``reference``)."""
        if backend not in BACKENDS:
            raise CorruptionError(
                f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}"
            )
        mod = "reference" if backend == "reference" else self.module
        return getattr(importlib.import_module(f"corruptions.{mod}"), self.name)


# imagecorruptions' `corruption_tuple` order: this index is frozen into the seeding rule.
_TABLE: tuple[tuple[str, str, str, bool], ...] = (
    # name, category, module, validation
    ("gaussian_noise", "noise", "noise", False),
    ("shot_noise", "noise", "noise", False),
    ("impulse_noise", "noise", "noise", False),
    ("defocus_blur", "blur", "blur", False),
    ("glass_blur", "blur", "blur", False),
    ("motion_blur", "blur", "blur", False),
    ("zoom_blur", "blur", "blur", False),
    ("snow", "weather", "weather", False),
    ("frost", "weather", "weather", False),
    ("fog", "weather", "weather", False),
    ("brightness", "digital", "digital", False),
    ("contrast", "digital", "digital", False),
    ("elastic_transform", "digital", "digital", False),
    ("pixelate", "digital", "digital", False),
    ("jpeg_compression", "digital", "digital", False),
    ("speckle_noise", "noise", "noise", True),
    ("gaussian_blur", "blur", "blur", True),
    ("spatter", "weather", "weather", True),
    ("saturate", "digital", "digital", True),
)

# The geometric corruptions: their displacement field and warp (functions of their fast module).
_MOTIONS = {"elastic_transform": ("elastic_field", "elastic_warp")}

CORRUPTIONS: dict[str, Corruption] = {
    name: Corruption(name, cat, i, val, mod, _MOTIONS.get(name))
    for i, (name, cat, mod, val) in enumerate(_TABLE)
}

# The 16 corruptions of Cityscapes-C, in the column order of SegFormer's Table 5.
BENCHMARK: tuple[str, ...] = (
    "motion_blur", "defocus_blur", "glass_blur", "gaussian_blur",
    "gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise",
    "brightness", "contrast", "saturate", "jpeg_compression",
    "snow", "spatter", "fog", "frost",
)  # fmt: skip

# The three imagecorruptions functions that Cityscapes-C leaves out.
EXTRA: tuple[str, ...] = ("zoom_blur", "elastic_transform", "pixelate")

SUBSETS = ("benchmark", "all", "common", "validation", "extra", *CATEGORIES)


def get_corruption_names(subset: str = "benchmark") -> list[str]:
    """Names of a subset of corruptions.

    Args:
        subset: ``benchmark`` (the 16 of Cityscapes-C, Table 5 order), ``all`` (all 19, in
            imagecorruptions' order), ``common`` (the first 15), ``validation`` (the last 4),
            ``extra`` (the 3 not in Cityscapes-C), or a category (``noise``, ``blur``,
            ``digital``, ``weather``: its 4 Cityscapes-C members).

    Returns:
        The names, in a fixed order.
    """
    if subset == "benchmark":
        return list(BENCHMARK)
    if subset == "all":
        return list(CORRUPTIONS)
    if subset == "common":
        return [c.name for c in CORRUPTIONS.values() if not c.validation]
    if subset == "validation":
        return [c.name for c in CORRUPTIONS.values() if c.validation]
    if subset == "extra":
        return list(EXTRA)
    if subset in CATEGORIES:
        return [n for n in BENCHMARK if CORRUPTIONS[n].category == subset]
    raise CorruptionError(
        f"unknown subset {subset!r}{_closest(subset, SUBSETS)}; valid subsets: {', '.join(SUBSETS)}"
    )


def _closest(name: str, choices: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def get_corruption(name: str) -> Corruption:
    """The registry entry for ``name``; an unknown name raises with the valid ones listed."""
    try:
        return CORRUPTIONS[name]
    except KeyError:
        raise CorruptionError(
            f"unknown corruption {name!r}{_closest(name, list(CORRUPTIONS))}; "
            f"valid names: {', '.join(CORRUPTIONS)}"
        ) from None


def _as_generator(rng_or_seed: np.random.Generator | int | np.random.SeedSequence | None):
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 image (HxWx3; HxW is broadcast to 3 channels) and return it."""
    if not isinstance(image, np.ndarray):
        raise CorruptionError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise CorruptionError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise CorruptionError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[0] < 32 or image.shape[1] < 32:
        raise CorruptionError(f"image must be at least 32x32 pixels, got {image.shape[:2]}")
    return np.ascontiguousarray(image)


def check_severity(severity: int) -> int:
    """Validate a severity (an integer 1..5) and return it as ``int``."""
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)):
        raise CorruptionError(f"severity must be an integer 1..5, got {severity!r}")
    if not 1 <= int(severity) <= 5:
        raise CorruptionError(f"severity must be in 1..5, got {severity}")
    return int(severity)


def corrupt(
    image: np.ndarray,
    name: str,
    severity: int,
    rng_or_seed: np.random.Generator | int | np.random.SeedSequence | None = None,
    *,
    backend: str = "fast",
) -> np.ndarray:
    """Corrupt one image.

    Args:
        image: uint8 RGB image, HxWx3 (HxW is accepted and made RGB), at least 32x32.
        name: corruption name (see ``get_corruption_names("all")``).
        severity: 1..5.
        rng_or_seed: a ``np.random.Generator`` (used as is), or a seed / SeedSequence for a
            fresh one; ``None`` draws fresh entropy.
        backend: ``fast`` (default) or ``reference`` (imagecorruptions).

    Returns:
        The corrupted uint8 HxWx3 image; the input is not modified.
    """
    corruption = get_corruption(name)
    image = check_image(image)
    severity = check_severity(severity)
    out = corruption.fn(backend)(image, severity, _as_generator(rng_or_seed))
    if out.dtype != np.uint8 or out.shape != image.shape:  # a bug in a backend, not a user error
        raise AssertionError(f"{name}/{backend} returned {out.dtype} {out.shape}")
    return out


def check_label(label: np.ndarray, image_shape: tuple[int, ...]) -> np.ndarray:
    """Validate a label map for an image of ``image_shape``: uint8 HxW of the same size."""
    if not isinstance(label, np.ndarray) or label.dtype != np.uint8 or label.ndim != 2:
        what = f"{label.dtype} {label.shape}" if isinstance(label, np.ndarray) else type(label)
        raise CorruptionError(f"expected a uint8 HxW label map, got {what}")
    if label.shape != tuple(image_shape[:2]):
        raise CorruptionError(
            f"the label map is {label.shape[1]}x{label.shape[0]} but its image is "
            f"{image_shape[1]}x{image_shape[0]}"
        )
    return label


def corrupt_pair(
    image: np.ndarray,
    label: np.ndarray,
    name: str,
    severity: int,
    rng_or_seed: np.random.Generator | int | np.random.SeedSequence | None = None,
    *,
    backend: str = "fast",
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt an image and carry its label map along.

    A geometric corruption (:attr:`Corruption.geometric`) moves the label map by the field it
    moves the image by, drawn from the same state of ``rng_or_seed``: nearest neighbour,
    ``ignore_index`` where the image samples outside itself (see ``_util.warp_nearest``). Other
    corruptions return ``label`` itself (not a copy).

    Args:
        image: As :func:`corrupt`.
        label: uint8 HxW label map of ``image`` (class indices).
        name, severity, rng_or_seed, backend: As :func:`corrupt`; the image's bytes are
            :func:`corrupt`'s for the same generator state.
        ignore_index: The label of pixels moved in from outside the image.

    Returns:
        ``(corrupted image, its label map)``.
    """
    corruption = get_corruption(name)
    image = check_image(image)
    label = check_label(label, image.shape)
    rng = _as_generator(rng_or_seed)
    if not corruption.geometric:
        return corrupt(image, name, severity, rng, backend=backend), label
    from corruptions._util import warp_nearest  # (numba: imported with the implementations)

    field_fn, warp = corruption.motion_fns()
    if backend == "fast":  # one field for both: what corrupt() computes, byte for byte
        field = field_fn(image.shape[:2], check_severity(severity), rng)
        out = warp(image, field)
    else:  # the reference draws the same numbers from a twin of the generator
        twin = copy.deepcopy(rng)
        out = corrupt(image, name, severity, rng, backend=backend)
        field = field_fn(image.shape[:2], check_severity(severity), twin)
    return out, warp_nearest(label, *field, ignore_index)

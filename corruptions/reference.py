"""The reference backend: every corruption computed by imagecorruptions (bethgelab, imaug fork).

imagecorruptions draws from NumPy's global random state (and, for impulse_noise and glass_blur,
from a ``seed`` argument). To honour the contract (an explicit ``np.random.Generator``, no global
state visible to the caller) each call seeds the global state from ``rng``, runs, and restores
the previous global state. Output is rounded (imagecorruptions itself truncates with
``np.uint8``); this makes the reference comparable pixel for pixel with the fast backend.
Not thread-safe (global state), but safe across processes.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from corruptions._util import to_uint8
from corruptions.registry import CORRUPTIONS

_SEEDED = {"impulse_noise", "glass_blur"}


@contextmanager
def _global_seed(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _run(name: str, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    import imagecorruptions
    from PIL import Image

    fn = imagecorruptions.corruption_dict[name]
    seed = int(rng.integers(2**32))
    kwargs = {"seed": seed} if name in _SEEDED else {}
    with _global_seed(seed):
        out = fn(Image.fromarray(image), severity, **kwargs)
    return to_uint8(np.asarray(out, dtype=np.float64))


def _make(name: str):
    def fn(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        return _run(name, image, severity, rng)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"imagecorruptions' ``{name}``, seeded from ``rng``."
    return fn


for _name in CORRUPTIONS:
    globals()[_name] = _make(_name)

__all__ = list(CORRUPTIONS)

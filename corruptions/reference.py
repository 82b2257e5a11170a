"""The reference backend: every corruption computed by imagecorruptions (bethgelab, imaug fork).

Each call returns exactly what ``imagecorruptions.corrupt(image, severity, name)`` returns,
byte for byte: its float result clipped, then truncated by ``np.uint8``. imagecorruptions draws
from NumPy's global random state (and, for impulse_noise and glass_blur, from a ``seed``
argument). To honour the contract (an explicit ``np.random.Generator``, no global state visible
to the caller) each call seeds the global state from ``rng``, runs, and restores the previous
global state. Not thread-safe (global state), but safe across processes.

imagecorruptions is an optional dependency (``pip install 'robustseg[reference]'``); it is
imported on first use.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from corruptions.errors import CorruptionError
from corruptions.registry import CORRUPTIONS

_SEEDED = {"impulse_noise", "glass_blur"}

# The fast backend against this one, for the same rng (tests/test_corruption_fidelity.py,
# `benchmarks/bench_corruptions.py --fidelity`): the same bytes for every corruption but these,
# which draw their own numbers (imagecorruptions' Box-Muller and Poisson draws from the global
# state would cost most of its time): the same law, not the same pixels.
NOT_PAIRED = ("gaussian_noise", "shot_noise", "speckle_noise")
_MISSING = "the reference backend needs imagecorruptions: pip install 'robustseg[reference]'"


@contextmanager
def _global_seed(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _imagecorruptions():
    try:
        import imagecorruptions
    except ImportError:
        raise CorruptionError(_MISSING) from None
    return imagecorruptions


def _run(name: str, image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    imagecorruptions = _imagecorruptions()
    seed = int(rng.integers(2**32))  # the global state's seed, and the `seed` argument
    kwargs = {"seed": seed} if name in _SEEDED else {}
    with _global_seed(seed):
        out = imagecorruptions.corrupt(image, severity, corruption_name=name, **kwargs)
    # the same bytes; a fresh contiguous, writable array as the fast backend returns (PIL-made
    # results are read-only, defocus_blur's is transposed)
    return np.require(out, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])


def _make(name: str):
    def fn(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
        return _run(name, image, severity, rng)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"imagecorruptions' ``{name}``, seeded from ``rng``."
    return fn


for _name in CORRUPTIONS:
    globals()[_name] = _make(_name)

__all__ = list(CORRUPTIONS)

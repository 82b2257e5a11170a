"""Benchmark protocols (Cityscapes-C, Kamann & Rother 2020, as used by SegFormer Table 5) and seeding.

A protocol says which corruptions at which severities; the seeding rule makes the bytes of each
variant a function of (seed, image id, corruption, severity) alone, independent of worker count,
order or resumption.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from corruptions.errors import CorruptionError
from corruptions.registry import (
    BENCHMARK,
    CATEGORIES,
    CORRUPTIONS,
    SUBSETS,
    check_severity,
    get_corruption,
    get_corruption_names,
)

# Kamann & Rother (2020) evaluate the four noises only up to severity 3: beyond it the images
# are too degraded to be informative.
NOISE_MAX_SEVERITY = 3
NOISES = ("gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise")


@dataclass(frozen=True)
class Protocol:
    """Which corruptions at which severities.

    Attributes:
        name: ``cityscapes-c`` (1-3 for the noises, 1-5 otherwise), ``all-severities`` (1-5
            everywhere), or ``custom``.
        severities: corruption name → tuple of severities, in order.
    """

    name: str
    severities: dict[str, tuple[int, ...]] = field(hash=False)

    @property
    def corruptions(self) -> list[str]:
        return list(self.severities)

    def variants(self) -> list[tuple[str, int]]:
        """All (corruption, severity) pairs, corruption-major."""
        return [(c, s) for c, sev in self.severities.items() for s in sev]

    def to_dict(self) -> dict:
        return {"name": self.name, "severities": {k: list(v) for k, v in self.severities.items()}}


def protocol_severities(name: str) -> tuple[int, ...]:
    """Severities of corruption ``name`` under the Cityscapes-C protocol."""
    return tuple(range(1, NOISE_MAX_SEVERITY + 1)) if name in NOISES else (1, 2, 3, 4, 5)


CITYSCAPES_C = Protocol("cityscapes-c", {n: protocol_severities(n) for n in BENCHMARK})
ALL_SEVERITIES = Protocol("all-severities", {n: (1, 2, 3, 4, 5) for n in BENCHMARK})


def resolve_corruptions(spec: str | Iterable[str]) -> list[str]:
    """Corruption names from a spec: a subset (``benchmark``, ``all``, a category, ...), a
    comma-separated list of names and subsets, or an iterable of those. Order kept, no repeats.
    """
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if not item:
            continue
        expanded = get_corruption_names(item) if item in SUBSETS else [get_corruption(item).name]
        names.extend(n for n in expanded if n not in names)
    if not names:
        raise CorruptionError("no corruptions selected")
    return names


def resolve_severities(spec: str | Sequence[int], corruptions: Sequence[str]) -> dict:
    """Severities per corruption from ``protocol`` (1-3 for noises, 1-5 otherwise), ``all``
    (1-5), or a list such as ``"1,3,5"`` / ``"1-3"`` / ``[1, 2]`` applied to every corruption."""
    if isinstance(spec, str) and spec.strip() == "protocol":
        return {c: protocol_severities(c) for c in corruptions}
    if isinstance(spec, str) and spec.strip() == "all":
        return {c: (1, 2, 3, 4, 5) for c in corruptions}
    values: list[int] = []
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    for part in parts:
        if isinstance(part, str):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    lo, hi = (int(p) for p in part.split("-", 1))
                    values.extend(range(lo, hi + 1))
                else:
                    values.append(int(part))
            except ValueError:
                raise CorruptionError(
                    f"bad severities {spec!r}: use 'protocol', 'all', or integers like '1,3,5' or '1-3'"
                ) from None
        else:
            values.append(part)
    sev = tuple(sorted({check_severity(v) for v in values}))
    if not sev:
        raise CorruptionError("no severities selected")
    return {c: sev for c in corruptions}


def make_protocol(
    corruptions: str | Iterable[str] = "benchmark", severities="protocol"
) -> Protocol:
    """A protocol from CLI-style specs; named ``cityscapes-c`` / ``all-severities`` when it is one."""
    names = resolve_corruptions(corruptions)
    sev = resolve_severities(severities, names)
    for candidate in (CITYSCAPES_C, ALL_SEVERITIES):
        if sev == candidate.severities and list(sev) == candidate.corruptions:
            return candidate
    return Protocol("custom", sev)


def stable_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def variant_seed_sequence(seed: int, image_id: str, corruption: str, severity: int):
    """The SeedSequence of one image variant (DESIGN.md):
    ``SeedSequence([seed, stable_hash(image_id), corruption_index, severity])``."""
    index = get_corruption(corruption).index
    return np.random.SeedSequence([int(seed), stable_hash(image_id), index, int(severity)])


def variant_rng(seed: int, image_id: str, corruption: str, severity: int) -> np.random.Generator:
    """The generator for one image variant; see :func:`variant_seed_sequence`."""
    return np.random.default_rng(variant_seed_sequence(seed, image_id, corruption, severity))


__all__ = [
    "ALL_SEVERITIES",
    "CATEGORIES",
    "CITYSCAPES_C",
    "CORRUPTIONS",
    "NOISES",
    "Protocol",
    "make_protocol",
    "protocol_severities",
    "resolve_corruptions",
    "resolve_severities",
    "stable_hash",
    "variant_rng",
    "variant_seed_sequence",
]

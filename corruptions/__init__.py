"""Image corruptions (imagecorruptions' 19, two backends) and benchmark protocols."""

from corruptions.errors import CorruptionError
from corruptions.protocol import (
    ALL_SEVERITIES,
    CITYSCAPES_C,
    Protocol,
    make_protocol,
    variant_rng,
)
from corruptions.registry import (
    BENCHMARK,
    CATEGORIES,
    CORRUPTIONS,
    Corruption,
    corrupt,
    corrupt_pair,
    get_corruption,
    get_corruption_names,
)

__all__ = [
    "ALL_SEVERITIES",
    "BENCHMARK",
    "CATEGORIES",
    "CITYSCAPES_C",
    "CORRUPTIONS",
    "Corruption",
    "CorruptionError",
    "Protocol",
    "corrupt",
    "corrupt_pair",
    "get_corruption",
    "get_corruption_names",
    "make_protocol",
    "variant_rng",
]

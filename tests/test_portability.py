"""What a tree's and the demo's bytes depend on is recorded: the CPU's SIMD level next to the
package versions (a blur can round the other way on an AVX2-only CPU)."""

from __future__ import annotations

import json

import numpy as np
import torch
from numpy._core._multiarray_umath import __cpu_features__

from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
from robustbench_seg.io import cpu_info
from tests.fake_cityscapes import make_fake_cityscapes


def test_cpu_info_lists_the_simd_features_numpy_sees():
    info = cpu_info()
    assert isinstance(info["model"], str) and info["model"]
    assert set(info["simd"]) <= {k for k, v in __cpu_features__.items() if v}
    if info["machine"] in ("x86_64", "AMD64"):
        assert "SSE42" in info["simd"]  # the x86-64-v2 floor numpy 2 needs
        assert ("AVX512F" in info["simd"]) == bool(__cpu_features__["AVX512F"])
    assert info["torch"] == torch.backends.cpu.get_cpu_capability()


def test_tree_metadata_records_cpu_next_to_versions(tmp_path):
    root = tmp_path / "cs"
    make_fake_cityscapes(root, (1,), size=(32, 64))
    generate_cityscapes_c(root, tmp_path / "cc", corruptions="brightness", severities="1",
                          workers=0, progress=False)  # fmt: skip
    meta = json.loads((tmp_path / "cc" / "metadata.json").read_text())
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["cpu"]["simd"] == cpu_info()["simd"]
    assert meta["cpu"]["model"] == cpu_info()["model"]

"""Packaging: one OpenCV wheel, imagecorruptions only as the `reference` extra, shipped data."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.resources
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The OpenCV wheels on PyPI: all four install the same cv2/ folder, so two of them overwrite
# each other's files (and uninstalling one breaks the other).
OPENCV_WHEELS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}
REFERENCE = "imagecorruptions-imaug"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _canonical(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec).group(0))


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_one_opencv_distribution_installed():
    installed = {_canonical(d.metadata["Name"] or "") for d in importlib.metadata.distributions()}
    found = sorted(installed & OPENCV_WHEELS)
    assert len(found) == 1, (
        f"OpenCV wheels installed: {found}; they share cv2/, keep exactly one "
        "(imagecorruptions-imaug pulls opencv-python: install it with --no-deps, see the Makefile)"
    )


def test_runtime_requirements_name_one_opencv_and_no_imagecorruptions():
    names = [_requirement_name(s) for s in _pyproject()["project"]["dependencies"]]
    assert [n for n in names if n in OPENCV_WHEELS] == ["opencv-python-headless"]
    assert REFERENCE not in names


def test_reference_extra_is_what_the_makefile_installs_without_deps(tmp_path):
    extras = _pyproject()["project"]["optional-dependencies"]
    (spec,) = extras["reference"]
    assert _requirement_name(spec) == REFERENCE
    for name, specs in extras.items():  # no other extra brings it (or an OpenCV) back
        if name != "reference":
            assert not {_requirement_name(s) for s in specs} & (OPENCV_WHEELS | {REFERENCE}), name
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n prints the venv recipe without running it (the venv path does not exist, so it is due).
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "venv", f"VENV={tmp_path / 'venv'}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"pip install -q -c .ci/constraints.txt --no-deps '{spec}'" in plan


def test_fast_backend_needs_no_imagecorruptions():
    # A fresh interpreter in which `import imagecorruptions` fails: every corruption runs.
    code = (
        "import sys; sys.modules['imagecorruptions'] = None\n"
        "import numpy as np\n"
        "from corruptions import corrupt, get_corruption_names\n"
        "img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)\n"
        "for n in get_corruption_names('all'):\n"
        "    for s in (1, 5):\n"
        "        corrupt(img, n, s, s)\n"
        "assert sys.modules['imagecorruptions'] is None\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_shipped_frost_textures_are_imagecorruptions_own():
    pytest.importorskip("imagecorruptions")
    from corruptions.weather import FROST_FILES

    ours = importlib.resources.files("corruptions") / "frost"
    theirs = importlib.resources.files("imagecorruptions") / "frost"
    for name in FROST_FILES:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    # Apache-2.0: the textures travel with imagecorruptions' licence and notice.
    assert "Apache License" in (ours / "LICENSE").read_text()
    assert "imagecorruptions" in (ours / "NOTICE").read_text()
    # Every file of the folder is package data (so that a wheel carries it).
    globs = _pyproject()["tool"]["setuptools"]["package-data"]["corruptions"]
    for path in (ROOT / "corruptions" / "frost").iterdir():
        rel = f"frost/{path.name}"
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel


# torch and its own requirements are not locked: the build the machine needs brings its pins.
UNLOCKED = {"torch", "filelock", "fsspec", "jinja2", "markupsafe", "mpmath", "networkx",
            "setuptools", "sympy", "typing-extensions"}  # fmt: skip


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version and " " not in line, f"not an exact pin: {line!r}"
        assert _canonical(name) not in pins, f"pinned twice: {name}"
        pins[_canonical(name)] = version
    return pins


def test_lock_agrees_with_pyproject():
    from packaging.requirements import Requirement

    project = _pyproject()["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += extra
    pins = _lock()
    assert not UNLOCKED & set(pins), "torch and its requirements stay unlocked"
    for spec in specs:
        req = Requirement(spec)
        name = _canonical(req.name)
        if name in UNLOCKED:
            continue
        assert name in pins, f"{req.name} is a dependency but not in .ci/constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f".ci/constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {spec!r}"
        )
    # the demo's bytes depend on these: they must be locked (and are, by the loop above)
    for name in ("numpy", "opencv-python-headless", "scipy", "scikit-image", "numba", "pillow"):
        assert name in pins


def test_makefile_installs_with_the_lock():
    make = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS := .ci/constraints.txt" in make
    installs = [x for x in make.splitlines() if "$(BIN)/python -m pip install" in x]
    project = [x for x in installs if "-e '.[dev]'" in x or "REFERENCE_SPEC" in x]
    assert len(project) == 2 and all("-c $(CONSTRAINTS)" in x for x in project)

"""make-cityscapes-c: layout, manifest, determinism (workers, SIGKILL + resume), bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from corruptions import corrupt
from corruptions.protocol import variant_rng
from robustbench_seg.cli import cli
from robustbench_seg.data import cityscapes_c
from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
from robustbench_seg.data.png import check_png
from robustbench_seg.errors import RobustSegError
from tests.fake_cityscapes import make_fake_cityscapes

SUBSET = "gaussian_noise,motion_blur,contrast,fog"


def tree_hashes(out: Path) -> dict[str, str]:
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*.png"))
    }


@pytest.fixture
def city(tmp_path):
    root = tmp_path / "cityscapes"
    ids = make_fake_cityscapes(root, (2, 1))
    return root, ids


def test_layout_manifest_metadata(city, tmp_path):
    root, ids = city
    out = tmp_path / "cc"
    s = generate_cityscapes_c(root, out, corruptions=SUBSET, workers=0, progress=False)
    # noises 1-3, others 1-5: 3 + 5 + 5 + 5 = 18 variants x 3 images
    assert (s.images, s.variants, s.written, s.skipped, len(s.failed)) == (3, 18, 54, 0, 0)
    pngs = sorted(out.rglob("*_leftImg8bit.png"))
    assert len(pngs) == 54
    p = (
        out
        / "gaussian_noise"
        / "3"
        / "leftImg8bit"
        / "val"
        / "aachen"
        / "aachen_000001_000019_leftImg8bit.png"
    )
    assert p.is_file()
    assert not (out / "gaussian_noise" / "4").exists()
    # the written pixels are exactly corrupt() with the variant's seeded generator
    src = cv2.imread(str(root / "leftImg8bit/val/aachen/aachen_000001_000019_leftImg8bit.png"))[
        :, :, ::-1
    ]
    expected = corrupt(
        src, "gaussian_noise", 3, variant_rng(0, "aachen/aachen_000001_000019", "gaussian_noise", 3)
    )
    np.testing.assert_array_equal(cv2.imread(str(p))[:, :, ::-1], expected)
    # labels are linked, not copied
    link = out / "fog" / "5" / "gtFine"
    assert link.is_symlink() and link.resolve() == (root / "gtFine").resolve()
    assert not list(out.rglob("*labelIds.png"))  # nothing copied (rglob does not follow links)
    with open(out / "manifest.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 54
    hashes = tree_hashes(out)
    assert all(hashes[r["path"]] == r["sha256"] for r in rows)
    assert {r["seed"] for r in rows} == {"0"}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 0 and meta["backend"] == "fast" and len(meta["images"]) == 3
    assert meta["protocol"]["severities"]["gaussian_noise"] == [1, 2, 3]
    assert "numpy" in meta["versions"] and "imagecorruptions-imaug" in meta["versions"]
    assert not list(out.glob(".manifest.journal*"))


def test_full_protocol_count(city, tmp_path):
    root, _ = city
    s = generate_cityscapes_c(root, tmp_path / "cc", workers=0, limit=1, progress=False)
    assert (s.variants, s.written) == (72, 72)
    s = generate_cityscapes_c(root, tmp_path / "cc2", severities="all", corruptions="noise",
                              workers=0, limit=1, progress=False)  # fmt: skip
    assert (s.variants, s.written) == (20, 20)


def test_workers_do_not_change_bytes(city, tmp_path):
    root, _ = city
    generate_cityscapes_c(root, tmp_path / "w1", corruptions=SUBSET, workers=0, progress=False)
    generate_cityscapes_c(root, tmp_path / "w2", corruptions=SUBSET, workers=2, progress=False)
    h1, h2 = tree_hashes(tmp_path / "w1"), tree_hashes(tmp_path / "w2")
    assert len(h1) == 54 and h1 == h2
    assert (tmp_path / "w1/manifest.csv").read_bytes() == (
        tmp_path / "w2/manifest.csv"
    ).read_bytes()


def test_resume_remakes_missing_and_bad_only(city, tmp_path):
    root, _ = city
    out = tmp_path / "cc"
    generate_cityscapes_c(root, out, corruptions=SUBSET, workers=0, progress=False)
    before = tree_hashes(out)
    victim = out / "fog/2/leftImg8bit/val/bochum/bochum_000000_000019_leftImg8bit.png"
    victim.write_bytes(victim.read_bytes()[:100])  # damaged: fails its checksum
    (out / "contrast/1/leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png").unlink()
    s = generate_cityscapes_c(root, out, corruptions=SUBSET, workers=0, progress=False)
    assert (s.written, s.skipped) == (2, 52)
    assert tree_hashes(out) == before


def test_sigkill_midway_then_resume_is_identical(city, tmp_path):
    root, _ = city
    ref = tmp_path / "ref"
    generate_cityscapes_c(root, ref, corruptions="benchmark", workers=0, progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "robustbench_seg", "make-cityscapes-c", "--cityscapes-root",
           str(root), "--out", str(out), "--workers", "2"]  # fmt: skip
    env = {**os.environ, "ROBUSTSEG_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.rglob("*.png"))) < 20:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list(out.rglob("*.png"))
    assert 20 <= len(done) < 216, "the kill must land midway"
    for p in done:  # never a half-written PNG under a final name
        check_png(p)
    s = generate_cityscapes_c(root, out, corruptions="benchmark", workers=2, progress=False)
    assert s.skipped > 0 and s.written + s.skipped == 216
    assert tree_hashes(out) == tree_hashes(ref)
    assert not list(out.rglob("*.tmp"))


# ----------------------------------------------------------------------------- bad input


def run_cli(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_missing_root(tmp_path):
    r = run_cli(
        "make-cityscapes-c",
        "--cityscapes-root",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    )
    assert (
        r.exit_code == 2
        and "does not exist" in r.output
        and len(r.output.strip().splitlines()) == 1
    )
    assert not (tmp_path / "o").exists()


def test_root_from_env_and_empty_split(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    r = run_cli("make-cityscapes-c", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "CITYSCAPES_DATASET" in r.output
    (tmp_path / "ds/leftImg8bit/val/aachen").mkdir(parents=True)
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path / "ds"))
    r = run_cli("make-cityscapes-c", "--out", str(tmp_path / "o"))
    assert r.exit_code == 2 and "no images matching" in r.output
    assert not (tmp_path / "o").exists()


def test_truncated_png_named_and_skip_bad(city, tmp_path):
    root, _ = city
    bad = root / "leftImg8bit/val/bochum/bochum_000000_000019_leftImg8bit.png"
    bad.write_bytes(bad.read_bytes()[:-200])
    r = run_cli("make-cityscapes-c", "--cityscapes-root", str(root), "--out", str(tmp_path / "o"),
                "--corruptions", "contrast", "--workers", "0")  # fmt: skip
    assert r.exit_code == 2 and "truncated PNG" in r.output and bad.name in r.output
    assert not (tmp_path / "o").exists()
    r = run_cli("make-cityscapes-c", "--cityscapes-root", str(root), "--out", str(tmp_path / "o"),
                "--corruptions", "contrast", "--workers", "0", "--skip-bad")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "written 10" in r.output and "failed 1" in r.output
    meta = json.loads((tmp_path / "o/metadata.json").read_text())
    assert meta["failed"][0]["image"] == "bochum/bochum_000000_000019"


def test_unknown_corruption_and_bad_severity(city, tmp_path):
    root, _ = city
    r = run_cli("make-cityscapes-c", "--cityscapes-root", str(root), "--out", str(tmp_path / "o"),
                "--corruptions", "gausian_noise")  # fmt: skip
    assert (
        r.exit_code == 2
        and "did you mean 'gaussian_noise'" in r.output
        and "speckle_noise" in r.output
    )
    r = run_cli("make-cityscapes-c", "--cityscapes-root", str(root), "--out", str(tmp_path / "o"),
                "--severities", "2,6")  # fmt: skip
    assert r.exit_code == 2 and "1..5" in r.output
    assert not (tmp_path / "o").exists()


def test_out_inside_input(city):
    root, _ = city
    r = run_cli(
        "make-cityscapes-c",
        "--cityscapes-root",
        str(root),
        "--out",
        str(root / "leftImg8bit" / "c"),
    )
    assert r.exit_code == 2 and "must not be inside" in r.output
    assert not (root / "leftImg8bit" / "c").exists()


def test_not_enough_disk(city, tmp_path, monkeypatch):
    root, _ = city
    monkeypatch.setattr(cityscapes_c, "_free_bytes", lambda path: 1000)
    with pytest.raises(RobustSegError, match="not enough disk space"):
        generate_cityscapes_c(root, tmp_path / "o", workers=0, progress=False)
    assert not (tmp_path / "o").exists()


def test_other_seed_refused(city, tmp_path):
    root, _ = city
    generate_cityscapes_c(
        root, tmp_path / "o", corruptions="contrast", workers=0, limit=1, progress=False
    )
    before = tree_hashes(tmp_path / "o")
    with pytest.raises(RobustSegError, match="seed=0"):
        generate_cityscapes_c(
            root, tmp_path / "o", corruptions="contrast", seed=1, workers=0, progress=False
        )
    assert tree_hashes(tmp_path / "o") == before


def test_corrupt_and_sheet_commands(city, tmp_path):
    root, _ = city
    src = root / "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
    r = run_cli("corrupt", str(src), "--corruption", "fog", "--severity", "4", "-o", str(tmp_path / "f.png"),
                "--sheet", str(tmp_path / "sheet.png"))  # fmt: skip
    assert r.exit_code == 0, r.output
    img = cv2.imread(str(src))[:, :, ::-1]
    np.testing.assert_array_equal(
        cv2.imread(str(tmp_path / "f.png"))[:, :, ::-1], corrupt(img, "fog", 4, 0)
    )
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (4 * 256, 4 * 512, 3)
    r = run_cli("corrupt", str(src), "--corruption", "fogg", "-o", str(tmp_path / "x.png"))
    assert r.exit_code == 2 and "did you mean 'fog'" in r.output
    r = run_cli(
        "corrupt",
        str(tmp_path / "missing.png"),
        "--corruption",
        "fog",
        "-o",
        str(tmp_path / "x.png"),
    )
    assert r.exit_code == 2 and "no such image" in r.output

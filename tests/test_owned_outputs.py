"""No user file is replaced: every writing command refuses a folder it did not make, in one line,
leaving the folder as it was."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.io import LOCK, MARKER, claim_dir
from tests.fake_cityscapes import make_fake_cityscapes


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("owned")
    city = tmp / "cs"
    make_fake_cityscapes(city, (1,), size=(64, 128))
    make_fake_cityscapes(city, (2,), split="train", size=(64, 128))
    torch.manual_seed(0)
    evaluate("b0", weights=None, cityscapes_root=city, corruptions=None, inference="whole",
             workers=0, progress=False, out=tmp / "run")  # fmt: skip
    img = tmp / "img.png"
    cv2.imwrite(str(img), np.full((32, 64, 3), 128, np.uint8))
    return {"city": city, "run": tmp / "run", "img": img}


CASES = {
    # command: (user's files in the folder, arguments after --out or as given)
    "report": (["index.md"], lambda d, out: ["report", str(d["run"]), "--out", str(out)]),
    "erf": (
        ["erf.csv"],
        lambda d, out: [
            "erf",
            "-m",
            "b0",
            "--weights",
            "none",
            "--images",
            str(d["img"].parent),
            "--num-images",
            "1",
            "--size",
            "64x32",
            "--out",
            str(out),
        ],
    ),  # fmt: skip
    "train": (
        ["weights.safetensors", "log.jsonl"],
        lambda d, out: [
            "train",
            "-m",
            "b0",
            "--cityscapes-root",
            str(d["city"]),
            "--iters",
            "1",
            "--crop",
            "32",
            "--eval-every",
            "0",
            "--init",
            "none",
            "--workers",
            "0",
            "--out",
            str(out),
        ],
    ),  # fmt: skip
    "demo": (["index.md"], lambda d, out: ["demo", "--images", "1", "--out", str(out)]),
    "evaluate": (
        ["results.csv", "summary.csv"],
        lambda d, out: [
            "evaluate",
            "-m",
            "b0",
            "--weights",
            "none",
            "--cityscapes-root",
            str(d["city"]),
            "--corruptions",
            "none",
            "--out",
            str(out),
        ],
    ),  # fmt: skip
    "make-cityscapes-c": (
        ["manifest.csv"],
        lambda d, out: [
            "make-cityscapes-c",
            "--cityscapes-root",
            str(d["city"]),
            "--corruptions",
            "fog",
            "--out",
            str(out),
        ],
    ),  # fmt: skip
}


@pytest.mark.parametrize("command", list(CASES))
def test_a_foreign_folder_is_refused_and_left_alone(data, tmp_path, command):
    files, args = CASES[command]
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in files:
        (folder / name).write_text(f"the user's {name}\n")
    before = _snapshot(folder)
    r = CliRunner().invoke(cli, args(data, folder))
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "was not made by robustseg" in lines[0] and str(folder) in lines[0]
    assert _snapshot(folder) == before


def test_corrupt_does_not_replace_a_file(data, tmp_path):
    dest = tmp_path / "out.png"
    dest.write_bytes(b"the user's picture")
    args = ["corrupt", str(data["img"]), "-c", "fog", "-o", str(dest)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2 and "exists; pass --overwrite" in r.output
    assert dest.read_bytes() == b"the user's picture"
    r = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output and cv2.imread(str(dest)).shape == (32, 64, 3)
    r = CliRunner().invoke(cli, ["corrupt", str(data["img"]), "-c", "fog", "-o", str(data["img"]),
                                 "--overwrite"])  # fmt: skip
    assert r.exit_code == 2 and "is the input image" in r.output


def test_claim_marks_reuses_and_refuses_other_kinds(tmp_path):
    with claim_dir(tmp_path / "a", "erf") as lock:
        assert (tmp_path / "a" / LOCK).read_text() == str(__import__("os").getpid())
    assert not (tmp_path / "a" / LOCK).exists() and lock.path.name == LOCK
    assert (tmp_path / "a" / MARKER).is_file()
    claim_dir(tmp_path / "a", "erf").release()  # the same kind: reused
    with pytest.raises(Exception, match="holds the output of robustseg erf, not of report"):
        claim_dir(tmp_path / "a", "report")
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="exists and is not a directory"):
        claim_dir(tmp_path / "f", "report")

"""Folder datasets refuse what would give a silent wrong number (issue 20, item 5): a missing
split, two files with one image id, a broken label map in ``make-corrupted``, a ``classes.txt``
that is not UTF-8. Each case: exit code 2, one line on stderr naming the cause, nothing written
(the dataset and the case's folder byte-identical)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.data.datasets import get_dataset
from robustbench_seg.errors import RobustSegError
from tests.conftest import natural_image
from tests.test_bad_inputs import snapshot


def make_folder(root: Path, splits=("train", "val"), n: int = 2, size=(64, 96)) -> Path:
    """A folder dataset with ``images/<split>/<j>.png``, ``labels/<split>/<j>.png`` and the 19
    Cityscapes classes (what b0 predicts)."""
    for s, split in enumerate(splits):
        for j in range(n):
            image = root / "images" / split / f"{j}.png"
            label = root / "labels" / split / f"{j}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            label.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), natural_image(s + j, *size)[:, :, ::-1])
            ids = np.random.default_rng(10 * s + j).integers(0, 19, size).astype(np.uint8)
            cv2.imwrite(str(label), ids)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASS_NAMES))
    return root


MAKE = ("make-corrupted", "--dataset", "folder", "--corruptions", "fog", "--severities", "1",
        "--workers", "0")  # fmt: skip
EVAL = ("evaluate", "-m", "b0", "--weights", "none", "--workers", "0", "--inference", "whole",
        "--corruptions", "none", "--dataset", "folder")  # fmt: skip
TRAIN = ("train", "-m", "b0", "--init", "none", "--iters", "1", "--crop", "32", "--workers", "0",
         "--dataset", "folder")  # fmt: skip


def refused(tmp_path: Path, args: list[str], says: tuple[str, ...], monkeypatch) -> str:
    """Runs the CLI; asserts exit 2, one stderr line holding every word of ``says``, and
    ``tmp_path`` (the dataset and where the output would go) unchanged. Returns the line."""
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("robustseg: error: "), result.stderr
    assert all(word in lines[0] for word in says), lines[0]
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "o").exists()
    return lines[0]


# ----------------------------------------------------------------------------- missing split


@pytest.mark.parametrize(
    "command",
    [
        lambda d, t: [*EVAL, "--data-root", str(d), "--out", f"{t}/o"],
        lambda d, t: [*MAKE, "--data-root", str(d), "--out", f"{t}/o"],
        lambda d, t: [*TRAIN, "--eval-every", "1", "--data-root", str(d), "--out", f"{t}/o"],
    ],
    ids=["evaluate", "make-corrupted", "train validates"],
)
def test_a_missing_split_is_refused_naming_the_splits_found(command, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "f", splits=("train", "test"))
    line = refused(tmp_path, command(data, tmp_path), ("no split 'val'", "its splits: test, train"),
                   monkeypatch)  # fmt: skip
    assert str(data / "images" / "val") in line


def test_the_split_asked_for_is_all_that_is_read(tmp_path):
    data = make_folder(tmp_path / "f", splits=("train", "val", "test"), n=2)
    (data / "images" / "val" / "1.png").unlink()
    folder = get_dataset("folder")
    assert [p.image.rel_path for p in folder.pairs(data, "val")] == ["images/val/0.png"]
    assert len(folder.pairs(data, "train")) == 2 and len(folder.pairs(data, "test")) == 2
    other = make_folder(tmp_path / "f2", splits=("train", "test"))
    with pytest.raises(RobustSegError, match=r"no split 'val' .*; its splits: test, train$"):
        folder.pairs(other, "val")


def test_a_folder_without_splits_is_one_set(tmp_path):
    """``images/**`` without split folders stays what the README documents: every image."""
    data = make_folder(tmp_path / "f", splits=("a", "b"))
    ids = [p.image_id for p in get_dataset("folder").pairs(data, "val")]
    assert ids == ["a/0", "a/1", "b/0", "b/1"]


# ----------------------------------------------------------------------------- duplicate ids


def _jpeg_beside(data: Path) -> None:
    img = cv2.imread(str(data / "images" / "val" / "1.png"))
    cv2.imwrite(str(data / "images" / "val" / "1.jpg"), img)


@pytest.mark.parametrize(
    "command",
    [
        lambda d, t: [*MAKE, "--data-root", str(d), "--out", f"{t}/o"],
        lambda d, t: [*EVAL, "--data-root", str(d), "--out", f"{t}/o"],
    ],
    ids=["make-corrupted", "evaluate"],
)
def test_two_files_with_one_image_id_are_refused_before_any_work(command, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "f")
    _jpeg_beside(data)
    line = refused(tmp_path, command(data, tmp_path), ("same image id '1'", "keep one"),
                   monkeypatch)  # fmt: skip
    assert str(data / "images/val/1.jpg") in line and str(data / "images/val/1.png") in line


# ----------------------------------------------------------------------------- labels decoded


def _value_outside(data: Path) -> None:
    cv2.imwrite(str(data / "labels/val/1.png"), np.full((64, 96), 40, np.uint8))


def _truncated(data: Path) -> None:
    path = data / "labels/val/1.png"
    path.write_bytes(path.read_bytes()[:60])


def _other_size(data: Path) -> None:
    cv2.imwrite(str(data / "labels/val/1.png"), np.zeros((32, 96), np.uint8))


@pytest.mark.parametrize(
    "mutate, says",
    [
        (_value_outside, ("labels/val/1.png", "holds 40, outside 0..18 or 255")),
        (_truncated, ("labels/val/1.png", "cannot decode label map")),
        (_other_size, ("labels/val/1.png", "is 96x32 but its image is 96x64")),
    ],
    ids=["value outside the classes", "truncated", "another size"],
)
def test_make_corrupted_decodes_every_label_before_writing(mutate, says, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "f")
    mutate(data)
    refused(tmp_path, [*MAKE, "--data-root", str(data), "--out", f"{tmp_path}/o"], says,
            monkeypatch)  # fmt: skip


def test_make_corrupted_with_skip_bad_goes_on_without_the_bad_label(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")
    data = make_folder(tmp_path / "f")
    _value_outside(data)
    result = CliRunner().invoke(
        cli, [*MAKE, "--data-root", str(data), "--out", f"{tmp_path}/o", "--skip-bad"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").rglob("*.png")) == ["0.png"]
    assert "failed: 1: label" in result.stderr and "holds 40" in result.stderr


# ----------------------------------------------------------------------------- classes.txt


@pytest.mark.parametrize(
    "command",
    [
        lambda d, t: [*MAKE, "--data-root", str(d), "--out", f"{t}/o"],
        lambda d, t: [*EVAL, "--data-root", str(d), "--out", f"{t}/o"],
    ],
    ids=["make-corrupted", "evaluate"],
)
def test_a_classes_file_that_is_not_utf8_is_one_line(command, tmp_path, monkeypatch):
    data = make_folder(tmp_path / "f")
    names = [*CLASS_NAMES[:18], "caf\u00e9 terrace"]
    (data / "classes.txt").write_bytes("".join(f"{c}\n" for c in names).encode("latin-1"))
    refused(tmp_path, command(data, tmp_path), ("classes.txt:19", "not UTF-8", "byte 0xe9"),
            monkeypatch)  # fmt: skip


def test_a_utf8_classes_file_keeps_its_names(tmp_path):
    data = make_folder(tmp_path / "f")
    (data / "classes.txt").write_text("caf\u00e9\nstra\u00dfe\n", encoding="utf-8")
    assert get_dataset("folder").classes(data) == ("caf\u00e9", "stra\u00dfe")

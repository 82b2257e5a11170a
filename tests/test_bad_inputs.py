"""Bad inputs across every command: for each, the exit code (2: the user's mistake, 1: a failure
of the system), exactly one line on stderr that names the cause, and every watched folder
byte-for-byte unchanged (no folder made, no file replaced)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.io import LOCK, MARKER
from tests.fake_cityscapes import make_fake_cityscapes

VAL_IMG = "leftImg8bit/val/aachen/aachen_000000_000019_leftImg8bit.png"
VAL_LABEL = "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every entry under ``folder``: (sha256 of a file or 'dir'/'link', permission bits)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            kind = "link:" + str(p.readlink())
        elif p.is_dir():
            kind = "dir"
        else:
            kind = hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(folder))] = (kind, stat.S_IMODE(st.st_mode))
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small dataset (3 val, 2 train images), a clean-only run, a fog-1 tree, an image."""
    tmp = tmp_path_factory.mktemp("bad")
    city = tmp / "cs"
    make_fake_cityscapes(city, (2, 1), size=(64, 128))
    make_fake_cityscapes(city, (2,), split="train", size=(64, 128))
    other = tmp / "other"  # same file names, other pixels
    make_fake_cityscapes(other, (2, 1), size=(64, 128), seed=5)
    for p in sorted((other / "leftImg8bit").rglob("*.png")):
        cv2.imwrite(str(p), 255 - cv2.imread(str(p)))
    torch.manual_seed(0)
    kw = dict(weights=None, corruptions=None, inference="whole", workers=0, progress=False)
    evaluate("b0", cityscapes_root=city, out=tmp / "run", **kw)
    evaluate("b0", cityscapes_root=city, out=tmp / "run2", limit=2, **kw)
    generate_cityscapes_c(city, tmp / "tree", corruptions="fog", severities="1", workers=0,
                          progress=False)  # fmt: skip
    img = tmp / "img.png"
    cv2.imwrite(str(img), np.full((40, 48, 3), 90, np.uint8))
    img16 = tmp / "img16.png"
    cv2.imwrite(str(img16), np.full((40, 48, 3), 200, np.uint16))
    text = tmp / "text.png"
    text.write_text("not a picture\n")
    return {"base_dir": tmp, "city": city, "other": other, "run": tmp / "run", "run2": tmp / "run2",
            "tree": tmp / "tree", "img": img, "img16": img16, "text": text}  # fmt: skip


# ----------------------------------------------------------------------------- case helpers


def dataset(tmp: Path, base: dict, mutate: Callable[[Path], None] | None = None) -> Path:
    """A copy of the base dataset, changed by ``mutate``."""
    root = tmp / "data"
    shutil.copytree(base["city"], root)
    if mutate is not None:
        mutate(root)
    return root


def foreign(tmp: Path, *names: str) -> Path:
    """A user's folder holding files none of our commands made."""
    folder = tmp / "mine"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(f"the user's {name}\n")
    return folder


def a_file(tmp: Path) -> Path:
    path = tmp / "a-file"
    path.write_text("x\n")
    return path


def locked(tmp: Path, kind: str) -> Path:
    """A folder of ``kind`` that a live process (PID 1) is writing."""
    folder = tmp / "busy"
    folder.mkdir()
    (folder / MARKER).write_text(json.dumps({"kind": kind, "made_by": "robustseg"}))
    (folder / LOCK).write_text("1")
    return folder


def old_run(tmp: Path, base: dict) -> Path:
    """A copy of the base run as an earlier robustseg wrote it: cells without per-image data."""
    run = tmp / "old-run"
    shutil.copytree(base["run"], run)
    for cell in (run / "cells").glob("*.npz"):
        with np.load(cell) as z:
            kept = {k: z[k] for k in ("confusion", "images", "config")}
        np.savez(cell, **kept)
    return run


def write_label(root: Path, array: np.ndarray) -> None:
    cv2.imwrite(str(root / VAL_LABEL), array)


def builder(tmp: Path, body: str) -> str:
    path = tmp / "user_model.py"
    path.write_text(body)
    return f"{path}:build"


GOOD_MODEL = """
import torch
from torch import nn
def build():
    return nn.Conv2d(3, 19, 1), {"num_classes": 19, %s}
"""

# ----------------------------------------------------------------------------- the table


@dataclass
class Case:
    """One bad input: ``args(tmp, base)`` gives the command line; the run must exit ``code``
    with one stderr line containing ``says``."""

    name: str
    args: Callable[[Path, dict], list[str]]
    code: int
    says: str


EV = ("evaluate", "-m", "b0", "--weights", "none", "--workers", "0", "--inference", "whole",
      "--corruptions", "none")  # fmt: skip


def ev(*more: str, root: str = "{city}") -> Callable[[Path, dict], list[str]]:
    """evaluate with a fast, valid baseline, then ``more`` (later options win)."""
    return cmd(*EV, "--cityscapes-root", root, *more)


def ev_builder(body: str) -> Callable[[Path, dict], list[str]]:
    """evaluate of a user's builder file holding ``body``."""
    return lambda t, b: ["evaluate", "-m", builder(t, body), *EV[3:], "--cityscapes-root",
                         str(b["city"]), "--out", f"{t}/o"]  # fmt: skip


def cmd(*parts: str) -> Callable[[Path, dict], list[str]]:
    return lambda tmp, b: [p.format(tmp=tmp, **b) for p in parts]


def with_data(mutate, *parts: str) -> Callable[[Path, dict], list[str]]:
    """``parts`` with ``{data}``: a copy of the dataset changed by ``mutate``."""

    def args(tmp: Path, b: dict) -> list[str]:
        data = dataset(tmp, b, mutate)
        return [p.format(tmp=tmp, data=data, **b) for p in parts]

    return args


def with_path(make, *parts: str) -> Callable[[Path, dict], list[str]]:
    """``parts`` with ``{path}``: what ``make(tmp)`` returns (a foreign folder, a file, ...)."""

    def args(tmp: Path, b: dict) -> list[str]:
        path = make(tmp)
        return [p.format(tmp=tmp, path=path, **b) for p in parts]

    return args


def with_old_run(*parts: str) -> Callable[[Path, dict], list[str]]:
    """``parts`` with ``{path}``: a copy of the base run without per-image data."""

    def args(tmp: Path, b: dict) -> list[str]:
        path = old_run(tmp, b)
        return [p.format(tmp=tmp, path=path, **b) for p in parts]

    return args


def _sixteen_bit_image(root: Path) -> None:
    cv2.imwrite(str(root / VAL_IMG), np.full((64, 128, 3), 100, np.uint16))


def _truncated_image(root: Path) -> None:
    data = (root / VAL_IMG).read_bytes()
    (root / VAL_IMG).write_bytes(data[: len(data) // 2])


def _image_is_a_folder(root: Path) -> None:
    (root / "leftImg8bit/val/aachen/aachen_000009_000019_leftImg8bit.png").mkdir()


def _no_label(root: Path) -> None:
    (root / VAL_LABEL).unlink()


MAKE_C = ("make-cityscapes-c", "--corruptions", "fog", "--severities", "1", "--workers", "0")
TRAIN = ("train", "-m", "b0", "--init", "none", "--iters", "1", "--crop", "32", "--eval-every",
         "0", "--workers", "0")  # fmt: skip
ERF = ("erf", "-m", "b0", "--weights", "none", "--num-images", "1", "--size", "64x32")

CASES = [
    # ---- corrupt
    Case("corrupt: no such image", cmd("corrupt", "{tmp}/nope.png", "-c", "fog", "-o", "{tmp}/o.png"), 2, "no such image"),
    Case("corrupt: unknown corruption", cmd("corrupt", "{img}", "-c", "fgo", "-o", "{tmp}/o.png"), 2, "did you mean 'fog'"),
    Case("corrupt: severity 6", cmd("corrupt", "{img}", "-c", "fog", "-s", "6", "-o", "{tmp}/o.png"), 2, "--severity"),
    Case("corrupt: -o without -c", cmd("corrupt", "{img}", "-o", "{tmp}/o.png"), 2, "-o needs --corruption"),
    Case("corrupt: no output", cmd("corrupt", "{img}", "-c", "fog"), 2, "give -o"),
    Case("corrupt: output exists", with_path(a_file, "corrupt", "{img}", "-c", "fog", "-o", "{path}"), 2, "pass --overwrite"),
    Case("corrupt: output is the input", cmd("corrupt", "{img}", "-c", "fog", "-o", "{img}", "--overwrite"), 2, "is the input image"),
    Case("corrupt: output is a folder", cmd("corrupt", "{img}", "-c", "fog", "-o", "{tmp}"), 2, "is a directory"),
    Case("corrupt: 16-bit image", cmd("corrupt", "{img16}", "-c", "fog", "-o", "{tmp}/o.png"), 2, "16-bit"),
    Case("corrupt: not an image", cmd("corrupt", "{text}", "-c", "fog", "-o", "{tmp}/o.png"), 2, "cannot decode"),
    Case("corrupt: unknown backend", cmd("corrupt", "{img}", "-c", "fog", "--backend", "gpu", "-o", "{tmp}/o.png"), 2, "--backend"),
    Case("corrupt: output folder not writable", cmd("corrupt", "{img}", "-c", "fog", "-o", "/sys/robustseg-test.png"), 1, "/sys/robustseg-test.png"),
    # ---- make-cityscapes-c
    Case("make-c: no dataset given", cmd(*MAKE_C, "--out", "{tmp}/o"), 2, "no Cityscapes root"),
    Case("make-c: dataset missing", cmd(*MAKE_C, "--cityscapes-root", "{tmp}/nope", "--out", "{tmp}/o"), 2, "does not exist"),
    Case("make-c: unknown split", cmd(*MAKE_C, "--cityscapes-root", "{city}", "--split", "tset", "--out", "{tmp}/o"), 2, "has no split 'tset'"),
    Case("make-c: unknown corruption", cmd("make-cityscapes-c", "--cityscapes-root", "{city}", "--corruptions", "fgo", "--out", "{tmp}/o"), 2, "unknown corruption"),
    Case("make-c: severity 0", cmd(*MAKE_C[:4], "0", "--cityscapes-root", "{city}", "--out", "{tmp}/o"), 2, "severit"),
    Case("make-c: severities 1-9", cmd(*MAKE_C[:4], "1-9", "--cityscapes-root", "{city}", "--out", "{tmp}/o"), 2, "severit"),
    Case("make-c: negative workers", cmd(*MAKE_C[:4], "1", "--workers", "-1", "--cityscapes-root", "{city}", "--out", "{tmp}/o"), 2, "--workers"),
    Case("make-c: limit 0", cmd(*MAKE_C, "--limit", "0", "--cityscapes-root", "{city}", "--out", "{tmp}/o"), 2, "--limit"),
    Case("make-c: out inside the dataset", with_data(None, *MAKE_C, "--cityscapes-root", "{data}", "--out", "{data}/leftImg8bit/c"), 2, "must not be inside the dataset"),
    Case("make-c: out is a file", with_path(a_file, *MAKE_C, "--cityscapes-root", "{city}", "--out", "{path}"), 1, "not a directory"),
    Case("make-c: out under a file", with_path(a_file, *MAKE_C, "--cityscapes-root", "{city}", "--out", "{path}/sub"), 1, "is a file"),
    Case("make-c: a user's folder", with_path(lambda t: foreign(t, "manifest.csv"), *MAKE_C, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("make-c: out not writable", cmd(*MAKE_C, "--cityscapes-root", "{city}", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    Case("make-c: out in use", with_path(lambda t: locked(t, "cityscapes-c"), *MAKE_C, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "being written by process 1"),
    Case("make-c: 16-bit image", with_data(_sixteen_bit_image, *MAKE_C, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "16-bit"),
    Case("make-c: truncated image", with_data(_truncated_image, *MAKE_C, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "truncated PNG"),
    Case("make-c: an image that is a folder", with_data(_image_is_a_folder, *MAKE_C, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 1, "is a directory"),
    Case("make-c: other seed into a tree", cmd(*MAKE_C, "--seed", "3", "--cityscapes-root", "{city}", "--out", "{tree}"), 2, "was made with seed=0"),
    Case("make-c: a tree of another dataset", cmd(*MAKE_C, "--cityscapes-root", "{other}", "--out", "{tree}"), 2, "was made from another"),
    Case("make-c: an evaluate run as out", cmd(*MAKE_C, "--cityscapes-root", "{city}", "--out", "{run}"), 2, "holds the output of robustseg evaluate"),
    # ---- make-corrupted, datasets
    Case("make-corrupted: unknown dataset", cmd("make-corrupted", "--dataset", "ade2k", "--data-root", "{tmp}", "--out", "{tmp}/o"), 2, "did you mean 'ade20k'"),
    Case("make-corrupted: no data root", cmd("make-corrupted", "--dataset", "ade20k", "--out", "{tmp}/o"), 2, "no ADE20K root"),
    Case("make-corrupted: not the layout", cmd("make-corrupted", "--dataset", "ade20k", "--data-root", "{city}", "--out", "{tmp}/o"), 2, "ADEChallengeData2016"),
    Case("make-corrupted: folder without classes.txt", with_path(lambda t: ((t / "f" / "images").mkdir(parents=True), (t / "f" / "labels").mkdir(), t / "f")[2], "make-corrupted", "--dataset", "folder", "--data-root", "{path}", "--out", "{tmp}/o"), 2, "classes.txt"),
    Case("make-corrupted: a folder dataset without its layout", cmd("make-corrupted", "--dataset", "folder", "--data-root", "{city}", "--corruptions", "fog", "--severities", "1", "--out", "{tree}"), 2, "images/ and labels/"),
    Case("evaluate: unknown dataset", ev("--dataset", "kitti", "--out", "{tmp}/o"), 2, "unknown dataset 'kitti'"),
    Case("evaluate: --weights with an hf:// model", cmd("evaluate", "-m", "hf://org/name", "--weights", "none", "--cityscapes-root", "{city}", "--out", "{tmp}/o"), 2, "brings its own weights"),
    Case("evaluate: both roots", ev("--data-root", "{city}", "--out", "{tmp}/o"), 2, "not both"),
    Case("evaluate: a natural set as the dataset", cmd(*EV, "--dataset", "acdc", "--data-root", "{tmp}", "--out", "{tmp}/o"), 2, "is a natural-shift set"),
    Case("evaluate: natural set without conditions", ev("--natural", "ade20k={tmp}", "--out", "{tmp}/o"), 2, "no natural-shift conditions"),
    Case("evaluate: unknown natural condition", ev("--natural", "acdc:haze={tmp}", "--out", "{tmp}/o"), 2, "no condition 'haze'"),
    Case("evaluate: natural set without root", ev("--natural", "acdc", "--out", "{tmp}/o"), 2, "no ACDC root"),
    Case("evaluate: natural set not in its layout", ev("--natural", "acdc:fog={city}", "--out", "{tmp}/o"), 2, "rgb_anon"),
    # ---- evaluate
    Case("evaluate: unknown model", lambda t, b: ["evaluate", "-m", "b9", "--out", f"{t}/o"], 2, "unknown model"),
    Case("evaluate: weights file missing", ev("--weights", "{tmp}/w.safetensors", "--out", "{tmp}/o"), 2, "w.safetensors"),
    Case("evaluate: crop H,W", ev("--crop", "512,1024", "--out", "{tmp}/o"), 2, "not a size"),
    Case("evaluate: stride beyond crop", ev("--inference", "slide", "--crop", "32", "--stride", "48", "--out", "{tmp}/o"), 2, "--stride 48x48 is larger than --crop 32x32"),
    Case("evaluate: batch size 0", ev("--batch-size", "0", "--out", "{tmp}/o"), 2, "--batch-size"),
    Case("evaluate: fp16 on the CPU", ev("--precision", "fp16", "--device", "cpu", "--out", "{tmp}/o"), 2, "fp16"),
    Case("evaluate: unknown device", ev("--device", "tpu", "--out", "{tmp}/o"), 2, "unknown device"),
    Case("evaluate: unknown inference", ev("--inference", "tiles", "--out", "{tmp}/o"), 2, "--inference"),
    Case("evaluate: nothing to evaluate", ev("--no-clean", "--out", "{tmp}/o"), 2, "nothing to evaluate"),
    Case("evaluate: negative save-predictions", ev("--save-predictions", "-1", "--out", "{tmp}/o"), 2, "--save-predictions"),
    Case("evaluate: not a tree", ev("--cityscapes-c", "{run}", "--corruptions", "fog", "--out", "{tmp}/o"), 2, "not a Cityscapes-C tree"),
    Case("evaluate: tree of another dataset", ev("--cityscapes-c", "{tree}", "--corruptions", "fog", "--severities", "1", "--out", "{tmp}/o", root="{other}"), 2, "was made from another"),
    Case("evaluate: tree lacks a severity", ev("--cityscapes-c", "{tree}", "--corruptions", "fog", "--severities", "2", "--out", "{tmp}/o"), 2, "is missing from the Cityscapes-C tree"),
    Case("evaluate: seed a tree ignores", ev("--cityscapes-c", "{tree}", "--corruptions", "fog", "--severities", "1", "--seed", "1", "--out", "{tmp}/o"), 2, "--seed 1 does not apply"),
    Case("evaluate: 16-bit image", with_data(_sixteen_bit_image, *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "16-bit"),
    Case("evaluate: truncated image", with_data(_truncated_image, *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "truncated"),
    Case("evaluate: image without label", with_data(_no_label, *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "has no label"),
    Case("evaluate: label of another size", with_data(lambda r: write_label(r, np.zeros((32, 64), np.uint8)), *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "is 64x32 but its image is 128x64"),
    Case("evaluate: label id 200", with_data(lambda r: write_label(r, np.full((64, 128), 200, np.uint8)), *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "outside the Cityscapes label table"),
    Case("evaluate: colour label", with_data(lambda r: write_label(r, np.zeros((64, 128, 3), np.uint8)), *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "a colour image"),
    Case("evaluate: 16-bit label", with_data(lambda r: write_label(r, np.zeros((64, 128), np.uint16)), *EV, "--cityscapes-root", "{data}", "--out", "{tmp}/o"), 2, "16-bit"),
    Case("evaluate: a user's folder", with_path(lambda t: foreign(t, "results.csv", "summary.csv"), *EV, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("evaluate: out is a file", with_path(a_file, *EV, "--cityscapes-root", "{city}", "--out", "{path}"), 1, "not a directory"),
    Case("evaluate: out under a file", with_path(a_file, *EV, "--cityscapes-root", "{city}", "--out", "{path}/run"), 1, "is a file"),
    Case("evaluate: out not writable", ev("--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    Case("evaluate: out in use", with_path(lambda t: locked(t, "evaluate"), *EV, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "being written by process 1"),
    Case("evaluate: another configuration", ev("--limit", "1", "--out", "{run}"), 2, "another configuration"),
    Case("evaluate: builder with a syntax error", ev_builder("def build(:\n"), 2, "SyntaxError"),
    Case("evaluate: builder raises", ev_builder("def build():\n    raise KeyError('oops')\n"), 2, "build() raised KeyError"),
    Case("evaluate: builder's unknown key", ev_builder(GOOD_MODEL % '"meen": [0, 0, 0]'), 2, "meen"),
    Case("evaluate: builder's bad mean", ev_builder(GOOD_MODEL % '"mean": "grey", "std": [1, 1, 1]'), 2, "mean"),
    # ---- report
    Case("report: run missing", cmd("report", "{tmp}/nope", "--out", "{tmp}/rep"), 2, "nope"),
    Case("report: not a run", cmd("report", "{tree}", "--out", "{tmp}/rep"), 2, "not a run directory"),
    Case("report: baseline over other images", cmd("report", "{run}", "{run2}", "--baseline", "{run2}", "--out", "{tmp}/rep"), 2, "evaluated on other images"),
    Case("report: a user's folder", with_path(lambda t: foreign(t, "index.md"), "report", "{run}", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("report: reference CSV missing", cmd("report", "{run}", "--reference", "{tmp}/ref.csv", "--out", "{tmp}/rep"), 2, "ref.csv"),
    Case("report: bad qualitative cell", cmd("report", "{run}", "--qualitative", "1", "--qualitative-corruptions", "fgo-9", "--out", "{tmp}/rep"), 2, "fgo"),
    Case("report: not an erf folder", cmd("report", "{run}", "--erf", "{tree}", "--out", "{tmp}/rep"), 2, "erf"),
    Case("report: --ci over a run without per-image data", with_old_run("report", "{path}", "--ci", "--out", "{tmp}/rep"), 2, "per-image"),
    Case("report: --resamples without --ci", cmd("report", "{run}", "--resamples", "10", "--out", "{tmp}/rep"), 2, "--ci"),
    Case("report: out not writable", cmd("report", "{run}", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    # ---- compare
    Case("compare: runs over other images", cmd("compare", "{run}", "{run2}"), 2, "different images"),
    Case("compare: not a run", cmd("compare", "{tree}", "{run}"), 2, "not a run directory"),
    Case("compare: run missing", cmd("compare", "{tmp}/nope", "{run}"), 2, "nope"),
    Case("compare: a run without per-image data", with_old_run("compare", "{path}", "{run}"), 2, "per-image"),
    Case("compare: csv exists", with_path(a_file, "compare", "{run}", "{run}", "--csv", "{path}"), 2, "exists"),
    Case("compare: zero resamples", cmd("compare", "{run}", "{run}", "--resamples", "0"), 2, "--resamples"),
    # ---- erf
    Case("erf: both image sources", cmd(*ERF, "--images", "{tmp}", "--cityscapes-root", "{city}", "--out", "{tmp}/e"), 2, "not both"),
    Case("erf: image folder missing", cmd(*ERF, "--images", "{tmp}/nope", "--out", "{tmp}/e"), 2, "does not exist"),
    Case("erf: size 0x3", cmd("erf", "-m", "b0", "--weights", "none", "--size", "0x3", "--cityscapes-root", "{city}", "--out", "{tmp}/e"), 2, "not a size"),
    Case("erf: weights per model", cmd(*ERF, "--weights", "none", "--weights", "none", "--cityscapes-root", "{city}", "--out", "{tmp}/e"), 2, "weights"),
    Case("erf: 16-bit image", with_path(lambda t: (cv2.imwrite(str(t / "x16.png"), np.zeros((40, 40, 3), np.uint16)), t)[1], *ERF, "--images", "{path}", "--out", "{tmp}/e"), 2, "16-bit"),
    Case("erf: out not writable", cmd(*ERF, "--cityscapes-root", "{city}", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    Case("erf: a user's folder", with_path(lambda t: foreign(t, "erf.csv"), *ERF, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "was not made by robustseg"),
    # ---- train
    Case("train: a tagged model", cmd("train", "-m", "segformer-b0.synthetic", "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "--init"),
    Case("train: crop that cannot fit", cmd(*TRAIN[:8], "4096", *TRAIN[9:], "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "cannot fit"),
    Case("train: crop as H,W", cmd(*TRAIN[:8], "32,64", *TRAIN[9:], "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "not a size"),
    Case("train: resume without a run", cmd(*TRAIN, "--resume", "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "resume"),
    Case("train: bad ratio range", cmd(*TRAIN, "--ratio-range", "a,b", "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "MIN,MAX"),
    Case("train: bad class weights", cmd(*TRAIN, "--class-weight", "x", "--cityscapes-root", "{city}", "--out", "{tmp}/t"), 2, "--class-weight"),
    Case("train: a user's folder", with_path(lambda t: foreign(t, "weights.safetensors", "log.jsonl"), *TRAIN, "--cityscapes-root", "{city}", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("train: out not writable", cmd(*TRAIN, "--cityscapes-root", "{city}", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    Case("train: no train split", with_data(lambda r: shutil.rmtree(r / "leftImg8bit" / "train"), *TRAIN, "--cityscapes-root", "{data}", "--out", "{tmp}/t"), 2, "no usable training split"),
    Case("train: 16-bit training image", with_data(lambda r: cv2.imwrite(str(next((r / "leftImg8bit/train").rglob("*.png"))), np.zeros((64, 128, 3), np.uint16)), *TRAIN, "--cityscapes-root", "{data}", "--out", "{tmp}/t"), 2, "16-bit"),
    # ---- make-synthetic-city
    Case("synthetic: size too small", cmd("make-synthetic-city", "--size", "10x10", "--out", "{tmp}/s"), 2, "too small"),
    Case("synthetic: size not WxH", cmd("make-synthetic-city", "--size", "wide", "--out", "{tmp}/s"), 2, "not a size"),
    Case("synthetic: nothing to render", cmd("make-synthetic-city", "--train", "0", "--val", "0", "--out", "{tmp}/s"), 2, "nothing to render"),
    Case("synthetic: a user's folder", with_path(lambda t: foreign(t, "notes.txt"), "make-synthetic-city", "--train", "1", "--val", "0", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("synthetic: out not writable", cmd("make-synthetic-city", "--train", "1", "--val", "0", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    Case("synthetic: a dataset as out", cmd("make-synthetic-city", "--train", "1", "--val", "0", "--out", "{city}"), 2, "was not made by robustseg"),
    # ---- demo
    Case("demo: a user's folder", with_path(lambda t: foreign(t, "index.md"), "demo", "--images", "1", "--out", "{path}"), 2, "was not made by robustseg"),
    Case("demo: size too small", cmd("demo", "--size", "10x10", "--out", "{tmp}/d"), 2, "at least"),
    Case("demo: out not writable", cmd("demo", "--images", "1", "--out", "/sys/robustseg-test"), 1, "/sys/robustseg-test"),
    # ---- any command
    Case("unknown command", cmd("evalute"), 2, "No such command"),
    Case("unknown option", cmd("evaluate", "--modle", "b0"), 2, "No such option"),
    Case("missing option", cmd("evaluate", "--out", "{tmp}/o"), 2, "--model"),
]  # fmt: skip


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)
    commands = {c.name.split(":")[0] for c in CASES}
    assert {"corrupt", "make-c", "evaluate", "report", "compare", "erf", "train", "synthetic",
            "demo"} <= commands  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, base, tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")
    args = case.args(tmp_path, base)
    watched = {"case": tmp_path, "base": base["base_dir"]}
    before = {k: snapshot(v) for k, v in watched.items()}
    result = CliRunner().invoke(cli, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == case.code, (result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("robustseg: error: "), result.stderr
    assert case.says in lines[0], lines[0]
    assert {k: snapshot(v) for k, v in watched.items()} == before
    table = os.environ.get("ROBUSTSEG_BAD_INPUT_TABLE")  # a file to list the cases in (Markdown)
    if table:
        shown = lines[0].replace(str(tmp_path), "TMP").replace(str(base["base_dir"]), "BASE")
        with open(table, "a") as fh:
            fh.write(f"| {case.name} | {result.exit_code} | `{shown}` |\n")

"""A run's identity is its content: the model contract and the images' pixels enter run.json and
the configuration hash; resume, compare and report --ci refuse other contracts or pixels in one
line; run.json and its cells are cross-checked when read; the model's output is checked on every
batch and its own errors are one line; ``image_resize`` is Pillow's bilinear resize byte for
byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import PIL
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from robustbench_seg import runs
from robustbench_seg.cli import cli
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.engine.inference import pil_bilinear_resize, preprocess
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import Preprocessing
from tests.fake_cityscapes import make_fake_cityscapes
from tests.test_bad_inputs import snapshot

FIRST = "aachen/aachen_000000_000019"
SECOND = "aachen/aachen_000001_000019"  # the second image of the split (and its batch)

MODEL = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 19, 5, stride=4, padding=2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        k = torch.arange(19.0).view(1, 19, 1, 1)
        y = 3 * self.conv(x) + torch.cos(k * x.shape[-1] / 10)  # depends on the input size
        %s

def build():
    return Net(), {"num_classes": 19, "mean": [120.0, 110.0, 100.0], "std": [60.0, 60.0, 60.0]%s}
"""


def builder(folder: Path, forward: str = "return y", meta: str = "") -> str:
    path = folder / "user_model.py"
    path.write_text(MODEL % (forward, meta))
    return f"{path}:build"


def ev(model: str, root: Path, out: Path, *more: str) -> list[str]:
    return ["evaluate", "-m", model, "--cityscapes-root", str(root), "--corruptions", "none",
            "--inference", "whole", "--batch-size", "1", "--workers", "0", "--out", str(out),
            *more]  # fmt: skip


def invoke(args: list[str]):
    result = CliRunner().invoke(cli, args)
    return result, result.stderr.strip().splitlines()


def one_line(result, lines: list[str], code: int, *says: str) -> str:
    assert result.exit_code == code, (result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("robustseg: error: "), result.stderr
    for s in says:
        assert s in lines[0], lines[0]
    return lines[0]


def clean_miou(out: Path) -> float:
    return float(np.load(out / "cells" / "clean.npz")["confusion"].trace())


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    monkeypatch.setenv("ROBUSTSEG_NO_PROGRESS", "1")


@pytest.fixture
def city(tmp_path):
    make_fake_cityscapes(tmp_path / "cs", (2, 1), size=(64, 128))
    return tmp_path / "cs"


# ----------------------------------------------------------------------------- resume


def test_resume_after_the_contract_changed_is_refused(city, tmp_path):
    """The issue's example: a builder first run without input_size, then fixed: the old run is
    not resumed (it printed the stale number); --overwrite computes the fresh one."""
    out = tmp_path / "run"
    result, _ = invoke(ev(builder(tmp_path), city, out))
    assert result.exit_code == 0, result.output
    stale = clean_miou(out)
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["contract"]["input_size"] is None

    fixed = builder(tmp_path, meta=', "input_size": [48, 96]')
    before = snapshot(tmp_path)
    line = one_line(*invoke(ev(fixed, city, out)), 2)
    assert line.endswith(
        "holds a run with another configuration: the model contract changed (input_size None "
        "-> (48, 96)) since this run was started; use another --out or --overwrite"
    ), line
    assert snapshot(tmp_path) == before

    result, _ = invoke(ev(fixed, city, tmp_path / "fresh"))
    assert result.exit_code == 0
    result, _ = invoke(ev(fixed, city, out, "--overwrite"))
    assert result.exit_code == 0
    assert clean_miou(out) == clean_miou(tmp_path / "fresh") != stale


def test_resume_over_other_pixels_is_refused(city, tmp_path):
    out = tmp_path / "run"
    model = builder(tmp_path)
    assert invoke(ev(model, city, out))[0].exit_code == 0
    image = city / "leftImg8bit" / "val" / f"{FIRST}_leftImg8bit.png"
    cv2.imwrite(str(image), 255 - cv2.imread(str(image)))  # same name, other pixels
    before = snapshot(out)
    one_line(*invoke(ev(model, city, out)), 2,
             f"the images' pixels changed (1 of 3 images differ, e.g. {FIRST}) since this run "
             "was started")  # fmt: skip
    assert snapshot(out) == before


def test_run_json_records_the_contract_and_the_content(city, tmp_path):
    from robustbench_seg.data.cityscapes import list_pairs

    pre = Preprocessing((0, 0, 0), (255, 255, 255), image_resize=(32, 64))
    torch.manual_seed(0)
    module = torch.nn.Conv2d(3, 19, 1)
    kw = dict(cityscapes_root=city, corruptions=None, inference="whole", workers=0,
              progress=False)  # fmt: skip
    evaluate(module, preprocessing=pre, out=tmp_path / "a", **kw)
    info = json.loads((tmp_path / "a" / "run.json").read_text())
    assert info["config"]["contract"] == {
        "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0], "channel_order": "RGB",
        "value_scale": 255.0, "input_size": None, "output_classes": None,
        "image_resize": [32, 64], "num_outputs": 19, "class_map": None,
    }  # fmt: skip
    shas = [hashlib.sha256(p.image.path.read_bytes()).hexdigest() for p in list_pairs(city, "val")]
    assert info["image_sha256"] == shas
    lines = sorted(f"{i}\t{s}" for i, s in zip(info["image_ids"], shas, strict=True))
    assert (
        info["config"]["images_content_sha256"]
        == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    )
    # identical invocations: the same hash (the run resumes, no cell is written again)
    stamp = (tmp_path / "a" / "cells" / "clean.npz").stat().st_mtime_ns
    evaluate(module, preprocessing=pre, out=tmp_path / "a", **kw)
    assert (tmp_path / "a" / "cells" / "clean.npz").stat().st_mtime_ns == stamp
    assert (
        json.loads((tmp_path / "a" / "run.json").read_text())["config_hash"] == info["config_hash"]
    )
    # the resize is part of the identity
    evaluate(module, preprocessing=Preprocessing((0, 0, 0), (255, 255, 255)), out=tmp_path / "b",
             **kw)  # fmt: skip
    assert (
        json.loads((tmp_path / "b" / "run.json").read_text())["config_hash"] != info["config_hash"]
    )
    with pytest.raises(RobustSegError, match=r"image_resize \(32, 64\) -> None"):
        evaluate(module, preprocessing=Preprocessing((0, 0, 0), (255, 255, 255)),
                 out=tmp_path / "a", **kw)  # fmt: skip


# ----------------------------------------------------------------------------- every batch


def test_a_later_batch_with_other_channels_is_refused(city, tmp_path):
    out = tmp_path / "run"
    model = builder(tmp_path, forward="return y if self.calls == 1 else y[:, :18]")
    one_line(*invoke(ev(model, city, out)), 2,
             f"the model returned 18 classes, expected 19, on clean, {SECOND}")  # fmt: skip
    assert not list((out / "cells").glob("*.npz"))


def test_more_channels_than_classes_says_how_to_declare_them(city, tmp_path):
    model = builder(tmp_path, forward="return torch.cat([y, y[:, :1]], 1)")
    one_line(*invoke(ev(model, city, tmp_path / "run")), 2,
             f"the model returned 20 classes, expected 19, on clean, {FIRST}: declare "
             "num_classes 20 and pick the dataset's 19 channels with output_classes (a builder's "
             "metadata {'num_classes': 20, 'output_classes': [...19 indices]}")  # fmt: skip


def test_an_error_in_forward_is_one_line_naming_the_cell_and_image(city, tmp_path):
    out = tmp_path / "run"
    model = builder(tmp_path, forward="if self.calls == 2:\n"
                    "            raise ValueError('boom on purpose\\nsecond line')\n        return y")  # fmt: skip
    line = one_line(*invoke(ev(model, city, out)), 1)
    assert line == (
        f"robustseg: error: the model's forward() failed on clean, {SECOND}: ValueError: boom on "
        "purpose"
    ), line
    assert not list((out / "cells").glob("*.npz"))


# ----------------------------------------------------------------------------- compare, report


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Runs over one dataset (two models) and over another with the same names, other pixels."""
    tmp = tmp_path_factory.mktemp("identity")
    city, other = tmp / "data", tmp / "other-data"
    make_fake_cityscapes(city, (2, 1), size=(64, 128))
    make_fake_cityscapes(other, (2, 1), size=(64, 128))
    for p in sorted((other / "leftImg8bit").rglob("*.png")):
        cv2.imwrite(str(p), 255 - cv2.imread(str(p)))
    kw = dict(corruptions="contrast", severities="1", inference="whole", workers=0,
              progress=False)  # fmt: skip
    pre = Preprocessing((0.0,) * 3, (255.0,) * 3)
    for name, root, seed in (("a", city, 0), ("b", city, 1), ("other", other, 0)):
        torch.manual_seed(seed)
        evaluate(torch.nn.Conv2d(3, 19, 1), preprocessing=pre, cityscapes_root=root,
                 out=tmp / name, **kw)  # fmt: skip
    return tmp


def copy_run(two: Path, name: str, dest: Path) -> Path:
    shutil.copytree(two / name, dest)
    return dest


def test_compare_and_report_refuse_other_pixels(two, tmp_path):
    result, _ = invoke(["compare", str(two / "a"), str(two / "b")])  # same pixels: paired
    assert result.exit_code == 0, result.output
    before = snapshot(two)
    for args in (["compare", str(two / "a"), str(two / "other")],
                 ["report", str(two / "a"), str(two / "other"), "--ci", "--out",
                  str(tmp_path / "rep")],
                 ["report", str(two / "a"), "--baseline", str(two / "other"), "--out",
                  str(tmp_path / "rep")]):  # mCD without --ci  # fmt: skip
        one_line(*invoke(args), 2, "were evaluated on different images (the same 3 file names "
                 "with other pixels: the images' content digests differ)")  # fmt: skip
    assert snapshot(two) == before and not (tmp_path / "rep").exists()


def test_a_truncated_cell_file_is_one_line_naming_it(two, tmp_path):
    run = copy_run(two, "a", tmp_path / "a")
    cell = run / "cells" / "contrast-1.npz"
    cell.write_bytes(cell.read_bytes()[: cell.stat().st_size // 2])
    before = snapshot(tmp_path)
    for args in (["compare", str(run), str(two / "b")],
                 ["report", str(run), str(two / "b"), "--ci", "--out", str(tmp_path / "rep")]):  # fmt: skip
        one_line(*invoke(args), 1, f"{cell} cannot be read (BadZipFile: ",
                 "the file is damaged; run robustseg evaluate again")  # fmt: skip
    assert snapshot(tmp_path) == before


def test_run_json_and_its_cells_are_cross_checked(two, tmp_path):
    ids = copy_run(two, "a", tmp_path / "ids")
    info = json.loads((ids / "run.json").read_text())
    info["image_ids"][2] = "bochum/someone_else"  # sha256s and digests still those of the cells
    info["config"]["images_content_sha256"] = runs.content_sha256(info["image_ids"],
                                                                  info["image_sha256"])  # fmt: skip
    (ids / "run.json").write_text(json.dumps(info))
    one_line(*invoke(["compare", str(ids), str(ids)]), 1,
             "cells/clean.npz was computed on other image ids than run.json lists")  # fmt: skip

    count = copy_run(two, "a", tmp_path / "count")
    path = count / "cells" / "contrast-1.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["images"] = np.int64(2)
    np.savez_compressed(path, **arrays)
    one_line(*invoke(["compare", str(count), str(count)]), 1,
             "cells/contrast-1.npz holds 2 images, run.json 3")  # fmt: skip

    shas = copy_run(two, "a", tmp_path / "shas")
    info = json.loads((shas / "run.json").read_text())
    info["image_sha256"][0] = "0" * 64
    (shas / "run.json").write_text(json.dumps(info))
    one_line(*invoke(["compare", str(shas), str(shas)]), 1,
             "run.json's image sha256s do not give its images' content digest")  # fmt: skip


def _as_before_this_change(run: Path) -> None:
    """What robustseg wrote before run identity was content: no contract, digest or ids."""
    info = json.loads((run / "run.json").read_text())
    for key in ("contract", "images_content_sha256"):
        del info["config"][key]
    del info["image_sha256"]
    (run / "run.json").write_text(json.dumps(info))
    for cell in (run / "cells").glob("*.npz"):
        with np.load(cell) as z:
            arrays = {k: z[k] for k in z.files if k != "ids"}
        np.savez_compressed(cell, **arrays)


def test_runs_from_before_are_still_read_and_paired_by_names(two, tmp_path):
    old_a, old_other = copy_run(two, "a", tmp_path / "a"), copy_run(two, "other", tmp_path / "o")
    for run in (old_a, old_other):
        _as_before_this_change(run)
    result, _ = invoke(["compare", str(old_a), str(old_other)])  # today's behaviour: names only
    assert result.exit_code == 0, result.output
    result, _ = invoke(["report", str(old_a), "--ci", "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    # resuming one into the same --out says why it cannot
    with pytest.raises(RobustSegError, match="started by an earlier robustseg"):
        runs.prepare_run_dir(old_a, "x", overwrite=False, info=runs.RunInfo({"contract": {}}, "x"))


# ----------------------------------------------------------------------------- image_resize


def _pil_vertical_first(h: int, w: int, out_h: int, out_w: int) -> bool:
    return h - out_h > 0 and h - out_h > 2 * (w - out_w)  # Pillow 13's order of the passes


SIZES = [
    ((64, 128), (32, 64)),  # down by 2
    ((64, 128), (100, 200)),  # up, not an integer factor (torch's uint8 resize differs here)
    ((37, 53), (19, 71)),  # down and up
    ((50, 50), (123, 17)),
    ((80, 40), (15, 28)),  # the height shrinks most: Pillow 13 resamples vertically first
    ((51, 50), (39, 60)),
    ((300, 200), (7, 5)),  # large kernels
    ((9, 11), (9, 40)),  # one axis only
    ((1, 1), (3, 2)),
]


@pytest.mark.parametrize(("shape", "size"), SIZES, ids=[f"{a}-{b}" for a, b in SIZES])
def test_image_resize_is_pillows_bilinear_byte_for_byte(shape, size):
    if _pil_vertical_first(*shape, *size) and int(PIL.__version__.split(".")[0]) < 13:
        pytest.skip("Pillow < 13 resamples horizontally first (the contract follows Pillow 13)")
    rng = np.random.default_rng(sum(shape) + sum(size))
    images = rng.integers(0, 256, (2, *shape, 3), dtype=np.uint8)
    ours = pil_bilinear_resize(torch.from_numpy(images).permute(0, 3, 1, 2), size)
    ours = ours.permute(0, 2, 3, 1).numpy()
    for image, mine in zip(images, ours, strict=True):
        theirs = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR))
        assert mine.dtype == np.uint8 and np.array_equal(mine, theirs)


def test_image_resize_comes_before_normalisation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    resized = np.array(Image.fromarray(image).resize((45, 30), Image.BILINEAR))
    plain = Preprocessing((120.0, 110.0, 100.0), (60.0, 61.0, 62.0), channel_order="BGR",
                          value_scale=1.0)  # fmt: skip
    pre = Preprocessing(plain.mean, plain.std, "BGR", 1.0, image_resize=(30, 45))
    assert torch.equal(preprocess(image, pre), preprocess(resized, plain))
    torch.manual_seed(0)
    module = torch.nn.Conv2d(3, 19, 3, padding=1)
    cpu = torch.device("cpu")
    a = Segmenter(module, pre, cpu, num_outputs=19).logits(image[None], (64, 128))
    b = Segmenter(module, plain, cpu, num_outputs=19).logits(resized[None], (64, 128))
    assert a.shape == (1, 19, 64, 128) and torch.equal(a, b)


@pytest.mark.parametrize("size", [(0, 4), (4,), (2.5, 4), (True, 3)])
def test_image_resize_must_be_a_size(size):
    with pytest.raises(RobustSegError, match="image_resize must be"):
        Preprocessing((0.0,) * 3, (1.0,) * 3, image_resize=size)


def test_an_hf_models_class_map_is_recorded_and_resume_checks_it(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from robustbench_seg.data.cityscapes import CLASS_NAMES
    from tests.test_hf_models import _publish

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    labels = [n for n in CLASS_NAMES if n not in ("rider", "train")] + ["dog", "boat"]
    _publish(tmp_path / "hub", "org/ade", "segformer", labels)
    make_fake_cityscapes(tmp_path / "cs", (1,), size=(64, 128))
    kw = dict(cityscapes_root=tmp_path / "cs", corruptions=None, workers=0, device="cpu",
              progress=False, save_predictions=0, out=tmp_path / "run")  # fmt: skip
    evaluate("hf://org/ade", class_map={"rider": "dog", "train": "boat"}, **kw)
    class_map = json.loads((tmp_path / "run" / "run.json").read_text())["config"]["contract"][
        "class_map"
    ]
    assert list(class_map) == list(CLASS_NAMES)
    assert class_map["road"] == [0, "road"] and class_map["rider"] == [17, "dog"]
    assert class_map["train"] == [18, "boat"] and class_map["bicycle"] == [16, "bicycle"]
    with pytest.raises(RobustSegError, match=r"the model contract changed \(class_map: rider "
                       r"\(17, dog\) -> \(18, boat\), train \(18, boat\) -> \(17, dog\)\); "
                       r"the model's weights changed"):  # fmt: skip
        evaluate("hf://org/ade", class_map={"rider": "boat", "train": "dog"}, **kw)


def test_a_builder_declares_image_resize_in_its_metadata(city, tmp_path):
    out = tmp_path / "run"
    result, _ = invoke(ev(builder(tmp_path, meta=', "image_resize": [32, 64]'), city, out))
    assert result.exit_code == 0, result.output
    contract = json.loads((out / "run.json").read_text())["config"]["contract"]
    assert contract["image_resize"] == [32, 64] and contract["input_size"] is None
    one_line(*invoke(ev(builder(tmp_path, meta=', "image_resize": [0, 4]'), city, tmp_path / "b")),
             2, "bad metadata: image_resize must be (H, W), two integers >= 1, got (0, 4)")  # fmt: skip
    assert not (tmp_path / "b").exists()


def test_natural_cells_over_other_pixels_are_not_paired():
    from robustbench_seg.compare import check_natural
    from robustbench_seg.runs import RunInfo

    def config(content):
        return RunInfo({"natural": [{"cell": "acdc:fog", "images_sha256": "names", "num_images": 4,
                                     "images_content_sha256": content}]}, "0" * 16)  # fmt: skip

    check_natural(("a", config("x")), ("b", config("x")))
    check_natural(("a", config(None)), ("b", config("x")))  # a run from before: names only
    with pytest.raises(RobustSegError, match=r"natural-shift cells acdc:fog on different images "
                       r"\(the same file names of acdc:fog with other pixels"):  # fmt: skip
        check_natural(("a", config("x")), ("b", config("y")))

"""run.json has a schema: a typed record (``runs.RunInfo``) with ``schema_version``, written by
evaluate with the keys it always had, read in one place; runs of an earlier schema are upgraded
and read as before, a run of a newer robustseg is refused in one line by every reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from robustbench_seg import runs
from robustbench_seg.engine.evaluate import EvalConfig, evaluate
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import Preprocessing
from tests.fake_cityscapes import make_fake_cityscapes
from tests.test_bad_inputs import snapshot
from tests.test_run_identity import invoke, one_line

DATA = Path(__file__).resolve().parent / "data"
# run.json of the demo's SegFormer run as the committed code wrote it at 5c9245f (no
# schema_version, image_sha256, model contract or images' content digest)
SCHEMA1 = DATA / "run_json_schema1.json"
KEYS = ["schema_version", "config", "config_hash", "settings", "versions", "device", "image_ids",
        "image_sha256", "class_names", "natural_image_ids"]  # fmt: skip
PRE = Preprocessing((0.0,) * 3, (255.0,) * 3)


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two runs of two models over the same images (a clean and a contrast cell)."""
    tmp = tmp_path_factory.mktemp("schema")
    city = tmp / "data"
    make_fake_cityscapes(city, (2, 1), size=(64, 128))
    for name, seed in (("a", 0), ("b", 1)):
        torch.manual_seed(seed)
        evaluate(torch.nn.Conv2d(3, 19, 1), preprocessing=PRE, cityscapes_root=city,
                 corruptions="contrast", severities="1", inference="whole", workers=0,
                 progress=False, out=tmp / name)  # fmt: skip
    return tmp


def _copy(two: Path, name: str, dest: Path) -> Path:
    shutil.copytree(two / name, dest)
    return dest


def test_a_fresh_runs_record_round_trips(two, tmp_path):
    text = (two / "a" / "run.json").read_text()
    raw = json.loads(text)
    assert list(raw) == KEYS and raw["schema_version"] == runs.SCHEMA_VERSION == 2
    assert "schema_version" not in raw["config"]
    info = runs.read_run_info(two / "a")
    assert info.schema_version == 2 and info.cells == ["clean", "contrast-1"]
    assert info.image_ids == tuple(raw["image_ids"]) and len(info.image_ids) == 3
    assert info.image_sha256 == tuple(raw["image_sha256"]) and info.contract is not None
    assert info.images == runs.ImageSet("val", 3, raw["config"]["images_sha256"],
                                        raw["config"]["images_content_sha256"])  # fmt: skip
    assert info.natural == {} and info.natural_image_ids == {} and len(info.class_names) == 19
    assert info.started <= info.finished and info.seconds > 0
    # the configuration gives its hash back (schema_version is not part of it)
    assert EvalConfig(**info.config).digest() == info.config_hash
    # written again: the same bytes, run.json and timing.json
    (tmp_path / "again").mkdir()
    runs.write_run_info(tmp_path / "again", info)
    for name in ("run.json", "timing.json"):
        assert (tmp_path / "again" / name).read_bytes() == (two / "a" / name).read_bytes(), name
    assert runs.read_run_info(tmp_path / "again") == info


def test_the_schema1_file_of_5c9245f_is_upgraded():
    raw = json.loads(SCHEMA1.read_text())
    assert "schema_version" not in raw and "image_sha256" not in raw
    info = runs.upgrade_run_info(raw)
    assert info.schema_version == 2 and info.config == raw["config"]
    assert info.config_hash == "304fc18527856e9e" and info.device == "x86_64"
    assert info.contract is None and info.image_sha256 is None
    assert info.images == runs.ImageSet("val", 10, raw["config"]["images_sha256"], None)
    assert len(info.image_ids) == 10 and len(info.class_names) == 19
    fog = [f"foggy-cityscapes:fog-{d}" for d in (1, 2, 3)]
    assert info.cells[0] == "clean" and info.cells[-3:] == fog and len(info.cells) == 76
    assert sorted(info.natural) == fog and sorted(info.natural_image_ids) == fog
    assert {s.count for s in info.natural.values()} == {10}
    assert all(s.names_sha256 and s.content_sha256 is None for s in info.natural.values())
    assert (info.started, info.finished, info.seconds) == (None, None, None)
    # written as schema 2: the keys it had, in their order, and the two it lacked
    assert info.to_json() == {"schema_version": 2, **raw, "image_sha256": None}
    assert list(info.to_json()) == KEYS


def _as_schema1(run: Path) -> None:
    """What robustseg wrote before the run identity and the schema: no schema_version, model
    contract, images' content digest, image sha256s or cell ids."""
    import numpy as np

    info = json.loads((run / "run.json").read_text())
    del info["schema_version"], info["image_sha256"]
    for key in ("contract", "images_content_sha256"):
        del info["config"][key]
    (run / "run.json").write_text(json.dumps(info))
    for cell in (run / "cells").glob("*.npz"):
        with np.load(cell) as z:
            arrays = {k: z[k] for k in z.files if k != "ids"}
        np.savez_compressed(cell, **arrays)


def test_an_old_run_is_read_by_compare_and_report_as_today(two, tmp_path):
    now_a, now_b = _copy(two, "a", tmp_path / "now" / "a"), _copy(two, "b", tmp_path / "now" / "b")
    old_a, old_b = _copy(two, "a", tmp_path / "old" / "a"), _copy(two, "b", tmp_path / "old" / "b")
    for run in (old_a, old_b):
        _as_schema1(run)
    info = runs.read_run_info(old_a)
    assert info.schema_version == 2 and info.contract is None and info.image_sha256 is None
    assert (
        info.images.content_sha256 is None
        and info.config_hash == runs.read_run_info(now_a).config_hash
    )
    outputs = {}
    for tag, (a, b) in (("now", (now_a, now_b)), ("old", (old_a, old_b))):
        result, _ = invoke(["compare", str(a), str(b), "--resamples", "200"])
        assert result.exit_code == 0, result.output
        rep = tmp_path / f"rep-{tag}"
        report, _ = invoke(["report", str(a), str(b), "--ci", "--resamples", "200", "--reference",
                            "none", "--qualitative", "0", "--out", str(rep)])  # fmt: skip
        assert report.exit_code == 0, report.output
        tables = {p.name: p.read_bytes() for p in sorted((rep / "tables").iterdir())}
        index = (rep / "index.md").read_text().replace(str(a.parent), "RUNS")
        outputs[tag] = (result.stdout.splitlines()[1:], tables, index)  # after the header: paths
    assert outputs["old"][0] == outputs["now"][0] and len(outputs["now"][0]) == 5
    assert outputs["old"][2] == outputs["now"][2]
    assert outputs["old"][1] == outputs["now"][1] and len(outputs["now"][1]) > 5


@pytest.mark.parametrize("version", [3, "2", 0])
def test_a_newer_or_unknown_schema_is_refused_in_one_line(two, tmp_path, version):
    run, other = _copy(two, "a", tmp_path / "a"), _copy(two, "b", tmp_path / "b")
    info = json.loads((run / "run.json").read_text())
    info["schema_version"] = version
    (run / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    says = (
        ["written by a newer robustseg (run schema 3; this robustseg reads up to 2): "
         "upgrade robustseg"]
        if version == 3
        else [f"has schema_version {version!r}, not one robustseg writes"]
    )  # fmt: skip
    before = snapshot(tmp_path)
    rep = tmp_path / "rep"
    module = tmp_path / "model.py"
    for args in (
        ["report", str(run), "--out", str(rep)],
        ["report", str(other), "--baseline", str(run), "--out", str(rep)],
        ["compare", str(other), str(run)],
    ):
        one_line(*invoke(args), 2, f"{run / 'run.json'} ", *says)
        assert snapshot(tmp_path) == before and not rep.exists()
    # evaluate resuming into it: refused before anything is written
    module.write_text(
        "import torch\n\ndef build():\n    torch.manual_seed(0)\n"
        "    return torch.nn.Conv2d(3, 19, 1), {'num_classes': 19, 'mean': [0.0] * 3, "
        "'std': [255.0] * 3}\n"
    )
    before = snapshot(tmp_path)
    config = info["config"]
    one_line(*invoke(["evaluate", "-m", f"{module}:build", "--cityscapes-root",
                      config["cityscapes_root"], "--corruptions", "contrast", "--severities", "1",
                      "--inference", "whole", "--workers", "0", "--out", str(run)]),
             2, *says)  # fmt: skip
    assert snapshot(tmp_path) == before
    with pytest.raises(RobustSegError, match="upgrade robustseg" if version == 3 else "schema"):
        runs.load_statistics(run)

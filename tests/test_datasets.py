"""The dataset registry: each adapter on a tiny tree in its official layout, the same data as
Cityscapes and as a folder, ADE20K-C, and natural-shift cells next to the synthetic ones."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from robustbench_seg.cli import cli
from robustbench_seg.data.ade20k import CLASS_NAMES as ADE_CLASSES
from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.data.cityscapes_c import generate_cityscapes_c
from robustbench_seg.data.datasets import DATASETS, get_dataset, parse_natural
from robustbench_seg.data.pairs import load_label
from robustbench_seg.engine.evaluate import evaluate
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.runs import load_statistics
from tests.fake_cityscapes import make_fake_cityscapes
from tests.fake_datasets import (
    cityscapes_as_folder,
    make_acdc,
    make_ade20k,
    make_dark_zurich,
    make_foggy,
)

PRE = Preprocessing(mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))


class _Tiny(nn.Module):
    def __init__(self, k: int = 19) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.num_classes = k
        self.conv = nn.Conv2d(3, k, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


FAST = dict(inference="whole", workers=0, progress=False)


def test_registry_lists_every_dataset_and_refuses_unknown_names():
    assert list(DATASETS) == ["cityscapes", "foggy-cityscapes", "acdc", "dark-zurich", "ade20k",
                              "folder"]  # fmt: skip
    with pytest.raises(RobustSegError, match="did you mean 'acdc'"):
        get_dataset("adcd")


def test_acdc_and_dark_zurich_layouts(tmp_path):
    ids = make_acdc(tmp_path / "acdc")
    acdc = get_dataset("acdc")
    assert acdc.classes() == CLASS_NAMES and acdc.conditions == ("fog", "night", "rain", "snow")
    fog = acdc.pairs(tmp_path / "acdc", condition="fog")
    assert [p.image_id for p in fog] == sorted(i for i in ids if i.startswith("fog/"))
    assert all(p.label_path.name.endswith("_gt_labelTrainIds.png") for p in fog)
    assert load_label(fog[0]).max() == 255 and load_label(fog[0])[10:].max() <= 18
    with pytest.raises(RobustSegError, match="needs a condition"):
        acdc.pairs(tmp_path / "acdc")
    with pytest.raises(RobustSegError, match="no condition 'haze'"):
        acdc.pairs(tmp_path / "acdc", condition="haze")
    dz_ids = make_dark_zurich(tmp_path / "dz")
    night = get_dataset("dark-zurich").pairs(tmp_path / "dz", condition="night")
    assert [p.image_id for p in night] == dz_ids


def test_foggy_cityscapes_densities_share_the_clean_image_ids(tmp_path):
    city = tmp_path / "cs"
    ids = make_fake_cityscapes(city, (2, 1))
    make_foggy(city)
    foggy = get_dataset("foggy-cityscapes")
    for cond in ("fog-1", "fog-2", "fog-3"):
        pairs = foggy.pairs(city, condition=cond)
        assert [p.image_id for p in pairs] == sorted(ids)
        assert all(p.label_path.name.endswith("_gtFine_labelIds.png") for p in pairs)
    beta = {p.image.path.name.rsplit("_", 1)[1] for p in foggy.pairs(city, condition="fog-3")}
    assert beta == {"0.02.png"}


def test_ade20k_layout_reduces_the_zero_label(tmp_path):
    ids = make_ade20k(tmp_path / "ade")
    ade = get_dataset("ade20k")
    assert len(ade.classes()) == 150 and ade.classes() == ADE_CLASSES
    pairs = ade.pairs(tmp_path / "ade")  # the folder holding ADEChallengeData2016
    assert [p.image_id for p in pairs] == ids
    import cv2

    raw = cv2.imread(str(pairs[0].label_path), cv2.IMREAD_UNCHANGED)
    decoded = load_label(pairs[0])
    assert np.array_equal(decoded[raw == 0], np.full((raw == 0).sum(), 255, np.uint8))
    assert np.array_equal(decoded[raw > 0], raw[raw > 0] - 1)


def test_folder_layout_and_classes_file(tmp_path):
    folder = tmp_path / "f"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    (folder / "classes.txt").write_text("# my classes\nbackground 0 0 0\nroad\ncar 0 0 142\n")
    import cv2

    cv2.imwrite(str(folder / "images" / "a.jpg"), np.full((40, 40, 3), 99, np.uint8))
    cv2.imwrite(
        str(folder / "labels" / "a.png"),
        np.array([[0, 1], [2, 255]], np.uint8).repeat(20, 0).repeat(20, 1),
    )
    data = get_dataset("folder")
    assert data.classes(folder) == ("background", "road", "car")
    assert data.palette(folder)[0] == (0, 0, 0) and data.palette(folder)[2] == (0, 0, 142)
    (pair,) = data.pairs(folder)
    assert pair.image_id == "a" and sorted(np.unique(load_label(pair))) == [0, 1, 2, 255]
    cv2.imwrite(str(folder / "labels" / "a.png"), np.full((40, 40), 3, np.uint8))
    with pytest.raises(RobustSegError, match=r"holds 3, outside 0..2 or 255"):
        load_label(pair)
    (folder / "images" / "b.png").write_bytes((folder / "images" / "a.jpg").read_bytes())
    with pytest.raises(RobustSegError, match="has no label"):
        data.pairs(folder)


def test_the_same_data_as_cityscapes_and_as_folder_gives_the_same_confusion(tmp_path):
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (2, 1))
    cityscapes_as_folder(city, tmp_path / "folder")
    model = _Tiny()
    kw = dict(preprocessing=PRE, corruptions="fog", severities="2", **FAST)
    evaluate(model, cityscapes_root=city, out=tmp_path / "a", **kw)
    evaluate(model, dataset="folder", data_root=tmp_path / "folder", out=tmp_path / "b", **kw)
    for cell in ("clean", "fog-2"):
        with (
            np.load(tmp_path / f"a/cells/{cell}.npz") as a,
            np.load(tmp_path / f"b/cells/{cell}.npz") as b,
        ):
            assert np.array_equal(a["confusion"], b["confusion"]) and a["confusion"].sum() > 0
            assert np.array_equal(a["per_image"], b["per_image"])


def test_ade20k_c_is_deterministic_across_worker_counts(tmp_path):
    make_ade20k(tmp_path / "ade", n=3)
    kw = dict(dataset="ade20k", corruptions="fog,gaussian_noise,jpeg_compression",
              severities="1,2", progress=False)  # fmt: skip
    s = generate_cityscapes_c(tmp_path / "ade", tmp_path / "c0", workers=0, **kw)
    generate_cityscapes_c(tmp_path / "ade", tmp_path / "c2", workers=2, **kw)
    assert (s.images, s.variants, s.written) == (3, 6, 18)

    def hashes(folder):
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*.png")) if "annotations" not in p.parts}  # fmt: skip

    h0, h2 = hashes(tmp_path / "c0"), hashes(tmp_path / "c2")
    assert len(h0) == 18 and h0 == h2
    # the JPEG sources are stored losslessly, under their name with .png; labels linked
    assert "fog/1/ADEChallengeData2016/images/validation/ADE_val_00000001.png" in h0
    meta = json.loads((tmp_path / "c0/metadata.json").read_text())
    assert meta["dataset"] == "corrupted" and meta["source_dataset"] == "ade20k"
    # evaluate on the tree equals evaluate corrupting on the fly
    model = _Tiny(150)
    kw2 = dict(dataset="ade20k", data_root=tmp_path / "ade", preprocessing=PRE,
               corruptions="fog", severities="1", **FAST)  # fmt: skip
    evaluate(model, cityscapes_c=tmp_path / "c0", out=tmp_path / "r1", **kw2)
    evaluate(model, out=tmp_path / "r2", **kw2)
    with (
        np.load(tmp_path / "r1/cells/fog-1.npz") as a,
        np.load(tmp_path / "r2/cells/fog-1.npz") as b,
    ):
        assert np.array_equal(a["confusion"], b["confusion"]) and a["confusion"].shape == (150, 150)
    # a Cityscapes evaluation refuses the ADE20K tree
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (1,))
    with pytest.raises(RobustSegError, match="is a corrupted ade20k, not cityscapes"):
        evaluate(_Tiny(), preprocessing=PRE, cityscapes_root=city, cityscapes_c=tmp_path / "c0",
                 corruptions="fog", severities="1", **FAST)  # fmt: skip


def test_natural_cells_next_to_the_synthetic_ones(tmp_path):
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (2, 1))
    make_foggy(city)
    make_acdc(tmp_path / "acdc")
    out = tmp_path / "run"
    evaluate(_Tiny(), preprocessing=PRE, cityscapes_root=city, corruptions="fog", severities="1",
             natural=[f"acdc:fog,night={tmp_path / 'acdc'}", "foggy-cityscapes"], out=out, **FAST)  # fmt: skip
    run = json.loads((out / "run.json").read_text())
    cells = ["clean", "fog-1", "acdc:fog", "acdc:night", "foggy-cityscapes:fog-1",
             "foggy-cityscapes:fog-2", "foggy-cityscapes:fog-3"]  # fmt: skip
    assert run["config"]["cells"] == cells
    assert [n["num_images"] for n in run["config"]["natural"]] == [2, 2, 3, 3, 3]
    summary = pd.read_csv(out / "summary.csv")
    for col in ("acdc:fog", "acdc:night", "foggy-cityscapes:fog"):
        assert summary[f"{col}_lo"].iloc[0] <= summary[col].iloc[0] <= summary[f"{col}_hi"].iloc[0]
    assert summary["mPC"].iloc[0] == pytest.approx(
        summary["fog"].iloc[0]
    )  # natural cells not in mPC
    results = pd.read_csv(out / "results.csv").drop_duplicates("cell").set_index("cell")
    assert results.loc["foggy-cityscapes:fog-2", "category"] == "natural"
    assert results.loc["foggy-cityscapes:fog-2", "severity"] == 2
    fog_mean = results.loc[[f"foggy-cityscapes:fog-{k}" for k in (1, 2, 3)], "miou"].mean()
    assert summary["foggy-cityscapes:fog"].iloc[0] == pytest.approx(100 * fog_mean, abs=1e-3)
    stats = load_statistics(out)
    assert set(stats.natural) == set(cells[2:]) and stats.counts.shape[1] == 2
    per_image = pd.read_csv(out / "per_image.csv")
    assert set(per_image.cell) == set(cells) and len(per_image) == 3 * 2 + 2 * 2 + 3 * 3
    # resumed: nothing to do, same numbers
    again = evaluate(_Tiny(), preprocessing=PRE, cityscapes_root=city, corruptions="fog",
                     severities="1", natural=[f"acdc:fog,night={tmp_path / 'acdc'}",
                                              "foggy-cityscapes"], out=out, **FAST)  # fmt: skip
    assert set(again.cell) == set(cells)


def test_natural_refusals(tmp_path):
    city = tmp_path / "cs"
    make_fake_cityscapes(city, (1,))
    make_ade20k(tmp_path / "ade")
    kw = dict(preprocessing=PRE, corruptions=None, **FAST)
    with pytest.raises(RobustSegError, match="ade20k has no natural-shift conditions"):
        parse_natural("ade20k")
    with pytest.raises(RobustSegError, match="no condition 'haze'"):
        parse_natural(f"acdc:haze={tmp_path}")
    with pytest.raises(RobustSegError, match="no ACDC root"):
        parse_natural("acdc")
    make_acdc(tmp_path / "acdc")
    with pytest.raises(RobustSegError, match="acdc's classes are not ade20k's"):
        evaluate(_Tiny(150), dataset="ade20k", data_root=tmp_path / "ade",
                 natural=[f"acdc={tmp_path / 'acdc'}"], **kw)  # fmt: skip
    with pytest.raises(RobustSegError, match="is a natural-shift set"):
        evaluate(_Tiny(), dataset="acdc", data_root=tmp_path / "acdc", **kw)


def test_cli_takes_dataset_and_data_root(tmp_path):
    make_ade20k(tmp_path / "ade")
    r = CliRunner().invoke(cli, ["make-corrupted", "--dataset", "ade20k", "--data-root",
                                 str(tmp_path / "ade"), "--corruptions", "fog", "--severities",
                                 "1", "--workers", "0", "--out", str(tmp_path / "c")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "c").rglob("ADE_val_*.png"))) == 3


def test_train_and_erf_on_another_dataset(tmp_path):
    """train builds the head for the dataset's classes and records the dataset; erf picks
    its images."""
    from robustbench_seg.analysis.erf import select_images
    from robustbench_seg.engine.train import train

    folder = tmp_path / "f"
    for split, n in (("train", 2), ("val", 1)):
        for j in range(n):
            import cv2

            from tests.conftest import natural_image

            (folder / "images" / split).mkdir(parents=True, exist_ok=True)
            (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / "images" / split / f"{j}.png"), natural_image(j, 64, 128))
            label = np.random.default_rng(j).integers(0, 3, (64, 128)).astype(np.uint8)
            cv2.imwrite(str(folder / "labels" / split / f"{j}.png"), label)
    (folder / "classes.txt").write_text("sky\nroad\ncar\n")
    result = train("b0", dataset="folder", data_root=folder, out=tmp_path / "t", init="none",
                   iters=2, batch_size=2, crop=(64, 128), scale=(128, 64), ratio_range=(1.0, 1.0),
                   warmup_iters=0, eval_every=2, workers=0, log_every=1, device="cpu",
                   progress=False)  # fmt: skip
    from safetensors.torch import load_file

    weights = load_file(str(result.weights))
    assert weights["decode_head.linear_pred.weight"].shape[0] == 3
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["config"]["dataset"] == "folder" and config["config"]["num_classes"] == 3
    assert result.val_miou == result.val_miou  # validated on the folder's val split
    make_ade20k(tmp_path / "ade", n=4)
    chosen = select_images(dataset="ade20k", data_root=tmp_path / "ade", num_images=2, seed=0)
    assert len(chosen) == 2 and all(p.suffix == ".jpg" for _, p in chosen)


def test_a_natural_only_run_and_compare_over_other_natural_images(tmp_path):
    from robustbench_seg.compare import compare

    city = tmp_path / "cs"
    make_fake_cityscapes(city, (1,))
    make_acdc(tmp_path / "acdc", per_condition=2)
    kw = dict(preprocessing=PRE, cityscapes_root=city, corruptions=None, clean=False, **FAST)
    evaluate(_Tiny(), natural=[f"acdc:fog={tmp_path / 'acdc'}"], out=tmp_path / "a", **kw)
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    assert summary["acdc:fog_lo"].iloc[0] <= summary["acdc:fog"].iloc[0]
    evaluate(_Tiny(), natural=[f"acdc:fog={tmp_path / 'acdc'}"], out=tmp_path / "b", limit=1,
             **{k: v for k, v in kw.items()})  # fmt: skip
    with pytest.raises(RobustSegError, match="natural-shift cells acdc:fog on different images"):
        compare(tmp_path / "a", tmp_path / "b")
    same = compare(tmp_path / "a", tmp_path / "a")
    assert list(same.figure) == ["acdc:fog"] and same.difference.iloc[0] == 0

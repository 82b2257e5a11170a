"""Training (mmseg Cityscapes recipes): schedule, optimizer groups, augmentation, resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from robustbench_seg.data import transforms as T
from robustbench_seg.data.cityscapes import list_pairs, train_id_to_label_id_lut
from robustbench_seg.engine import recipes as rc
from robustbench_seg.engine import train as tr
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models import create_model
from robustbench_seg.models.registry import MMSEG_PREPROCESSING
from robustbench_seg.models.weights import load_weights
from tests.conftest import natural_image
from tests.fake_cityscapes import make_fake_cityscapes

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]

# Block colours of the learnable dataset (trainIds 0..3).
_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float32)


def make_learnable_cityscapes(root: Path, n: int = 4, size=(128, 256), block: int = 32) -> None:
    """Train and val splits (the same ``n`` images): natural photos tinted 50% by the colour of
    a random 4-class block label, written as labelIds. The label is a function of the pixels
    (unlike ``make_fake_cityscapes``' random labels), so a model can fit it."""
    rng = np.random.default_rng(0)
    lut = train_id_to_label_id_lut()
    h, w = size
    labels = [rng.integers(0, 4, size=(h // block, w // block)) for _ in range(n)]
    for split in ("train", "val"):
        for i, blocks in enumerate(labels):
            tid = np.kron(blocks, np.ones((block, block), np.int64)).astype(np.uint8)
            img = 0.5 * natural_image(i % 4, h, w).astype(np.float32) + 0.5 * _COLOURS[tid]
            stem = f"aachen_{i:06d}_000019"
            ip = root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png"
            lp = root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png"
            ip.parent.mkdir(parents=True, exist_ok=True)
            lp.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ip), img.round().astype(np.uint8)[:, :, ::-1])
            cv2.imwrite(str(lp), lut[tid])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cs")
    make_fake_cityscapes(root, (2, 1), split="train", size=(64, 128))
    make_fake_cityscapes(root, (1, 1), split="val", size=(64, 128), seed=1)
    return root


# Tiny, fast settings: images 64x128 at their own scale, crop 64x128.
TINY = dict(
    init="none",
    iters=20,
    batch_size=2,
    crop=(64, 128),
    scale=(128, 64),
    ratio_range=(0.75, 1.25),
    warmup_iters=5,
    eval_every=0,
    workers=0,
    log_every=1,
    device="cpu",
    progress=False,
)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


# ----------------------------------------------------------------------------- recipe


def test_recipes_hold_the_published_values():
    s = rc.get_recipe("segformer-b5")
    assert (s.optimizer, s.lr, s.weight_decay, s.head_lr_mult, s.norm_decay_mult) == (
        "adamw",
        6e-5,
        0.01,
        10.0,
        0.0,
    )
    assert (s.poly_power, s.min_lr, s.warmup_iters, s.warmup_ratio) == (1.0, 0.0, 1500, 1e-6)
    assert (s.iters, s.batch_size, s.crop, s.scale, s.ratio_range) == (
        160_000,
        8,
        (1024, 1024),
        (2048, 1024),
        (0.5, 2.0),
    )
    assert (s.cat_max_ratio, s.flip_prob, s.photometric, s.aux_weight) == (0.75, 0.5, True, 0.0)
    d = rc.get_recipe("dlv3p-r50")
    assert (d.optimizer, d.lr, d.momentum, d.weight_decay) == ("sgd", 0.01, 0.9, 5e-4)
    assert (d.poly_power, d.min_lr, d.warmup_iters, d.iters, d.crop) == (
        0.9,
        1e-4,
        0,
        80_000,
        (512, 1024),
    )
    assert (d.aux_weight, d.aux_channels, d.aux_dropout) == (0.4, 256, 0.1)
    assert rc.get_recipe("b0", crop=512, lr=1e-3, iters=None).crop == (512, 512)
    assert "batch_size" in rc.recipe_overrides() and "family" not in rc.recipe_overrides()
    with pytest.raises(RobustSegError, match="unknown recipe option 'lr_rate'"):
        rc.get_recipe("b0", lr_rate=1.0)
    with pytest.raises(RobustSegError, match="iters must be >= 1"):
        rc.get_recipe("b0", iters=0)


def test_lr_schedule_matches_mmcv_poly_with_linear_warmup():
    s = rc.get_recipe("b0")
    assert rc.lr_at(s, 0, 6e-5) == pytest.approx(6e-5 * 1e-6)
    # mmcv: regular = (base - min) * (1 - t/T)^p + min; warmup = regular * (1 - k)
    t = 750
    regular = 6e-5 * (1 - t / 160_000)
    k = (1 - t / 1500) * (1 - 1e-6)
    assert rc.lr_at(s, t, 6e-5) == pytest.approx(regular * (1 - k), rel=1e-12)
    assert rc.lr_at(s, 1500, 6e-4) == pytest.approx(6e-4 * (1 - 1500 / 160_000), rel=1e-12)
    d = rc.get_recipe("dlv3p-mbv2")
    assert rc.lr_at(d, 0, 0.01) == pytest.approx(0.01)
    assert rc.lr_at(d, 40_000, 0.01) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert rc.lr_at(d, 80_000, 0.01) == pytest.approx(1e-4)


def test_segformer_optimizer_groups_follow_paramwise_cfg():
    model = create_model("segformer-b0")
    opt = tr.build_optimizer(model, rc.get_recipe("b0"))
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name, p in named.items():
        g = by_param[id(p)]
        if "head" in name:
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-4), 0.01), name
        elif "norm" in name:
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-5), 0.0), name
        else:
            assert (g["lr"], g["weight_decay"]) == (pytest.approx(6e-5), 0.01), name
    assert isinstance(opt, torch.optim.AdamW)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(named)
    norms = sum(1 for n in named if "norm" in n and "head" not in n)
    # weight + bias of: norm1/norm2 in 8 blocks, attn.norm in 6 (sr > 1), 4 patch, 4 stage norms
    assert norms == 2 * (2 * 8 + 6 + 4 + 4)


# ----------------------------------------------------------------------------- transforms


def test_rescaled_size_and_resize_ratio():
    assert T.rescaled_size(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert T.rescaled_size(1024, 2048, (4096, 2048)) == (2048, 4096)
    assert T.rescaled_size(64, 128, (1024, 512)) == (512, 1024)
    img = np.zeros((100, 200, 3), np.uint8)
    lab = np.zeros((100, 200), np.uint8)
    cfg = T.AugmentConfig(scale=(200, 100), ratio_range=(2.0, 2.0))
    a, b = T.random_resize(img, lab, cfg, np.random.default_rng(0))
    assert a.shape == (200, 400, 3) and b.shape == (200, 400)


def test_random_crop_respects_cat_max_ratio():
    label = np.zeros((100, 100), np.uint8)
    label[:, 90:] = 1  # only crops reaching x >= 90 hold class 1
    img = np.zeros((100, 100, 3), np.uint8)
    cfg = T.AugmentConfig(crop=(20, 20), cat_max_ratio=0.75)
    hits = 0
    for seed in range(50):
        _, crop = T.random_crop(img, label, cfg, np.random.default_rng(seed))
        assert crop.shape == (20, 20)
        counts = np.bincount(crop.ravel(), minlength=2)
        hits += counts.max() / counts.sum() < 0.75
    # one draw succeeds for x offsets 76..80 (p = 5/81); 11 draws: p = 1 - (76/81)^11 ~ 0.5
    assert 15 <= hits <= 40
    none = T.AugmentConfig(crop=(20, 20), cat_max_ratio=1.0)
    singles = sum(
        len(np.unique(T.random_crop(img, label, none, np.random.default_rng(s))[1])) > 1
        for s in range(50)
    )
    assert singles < 12  # ~ 10/81 of the crops hold class 1 at all without retries


def test_augment_is_a_function_of_the_generator_and_pads():
    img = natural_image(1, 64, 128).copy()
    lab = np.random.default_rng(0).integers(0, 19, (64, 128)).astype(np.uint8)
    cfg = T.AugmentConfig(scale=(128, 64), crop=(96, 96))
    a1, l1 = T.augment(img, lab, cfg, np.random.default_rng(5))
    a2, l2 = T.augment(img, lab, cfg, np.random.default_rng(5))
    assert np.array_equal(a1, a2) and np.array_equal(l1, l2)
    assert a1.dtype == np.uint8 and a1.shape[:2] == l1.shape and max(l1.shape) <= 96
    padded = T.pad_to(l1, (96, 96), 255)
    assert padded.shape == (96, 96) and (padded[l1.shape[0] :] == 255).all()
    outs = {T.photometric_distortion(img, np.random.default_rng(s)).tobytes() for s in range(8)}
    assert len(outs) > 4  # random order, random steps


def test_trainset_order_and_augmentation_are_functions_of_seed_and_iteration(data_root):
    recipe = rc.get_recipe("b0", batch_size=2, crop=(64, 64), scale=(128, 64))
    ds = tr.TrainSet(list_pairs(data_root, "train"), recipe, MMSEG_PREPROCESSING, seed=3)
    x1, y1 = ds[(7, 1)]
    x2, y2 = tr.TrainSet(ds.pairs, recipe, MMSEG_PREPROCESSING, seed=3)[(7, 1)]
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (3, 64, 64) and y1.dtype == torch.int64
    # every epoch visits each of the 3 images once
    epoch = sorted(ds.index(t, s) for t in range(3) for s in range(2) if t * 2 + s < 3)
    assert epoch == [0, 1, 2]


# ----------------------------------------------------------------------------- runs


def test_resume_repeats_a_straight_run_and_outputs_load(data_root, tmp_path):
    straight = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "a", **TINY)
    first = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "b", stop_after=10, **TINY)
    assert first.iteration == 10
    second = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "b", resume=True, **TINY)
    assert second.iteration == 20
    assert _max_diff(_weights(straight.weights), _weights(second.weights)) <= 1e-6
    # the resumed log repeats the straight one
    log_a = [json.loads(x) for x in straight.log.read_text().splitlines()]
    log_b = [json.loads(x) for x in second.log.read_text().splitlines()]
    assert [r["iter"] for r in log_b] == list(range(1, 21))
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b], abs=1e-6)
    assert {"iter", "loss", "lr", "time"} <= log_a[0].keys()
    assert log_a[4]["lr"] == pytest.approx(rc.lr_at(rc.get_recipe("b0", **_rec()), 4, 6e-5))
    # native weights load into a fresh model; the plot exists
    model = create_model("segformer-b0")
    load_weights(model, straight.weights, model_name="segformer-b0")
    assert straight.curves is not None and straight.curves.stat().st_size > 1000
    # another configuration refuses to resume; an existing run is not overwritten
    with pytest.raises(RobustSegError, match=r"another configuration \(lr: 6e-05 -> 0.001\)"):
        tr.train(
            "b0", cityscapes_root=data_root, out=tmp_path / "b", resume=True, **{**TINY, "lr": 1e-3}
        )
    with pytest.raises(RobustSegError, match="already holds a run"):
        tr.train("b0", cityscapes_root=data_root, out=tmp_path / "a", **TINY)


def _rec() -> dict:
    keys = set(rc.recipe_overrides())
    return {k: v for k, v in TINY.items() if k in keys}


def test_accumulation_equals_one_big_batch_with_frozen_norms(data_root, tmp_path):
    opts = {**TINY, "iters": 3, "batch_size": 4, "freeze_norms": True}
    one = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "a", accumulate=1, **opts)
    four = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "b", accumulate=4, **opts)
    assert _max_diff(_weights(one.weights), _weights(four.weights)) <= 1e-5


def test_deeplab_aux_head_stays_out_of_the_native_weights(data_root, tmp_path):
    res = tr.train(
        "dlv3p-mbv2",
        cityscapes_root=data_root,
        out=tmp_path / "r",
        **{**TINY, "iters": 1, "crop": (32, 64), "batch_size": 2},
    )
    native = _weights(res.weights)
    assert native.keys() == create_model("deeplabv3plus-mobilenetv2").state_dict().keys()
    ckpt = torch.load(res.checkpoint, weights_only=True)
    assert ckpt["aux"]["convs.0.conv.weight"].shape == (256, 96, 3, 3)
    assert ckpt["aux"]["conv_seg.weight"].shape == (19, 256, 1, 1)
    assert {"optimizer", "scheduler", "rng", "iteration", "config_hash"} <= ckpt.keys()
    # the SGD momentum buffers cover the aux head too
    n_params = sum(1 for _ in create_model("dlv3p-mbv2").parameters()) + 5  # conv, bn x2, seg x2
    assert len(ckpt["optimizer"]["state"]) == n_params


def test_validation_writes_best_and_miou(data_root, tmp_path):
    res = tr.train(
        "b0",
        cityscapes_root=data_root,
        out=tmp_path / "r",
        **{
            **TINY,
            "iters": 4,
            "eval_every": 2,
            "eval_mode": "slide",
            "eval_crop": 64,
            "eval_stride": 48,
        },
    )
    rows = [json.loads(x) for x in res.log.read_text().splitlines()]
    evals = [r for r in rows if "val_miou" in r]
    assert [r["iter"] for r in evals] == [2, 4]
    assert 0.0 <= res.val_miou <= 1.0 and res.best is not None
    assert res.best_miou == max(r["val_miou"] for r in evals)


def test_bf16_autocast_trains_on_cpu(data_root, tmp_path):
    res = tr.train(
        "b0",
        cityscapes_root=data_root,
        out=tmp_path / "r",
        **{**TINY, "iters": 2, "precision": "bf16"},
    )
    assert np.isfinite(res.loss)
    assert all(
        v.dtype == torch.float32 for v in _weights(res.weights).values() if v.is_floating_point()
    )


# ----------------------------------------------------------------------------- errors


def test_user_errors_are_one_clear_line(data_root, tmp_path):
    empty = tmp_path / "empty"
    make_fake_cityscapes(empty, (1,), split="val", size=(64, 128))
    cases = [
        (dict(cityscapes_root=empty), "no usable training split"),
        (
            dict(cityscapes_root=data_root, crop=(64, 512)),
            r"crop 512x64 cannot fit: 128x64 training images are at most 160x80 .*scale 128x64",
        ),
        (dict(cityscapes_root=data_root, resume=True), "--resume: no checkpoint.pt"),
        (dict(cityscapes_root=data_root, batch_size=3, accumulate=2), "not divisible"),
        (dict(cityscapes_root=data_root, precision="fp16"), "fp16 autocast needs a GPU"),
    ]
    for i, (kw, pattern) in enumerate(cases):
        with pytest.raises(RobustSegError, match=pattern) as exc:
            tr.train("b0", out=tmp_path / f"r{i}", **{**TINY, **kw})
        assert "\n" not in str(exc.value)
    with pytest.raises(RobustSegError, match="needs >= 2 images per micro-batch"):
        tr.train(
            "dlv3p-mbv2", cityscapes_root=data_root, out=tmp_path / "d", **{**TINY, "accumulate": 2}
        )


def test_init_imagenet_loads_the_catalog_backbone(data_root, tmp_path, monkeypatch):
    # --init imagenet for DeepLabV3+ R50 is the catalog's mmcls ResNetV1c-50 (mmseg's
    # `pretrained=`), converted by its format's rules; here a synthetic one in the download cache.
    from robustbench_seg.models.weights import CATALOG

    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    info = CATALOG["deeplabv3plus-r50.imagenet"]
    torch.manual_seed(2)
    bb = create_model("dlv3p-r50").backbone.state_dict()
    cls = {**bb, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    cached = tmp_path / "cache" / "checkpoints" / info.source.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.save(cls, cached)
    # a cached catalog file is checked against the catalog's sha256: this one's stands in
    import dataclasses
    import hashlib

    digest = hashlib.sha256(cached.read_bytes()).hexdigest()
    monkeypatch.setitem(CATALOG, info.name, dataclasses.replace(info, sha256=digest[:8]))
    res = tr.train(
        "dlv3p-r50",
        cityscapes_root=data_root,
        out=tmp_path / "e",
        **{**TINY, "iters": 1, "crop": (32, 64), "lr": 1e-12, "init": "imagenet"},
    )
    got = _weights(res.weights)
    assert torch.allclose(got["backbone.stem.0.weight"], bb["stem.0.weight"], atol=1e-6)
    assert torch.allclose(
        got["backbone.layer4.2.conv3.weight"], bb["layer4.2.conv3.weight"], atol=1e-6
    )


def test_init_files_must_fit_the_encoder(data_root, tmp_path):
    from safetensors.torch import save_file

    # an ImageNet MiT-B1 encoder (mit_b*.pth key layout) does not fit B0
    b1 = create_model("segformer-b1").backbone.state_dict()
    save_file({k: v.contiguous() for k, v in b1.items()}, str(tmp_path / "mit_b1.safetensors"))
    with pytest.raises(RobustSegError, match="--init .*mit_b1.safetensors.*does not fit"):
        tr.train(
            "b0",
            cityscapes_root=data_root,
            out=tmp_path / "a",
            **{**TINY, "init": str(tmp_path / "mit_b1.safetensors")},
        )
    # an ImageNet classifier checkpoint of the MobileNetV2 backbone (mmcls layout) loads
    torch.manual_seed(1)
    bb = create_model("dlv3p-mbv2").backbone.state_dict()
    cls = {f"backbone.{k}": v for k, v in bb.items()}
    cls["head.fc.weight"] = torch.zeros(1000, 1280)
    torch.save({"state_dict": cls}, tmp_path / "mbv2_imagenet.pth")
    res = tr.train(
        "dlv3p-mbv2",
        cityscapes_root=data_root,
        out=tmp_path / "b",
        **{
            **TINY,
            "iters": 1,
            "crop": (32, 64),
            "lr": 1e-12,
            "init": str(tmp_path / "mbv2_imagenet.pth"),
        },
    )
    got = _weights(res.weights)
    # conv weights barely move at lr 1e-12 (BN statistics do)
    assert torch.allclose(got["backbone.conv1.conv.weight"], bb["conv1.conv.weight"], atol=1e-6)
    bad = {k: v for k, v in cls.items() if "layer7" not in k}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(RobustSegError, match="does not fit.*missing layer7"):
        tr.train(
            "dlv3p-mbv2",
            cityscapes_root=data_root,
            out=tmp_path / "c",
            **{**TINY, "init": str(tmp_path / "bad.pth"), "crop": (32, 64)},
        )


# ----------------------------------------------------------------------------- DDP

_DDP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from robustbench_seg.engine.train import train
opts = json.loads(sys.argv[2])
res = train("b0", cityscapes_root=sys.argv[1], out=sys.argv[3], **opts)
import os
with open(sys.argv[3] + f"/rank{os.environ['RANK']}.json", "w") as fh:
    json.dump({"divergence": res.rank_divergence, "loss": res.loss}, fh)
"""


def test_two_gloo_processes_match_one_process(data_root, tmp_path):
    opts = {**TINY, "iters": 3, "batch_size": 4, "freeze_norms": True}
    single = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "one", accumulate=2, **opts)
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(_DDP_SCRIPT))
    out = tmp_path / "two"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        str(script),
        str(data_root),
        json.dumps(opts),
        str(out),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["divergence"] == ranks[1]["divergence"] == 0.0
    assert ranks[0]["loss"] == pytest.approx(single.loss, abs=1e-5)
    assert _max_diff(_weights(single.weights), _weights(out / "weights.safetensors")) <= 1e-5


# ----------------------------------------------------------------------------- learning


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "opts"),
    [
        # AdamW at 10x the recipe lr (head 6e-3), no warm-up; whole 128x256 images, batch 4.
        ("segformer-b0", dict(lr=6e-4, iters=40, batch_size=4, crop=(128, 256), eval_every=20)),
        # SGD at 10x the recipe lr, batch 2 (BatchNorm needs 2) of 64x128 crops: a DeepLabV3+
        # MobileNetV2 step on 128x256 takes 2-8 s on a loaded 2-core CPU (dilated depthwise
        # convs); 1 s on these crops. 160 iterations: at 100 it stopped at 0.85 accuracy in an
        # environment with one OpenCV wheel (issue 12), the photos resized a little differently.
        (
            "deeplabv3plus-mobilenetv2",
            dict(lr=0.1, iters=160, batch_size=2, crop=(64, 128), eval_every=80),
        ),
    ],
)
def test_overfits_four_images(model, opts, tmp_path):
    """Random init, fixed scale, no photometric distortion (it would shift the colour cue)."""
    root = tmp_path / "cs"
    make_learnable_cityscapes(root)
    res = tr.train(
        model,
        cityscapes_root=root,
        out=tmp_path / "r",
        init="none",
        scale=(256, 128),
        ratio_range=(1.0, 1.0),
        photometric=False,
        warmup_iters=0,
        eval_mode="whole",
        workers=0,
        log_every=10,
        device="cpu",
        progress=False,
        **opts,
    )
    rows = [json.loads(x) for x in res.log.read_text().splitlines()]
    assert rows[-1]["loss"] < rows[0]["loss"] / 3
    # Four balanced classes: chance is 0.25. The accuracy reached depends on the CPU's SIMD level
    # (DeepLabV3+ 0.88 on an AVX2-only CPU, above 0.9 with AVX-512): 0.75 is three times chance,
    # with a margin on both.
    assert res.val_accuracy >= 0.75, rows


# ----------------------------------------------------------------------------- class weights


def test_enet_class_weights_and_weighted_loss(data_root):
    from robustbench_seg.data.cityscapes import load_label

    pairs = list_pairs(data_root, "train")
    counts = np.zeros(19)
    for p in pairs:
        lab = load_label(p)
        for k in range(19):
            counts[k] += (lab == k).sum()
    expected = [round(1 / np.log(1.02 + c / counts.sum()), 4) for c in counts]
    got = tr.enet_class_weights(pairs, 19)
    assert got == pytest.approx(expected, abs=1e-12)

    # Weighted cross-entropy: each pixel's loss times its class's weight, mean over all pixels
    # (ignored ones count zero).
    torch.manual_seed(0)
    logits = torch.randn(2, 19, 8, 8)
    label = torch.randint(0, 19, (2, 8, 8))
    label[0, 0] = 255
    w = torch.rand(19) + 0.5
    logp = torch.log_softmax(logits, 1)
    valid = label != 255
    picked = logp.permute(0, 2, 3, 1)[valid, label[valid]]
    manual = -(w[label[valid]] * picked).sum() / label.numel()
    assert tr.seg_loss(logits, label, 255, w).item() == pytest.approx(manual.item(), rel=1e-6)


def test_class_weight_option_is_recorded_and_changes_training(data_root, tmp_path):
    a = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "a", **{**TINY, "iters": 3})
    b = tr.train("b0", cityscapes_root=data_root, out=tmp_path / "b", class_weight="enet",
                 **{**TINY, "iters": 3})  # fmt: skip
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    pairs = list_pairs(data_root, "train")
    assert cfg["class_weight"] == list(tr.enet_class_weights(pairs, 19))
    assert "class_weight" not in json.loads((tmp_path / "a" / "config.json").read_text())["config"]
    assert _max_diff(_weights(a.weights), _weights(b.weights)) > 0
    with pytest.raises(RobustSegError, match="class_weight has 3 values"):
        tr.train("b0", cityscapes_root=data_root, out=tmp_path / "c", class_weight=(1.0, 2.0, 3.0),
                 **TINY)  # fmt: skip
    with pytest.raises(RobustSegError, match="class_weight must be"):
        rc.get_recipe("b0", class_weight=(1.0, -1.0))

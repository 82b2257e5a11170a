"""No code from a weights file (issue 20): pickles are read without running what they name,
cached catalog files are checked against their sha256 on every use, ``hf://`` never runs a
repository's code, written ``.safetensors`` follow the umask, and ``train --resume`` refuses a
foreign checkpoint in one line and removes a killed run's temporary files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from robustbench_seg.cli import cli
from robustbench_seg.data.cityscapes import CLASS_NAMES, PALETTE
from robustbench_seg.engine.checkpoint import CHECKPOINT, remove_stale_parts
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import MARKER
from robustbench_seg.models import load
from robustbench_seg.models import weights as W
from robustbench_seg.models.convert import load_pickle, read_checkpoint
from robustbench_seg.models.segformer import SegFormer
from robustbench_seg.models.weights import CATALOG, download_url, export_weights, save_weights
from tests.fake_cityscapes import make_fake_cityscapes
from tests.test_bad_inputs import snapshot
from tests.test_registry_weights import TINY, server  # noqa: F401 - the fixture

DATA = Path(__file__).parent / "data"
R50 = CATALOG["deeplabv3plus-r50.cityscapes"]
R50_IMAGENET = CATALOG["deeplabv3plus-r50.imagenet"]


# ----------------------------------------------------------------------------- payloads


class _Call:
    """Pickles as ``fn(*args)``: what a crafted checkpoint's ``__reduce__`` makes the loader do."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _Call(os.system, f"touch {marker}"),
        "exec": _Call(exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess": _Call(subprocess.call, ["touch", str(marker)]),
    }


def _payload_file(path: Path, marker: Path, kind: str = "os.system", legacy: bool = False) -> Path:
    """A checkpoint with real tensors whose ``meta`` runs ``kind`` when fully unpickled."""
    obj = {"state_dict": {"w": torch.zeros(2)}, "meta": _payloads(marker)[kind]}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("robustseg: error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("kind", ["os.system", "exec", "subprocess"])
def test_payload_is_refused_unread(tmp_path, kind, legacy) -> None:
    marker = tmp_path / "ran"
    path = _payload_file(tmp_path / "evil.pth", marker, kind, legacy)
    with pytest.raises(RobustSegError) as info:
        read_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"refused {path}: its pickle names ") and "\n" not in msg
    assert {"os.system": "posix.system", "exec": "exec", "subprocess": ".call"}[kind] in msg
    assert "nothing was run" in msg
    assert not marker.exists()


def test_no_code_path_calls_torch_load_without_weights_only() -> None:
    package = Path(__file__).resolve().parent.parent / "robustbench_seg"
    calls = []
    for path in package.rglob("*.py"):
        text = path.read_text()
        calls += [f"{path.name}: {line.strip()}" for line in text.splitlines()
                  if "torch.load(" in line]  # fmt: skip
        assert "weights_only=False" not in text, path
        assert "pickle_module" not in text, path
    assert calls and all("weights_only=True" in c for c in calls), calls


# ----------------------------------------------------------------------------- mmseg meta


def _mmseg_checkpoint(path: Path, *, legacy: bool = False, numpy1: bool = False) -> dict:
    """An mmseg 0.x DeepLabV3+ (MobileNetV2) checkpoint as ``mmcv.runner.save_checkpoint``
    writes it: ``meta`` (versions, config text, classes, palette, iteration, NumPy values),
    the state dict (an ``OrderedDict``) and the optimizer. ``numpy1``: the NumPy globals under
    NumPy 1's module path (``numpy.core.multiarray``), as files saved before NumPy 2 name them."""
    keys = json.loads((DATA / "mmseg_deeplabv3plus_keys.json").read_text())["models"]
    g = torch.Generator().manual_seed(0)
    sd = OrderedDict(
        (k, torch.randn(shape, generator=g) if shape else torch.tensor(80000))
        for k, shape in keys["mobilenetv2"]
    )
    sd = OrderedDict((k, v.abs() + 0.5 if k.endswith("running_var") else v) for k, v in sd.items())
    meta = {
        "mmcv_version": "1.0.5",
        "time": "Tue Aug 25 12:48:36 2020",
        "env_info": "sys.platform: linux\nPython: 3.7.7\nCUDA available: True\nPyTorch: 1.5.0",
        "seed": None,
        "exp_name": "deeplabv3plus_m-v2-d8_512x1024_80k_cityscapes.py",
        "mmseg_version": "0.5.0+b2724da",
        "config": "norm_cfg = dict(type='SyncBN', requires_grad=True)\n"
        "model = dict(type='EncoderDecoder', pretrained='mmcls://mobilenet_v2')\n",
        "CLASSES": CLASS_NAMES,
        "PALETTE": [list(c) for c in PALETTE],
        "epoch": 1,
        "iter": 80000,
        "hook_msgs": {"last_ckpt": "work_dirs/iter_80000.pth", "best_score": np.float64(0.752)},
        "img_norm_cfg": {"mean": np.array([123.675, 116.28, 103.53], np.float32), "to_rgb": True},
        "dtype": np.dtype("float32"),
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3),
    }
    optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"meta": meta, "state_dict": sd, "optimizer": optimizer}, path,
               _use_new_zipfile_serialization=not legacy)  # fmt: skip
    if numpy1:
        data = path.read_bytes()
        assert b"numpy._core.multiarray" in data
        path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    return sd


@pytest.mark.parametrize(
    "fmt", ["zip", "legacy", "legacy-numpy1"], ids=["zip", "legacy", "legacy-numpy1"]
)
def test_mmseg_checkpoint_with_meta_loads_and_converts(tmp_path, fmt) -> None:
    pytest.importorskip("robustbench_seg.models.deeplabv3plus")
    path = tmp_path / "deeplabv3plus_m-v2-d8.pth"
    sd = _mmseg_checkpoint(path, legacy=fmt != "zip", numpy1=fmt == "legacy-numpy1")
    obj = load_pickle(path)
    assert obj["meta"]["CLASSES"] == CLASS_NAMES and obj["meta"]["iter"] == 80000
    assert obj["meta"]["hook_msgs"]["best_score"] == np.float64(0.752)
    assert obj["meta"]["img_norm_cfg"]["mean"].tolist() == pytest.approx([123.675, 116.28, 103.53])
    assert obj["meta"]["counts"].dtype == np.int64 and obj["meta"]["counts"].sum() == 15
    model = load("deeplabv3plus-mobilenetv2", str(path)).module
    loaded = model.state_dict()
    kept = [k for k in sd if not k.startswith("auxiliary_head.")]
    assert len(kept) == len(loaded) and len(kept) < len(sd)
    assert all(torch.equal(loaded[k], sd[k]) for k in kept)


# ----------------------------------------------------------------------------- cached catalog files


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


def _cache_path(info) -> Path:
    return W._cached_path(info.source)


def test_cached_catalog_file_is_checked_on_every_use(cache, tmp_path, monkeypatch) -> None:
    """A catalog entry whose prefix fits our file: loads; one byte appended later: refused."""
    pytest.importorskip("robustbench_seg.models.deeplabv3plus")
    info = CATALOG["deeplabv3plus-mobilenetv2.cityscapes"]
    path = _cache_path(info)
    path.parent.mkdir(parents=True)
    _mmseg_checkpoint(path, legacy=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(CATALOG, info.name, dataclasses.replace(info, sha256=digest[:8]))
    assert load("deeplabv3plus-mobilenetv2", "default").weights == "default"
    with path.open("ab") as fh:  # a legacy pickle ignores trailing bytes: it would still load
        fh.write(b"\0")
    for spec in ("default", "cityscapes", info.name, str(path)):
        with pytest.raises(RobustSegError) as err:
            load("deeplabv3plus-mobilenetv2", spec)
        msg = str(err.value)
        assert msg.startswith(f"{path} is not the file {info.source} names (sha256 ")
        assert f"expected {digest[:8]})" in msg and "delete it" in msg and "\n" not in msg


def test_cached_download_is_checked_again(server, cache) -> None:  # noqa: F811
    srv, root = server
    save_weights(SegFormer(TINY), root / "tiny.safetensors", model_name="segformer-b0")
    digest = hashlib.sha256((root / "tiny.safetensors").read_bytes()).hexdigest()
    url = f"{srv.url}/tiny.safetensors"
    path = download_url(url, sha256=digest, allow_http=True)
    assert download_url(url, sha256=digest[:8], allow_http=True) == path  # the prefix fits
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    for sha in (digest, digest[:8]):
        with pytest.raises(RobustSegError, match=r"is not the file .* names .*delete it"):
            download_url(url, sha256=sha, allow_http=True)
    assert srv.requests == 1 and path.exists()  # refused, not replaced behind the user's back


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sec") / "cs"
    make_fake_cityscapes(root, (2,), size=(64, 128))
    make_fake_cityscapes(root, (2,), split="train", size=(64, 128))
    return root


def _run_cli(args: list[str], watched: list[Path]) -> tuple[int, str]:
    before = [snapshot(w) for w in watched]
    result = CliRunner().invoke(cli, [str(a) for a in args])
    line = _one_line(result)
    assert [snapshot(w) for w in watched] == before
    return result.exit_code, line


def test_cli_refuses_a_crafted_file_at_the_catalog_cache_path(cache, city, tmp_path) -> None:
    """The README tells offline users to put official files there: a crafted one never runs."""
    marker = tmp_path / "ran"
    path = _payload_file(_cache_path(R50), marker)
    code, line = _run_cli(
        ["evaluate", "--model", "deeplabv3plus-r50", "--cityscapes-root", city, "--out",
         tmp_path / "o", "--corruptions", "none", "--workers", "0"],
        [cache, city],
    )  # fmt: skip
    assert code == 2 and f"{path} is not the file {R50.source} names" in line
    assert "expected f9fb496d" in line and "delete it" in line
    assert not marker.exists() and not (tmp_path / "o").exists()
    # The same file named by its path: checked against the catalog entry it stands for.
    code, line = _run_cli(
        ["evaluate", "--model", "deeplabv3plus-r50", "--weights", path, "--cityscapes-root",
         city, "--out", tmp_path / "o", "--corruptions", "none", "--workers", "0"],
        [cache, city],
    )  # fmt: skip
    assert code == 2 and f"{path} is not the file {R50.source} names" in line
    assert not marker.exists()


def test_cli_evaluate_weights_payload_is_refused(city, tmp_path) -> None:
    marker = tmp_path / "ran"
    path = _payload_file(tmp_path / "w" / "evil.pth", marker)
    code, line = _run_cli(
        ["evaluate", "--model", "b0", "--weights", path, "--cityscapes-root", city, "--out",
         tmp_path / "o", "--corruptions", "none", "--workers", "0"],
        [tmp_path / "w", city],
    )  # fmt: skip
    assert code == 2 and line == (
        f"robustseg: error: refused {path}: its pickle names posix.system, which a weights file "
        "does not need (only tensors, plain data and NumPy values are read; nothing was run); "
        "re-save it as a plain state dict or .safetensors"
    )
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_cli_train_init_imagenet_refuses_a_crafted_cached_backbone(cache, city, tmp_path) -> None:
    marker = tmp_path / "ran"
    path = _payload_file(_cache_path(R50_IMAGENET), marker)
    code, line = _run_cli(
        ["train", "-m", "deeplabv3plus-r50", "--init", "imagenet", "--cityscapes-root", city,
         "--out", tmp_path / "t", "--iters", "1", "--crop", "32", "--eval-every", "0",
         "--workers", "0"],
        [cache, city],
    )  # fmt: skip
    assert code == 2 and f"--init imagenet: {path} is not the file {R50_IMAGENET.source}" in line
    assert "expected 2cccc1ad" in line and not marker.exists()
    assert not (tmp_path / "t").exists()  # refused before the run folder is made


def test_cli_train_init_payload_path_leaves_no_run_folder(cache, city, tmp_path) -> None:
    marker = tmp_path / "ran"
    path = _payload_file(tmp_path / "init.pth", marker)
    code, line = _run_cli(
        ["train", "-m", "segformer-b0", "--init", path, "--cityscapes-root", city,
         "--out", tmp_path / "t", "--iters", "1", "--crop", "32", "--eval-every", "0",
         "--workers", "0"],
        [cache, city],
    )  # fmt: skip
    assert code == 2 and line.startswith("robustseg: error: --init ") and str(path) in line
    assert "nothing was run" in line and not marker.exists()
    assert not (tmp_path / "t").exists()  # read, and refused, before the run folder is made


# ----------------------------------------------------------------------------- hf://


def test_hf_remote_code_is_refused_without_asking(tmp_path, monkeypatch) -> None:
    pytest.importorskip("transformers")
    from tests.test_hf_models import _fake_hub_repo

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\n"

    def save(snap: Path) -> None:
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(json.dumps({
            "model_type": "robustseg-remote", "id2label": {"0": "road"},
            "auto_map": {"AutoConfig": "remote.RemoteConfig",
                         "AutoModelForSemanticSegmentation": "remote.RemoteModel"},
        }))  # fmt: skip
        (snap / "preprocessor_config.json").write_text("{}")
        (snap / "remote.py").write_text(code)
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(1)}, str(snap / "model.safetensors"))

    _fake_hub_repo(tmp_path / "hub", "org/remote", save)
    asked = []
    monkeypatch.setattr("builtins.input", lambda *a: asked.append(a) or "y")
    with pytest.raises(RobustSegError) as info:
        load("hf://org/remote")
    assert str(info.value) == (
        "hf://org/remote needs its repository's own code (config.json auto_map: AutoConfig, "
        "AutoModelForSemanticSegmentation), which robustseg never runs; use a model "
        "transformers implements"
    )
    assert not asked and not marker.exists()


def test_hf_loading_passes_trust_remote_code_false(tmp_path, monkeypatch) -> None:
    T = pytest.importorskip("transformers")
    from tests.test_hf_models import _publish

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _publish(tmp_path / "hub", "org/seg", "segformer", ["road", "car"])
    seen: dict[str, object] = {}
    for owner in ("AutoConfig", "AutoImageProcessor", "AutoModelForSemanticSegmentation"):
        cls = getattr(T, owner)
        original = cls.from_pretrained.__func__

        def spy(c, *args, _owner=owner, _original=original, **kwargs):
            seen[_owner] = kwargs.get("trust_remote_code", "absent")
            return _original(c, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    load("hf://org/seg")
    assert seen == dict.fromkeys(
        ("AutoConfig", "AutoImageProcessor", "AutoModelForSemanticSegmentation"), False
    )


# ----------------------------------------------------------------------------- umask


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_safetensors_files_follow_the_umask(tmp_path, mask, mode) -> None:
    old = os.umask(mask)
    try:
        save_weights(SegFormer(TINY), tmp_path / "w.safetensors", model_name="segformer-b0")
        export_weights(tmp_path / "w.safetensors", tmp_path / "half.safetensors")
    finally:
        os.umask(old)
    for name in ("w.safetensors", "half.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.safetensors", "w.safetensors"]


# ----------------------------------------------------------------------------- train --resume


TRAIN = ["train", "-m", "b0", "--init", "none", "--iters", "2", "--crop", "32", "--eval-every",
         "0", "--workers", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def stopped_run(city, tmp_path_factory) -> Path:
    """A run stopped (with its checkpoint) after iteration 1 of 2."""
    out = tmp_path_factory.mktemp("run") / "t"
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(
            cli, [*TRAIN, "--stop-after", "1", "--cityscapes-root", str(city), "--out", str(out)]
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((out / "weights.safetensors").stat().st_mode) == 0o644
    return out


def test_resume_refuses_a_pickle_payload_in_one_line(stopped_run, city, tmp_path) -> None:
    run = tmp_path / "t"
    shutil.copytree(stopped_run, run)
    marker = tmp_path / "ran"
    _payload_file(run / CHECKPOINT, marker)
    code, line = _run_cli(
        [*TRAIN, "--resume", "--cityscapes-root", city, "--out", run], [run, city]
    )
    assert code == 2 and line.startswith(
        f"robustseg: error: --resume: refused {run / CHECKPOINT}: its pickle names posix.system"
    )
    assert not marker.exists()


def test_resume_refuses_a_checkpoint_that_is_not_ours(stopped_run, city, tmp_path) -> None:
    run = tmp_path / "t"
    shutil.copytree(stopped_run, run)
    torch.save({"state_dict": {"w": torch.zeros(1)}}, run / CHECKPOINT)
    code, line = _run_cli(
        [*TRAIN, "--resume", "--cityscapes-root", city, "--out", run], [run, city]
    )
    assert code == 2 and f"{run / CHECKPOINT} is not a robustseg training checkpoint" in line


def test_resume_removes_a_killed_runs_part_files(stopped_run, city, tmp_path) -> None:
    run = tmp_path / "t"
    shutil.copytree(stopped_run, run)
    stale = [".checkpoint.pt.k2_9zq0a.part", ".weights.safetensors.abcdefgh.part",
             ".best.safetensors.0123abcd.part", ".config.json.x_y_z_12.part",
             ".curves.png.q1w2e3r4.png"]  # fmt: skip
    kept = [".checkpoint.pt.short.part", "checkpoint.pt.abcdefgh.part", ".notes.abcdefgh.part",
            ".checkpoint.pt.abcdefgh.tmp", "mine.part"]  # fmt: skip
    for name in stale + kept:
        (run / name).write_bytes(b"half a checkpoint")
    result = CliRunner().invoke(
        cli, [*TRAIN, "--resume", "--cityscapes-root", str(city), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in run.iterdir()}
    assert not names & set(stale) and set(kept) <= names
    assert load_pickle(run / CHECKPOINT)["iteration"] == 2


def test_remove_stale_parts_takes_only_its_own_names(tmp_path) -> None:
    (tmp_path / ".checkpoint.pt.abcdefgh.part").write_bytes(b"x")
    (tmp_path / ".checkpoint.pt.abcdefgh.part.d").mkdir()
    (tmp_path / ".weights.safetensors.abcdefg.part").write_bytes(b"x")  # 7 characters
    assert remove_stale_parts(tmp_path) == [tmp_path / ".checkpoint.pt.abcdefgh.part"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".checkpoint.pt.abcdefgh.part.d",
        ".weights.safetensors.abcdefg.part",
    ]
    assert not (tmp_path / MARKER).exists()

"""Model registry, weights catalog, download cache, Hugging Face hub cache, conversion formats."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
import torch

from robustbench_seg.errors import RobustSegError
from robustbench_seg.models import create_model, get_model_entry, list_models
from robustbench_seg.models.convert import convert_checkpoint, convert_mmseg_deeplabv3plus
from robustbench_seg.models.mit import MiTConfig
from robustbench_seg.models.registry import MMSEG_PREPROCESSING
from robustbench_seg.models.segformer import SegFormer, SegFormerConfig
from robustbench_seg.models.weights import (
    CATALOG,
    download_url,
    load_weights,
    resolve_weights,
    save_weights,
)

TINY = SegFormerConfig(
    encoder=MiTConfig(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1)), decoder_dim=32
)
DATA = Path(__file__).parent / "data"


# ---------------------------------------------------------------------------------------------
# Registry


def test_list_models_and_aliases() -> None:
    names = list_models()
    assert names == sorted(
        [f"segformer-b{i}" for i in range(6)]
        + ["deeplabv3plus-mobilenetv2", "deeplabv3plus-r101", "deeplabv3plus-r50"]
        + ["deeplabv3plus-mobilenetv2-w256-os16"]  # the bundled demo model's architecture
    )
    for i in range(6):
        assert get_model_entry(f"b{i}").name == f"segformer-b{i}"
        assert get_model_entry(f"SegFormer-B{i}").name == f"segformer-b{i}"


@pytest.mark.parametrize("name", list_models())
def test_entries_carry_preprocessing_and_metadata(name: str) -> None:
    entry = get_model_entry(name)
    assert entry.preprocessing == MMSEG_PREPROCESSING
    assert entry.preprocessing.mean == (123.675, 116.28, 103.53)
    assert entry.preprocessing.std == (58.395, 57.12, 57.375)
    assert entry.preprocessing.channel_order == "RGB" and entry.preprocessing.value_scale == 255.0
    assert entry.num_classes == 19 and entry.output_stride == 4
    assert f"{name}.{entry.default_weights}" in CATALOG
    assert CATALOG[f"{name}.{entry.default_weights}"].model == name


def test_unknown_name_lists_valid_names_and_closest() -> None:
    with pytest.raises(RobustSegError) as info:
        create_model("segfromer-b5")
    msg = str(info.value)
    assert "Did you mean 'segformer-b5'?" in msg
    assert all(n in msg for n in list_models())
    assert "\n" not in msg


def test_duplicate_registration_raises() -> None:
    from robustbench_seg.models.registry import ModelEntry, register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelEntry(name="b0", builder=lambda num_classes: torch.nn.Identity()))


def test_create_model_num_classes() -> None:
    model = create_model("b0", num_classes=5)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5, 8, 8)


def test_deeplabv3plus_entries_are_lazy() -> None:
    entry = get_model_entry("deeplabv3plus-r50")
    assert isinstance(entry.builder, str) and entry.builder.endswith(":deeplabv3plus_r50")


# ---------------------------------------------------------------------------------------------
# Conversion


def test_mmseg_deeplabv3plus_conversion_drops_aux_head_only() -> None:
    spec = json.loads((DATA / "mmseg_deeplabv3plus_keys.json").read_text())["models"]["r50"]
    sd = {k: torch.zeros(shape) for k, shape in spec}
    assert any(k.startswith("auxiliary_head.") for k in sd)
    converted = convert_checkpoint({"meta": {}, "state_dict": sd}.get("state_dict"))
    assert converted.source_format == "mmseg-deeplabv3plus"
    direct = convert_mmseg_deeplabv3plus({"state_dict": sd, "meta": {"iter": 80000}})
    expected = sorted(k for k in sd if not k.startswith("auxiliary_head."))
    assert sorted(direct) == sorted(converted.state_dict) == expected
    with pytest.raises(RobustSegError, match="neck.conv.weight"):
        convert_mmseg_deeplabv3plus({"state_dict": {**sd, "neck.conv.weight": torch.zeros(1)}})


def test_unrecognised_checkpoint_raises() -> None:
    with pytest.raises(RobustSegError, match="unrecognised checkpoint"):
        convert_checkpoint({"fc.weight": torch.zeros(2, 2)})


def test_native_round_trip_and_model_check(tmp_path) -> None:
    src = SegFormer(TINY).eval()
    path = save_weights(src, tmp_path / "tiny.safetensors", model_name="segformer-b0", source="t")
    dst = SegFormer(TINY).eval()
    converted = load_weights(dst, path, model_name="segformer-b0")
    assert converted.source_format == "native"
    assert converted.metadata == {"model": "segformer-b0", "num_classes": 19, "source": "t"}
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(src(x), dst(x))
    with pytest.raises(
        RobustSegError, match="holds weights for 'segformer-b0', not 'segformer-b1'"
    ):
        load_weights(SegFormer(TINY), path, model_name="segformer-b1")


# ---------------------------------------------------------------------------------------------
# Catalog


def test_catalog_lists_official_weights() -> None:
    for i in range(6):
        seg = CATALOG[f"segformer-b{i}.cityscapes"]
        assert seg.source == f"hf://nvidia/segformer-b{i}-finetuned-cityscapes-1024-1024"
        assert get_model_entry(f"b{i}").default_weights == seg.tag == "cityscapes"
        assert CATALOG[f"segformer-b{i}.imagenet"].source == f"hf://nvidia/mit-b{i}"
    mmseg = [w for w in CATALOG.values() if w.source.startswith("https://") and w.num_classes]
    assert {w.model for w in mmseg} == {
        "deeplabv3plus-r50",
        "deeplabv3plus-r101",
        "deeplabv3plus-mobilenetv2",
    }
    for w in mmseg:
        assert w.source.startswith("https://download.openmmlab.com/mmsegmentation/v0.5/")
        assert w.sha256 is not None and re.fullmatch(r"[0-9a-f]{8}", w.sha256)
        assert w.source.endswith(f"-{w.sha256}.pth")
    # The ImageNet backbones mmseg's DeepLabV3+ configs start from: one per architecture.
    imagenet = {w.model: w for w in CATALOG.values() if w.name.endswith(".imagenet")}
    assert {m for m in imagenet if m.startswith("deeplabv3plus")} == {
        "deeplabv3plus-r50",
        "deeplabv3plus-r101",
        "deeplabv3plus-mobilenetv2",
        "deeplabv3plus-mobilenetv2-w256-os16",
    }
    assert imagenet["deeplabv3plus-r50"].source.endswith(
        "/pretrain/third_party/resnet50_v1c-2cccc1ad.pth"
    )
    assert imagenet["deeplabv3plus-r101"].sha256 == "e67eebb6"
    assert imagenet["deeplabv3plus-mobilenetv2"].sha256 == "3b2dc3af"
    assert all(w.num_classes == 0 for w in imagenet.values())


# ---------------------------------------------------------------------------------------------
# Download and cache


class _Server:
    """A static file server on 127.0.0.1 in a thread, counting requests."""

    def __init__(self, root: Path) -> None:
        self.requests = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802
                outer.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = _Server(root)
    yield srv, root
    srv.close()


def test_download_once_into_cache(server, tmp_path, monkeypatch) -> None:
    srv, root = server
    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    save_weights(SegFormer(TINY), root / "tiny.safetensors", model_name="segformer-b0")
    data = (root / "tiny.safetensors").read_bytes()
    url = f"{srv.url}/tiny.safetensors"
    path = download_url(url, sha256=hashlib.sha256(data).hexdigest(), allow_http=True)
    assert path == tmp_path / "cache" / "checkpoints" / "tiny.safetensors"
    assert path.read_bytes() == data
    assert download_url(url, allow_http=True) == path
    assert srv.requests == 1
    assert list(path.parent.iterdir()) == [path]  # no temp files left
    model = SegFormer(TINY)
    load_weights(model, url, allow_http=True)  # URL spec, served from the cache
    assert srv.requests == 1


def test_sha256_mismatch_is_not_kept(server, tmp_path, monkeypatch) -> None:
    srv, root = server
    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    (root / "w.pth").write_bytes(b"x" * 1000)
    with pytest.raises(RobustSegError, match="sha256 mismatch"):
        download_url(f"{srv.url}/w.pth", sha256="deadbeef", allow_http=True)
    assert list((tmp_path / "cache" / "checkpoints").iterdir()) == []


def test_plain_http_needs_explicit_permission(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RobustSegError, match="only https://"):
        resolve_weights("http://127.0.0.1:1/w.pth")


def test_offline_download_error_says_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROBUSTSEG_CACHE", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/deeplabv3plus_r50-d8.pth"  # discard port: refused
    with pytest.raises(RobustSegError) as info:
        download_url(url, allow_http=True, timeout=5)
    msg = str(info.value)
    assert str(tmp_path / "cache" / "checkpoints" / "deeplabv3plus_r50-d8.pth") in msg
    assert "--weights PATH" in msg
    assert list((tmp_path / "cache" / "checkpoints").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Hugging Face hub cache (offline)


def _fake_hub_repo(hub: Path, repo_id: str, model) -> Path:
    """Lays out ``models--org--name/{refs/main, snapshots/<rev>/}`` as huggingface_hub does."""
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    model.save_pretrained(snap)
    return snap


def test_default_weights_from_offline_hub_cache(tmp_path, monkeypatch) -> None:
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    hf = transformers.SegformerForSemanticSegmentation(
        transformers.SegformerConfig(num_labels=19)
    ).eval()
    snap = _fake_hub_repo(
        tmp_path / "hub", "nvidia/segformer-b0-finetuned-cityscapes-1024-1024", hf
    )
    assert resolve_weights("default", model_name="segformer-b0") == snap
    model = create_model("b0", weights="default")
    assert not model.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - hf(pixel_values=x).logits).abs().max() <= 1e-4
    # HF_HOME is honoured too (hub cache at $HF_HOME/hub).
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert resolve_weights("hf://nvidia/segformer-b0-finetuned-cityscapes-1024-1024") == snap


def test_offline_hub_error_names_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RobustSegError) as info:
        create_model("b5", weights="default")
    msg = str(info.value)
    repo = "nvidia/segformer-b5-finetuned-cityscapes-1024-1024"
    assert f"huggingface-cli download {repo}" in msg
    assert f"https://huggingface.co/{repo}/resolve/main/pytorch_model.bin" in msg
    assert "--weights PATH" in msg and str(tmp_path / "hub") in msg


def test_missing_local_file_raises(tmp_path) -> None:
    with pytest.raises(RobustSegError, match="weights file not found"):
        create_model("b0", weights=str(tmp_path / "nope.pth"))


def test_deeplabv3plus_builders_resolve_when_available() -> None:
    pytest.importorskip("robustbench_seg.models.deeplabv3plus")
    for name in ("deeplabv3plus-r50", "deeplabv3plus-r101", "deeplabv3plus-mobilenetv2"):
        module_name, func = get_model_entry(name).builder.split(":")
        assert callable(getattr(__import__(module_name, fromlist=[func]), func))


def test_catalog_hashes_are_full_digests_or_mmcv_prefixes() -> None:
    for info in CATALOG.values():
        if info.source.startswith("https://"):  # mmseg/mmcv: the file name's 8 hex digits
            assert info.sha256_is_prefix and info.source.endswith(f"-{info.sha256}.pth"), info
        elif info.source.startswith("hf://"):  # the hub's cache keeps its own
            assert info.sha256 is None, info
        else:  # bundled
            assert re.fullmatch(r"[0-9a-f]{64}", info.sha256) and not info.sha256_is_prefix


def test_mmseg_deeplabv3plus_checkpoint_loads_through_create_model(tmp_path) -> None:
    pytest.importorskip("robustbench_seg.models.deeplabv3plus")
    spec = json.loads((DATA / "mmseg_deeplabv3plus_keys.json").read_text())["models"]
    g = torch.Generator().manual_seed(0)
    sd = {
        k: torch.randn(shape, generator=g) if shape else torch.tensor(7)
        for k, shape in spec["mobilenetv2"]
    }
    sd = {k: v.abs() + 0.5 if k.endswith("running_var") else v for k, v in sd.items()}
    torch.save({"meta": {"iter": 80000}, "state_dict": sd}, tmp_path / "m.pth")
    model = create_model("deeplabv3plus-mobilenetv2", weights=str(tmp_path / "m.pth"))
    assert not model.training
    loaded = model.state_dict()
    for k, v in sd.items():
        if not k.startswith("auxiliary_head."):
            assert torch.equal(loaded[k], v), k
    assert model(torch.randn(1, 3, 64, 128)).shape == (1, 19, 16, 32)
    with pytest.raises(RobustSegError, match="does not fit this model"):
        create_model("b0", weights=str(tmp_path / "m.pth"))


# ---------------------------------------------------------------------------------------------
# The loader: arch.tag names, weights specs, identity


def test_load_names_architecture_and_weights_apart() -> None:
    from robustbench_seg.models import load

    a = load("segformer-b0.synthetic", "default")
    b = load("b0", "synthetic")
    c = load("segformer-b0", "segformer-b0.synthetic")
    assert a.name == b.name == c.name == "segformer-b0.synthetic"
    assert a.architecture is get_model_entry("b0") and not a.module.training
    assert a.weights_sha256 == b.weights_sha256 == c.weights_sha256
    assert len(a.weights_sha256) == 64 and a.num_classes == a.num_outputs == 19
    torch.manual_seed(0)
    r1 = load("b0")
    torch.manual_seed(0)
    r2 = load("b0")
    assert r1.name == "segformer-b0" and r1.weights is None
    assert r1.weights_sha256 == r2.weights_sha256 != a.weights_sha256
    with pytest.raises(
        RobustSegError, match="names its weights .'synthetic'. and weights='cityscapes'"
    ):
        load("segformer-b0.synthetic", "cityscapes")
    with pytest.raises(RobustSegError, match="are for segformer-b0, not segformer-b1"):
        load("b1", "segformer-b0.synthetic")
    with pytest.raises(
        RobustSegError,
        match="no weights 'segformer-b1.synthetic' in the catalog; segformer-b1 has: cityscapes, imagenet",
    ):
        load("segformer-b1.synthetic", "default")
    with pytest.raises(RobustSegError, match="preprocessing and name are for nn.Module models"):
        load("b0", preprocessing=MMSEG_PREPROCESSING)


def test_weights_identity_is_the_state_dict_not_the_file(tmp_path) -> None:
    from robustbench_seg.models import load
    from robustbench_seg.models.loader import state_dict_sha256
    from robustbench_seg.models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("b0")
    save_weights(model, tmp_path / "a.safetensors", model_name="segformer-b0", source="a")
    save_weights(model, tmp_path / "b.safetensors", model_name="segformer-b0", source="other")
    assert (tmp_path / "a.safetensors").read_bytes() != (tmp_path / "b.safetensors").read_bytes()
    a, b = load("b0", tmp_path / "a.safetensors"), load("b0", tmp_path / "b.safetensors")
    assert a.weights_sha256 == b.weights_sha256 == state_dict_sha256(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert state_dict_sha256(model) != a.weights_sha256


def test_imagenet_backbone_formats_map_every_key() -> None:
    from robustbench_seg.models.convert import convert_checkpoint

    r50 = create_model("dlv3p-r50").backbone.state_dict()
    mmcls = {**r50, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    conv = convert_checkpoint(mmcls)
    assert conv.source_format == "mmcls-resnet-v1c" and conv.encoder_only
    assert conv.state_dict.keys() == r50.keys()
    mbv2 = create_model("dlv3p-mbv2").backbone.state_dict()
    mmcls = {f"backbone.{k}": v for k, v in mbv2.items()}
    mmcls |= {
        "backbone.conv2.conv.weight": torch.zeros(1280, 320, 1, 1),
        "head.fc.weight": torch.zeros(1000, 1280),
    }
    conv = convert_checkpoint(mmcls)
    assert conv.source_format == "mmcls-mobilenetv2" and conv.encoder_only
    assert conv.state_dict.keys() == mbv2.keys()
    with pytest.raises(RobustSegError, match="1 unexpected key.*mmcls MobileNetV2.*backbone.extra"):
        convert_checkpoint({**mmcls, "backbone.extra.weight": torch.zeros(1)})

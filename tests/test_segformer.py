"""SegFormer: exact parameter counts, shapes, gradients, and parity with transformers' Segformer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from robustbench_seg.errors import RobustSegError
from robustbench_seg.models import create_model
from robustbench_seg.models.convert import convert_checkpoint
from robustbench_seg.models.mit import MIT_CONFIGS, MiTConfig
from robustbench_seg.models.segformer import (
    SEGFORMER_CONFIGS,
    SegFormer,
    SegFormerConfig,
    bilinear_matrix,
)
from robustbench_seg.models.weights import load_weights

transformers = pytest.importorskip("transformers")

# Reference implementation figures (DESIGN.md; the paper rounds them), 19 classes.
PARAMS = {
    "b0": 3_719_027,
    "b1": 13_682_131,
    "b2": 27_361_235,
    "b3": 47_237_075,
    "b4": 64_007_635,
    "b5": 84_607_955,
}
TINY = SegFormerConfig(
    encoder=MiTConfig(embed_dims=(16, 32, 40, 64), depths=(1, 2, 1, 1)), decoder_dim=32
)
SIZES = ((64, 64), (72, 100))


def _hf_config(cfg: SegFormerConfig, num_labels: int = 19):
    enc = cfg.encoder
    return transformers.SegformerConfig(
        num_labels=num_labels,
        hidden_sizes=list(enc.embed_dims),
        depths=list(enc.depths),
        num_attention_heads=list(enc.num_heads),
        sr_ratios=list(enc.sr_ratios),
        mlp_ratios=[enc.mlp_ratio] * 4,
        decoder_hidden_size=cfg.decoder_dim,
    )


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Perturbs every float tensor (incl. norms and BN statistics) so that no term is trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise.abs())
            elif (
                t.ndim == 1 and ("norm" in name or "batch_norm" in name) and name.endswith("weight")
            ):
                t.copy_(1.0 + 0.2 * noise)
            else:
                t.add_(0.05 * noise)


def _hf_model(cfg: SegFormerConfig, seed: int = 0):
    torch.manual_seed(seed)
    hf = transformers.SegformerForSemanticSegmentation(_hf_config(cfg)).eval()
    _randomize(hf, seed)
    return hf


def _input(h: int, w: int, n: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", list(PARAMS))
def test_parameter_count_exact(variant: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(f"segformer-{variant}")
    assert sum(p.numel() for p in model.parameters()) == PARAMS[variant]


@pytest.mark.parametrize("variant", ["b0", "b2"])
def test_parameter_count_matches_transformers(variant: str) -> None:
    with torch.device("meta"):
        hf = transformers.SegformerForSemanticSegmentation(_hf_config(SEGFORMER_CONFIGS[variant]))
    assert sum(p.numel() for p in hf.parameters()) == PARAMS[variant]


def test_configs_follow_the_paper() -> None:
    assert MIT_CONFIGS["b0"].embed_dims == (32, 64, 160, 256)
    assert {v: c.encoder.depths for v, c in SEGFORMER_CONFIGS.items()} == {
        "b0": (2, 2, 2, 2),
        "b1": (2, 2, 2, 2),
        "b2": (3, 4, 6, 3),
        "b3": (3, 4, 18, 3),
        "b4": (3, 8, 27, 3),
        "b5": (3, 6, 40, 3),
    }
    assert [SEGFORMER_CONFIGS[v].decoder_dim for v in PARAMS] == [256, 256, 768, 768, 768, 768]
    with pytest.raises(AttributeError):
        MIT_CONFIGS["b5"].depths = (1, 1, 1, 1)  # type: ignore[misc]


def test_encoder_details_match_official_code() -> None:
    model = create_model("b2")
    bb = model.backbone
    assert [getattr(bb, f"patch_embed{i}").proj.kernel_size for i in range(1, 5)] == [
        (7, 7),
        (3, 3),
        (3, 3),
        (3, 3),
    ]
    assert [getattr(bb, f"patch_embed{i}").proj.stride for i in range(1, 5)] == [(4, 4)] + [
        (2, 2)
    ] * 3
    assert [getattr(bb, f"patch_embed{i}").proj.padding for i in range(1, 5)] == [(3, 3)] + [
        (1, 1)
    ] * 3
    # LayerNorm eps: 1e-6 in blocks and stage norms (norm_layer=partial(LayerNorm, eps=1e-6)),
    # PyTorch's default 1e-5 in the patch embeddings and the sequence-reduction norm.
    assert bb.block1[0].norm1.eps == bb.block1[0].norm2.eps == bb.norm4.eps == 1e-6
    assert bb.patch_embed1.norm.eps == bb.block1[0].attn.norm.eps == 1e-5
    assert [hasattr(getattr(bb, f"block{i}")[0].attn, "sr") for i in range(1, 5)] == [
        True,
        True,
        True,
        False,
    ]
    # Stochastic depth grows linearly from 0 to 0.1 over all 16 blocks.
    probs = [
        getattr(blk.drop_path, "drop_prob", 0.0)
        for i in range(1, 5)
        for blk in getattr(bb, f"block{i}")
    ]
    assert len(probs) == 16
    assert probs[0] == 0.0 and math.isclose(probs[-1], 0.1)
    assert all(math.isclose(b - a, 0.1 / 15) for a, b in zip(probs[:-1], probs[1:], strict=True))
    assert isinstance(model.decode_head.dropout, torch.nn.Dropout2d)
    assert model.decode_head.dropout.p == 0.1
    assert model.decode_head.linear_fuse.conv.bias is None


@pytest.mark.parametrize("size", SIZES)
def test_forward_shapes_and_features(size: tuple[int, int]) -> None:
    model = SegFormer(TINY, num_classes=7).eval()
    h, w = size
    x = _input(h, w)
    logits = model(x)
    assert logits.shape == (2, 7, math.ceil(h / 4), math.ceil(w / 4))
    feats = model.forward_features(x)
    assert list(feats) == ["stage1", "stage2", "stage3", "stage4", "fused"]
    hh, ww = h, w
    for i, c in enumerate(TINY.encoder.embed_dims):
        hh, ww = math.ceil(hh / (4 if i == 0 else 2)), math.ceil(ww / (4 if i == 0 else 2))
        assert feats[f"stage{i + 1}"].shape == (2, c, hh, ww)
    assert feats["fused"].shape == (2, 32, math.ceil(h / 4), math.ceil(w / 4))
    torch.testing.assert_close(model.decode_head.linear_pred(feats["fused"]), logits)


def test_features_carry_gradients_to_the_input() -> None:
    model = SegFormer(TINY).eval()
    x = _input(64, 64, n=1).requires_grad_(True)
    feats = model.forward_features(x)
    for key, f in feats.items():
        # a random projection: a plain channel sum of a LayerNorm output is constant
        unit = f[0, :, f.shape[2] // 2, f.shape[3] // 2]
        weights = torch.randn(unit.shape, generator=torch.Generator().manual_seed(0))
        (grad,) = torch.autograd.grad((unit * weights).sum(), x, retain_graph=True)
        assert grad.abs().sum() > 0, key


def test_backward_reaches_every_parameter() -> None:
    model = SegFormer(TINY, drop_path_rate=0.0).train()
    out = model(_input(64, 64))
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    assert torch.isfinite(out).all()


def test_decoder_matches_unfused_reference() -> None:
    """The composed-weights decoder equals the official concat -> 1x1 conv computation."""
    model = SegFormer(TINY).eval()
    _randomize(model)
    x = _input(72, 100)
    with torch.no_grad():
        feats = model.backbone(x)
        head = model.decode_head
        size = feats[0].shape[-2:]
        projected = []
        for i, f in enumerate(feats):
            proj = getattr(head, f"linear_c{i + 1}").proj
            y = proj(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, -1, *f.shape[-2:])
            projected.append(
                torch.nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)
            )
        ref = head.linear_pred(head.linear_fuse(torch.cat(projected[::-1], dim=1)))
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("tiny", TINY),
        ("b0", SEGFORMER_CONFIGS["b0"]),
        pytest.param("b2", SEGFORMER_CONFIGS["b2"], marks=pytest.mark.slow),
    ],
)
def test_parity_with_transformers(name: str, cfg: SegFormerConfig, tmp_path) -> None:
    hf = _hf_model(cfg)
    hf.save_pretrained(tmp_path / name)
    ours = SegFormer(cfg).eval()
    converted = load_weights(ours, tmp_path / name)
    assert converted.source_format == "hf-segformer" and not converted.encoder_only
    for h, w in SIZES:
        x = _input(h, w)
        with torch.no_grad():
            ref = hf(pixel_values=x).logits
            out = ours(x)
        assert out.shape == ref.shape
        delta = (out - ref).abs().max().item()
        assert delta <= 1e-4, f"{name} {h}x{w}: max |delta| {delta:.2e}"


def test_parity_encoder_only_hf_model(tmp_path) -> None:
    """``SegformerModel`` (as ``nvidia/mit-b*``, encoder only) loads into our backbone."""
    torch.manual_seed(0)
    hf = transformers.SegformerModel(_hf_config(TINY)).eval()
    _randomize(hf)
    hf.save_pretrained(tmp_path / "enc")
    ours = SegFormer(TINY).eval()
    converted = load_weights(ours, tmp_path / "enc")
    assert converted.encoder_only
    x = _input(72, 100)
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=True).hidden_states
        feats = ours.forward_features(x)
    for i in range(4):
        assert (feats[f"stage{i + 1}"] - ref[i]).abs().max().item() <= 1e-4


def _official_keys(cfg: SegFormerConfig) -> list[str]:
    """Key names of an official SegFormer checkpoint, written from the official module tree.

    NVlabs/SegFormer ``mmseg/models/backbones/mix_transformer.py``: ``patch_embed{1-4}`` =
    OverlapPatchEmbed(proj Conv2d, norm LayerNorm); ``block{1-4}`` = ModuleList of Block(norm1,
    attn=Attention(q, kv, proj, [sr, norm] if sr_ratio > 1), norm2, mlp=Mlp(fc1,
    dwconv=DWConv(dwconv), fc2)); ``norm{1-4}``. ``segformer_head.py``: ``linear_c{1-4}`` =
    MLP(proj Linear), ``linear_fuse`` = ConvModule(conv without bias, bn SyncBN),
    ``linear_pred`` Conv2d; ``decode_head.py`` (BaseDecodeHead) adds the unused ``conv_seg``.
    """
    wb = ("weight", "bias")
    keys = []
    for i in range(1, 5):
        keys += [f"backbone.patch_embed{i}.{m}.{p}" for m in ("proj", "norm") for p in wb]
        for j in range(cfg.encoder.depths[i - 1]):
            mods = ["norm1", "attn.q", "attn.kv", "attn.proj"]
            if cfg.encoder.sr_ratios[i - 1] > 1:
                mods += ["attn.sr", "attn.norm"]
            mods += ["norm2", "mlp.fc1", "mlp.dwconv.dwconv", "mlp.fc2"]
            keys += [f"backbone.block{i}.{j}.{m}.{p}" for m in mods for p in wb]
        keys += [f"backbone.norm{i}.{p}" for p in wb]
    keys += [f"decode_head.linear_c{i}.proj.{p}" for i in range(1, 5) for p in wb]
    keys += ["decode_head.linear_fuse.conv.weight"]
    keys += [
        f"decode_head.linear_fuse.bn.{p}"
        for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ]
    keys += [f"decode_head.{m}.{p}" for m in ("linear_pred", "conv_seg") for p in wb]
    return keys


def _hf_to_official(hf_sd: dict[str, torch.Tensor], cfg: SegFormerConfig) -> dict:
    """The same tensors under the official names (test-side mapping, independent of ours)."""
    out = {}
    for i in range(1, 5):
        e = f"segformer.encoder.patch_embeddings.{i - 1}"
        for p in ("weight", "bias"):
            out[f"backbone.patch_embed{i}.proj.{p}"] = hf_sd[f"{e}.proj.{p}"]
            out[f"backbone.patch_embed{i}.norm.{p}"] = hf_sd[f"{e}.layer_norm.{p}"]
            out[f"backbone.norm{i}.{p}"] = hf_sd[f"segformer.encoder.layer_norm.{i - 1}.{p}"]
            out[f"decode_head.linear_c{i}.proj.{p}"] = hf_sd[
                f"decode_head.linear_c.{i - 1}.proj.{p}"
            ]
        for j in range(cfg.encoder.depths[i - 1]):
            b, o = f"segformer.encoder.block.{i - 1}.{j}", f"backbone.block{i}.{j}"
            names = {
                "norm1": "layer_norm_1",
                "norm2": "layer_norm_2",
                "attn.q": "attention.self.query",
                "attn.proj": "attention.output.dense",
                "mlp.fc1": "mlp.dense1",
                "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
                "mlp.fc2": "mlp.dense2",
            }
            if cfg.encoder.sr_ratios[i - 1] > 1:
                names |= {"attn.sr": "attention.self.sr", "attn.norm": "attention.self.layer_norm"}
            for p in ("weight", "bias"):
                for ours, theirs in names.items():
                    out[f"{o}.{ours}.{p}"] = hf_sd[f"{b}.{theirs}.{p}"]
                out[f"{o}.attn.kv.{p}"] = torch.cat(
                    [hf_sd[f"{b}.attention.self.key.{p}"], hf_sd[f"{b}.attention.self.value.{p}"]]
                )
    out["decode_head.linear_fuse.conv.weight"] = hf_sd["decode_head.linear_fuse.weight"]
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        out[f"decode_head.linear_fuse.bn.{p}"] = hf_sd[f"decode_head.batch_norm.{p}"]
    for p in ("weight", "bias"):
        out[f"decode_head.linear_pred.{p}"] = hf_sd[f"decode_head.classifier.{p}"]
        out[f"decode_head.conv_seg.{p}"] = torch.zeros_like(hf_sd[f"decode_head.classifier.{p}"])
    return out


def test_official_and_hf_formats_give_identical_logits(tmp_path) -> None:
    hf = _hf_model(TINY)
    hf_sd = hf.state_dict()
    official = _hf_to_official(hf_sd, TINY)
    assert sorted(official) == sorted(_official_keys(TINY))
    torch.save({"meta": {"CLASSES": ["road"] * 19}, "state_dict": official}, tmp_path / "o.pth")
    torch.save(hf_sd, tmp_path / "pytorch_model.bin")

    a, b = SegFormer(TINY).eval(), SegFormer(TINY).eval()
    assert load_weights(a, tmp_path / "o.pth").source_format == "official-segformer"
    assert load_weights(b, tmp_path / "pytorch_model.bin").source_format == "hf-segformer"
    x = _input(72, 100)
    with torch.no_grad():
        out_a, out_b, ref = a(x), b(x), hf(pixel_values=x).logits
    assert torch.equal(out_a, out_b)
    assert (out_a - ref).abs().max().item() <= 1e-4
    # Our parameter names are the official ones (minus the unused conv_seg).
    expected = [k for k in _official_keys(TINY) if ".conv_seg." not in k]
    assert sorted(a.state_dict()) == sorted(expected)


def test_mit_imagenet_encoder_loads_into_backbone(tmp_path) -> None:
    src = SegFormer(TINY)
    enc = {k.removeprefix("backbone."): v for k, v in src.state_dict().items() if "backbone." in k}
    enc |= {"head.weight": torch.zeros(1000, 64), "head.bias": torch.zeros(1000)}
    torch.save(enc, tmp_path / "mit_tiny.pth")
    dst = SegFormer(TINY)
    converted = load_weights(dst, tmp_path / "mit_tiny.pth")
    assert converted.source_format == "mit-imagenet" and converted.encoder_only
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(dst.backbone.state_dict()[k], v)


def test_leftover_keys_raise_with_their_names() -> None:
    sd = SegFormer(TINY).state_dict()
    sd["decode_head.extra_layer.weight"] = torch.zeros(1)
    with pytest.raises(RobustSegError, match="decode_head.extra_layer.weight"):
        convert_checkpoint(sd)


def test_class_count_mismatch_names_keys_and_shapes(tmp_path) -> None:
    torch.save({"state_dict": SegFormer(TINY, num_classes=150).state_dict()}, tmp_path / "a.pth")
    with pytest.raises(RobustSegError, match=r"linear_pred\.weight: checkpoint \(150, 32, 1, 1\)"):
        load_weights(SegFormer(TINY, num_classes=19), tmp_path / "a.pth")


def test_other_architecture_raises(tmp_path) -> None:
    torch.save(create_model("b0").state_dict(), tmp_path / "b0.pth")
    with pytest.raises(RobustSegError, match="does not fit this model"):
        create_model("b1", weights=str(tmp_path / "b0.pth"))


def test_truncated_and_foreign_files_raise(tmp_path) -> None:
    path = tmp_path / "full.pth"
    torch.save(SegFormer(TINY).state_dict(), path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.txt").write_text("hello, not a checkpoint")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    for name in ("cut.pth", "notes.txt", "cut.safetensors"):
        with pytest.raises(RobustSegError, match="cannot read"):
            load_weights(SegFormer(TINY), tmp_path / name)
    torch.save({"a": 1}, tmp_path / "dict.pth")
    with pytest.raises(RobustSegError):
        load_weights(SegFormer(TINY), tmp_path / "dict.pth")
    with pytest.raises(RobustSegError, match="not found"):
        load_weights(SegFormer(TINY), tmp_path / "missing.pth")


@pytest.mark.parametrize(
    "size_in, size_out", [(16, 128), (3, 18), (4, 25), (9, 36), (7, 7), (5, 3)]
)
def test_bilinear_matrix_matches_interpolate(size_in: int, size_out: int) -> None:
    x = torch.randn(2, 3, size_in, size_in + 1)
    a_h = bilinear_matrix(size_in, size_out)
    a_w = bilinear_matrix(size_in + 1, size_out + 2)
    ref = F.interpolate(x, size=(size_out, size_out + 2), mode="bilinear", align_corners=False)
    torch.testing.assert_close(a_h @ x @ a_w.T, ref, rtol=0, atol=2e-5)


def test_decoder_train_mode_matches_unfused_reference() -> None:
    """Train mode (BatchNorm with batch statistics, not folded) equals the official head."""
    model = SegFormer(TINY)
    _randomize(model)
    model.decode_head.dropout.p = 0.0
    x = _input(64, 96)
    with torch.no_grad():
        feats = model.backbone.eval()(x)
        head = model.decode_head.train()
        out = head(feats)
        size = feats[0].shape[-2:]
        projected = []
        for i, f in enumerate(feats):
            proj = getattr(head, f"linear_c{i + 1}").proj
            y = proj(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(2, -1, *f.shape[-2:])
            projected.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        fuse = head.linear_fuse
        ref = head.linear_pred(
            torch.relu(
                F.batch_norm(
                    fuse.conv(torch.cat(projected[::-1], dim=1)),
                    None,
                    None,
                    fuse.bn.weight,
                    fuse.bn.bias,
                    training=True,
                    eps=fuse.bn.eps,
                )
            )
        )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_pickles_with_foreign_objects_are_refused(tmp_path) -> None:
    import argparse

    sd = SegFormer(TINY).state_dict()
    torch.save({"state_dict": sd, "meta": {"args": argparse.Namespace(lr=1)}}, tmp_path / "m.pth")
    with pytest.raises(RobustSegError, match="its pickle names argparse.Namespace"):
        load_weights(SegFormer(TINY), tmp_path / "m.pth")


def test_hf_image_classification_encoder_loads(tmp_path) -> None:
    """``nvidia/mit-b*`` are ``SegformerForImageClassification``: the classifier is dropped."""
    torch.manual_seed(0)
    hf = transformers.SegformerForImageClassification(_hf_config(TINY, num_labels=1000))
    hf.save_pretrained(tmp_path / "mit")
    ours = SegFormer(TINY)
    assert load_weights(ours, tmp_path / "mit").encoder_only
    key = "segformer.encoder.block.0.0.attention.self.key.weight"
    assert torch.equal(ours.backbone.block1[0].attn.kv.weight[:16], hf.state_dict()[key])

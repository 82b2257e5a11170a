"""hf:// models: tiny random transformers models saved with ``save_pretrained`` into a fake offline
hub cache; what our scoring path computes equals transformers' forward + its
``post_process_semantic_segmentation`` (logits, or the universal models' scores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustbench_seg.data.cityscapes import CLASS_NAMES
from robustbench_seg.engine.inference import preprocess
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.errors import RobustSegError
from robustbench_seg.models import hf as H
from robustbench_seg.models.loader import load
from tests.conftest import natural_image

T = pytest.importorskip("transformers")

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
SIZE = (64, 128)  # the image and label size of every test
CPU = torch.device("cpu")
# std of the noise _spread adds to every weight: outputs of order 1-50 that vary over the image
SPREAD = {"segformer": 0.3, "upernet": 0.12, "dpt": 0.2, "mask2former": 0.5, "maskformer": 0.5,
          "oneformer": 0.5}  # fmt: skip
# ADE20K-style labels: comma lists of synonyms
ADE_STYLE = {
    "road": "road, route",
    "sidewalk": "sidewalk, pavement",
    "building": "building, edifice",
    "person": "person, individual, someone, somebody, mortal, soul",
    "car": "car, auto, automobile, machine, motorcar",
}


def _id2label(labels):
    return {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}


def _swin():
    return T.SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4,
                        out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip


def _segformer(labels):
    config = T.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 1], decoder_hidden_size=16, patch_sizes=[7, 3], strides=[4, 2],
        **_id2label(labels),
    )  # fmt: skip
    # a fixed resize to another aspect ratio: the contract's input_size
    proc = T.SegformerImageProcessor(size={"height": 96, "width": 160})
    return T.SegformerForSemanticSegmentation(config), proc


def _upernet(labels):
    backbone = T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    config = T.UperNetConfig(backbone_config=backbone, hidden_size=16, auxiliary_in_channels=24,
                             auxiliary_channels=8, **_id2label(labels))  # fmt: skip
    return T.UperNetForSemanticSegmentation(config), T.SegformerImageProcessor(do_resize=False)


def _dpt(labels):
    config = T.DPTConfig(
        hidden_size=16, num_hidden_layers=2, backbone_out_indices=[0, 1], num_attention_heads=2,
        intermediate_size=32, image_size=64, patch_size=16, neck_hidden_sizes=[8, 16],
        fusion_hidden_size=16, reassemble_factors=[4, 2], head_in_index=-1, **_id2label(labels),
    )  # fmt: skip
    # DPT's segmentation neck takes square inputs: the 64x128 image is squashed to 64x64
    proc = T.DPTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.5] * 3,
                               image_std=[0.5] * 3)  # fmt: skip
    return T.DPTForSemanticSegmentation(config), proc


def _mask2former(labels):
    config = T.Mask2FormerConfig(
        backbone_config=_swin(), hidden_dim=32, num_queries=5, encoder_layers=1, decoder_layers=2,
        encoder_feedforward_dim=32, dim_feedforward=32, mask_feature_size=32, feature_size=32,
        num_attention_heads=2, **_id2label(labels),
    )  # fmt: skip
    # shortest_edge: a size that depends on the image, not applied (the image as it is)
    proc = T.Mask2FormerImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})
    return T.Mask2FormerForUniversalSegmentation(config), proc


def _maskformer(labels):
    decoder = T.DetrConfig(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                           num_queries=5)  # fmt: skip
    config = T.MaskFormerConfig(backbone_config=_swin(), decoder_config=decoder,
                                mask_feature_size=32, fpn_feature_size=32, num_queries=5,
                                **_id2label(labels))  # fmt: skip
    return T.MaskFormerForInstanceSegmentation(config), T.MaskFormerImageProcessor()


FAMILIES = {
    "segformer": _segformer,
    "upernet": _upernet,
    "dpt": _dpt,
    "mask2former": _mask2former,
    "maskformer": _maskformer,
}
UNIVERSAL = ("mask2former", "maskformer", "oneformer")


def _fake_hub_repo(hub: Path, repo_id: str, save, commit: str = COMMIT,
                   refs: tuple[str, ...] = ("main",)) -> Path:  # fmt: skip
    """``models--org--name/{refs/<ref>, snapshots/<commit>/}``, as huggingface_hub lays it out."""
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    snap = repo / "snapshots" / commit
    save(snap)
    return snap


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub"


def _spread(model, family):
    """transformers' initialisation (std 0.02) leaves tiny models with near-constant outputs
    (a DPT's logits ~1e-8, a Mask2Former's scores one class everywhere): noise on every weight
    gives outputs of order 1 that vary over the image, so that 1e-5 and the argmax mean something."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p), alpha=SPREAD[family])
    return model.eval()


def _publish(hub: Path, repo_id: str, family: str, labels, seed: int = 0, **kw):
    torch.manual_seed(seed)
    model, proc = FAMILIES[family](list(labels))
    _spread(model, family)

    def save(snap: Path) -> None:
        model.save_pretrained(snap)
        proc.save_pretrained(snap)

    _fake_hub_repo(hub, repo_id, save, **kw)
    return model, proc


def _post_processing_scores(image_processor, outputs, size):
    """transformers' post_process_semantic_segmentation: its maps and the scores it took the
    argmax of (the last interpolation it made: to the target size)."""
    seen = []
    real = F.interpolate

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append(out)
        return out

    with mock.patch("torch.nn.functional.interpolate", spy):
        maps = image_processor.post_process_semantic_segmentation(outputs, target_sizes=[size])
    assert seen[-1].shape[-2:] == size
    return seen[-1][0], maps[0]


def _reference(model, proc, image, pre, **extra):
    """transformers' own path for the same input: its processor's normalisation (without its PIL
    resize: the contract resizes the normalised image), forward, post-processing."""
    inputs = proc(images=image, do_resize=False, return_tensors="pt", **extra)
    ours = preprocess(image, pre)
    assert float((inputs["pixel_values"] - ours).abs().max()) <= 1e-6  # the mapped contract
    x = ours  # the same tensor into both: the forward and post-processing are compared
    if pre.input_size is not None:
        x = F.interpolate(x, size=pre.input_size, mode="bilinear", align_corners=False,
                          antialias=True)  # fmt: skip
    kwargs = {"task_inputs": inputs["task_inputs"]} if "task_inputs" in inputs else {}
    with torch.no_grad():
        out = model(pixel_values=x, **kwargs)
    image_processor = getattr(proc, "image_processor", proc)
    return _post_processing_scores(image_processor, out, SIZE)


def _ours(loaded, image):
    seg = Segmenter(loaded.module, loaded.preprocessing, CPU, num_outputs=loaded.num_outputs)
    return seg.logits(image[None], SIZE)[0]


def _check_parity(family, loaded, model, proc, image, **extra):
    ref_scores, ref_map = _reference(model, proc, image, loaded.preprocessing, **extra)
    logits = _ours(loaded, image)
    outputs = loaded.module.output_classes
    scores = logits.exp() if family in UNIVERSAL else logits
    diff = float((scores - ref_scores[outputs]).abs().max())
    assert diff <= 1e-5, (family, diff)
    assert logits.argmax(0).unique().numel() > 1  # a map with some structure to compare
    if sorted(outputs.tolist()) == list(range(len(ref_scores))):  # every output kept
        assert torch.equal(outputs[logits.argmax(0)], ref_map)
    else:  # the argmax over the dataset's classes
        assert torch.equal(logits.argmax(0), ref_scores[outputs].argmax(0))
    return diff


@pytest.mark.parametrize("family", ["segformer", "dpt", "maskformer"])
def test_logits_equal_transformers_post_processing(hub, family):
    model, proc = _publish(hub, f"org/{family}", family, CLASS_NAMES)
    loaded = load(f"hf://org/{family}", dataset_class_names=CLASS_NAMES, dataset_classes=19)
    assert loaded.name == f"hf://org/{family}" and loaded.weights == f"hf://org/{family}@{COMMIT}"
    assert loaded.module.output_classes.tolist() == list(range(19))  # the same names: 1:1
    assert loaded.num_classes == loaded.num_outputs == 19
    _check_parity(family, loaded, model, proc, natural_image(0, *SIZE))


def test_upernet_shuffled_labels_with_synonyms_and_extras(hub):
    shown = {"person": "Pedestrian", "motorcycle": "motorbike", "traffic sign": "Traffic_Sign",
             "vegetation": "tree"}  # fmt: skip
    labels = [shown.get(n, n) for n in CLASS_NAMES] + ["background", "dog", "boat"]
    np.random.default_rng(0).shuffle(labels)
    model, proc = _publish(hub, "org/upernet", "upernet", labels)
    loaded = load("hf://org/upernet", dataset_class_names=CLASS_NAMES, dataset_classes=19)
    expected = [labels.index(shown.get(n, n)) for n in CLASS_NAMES]
    assert loaded.module.output_classes.tolist() == expected
    assert loaded.num_outputs == 19 and loaded.preprocessing.input_size is None
    _check_parity("upernet", loaded, model, proc, natural_image(1, *SIZE))


def test_mask2former_scores_equal_post_processing(hub):
    labels = [ADE_STYLE.get(n, n) for n in CLASS_NAMES]
    model, proc = _publish(hub, "org/m2f", "mask2former", labels)
    loaded = load("hf://org/m2f", dataset_class_names=CLASS_NAMES)
    assert loaded.module.output_classes.tolist() == list(range(19))
    assert loaded.preprocessing.input_size is None  # shortest_edge: the image as it is
    logits = _ours(loaded, natural_image(2, *SIZE))
    assert bool(torch.isfinite(logits).all())
    # softmax of the logits (what calibration takes) is the scores normalised over the classes
    s = logits.exp()
    assert torch.allclose(logits.softmax(0), s / s.sum(0), atol=1e-6)
    _check_parity("mask2former", loaded, model, proc, natural_image(2, *SIZE))


def _clip_tokenizer(folder: Path):
    """A CLIP BPE tokenizer that knows the four words of OneFormer's task input."""
    vocab, merges = {"<|startoftext|>": 0, "<|endoftext|>": 1}, []
    for word in ("the", "task", "is", "semantic"):
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            a, b = parts[0], parts[1]
            if f"{a} {b}" not in merges:
                merges.append(f"{a} {b}")
            for tok in (a, b, a + b):
                vocab.setdefault(tok, len(vocab))
            parts = [a + b, *parts[2:]]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return T.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def test_oneformer_semantic_task(hub, tmp_path):
    info = tmp_path / "class_info.json"  # the processor's class metadata, read when it is built
    info.write_text(
        json.dumps({str(i): {"name": n, "isthing": 0} for i, n in enumerate(CLASS_NAMES)})
    )
    tokenizer = _clip_tokenizer(tmp_path / "tok")
    image_processor = T.OneFormerImageProcessor(repo_path=None, class_info_file=str(info),
                                                num_text=4)  # fmt: skip
    proc = T.OneFormerProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = T.OneFormerConfig(
        backbone_config=_swin(), hidden_dim=32, num_queries=5, encoder_layers=1, decoder_layers=2,
        dim_feedforward=32, mask_dim=32, conv_dim=32, num_attention_heads=2,
        text_encoder_width=32, text_encoder_num_layers=1, text_encoder_proj_layers=1,
        text_encoder_n_ctx=4, text_encoder_vocab_size=64, encoder_feedforward_dim=32,
        **_id2label(CLASS_NAMES),
    )  # fmt: skip
    torch.manual_seed(0)
    model = _spread(T.OneFormerForUniversalSegmentation(config), "oneformer")

    def save(snap: Path) -> None:
        model.save_pretrained(snap)
        tokenizer.save_pretrained(snap)
        image_processor.save_pretrained(snap)
        # as published: the metadata names a file of a hub dataset, which loading must not need
        cfg = json.loads((snap / "preprocessor_config.json").read_text())
        cfg.update(repo_path="shi-labs/oneformer_demo", class_info_file="cityscapes_panoptic.json")
        (snap / "preprocessor_config.json").write_text(json.dumps(cfg))

    _fake_hub_repo(hub, "org/oneformer", save)
    loaded = load("hf://org/oneformer", dataset_class_names=CLASS_NAMES)
    ref_tokens = proc(images=natural_image(0, *SIZE), task_inputs=["semantic"], do_resize=False,
                      return_tensors="pt")["task_inputs"]  # fmt: skip
    assert torch.equal(loaded.module.task_inputs, ref_tokens)
    _check_parity("oneformer", loaded, model, proc, natural_image(0, *SIZE),
                  task_inputs=["semantic"])  # fmt: skip


def test_revision_picks_its_snapshot_and_lands_in_run_json(hub, tmp_path):
    from robustbench_seg.engine.evaluate import evaluate
    from tests.fake_cityscapes import make_fake_cityscapes

    _publish(hub, "org/seg", "segformer", CLASS_NAMES, seed=0)
    _publish(hub, "org/seg", "segformer", CLASS_NAMES, seed=1, commit=OTHER, refs=("v1",))
    main = load("hf://org/seg", dataset_class_names=CLASS_NAMES)
    v1 = load("hf://org/seg@v1", dataset_class_names=CLASS_NAMES)
    pinned = load(f"hf://org/seg@{OTHER}", dataset_class_names=CLASS_NAMES)
    assert main.weights == f"hf://org/seg@{COMMIT}"
    assert v1.weights == pinned.weights == f"hf://org/seg@{OTHER}"
    assert v1.weights_sha256 == pinned.weights_sha256 != main.weights_sha256

    root = tmp_path / "cityscapes"
    make_fake_cityscapes(root, (1,), size=SIZE)
    evaluate("hf://org/seg@v1", cityscapes_root=root, corruptions=None, workers=0, device="cpu",
             out=tmp_path / "run", progress=False, save_predictions=0)  # fmt: skip
    config = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert config["model"] == "hf://org/seg" and config["weights"] == f"hf://org/seg@{OTHER}"
    assert config["weights_sha256"] == v1.weights_sha256


def test_unmatched_classes_refused_in_one_line_then_mapped(hub, tmp_path):
    # ADE20K-like: no rider, no train; a few classes the dataset does not have
    labels = [ADE_STYLE.get(n, n) for n in CLASS_NAMES if n not in ("rider", "train")]
    labels += ["dog", "boat, ship"]
    _publish(hub, "org/ade", "segformer", labels)
    with pytest.raises(RobustSegError) as info:
        load("hf://org/ade", dataset_class_names=CLASS_NAMES)
    msg = str(info.value)
    assert "\n" not in msg and "'rider', 'train'" in msg and "--class-map FILE.json" in msg
    assert "class_map=" in msg

    mapping = {"rider": "DOG", "train": 18}  # a label (any case) or an output index
    loaded = load("hf://org/ade", dataset_class_names=CLASS_NAMES, class_map=mapping)
    out = loaded.module.output_classes.tolist()
    assert out[CLASS_NAMES.index("rider")] == 17 and out[CLASS_NAMES.index("train")] == 18
    assert out[CLASS_NAMES.index("person")] == labels.index(ADE_STYLE["person"])
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"rider": "dog", "train": "ship"}))
    from_file = load("hf://org/ade", dataset_class_names=CLASS_NAMES, class_map=path)
    assert from_file.module.output_classes.tolist() == out
    # the mapping is part of the identity a run records
    other = load("hf://org/ade", dataset_class_names=CLASS_NAMES,
                 class_map={"rider": "ship", "train": "dog"})  # fmt: skip
    assert other.weights_sha256 != loaded.weights_sha256

    for bad, match in (
        ({"rider": "cat", "train": 18}, "no label 'cat'"),
        ({"rider": 40, "train": 18}, "outside 0..18"),
        ({"riders": "dog", "train": 18}, "'riders', which is not a dataset class"),
        ({"rider": "dog", "train": "dog"}, "both map to the model's output 17"),
    ):
        with pytest.raises(RobustSegError, match=match):
            load("hf://org/ade", dataset_class_names=CLASS_NAMES, class_map=bad)


def test_cli_class_map_reaches_the_loader(hub, tmp_path):
    from click.testing import CliRunner

    from robustbench_seg.cli import cli
    from tests.fake_cityscapes import make_fake_cityscapes

    labels = [n for n in CLASS_NAMES if n != "rider"] + ["dog"]
    _publish(hub, "org/ade", "segformer", labels)
    root = tmp_path / "cityscapes"
    make_fake_cityscapes(root, (1,), size=SIZE)
    args = ["evaluate", "-m", "hf://org/ade", "--cityscapes-root", str(root), "--corruptions",
            "none", "--workers", "0", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "'rider'" in res.output and "--class-map" in res.output
    (tmp_path / "map.json").write_text('{"rider": "doggo"}')
    res = CliRunner().invoke(cli, [*args, "--class-map", str(tmp_path / "map.json")])
    assert res.exit_code == 2 and "no label 'doggo'" in res.output


def test_match_classes_rules():
    city = list(CLASS_NAMES)
    # ADE20K-style labels (comma lists of synonyms) for the Cityscapes classes ADE20K has
    ade = ["wall", "building, edifice", "sky", "floor, flooring", "tree", "road, route",
           "grass", "sidewalk, pavement", "person, individual, someone, somebody, mortal, soul",
           "earth, ground", "plant, flora, plant life", "car, auto, automobile, machine, motorcar",
           "fence, fencing", "signboard, sign", "bus, autobus, coach, charabanc, double-decker",
           "truck, motortruck", "pole", "traffic light, traffic signal, stoplight",
           "minibike, motorbike", "bicycle, bike, wheel, cycle"]  # fmt: skip
    with pytest.raises(RobustSegError, match=r"'rider', 'train'; map them"):
        H.match_classes(ade, city)
    out = H.match_classes(ade, city, {"rider": "floor", "train": "earth"})
    got = {c: ade[o] for c, o in zip(city, out, strict=True)}
    assert got["vegetation"] == "tree" and got["terrain"] == "grass"  # the table's order
    assert got["motorcycle"] == "minibike, motorbike" and got["traffic sign"] == "signboard, sign"
    assert got["rider"] == "floor, flooring" and got["person"].startswith("person,")
    # the map claims first, then own names, then synonyms; a clash is refused
    assert H.match_classes(["tree", "plant"], ["vegetation", "terrain"], {"terrain": "tree"}) == (
        1,
        0,
    )
    with pytest.raises(RobustSegError, match="class.es. 'vegetation'"):
        H.match_classes(["tree"], ["vegetation", "tree"])
    with pytest.raises(
        RobustSegError, match="'vegetation' and 'plant' both map to the model's output 0"
    ):
        H.match_classes(["tree"], ["vegetation", "plant"])
    # case, spaces and punctuation do not count; a label's first name beats a later one
    assert H.match_classes(
        ["Traffic-Light", "TRAFFIC_SIGN"], ["traffic sign", "traffic light"]
    ) == (1, 0)
    assert H.match_classes(["vehicle, car", "car"], ["car"]) == (1,)
    with pytest.raises(RobustSegError, match="names several model labels"):
        H.match_classes(["car, auto", "car, motorcar"], ["car"], {"car": "car"})


def test_synonym_groups_do_not_share_a_name():
    keys = [H._key(n) for group in H.CLASS_SYNONYMS for n in group]
    assert len(keys) == len(set(keys))
    assert all(H._key(n) in keys for n in CLASS_NAMES)


def test_preprocessing_from_image_processors():
    seg = H.preprocessing_from_processor(T.SegformerImageProcessor())
    assert seg.input_size == (512, 512) and seg.value_scale == 1.0 and seg.channel_order == "RGB"
    assert seg.mean == pytest.approx((0.485, 0.456, 0.406)) and seg.std[0] == pytest.approx(0.229)
    mvit = H.preprocessing_from_processor(T.MobileViTImageProcessor())  # flip, no normalise
    assert mvit.channel_order == "BGR" and mvit.mean == (0, 0, 0) and mvit.std == (1, 1, 1)
    assert mvit.value_scale == 1.0 and mvit.input_size is None  # shortest_edge: not applied
    dpt = H.preprocessing_from_processor(T.DPTImageProcessor(keep_aspect_ratio=True))
    assert dpt.input_size is None and dpt.mean == (0.5, 0.5, 0.5)
    raw = SimpleNamespace(do_rescale=False, do_normalize=True, image_mean=[123.675, 116.28, 103.53],
                          image_std=[58.395, 57.12, 57.375], do_resize=False)  # fmt: skip
    assert H.preprocessing_from_processor(raw).value_scale == 255.0
    with pytest.raises(RobustSegError, match="image_std"):
        H.preprocessing_from_processor(SimpleNamespace(do_normalize=True, image_mean=0.5,
                                                       image_std=[1, 0, 1]))  # fmt: skip


def test_specs_and_refusals(hub):
    assert H.parse_hf_spec("hf://org/name@v1.0") == ("org/name", "v1.0")
    assert H.parse_hf_spec("hf://org/name") == ("org/name", None)
    for bad in ("hf://", "hf://org/name@", "hf://a/b/c", "hf://org name"):
        with pytest.raises(RobustSegError, match="hf://ORG/NAME"):
            H.parse_hf_spec(bad)
    with pytest.raises(RobustSegError) as info:
        load("hf://org/missing")
    msg = str(info.value)
    assert "huggingface-cli download org/missing" in msg and "--weights" not in msg
    with pytest.raises(RobustSegError, match="brings its weights"):
        load("hf://org/missing", "other.pth")
    with pytest.raises(RobustSegError, match="class map is for hf://"):
        load("b0", class_map={"rider": 0})


def test_without_transformers_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(RobustSegError) as info:
        load("hf://org/name")
    assert str(info.value) == "hf:// models need transformers: pip install 'robustseg[hf]'"


def test_core_and_registry_evaluate_do_not_import_transformers(tmp_path):
    code = f"""
import sys
from pathlib import Path
import robustbench_seg
assert "transformers" not in sys.modules
from robustbench_seg.engine.evaluate import evaluate
from tests.fake_cityscapes import make_fake_cityscapes
make_fake_cityscapes(Path({str(tmp_path / "cs")!r}), (1,), size=(64, 128))
evaluate("segformer-b0", weights=None, cityscapes_root={str(tmp_path / "cs")!r}, corruptions=None,
         workers=0, device="cpu", progress=False, save_predictions=0)
bad = sorted(m for m in sys.modules if m.split(".")[0] == "transformers")
assert not bad, bad
"""
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]

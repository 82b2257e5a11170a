"""The ``robustseg`` command line: thin click commands over the library."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from robustbench_seg.errors import USER_ERRORS


def _progress() -> bool:
    """Progress unless ROBUSTSEG_NO_PROGRESS is set: a bar on a terminal, else a line at most
    every 30 s (ROBUSTSEG_PROGRESS_INTERVAL) and a summary line (robustbench_seg.progress)."""
    return not os.environ.get("ROBUSTSEG_NO_PROGRESS")


def _user_errors(fn):
    """Show a user-caused error as one line (exit 2); Ctrl-C as one line (exit 130)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            click.echo(f"robustseg: error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except KeyboardInterrupt:
            click.echo("robustseg: interrupted; finished work is kept, re-run to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="robustseg")
def cli() -> None:
    """robustseg: robustness benchmarking for semantic segmentation.

    Generate Cityscapes-C, evaluate SegFormer / DeepLabV3+ models on every corruption and
    severity, and render paper-style reports (SegFormer, Xie et al. 2021, Table 5).
    """


@cli.command("corruptions")
def corruptions_cmd() -> None:
    """List the corruptions: name, category, Cityscapes-C severities."""
    from corruptions.protocol import protocol_severities
    from corruptions.registry import BENCHMARK, CORRUPTIONS

    click.echo(f"{'name':<18} {'category':<8} {'cityscapes-c severities':<24} note")
    for name, c in CORRUPTIONS.items():
        in_bench = name in BENCHMARK
        sev = ",".join(map(str, protocol_severities(name))) if in_bench else "-"
        note = "benchmark" if in_bench else "extra (not in Cityscapes-C)"
        if c.validation:
            note += ", imagecorruptions validation set"
        click.echo(f"{name:<18} {c.category:<8} {sev:<24} {note}")


@cli.command("corrupt")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--corruption", "-c", default=None, help="Corruption name (see `robustseg corruptions`)."
)
@click.option("--severity", "-s", type=int, default=3, show_default=True, help="Severity 1..5.")
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed (same seed, same pixels)."
)
@click.option(
    "--backend", type=click.Choice(["fast", "reference"]), default="fast", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the corrupted image here (PNG).",
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a contact sheet of IMAGE under all 16 Cityscapes-C corruptions.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@_user_errors
def corrupt_cmd(image, corruption, severity, seed, backend, output, sheet, overwrite) -> None:
    """Corrupt one IMAGE, or render a contact sheet of all 16 benchmark corruptions."""
    from robustbench_seg.corrupt_tools import contact_sheet, corrupt_file

    if output is None and sheet is None:
        raise click.UsageError("give -o OUT.png (with --corruption) and/or --sheet SHEET.png")
    if output is not None:
        if corruption is None:
            raise click.UsageError("-o needs --corruption NAME")
        corrupt_file(
            image, corruption, severity, output, seed=seed, backend=backend, overwrite=overwrite
        )
        click.echo(f"wrote {output}")
    if sheet is not None:
        contact_sheet(image, severity, sheet, seed=seed, backend=backend, overwrite=overwrite)
        click.echo(f"wrote {sheet}")


@cli.command("make-cityscapes-c")
@click.option(
    "--cityscapes-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Cityscapes root (with leftImg8bit/ and gtFine/). Default: $CITYSCAPES_DATASET.",
)
@click.option("--split", default="val", show_default=True, help="Split to corrupt.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output folder for the Cityscapes-C tree.",
)
@click.option(
    "--corruptions",
    default="benchmark",
    show_default=True,
    help="'benchmark' (the 16), a category (noise, blur, digital, weather), 'all', "
    "'extra', or comma-separated names.",
)
@click.option(
    "--severities",
    default="protocol",
    show_default=True,
    help="'protocol' (1-3 for the noises, 1-5 otherwise: 72 variants), 'all' (1-5), "
    "or a list such as '1,3,5' or '1-3'.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed.")
@click.option("--workers", type=int, default=None, help="Processes. Default: all cores.")
@click.option("--limit", type=int, default=None, help="Only the first N images (sorted).")
@click.option(
    "--backend",
    type=click.Choice(["fast", "reference"]),
    default="fast",
    show_default=True,
    help="fast (ours) or reference (imagecorruptions).",
)
@click.option("--skip-bad", is_flag=True, help="Record unreadable images as failed and go on.")
@_user_errors
def make_cityscapes_c_cmd(cityscapes_root, split, out, corruptions, severities, seed, workers,
                          limit, backend, skip_bad) -> None:  # fmt: skip
    """Generate Cityscapes-C: every image of the split under every corruption and severity.

    Output: OUT/<corruption>/<severity>/leftImg8bit/<split>/<city>/<file>.png, manifest.csv
    (path, sha256, seed), metadata.json. Re-running resumes: only missing files, or files that
    fail their checksum, are made.

    Example: robustseg make-cityscapes-c --cityscapes-root ~/data/cityscapes --out ~/data/cityscapes-c
    """
    from robustbench_seg.data.cityscapes_c import generate_cityscapes_c

    summary = generate_cityscapes_c(
        cityscapes_root, out, split=split, corruptions=corruptions, severities=severities,
        seed=seed, workers=workers, limit=limit, backend=backend, skip_bad=skip_bad,
        progress=_progress(),
    )  # fmt: skip
    click.echo(f"{summary.images} images x {summary.variants} variants: {summary.line()}")
    for image_id, err in summary.failed:
        click.echo(f"  failed: {image_id}: {err}", err=True)


@cli.command("evaluate")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Registry name or alias (b0..b5, segformer-b5, deeplabv3plus-r101, ...), optionally "
    "with a weights tag (segformer-b0.synthetic), or a custom builder: path/to/file.py:build or "
    "package.module:build (see the README's model contract).",
)
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="'default' (the model's tag, else the catalog's Cityscapes weights), a weights tag "
    "(cityscapes, synthetic, ...), a catalog id, a file or save_pretrained folder, an https:// "
    "URL, hf://<repo id>, or 'none' (random init).",
)
@click.option(
    "--cityscapes-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Cityscapes root. Default: $CITYSCAPES_DATASET.",
)
@click.option("--split", default="val", show_default=True)
@click.option(
    "--cityscapes-c",
    type=click.Path(path_type=Path),
    default=None,
    help="A tree made by make-cityscapes-c; without it, images are corrupted on the fly "
    "(identical pixels).",
)
@click.option(
    "--corruptions",
    default="benchmark",
    show_default=True,
    help="As make-cityscapes-c; 'none' evaluates the clean images only.",
)
@click.option("--severities", default="protocol", show_default=True, help="As make-cityscapes-c.")
@click.option("--no-clean", is_flag=True, help="Skip the clean cell.")
@click.option("--limit", type=int, default=None, help="Only the first N images (sorted).")
@click.option(
    "--inference",
    type=click.Choice(["auto", "slide", "whole"]),
    default="auto",
    show_default=True,
    help="auto: the whole image when it fits in --crop, else sliding windows (slide, "
    "mmseg's slide_inference); whole: the whole image always.",
)
@click.option("--crop", type=int, default=1024, show_default=True, help="Sliding-window size.")
@click.option("--stride", type=int, default=768, show_default=True, help="Sliding-window step.")
@click.option(
    "--batch-size",
    type=int,
    default=2,
    show_default=True,
    help="Windows (slide) or images (whole) per forward pass.",
)
@click.option("--workers", type=int, default=None, help="Loader processes. Default: min(4, cores).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Corruption seed for on-the-fly corruption. Default: 0 (a --cityscapes-c tree brings "
    "its own; another value is refused).",
)
@click.option(
    "--backend",
    type=click.Choice(["fast", "reference"]),
    default=None,
    help="Corruption backend for on-the-fly corruption. Default: fast (a --cityscapes-c tree "
    "brings its own; another value is refused).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Run directory, e.g. runs/b5."
)
@click.option("--overwrite", is_flag=True, help="Replace a run of another configuration in --out.")
@click.option(
    "--save-predictions",
    type=int,
    default=3,
    show_default=True,
    help="Keep the predicted label maps of the first N images of every cell in "
    "OUT/predictions/ (what `report --qualitative` shows; 0: none).",
)
@_user_errors
def evaluate_cmd(model, weights, cityscapes_root, split, cityscapes_c, corruptions, severities,
                 no_clean, limit, inference, crop, stride, batch_size, workers, device, precision,
                 seed, backend, out, overwrite, save_predictions) -> None:  # fmt: skip
    """Evaluate a model on clean Cityscapes and every Cityscapes-C corruption and severity.

    Writes OUT/run.json, OUT/cells/<cell>.npz, OUT/results.csv (per cell and class) and
    OUT/summary.csv (the Table 5 row: clean, 16 corruption means, mPC, rPC). Re-running with the
    same --out resumes. Multi-GPU: torchrun --nproc-per-node N -m robustbench_seg evaluate ...

    Example: robustseg evaluate --model b5 --out runs/b5
    """
    from robustbench_seg.engine.evaluate import evaluate
    from robustbench_seg.runs import format_summary, summary_frame
    from robustbench_seg.runtime import dist_info

    results = evaluate(
        model, weights=None if weights == "none" else weights, cityscapes_root=cityscapes_root,
        split=split, cityscapes_c=cityscapes_c,
        corruptions=None if corruptions == "none" else corruptions, severities=severities,
        clean=not no_clean, limit=limit, inference=inference, crop=crop, stride=stride,
        batch_size=batch_size, workers=workers, device=device, precision=precision, out=out,
        overwrite=overwrite, seed=seed, backend=backend, save_predictions=save_predictions,
        progress=_progress(),
    )  # fmt: skip
    if dist_info()[0] == 0:
        click.echo(format_summary(summary_frame(results)))
        click.echo(f"results: {out}/results.csv, summary: {out}/summary.csv")


def _check_cuda(device: str) -> None:
    """A CUDA device that is not there fails here, in one line, before any work."""
    if device.startswith("cuda"):
        from robustbench_seg.runtime import resolve_device

        resolve_device(device)


def _parse_size(value: str) -> tuple[int, int]:
    """``WxH`` (e.g. 1024x512) → (H, W)."""
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use WIDTHxHEIGHT, e.g. 1024x512") from None
    return h, w


@cli.command("make-synthetic-city")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output dataset root.")
@click.option(
    "--train", "n_train", type=int, default=100, show_default=True, help="Training images."
)
@click.option("--val", "n_val", type=int, default=50, show_default=True, help="Validation images.")
@click.option("--size", default="1024x512", show_default=True, help="WIDTHxHEIGHT.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=None, help="Processes. Default: all cores.")
@_user_errors
def make_synthetic_city_cmd(out, n_train, n_val, size, seed, workers) -> None:
    """Render procedural street scenes in Cityscapes layout (leftImg8bit + gtFine labelIds).

    Every command reads the result as it reads Cityscapes; the same seed gives the same bytes.

    Example: robustseg make-synthetic-city --out data/synthetic --train 200 --val 50
    """
    from robustbench_seg.data.synthetic import make_synthetic_city

    summary = make_synthetic_city(
        out, train=n_train, val=n_val, size=_parse_size(size), seed=seed,
        workers=workers or os.cpu_count() or 1, progress=_progress(),
    )  # fmt: skip
    click.echo(summary.line())


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Report folder, e.g. reports/study.",
)
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A run directory to compute corruption degradation (CD, mCD) against.",
)
@click.option(
    "--reference",
    default="segformer-table5",
    show_default=True,
    help="Published rows to include: 'segformer-table5', 'none', or a CSV path.",
)
@click.option(
    "--qualitative",
    type=int,
    default=0,
    show_default=True,
    help="Images in the qualitative grid (from the predictions the runs saved with "
    "`evaluate --save-predictions`; needs the dataset for the images).",
)
@click.option(
    "--qualitative-corruptions",
    default="gaussian_noise-3,motion_blur-3,contrast-3,snow-3",
    show_default=True,
    help="Cells shown in the qualitative grid (NAME-SEVERITY, comma-separated).",
)
@click.option(
    "--cityscapes-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset root for the qualitative grid (default: the one recorded in the runs).",
)
@click.option(
    "--erf",
    type=click.Path(path_type=Path),
    default=None,
    help="A `robustseg erf` output folder: adds its ERF grid and statistics.",
)
@_user_errors
def report_cmd(
    runs, out, baseline, reference, qualitative, qualitative_corruptions, cityscapes_root, erf
) -> None:
    """Render paper-style tables and figures from one or more run directories.

    Table 5 (Markdown, LaTeX, CSV, HTML) with the published rows, per-severity tables,
    Figure 7 severity curves, per-class IoU heatmaps, a qualitative grid, index.md/index.html.

    Example: robustseg report runs/b5 runs/r101 --baseline runs/r101 --out reports/study
    """
    import warnings

    from robustbench_seg.report import ReportWarning, build_report

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        result = build_report(
            runs, out, baseline=baseline, reference=reference, qualitative=qualitative,
            qualitative_corruptions=[c for c in qualitative_corruptions.split(",") if c],
            cityscapes_root=cityscapes_root, erf=erf, progress=_progress(),
        )  # fmt: skip
    for warning in result.warnings:
        click.echo(f"robustseg: warning: {warning}", err=True)
    click.echo(f"report: {result.index_md} (and {result.index_html.name})")


@cli.command("erf")
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    required=True,
    help="Model name/alias (repeat for several: one row each).",
)
@click.option(
    "--weights",
    multiple=True,
    help="Weights per --model (one for all, or one each); default: the catalog's.",
)
@click.option(
    "--cityscapes-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Cityscapes root (default: $CITYSCAPES_DATASET), or use --images.",
)
@click.option("--split", default="val", show_default=True)
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder of images instead of Cityscapes.",
)
@click.option(
    "--num-images", type=int, default=100, show_default=True, help="Seeded choice of images."
)
@click.option(
    "--size", default="1024x512", show_default=True, help="WIDTHxHEIGHT the images are resized to."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@_user_errors
def erf_cmd(
    models, weights, cityscapes_root, split, images_dir, num_images, size, seed, device, out
) -> None:
    """Effective receptive fields of each encoder stage and the head (SegFormer Figure 3).

    Method: Luo, Li, Urtasun and Zemel (2016).
    For each encoder stage and the decoder head: the gradient of the central output unit
    w.r.t. the input, |.| summed over RGB, averaged over the images. Writes erf.png/erf.pdf
    (rows: models, columns: stage 1-4 and head), erf.csv (mass in central squares of 1/5/25%
    of the image, sides of the smallest squares holding 50%/90%) and erf_maps.npz.

    Example: robustseg erf -m b5 -m deeplabv3plus-r101 --num-images 100 --out reports/erf
    """
    from robustbench_seg.analysis.erf import compute_erf

    _check_cuda(device)
    if weights:
        w = [None if x == "none" else x for x in weights]
        weight_arg = w[0] if len(w) == 1 else w
    else:
        weight_arg = "default"
    result = compute_erf(
        list(models), weights=weight_arg, cityscapes_root=cityscapes_root, split=split,
        images_dir=images_dir, num_images=num_images, size=_parse_size(size), seed=seed,
        device=device, out=out, progress=_progress(),
    )  # fmt: skip
    click.echo(result.line())


def _pair_option(value: str | None):
    if value is None:
        return None
    parts = [p for p in value.lower().replace("x", ",").split(",") if p]
    try:
        nums = [float(p) if "." in p else int(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{value!r}: use N or A,B (e.g. 1024 or 512,1024)") from None
    return nums[0] if len(nums) == 1 else tuple(nums)


@cli.command("train")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Architecture: registry name or alias (b0..b5, deeplabv3plus-r50, ...); starting "
    "weights go to --init.",
)
@click.option(
    "--cityscapes-root",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset root with train and val splits. Default: $CITYSCAPES_DATASET.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run directory, e.g. runs/train-b0.",
)
@click.option(
    "--init",
    default="imagenet",
    show_default=True,
    help="'imagenet' (the catalog's <architecture>.imagenet: MiT encoder or mmcls backbone), "
    "another weights tag or catalog id, a checkpoint PATH, URL or hf:// id, or 'none' (random).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out (same configuration).")
@click.option(
    "--eval-every", type=int, default=None, help="Validate every N iterations (0: never)."
)
@click.option(
    "--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option(
    "--accumulate", type=int, default=None, help="Gradient-accumulation steps per iteration."
)
@click.option("--workers", type=int, default=None, help="Loader processes.")
@click.option("--log-every", type=int, default=50, show_default=True)
@click.option(
    "--stop-after", type=int, default=None, help="Stop (with a checkpoint) at this iteration."
)
@click.option(
    "--iters", type=int, default=None, help="Schedule length (SegFormer 160k, DeepLabV3+ 80k)."
)
@click.option("--batch-size", type=int, default=None, help="Global batch (8).")
@click.option(
    "--samples-per-gpu", type=int, default=None, help="Images per process per forward pass."
)
@click.option(
    "--crop", default=None, help="Crop H,W or one size (SegFormer 1024, DeepLabV3+ 512,1024)."
)
@click.option("--scale", default=None, help="Base resize scale LONG,SHORT (2048,1024).")
@click.option("--ratio-range", default=None, help="Random resize ratios MIN,MAX (0.5,2.0).")
@click.option("--lr", type=float, default=None, help="Base learning rate (6e-5 AdamW / 0.01 SGD).")
@click.option("--weight-decay", type=float, default=None)
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default=None)
@click.option("--momentum", type=float, default=None)
@click.option("--poly-power", type=float, default=None)
@click.option("--min-lr", type=float, default=None)
@click.option("--warmup-iters", type=int, default=None)
@click.option("--head-lr-mult", type=float, default=None)
@click.option(
    "--aux-weight", type=float, default=None, help="Auxiliary FCN head loss weight (0.4)."
)
@click.option(
    "--class-weight",
    default=None,
    help="Cross-entropy class weights: 'enet' (1/ln(1.02 + class frequency), from the "
    "training labels), 'none', or one number per class (comma-separated).",
)
@click.option("--cat-max-ratio", type=float, default=None)
@click.option("--flip-prob", type=float, default=None)
@click.option("--photometric/--no-photometric", default=None)
@click.option("--freeze-norms", is_flag=True, default=None, help="Norms in eval mode, dropout off.")
@click.option("--checkpoint-every", type=int, default=None)
@click.option("--eval-mode", type=click.Choice(["whole", "slide"]), default=None)
@_user_errors
def train_cmd(model, cityscapes_root, out, init, resume, eval_every, precision, seed, device, accumulate,
              workers, log_every, stop_after, crop, scale, ratio_range, **overrides) -> None:  # fmt: skip
    """Train a model with the paper's recipe (SegFormer) or mmsegmentation's (DeepLabV3+).

    Writes OUT/weights.safetensors (what `evaluate --weights` loads), best.safetensors,
    checkpoint.pt (resume), log.jsonl and curves.png. Multi-GPU / multi-node:
    torchrun --nproc-per-node N -m robustbench_seg train ...

    Example: robustseg train --model b0 --out runs/train-b0 --iters 160000
    """
    from robustbench_seg.engine.train import train

    weight = overrides.pop("class_weight", None)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if weight is not None and weight.lower() != "none":
        try:
            overrides["class_weight"] = (
                "enet" if weight.lower() == "enet" else tuple(float(v) for v in weight.split(","))
            )
        except ValueError:
            raise click.BadParameter(
                f"{weight!r}: use enet, none, or comma-separated numbers",
                param_hint="--class-weight",
            ) from None
    for key, value in (("crop", crop), ("scale", scale), ("ratio_range", ratio_range)):
        if value is not None:
            overrides[key] = _pair_option(value)
    result = train(
        model, cityscapes_root=cityscapes_root, out=out, init=init, resume=resume,
        eval_every=eval_every, precision=precision, seed=seed, device=device, accumulate=accumulate,
        workers=workers, log_every=log_every, stop_after=stop_after, progress=_progress(), **overrides,
    )  # fmt: skip
    best = (
        f", best val mIoU {100 * result.best_miou:.1f} at {result.best_iteration}"
        if result.best_miou == result.best_miou
        else ""
    )
    click.echo(
        f"iteration {result.iteration}, loss {result.loss:.4f}{best}; weights: {result.weights}"
    )


@cli.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports/demo"),
    show_default=True,
    help="Report folder (an earlier demo there is replaced).",
)
@click.option(
    "--images", type=int, default=10, show_default=True, help="Synthetic validation images."
)
@click.option(
    "--size",
    default="512x256",
    show_default=True,
    help="WIDTHxHEIGHT of the images (the bundled models were trained at 512x256).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="City and corruption seed.")
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep the generated images and Cityscapes-C here (default: a temporary folder).",
)
@click.option("--workers", type=int, default=None, help="Processes. Default: all cores.")
@click.option(
    "--qualitative", type=int, default=3, show_default=True, help="Images in the qualitative grid."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@_user_errors
def demo_cmd(out, images, size, seed, work, workers, qualitative, device) -> None:
    """The whole study in minutes on a CPU: synthetic city, bundled models, full report.

    Renders synthetic street scenes, their Cityscapes-C (16 corruptions, 72 variants),
    evaluates the bundled SegFormer-B0 and DeepLabV3+ MobileNetV2 (trained on the synthetic
    city) on every variant, computes their effective receptive fields, and writes the report
    (Table 5, severity curves, ERF grid, qualitative grid) to OUT.

    Example: robustseg demo --out reports/demo --images 10
    """
    from robustbench_seg.demo import run_demo

    _check_cuda(device)
    result = run_demo(
        out, images=images, size=_parse_size(size), seed=seed, work=work, workers=workers,
        qualitative=qualitative, device=device, progress=_progress(), echo=click.echo,
    )  # fmt: skip
    click.echo("")
    click.echo(result.headline)
    click.echo("")
    click.echo(
        f"demo done in {result.timings['total']:.0f} s; report: {result.report.index_md} "
        f"(and {result.report.index_html.name})"
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="robustseg")


if __name__ == "__main__":
    main()

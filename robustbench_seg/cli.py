"""The ``robustseg`` command line: thin click commands over the library."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from robustbench_seg.errors import error_line


def _progress() -> bool:
    """Progress unless ROBUSTSEG_NO_PROGRESS is set: a bar on a terminal, else a line at most
    every 30 s (ROBUSTSEG_PROGRESS_INTERVAL) and a summary line (robustbench_seg.progress)."""
    return not os.environ.get("ROBUSTSEG_NO_PROGRESS")


class _Cli(click.Group):
    """The ``robustseg`` group: every error reaches the user as one line on stderr.

    Exit codes: 2 for a user mistake (bad option, path, name, format), 1 for a failure of the
    system (permission, read-only or full disk, unreadable input), 130 for an interruption
    (Ctrl-C), 143 for SIGTERM (``kill``, SLURM), which unwinds as Ctrl-C does: workers stopped,
    the folder's lock released, finished work kept (robustbench_seg.errors). An unexpected error
    (a bug) keeps its traceback.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from robustbench_seg.procs import Terminated, terminate_unwinds, terminated

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            with terminate_unwinds():
                code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            _fail(f"{exc.format_message()}{hint}", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            if sys.stderr.isatty():  # after the terminal's "^C"
                click.echo("", err=True)
            _fail("interrupted; finished work is kept, re-run the same command to resume", 130)
        except Terminated:
            _fail(_TERMINATED, Terminated.exit_code)
        except Exception as exc:
            if terminated():  # e.g. a loader worker that the same SIGTERM ended (SLURM signals all)
                _fail(_TERMINATED, Terminated.exit_code)
            shown = error_line(exc)
            if shown is None:
                raise
            _fail(*shown)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # not through click's handler, which writes an empty line
            raise click.exceptions.Abort() from None


_TERMINATED = "terminated (SIGTERM); finished work is kept, re-run the same command to resume"


def _fail(message: str, code: int) -> None:
    click.echo(f"robustseg: error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(
    cls=_Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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


# ----------------------------------------------------------------------------- shared options
# One meaning per option in every command (README, "Options every command shares").


class _Size(click.ParamType):
    """``WIDTHxHEIGHT`` or ``N`` (NxN), converted to ``(height, width)``."""

    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from robustbench_seg.errors import RobustSegError
        from robustbench_seg.sizes import parse_size

        try:
            return parse_size(value, option=param.opts[0] if param is not None else "size")
        except RobustSegError as exc:
            self.fail(str(exc), param, ctx)


SIZE = _Size()


def _out_option(help: str, **kwargs):
    return click.option(
        "--out", type=click.Path(path_type=Path), required=True, help=help, **kwargs
    )


def _workers_option(default: str):
    return click.option(
        "--workers",
        type=click.IntRange(min=0),
        default=None,
        help="Worker processes beside the main one (0: all work in the main process). "
        f"Default: {default}.",
    )


_device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N.",
)


def _root_option(extra: str = ""):
    return click.option(
        "--cityscapes-root",
        type=click.Path(path_type=Path),
        default=None,
        help=f"Cityscapes root (with leftImg8bit/ and gtFine/){extra}. "
        "Default: $CITYSCAPES_DATASET.",
    )


_split_option = click.option(
    "--split", default="val", show_default=True, help="Dataset split: train, val or test."
)
_limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N images of the split (sorted by id). Default: all.",
)
_corruptions_help = (
    "'benchmark' (the 16 of Cityscapes-C), a category (noise, blur, digital, weather), "
    "'all' (19), 'extra' (zoom_blur, elastic_transform, pixelate), or comma-separated names"
)
_severities_help = (
    "'protocol' (1-3 for the four noises, 1-5 for the rest: 72 variants), 'all' (1-5), or a "
    "list such as '1,3,5' or '1-3'."
)


@cli.command("corrupt")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--corruption",
    "-c",
    default=None,
    help="Corruption name (see `robustseg corruptions`); needed with -o. Default: none.",
)
@click.option("--severity", "-s", type=click.IntRange(1, 5), default=3, show_default=True,
              help="Severity 1..5.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the corruption's random draws (same seed, same pixels).")  # fmt: skip
@click.option(
    "--backend",
    type=click.Choice(["fast", "reference"]),
    default="fast",
    show_default=True,
    help="fast (ours) or reference (imagecorruptions itself; pip install 'robustseg[reference]').",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the corrupted image here (PNG). Default: none.",
)
@click.option(
    "--sheet",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a contact sheet of IMAGE under all 16 Cityscapes-C corruptions here (PNG). "
    "Default: none.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files (never IMAGE).")
def corrupt_cmd(image, corruption, severity, seed, backend, output, sheet, overwrite) -> None:
    """Corrupt one IMAGE, or render a contact sheet of all 16 benchmark corruptions.

    Example: robustseg corrupt street.png -c fog -s 3 -o street-fog3.png
    """
    from robustbench_seg.corrupt_tools import contact_sheet, corrupt_file

    if output is None and sheet is None:
        raise click.UsageError("give -o OUT.png (with --corruption) and/or --sheet SHEET.png")
    if output is not None and corruption is None:
        raise click.UsageError("-o needs --corruption NAME")
    if output is not None:
        corrupt_file(
            image, corruption, severity, output, seed=seed, backend=backend, overwrite=overwrite
        )
        click.echo(f"wrote {output}")
    if sheet is not None:
        contact_sheet(image, severity, sheet, seed=seed, backend=backend, overwrite=overwrite)
        click.echo(f"wrote {sheet}")


def _tree_options(fn):
    """The options make-cityscapes-c and make-corrupted share."""
    options = [
        click.option("--split", default="val", show_default=True, help="Split to corrupt."),
        _out_option("Output folder for the corrupted tree (new, empty, or one made by this "
                    "command: resumed)."),
        click.option("--corruptions", default="benchmark", show_default=True,
                     help=_corruptions_help + "."),
        click.option("--severities", default="protocol", show_default=True,
                     help=_severities_help),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Base seed of the seeding rule (README: Seeding)."),
        _workers_option("all cores"),
        _limit_option,
        click.option("--backend", type=click.Choice(["fast", "reference"]), default="fast",
                     show_default=True, help="fast (ours) or reference (imagecorruptions; pip "
                     "install 'robustseg[reference]')."),
        click.option("--skip-bad", is_flag=True,
                     help="Record unreadable images as failed (in metadata.json and the summary) "
                     "and go on, instead of stopping at the first."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _make_tree(root, out, dataset, split, corruptions, severities, seed, workers, limit, backend,
               skip_bad) -> None:  # fmt: skip
    from robustbench_seg.data.cityscapes_c import generate_cityscapes_c

    summary = generate_cityscapes_c(
        root, out, split=split, corruptions=corruptions, severities=severities, seed=seed,
        workers=workers, limit=limit, backend=backend, skip_bad=skip_bad, progress=_progress(),
        dataset=dataset,
    )  # fmt: skip
    click.echo(f"{summary.images} images x {summary.variants} variants: {summary.line()}")
    for image_id, err in summary.failed:
        click.echo(f"  failed: {image_id}: {err}", err=True)


@cli.command("make-cityscapes-c")
@_root_option()
@_tree_options
def make_cityscapes_c_cmd(cityscapes_root, split, out, corruptions, severities, seed, workers,
                          limit, backend, skip_bad) -> None:  # fmt: skip
    """Generate Cityscapes-C: every image of the split under every corruption and severity.

    Output: OUT/<corruption>/<severity>/leftImg8bit/<split>/<city>/<file>.png, manifest.csv
    (path, sha256, seed), metadata.json. Re-running resumes: only missing files, or files that
    fail their checksum, are made. The same as make-corrupted --dataset cityscapes.

    Example: robustseg make-cityscapes-c --cityscapes-root ~/data/cityscapes --out ~/data/cityscapes-c
    """
    _make_tree(cityscapes_root, out, "cityscapes", split, corruptions, severities, seed, workers,
               limit, backend, skip_bad)  # fmt: skip


_dataset_option = click.option(
    "--dataset",
    default="cityscapes",
    show_default=True,
    help="The dataset: cityscapes, ade20k or folder (images/, labels/, classes.txt); see "
    "`robustseg datasets`. Its root is --data-root.",
)
_data_root_option = click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help="The dataset's root folder. Default: for cityscapes --cityscapes-root or "
    "$CITYSCAPES_DATASET; none otherwise.",
)


@cli.command("make-corrupted")
@click.option("--dataset", required=True,
              help="The dataset to corrupt: cityscapes, ade20k, folder, ... (`robustseg datasets`).")  # fmt: skip
@_data_root_option
@_tree_options
def make_corrupted_cmd(dataset, data_root, split, out, corruptions, severities, seed, workers,
                       limit, backend, skip_bad) -> None:  # fmt: skip
    """Generate the corrupted tree of any dataset (ADE20K-C, ...), as make-cityscapes-c does.

    Same protocol, seeding, manifest and resume: OUT/<corruption>/<severity>/<image's path in
    the dataset, as .png>, each variant folder linking back to the dataset's labels, except
    a geometric corruption's (elastic_transform), which holds its moved label maps.

    Example: robustseg make-corrupted --dataset ade20k --data-root ~/data/ade --out ~/data/ade20k-c
    """
    _make_tree(data_root, out, dataset, split, corruptions, severities, seed, workers, limit,
               backend, skip_bad)  # fmt: skip


@cli.command("datasets")
def datasets_cmd() -> None:
    """List the datasets: name, splits, natural-shift conditions, classes, layout."""
    from robustbench_seg.data.datasets import DATASETS

    click.echo(f"{'name':<18} {'splits':<16} {'conditions':<24} classes")
    for d in DATASETS.values():
        classes = "classes.txt" if d.name == "folder" else str(len(d.classes()))
        click.echo(f"{d.name:<18} {','.join(d.splits):<16} {','.join(d.conditions) or '-':<24} "
                   f"{classes}")  # fmt: skip


@cli.command("evaluate")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Registry name or alias (b0..b5, segformer-b5, deeplabv3plus-r101, ...), optionally "
    "with a weights tag (segformer-b0.synthetic), a custom builder: path/to/file.py:build or "
    "package.module:build (see the README's model contract), or a Hugging Face model "
    "hf://ORG/NAME[@REVISION] (pip install 'robustseg[hf]').",
)
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="'default' (the model's tag, else the catalog's Cityscapes weights), a weights tag "
    "(cityscapes, synthetic, ...), a catalog id, a file or save_pretrained folder, an https:// "
    "URL, hf://<repo id>, or 'none' (random init).",
)
@_root_option()
@_dataset_option
@_data_root_option
@_split_option
@click.option(
    "--natural",
    multiple=True,
    help="A natural-shift set evaluated as cells next to the synthetic ones (repeatable): "
    "NAME[:CONDITION,...][=ROOT], e.g. acdc=~/data/acdc (acdc:fog, acdc:night, ...), "
    "dark-zurich=~/data/dark_zurich, foggy-cityscapes (under the Cityscapes root). "
    "Default: none.",
)
@click.option(
    "--cityscapes-c",
    type=click.Path(path_type=Path),
    default=None,
    help="A tree made by make-cityscapes-c from this dataset. Default: none (images are "
    "corrupted on the fly, identical pixels).",
)
@click.option("--corruptions", default="benchmark", show_default=True,
              help=_corruptions_help + "; 'none' evaluates the clean images only.")  # fmt: skip
@click.option("--severities", default="protocol", show_default=True, help=_severities_help)
@click.option("--no-clean", is_flag=True, help="Skip the clean cell.")
@_limit_option
@click.option(
    "--inference",
    type=click.Choice(["auto", "slide", "whole"]),
    default="auto",
    show_default=True,
    help="auto: the whole image when it fits in --crop, else sliding windows; slide: always "
    "sliding windows (mmseg's slide_inference); whole: the whole image always.",
)
@click.option("--crop", type=SIZE, default="1024", show_default=True,
              help="Sliding-window size, WxH or N for NxN (SegFormer's test crop: 1024).")  # fmt: skip
@click.option("--stride", type=SIZE, default="768", show_default=True,
              help="Sliding-window step, WxH or N; at most --crop.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=2, show_default=True,
              help="Windows (slide) or images (whole) per forward pass.")  # fmt: skip
@_workers_option("min(4, cores) loader processes")
@_device_option
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="Autocast precision of the forward pass (fp16 needs a GPU).",
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
@_out_option("Run directory, e.g. runs/b5 (new, empty, or a run of this command: resumed).")
@click.option("--overwrite", is_flag=True, help="Replace a run of another configuration in --out.")
@click.option(
    "--save-predictions",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Keep the predicted label maps of the first N images of every cell in "
    "OUT/predictions/ (what `report --qualitative` shows; 0: none).",
)
@click.option(
    "--class-map",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='hf:// models: a JSON file {"dataset class": "model label or output index", ...} for '
    "classes the model's labels do not match by name. Default: none (matched by name).",
)
def evaluate_cmd(model, weights, cityscapes_root, split, cityscapes_c, corruptions, severities,
                 no_clean, limit, inference, crop, stride, batch_size, workers, device, precision,
                 seed, backend, out, overwrite, save_predictions, class_map, dataset, data_root,
                 natural) -> None:  # fmt: skip
    """Evaluate a model on clean Cityscapes (or --dataset) and every corruption and severity,
    and on natural-shift sets (--natural) as cells of their own.

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
        progress=_progress(), class_map=class_map, dataset=dataset, data_root=data_root,
        natural=list(natural),
    )  # fmt: skip
    if dist_info()[0] == 0:
        click.echo(format_summary(summary_frame(results)))
        click.echo(f"results: {out}/results.csv, summary: {out}/summary.csv")


def _check_cuda(device: str) -> None:
    """A CUDA device that is not there fails here, in one line, before any work."""
    if device.startswith("cuda"):
        from robustbench_seg.runtime import resolve_device

        resolve_device(device)


@cli.command("make-synthetic-city")
@_out_option("Output dataset root (new, empty, or a synthetic city of the same seed and size).")
@click.option("--train", "n_train", type=click.IntRange(min=0), default=100, show_default=True,
              help="Training images.")  # fmt: skip
@click.option("--val", "n_val", type=click.IntRange(min=0), default=50, show_default=True,
              help="Validation images.")  # fmt: skip
@click.option("--size", type=SIZE, default="1024x512", show_default=True,
              help="Image size, WxH (at least 128x64).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the scenes (same seed, same bytes).")  # fmt: skip
@_workers_option("all cores")
@click.option("--fog", is_flag=True,
              help="Also render every image in fog with Koschmieder's law on the scene's depth "
              "(beta 0.005, 0.01, 0.02), in Foggy Cityscapes' layout: read it with --natural "
              "foggy-cityscapes.")  # fmt: skip
def make_synthetic_city_cmd(out, n_train, n_val, size, seed, workers, fog) -> None:
    """Render procedural street scenes in Cityscapes layout (leftImg8bit + gtFine labelIds).

    Every command reads the result as it reads Cityscapes; the same seed gives the same bytes.

    Example: robustseg make-synthetic-city --out data/synthetic --train 200 --val 50
    """
    from robustbench_seg.data.synthetic import make_synthetic_city

    summary = make_synthetic_city(
        out,
        train=n_train,
        val=n_val,
        size=size,
        seed=seed,
        workers=workers,
        progress=_progress(),
        fog=fog,
    )
    click.echo(summary.line())


@cli.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_out_option("Report folder, e.g. reports/study (new, empty, or a report: replaced).")
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=None,
    help="A run directory to compute corruption degradation (CD, mCD) against, evaluated on "
    "the same images. Default: none (no CD columns).",
)
@click.option(
    "--reference",
    default="segformer-table5",
    show_default=True,
    help="Published rows to include: 'segformer-table5', 'none', or a CSV path.",
)
@click.option(
    "--qualitative",
    type=click.IntRange(min=0),
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
    "--data-root",
    "--cityscapes-root",
    "cityscapes_root",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset root for the qualitative grid (the runs' dataset). Default: the one "
    "recorded in the runs.",
)
@click.option(
    "--erf",
    type=click.Path(path_type=Path),
    default=None,
    help="A `robustseg erf` output folder: adds its ERF grid and statistics. Default: none.",
)
@click.option(
    "--ci",
    is_flag=True,
    help="Add statistics: 95% image-level bootstrap intervals of every figure (Table 5, CD, "
    "severity tables and curves), the paired comparison of each run with the first run (or "
    "--baseline), a calibration table, reliability diagrams and the worst decile of images "
    "per cell. Needs runs with per-image data (re-run evaluate on older runs: it completes them).",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the images (with --ci).",
)
@click.option(
    "--reliability-corruptions",
    default="gaussian_noise,motion_blur,contrast,snow",
    show_default=True,
    help="Corruptions whose severities 1/3/5 get reliability diagrams next to clean (with "
    "--ci; comma-separated, 'none' for clean only; those the runs lack are left out).",
)
def report_cmd(
    runs, out, baseline, reference, qualitative, qualitative_corruptions, cityscapes_root, erf,
    ci, resamples, reliability_corruptions,
) -> None:  # fmt: skip
    """Render paper-style tables and figures from one or more run directories.

    Table 5 (Markdown, LaTeX, CSV, HTML) with the published rows, per-severity tables,
    Figure 7 severity curves, per-class IoU heatmaps, a qualitative grid, index.md/index.html;
    with --ci also intervals, paired comparisons, calibration and the worst images.

    Example: robustseg report runs/b5 runs/r101 --baseline runs/r101 --ci --out reports/study
    """
    import warnings

    from click.core import ParameterSource

    from robustbench_seg.report import ReportWarning, build_report

    ctx = click.get_current_context()

    def given(name: str) -> bool:  # an option --ci would use is refused without it
        return ctx.get_parameter_source(name) is not ParameterSource.DEFAULT

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReportWarning)
        result = build_report(
            runs, out, baseline=baseline, reference=reference, qualitative=qualitative,
            qualitative_corruptions=[c for c in qualitative_corruptions.split(",") if c],
            cityscapes_root=cityscapes_root, erf=erf, progress=_progress(), ci=ci,
            resamples=resamples if given("resamples") else None,
            reliability_corruptions=(
                reliability_corruptions.split(",") if given("reliability_corruptions") else None
            ),
        )  # fmt: skip
    for warning in result.warnings:
        click.echo(f"robustseg: warning: {warning}", err=True)
    click.echo(f"report: {result.index_md} (and {result.index_html.name})")


@cli.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--resamples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples of the images.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the resamples (the same for both runs: paired).")  # fmt: skip
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Family-wise error rate (Holm); intervals at 1 - alpha.")  # fmt: skip
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table here (CSV; an existing file is not replaced). Default: none.")  # fmt: skip
def compare_cmd(run_a, run_b, resamples, seed, alpha, csv_path) -> None:
    """Paired comparison of two runs over the same images, column by column of Table 5.

    Per column (clean, each corruption, mPC, rPC): RUN_A - RUN_B with its bootstrap interval
    and a paired-bootstrap p-value, Holm-corrected over the columns.

    Example: robustseg compare runs/b5 runs/r101
    """
    from robustbench_seg.compare import compare, format_comparison
    from robustbench_seg.errors import RobustSegError
    from robustbench_seg.io import atomic_path

    if csv_path is not None and csv_path.exists():
        raise RobustSegError(f"{csv_path} exists; choose another file (nothing was changed)")
    frame = compare(run_a, run_b, resamples=resamples, seed=seed, alpha=alpha)
    click.echo(format_comparison(frame, run_a.name, run_b.name))
    if csv_path is not None:
        with atomic_path(csv_path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
        click.echo(f"wrote {csv_path}")


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
    help="Weights per --model (one for all, or one each; as evaluate --weights). Default: "
    "the catalog's.",
)
@_root_option(", or use --images")
@_dataset_option
@_data_root_option
@_split_option
@click.option(
    "--images",
    "images_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder of images (PNG/JPEG) instead of Cityscapes. Default: none.",
)
@click.option("--num-images", type=click.IntRange(min=1), default=100, show_default=True,
              help="Images averaged over (a seeded choice).")  # fmt: skip
@click.option("--size", type=SIZE, default="1024x512", show_default=True,
              help="WxH the images are resized to.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the choice of images.")  # fmt: skip
@_device_option
@_out_option("Output folder (new, empty, or an erf output: replaced).")
def erf_cmd(models, weights, cityscapes_root, dataset, data_root, split, images_dir, num_images,
            size, seed, device, out) -> None:  # fmt: skip
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
        images_dir=images_dir, num_images=num_images, size=size, seed=seed,
        device=device, out=out, progress=_progress(), dataset=dataset, data_root=data_root,
    )  # fmt: skip
    click.echo(result.line())


def _recipe(segformer, deeplab) -> str:
    """'Default: the recipe's (SegFormer X, DeepLabV3+ Y)'; tests check the numbers against
    robustbench_seg.engine.recipes.RECIPES (importing it here would load torch for --help)."""
    if segformer == deeplab:
        return f"Default: the recipe's ({segformer})."
    return f"Default: the recipe's (SegFormer {segformer}, DeepLabV3+ {deeplab})."


# Recipe fields behind train's options: (SegFormer, DeepLabV3+) defaults, as shown in --help.
TRAIN_DEFAULTS = {
    "eval_every": (16000, 8000), "iters": (160000, 80000), "batch_size": (8, 8),
    "samples_per_gpu": (1, 2), "crop": ("1024x1024", "1024x512"), "scale": ("2048x1024", "2048x1024"),
    "ratio_range": ("0.5,2.0", "0.5,2.0"), "lr": (6e-5, 0.01), "weight_decay": (0.01, 5e-4),
    "optimizer": ("adamw", "sgd"), "momentum": (0.9, 0.9), "poly_power": (1.0, 0.9),
    "min_lr": (0.0, 1e-4), "warmup_iters": (1500, 0), "head_lr_mult": (10.0, 1.0),
    "aux_weight": (0.0, 0.4), "cat_max_ratio": (0.75, 0.75), "flip_prob": (0.5, 0.5),
    "photometric": ("on", "on"), "freeze_norms": ("off", "off"),
    "checkpoint_every": (16000, 8000), "eval_mode": ("slide", "whole"), "class_weight": ("none", "none"),
}  # fmt: skip


def _r(field: str, text: str) -> str:
    return f"{text} {_recipe(*TRAIN_DEFAULTS[field])}"


def _ratio_range(value: str | None):
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use MIN,MAX (e.g. 0.5,2.0)") from None
    return lo, hi


@cli.command("train")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Architecture: registry name or alias (b0..b5, deeplabv3plus-r50, ...); starting "
    "weights go to --init.",
)
@_root_option(" with train and val splits")
@_dataset_option
@_data_root_option
@_out_option("Run directory, e.g. runs/train-b0 (new or empty; an earlier run with --resume).")
@click.option(
    "--init",
    default="imagenet",
    show_default=True,
    help="'imagenet' (the catalog's <architecture>.imagenet: MiT encoder or mmcls backbone), "
    "another weights tag or catalog id, a checkpoint PATH, URL or hf:// id, or 'none' (random).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out (same configuration).")
@click.option("--eval-every", type=click.IntRange(min=0), default=None,
              help=_r("eval_every", "Validate every N iterations and at the end (0: never)."))  # fmt: skip
@click.option(
    "--precision",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default="fp32",
    show_default=True,
    help="Autocast precision (fp16 with a gradient scaler, GPU only).",
)
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of initialisation, data order and augmentation.")  # fmt: skip
@_device_option
@click.option(
    "--accumulate",
    type=click.IntRange(min=1),
    default=None,
    help="Gradient-accumulation steps per iteration. Default: the per-process batch in "
    "micro-batches of --samples-per-gpu.",
)
@_workers_option("min(4, cores) loader processes per training process")
@click.option("--log-every", type=click.IntRange(min=1), default=50, show_default=True,
              help="Log the mean loss every N iterations.")  # fmt: skip
@click.option(
    "--stop-after",
    type=click.IntRange(min=1),
    default=None,
    help="Stop (with a checkpoint) at this iteration, keeping the schedule of --iters; "
    "continue later with --resume. Default: run to the end.",
)
@click.option("--iters", type=click.IntRange(min=1), default=None,
              help=_r("iters", "Schedule length in iterations."))  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=_r("batch_size", "Global batch (all processes and accumulation steps)."))  # fmt: skip
@click.option("--samples-per-gpu", type=click.IntRange(min=1), default=None,
              help=_r("samples_per_gpu", "Images per process per forward pass."))  # fmt: skip
@click.option("--crop", type=SIZE, default=None,
              help=_r("crop", "Training crop, WxH or N for NxN."))  # fmt: skip
@click.option("--scale", type=SIZE, default=None,
              help=_r("scale", "Base resize scale WxH (mmseg's img_scale: long x short side)."))  # fmt: skip
@click.option("--ratio-range", default=None,
              help=_r("ratio_range", "Random resize ratios MIN,MAX."))  # fmt: skip
@click.option("--lr", type=float, default=None, help=_r("lr", "Base learning rate."))
@click.option("--weight-decay", type=float, default=None,
              help=_r("weight_decay", "Weight decay."))  # fmt: skip
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default=None,
              help=_r("optimizer", "Optimizer."))  # fmt: skip
@click.option("--momentum", type=float, default=None, help=_r("momentum", "SGD momentum."))
@click.option("--poly-power", type=float, default=None,
              help=_r("poly_power", "Exponent of the poly learning-rate schedule."))  # fmt: skip
@click.option("--min-lr", type=float, default=None,
              help=_r("min_lr", "Floor of the poly schedule."))  # fmt: skip
@click.option("--warmup-iters", type=click.IntRange(min=0), default=None,
              help=_r("warmup_iters", "Linear warm-up iterations (0: none)."))  # fmt: skip
@click.option("--head-lr-mult", type=float, default=None,
              help=_r("head_lr_mult", "Learning-rate multiplier of the decode head."))  # fmt: skip
@click.option("--aux-weight", type=float, default=None,
              help=_r("aux_weight", "Auxiliary FCN head loss weight (0: no auxiliary head)."))  # fmt: skip
@click.option(
    "--class-weight",
    default=None,
    help=_r("class_weight", "Cross-entropy class weights: 'enet' (1/ln(1.02 + class "
            "frequency), from the training labels), 'none', or one number per class "
            "(comma-separated)."),
)  # fmt: skip
@click.option("--cat-max-ratio", type=float, default=None,
              help=_r("cat_max_ratio", "Crop retry threshold: the largest share one class may cover."))  # fmt: skip
@click.option("--flip-prob", type=float, default=None,
              help=_r("flip_prob", "Horizontal flip probability."))  # fmt: skip
@click.option("--photometric/--no-photometric", default=None,
              help=_r("photometric", "Photometric distortion (brightness, contrast, saturation, hue)."))  # fmt: skip
@click.option("--freeze-norms", is_flag=True, default=None,
              help=_r("freeze_norms", "Norm layers in eval mode, dropout and drop-path off."))  # fmt: skip
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=None,
              help=_r("checkpoint_every", "Checkpoint every N iterations."))  # fmt: skip
@click.option("--eval-mode", type=click.Choice(["whole", "slide"]), default=None,
              help=_r("eval_mode", "Validation inference."))  # fmt: skip
def train_cmd(model, cityscapes_root, dataset, data_root, out, init, resume, eval_every, precision, seed, device, accumulate,
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
    if scale is not None:
        overrides["scale"] = (scale[1], scale[0])  # (long, short) = (W, H)
    for key, value in (("crop", crop), ("ratio_range", _ratio_range(ratio_range))):
        if value is not None:
            overrides[key] = value
    result = train(
        model, cityscapes_root=cityscapes_root, dataset=dataset, data_root=data_root, out=out,
        init=init, resume=resume,
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
    help="Report folder (new, empty, or an earlier demo: replaced).",
)
@click.option("--images", type=click.IntRange(min=1), default=10, show_default=True,
              help="Synthetic validation images.")  # fmt: skip
@click.option(
    "--size",
    type=SIZE,
    default="512x256",
    show_default=True,
    help="Image size, WxH (the bundled models were trained at 512x256).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="City and corruption seed.")  # fmt: skip
@click.option(
    "--work",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep the generated images and Cityscapes-C here. Default: a temporary folder.",
)
@_workers_option("all cores for rendering and corrupting, at most 2 loader processes")
@click.option("--qualitative", type=click.IntRange(min=0), default=3, show_default=True,
              help="Images in the qualitative grid.")  # fmt: skip
@_device_option
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
        out, images=images, size=size, seed=seed, work=work, workers=workers,
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

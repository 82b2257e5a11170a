"""The ``robustseg`` command line: thin click commands over the library."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from robustbench_seg.errors import USER_ERRORS


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
@click.option("--corruption", "-c", default=None, help="Corruption name (see `robustseg corruptions`).")
@click.option("--severity", "-s", type=int, default=3, show_default=True, help="Severity 1..5.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed (same seed, same pixels).")
@click.option("--backend", type=click.Choice(["fast", "reference"]), default="fast", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the corrupted image here (PNG).")
@click.option("--sheet", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a contact sheet of IMAGE under all 16 Cityscapes-C corruptions.")
@_user_errors
def corrupt_cmd(image, corruption, severity, seed, backend, output, sheet) -> None:
    """Corrupt one IMAGE, or render a contact sheet of all 16 benchmark corruptions."""
    from robustbench_seg.corrupt_tools import contact_sheet, corrupt_file

    if output is None and sheet is None:
        raise click.UsageError("give -o OUT.png (with --corruption) and/or --sheet SHEET.png")
    if output is not None:
        if corruption is None:
            raise click.UsageError("-o needs --corruption NAME")
        corrupt_file(image, corruption, severity, output, seed=seed, backend=backend)
        click.echo(f"wrote {output}")
    if sheet is not None:
        contact_sheet(image, severity, sheet, seed=seed, backend=backend)
        click.echo(f"wrote {sheet}")


@cli.command("make-cityscapes-c")
@click.option("--cityscapes-root", type=click.Path(path_type=Path), default=None,
              help="Cityscapes root (with leftImg8bit/ and gtFine/). Default: $CITYSCAPES_DATASET.")
@click.option("--split", default="val", show_default=True, help="Split to corrupt.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output folder for the Cityscapes-C tree.")
@click.option("--corruptions", default="benchmark", show_default=True,
              help="'benchmark' (the 16), a category (noise, blur, digital, weather), 'all', "
              "'extra', or comma-separated names.")
@click.option("--severities", default="protocol", show_default=True,
              help="'protocol' (1-3 for the noises, 1-5 otherwise: 72 variants), 'all' (1-5), "
              "or a list such as '1,3,5' or '1-3'.")
@click.option("--seed", type=int, default=0, show_default=True, help="Base seed.")
@click.option("--workers", type=int, default=None, help="Processes. Default: all cores.")
@click.option("--limit", type=int, default=None, help="Only the first N images (sorted).")
@click.option("--backend", type=click.Choice(["fast", "reference"]), default="fast",
              show_default=True, help="fast (ours) or reference (imagecorruptions).")
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
        progress=not os.environ.get("ROBUSTSEG_NO_PROGRESS"),
    )  # fmt: skip
    click.echo(f"{summary.images} images x {summary.variants} variants: {summary.line()}")
    for image_id, err in summary.failed:
        click.echo(f"  failed: {image_id}: {err}", err=True)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="robustseg")


if __name__ == "__main__":
    main()

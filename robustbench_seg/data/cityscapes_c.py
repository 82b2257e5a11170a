"""Cityscapes-C generation (Kamann & Rother 2020, as used by SegFormer Table 5).

Layout: ``<out>/<corruption>/<severity>/leftImg8bit/<split>/<city>/<same file name>``, one
``gtFine`` symlink per variant folder pointing back to the dataset's (labels are never copied),
except for a geometric corruption (``elastic_transform``): it moves the labels with the pixels,
so its variant folders hold their moved label maps at the dataset's paths instead.
``manifest.csv`` (one row per written file: path, sha256, seed, ...) and ``metadata.json``.
Every file is written under a temporary name and renamed; finished files are journaled as they
land, so a run killed at any point resumes where it stopped, and the same seed gives the same
bytes whatever the worker count, order or interruptions.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from corruptions import corrupt, corrupt_pair, get_corruption, make_protocol
from corruptions.protocol import Protocol, variant_seed_sequence
from corruptions.registry import BACKENDS
from robustbench_seg.data.datasets import get_dataset
from robustbench_seg.data.images import check_image_file, read_label, read_rgb
from robustbench_seg.data.pairs import (
    IGNORE_INDEX,
    ImageEntry,
    Pair,
    label_rel_path,
    load_label,
    stored_ignore,
)
from robustbench_seg.data.png import write_png_atomic
from robustbench_seg.errors import RobustSegError, SystemFailure, error_line
from robustbench_seg.io import (
    atomic_path,
    check_dir,
    claim_dir,
    cpu_info,
    open_append,
    package_versions,
    sha256_file,
    write_json_atomic,
)
from robustbench_seg.procs import check_workers, run_pool
from robustbench_seg.progress import Progress

MANIFEST = "manifest.csv"
JOURNAL_GLOB = ".manifest.journal.*.csv"  # one per writing process, appended per file
METADATA = "metadata.json"
# Recorded in metadata.json: how the pixels were finished. Trees without it were made by an
# earlier robustseg that rounded (imagecorruptions truncates) and are refused.
PIXELS = "imagecorruptions arithmetic: clip, then truncate (np.uint8)"
MANIFEST_FIELDS = ("path", "image_id", "corruption", "severity", "seed", "sha256", "bytes")
# Measured PNG size / raw size over the 72 variants of Cityscapes images with our encoder is
# ~0.45 (noise variants ~0.9, blurs ~0.25); 0.6 leaves headroom for the disk-space check.
EST_PNG_RATIO = 0.6
# Recorded in metadata.json: what determines the bytes of the generated files.
_VERSIONED = ("robustseg", "numpy", "opencv-python-headless", "scipy", "scikit-image", "numba",
              "imagecorruptions-imaug", "isal", "pillow")  # fmt: skip


@dataclass
class GenerationSummary:
    """What a run did."""

    out: Path
    images: int
    variants: int
    written: int = 0
    labels_written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        moved = f", {self.labels_written} moved label maps" if self.labels_written else ""
        return (
            f"written {self.written}{moved}, skipped {self.skipped} (already done), "
            f"failed {len(self.failed)} image(s); {self.seconds:.1f} s, "
            f"{self.bytes_written / 1e6:.1f} MB written -> {self.out}"
        )


def variant_path(out: Path, corruption: str, severity: int, image: ImageEntry) -> Path:
    """Where one variant of ``image`` lives in a corrupted tree: the image's path relative to
    its dataset root under ``<corruption>/<severity>/``, as PNG (a JPEG source keeps its name
    with the suffix ``.png``: the variants are stored losslessly)."""
    rel = Path(image.rel_path)
    if rel.suffix.lower() != ".png":
        rel = rel.with_suffix(".png")
    return out / corruption / str(severity) / rel


def variant_label_path(out: Path, corruption: str, severity: int, pair: Pair) -> Path:
    """Where a geometric corruption's variant keeps the label map it moved: the label's path
    relative to its dataset root under ``<corruption>/<severity>/``, in the dataset's encoding
    (so that the variant folder is a dataset root of its own)."""
    return out / corruption / str(severity) / label_rel_path(pair)


def _variant_files(out: Path, corruption: str, severity: int, image: ImageEntry,
                   pair: Pair | None) -> list[Path]:  # fmt: skip
    """The files of one variant: its image, and for a geometric corruption its label map."""
    files = [variant_path(out, corruption, severity, image)]
    if get_corruption(corruption).geometric:
        files.append(variant_label_path(out, corruption, severity, pair))
    return files


# ----------------------------------------------------------------------------- manifest


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            # A line cut by a kill mid-write lacks fields or has a short sha256: ignore it.
            if row.get("bytes") and len(row.get("sha256") or "") == 64:
                rows.append(row)
    return rows


def load_manifest(out: Path) -> dict[str, dict]:
    """Rows of ``manifest.csv`` plus the journal of an interrupted run, keyed by path."""
    rows = {r["path"]: r for r in _read_rows(out / MANIFEST)}
    for journal in sorted(out.glob(JOURNAL_GLOB)):
        rows.update({r["path"]: r for r in _read_rows(journal)})
    return rows


def _append_journal(out: Path, row: dict) -> None:
    path = out / f".manifest.journal.{os.getpid()}.csv"
    new = not path.exists()
    with open_append(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _write_manifest(out: Path, rows: dict[str, dict]) -> None:
    with atomic_path(out / MANIFEST) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for key in sorted(rows):
            writer.writerow({k: rows[key][k] for k in MANIFEST_FIELDS})


# ----------------------------------------------------------------------------- worker


@dataclass(frozen=True)
class _Job:
    image: ImageEntry
    variants: tuple[tuple[str, int], ...]
    known: dict  # path -> sha256 from the manifest, for the variants of this image
    out: Path
    seed: int
    backend: str
    pair: Pair | None = None  # the image with its label, for geometric corruptions


def _done(job: _Job, path: Path) -> bool:
    sha = job.known.get(path.relative_to(job.out).as_posix())
    return sha is not None and path.exists() and sha256_file(path) == sha


def _process_image(job: _Job) -> tuple[str, list[dict], int, int, str | None]:
    """Make the missing variants of one image. Returns (image id, new manifest rows, number of
    label maps among them, number of variants skipped, error or None)."""
    todo = []
    skipped = 0
    for corruption, severity in job.variants:
        files = _variant_files(job.out, corruption, severity, job.image, job.pair)
        wanted = [not _done(job, path) for path in files]
        if any(wanted):
            todo.append((corruption, severity, files, wanted))
        else:
            skipped += 1
    if not todo:
        return job.image.image_id, [], 0, skipped, None
    try:
        image = read_rgb(job.image.path)
        label = read_label(job.pair.label_path) if any(len(t[2]) > 1 for t in todo) else None
        for _, _, files, _ in todo:
            _check_no_link(job.out, files[1:])
    except RobustSegError as exc:
        return job.image.image_id, [], 0, skipped, str(exc)
    rows, labels = [], 0
    for corruption, severity, files, wanted in todo:
        rng = np.random.default_rng(
            variant_seed_sequence(job.seed, job.image.image_id, corruption, severity)
        )
        if len(files) > 1:  # moved in the dataset's encoding: its ignore value where outside
            outputs = corrupt_pair(image, label, corruption, severity, rng, backend=job.backend,
                                   ignore_index=stored_ignore(job.pair.label_map))  # fmt: skip
        else:
            outputs = (corrupt(image, corruption, severity, rng, backend=job.backend),)
        for k, (path, array, want) in enumerate(zip(files, outputs, wanted, strict=True)):
            if not want:
                continue
            sha, nbytes = write_png_atomic(path, array)
            row = {
                "path": path.relative_to(job.out).as_posix(), "image_id": job.image.image_id,
                "corruption": corruption, "severity": severity, "seed": job.seed, "sha256": sha,
                "bytes": nbytes,
            }  # fmt: skip
            _append_journal(job.out, row)  # after the rename: a journaled file is complete
            rows.append(row)
            labels += k > 0
    return job.image.image_id, rows, labels, skipped, None


def _check_no_link(out: Path, files: list[Path]) -> None:
    """Refuses to write a moved label map through a symlink (the link to the dataset's labels
    an earlier tree holds there): it would overwrite the dataset's own label."""
    for path in files:
        for folder in path.relative_to(out).parents:
            if folder != Path(".") and (out / folder).is_symlink():
                raise RobustSegError(f"{out / folder} is a link; a moved label map goes there")


# ----------------------------------------------------------------------------- checks


def _is_inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def _check_metadata(out: Path, seed: int, backend: str, split: str,
                    dataset: str = "cityscapes") -> dict | None:  # fmt: skip
    meta_path = out / METADATA
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        raise RobustSegError(f"{meta_path} is unreadable; use a new --out") from None
    _check_origin(meta, out, dataset, "use a new --out (nothing was changed)")
    for key, value in (("seed", seed), ("backend", backend), ("split", split)):
        if meta.get(key) != value:
            raise RobustSegError(
                f"{out} was made with {key}={meta.get(key)!r}, not {value!r}; "
                "use a new --out (nothing was changed)"
            )
    return meta


def _check_origin(meta: dict, tree: Path, dataset: str, hint: str) -> None:
    """Refuses a tree made with the rounding arithmetic, or from another dataset (``hint``
    says what to do)."""
    _check_arithmetic(meta, tree)
    made_from = meta.get("source_dataset", "cityscapes")
    if made_from != dataset:
        raise RobustSegError(f"{tree} is a corrupted {made_from}, not {dataset}; {hint}")


def _check_arithmetic(meta: dict, tree: Path) -> None:
    """Refuses a tree made before the pixels were imagecorruptions' (rounded, not truncated)."""
    if meta.get("pixels") != PIXELS:
        raise RobustSegError(
            f"{tree} was made by an earlier robustseg whose corruptions rounded pixels where "
            "imagecorruptions truncates; its images are not the protocol's: make a new tree "
            "with make-cityscapes-c into a new --out"
        )


def _check_sources(meta: dict, sources: dict[str, str], tree: Path, root: Path) -> None:
    """Refuses images whose source file differs from the one the tree was made from."""
    made_from = meta.get("sources") or {}
    for rel, sha in sources.items():
        if rel in made_from and made_from[rel] != sha:
            raise RobustSegError(
                f"{tree} was made from another {rel} than the one in {root} (made from "
                f"{meta.get('cityscapes_root')}); use the dataset it was made from, or a new tree"
            )


TREE_KINDS = ("cityscapes-c", "corrupted")  # metadata.json "dataset": Cityscapes-C, others


def _is_tree(out: Path) -> bool:
    """A corrupted tree of ours from before output folders were marked."""
    try:
        return json.loads((out / METADATA).read_text()).get("dataset") in TREE_KINDS
    except (OSError, ValueError, AttributeError):
        return False


def _remove_stale_tmp(out: Path) -> None:
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                Path(dirpath, name).unlink(missing_ok=True)


def _link_labels(out: Path, root: Path, protocol: Protocol, folders: tuple[str, ...]) -> None:
    """In every variant folder a symlink to each of the dataset's label folders (``gtFine``,
    ``annotations``, ...), so that each is a dataset root of its own; a geometric corruption's
    folders hold their moved label maps instead (the link an earlier tree made there goes)."""
    for name in folders:
        target = (root / name).resolve()
        for corruption, severity in protocol.variants():
            link = out / corruption / str(severity) / name
            if get_corruption(corruption).geometric:
                if link.is_symlink():
                    link.unlink()
                continue
            if not target.is_dir() or link.is_symlink() or link.exists():
                continue
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target, target_is_directory=True)
            except OSError:  # no symlinks here (e.g. Windows without privileges): metadata says
                return


def _tree_pairs(data, root: Path, split: str, protocol: Protocol) -> list[Pair] | None:
    """The split's images with their labels, whose every label map is decoded before anything
    is written; ``None`` for Cityscapes' image list (its test split has no labels) when no
    corruption of ``protocol`` moves the labels."""
    moving = [c for c in protocol.corruptions if get_corruption(c).geometric]
    if data.image_lister is not None and not moving:
        return None
    try:
        return data.pairs(root, split)
    except RobustSegError as exc:
        if data.image_lister is None:
            raise
        raise RobustSegError(f"{exc} ({', '.join(moving)} moves the labels too)") from None


# ----------------------------------------------------------------------------- entry point


def generate_cityscapes_c(
    cityscapes_root: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    corruptions: str = "benchmark",
    severities: str = "protocol",
    seed: int = 0,
    workers: int | None = None,
    limit: int | None = None,
    backend: str = "fast",
    skip_bad: bool = False,
    progress: bool = True,
    on_image: Callable[[str], None] | None = None,
    dataset: str = "cityscapes",
) -> GenerationSummary:
    """Generate Cityscapes-C from a Cityscapes root, or the same corrupted tree of any
    registered dataset (``robustseg make-corrupted``: ADE20K-C, ...).

    Args:
        cityscapes_root: dataset root (``None``: the dataset's environment variable,
            ``$CITYSCAPES_DATASET`` for Cityscapes).
        out: output folder (created; must not be inside the dataset's image or label folders).
        split: the split to corrupt (default: the dataset's evaluation split, ``val``).
        corruptions: ``benchmark``, a category, ``all``, or comma-separated names.
        severities: ``protocol`` (1-3 noises, 1-5 others), ``all``, or a list like ``1,3,5``.
        seed: base seed of the seeding rule (corruptions.protocol.variant_seed_sequence).
        workers: worker processes (default: all cores; 0: in this process).
        limit: only the first N images (sorted by id).
        backend: ``fast`` or ``reference``.
        skip_bad: record unreadable images as failed and go on, instead of stopping.
        progress: show a progress bar.
        on_image: called with each finished image id (tests use it).
        dataset: the dataset's registry name (``robustbench_seg.data.datasets``).

    Returns:
        A GenerationSummary.

    Raises:
        RobustSegError / CorruptionError: bad input (before anything is written), or an
        unreadable image without ``skip_bad``.
    """
    t0 = time.perf_counter()
    data = get_dataset(dataset)
    root = data.resolve_root(cityscapes_root, option="--data-root" if dataset != "cityscapes"
                             else "--cityscapes-root")  # fmt: skip
    out = Path(out).expanduser()
    if backend not in BACKENDS:
        raise RobustSegError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    protocol = make_protocol(corruptions, severities)
    if limit is not None and limit < 1:
        raise RobustSegError(f"--limit must be >= 1, got {limit}")
    workers = check_workers(workers, os.cpu_count() or 1)
    split = split or data.default_split
    pairs = _tree_pairs(data, root, split, protocol)
    images = [p.image for p in pairs] if pairs is not None else data.images(root, split)
    labelled = {p.image_id: p for p in pairs or ()}
    # the folders of the dataset's images and labels (leftImg8bit/ and gtFine/, images/ ...)
    inner = {Path(im.rel_path).parts[0] for im in images[:1]} | set(data.tree_labels)
    if (
        any(_is_inside(out, root / name) for name in inner)
        or _is_inside(root, out)
        or out.resolve() == root.resolve()
    ):
        raise RobustSegError(f"--out {out} must not be inside the dataset {root} (or contain it)")
    if limit is not None:
        images = images[:limit]

    # Check every input PNG is complete and 8-bit, and decode every label map, before anything
    # is written; the image's sha256 goes into metadata.json, so that evaluate can tell the
    # tree was made from the same dataset.
    bad: list[tuple[str, str]] = []
    shapes = []
    sources: dict[str, str] = {}
    bar = Progress(len(images), "checking inputs", unit="img", enabled=progress, summary=False)
    for image in images:
        try:
            shape, sources[image.rel_path] = check_image_file(image.path, digest=True)
            if image.image_id in labelled:
                load_label(labelled[image.image_id], shape)
            shapes.append(shape)
        except (RobustSegError, OSError) as exc:
            if not skip_bad:
                if isinstance(exc, OSError):
                    raise
                raise RobustSegError(f"{exc} (use --skip-bad to go on without it)") from None
            bad.append((image.image_id, error_line(exc)[0]))
        bar.update()
    bar.close()
    bad_ids = {b[0] for b in bad}
    images = [im for im in images if im.image_id not in bad_ids]
    if not images:
        raise RobustSegError("no readable images left to corrupt")

    check_dir(out, "cityscapes-c", recognise=_is_tree)  # before anything is read from it
    lock = None
    try:
        previous_meta = _check_metadata(out, seed, backend, split, data.name)
        if previous_meta:
            _check_sources(previous_meta, sources, out, root)
        variants = protocol.variants()
        known = load_manifest(out) if out.exists() else {}

        # Disk space: estimate what is still to be written.
        pixels = sum(h * w for h, w in shapes) / max(len(shapes), 1)
        rel_paths = {
            im.image_id: [
                path.relative_to(out).as_posix()
                for c, s in variants
                for path in _variant_files(out, c, s, im, labelled.get(im.image_id))
            ]
            for im in images
        }
        todo_files = sum(p not in known for paths in rel_paths.values() for p in paths)
        need = int(todo_files * pixels * 3 * EST_PNG_RATIO)
        created = not out.exists()
        lock = claim_dir(out, "cityscapes-c", recognise=_is_tree)  # fails if it cannot be made
        free = _free_bytes(out)
        if need > free:
            if created:  # leave nothing behind
                lock.release()
                lock = None
                shutil.rmtree(out, ignore_errors=True)
            raise SystemFailure(
                f"not enough disk space in {out}: about {need / 1e9:.1f} GB needed, "
                f"{free / 1e9:.1f} GB free"
            )
        _remove_stale_tmp(out)
        meta = {
            "dataset": "cityscapes-c" if data.name == "cityscapes" else "corrupted",
            "source_dataset": data.name,
            "cityscapes_root": str(root.resolve()),
            "split": split,
            "seed": seed,
            "backend": backend,
            "protocol": protocol.to_dict(),
            "seeding": "SeedSequence([seed, blake2b64(image_id), corruption_index, severity])",
            "labels": "not copied: each <corruption>/<severity>/<label folder> links to the "
            f"dataset's ({', '.join(data.tree_labels)}); a geometric corruption's variant folder "
            "holds its moved label maps there instead (same paths, the dataset's encoding)",
            "versions": package_versions(_VERSIONED),
            "cpu": cpu_info(),
            "images": [im.rel_path for im in images],
            "pixels": PIXELS,
            "sources": sources,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if previous_meta:  # a re-run may add corruptions, severities or images: keep the union
            prev_sev = previous_meta.get("protocol", {}).get("severities", {})
            merged = {k: sorted(set(v) | set(meta["protocol"]["severities"].get(k, [])))
                      for k, v in prev_sev.items()}  # fmt: skip
            for k, v in meta["protocol"]["severities"].items():
                merged.setdefault(k, v)
            if merged != meta["protocol"]["severities"]:
                meta["protocol"] = {"name": "custom", "severities": merged}
            meta["images"] = sorted(set(previous_meta.get("images", [])) | set(meta["images"]))
            meta["sources"] = {**previous_meta.get("sources", {}), **sources}
            meta["created"] = previous_meta.get("created", meta["created"])
            meta["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json_atomic(out / METADATA, meta)
        _link_labels(out, root, protocol, data.tree_labels)

        summary = GenerationSummary(out=out, images=len(images), variants=len(variants))
        summary.failed.extend(bad)
        jobs = []
        for image in images:
            paths = rel_paths[image.image_id]
            jobs.append(_Job(image, tuple(variants), {p: known[p]["sha256"] for p in paths if p in known},
                             out, seed, backend, labelled.get(image.image_id)))  # fmt: skip

        bar = Progress(len(jobs), "cityscapes-c", unit="img", enabled=progress)
        error: str | None = None
        try:
            for image_id, rows, labels, skipped, err in run_pool(_process_image, jobs, workers):
                for row in rows:
                    known[row["path"]] = row
                    summary.bytes_written += int(row["bytes"])
                summary.written += len(rows) - labels
                summary.labels_written += labels
                summary.skipped += skipped
                if err is not None:
                    summary.failed.append((image_id, err))
                    if not skip_bad:
                        error = err
                        break
                bar.update(1)
                bar.set_postfix(written=summary.written, skipped=summary.skipped, refresh=False)
                if on_image is not None:
                    on_image(image_id)
        finally:
            bar.close()
            known.update(load_manifest(out))  # rows journaled by workers of an interrupted pool
            _write_manifest(out, known)
            for journal in out.glob(JOURNAL_GLOB):
                journal.unlink()
        if error is not None:
            raise RobustSegError(f"{error} (use --skip-bad to go on without it)")
        if summary.failed:
            meta["failed"] = [{"image": i, "error": e} for i, e in summary.failed]
            write_json_atomic(out / METADATA, meta)
        summary.seconds = time.perf_counter() - t0
    finally:
        if lock is not None:
            lock.release()
    return summary


# ----------------------------------------------------------------------------- views


class CellView:
    """The images of one cell (clean, or one corruption x severity) with their labels.

    Reads a generated Cityscapes-C tree when ``cityscapes_c`` is given, else corrupts on the fly
    with the same seeding rule (identical pixels either way). A geometric corruption's labels
    move with its pixels: on the fly by ``corrupt_pair``, from a tree its own moved label maps
    (identical either way). Picklable, so DataLoader workers can corrupt in parallel. Items:
    ``(index, image uint8 HxWx3 RGB, trainIds uint8 HxW)``.
    """

    def __init__(self, pairs, corruption: str | None = None, severity: int | None = None, *,
                 cityscapes_c: str | os.PathLike | None = None, seed: int = 0,
                 backend: str = "fast") -> None:  # fmt: skip
        self.pairs = list(pairs)
        self.corruption, self.severity = corruption, severity
        self.tree = Path(cityscapes_c) if cityscapes_c is not None else None
        self.seed, self.backend = seed, backend

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, i: int) -> np.ndarray:
        pair = self.pairs[i]
        if self.corruption is None:
            return read_rgb(pair.image.path)
        if self.tree is not None:
            path = variant_path(self.tree, self.corruption, self.severity, pair.image)
            if not path.is_file():
                raise RobustSegError(
                    f"{path} is missing from the Cityscapes-C tree; run robustseg make-cityscapes-c "
                    f"--out {self.tree} (it resumes) or drop --cityscapes-c to corrupt on the fly"
                )
            return read_rgb(path)
        ss = variant_seed_sequence(self.seed, pair.image_id, self.corruption, self.severity)
        clean = read_rgb(pair.image.path)
        return corrupt(clean, self.corruption, self.severity, np.random.default_rng(ss),
                       backend=self.backend)  # fmt: skip

    def __getitem__(self, i: int):
        pair = self.pairs[i]
        moves = self.corruption is not None and get_corruption(self.corruption).geometric
        if moves and self.tree is None:  # the label map moves with the pixels, on the fly
            clean = read_rgb(pair.image.path)
            ss = variant_seed_sequence(self.seed, pair.image_id, self.corruption, self.severity)
            image, label = corrupt_pair(clean, load_label(pair, clean.shape[:2]), self.corruption,
                                        self.severity, np.random.default_rng(ss),
                                        backend=self.backend, ignore_index=IGNORE_INDEX)  # fmt: skip
            return i, image, label
        image = self.image(i)
        if moves:  # the tree's own moved label map
            path = variant_label_path(self.tree, self.corruption, self.severity, pair)
            if not path.is_file():
                raise RobustSegError(
                    f"{path} is missing from the corrupted tree; re-run make-cityscapes-c / "
                    f"make-corrupted --out {self.tree} (it resumes)"
                )
            pair = Pair(pair.image, path, pair.label_map)
        return i, image, load_label(pair, image.shape[:2])


def _check_moved_label(tree: Path, corruption: str, severity: int, pair: Pair, written: dict,
                       resume: str) -> None:  # fmt: skip
    """Refuses a geometric variant without the moved label map it made (a tree from before
    labels moved holds a link to the dataset's unmoved labels there)."""
    path = variant_label_path(tree, corruption, severity, pair)
    if path.relative_to(tree).as_posix() not in written or not path.is_file():
        raise RobustSegError(
            f"{path} is not the moved label map of {corruption} (a tree made before robustseg "
            f"moved the labels of geometric corruptions); {resume}"
        )


def tree_settings(cityscapes_c: str | os.PathLike) -> dict:
    """``metadata.json`` of a generated tree (seed, backend, protocol); RobustSegError if absent."""
    path = Path(cityscapes_c) / METADATA
    if not Path(cityscapes_c).is_dir():
        raise RobustSegError(f"--cityscapes-c {cityscapes_c} does not exist or is not a directory")
    if not path.is_file():
        raise RobustSegError(f"{cityscapes_c} is not a Cityscapes-C tree (no {METADATA})")
    try:
        meta = json.loads(path.read_text())
    except ValueError:
        raise RobustSegError(
            f"{path} is not valid JSON; is {cityscapes_c} a Cityscapes-C tree?"
        ) from None
    if not isinstance(meta, dict) or meta.get("dataset") not in TREE_KINDS:
        raise RobustSegError(
            f"{cityscapes_c} is not a Cityscapes-C tree ({METADATA} says otherwise)"
        )
    return meta


def check_tree(
    cityscapes_c: str | os.PathLike,
    pairs: list,
    variants: list[tuple[str, int]],
    *,
    split: str,
    root: Path,
    progress: bool = False,
    dataset: str = "cityscapes",
    digests: dict[str, str] | None = None,
) -> dict:
    """Checks a Cityscapes-C tree before any work: made with imagecorruptions' arithmetic, of
    ``split``, from these very images (each source file's sha256 against ``metadata.json``),
    and holding every variant of ``variants`` for every pair (and for a geometric corruption
    the moved label map it wrote, in its manifest). Returns its metadata.
    ``digests`` (relative path -> sha256, as ``check_pairs`` fills it) spares reading the
    images again.

    Raises:
        RobustSegError: The first mismatch or missing file, with what to do.
    """
    tree = Path(cityscapes_c)
    meta = tree_settings(tree)
    _check_origin(meta, tree, dataset, "pass the tree made from this dataset")
    if meta.get("split") != split:
        raise RobustSegError(f"{tree} was made from the {meta.get('split')!r} split, not {split!r}")
    made_from = meta.get("sources") or {}
    command = (f"make-cityscapes-c --cityscapes-root {root}" if dataset == "cityscapes"
               else f"make-corrupted --dataset {dataset} --data-root {root}")  # fmt: skip
    resume = f"run robustseg {command} --out {tree} (it resumes)"
    moving = {c for c, _ in variants if get_corruption(c).geometric}
    written = load_manifest(tree) if moving else {}
    with Progress(
        len(pairs), "checking the corrupted tree", unit="img", enabled=progress, summary=False
    ) as bar:
        for pair in pairs:
            rel = pair.image.rel_path
            if rel not in made_from:
                raise RobustSegError(f"{tree} does not cover {rel}; {resume}, or use --limit")
            sha = digests[rel] if digests and rel in digests else sha256_file(pair.image.path)
            _check_sources(meta, {rel: sha}, tree, root)
            for corruption, severity in variants:
                path = variant_path(tree, corruption, severity, pair.image)
                if not path.is_file():
                    raise RobustSegError(
                        f"{path} is missing from the Cityscapes-C tree; {resume}, or drop "
                        "--cityscapes-c to corrupt on the fly"
                    )
                if corruption in moving:
                    _check_moved_label(tree, corruption, severity, pair, written, resume)
            bar.update()
    return meta

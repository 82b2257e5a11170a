"""The benchmark runner: a model on clean Cityscapes and every Cityscapes-C cell (SegFormer Table 5).

The run directory's files are described in ``robustbench_seg.runs``. Re-running with the same
``out`` skips finished cells when the configuration hash matches (the configuration includes the
sha256 of the model's weights, the model contract and the images' content). Under ``torchrun``
ranks take disjoint image shards and all-reduce the measures' states
(``robustbench_seg.results.measures``); rank 0 writes.

``evaluate`` orchestrates: options (:class:`DataOptions`, :class:`CellOptions`,
:class:`InferenceOptions`, :class:`OutputOptions`) -> checked inputs -> model -> the cells'
plan and configuration -> resume -> the loader (:class:`_Runner`) -> tables.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from corruptions import make_protocol
from robustbench_seg import runs, runtime
from robustbench_seg.data.cityscapes_c import CellView, check_tree
from robustbench_seg.data.datasets import Dataset, NaturalSet, get_dataset, parse_natural
from robustbench_seg.data.pairs import check_pairs, images_sha256
from robustbench_seg.engine.scoring import Segmenter
from robustbench_seg.errors import RobustSegError
from robustbench_seg.io import package_versions
from robustbench_seg.models.loader import is_custom_spec, load
from robustbench_seg.models.registry import Preprocessing, get_model_entry
from robustbench_seg.models.weights import is_hf_spec
from robustbench_seg.progress import Progress
from robustbench_seg.results import measures
from robustbench_seg.results.cells import cell_name
from robustbench_seg.sizes import format_size, hw, size_value

__all__ = [
    "DEFAULT_SAVED_PREDICTIONS", "CellOptions", "DataOptions", "EvalConfig", "InferenceOptions",
    "OutputOptions", "evaluate",
]  # fmt: skip

_VERSIONED = ("robustseg", "torch", "numpy", "opencv-python-headless", "imagecorruptions-imaug")
# Predicted maps kept per cell by default: what the report's qualitative grid shows (demo: 3).
DEFAULT_SAVED_PREDICTIONS = 3


@dataclass
class EvalConfig:
    """Everything that determines a run's numbers (hashed for resume): among them the model
    contract (``contract``: every ``Preprocessing`` field, the channels the model returns and,
    for an ``hf://`` model, the class map in effect) and the images' content
    (``images_content_sha256``: ``runs.content_sha256`` of their ids and sha256s)."""

    model: str
    weights: str | None
    weights_sha256: str | None
    num_classes: int
    cityscapes_root: str
    split: str
    images_sha256: str
    num_images: int
    cells: list[str]
    seed: int
    backend: str
    cityscapes_c: str | None
    inference: str
    crop: int | list[int]
    stride: int | list[int]
    precision: str
    contract: dict
    images_content_sha256: str
    dataset: str = "cityscapes"
    natural: list[dict] = field(default_factory=list)  # cell, dataset, condition, root, images

    def digest(self) -> str:
        """The configuration hash (``runtime.config_hash``); the fields added with datasets
        other than Cityscapes count only when they differ from their defaults, so that runs
        from before them keep their hash."""
        config = dict(self.__dict__)
        for key, default in (("dataset", "cityscapes"), ("natural", [])):
            if config[key] == default:
                del config[key]
        return runtime.config_hash(config)


@dataclass
class _Cell:
    name: str
    corruption: str | None
    severity: int | None
    pairs: list = field(default_factory=list)  # the cell's images (the dataset's, or natural)
    natural: NaturalSet | None = None
    done: bool = False
    state: dict[str, dict[str, torch.Tensor]] | None = None  # the measures', on the device
    seen: int = 0
    saved: list[tuple[int, np.ndarray]] = field(default_factory=list)


@dataclass
class _Items(torch.utils.data.Dataset):
    """All (cell, image) items still to do, cell-major; workers corrupt on the fly."""

    views: list[CellView]
    items: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.items = [(k, i) for k, view in enumerate(self.views) for i in range(len(view))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int):
        k, i = self.items[j]
        _, image, label = self.views[k][i]
        return k, i, image, label

    def batches(self, size: int) -> list[list[int]]:
        """Batches of at most ``size`` items, each within one cell: an image is measured with
        the same batch neighbours whether or not the cells before it ran in this process (a
        resumed run), so that its cell's float sums are bit-identical to an uninterrupted run's."""
        out: list[list[int]] = []
        for j, (k, i) in enumerate(self.items):
            if i % size == 0 or self.items[j - 1][0] != k:
                out.append([])
            out[-1].append(j)
        return out


def _natural_sets(specs: Sequence[str], data: Dataset, root: Path, class_names: Sequence[str],
                  limit: int | None) -> list[NaturalSet]:  # fmt: skip
    """The ``--natural`` sets, each with the evaluated dataset's classes."""
    defaults = {"foggy-cityscapes": root} if data.name == "cityscapes" else {}
    sets: list[NaturalSet] = []
    for spec in specs:
        for n in parse_natural(spec, default_roots=defaults):
            if tuple(n.dataset.classes(n.root)) != tuple(class_names):
                raise RobustSegError(
                    f"--natural {spec}: {n.dataset.name}'s classes are not {data.name}'s; natural "
                    "sets are scored with the evaluated dataset's classes"
                )
            if any(n.cell == s.cell for s in sets):
                raise RobustSegError(f"--natural names {n.cell} twice")
            if limit is not None:
                n = NaturalSet(n.cell, n.dataset, n.condition, n.root, n.pairs[:limit])
            sets.append(n)
    return sets


def _natural_config(n: NaturalSet, digests: dict[str, str]) -> dict:
    return {"cell": n.cell, "dataset": n.dataset.name, "condition": n.condition,
            "root": str(n.root.resolve()), "images_sha256": images_sha256(n.pairs),
            "num_images": len(n.pairs), "images_content_sha256": runs.content_sha256(
                [p.image_id for p in n.pairs], [digests[p.image.rel_path] for p in n.pairs])}  # fmt: skip


_FLOATS = ("mean", "std", "value_scale")  # recorded as floats, however they were given


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, (np.generic, torch.Tensor)) else value


def _contract(pre: Preprocessing, num_outputs: int, module: nn.Module, hf: bool,
              class_names: Sequence[str]) -> dict:  # fmt: skip
    """The model contract a run records: every ``Preprocessing`` field, the channels the
    module returns and, for an ``hf://`` model, its class map in effect (dataset class ->
    ``[output index, model label]``)."""
    out = {}
    for f in dataclasses.fields(pre):
        value = _plain(getattr(pre, f.name))
        if f.name in _FLOATS:
            value = [float(v) for v in value] if isinstance(value, list) else float(value)
        out[f.name] = value
    out["num_outputs"] = int(num_outputs)
    out["class_map"] = None
    if hf:  # the wrapper selects the dataset's classes itself (models.hf)
        index = [int(i) for i in module.output_classes.tolist()]
        labels = {int(k): str(v) for k, v in module.model.config.id2label.items()}
        out["class_map"] = {c: [i, labels[i]] for c, i in zip(class_names, index, strict=True)}
    return out


def _collate(batch):
    return batch


def _check_settings(precision: str, dev: torch.device, inference: str, batch_size: int,
                    crop: int | Sequence[int], stride: int | Sequence[int],
                    save_predictions: int) -> None:  # fmt: skip
    runtime.check_precision(precision, dev)
    if inference not in ("auto", "slide", "whole"):
        raise RobustSegError(f"unknown inference mode {inference!r}; use auto, slide or whole")
    (ch, cw), (sh, sw) = hw(crop), hw(stride)
    if batch_size < 1 or min(ch, cw, sh, sw) < 1:
        raise RobustSegError("--batch-size, --crop and --stride must be >= 1")
    if inference != "whole" and (sh > ch or sw > cw):
        raise RobustSegError(
            f"--stride {format_size(stride)} is larger than --crop {format_size(crop)}: pixels "
            "between the windows would get no prediction; use a --stride within the --crop"
        )
    if save_predictions < 0:
        raise RobustSegError(f"--save-predictions must be >= 0, got {save_predictions}")


@dataclass(frozen=True)
class DataOptions:
    """Which images: the dataset, its root and split, a generated tree, natural sets."""

    dataset: str = "cityscapes"
    data_root: str | os.PathLike | None = None
    cityscapes_root: str | os.PathLike | None = None
    split: str | None = None
    cityscapes_c: str | os.PathLike | None = None
    limit: int | None = None
    natural: Sequence[str] = ()
    seed: int | None = None
    backend: str | None = None


@dataclass(frozen=True)
class CellOptions:
    """Which cells: the clean one and the protocol's corruptions and severities."""

    corruptions: str | Sequence[str] = "benchmark"
    severities: str | Sequence[int] = "protocol"
    clean: bool = True


@dataclass(frozen=True)
class InferenceOptions:
    """How the model runs: inference mode, windows, batch, workers, device, precision."""

    inference: str = "auto"
    crop: int | Sequence[int] = 1024
    stride: int | Sequence[int] = 768
    batch_size: int = 2
    workers: int | None = None
    device: str = "auto"
    precision: str = "fp32"


@dataclass(frozen=True)
class OutputOptions:
    """What is written: the run folder, saved predictions, progress, statistics."""

    out: str | os.PathLike | None = None
    overwrite: bool = False
    save_predictions: int = DEFAULT_SAVED_PREDICTIONS
    progress: bool = True
    statistics: bool = True


@dataclass
class _Inputs:
    """The checked inputs: the dataset's images (with their sha256s), natural sets, protocol."""

    data: Dataset
    root: Path
    split: str
    pairs: list
    class_names: list[str]
    naturals: list[NaturalSet]
    protocol: object
    digests: dict[str, str]
    natural_digests: list[dict[str, str]]
    seed: int
    backend: str


def _check_options(model, weights, run: InferenceOptions, output: OutputOptions) -> None:
    """What the options alone can refuse, before anything is read."""
    if is_hf_spec(model) and weights != "default":
        raise RobustSegError(
            f"--weights {weights or 'none'} does not apply: {model} brings its own weights "
            "(pick them with @REVISION); drop --weights"
        )
    if isinstance(model, str) and not is_custom_spec(model) and not is_hf_spec(model):
        get_model_entry(model)  # an unknown name fails before anything else is looked at
    dev = runtime.resolve_device(run.device)
    _check_settings(
        run.precision,
        dev,
        run.inference,
        run.batch_size,
        run.crop,
        run.stride,
        output.save_predictions,
    )
    runtime.check_workers(run.workers, runtime.default_workers())  # before the run folder exists


def _read_inputs(d: DataOptions, c: CellOptions, show: bool) -> _Inputs:
    """The dataset, the natural sets and the protocol, every image header and label map
    checked (each image's sha256 from the same read) and a generated tree's seed/backend."""
    data = get_dataset(d.dataset)
    if data.conditions:
        raise RobustSegError(
            f"{data.name} is a natural-shift set: evaluate it next to its source dataset, e.g. "
            f"--dataset cityscapes --natural {data.name}=DIR"
        )
    root = data.root_from_options(d.data_root, d.cityscapes_root)
    split = d.split or data.default_split
    pairs = data.pairs(root, split)
    class_names = data.classes(root)
    if d.limit is not None:
        if d.limit < 1:
            raise RobustSegError(f"--limit must be >= 1, got {d.limit}")
        pairs = pairs[: d.limit]
    naturals = _natural_sets(d.natural, data, root, class_names, d.limit)
    protocol = make_protocol(c.corruptions, c.severities) if c.corruptions else None
    digests: dict[str, str] = {}
    check_pairs(pairs, progress=show, digests=digests)
    natural_digests = [{} for _ in naturals]  # one per set: two roots may share relative paths
    for n, dig in zip(naturals, natural_digests, strict=True):
        check_pairs(n.pairs, progress=show, digests=dig)
    seed, backend = d.seed, d.backend
    if d.cityscapes_c is not None:
        meta = check_tree(
            d.cityscapes_c,
            pairs,
            protocol.variants() if protocol else [],
            split=split,
            root=root,
            progress=show,
            dataset=data.name,
            digests=digests,
        )
        for option, given, made in (
            ("--seed", seed, int(meta["seed"])),
            ("--backend", backend, str(meta["backend"])),
        ):
            if given is not None and given != made:
                raise RobustSegError(
                    f"{option} {given} does not apply: {d.cityscapes_c} was made with {option} "
                    f"{made}, and its images are used as they are; drop {option}"
                )
        seed, backend = int(meta["seed"]), str(meta["backend"])
    return _Inputs(
        data,
        root,
        split,
        pairs,
        class_names,
        naturals,
        protocol,
        digests,
        natural_digests,
        0 if seed is None else int(seed),
        "fast" if backend is None else backend,
    )


def _plan(
    model, loaded, inp: _Inputs, d: DataOptions, c: CellOptions, run: InferenceOptions
) -> tuple[EvalConfig, list[_Cell]]:
    """The run's configuration (hashed for resume) and its cells, in order."""
    specs: list[tuple[str | None, int | None]] = [(None, None)] if c.clean else []
    if inp.protocol is not None:
        specs += inp.protocol.variants()
    if not specs and not inp.naturals:
        raise RobustSegError("nothing to evaluate: no clean cell, no corruptions, no --natural")
    image_ids = [p.image_id for p in inp.pairs]
    image_shas = [inp.digests[p.image.rel_path] for p in inp.pairs]
    config = EvalConfig(
        model=loaded.name,
        weights=loaded.weights,
        weights_sha256=loaded.weights_sha256,
        num_classes=loaded.num_classes,
        cityscapes_root=str(inp.root.resolve()),
        split=inp.split,
        images_sha256=images_sha256(inp.pairs),
        num_images=len(inp.pairs),
        cells=[cell_name(a, s) for a, s in specs] + [n.cell for n in inp.naturals],
        seed=inp.seed,
        backend=inp.backend,
        cityscapes_c=str(Path(d.cityscapes_c).resolve()) if d.cityscapes_c else None,
        inference=run.inference,
        crop=size_value(run.crop),
        stride=size_value(run.stride),
        precision=run.precision,
        contract=_contract(
            loaded.preprocessing,
            loaded.num_outputs,
            loaded.module,
            is_hf_spec(model),
            inp.class_names,
        ),
        images_content_sha256=runs.content_sha256(image_ids, image_shas),
        dataset=inp.data.name,
        natural=[
            _natural_config(n, g) for n, g in zip(inp.naturals, inp.natural_digests, strict=True)
        ],
    )
    cells = [_Cell(cell_name(a, s), a, s, inp.pairs) for a, s in specs]
    cells += [_Cell(n.cell, None, None, n.pairs, n) for n in inp.naturals]
    return config, cells


def _run_info(
    config: EvalConfig,
    inp: _Inputs,
    run: InferenceOptions,
    output: OutputOptions,
    info: runtime.DistInfo,
    started: datetime,
) -> runs.RunInfo:
    """The run's record (``run.json``)."""
    dev = info.device
    return runs.RunInfo(
        config=config.__dict__,
        config_hash=config.digest(),
        settings={
            "batch_size": run.batch_size,
            "workers": run.workers,
            "device": str(dev),
            "world_size": info.world_size,
            "save_predictions": output.save_predictions,
        },
        versions=package_versions(_VERSIONED),
        device=torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or platform.machine(),
        started=started.isoformat(timespec="seconds"),
        image_ids=tuple(p.image_id for p in inp.pairs),
        image_sha256=tuple(inp.digests[p.image.rel_path] for p in inp.pairs),
        class_names=tuple(inp.class_names),
        natural_image_ids={n.cell: tuple(p.image_id for p in n.pairs) for n in inp.naturals},
    )


def _resume(
    cells: Sequence[_Cell], run_dir: Path, digest: str, kept: Sequence[measures.Measure]
) -> dict[str, runs.CellRecord]:
    """The finished cells of this configuration (marked done); a cell lacking a measure's
    arrays (one from before it was kept) is evaluated again."""
    finished: dict[str, runs.CellRecord] = {}
    for cell in cells:
        done = runs.load_cell(run_dir, cell.name, digest)
        if (
            done is not None
            and done.images == len(cell.pairs)
            and measures.has_arrays(kept, done.arrays)
        ):
            cell.done = True
            finished[cell.name] = done
    return finished


@dataclass
class _Runner:
    """Runs the loader over the cells still to do, updates their measures and writes each
    cell when it is complete (reduced over ``torchrun`` ranks; rank 0 writes)."""

    segmenter: Segmenter
    info: runtime.DistInfo
    run_dir: Path
    digest: str
    kept: list[measures.Measure]
    save_predictions: int
    finished: dict[str, runs.CellRecord]

    def run(
        self,
        todo: list[_Cell],
        inp: _Inputs,
        d: DataOptions,
        run: InferenceOptions,
        loaded,
        progress: bool,
    ) -> None:
        for cell in todo:
            cell.state = measures.empty_states(
                self.kept, loaded.num_classes, len(cell.pairs), self.info.device
            )
        bar = Progress(
            sum(len(cell.pairs) for cell in todo),
            f"evaluate {loaded.name}",
            unit="img",
            enabled=progress and self.info.rank == 0,
        )
        try:
            self._loop(todo, inp, d, run, bar)
        finally:
            bar.close()

    def _loop(
        self, todo: list[_Cell], inp: _Inputs, d: DataOptions, run: InferenceOptions, bar: Progress
    ) -> None:
        """The loader over the cells' images; each cell written as soon as it is complete."""
        rank, world = self.info.rank, self.info.world_size
        views = [
            CellView(
                c.pairs[rank::world],
                c.corruption,
                c.severity,
                seed=inp.seed,
                backend=inp.backend,
                cityscapes_c=d.cityscapes_c if c.natural is None else None,
            )
            for c in todo
        ]
        items = _Items(views)
        per_batch = (
            run.batch_size if run.inference == "whole" else 1
        )  # auto may slide: one at a time
        loader = runtime.data_loader(
            items,
            workers=run.workers,
            collate_fn=_collate,
            prefetch_factor=4,
            batch_sampler=items.batches(per_batch),
        )
        next_final = 0
        with torch.inference_mode():
            for batch in loader:
                groups: dict[tuple, list] = {}
                for k, i, image, label in batch:
                    groups.setdefault((k, image.shape), []).append((i, image, label))
                for (k, _shape), group in groups.items():
                    self._measure(todo[k], group)
                    bar.update(len(group) * world)
                    bar.set_postfix_str(todo[k].name, refresh=False)
                while next_final < len(todo) and todo[next_final].seen == len(views[next_final]):
                    self._finalize(todo[next_final])
                    next_final += 1
        while next_final < len(todo):  # a rank with no images still joins every all-reduce
            self._finalize(todo[next_final])
            next_final += 1

    def _measure(self, cell: _Cell, group: list) -> None:
        """Updates a cell's measures with one batch of its images."""
        dev, rank, world = self.info.device, self.info.rank, self.info.world_size
        images = np.stack([g[1] for g in group])
        labels = torch.from_numpy(np.stack([g[2] for g in group])).to(dev)
        rows = [rank + g[0] * world for g in group]  # indices in the whole split
        what = f"{cell.name}, {cell.pairs[rows[0]].image_id}"
        b = self.segmenter.batch(images, labels, torch.tensor(rows, device=dev), what)
        for measure in self.kept:
            measure.update(cell.state[measure.name], b)
        cell.seen += len(group)
        for j, p in zip(rows, b.pred, strict=True):
            if j < self.save_predictions:
                cell.saved.append((j, p.to(torch.uint8).cpu().numpy()))

    def _finalize(self, cell: _Cell) -> None:
        """Reduces a complete cell over the ranks and writes it (rank 0)."""
        info = self.info
        images = runtime.all_reduce_sum(torch.tensor(cell.seen, device=info.device), info)
        arrays = measures.state_arrays(self.kept, measures.reduce_states(cell.state, info))
        saved = cell.saved
        n_saved = min(self.save_predictions, len(cell.pairs))
        if info.world_size > 1 and n_saved:
            gathered: list = [None] * info.world_size
            torch.distributed.all_gather_object(gathered, saved)
            saved = [s for part in gathered for s in part]
        if info.rank == 0:
            if n_saved:
                saved.sort(key=lambda s: s[0])
                runs.save_predictions(
                    self.run_dir,
                    cell.name,
                    [cell.pairs[i].image_id for i, _ in saved],
                    [p for _, p in saved],
                    self.digest,
                )
            runs.write_cell(
                self.run_dir,
                cell.name,
                arrays,
                int(images),
                self.digest,
                image_ids=[p.image_id for p in cell.pairs],
            )
        self.finished[cell.name] = runs.record(arrays, int(images))
        cell.done, cell.saved, cell.state = True, [], None


def _segmenter(loaded, run: InferenceOptions, info: runtime.DistInfo) -> Segmenter:
    """The loaded model with its contract and inference settings, on the run's device."""
    return Segmenter(
        loaded.module,
        loaded.preprocessing,
        info.device,
        num_outputs=loaded.num_outputs,
        mode=run.inference,
        crop=run.crop,
        stride=run.stride,
        batch_size=run.batch_size,
        precision=run.precision,
    )


def _finish(run_dir: Path, run_info: runs.RunInfo, results, stats, started: datetime) -> None:
    """Writes the tables and the run's finish time (rank 0)."""
    runs.write_tables(run_dir, results, stats)
    finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seconds = time.time() - started.timestamp()
    runs.write_run_info(
        run_dir, dataclasses.replace(run_info, finished=finished_at, seconds=seconds)
    )


def _tables(
    name: str, cells: Sequence[_Cell], finished: Mapping[str, runs.CellRecord], inp: _Inputs
):
    """The run's statistics and tidy results from its finished cells."""
    ordered = {c.name: finished[c.name] for c in cells}
    stats = runs.RunStatistics.from_records(
        ordered,
        [p.image_id for p in inp.pairs],
        images_sha256(inp.pairs),
        natural={n.cell: [p.image_id for p in n.pairs] for n in inp.naturals},
    )
    intervals = {c: v[1:] for c, v in stats.cell_intervals().items()} if stats else None
    return stats, runs.results_frame(name, ordered, inp.class_names, intervals=intervals)


def evaluate(
    model: str | nn.Module,
    *,
    weights: str | None = "default",
    preprocessing=None,
    num_classes: int | None = None,
    cityscapes_root: str | os.PathLike | None = None,
    split: str | None = None,
    cityscapes_c: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] = "benchmark",
    severities: str | Sequence[int] = "protocol",
    clean: bool = True,
    limit: int | None = None,
    inference: str = "auto",
    crop: int | Sequence[int] = 1024,
    stride: int | Sequence[int] = 768,
    batch_size: int = 2,
    workers: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    seed: int | None = None,
    backend: str | None = None,
    save_predictions: int = DEFAULT_SAVED_PREDICTIONS,
    progress: bool = True,
    statistics: bool = True,
    class_map: dict | str | os.PathLike | None = None,
    dataset: str = "cityscapes",
    data_root: str | os.PathLike | None = None,
    natural: Sequence[str] = (),
):
    """Evaluate a model on clean Cityscapes and Cityscapes-C.

    Args:
        model: registry name or alias, optionally with a weights tag (``"b5"``,
            ``"segformer-b0.synthetic"``), custom builder (``"file.py:build"``,
            ``"pkg.mod:build"``), or an ``nn.Module`` returning (N, K, h, w) logits.
        weights: ``"default"`` (the model's tag or the catalog default), a tag, catalog id,
            path, URL, ``hf://`` id, or None (random init). See ``robustbench_seg.models.load``.
        preprocessing: for a module: a ``Preprocessing`` (default: ImageNet mean/std, RGB 0-255).
        num_classes: for a module: its output count (default: ``module.num_classes`` or 19).
            The model must predict the dataset's 19 classes (see ``output_classes``).
        cityscapes_root: Cityscapes root (default ``$CITYSCAPES_DATASET``); the same as
            ``data_root`` with ``dataset="cityscapes"``.
        split: split to evaluate (default: the dataset's evaluation split, ``val``).
        cityscapes_c: a tree made by ``make-cityscapes-c`` / ``make-corrupted`` from this
            dataset (else corrupt on the fly, same pixels).
        corruptions, severities: as ``make-cityscapes-c`` (``benchmark``, ``protocol``).
        clean: also evaluate the clean images.
        limit: only the first N images (sorted).
        inference: ``auto`` (whole images that fit in the crop, sliding windows otherwise),
            ``slide`` (crop/stride windows) or ``whole``.
        crop, stride: sliding-window size and step: one int for a square, or ``(h, w)``.
        batch_size: windows (slide) or images (whole) per forward pass.
        workers: DataLoader worker processes that read and corrupt (default: min(4, cores)).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``fp32``, ``fp16``, ``bf16`` (autocast; fp16 needs CUDA).
        out: run directory (resumable); None keeps everything in a temporary folder.
        overwrite: start afresh when ``out`` holds a run of another configuration.
        seed, backend: corruption seed and backend for on-the-fly corruption (default 0 and
            ``fast``); a ``cityscapes_c`` tree brings its own, and other values are refused.
        save_predictions: keep the predicted maps of the first N images of every cell in
            ``out/predictions/`` (what ``report --qualitative`` shows; 0: none).
        progress: show a progress bar.
        statistics: keep the calibration sums of every cell (per-image counts are always
            kept); ``False`` only to measure what they cost (benchmarks/bench_evaluate.py).
        class_map: for an ``hf://`` model: ``{dataset class: model label or output index}``
            (or a JSON file of it) for classes its labels do not match by name.
        dataset: the dataset's registry name (``robustbench_seg.data.datasets``).
        data_root: its root (default: its environment variable, if any).
        natural: natural-shift sets evaluated as cells next to the synthetic ones, each
            ``NAME[:CONDITION,...][=ROOT]`` (``acdc=~/data/acdc``: ``acdc:fog``,
            ``acdc:night``, ...; ``foggy-cityscapes``: under the Cityscapes root). They must
            have the dataset's classes; ``limit`` applies to each.

    Returns:
        The tidy results (pandas DataFrame, one row per cell and class).
    """
    t_start = datetime.now(timezone.utc)
    d = DataOptions(
        dataset,
        data_root,
        cityscapes_root,
        split,
        cityscapes_c,
        limit,
        tuple(natural),
        seed,
        backend,
    )
    c = CellOptions(corruptions, severities, clean)
    run = InferenceOptions(inference, crop, stride, batch_size, workers, device, precision)
    output = OutputOptions(out, overwrite, save_predictions, progress, statistics)
    _check_options(model, weights, run, output)
    show = progress and os.environ.get("RANK", "0") == "0"  # before the process group
    inp = _read_inputs(d, c, show)
    info = runtime.init_distributed(device)
    loaded = load(
        model,
        weights,
        num_classes=num_classes,
        preprocessing=preprocessing,
        dataset_classes=len(inp.class_names),
        dataset_class_names=inp.class_names,
        class_map=class_map,
    )
    segmenter = _segmenter(loaded, run, info)
    config, cells = _plan(model, loaded, inp, d, c, run)
    digest = config.digest()
    tmpdir = tempfile.TemporaryDirectory(prefix="robustseg-run-") if out is None else None
    run_dir = Path(tmpdir.name if tmpdir is not None else out)
    lock = runs.claim_run_dir(run_dir) if info.rank == 0 else None
    try:
        if info.rank == 0:
            run_info = _run_info(config, inp, run, output, info, t_start)
            runs.prepare_run_dir(run_dir, digest, overwrite=overwrite, info=run_info)
            runs.write_run_info(run_dir, run_info)
        runtime.barrier(info)
        kept = measures.active(statistics)
        finished = _resume(cells, run_dir, digest, kept)
        runner = _Runner(segmenter, info, run_dir, digest, kept, save_predictions, finished)
        runner.run([cell for cell in cells if not cell.done], inp, d, run, loaded, progress)
        stats, results = _tables(loaded.name, cells, finished, inp)
        if info.rank == 0:
            _finish(run_dir, run_info, results, stats, t_start)
    finally:
        if lock is not None:
            lock.release()
    if tmpdir is not None:
        tmpdir.cleanup()
    return results

"""Per-cell measures: state declared once, updated on the device, reduced over ranks, saved.

After torchmetrics' ``Metric`` (``add_state`` with its reduction, ``update``) and detectron2's
``DatasetEvaluator``. A measure declares its arrays (:class:`State`: name in ``cells/<cell>.npz``,
shape, dtype, per cell or per image) and updates them from a batch; everything else follows from
the declaration: the empty state of a cell, the ``torchrun`` reduction (a sum: per-cell sums add,
and per-image rows, each filled by one rank, gather), the arrays written into the cell file, the
resume check (a cell file lacking an active measure's arrays is computed again) and the cell's
``results.csv`` columns (:meth:`Measure.columns`).

Adding a measure: one class here or in its own module, and one :func:`register` line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from robustbench_seg import metrics, runtime

__all__ = [
    "MEASURES",
    "Batch",
    "CalibrationMeasure",
    "ConfusionMeasure",
    "Measure",
    "State",
    "active",
    "empty_states",
    "reduce_states",
    "register",
    "state_arrays",
    "unregister",
]


@dataclass(frozen=True)
class State:
    """One array of a measure's state.

    Attributes:
        name: Its name in ``cells/<cell>.npz``.
        shape: Its shape: ints, ``"K"`` (the classes) and, first, ``"N"`` for a per-image state
            (one row per image of the cell, in the split's order).
        dtype: Its dtype, on the device and in the file.
    """

    name: str
    shape: tuple[int | str, ...]
    dtype: torch.dtype

    @property
    def per_image(self) -> bool:
        return self.shape[:1] == ("N",)

    @property
    def numpy_dtype(self) -> np.dtype:
        return torch.empty((), dtype=self.dtype).numpy().dtype

    def empty(self, classes: int, images: int, device: torch.device) -> torch.Tensor:
        sizes = {"K": classes, "N": images}
        shape = tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)
        return torch.zeros(shape, dtype=self.dtype, device=device)


class Batch(Protocol):
    """What a measure sees of a batch (``engine.scoring.Batch``), all on the device.

    ``logits`` ``(N, K, h, w)`` float32 at label size, ``top``/``pred`` their maximum and its
    index over K, ``labels`` ``(N, h, w)``, ``valid`` the non-ignored pixels, ``index`` each
    image's row in the cell; ``confusion()`` the per-image ``(N, K, K)`` confusion matrices and
    ``calibration()`` the calibration sums (the latter overwrites ``logits``)."""

    logits: torch.Tensor
    top: torch.Tensor
    pred: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor

    @property
    def valid(self) -> torch.Tensor: ...

    def confusion(self) -> torch.Tensor: ...

    def calibration(self) -> tuple[torch.Tensor, ...]: ...


class Measure(ABC):
    """A per-cell measure: declares :attr:`states` and updates them from a batch.

    Attributes:
        name: Registry name.
        states: Its arrays.
        statistics: Kept only when ``evaluate(statistics=True)`` (the default).
        overwrites_logits: Its update may overwrite ``batch.logits``: it runs after the others.
    """

    name: ClassVar[str]
    states: ClassVar[tuple[State, ...]]
    statistics: ClassVar[bool] = False
    overwrites_logits: ClassVar[bool] = False

    @abstractmethod
    def update(self, state: dict[str, torch.Tensor], batch: Batch) -> None:
        """Adds a batch to ``state`` (this measure's arrays, by name), on the device."""

    def columns(self, arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
        """The cell's ``results.csv`` columns from its arrays (default: none)."""
        return {}


class ConfusionMeasure(Measure):
    """The confusion matrix (int64, rows ground truth) and each image's TP/FP/FN per class."""

    name = "confusion"
    states = (
        State("confusion", ("K", "K"), torch.int64),
        State("per_image", ("N", "K", 3), torch.int64),
    )

    def update(self, state: dict[str, torch.Tensor], batch: Batch) -> None:
        conf = batch.confusion()
        state["confusion"] += conf.sum(0)
        tp = torch.diagonal(conf, dim1=1, dim2=2)
        state["per_image"][batch.index] = torch.stack(
            [tp, conf.sum(1) - tp, conf.sum(2) - tp], dim=-1
        )


class CalibrationMeasure(Measure):
    """The calibration sums of ``metrics.Calibration`` (ECE slots, NLL and Brier sums)."""

    name = "calibration"
    n = metrics.CALIBRATION_SLOTS
    states = (
        State("cal_count", (n,), torch.int64),
        State("cal_confidence", (n,), torch.float64),
        State("cal_correct", (n,), torch.int64),
        State("cal_sums", (2,), torch.float64),
    )
    statistics = True
    overwrites_logits = True

    def update(self, state: dict[str, torch.Tensor], batch: Batch) -> None:
        count, conf, correct, nll, brier = batch.calibration()
        state["cal_count"] += count
        state["cal_confidence"] += conf
        state["cal_correct"] += correct
        state["cal_sums"][0] += nll
        state["cal_sums"][1] += brier


MEASURES: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    """Registers a measure (an instance); a name or array name already taken raises."""
    names = {s.name for m in MEASURES.values() for s in m.states}
    if measure.name in MEASURES or names & {s.name for s in measure.states}:
        raise ValueError(f"measure {measure.name!r} or one of its arrays is registered already")
    MEASURES[measure.name] = measure
    return measure


def unregister(name: str) -> None:
    """Removes a registered measure (tests)."""
    del MEASURES[name]


register(ConfusionMeasure())
register(CalibrationMeasure())


def active(statistics: bool = True) -> list[Measure]:
    """The registered measures a run keeps, in update order (logit-overwriting ones last)."""
    kept = [m for m in MEASURES.values() if statistics or not m.statistics]
    return sorted(kept, key=lambda m: m.overwrites_logits)


def empty_states(
    measures: Sequence[Measure], classes: int, images: int, device: torch.device
) -> dict[str, dict[str, torch.Tensor]]:
    """A cell's zero state: measure -> array name -> tensor."""
    return {m.name: {s.name: s.empty(classes, images, device) for s in m.states} for m in measures}


def reduce_states(
    states: Mapping[str, dict[str, torch.Tensor]], info: runtime.DistInfo
) -> dict[str, dict[str, torch.Tensor]]:
    """Sums every array over ``torchrun`` ranks (per-image rows: each filled by one rank)."""
    return {
        m: {n: runtime.all_reduce_sum(t, info) for n, t in s.items()} for m, s in states.items()
    }


def state_arrays(
    measures: Sequence[Measure], states: Mapping[str, dict[str, torch.Tensor]]
) -> dict[str, np.ndarray]:
    """The cell file's arrays, in registration order, with their declared dtypes."""
    out: dict[str, np.ndarray] = {}
    for m in MEASURES.values():
        if m in measures:
            out.update({n: t.cpu().numpy() for n, t in states[m.name].items()})
    return out


def has_arrays(measures: Sequence[Measure], arrays: Any) -> bool:
    """Whether a cell file holds every array of ``measures``."""
    return all(s.name in arrays for m in measures for s in m.states)


def columns(arrays: Mapping[str, np.ndarray]) -> dict[str, float]:
    """A cell's ``results.csv`` columns of the registered measures whose arrays it holds."""
    out: dict[str, float] = {}
    for m in MEASURES.values():
        if has_arrays([m], arrays):
            out.update(m.columns(arrays))
    return out

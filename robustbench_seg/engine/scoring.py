"""Scoring: image -> preprocess -> the model contract -> logits -> trainIds -> confusion matrix.

The one path from pixels to numbers, shared by ``evaluate`` and training's validation. It applies
the model contract (``Preprocessing``): normalisation, the resize to ``input_size``
(``interpolate(..., mode="bilinear", align_corners=False, antialias=True)``), the selection of
``output_classes`` and the single upsampling of the logits to the label size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_seg import metrics, runtime
from robustbench_seg.data.pairs import Pair, load_label
from robustbench_seg.engine.inference import predict_logits, preprocess
from robustbench_seg.errors import RobustSegError, SystemFailure, exception_line
from robustbench_seg.models.registry import Preprocessing
from robustbench_seg.sizes import hw

__all__ = [
    "Batch", "Measurement", "Segmenter", "calibration_sums", "calibration_sums_torch", "per_image_confusion",
    "score_pairs",
]  # fmt: skip


_WHERE = "\0where\0"  # replaced by the batch's name


class _ModelError(Exception):
    """The model failed on a batch; :meth:`Segmenter.logits` puts the batch's name (cell and
    image) where the text says ``_WHERE``."""

    def __init__(self, text: str, exit_code: int) -> None:
        super().__init__(text)
        self.text, self.exit_code = text, exit_code


class _Contract(nn.Module):
    """Checks the model's output on every call and keeps the declared output channels."""

    def __init__(self, inner: nn.Module, num_outputs: int, output_classes: Sequence[int] | None):
        super().__init__()
        self.inner, self.num_outputs = inner, num_outputs
        self.index = None if output_classes is None else list(output_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.inner(x)
        except Exception as exc:  # noqa: BLE001 - the model's own error is one line, exit 1
            raise _ModelError(f"the model's forward() failed on {_WHERE}: {exception_line(exc)}",
                              1) from exc  # fmt: skip
        # a few attribute reads per forward pass (microseconds): every batch is checked
        if not isinstance(y, torch.Tensor) or y.ndim != 4 or y.shape[0] != x.shape[0]:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise _ModelError(
                f"the model must return logits (N, num_classes, h, w) for an (N, 3, H, W) "
                f"batch; got {shape} for {tuple(x.shape)} on {_WHERE}", 2,
            )  # fmt: skip
        if y.shape[1] != self.num_outputs:
            raise _ModelError(_classes_message(y.shape[1], self.num_outputs), 2)
        return y if self.index is None else y[:, self.index]


def _classes_message(got: int, expected: int) -> str:
    """What a wrong channel count says, and how to declare the model's outputs."""
    text = f"the model returned {got} classes, expected {expected}, on {_WHERE}"
    if got > expected:
        return (
            f"{text}: declare num_classes {got} and pick the dataset's {expected} channels with "
            f"output_classes (a builder's metadata {{'num_classes': {got}, 'output_classes': "
            f"[...{expected} indices]}}; from Python: num_classes={got}, "
            "preprocessing=Preprocessing(..., output_classes=...))"
        )
    return f"{text} (num_classes declares the channels the model returns, on every batch)"


@dataclass
class Measurement:
    """What one batch gives: per-image confusion matrices ``(N, K, K)`` (int64, rows ground
    truth), predictions ``(N, h, w)`` and calibration sums (:func:`calibration_sums`)."""

    confusion: torch.Tensor
    pred: torch.Tensor
    calibration: tuple[torch.Tensor, ...] | None


@dataclass
class Batch:
    """A scored batch, on the device, as the per-cell measures see it
    (``robustbench_seg.results.measures``): logits ``(N, K, h, w)`` float32 at label size,
    their maximum ``top`` and its index ``pred``, the labels ``(N, h, w)`` and each image's row
    ``index`` in its cell."""

    logits: torch.Tensor
    top: torch.Tensor
    pred: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    k: int

    @property
    def valid(self) -> torch.Tensor:
        """The pixels whose label is a class (not ignored)."""
        return (self.labels >= 0) & (self.labels < self.k)

    def confusion(self) -> torch.Tensor:
        """Per-image confusion matrices ``(N, K, K)`` (:func:`per_image_confusion`)."""
        return per_image_confusion(self.labels, self.pred, self.k)

    def calibration(self) -> tuple[torch.Tensor, ...]:
        """The calibration sums (:func:`calibration_sums`); overwrites ``logits``."""
        return calibration_sums(self.logits, self.top, self.pred, self.labels, self.k)


def per_image_confusion(labels: torch.Tensor, pred: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, K, K)`` int64 confusion matrices of each image (ignored and out-of-range ground
    truth left out), on the labels' device."""
    n = labels.shape[0]
    gt = labels.reshape(n, -1).long()
    valid = (gt >= 0) & (gt < k)
    img = torch.arange(n, device=gt.device)[:, None].expand_as(gt)
    idx = (img * k + gt) * k + pred.reshape(n, -1)
    return torch.bincount(idx[valid], minlength=n * k * k).reshape(n, k, k)


# ECE slot edges (torchmetrics' binning: 15 equal-width bins, and a slot for confidence 1.0)
_EDGES = torch.linspace(0, 1, metrics.ECE_BINS + 1)


def calibration_sums(logits: torch.Tensor, top: torch.Tensor, pred: torch.Tensor,
                     labels: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Calibration sums of a batch over its non-ignored pixels, on the device, without storing
    probabilities: ``(count, confidence, correct)`` per ECE slot and ``(nll, brier)`` sums
    (``metrics.Calibration``).

    With ``e = exp(logits - top)`` and ``s = sum_k e``: confidence ``1 / s`` (the maximum
    softmax probability), ``p_true = e_true / s``, NLL ``log s - (logit_true - top)`` and
    Brier ``sum_k e_k^2 / s^2 - 2 p_true + 1``: one exponential per logit.

    On the CPU one numba pass computes them (``calibration_cpu``, the same sums to float
    rounding, a fifth of the time); elsewhere :func:`calibration_sums_torch`.

    Args:
        logits: ``(N, K, h, w)`` float32 logits at label resolution.
        top, pred: Their maximum and its index over K.
        labels: ``(N, h, w)`` trainIds (255 or anything outside ``0..K-1``: ignored).
        k: Number of classes.

    May overwrite ``logits``.
    """
    if logits.device.type == "cpu":
        from robustbench_seg.engine.calibration_cpu import calibration_sums_cpu

        return calibration_sums_cpu(logits, top, pred, labels, _EDGES)
    return calibration_sums_torch(logits, top, pred, labels, k)


def calibration_sums_torch(logits: torch.Tensor, top: torch.Tensor, pred: torch.Tensor,
                           labels: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """:func:`calibration_sums` with torch operations, on any device.

    Overwrites ``logits`` (with ``e``): no other full-size tensor is allocated.
    """
    valid = (labels >= 0) & (labels < k)
    lab = torch.where(valid, labels, 0).long()[:, None]
    logit_true = logits.gather(1, lab)[:, 0]
    e = logits.sub_(top[:, None]).exp_()  # in place
    s = e.sum(1)
    conf = s.reciprocal()
    p_true = e.gather(1, lab)[:, 0] * conf
    nll = torch.log(s) - (logit_true - top)
    ev = e.reshape(e.shape[0], e.shape[1], -1)
    squares = torch.einsum("nkp,nkp->np", ev, ev).reshape(s.shape)  # sum_k e_k^2, one pass
    brier = squares * conf * conf - 2 * p_true + 1
    # sums over the valid pixels without boolean indexing: an extra slot collects the rest
    n = metrics.CALIBRATION_SLOTS
    slot = torch.bucketize(conf, _EDGES.to(conf.device), right=True) - 1
    slot = torch.where(valid, slot, n).reshape(-1)
    count = torch.bincount(slot, minlength=n + 1)[:n]
    f64 = dict(dtype=torch.float64, device=conf.device)
    conf_sum = torch.zeros(n + 1, **f64).index_add_(0, slot, conf.reshape(-1).double())[:n]
    right = (pred == labels).reshape(-1).double()
    correct_sum = torch.zeros(n + 1, **f64).index_add_(0, slot, right)[:n]
    validf = valid.to(conf.dtype)
    nll_sum = (nll * validf).sum(dtype=torch.float64)
    brier_sum = (brier * validf).sum(dtype=torch.float64)
    return count, conf_sum, correct_sum.round().long(), nll_sum, brier_sum


class Segmenter:
    """A model with its contract and inference settings, on a device.

    Args:
        module: The network (put in eval mode and moved to ``device``).
        preprocessing: Its contract.
        device: Where it runs.
        num_outputs: Channels the module returns (default: ``module.num_classes``).
        mode: ``"whole"``, ``"slide"`` (see ``predict_logits``) or ``"auto"``: whole-image
            inference for an image that fits in the crop, sliding windows otherwise.
        crop: Sliding-window size.
        stride: Sliding-window step.
        batch_size: Windows (slide) or images (whole) per forward pass.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"`` (autocast).
    """

    def __init__(
        self,
        module: nn.Module,
        preprocessing: Preprocessing,
        device: torch.device,
        *,
        num_outputs: int | None = None,
        mode: str = "whole",
        crop: int | Sequence[int] = 1024,
        stride: int | Sequence[int] = 768,
        batch_size: int = 2,
        precision: str = "fp32",
    ) -> None:
        outputs = int(num_outputs if num_outputs is not None else module.num_classes)
        self.preprocessing = preprocessing
        self.device = device
        self.net = _Contract(module, outputs, preprocessing.output_classes).to(device).eval()
        self.num_classes = (
            outputs if preprocessing.output_classes is None else len(preprocessing.output_classes)
        )
        self.settings = dict(
            mode=mode, crop=crop, stride=stride, batch_size=batch_size, precision=precision
        )

    def logits(
        self, images: np.ndarray, out_size: Sequence[int], what: str = "a batch"
    ) -> torch.Tensor:
        """Float32 logits ``(N, num_classes, *out_size)`` of uint8 RGB images ``(N, H, W, 3)``.

        Raises:
            RobustSegError: The model returned NaN or infinite logits (named by ``what``).
        """
        x = preprocess(images, self.preprocessing, self.device)
        if self.preprocessing.input_size is not None:
            x = F.interpolate(
                x, size=tuple(self.preprocessing.input_size), mode="bilinear",
                align_corners=False, antialias=True,
            )  # fmt: skip
        settings = dict(self.settings)
        if settings["mode"] == "auto":
            ch, cw = hw(settings["crop"])
            settings["mode"] = "whole" if x.shape[-2] <= ch and x.shape[-1] <= cw else "slide"
        try:
            out = predict_logits(self.net, x, out_size=tuple(out_size), **settings)  # type: ignore[arg-type]
        except _ModelError as exc:
            kind = SystemFailure if exc.exit_code == 1 else RobustSegError
            raise kind(exc.text.replace(_WHERE, what)) from exc.__cause__
        # NaN and inf reach the minimum or the maximum: one reduction, no full-size temporary
        if not bool(torch.isfinite(torch.stack(torch.aminmax(out))).all()):
            raise RobustSegError(
                f"the model returned non-finite logits (NaN or inf) for {what}; no number is "
                "computed from them (check the weights, or use --precision fp32)"
            )
        return out

    def predict(
        self, images: np.ndarray, out_size: Sequence[int], what: str = "a batch"
    ) -> torch.Tensor:
        """Predicted trainIds ``(N, *out_size)`` (int64, on the device)."""
        return self.logits(images, out_size, what).argmax(1)

    def measure(
        self, images: np.ndarray, labels: torch.Tensor, what: str = "a batch",
        calibration: bool = True,
    ) -> Measurement:  # fmt: skip
        """Per-image confusion matrices, predictions and calibration sums of a batch.

        Args:
            images: ``(N, H, W, 3)`` uint8 RGB.
            labels: ``(N, h, w)`` trainIds on the device (255: ignored).
            what: Names the batch in errors (cell and image).
            calibration: Also the calibration sums (from the softmax of the logits at label
                resolution; sliding windows average their logits before it).
        """
        with torch.inference_mode():  # the logits are inference tensors, reused in place
            logits = self.logits(images, labels.shape[-2:], what)
            top, pred = logits.max(1)
            k = self.num_classes
            confusion = per_image_confusion(labels, pred, k)
            cal = calibration_sums(logits, top, pred, labels, k) if calibration else None
        return Measurement(confusion, pred, cal)

    def batch(
        self, images: np.ndarray, labels: torch.Tensor, index: torch.Tensor, what: str = "a batch"
    ) -> Batch:
        """A batch's logits at label size and their argmax, for the per-cell measures.

        Args:
            images: ``(N, H, W, 3)`` uint8 RGB.
            labels: ``(N, h, w)`` trainIds on the device (255: ignored).
            index: Each image's row in its cell, on the device.
            what: Names the batch in errors (cell and image).
        """
        logits = self.logits(images, labels.shape[-2:], what)
        top, pred = logits.max(1)
        return Batch(logits, top, pred, labels, index, self.num_classes)

    def score(
        self, images: np.ndarray, labels: torch.Tensor, what: str = "a batch"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Confusion matrix (int64, rows ground truth) and predictions of a batch.

        Args:
            images: ``(N, H, W, 3)`` uint8 RGB.
            labels: ``(N, h, w)`` trainIds on the device (255: ignored).
            what: Names the batch in errors (cell and image).

        Returns:
            ``(confusion (K, K), predictions (N, h, w))``.
        """
        m = self.measure(images, labels, what, calibration=False)
        return m.confusion.sum(0), m.pred


def score_pairs(segmenter: Segmenter, pairs: Sequence[Pair], info: runtime.DistInfo) -> np.ndarray:
    """Confusion matrix of clean images, summed over ``torchrun`` ranks (each takes a shard).

    What training validates with: the same path as ``evaluate``'s clean cell, one image at a
    time and without DataLoader workers.
    """
    from robustbench_seg.data.images import read_rgb

    k = segmenter.num_classes
    conf = torch.zeros((k, k), dtype=torch.int64, device=segmenter.device)
    for pair in list(pairs)[info.rank :: info.world_size]:
        image = read_rgb(pair.image.path)
        label = torch.from_numpy(load_label(pair, image.shape[:2])).to(segmenter.device)
        conf += segmenter.score(image[None], label[None], what=pair.image_id)[0]
    return runtime.all_reduce_sum(conf, info).cpu().numpy()

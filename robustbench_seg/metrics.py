"""Segmentation metrics (Cityscapes IoU as in cityscapesScripts) and robustness aggregates
(mPC / rPC, Michaelis et al. 2019; corruption degradation CD, Hendrycks & Dietterich 2019).

Per cell: a 19x19 int64 confusion matrix (rows: ground truth, columns: prediction) over pixels
whose ground truth is not ignored. IoU_c = TP / (TP + FP + FN); mIoU = mean over classes whose
union is non-zero; pixel accuracy = trace / sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from robustbench_seg.data.cityscapes import IGNORE_INDEX, NUM_CLASSES


def confusion_matrix(
    gt: np.ndarray,
    pred: np.ndarray,
    num_classes: int = NUM_CLASSES,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Confusion matrix of one or more label maps (NumPy).

    Args:
        gt: ground-truth trainIds, any shape; ``ignore_index`` (and anything >= num_classes)
            is left out.
        pred: predicted trainIds, same shape, values in 0..num_classes-1.

    Returns:
        (num_classes, num_classes) int64, rows = ground truth, columns = prediction.
    """
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    gt = gt.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    valid = (gt != ignore_index) & (gt < num_classes) & (gt >= 0)
    idx = gt[valid] * num_classes + pred[valid]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion_matrix_torch(
    gt, pred, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
):
    """The same on torch tensors, on their device (int64 result)."""
    import torch

    gt = gt.reshape(-1).long()
    pred = pred.reshape(-1).long()
    valid = (gt != ignore_index) & (gt < num_classes) & (gt >= 0)
    idx = gt[valid] * num_classes + pred[valid]
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def iou_per_class(conf: np.ndarray) -> np.ndarray:
    """IoU of each class; NaN where the union (TP + FP + FN) is zero."""
    return iou_from_counts(per_image_counts(np.asarray(conf)[None])[0])


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes whose union is non-zero (NaN if none)."""
    return float(miou_from_counts(per_image_counts(np.asarray(conf)[None])[0]))


def pixel_accuracy(conf: np.ndarray) -> float:
    """Share of non-ignored pixels predicted right."""
    total = conf.sum()
    return float(np.trace(conf) / total) if total else float("nan")


def corruption_means(miou: Mapping[tuple[str, int], float]) -> dict[str, float]:
    """Per corruption, the mean of its severities' mIoU (what Table 5 reports)."""
    acc: dict[str, list[float]] = {}
    for (corruption, _sev), value in miou.items():
        acc.setdefault(corruption, []).append(value)
    return {c: float(np.mean(v)) for c, v in acc.items()}


def mpc(corruption_mean: Mapping[str, float]) -> float:
    """Mean performance under corruption: mean over the corruptions' means."""
    return float(np.mean(list(corruption_mean.values())))


def rpc(mpc_value: float, clean_miou: float) -> float:
    """Relative performance under corruption: mPC / clean mIoU."""
    return mpc_value / clean_miou


def corruption_degradation(
    miou: Sequence[float] | Mapping[int, float], ref_miou: Sequence[float] | Mapping[int, float]
) -> float:
    """CD_c = sum_s (1 - mIoU_{c,s}) / sum_s (1 - mIoU^ref_{c,s}), mIoU as fractions in [0, 1].

    Both arguments cover the same severities (sequences in the same order, or dicts keyed by
    severity)."""
    if isinstance(miou, Mapping):
        if set(miou) != set(ref_miou):
            raise ValueError(f"severities differ: {sorted(miou)} vs {sorted(ref_miou)}")
        keys = sorted(miou)
        miou, ref_miou = [miou[k] for k in keys], [ref_miou[k] for k in keys]
    err = float(np.sum(1.0 - np.asarray(miou, dtype=np.float64)))
    ref = float(np.sum(1.0 - np.asarray(ref_miou, dtype=np.float64)))
    return err / ref


def mean_corruption_degradation(cds: Mapping[str, float]) -> float:
    """mCD: mean of the corruptions' CD."""
    return float(np.mean(list(cds.values())))


# ----------------------------------------------------------------------------- calibration

ECE_BINS = 15
# torchmetrics' binning (``bucketize(confidence, linspace(0, 1, 16), right=True) - 1``) gives a
# confidence of exactly 1.0 a slot of its own after the 15 bins; kept as it is for parity.
CALIBRATION_SLOTS = ECE_BINS + 1


@dataclass(frozen=True)
class Calibration:
    """Pixel-level calibration of one cell, as sums over its non-ignored pixels (Guo et al.
    2017): per confidence slot (15 equal-width bins of the maximum softmax probability, plus
    torchmetrics' slot for a confidence of exactly 1), the pixel count, the sum of
    confidences and the count of correct predictions; the sums of the negative log-likelihood
    of the true class and of the multi-class Brier score ``sum_k (p_k - y_k)^2``.

    Sums add over images, batches and ``torchrun`` ranks; no probability is stored.
    """

    count: np.ndarray  # (CALIBRATION_SLOTS,) int64
    confidence: np.ndarray  # (CALIBRATION_SLOTS,) float64
    correct: np.ndarray  # (CALIBRATION_SLOTS,) int64
    nll_sum: float
    brier_sum: float

    @classmethod
    def empty(cls) -> Calibration:
        z = np.zeros(CALIBRATION_SLOTS)
        return cls(z.astype(np.int64), z.copy(), z.astype(np.int64), 0.0, 0.0)

    def __add__(self, other: Calibration) -> Calibration:
        return Calibration(self.count + other.count, self.confidence + other.confidence,
                           self.correct + other.correct, self.nll_sum + other.nll_sum,
                           self.brier_sum + other.brier_sum)  # fmt: skip

    @property
    def pixels(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error (l1, slots weighted by their pixel share)."""
        if not self.pixels:
            return float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = np.nan_to_num(self.correct / self.count)
            conf = np.nan_to_num(self.confidence / self.count)
        return float(np.sum(np.abs(acc - conf) * (self.count / self.pixels)))

    @property
    def nll(self) -> float:
        """Mean negative log-likelihood of the true class (nats per pixel)."""
        return self.nll_sum / self.pixels if self.pixels else float("nan")

    @property
    def brier(self) -> float:
        """Mean multi-class Brier score per pixel (0..2)."""
        return self.brier_sum / self.pixels if self.pixels else float("nan")

    def reliability(self) -> dict[str, np.ndarray]:
        """The reliability diagram's 15 bins (the slot of confidence 1.0 joins the last bin):
        ``lower``, ``upper`` edges, ``count``, mean ``confidence`` and ``accuracy`` (NaN where a
        bin is empty)."""
        count = self.count[:ECE_BINS].astype(np.float64)
        conf = self.confidence[:ECE_BINS].copy()
        correct = self.correct[:ECE_BINS].astype(np.float64)
        count[-1] += self.count[ECE_BINS]
        conf[-1] += self.confidence[ECE_BINS]
        correct[-1] += self.correct[ECE_BINS]
        edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"lower": edges[:-1], "upper": edges[1:], "count": count,
                    "confidence": conf / count, "accuracy": correct / count}  # fmt: skip

    def arrays(self) -> dict[str, np.ndarray]:
        """As arrays, for a cell file (:meth:`from_arrays` reads them back)."""
        return {"cal_count": self.count, "cal_confidence": self.confidence,
                "cal_correct": self.correct,
                "cal_sums": np.array([self.nll_sum, self.brier_sum])}  # fmt: skip

    @classmethod
    def from_arrays(cls, z: Mapping[str, np.ndarray]) -> Calibration | None:
        if "cal_count" not in z:
            return None
        nll, brier = (float(v) for v in z["cal_sums"])
        return cls(np.asarray(z["cal_count"], np.int64), np.asarray(z["cal_confidence"], np.float64),
                   np.asarray(z["cal_correct"], np.int64), nll, brier)  # fmt: skip


def per_image_counts(confusions: np.ndarray) -> np.ndarray:
    """``(N, K, K)`` per-image confusion matrices -> ``(N, K, 3)`` int64 TP, FP, FN per class."""
    conf = np.asarray(confusions, dtype=np.int64)
    tp = np.diagonal(conf, axis1=1, axis2=2)
    return np.stack([tp, conf.sum(1) - tp, conf.sum(2) - tp], axis=-1)


def iou_from_counts(counts: np.ndarray) -> np.ndarray:
    """IoU per class from ``(..., K, 3)`` TP/FP/FN sums; NaN where the union is zero."""
    counts = np.asarray(counts, dtype=np.float64)
    tp, union = counts[..., 0], counts.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def miou_from_counts(counts: np.ndarray) -> np.ndarray:
    """mIoU over the classes present (non-zero union) from ``(..., K, 3)`` counts; NaN if none."""
    iou = iou_from_counts(counts)
    present = ~np.isnan(iou)
    n = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.nansum(iou, -1) / n, np.nan)

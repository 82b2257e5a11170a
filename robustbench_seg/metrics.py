"""Segmentation metrics (Cityscapes IoU as in cityscapesScripts) and robustness aggregates
(mPC / rPC, Michaelis et al. 2019; corruption degradation CD, Hendrycks & Dietterich 2019).

Per cell: a 19x19 int64 confusion matrix (rows: ground truth, columns: prediction) over pixels
whose ground truth is not ignored. IoU_c = TP / (TP + FP + FN); mIoU = mean over classes whose
union is non-zero; pixel accuracy = trace / sum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(conf: np.ndarray) -> float:
    """Mean IoU over the classes whose union is non-zero (NaN if none)."""
    iou = iou_per_class(conf)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


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

"""Labels against cityscapesScripts' table; IoU against its evalPixelLevelSemanticLabeling."""

from __future__ import annotations

import types

import numpy as np
import pytest
from PIL import Image

from robustbench_seg.data.cityscapes import (
    CLASS_NAMES,
    LABELS,
    label_id_to_train_id_lut,
    train_id_to_label_id_lut,
)
from robustbench_seg.metrics import (
    confusion_matrix,
    confusion_matrix_torch,
    corruption_degradation,
    corruption_means,
    iou_per_class,
    mean_iou,
    mpc,
    pixel_accuracy,
    rpc,
)


def test_label_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels as cs_labels

    ours = {lid: (name, tid) for name, lid, tid in LABELS}
    theirs = {lab.id: (lab.name, lab.trainId) for lab in cs_labels if lab.id >= 0}
    assert ours == {k: (n, 255 if t in (-1, 255) else t) for k, (n, t) in theirs.items()}
    lut = label_id_to_train_id_lut()
    for lab in cs_labels:
        if lab.id >= 0:
            assert lut[lab.id] == (255 if lab.trainId in (-1, 255) else lab.trainId)
    assert np.all(lut[34:] == 255)
    names = [
        lab.name for lab in sorted(cs_labels, key=lambda x: x.trainId) if 0 <= lab.trainId < 255
    ]
    assert list(CLASS_NAMES) == names and len(CLASS_NAMES) == 19
    assert np.array_equal(lut[train_id_to_label_id_lut()], np.arange(19))


def _cityscapes_scores(gt_label_ids, pred_label_ids, tmp_path):
    import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as ev

    args = types.SimpleNamespace(**vars(ev.args))
    args.evalInstLevelScore = False
    args.evalPixelAccuracy = False
    args.quiet = True
    conf = ev.generateMatrix(args)
    for i, (g, p) in enumerate(zip(gt_label_ids, pred_label_ids, strict=True)):
        Image.fromarray(g).save(tmp_path / f"g{i}.png")
        Image.fromarray(p).save(tmp_path / f"p{i}.png")
        ev.evaluatePair(
            str(tmp_path / f"p{i}.png"), str(tmp_path / f"g{i}.png"), conf, None, {}, args
        )
    scores = {}
    for _, lid, tid in LABELS:
        if tid != 255:
            scores[tid] = ev.getIouScoreForLabel(lid, conf, args)
    return scores, ev.getScoreAverage(scores, args)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_matches_cityscapesscripts(seed, tmp_path):
    rng = np.random.default_rng(seed)
    lut, inv = label_id_to_train_id_lut(), train_id_to_label_id_lut()
    gts, preds, conf = [], [], np.zeros((19, 19), np.int64)
    for _ in range(3):
        gt = rng.integers(0, 34, size=(37, 61)).astype(np.uint8)
        # predictions agree with the ground truth on ~half of the pixels
        pred_tid = np.where(rng.random(gt.shape) < 0.5, lut[gt], rng.integers(0, 19, gt.shape))
        pred_tid = np.where(pred_tid == 255, rng.integers(0, 19, gt.shape), pred_tid).astype(
            np.uint8
        )
        if seed == 2:  # one class never occurs nor is predicted: its IoU is undefined
            gt[gt == 33] = 7
            pred_tid[pred_tid == 18] = 0
        gts.append(gt)
        preds.append(inv[pred_tid])
        conf += confusion_matrix(lut[gt], pred_tid)
    scores, average = _cityscapes_scores(gts, preds, tmp_path)
    ours = iou_per_class(conf)
    for tid in range(19):
        if np.isnan(scores[tid]):
            assert np.isnan(ours[tid])
        else:
            assert abs(ours[tid] - scores[tid]) < 1e-9
    assert abs(mean_iou(conf) - average) < 1e-9
    assert (seed == 2) == bool(np.isnan(ours).any())


def test_confusion_torch_equals_numpy_and_ignore():
    import torch

    rng = np.random.default_rng(3)
    gt = rng.integers(0, 19, size=(2, 30, 40)).astype(np.uint8)
    gt[:, :5] = 255
    pred = rng.integers(0, 19, size=gt.shape).astype(np.uint8)
    a = confusion_matrix(gt, pred)
    b = confusion_matrix_torch(torch.from_numpy(gt), torch.from_numpy(pred)).numpy()
    assert np.array_equal(a, b) and a.sum() == 2 * 25 * 40 and a.dtype == np.int64


def test_exact_small_values():
    gt = np.array([0, 0, 1, 1, 255])
    pred = np.array([0, 1, 1, 1, 0])
    conf = confusion_matrix(gt, pred, num_classes=2)
    assert conf.tolist() == [[1, 1], [0, 2]]
    assert iou_per_class(conf).tolist() == [0.5, 2 / 3]
    assert mean_iou(conf) == pytest.approx((0.5 + 2 / 3) / 2)
    assert pixel_accuracy(conf) == 0.75


def test_aggregates():
    miou = {("fog", 1): 0.8, ("fog", 2): 0.6, ("gaussian_noise", 1): 0.4}
    means = corruption_means(miou)
    assert means == {"fog": pytest.approx(0.7), "gaussian_noise": pytest.approx(0.4)}
    assert mpc(means) == pytest.approx(0.55)
    assert rpc(0.55, 0.8) == pytest.approx(0.6875)
    assert corruption_degradation([0.8, 0.6], [0.6, 0.4]) == pytest.approx(0.6 / 1.0)
    assert corruption_degradation({1: 0.5, 2: 0.5}, {2: 0.75, 1: 0.75}) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        corruption_degradation({1: 0.5}, {2: 0.5})

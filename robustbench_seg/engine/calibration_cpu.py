"""The calibration sums of a batch on the CPU in one pass over the logits (numba).

``scoring.calibration_sums`` computes the same sums with torch operations, which on a CPU cost
about one sixth of a SegFormer-B0 forward pass at 512x1024 (a dozen passes over the
``K x h x w`` logits and as many full-size temporaries). This kernel reads each logit once,
row by row, while the row's 19 planes are in the cache:

* ``s = sum_k exp(l_k - top)`` and ``q = sum_k exp(l_k - top)^2`` per pixel, float32 like the
  torch path, with an exponential the compiler vectorises (below);
* per non-ignored pixel (``0 <= label < K``): confidence ``c = 1 / s`` (the maximum softmax
  probability), its ECE slot (``bucketize(c, linspace(0, 1, 16), right=True) - 1``, exactly:
  the float32 edges are compared, as torchmetrics does), NLL ``log s - (l_label - top)`` and
  Brier ``q c^2 - 2 exp(l_label - top) c + 1``, summed in float64.

The exponential: ``exp(x) = 2^m exp(f)`` with ``m = round(x / ln 2)``, ``f = x - m ln 2`` (ln 2
split in two constants, Cody and Waite) and a degree-7 polynomial for ``exp(f)`` on
``[-ln2/2, ln2/2]`` (the Cephes ``expf`` coefficients); ``2^m`` is built in the exponent bits.
Its error is about one float32 ulp, as libm's. ``x`` is clamped at -87 so that ``2^m`` stays a
normal number; ``exp(-87)`` is 1.6e-38, nothing next to ``s >= 1``.

The image rows are summed in blocks of 32, the blocks shared out among
``torch.get_num_threads()`` threads (without the GIL) and the blocks' sums added in order: the
result does not depend on the number of threads.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

__all__ = ["calibration_sums_cpu"]

_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
_LN2_HI = _F32(0.693359375)
_LN2_LO = _F32(-2.12194440e-4)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _sum_rows(
    logits,
    top,
    pred,
    labels,
    edges,
    slots,
    r0,
    r1,
    s,
    q,
    bits,
    scale,
    count,
    conf_sum,
    correct,
    sums,
):  # pragma: no cover - numba
    n_img, k_classes, height, width = logits.shape
    nll = 0.0
    brier = 0.0
    for row in range(r0, r1):
        n = row // height
        r = row - n * height
        t = top[n, r]
        for j in range(width):
            s[j] = 0.0
            q[j] = 0.0
        for k in range(k_classes):
            x_row = logits[n, k, r]
            for j in range(width):  # 2^m in the exponent bits
                x = max(x_row[j] - t[j], _F32(-87.0))
                m = np.floor(x * _LOG2E + _F32(0.5))
                bits[j] = (np.int32(m) + np.int32(127)) << 23
            for j in range(width):  # exp(f), f in [-ln2/2, ln2/2]
                x = max(x_row[j] - t[j], _F32(-87.0))
                m = np.floor(x * _LOG2E + _F32(0.5))
                f = x - m * _LN2_HI - m * _LN2_LO
                p = _F32(1.9875691500e-4)
                p = p * f + _F32(1.3981999507e-3)
                p = p * f + _F32(8.3334519073e-3)
                p = p * f + _F32(4.1665795894e-2)
                p = p * f + _F32(1.6666665459e-1)
                p = p * f + _F32(5.0000001201e-1)
                e = (p * f * f + f + _F32(1.0)) * scale[j]
                s[j] += e
                q[j] += e * e
        for j in range(width):
            lab = labels[n, r, j]
            if lab < 0 or lab >= k_classes:
                continue
            c = _F32(1.0) / s[j]
            d = float(logits[n, lab, r, j] - t[j])
            c64 = float(c)
            nll += math.log(float(s[j])) - d
            brier += float(q[j]) * c64 * c64 - 2.0 * math.exp(d) * c64 + 1.0
            g = min(int(c * _F32(slots - 1)), slots - 1)  # then exactly against the edges
            while g > 0 and c < edges[g]:
                g -= 1
            while g < slots - 1 and c >= edges[g + 1]:
                g += 1
            count[g] += 1
            conf_sum[g] += c64
            if pred[n, r, j] == lab:
                correct[g] += 1
    sums[0] += nll
    sums[1] += brier


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _sum_blocks(
    logits, top, pred, labels, edges, block_rows, b0, b1, count, conf_sum, correct, sums
):  # pragma: no cover - numba
    """Sums of the row blocks ``b0..b1-1`` (``block_rows`` image rows each, over all images'
    rows in order) into ``count[b]``, ``conf_sum[b]``, ``correct[b]`` and ``sums[b]``."""
    n_img, k_classes, height, width = logits.shape
    slots = edges.shape[0]  # the last edge (1.0) opens torchmetrics' extra slot
    s = np.empty(width, np.float32)
    q = np.empty(width, np.float32)
    bits = np.empty(width, np.int32)
    scale = bits.view(np.float32)
    for b in range(b0, b1):
        _sum_rows(logits, top, pred, labels, edges, slots, b * block_rows,
                  min((b + 1) * block_rows, n_img * height), s, q, bits, scale,
                  count[b], conf_sum[b], correct[b], sums[b])  # fmt: skip


# rows summed together: the blocks' sums are added in order, so that a result does not depend
# on the number of threads
_BLOCK_ROWS = 32
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != threads:
            if _POOL is not None:
                _POOL.shutdown(wait=True)
            _POOL, _POOL_SIZE = ThreadPoolExecutor(threads, "robustseg-calibration"), threads
        return _POOL


def calibration_sums_cpu(
    logits: torch.Tensor, top: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor,
    edges: torch.Tensor,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """``(count, confidence, correct)`` per ECE slot and ``(nll, brier)`` sums of CPU tensors.

    Args:
        logits: ``(N, K, h, w)`` float32 logits at label resolution (not modified).
        top, pred: Their maximum and its index over K, ``(N, h, w)``.
        labels: ``(N, h, w)`` integer trainIds (outside ``0..K-1``: ignored).
        edges: The float32 slot edges, ``linspace(0, 1, ECE_BINS + 1)``.

    Returns:
        As ``scoring.calibration_sums``: int64 counts, float64 confidence sums, int64 correct
        counts (one per slot) and float64 NLL and Brier sums.
    """
    x = logits.detach().float().contiguous().numpy()
    t = top.detach().float().contiguous().numpy()
    p = pred.detach().contiguous().numpy()
    lab = labels.detach().contiguous().numpy()
    e = edges.detach().float().contiguous().numpy()
    blocks = -(-x.shape[0] * x.shape[2] // _BLOCK_ROWS)
    slots = e.shape[0]
    count, correct = np.zeros((blocks, slots), np.int64), np.zeros((blocks, slots), np.int64)
    conf_sum, sums = np.zeros((blocks, slots)), np.zeros((blocks, 2))
    threads = max(1, min(torch.get_num_threads(), blocks))
    bounds = [blocks * i // threads for i in range(threads + 1)]
    args = (x, t, p, lab, e, _BLOCK_ROWS)
    if threads == 1:
        _sum_blocks(*args, 0, blocks, count, conf_sum, correct, sums)
    else:
        pool = _pool(threads)
        jobs = [pool.submit(_sum_blocks, *args, bounds[i], bounds[i + 1], count, conf_sum, correct,
                            sums) for i in range(threads)]  # fmt: skip
        for job in jobs:
            job.result()
    nll, brier = sums.sum(0)  # over the blocks, in order: the same for any thread count
    return (
        torch.from_numpy(count.sum(0)), torch.from_numpy(conf_sum.sum(0)),
        torch.from_numpy(correct.sum(0)), torch.tensor(nll, dtype=torch.float64),
        torch.tensor(brier, dtype=torch.float64),
    )  # fmt: skip

"""The calibration sums of a batch on the CPU in one pass over the logits (numba).

``scoring.calibration_sums_torch`` computes the same sums with torch operations, which on a CPU
cost about a sixth of a SegFormer-B0 forward pass at 512x1024 (a dozen passes over the
``K x h x w`` logits and as many full-size temporaries). This kernel reads each logit once,
row by row, while the row's K planes are in the cache:

* ``s = sum_k exp(l_k - top)`` and ``q = sum_k exp(l_k - top)^2`` per pixel, in float32 like
  the torch path, in loops over the row that the compiler vectorises;
* per non-ignored pixel (``0 <= label < K``): confidence ``c = 1 / s`` (the maximum softmax
  probability), its ECE slot (``bucketize(c, linspace(0, 1, 16), right=True) - 1`` exactly:
  ``c`` is compared with the same float32 edges, as torchmetrics does), NLL
  ``log s - (l_label - top)`` and Brier ``q c^2 - 2 exp(l_label - top) c + 1``, summed in
  float64.

The exponential and the logarithm are vectorisable float32 versions of Cephes' ``expf`` and
``logf`` (numba has no vector math library here, and a call to libm per logit costs four times
the whole kernel): ``exp(x) = 2^m exp(f)`` with ``m = round(x / ln 2)``, ``f = x - m ln 2`` (ln 2
split in two constants, Cody and Waite), a polynomial for ``exp(f)`` on ``[-ln2/2, ln2/2]`` and
``2^m`` built in the exponent bits; ``log(x 2^e) = e ln 2 + log(x)`` with ``x`` from the
mantissa bits. Both are within two float32 ulps of the exact values (tested). ``x`` is clamped
at -87 so that ``2^m`` stays a normal number: ``exp(-87) = 1.6e-38``, nothing next to ``s >= 1``.

The image rows are summed in blocks of 32, handed out one at a time to
``torch.get_num_threads()`` threads (this one included, without the GIL), and the blocks' sums
added in order: the result does not depend on the number of threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch

__all__ = ["calibration_sums_cpu"]

_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
_LN2_HI = _F32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO (Cody and Waite)
_LN2_LO = _F32(-2.12194440e-4)
_SQRT_HALF = _F32(0.707106781186547524)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _round_log2(x):  # pragma: no cover - numba
    """``m = round(x / ln 2)`` of ``x`` clamped at -87 (float32)."""
    return np.floor(max(x, _F32(-87.0)) * _LOG2E + _F32(0.5))


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _pow2_bits(m):  # pragma: no cover - numba
    """The bits of the float32 ``2^m`` (``-126 <= m <= 0``)."""
    return (np.int32(m) + np.int32(127)) << 23


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _exp_reduced(x, m):  # pragma: no cover - numba
    """``exp(f)`` for ``f = x - m ln 2`` in ``[-ln2/2, ln2/2]`` (Cephes ``expf``)."""
    f = max(x, _F32(-87.0)) - m * _LN2_HI - m * _LN2_LO
    p = _F32(1.9875691500e-4)
    p = p * f + _F32(1.3981999507e-3)
    p = p * f + _F32(8.3334519073e-3)
    p = p * f + _F32(4.1665795894e-2)
    p = p * f + _F32(1.6666665459e-1)
    p = p * f + _F32(5.0000001201e-1)
    return p * f * f + f + _F32(1.0)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _exp(x):  # pragma: no cover - numba
    """float32 ``exp(max(x, -87))``, ``x <= 0``."""
    m = _round_log2(x)
    return _exp_reduced(x, m) * np.int32(_pow2_bits(m)).view(np.float32)


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _log(v):  # pragma: no cover - numba
    """float32 ``log(v)`` of a positive normal ``v`` (Cephes ``logf``: ``v = x 2^e``, ``x`` in
    ``[0.5, 1)`` from the bits, a polynomial in ``x - 1``)."""
    b = np.float32(v).view(np.int32)
    x = np.int32((b & np.int32(-2139095041)) | np.int32(0x3F000000)).view(np.float32)
    e = _F32((b >> 23) - 126)
    low = x < _SQRT_HALF
    e = e - _F32(1.0) if low else e
    x = (x + x - _F32(1.0)) if low else (x - _F32(1.0))
    z = x * x
    y = _F32(7.0376836292e-2)
    y = y * x - _F32(1.1514610310e-1)
    y = y * x + _F32(1.1676998740e-1)
    y = y * x - _F32(1.2420140846e-1)
    y = y * x + _F32(1.4249322787e-1)
    y = y * x - _F32(1.6668057665e-1)
    y = y * x + _F32(2.0000714765e-1)
    y = y * x - _F32(2.4999993993e-1)
    y = y * x + _F32(3.3333331174e-1)
    y = y * x * z + _LN2_LO * e - _F32(0.5) * z
    return x + y + _LN2_HI * e


@numba.njit(cache=True, nogil=True, fastmath={"contract"}, inline="always")
def _sum_rows(
    logits, top, pred, labels, edges, r0, r1, buf, count, conf_sum, correct, sums
):  # pragma: no cover - numba
    """Adds the sums of the image rows ``r0..r1-1`` (over all images' rows in order)."""
    n_img, k_classes, height, width = logits.shape
    slots = edges.shape[0]  # the last edge (1.0) opens torchmetrics' extra slot
    s, q, d, exp_d, log_s, scale = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5]
    bits = scale.view(np.int32)
    nll = 0.0
    brier = 0.0
    for row in range(r0, r1):
        n = row // height
        r = row - n * height
        t = top[n, r]
        lab = labels[n, r]
        for j in range(width):
            s[j] = 0.0
            q[j] = 0.0
        for k in range(k_classes):  # s and q: vectorised loops over the row
            x_row = logits[n, k, r]
            for j in range(width):
                bits[j] = _pow2_bits(_round_log2(x_row[j] - t[j]))
            for j in range(width):
                x = x_row[j] - t[j]
                e = _exp_reduced(x, _round_log2(x)) * scale[j]
                s[j] += e
                q[j] += e * e
        for j in range(width):  # l_label - top (ignored pixels: class 0, not summed)
            lj = lab[j]
            d[j] = logits[n, lj if 0 <= lj < k_classes else 0, r, j] - t[j]
        for j in range(width):
            exp_d[j] = _exp(d[j])
        for j in range(width):
            log_s[j] = _log(s[j])
        p_row = pred[n, r]
        for j in range(width):
            lj = lab[j]
            if lj < 0 or lj >= k_classes:
                continue
            c = _F32(1.0) / s[j]
            c64 = float(c)
            nll += float(log_s[j]) - float(d[j])
            brier += float(q[j]) * c64 * c64 - 2.0 * float(exp_d[j]) * c64 + 1.0
            g = min(int(c * _F32(slots - 1)), slots - 1)  # then exactly against the edges
            while g > 0 and c < edges[g]:
                g -= 1
            while g < slots - 1 and c >= edges[g + 1]:
                g += 1
            count[g] += 1
            conf_sum[g] += c64
            if p_row[j] == lj:
                correct[g] += 1
    sums[0] += nll
    sums[1] += brier


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def _sum_blocks(
    logits, top, pred, labels, edges, block_rows, b0, b1, count, conf_sum, correct, sums
):  # pragma: no cover - numba
    """The sums of each row block ``b0..b1-1`` (``block_rows`` rows each) into ``count[b]``,
    ``conf_sum[b]``, ``correct[b]`` and ``sums[b]``."""
    rows = logits.shape[0] * logits.shape[2]
    buf = np.empty((6, logits.shape[3]), np.float32)
    for b in range(b0, b1):
        _sum_rows(logits, top, pred, labels, edges, b * block_rows,
                  min((b + 1) * block_rows, rows), buf, count[b], conf_sum[b], correct[b], sums[b])  # fmt: skip


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
    args = (x, t, p, lab, e, _BLOCK_ROWS)
    if threads == 1:
        _sum_blocks(*args, 0, blocks, count, conf_sum, correct, sums)
    else:
        # blocks handed out one at a time: a thread slowed down (the cores are shared with
        # torch's idling OpenMP threads and the loader workers) takes fewer
        ticket = iter(range(blocks))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    b = next(ticket, None)
                if b is None:
                    return
                _sum_blocks(*args, b, b + 1, count, conf_sum, correct, sums)

        pool = _pool(threads - 1)
        jobs = [pool.submit(work) for _ in range(threads - 1)]
        work()  # this thread too
        for job in jobs:
            job.result()
    nll, brier = sums.sum(0)  # over the blocks, in order: the same for any thread count
    return (
        torch.from_numpy(count.sum(0)), torch.from_numpy(conf_sum.sum(0)),
        torch.from_numpy(correct.sum(0)), torch.tensor(nll, dtype=torch.float64),
        torch.tensor(brier, dtype=torch.float64),
    )  # fmt: skip

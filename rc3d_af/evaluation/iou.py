"""The one numpy segment IoU (float64), in the two conventions the evaluators use.

``"activitynet"`` is the official ActivityNet ``segment_iou``: intersection / (len_a + len_b -
intersection), with the same operation order so that values at a threshold agree bit for bit.
``"thumos14"`` is the THUMOS14 kit's ``IntervalOverlapValSeconds``: each interval is ordered as
[min, max], IoU = intersection / (largest end - smallest start), and 0 unless the intersection
is > 0. Both are mathematically equal where segments overlap; their float64 roundings can differ,
which matters only for IoU values that sit exactly on a threshold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

IoUKind = Literal["activitynet", "thumos14"]

__all__ = ["IoUKind", "segment_iou_np"]


def segment_iou_np(
    a: np.ndarray, b: np.ndarray, *, kind: IoUKind = "activitynet", aligned: bool = False
) -> np.ndarray:
    """Temporal IoU of segments ``a`` (N, 2) and ``b`` (M, 2), ``[start, end]`` in seconds.

    Returns float64 (N, M), or (N,) with ``aligned=True`` (then M == N and row i pairs a[i], b[i]).
    Zero-length segments are allowed; a pair with a zero union has IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    if aligned:
        if len(a) != len(b):
            raise ValueError(f"segment_iou_np: aligned=True needs as many segments in a as in b, "
                             f"got {len(a)} and {len(b)}")
        a_start, a_end, b_start, b_end = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    else:
        a_start, a_end = a[:, :1], a[:, 1:]
        b_start, b_end = b[:, 0][None, :], b[:, 1][None, :]
    if kind == "thumos14":
        a_start, a_end = np.minimum(a_start, a_end), np.maximum(a_start, a_end)
        b_start, b_end = np.minimum(b_start, b_end), np.maximum(b_start, b_end)
        intersection = np.minimum(a_end, b_end) - np.maximum(a_start, b_start)
        union = np.maximum(a_end, b_end) - np.minimum(a_start, b_start)
        overlapping = intersection > 0
    elif kind == "activitynet":
        intersection = (np.minimum(a_end, b_end) - np.maximum(a_start, b_start)).clip(0)
        union = (b_end - b_start) + (a_end - a_start) - intersection
        overlapping = union > 0
    else:
        raise ValueError(f"segment_iou_np: kind must be 'activitynet' or 'thumos14', got {kind!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlapping, intersection / np.where(overlapping, union, 1.0), 0.0)

"""Argument checks shared by every public op: each failure names the argument and what was expected.

The compiled kernels repeat the cheap structural checks with TORCH_CHECK, but users meet these
Python messages first. Structural checks (type, shape, dtype, device) read no tensor data; value
checks (NaN, ``end < start``) do, which costs a host synchronisation on CUDA: the ops skip them
when called with ``check_values=False``.
"""

from __future__ import annotations

import math

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def check_floating(tensor: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES) -> None:
    if tensor.dtype not in dtypes:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name}: expected dtype {allowed}, got {str(tensor.dtype).removeprefix('torch.')}")


def check_segments(
    segments: object, name: str = "segments", *, columns: int = 2, values: bool = True
) -> torch.Tensor:
    """``segments``: floating ``[N, columns]``; with ``values``, the last two columns are
    (start, end) with no NaN and end >= start."""
    segments = check_tensor(segments, name)
    if segments.dim() != 2 or segments.size(1) != columns:
        layout = "(start, end)" if columns == 2 else "(batch_index, start, end)"
        raise ValueError(f"{name}: expected shape [N, {columns}] of {layout}, got {list(segments.shape)}")
    check_floating(segments, name)
    if values and segments.numel():
        bounds = segments[:, -2:]
        if torch.isnan(bounds).any():
            raise ValueError(f"{name}: contains NaN")
        reversed_rows = (bounds[:, 1] < bounds[:, 0]).nonzero()
        if reversed_rows.numel():
            row = int(reversed_rows[0, 0])
            raise ValueError(
                f"{name}: end < start in row {row} ({bounds[row].tolist()}); segments must be (start, end)"
            )
    return segments


def check_scores(
    scores: object, segments: torch.Tensor, name: str = "scores", *, values: bool = True
) -> torch.Tensor:
    """``scores``: ``[N]``, same dtype and device as ``segments``; with ``values``, no NaN."""
    scores = check_tensor(scores, name)
    if scores.dim() != 1 or scores.size(0) != segments.size(0):
        expected = f"[{segments.size(0)}] (one per segment)"
        raise ValueError(f"{name}: expected shape {expected}, got {list(scores.shape)}")
    if scores.dtype != segments.dtype:
        raise TypeError(f"{name}: dtype {scores.dtype} differs from segments dtype {segments.dtype}")
    check_same_device(segments=segments, **{name: scores})
    if values and scores.numel() and torch.isnan(scores).any():
        raise ValueError(f"{name}: contains NaN")
    return scores


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"tensors must be on one device, got {listed}")


def check_probability(value: object, name: str) -> float:
    """A threshold in [0, 1] (IoU thresholds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name}: expected a number in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
    return float(value)


def check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return value


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def check_labels(labels: object, segments: torch.Tensor, name: str = "labels") -> torch.Tensor:
    """``labels``: integer ``[N]`` (one class id per segment), on the device of ``segments``."""
    labels = check_tensor(labels, name)
    if labels.dim() != 1 or labels.size(0) != segments.size(0):
        raise ValueError(
            f"{name}: expected shape [{segments.size(0)}] (one per segment), got {list(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer dtype, got {str(labels.dtype).removeprefix('torch.')}")
    check_same_device(segments=segments, **{name: labels})
    return labels


def check_number(value: object, name: str, *, positive: bool = False) -> float:
    """A real number, not NaN (and > 0 when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name}: expected a positive number, got {value}")
    return float(value)

"""Windows as a ``torch.utils.data.Dataset``, and the batch collation the engine uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rc3d_af.data.features import FeatureStore
from rc3d_af.data.windows import Window
from rc3d_af.errors import InputError

__all__ = ["WindowDataset", "collate_windows", "window_features"]


def window_features(store: FeatureStore, window: Window, window_size: int) -> np.ndarray:
    """The ``(window_size, D)`` float32 input of one window.

    Position ``p < window.length`` holds the video at feature index ``start_index + p * scale``,
    linearly interpolated between the two neighbouring features (exact rows when ``scale == 1``)
    and clamped to the last feature; positions from ``length`` on repeat the last valid position
    (the reference's padding).
    """
    total = store.num_features(window.video_id)
    if not 0 <= window.start_index < total or not 0 < window.length <= window_size:
        raise InputError(
            f"window of video '{window.video_id}' (start {window.start_index}, length {window.length}) "
            f"does not fit a video of {total} features and windows of {window_size}"
        )
    if window.scale == 1.0 and window.start_index + window.length <= total:
        # Sliding windows: exact rows (what the interpolation below gives, without its arithmetic).
        values = store.read(window.video_id, window.start_index, window.start_index + window.length)
    else:
        where = window.start_index + np.arange(window.length) * window.scale
        where = np.minimum(where, total - 1)
        lower = np.floor(where).astype(np.int64)
        upper = np.minimum(lower + 1, total - 1)
        first, stop = int(lower[0]), int(upper[-1]) + 1
        rows = store.read(window.video_id, first, stop)  # one contiguous read per window
        weight = (where - lower).astype(np.float32)[:, None]
        values = rows[lower - first] * (1.0 - weight) + rows[upper - first] * weight
    if window.length < window_size:
        padding = np.repeat(values[-1:], window_size - window.length, axis=0)
        values = np.concatenate([values, padding], axis=0)
    return values


class WindowDataset(Dataset):
    """Model inputs for a list of windows, read from a :class:`FeatureStore`.

    Each item is a dict: ``features`` float32 ``[D, window_size]``, ``gt_segments`` float32
    ``[M, 2]`` (window positions), ``gt_labels`` int64 ``[M]``, ``video_id`` str, ``start_index``
    int, ``length`` int, ``scale`` float. A video's file is opened once (memory-mapped) and every
    window reads one slice of it.
    """

    def __init__(self, windows: Sequence[Window], store: FeatureStore, window_size: int = 128) -> None:
        if window_size < 1:
            raise InputError(f"window_size must be at least 1, got {window_size}")
        self.windows = list(windows)
        self.store = store
        self.window_size = window_size

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        window = self.windows[index]
        features = window_features(self.store, window, self.window_size)
        return {
            "features": torch.from_numpy(np.ascontiguousarray(features.T)),
            "gt_segments": torch.from_numpy(window.gt_segments.astype(np.float32).reshape(-1, 2)),
            "gt_labels": torch.from_numpy(window.gt_labels.astype(np.int64).reshape(-1)),
            "video_id": window.video_id,
            "start_index": window.start_index,
            "length": window.length,
            "scale": window.scale,
        }


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items.

    Returns:
        ``features`` float32 ``[B, D, T]``; ``gt_segments`` and ``gt_labels`` lists of B tensors
        (their lengths differ); ``video_id`` list of str; ``start_index`` and ``length`` int64
        ``[B]``; ``scale`` float64 ``[B]``.
    """
    if not items:
        raise InputError("cannot collate an empty batch")
    return {
        "features": torch.stack([item["features"] for item in items]),
        "gt_segments": [item["gt_segments"] for item in items],
        "gt_labels": [item["gt_labels"] for item in items],
        "video_id": [item["video_id"] for item in items],
        "start_index": torch.tensor([item["start_index"] for item in items], dtype=torch.int64),
        "length": torch.tensor([item["length"] for item in items], dtype=torch.int64),
        "scale": torch.tensor([item["scale"] for item in items], dtype=torch.float64),
    }

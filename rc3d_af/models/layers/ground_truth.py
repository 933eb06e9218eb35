"""A batch's inputs: the features' shape, and the ground truth (validation, padding to one tensor,
coverage counts).

Ground truths are in window positions; class ids are 0..C-1 (detectors use 1..C for the actions and 0
for background in their targets).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rc3d_af.errors import InputError


def check_features(features: object, in_channels: int, multiple: int, rule: str) -> int:
    """``features [B, D, T]`` with ``D == in_channels`` and ``T`` a positive multiple of ``multiple``
    (``rule`` says where it comes from); returns ``T``."""
    if not isinstance(features, torch.Tensor) or features.dim() != 3:
        shape = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise InputError(f"features: expected a tensor [B, D, T], got {shape}")
    if features.size(1) != in_channels:
        raise InputError(
            f"features: expected D = {in_channels} channels (the model's in_channels), got {features.size(1)}"
        )
    if features.size(2) == 0 or features.size(2) % multiple:
        raise InputError(
            f"features: window length T = {features.size(2)} must be a positive multiple of "
            f"{rule} = {multiple}"
        )
    return features.size(2)


def check_ground_truth(
    gt_segments: torch.Tensor, gt_labels: torch.Tensor, num_classes: int, index: int
) -> None:
    """Validate window ``index``'s ground truth: ``[M, 2]`` (start <= end) and ``[M]`` ids in 0..C-1."""
    _check_shapes(gt_segments, gt_labels, index)
    if gt_segments.numel() and not bool((gt_segments[:, 1] >= gt_segments[:, 0]).all()):
        raise InputError(f"gt_segments[{index}]: every row must be (start, end) with end >= start")
    if gt_labels.numel() and not (int(gt_labels.min()) >= 0 and int(gt_labels.max()) < num_classes):
        raise InputError(f"gt_labels[{index}]: expected class ids in [0, {num_classes - 1}]")


def _check_shapes(gt_segments: torch.Tensor, gt_labels: torch.Tensor, index: int) -> None:
    if gt_segments.dim() != 2 or gt_segments.size(1) != 2:
        raise InputError(f"gt_segments[{index}]: expected shape [M, 2], got {list(gt_segments.shape)}")
    if gt_labels.shape != (gt_segments.size(0),):
        raise InputError(
            f"gt_labels[{index}]: expected shape [{gt_segments.size(0)}] (one per segment), "
            f"got {list(gt_labels.shape)}"
        )


def check_batch(
    gt_segments: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], batch: int, num_classes: int
) -> None:
    """One valid ground-truth entry per window of a batch of ``batch`` windows."""
    if len(gt_segments) != batch or len(gt_labels) != batch:
        raise InputError(
            f"gt_segments/gt_labels: expected {batch} entries (one per window), "
            f"got {len(gt_segments)} and {len(gt_labels)}"
        )
    for b, (segments, labels) in enumerate(zip(gt_segments, gt_labels, strict=True)):
        _check_shapes(segments, labels, b)
    if not batch:
        return
    # The values of the whole batch at once (one host sync); the window at fault is looked up only
    # when something is wrong.
    segments, labels = torch.cat(list(gt_segments)), torch.cat(list(gt_labels))
    wrong = (~(segments[:, 1] >= segments[:, 0])).any() | ((labels < 0) | (labels >= num_classes)).any()
    if bool(wrong):
        for b, (s, lab) in enumerate(zip(gt_segments, gt_labels, strict=True)):
            check_ground_truth(s, lab, num_classes, b)


def pad_ground_truth(
    gt_segments: Sequence[torch.Tensor], gt_labels: Sequence[torch.Tensor], like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ground truths padded to ``segments [B, M, 2]`` (dtype/device of ``like``), ``labels [B, M]``
    and ``valid [B, M]``, with ``M >= 1``."""
    batch = len(gt_segments)
    lengths = [len(s) for s in gt_segments]
    width = max([1, *lengths])
    segments = like.new_zeros(batch, width, 2)
    labels = torch.zeros(batch, width, dtype=torch.int64, device=like.device)
    counts = torch.tensor(lengths, dtype=torch.int64, device=like.device)
    valid = torch.arange(width, device=like.device)[None, :] < counts[:, None]
    if sum(lengths):
        # A boolean mask fills in row-major order: window by window, each window's rows in order.
        segments[valid] = torch.cat([s.to(like) for s in gt_segments])
        labels[valid] = torch.cat([lab.to(like.device) for lab in gt_labels])
    return segments, labels, valid


def count_untaken(chosen: torch.Tensor, taken: torch.Tensor, valid: torch.Tensor) -> int:
    """Valid ground truths (``[B, M]``) that no position (``chosen [B, N]`` where ``taken``) points to."""
    width = valid.size(1)
    hits = torch.zeros(valid.size(0), width + 1, dtype=torch.bool, device=valid.device)
    hits.scatter_(1, torch.where(taken, chosen, width), True)  # non-taken positions land in column M
    return int((valid & ~hits[:, :width]).sum())

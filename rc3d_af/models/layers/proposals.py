"""Proposal selection per window (R-C3D's proposal layer), batched, with NMS on the model's device.

For each window: drop candidates no longer than ``min_length``, keep the ``pre_nms_topk`` best by
score, NMS at ``nms_iou`` (one ``batched_nms_1d`` call for the whole batch, the window index as the
label, so windows never suppress each other), then the ``post_nms_topk`` best survivors.
"""

from __future__ import annotations

import torch

from rc3d_af.ops import batched_nms_1d


def select_proposals(
    segments: torch.Tensor,
    scores: torch.Tensor,
    *,
    pre_nms_topk: int,
    nms_iou: float,
    post_nms_topk: int,
    min_length: float = 0.0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``segments [B, N, 2]`` (start, end) and ``scores [B, N]`` -> per window ``(segments [K_b, 2],
    scores [K_b])`` by decreasing score, ``K_b <= post_nms_topk`` (detached)."""
    segments, scores = segments.detach(), scores.detach()
    batch, num = scores.shape
    long_enough = (segments[..., 1] - segments[..., 0]) > min_length
    scores = scores.masked_fill(~long_enough, float("-inf"))
    top_scores, top_index = scores.topk(min(pre_nms_topk, num), dim=1)  # [B, k], sorted
    top_segments = segments.gather(1, top_index[..., None].expand(-1, -1, 2))
    windows = torch.arange(batch, device=scores.device)[:, None].expand_as(top_scores)
    keep = torch.isfinite(top_scores).flatten()
    flat_segments, flat_scores = top_segments.flatten(0, 1)[keep], top_scores.flatten()[keep]
    flat_windows = windows.flatten()[keep]
    kept = batched_nms_1d(
        flat_segments, flat_scores, flat_windows, nms_iou, check_values=False
    )  # by decreasing score
    kept = kept[rank_within_group(flat_windows[kept]) < post_nms_topk]
    return [(flat_segments[k], flat_scores[k]) for k in split_by_window(kept, flat_windows[kept], batch)]


def split_by_window(indices: torch.Tensor, windows: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """``indices [K]`` with their window ``windows [K]`` -> one index tensor per window of ``batch``,
    each in the order of ``indices``."""
    grouped = indices[windows.argsort(stable=True)]
    counts = torch.bincount(windows, minlength=batch).tolist()
    return list(grouped.split(counts))


def rank_within_group(groups: torch.Tensor) -> torch.Tensor:
    """For entries in score order, each entry's rank among the earlier entries of its group (0-based)."""
    if groups.numel() == 0:
        return groups
    grouped = groups.argsort(stable=True)  # grouped, score order kept inside a group
    _, counts = groups[grouped].unique_consecutive(return_counts=True)
    starts = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    rank = torch.empty_like(groups)
    rank[grouped] = torch.arange(groups.numel(), device=groups.device) - starts
    return rank

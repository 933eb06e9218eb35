"""Seeded sampling of training examples, from explicit random draws (no hidden global state needed).

Every sampler takes ``priority [B, N]``: uniform draws from :func:`uniform` (or, for hard negative
mining, a model score) and picks the highest-priority candidates, so that a hand-made priority drives
a test and a seeded generator per window makes the draws independent of how windows are batched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE


def uniform(
    shape: tuple[int, int],
    generators: Sequence[torch.Generator] | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Uniform draws in ``[0, 1)`` of ``shape = (B, N)`` on ``device``.

    ``generators``: one per window (row ``b`` drawn from ``generators[b]`` on that generator's
    device), or None for torch's global CPU generator (a seeded run then draws the same numbers on
    every device).
    """
    if generators is None:
        return torch.rand(shape).to(device)
    if len(generators) != shape[0]:
        raise ValueError(f"generators: expected {shape[0]} (one per window), got {len(generators)}")
    rows = [torch.rand(shape[1], generator=g, device=g.device) for g in generators]
    return torch.stack(rows).to(device) if rows else torch.zeros(shape, device=device)


def top_priority(candidates: torch.Tensor, count: torch.Tensor, priority: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` mask of the ``count[b]`` candidates (``candidates [B, N]`` bool) of highest
    ``priority [B, N]`` in each window (equal priorities: lower index first; all candidates when
    ``count[b]`` exceeds them); ``count [B]`` holds whole numbers, of any dtype."""
    count = count.to(torch.int64)
    masked = priority.masked_fill(~candidates, float("-inf"))
    most = min(int(count.max()), masked.size(1)) if count.numel() else 0
    if most <= 0:
        return torch.zeros_like(candidates)
    # The count[b]-th highest priority of each window (from one top-k, not a full sort): everything
    # above it is taken, and of the candidates equal to it the first ones by index fill the count.
    threshold = masked.topk(most, dim=1).values.gather(1, (count.clamp(1, most) - 1)[:, None])
    above = masked > threshold
    tied = (masked == threshold) & candidates
    needed = count[:, None] - above.sum(dim=1, keepdim=True)
    # Non-candidates (-inf) are never above the threshold nor tied; a count of 0 needs nothing.
    return above | (tied & (tied.cumsum(dim=1) <= needed))


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, priority: torch.Tensor
) -> torch.Tensor:
    """Fixed-size sampling (Faster R-CNN / R-C3D): per window at most
    ``int(num_samples * positive_fraction)`` positives, negatives filling up to ``num_samples``;
    every other prior becomes IGNORE. ``labels [B, N]`` in {IGNORE, NEGATIVE, POSITIVE}."""
    positive, negative = labels == POSITIVE, labels == NEGATIVE
    num_pos = positive.sum(dim=1).clamp(max=int(num_samples * positive_fraction))
    num_neg = torch.minimum(negative.sum(dim=1), num_samples - num_pos)
    keep = top_priority(positive, num_pos, priority) | top_priority(negative, num_neg, priority)
    return torch.where(keep, labels, torch.full_like(labels, IGNORE))


def draw_with_replacement(candidates: torch.Tensor, count: int, draws: torch.Tensor) -> torch.Tensor:
    """``count`` candidates per window drawn uniformly with replacement.

    ``candidates [B, N]`` bool; ``draws [B, count]`` uniform in ``[0, 1)``. Returns indices
    ``[B, count]`` into N; a window without candidates gets -1 everywhere.
    """
    available = candidates.sum(dim=1, keepdim=True)  # [B, 1]
    pick = torch.minimum((draws * available).floor().long(), (available - 1).clamp(min=0))
    # The k-th candidate of a window: candidates first (in index order), then the rest.
    order = (~candidates).to(torch.int8).argsort(dim=1, stable=True)
    index = order.gather(1, pick)
    return torch.where(available > 0, index, torch.full_like(index, -1))

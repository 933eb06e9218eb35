"""A2Net losses, equations (4)-(10), over a batch of windows.

Anchor-free: cross-entropy over all ``N`` points (6) and smooth-L1 on both distances, averaged over
the ``N_p`` foreground points (7). Anchor-based: cross-entropy over the sampled positives and
negatives (8), squared error between ``sigmoid(overlap)`` and the IoU target (9) and smooth-L1 on
(delta_c, delta_w) (10), both averaged over the positives. Combination (4)-(5):
``L = (L_reg^af + gamma_af L_cls^af) + gamma (L_cls^ab + gamma1 L_o^ab + gamma2 L_reg^ab)``.
A term with nothing to average (no foreground point, no positive anchor) is 0, still attached to the
graph so that every parameter gets a (zero) gradient.

Every average goes through :func:`mean_over`, the one loss normaliser of both detectors. Under
data-parallel training the engine wraps a step in :func:`global_counts`, so that each process divides
its sums by the count over the GLOBAL batch: the processes' terms then add up to the terms of one
process holding the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F

from rc3d_af.models.config import ModelConfig
from rc3d_af.models.targets import AnchorTargets, PointTargets


def anchor_free_losses(
    cls_logits: torch.Tensor, distances: torch.Tensor, targets: PointTargets
) -> dict[str, torch.Tensor]:
    """``cls_logits [B, Np, C+1]``, ``distances [B, Np, 2]`` (regression units) and their targets
    -> ``af_cls`` (6) and ``af_reg`` (7)."""
    labels, target_distances = targets.labels, targets.distances
    af_cls = mean_over(
        F.cross_entropy(cls_logits.flatten(0, 1).float(), labels.flatten(), reduction="sum"),
        labels.numel(),
        cls_logits,
    )
    foreground = labels > 0
    af_reg = mean_over(
        F.smooth_l1_loss(distances[foreground].float(), target_distances[foreground], reduction="sum"),
        int(foreground.sum()),
        distances,
    )
    return {"af_cls": af_cls, "af_reg": af_reg}


def anchor_based_losses(
    cls_logits: torch.Tensor, overlap_logits: torch.Tensor, deltas: torch.Tensor, targets: AnchorTargets
) -> dict[str, torch.Tensor]:
    """``cls_logits [B, Na, C+1]``, ``overlap_logits [B, Na]``, ``deltas [B, Na, 2]`` and their targets
    -> ``ab_cls`` (8), ``ab_overlap`` (9) and ``ab_reg`` (10)."""
    labels = targets.labels  # [B, Na], IGNORE = -1
    target_overlaps, target_deltas = targets.overlaps, targets.deltas
    sampled = labels >= 0
    ab_cls = mean_over(
        F.cross_entropy(cls_logits[sampled].float(), labels[sampled], reduction="sum"),
        int(sampled.sum()),
        cls_logits,
    )
    positive = labels > 0
    num_pos = int(positive.sum())
    predicted_overlaps = torch.sigmoid(overlap_logits[positive].float())
    ab_overlap = mean_over(
        F.mse_loss(predicted_overlaps, target_overlaps[positive], reduction="sum"), num_pos, overlap_logits
    )
    ab_reg = mean_over(
        F.smooth_l1_loss(deltas[positive].float(), target_deltas[positive], reduction="sum"), num_pos, deltas
    )
    return {"ab_cls": ab_cls, "ab_overlap": ab_overlap, "ab_reg": ab_reg}


def weighted_terms(terms: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Each loss term of ``terms`` times its coefficient in equations (4)-(5); the terms of a branch
    absent from ``terms`` (single-branch variant) are absent from the result."""
    weights = {
        "af_cls": cfg.loss_gamma_af,
        "af_reg": 1.0,
        "ab_cls": cfg.loss_gamma,
        "ab_overlap": cfg.loss_gamma * cfg.loss_gamma1,
        "ab_reg": cfg.loss_gamma * cfg.loss_gamma2,
    }
    weighted = {name: weight * terms[name] for name, weight in weights.items() if name in terms}
    if not weighted:
        raise ValueError("terms: expected the anchor-free and/or anchor-based loss terms")
    return weighted


def total_loss(terms: dict[str, torch.Tensor], cfg: ModelConfig) -> torch.Tensor:
    """Equations (4)-(5): the sum of :func:`weighted_terms`."""
    return sum(weighted_terms(terms, cfg).values())


_COUNT_REDUCTION: ContextVar[Callable[[int], int] | None] = ContextVar("count_reduction", default=None)


@contextlib.contextmanager
def global_counts(reduce: Callable[[int], int]) -> Iterator[None]:
    """Within the block, :func:`mean_over` divides by ``reduce(count)`` (the engine's sum of the count
    over every process) instead of the local ``count``; every process must compute the same terms
    in the same order, which the models do."""
    token = _COUNT_REDUCTION.set(reduce)
    try:
        yield
    finally:
        _COUNT_REDUCTION.reset(token)


def mean_over(summed: torch.Tensor, count: int, source: torch.Tensor) -> torch.Tensor:
    """``summed / count``, or a graph-attached 0 built from ``source`` when ``count`` is 0.

    ``count`` is the local batch's; inside :func:`global_counts` the global batch's is used."""
    reduce = _COUNT_REDUCTION.get()
    if reduce is not None:
        count = reduce(count)
    if count == 0:
        return source.sum() * 0.0
    return summed / count

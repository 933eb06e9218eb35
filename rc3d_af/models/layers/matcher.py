"""The one matcher: a quality matrix (IoU of priors with ground truths) -> matches and labels.

For every prior ``n`` of window ``b`` the best ground truth is ``argmax_m quality[b, n, m]`` (ties:
the first ground truth); its quality falls into one of the intervals cut by ``thresholds`` and the
prior takes that interval's label. With ``strict=False`` (detectron2's convention) the intervals are
``[t_i, t_{i+1})``; with ``strict=True`` they are ``(t_i, t_{i+1}]``, which expresses A2Net's
"positive when IoU > 0.5". ``allow_low_quality_matches`` (Faster R-CNN / R-C3D) also makes
positive every prior whose quality equals some ground truth's best quality, ties included, when that
best quality is above zero: a ground truth far from every prior still gets one.

Padded ground-truth columns (``valid == False``) and excluded priors (quality ``< 0``, e.g. anchors
crossing the window edge) never match: their quality is treated as -1.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE = -1  # label of a prior left out of the classification loss
NEGATIVE = 0
POSITIVE = 1


@dataclass
class Matches:
    """Result of :class:`Matcher` for ``B`` windows of ``N`` priors."""

    index: torch.Tensor  # [B, N] int64: best ground truth (0 where there is none)
    labels: torch.Tensor  # [B, N] int64: the interval label (or POSITIVE for low-quality matches)
    quality: torch.Tensor  # [B, N]: the best quality (-1 where there is no valid ground truth)


class Matcher:
    """Assign each prior its best ground truth and an interval label.

    Args:
        thresholds: increasing interval boundaries ``t_1 < ... < t_k``.
        labels: ``k + 1`` labels, one per interval (e.g. ``[NEGATIVE, IGNORE, POSITIVE]``).
        allow_low_quality_matches: see the module docstring; the label given is ``POSITIVE``.
        strict: intervals closed on the right instead of the left.
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        *,
        allow_low_quality_matches: bool = False,
        strict: bool = False,
    ) -> None:
        thresholds = [float(t) for t in thresholds]
        if any(b <= a for a, b in itertools.pairwise(thresholds)):
            raise ValueError(f"thresholds: expected increasing values, got {thresholds}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(
                f"labels: expected {len(thresholds) + 1} labels (one per interval), got {labels}"
            )
        self.thresholds = thresholds
        self.labels = [int(label) for label in labels]
        self.allow_low_quality_matches = allow_low_quality_matches
        self.strict = strict

    def __call__(self, quality: torch.Tensor, valid: torch.Tensor | None = None) -> Matches:
        """``quality [B, N, M]`` (``M >= 1``; padded columns marked by ``valid [B, M]``) -> matches."""
        if valid is not None:
            quality = torch.where(valid[:, None, :], quality, torch.full_like(quality, -1.0))
        best, index = quality.max(dim=2)  # [B, N]; ties: the first ground truth
        labels = torch.full_like(index, self.labels[0])
        for threshold, label in zip(self.thresholds, self.labels[1:], strict=True):
            above = best > threshold if self.strict else best >= threshold
            labels = torch.where(above, torch.full_like(labels, label), labels)
        if self.allow_low_quality_matches:
            labels = torch.where(_low_quality(quality), torch.full_like(labels, POSITIVE), labels)
        return Matches(index, labels, best)


def _low_quality(quality: torch.Tensor) -> torch.Tensor:
    """``[B, N]``: priors whose quality equals some ground truth's best (positive) quality."""
    best_per_gt = quality.max(dim=1, keepdim=True).values  # [B, 1, M]
    return ((quality == best_per_gt) & (best_per_gt > 0)).any(dim=2)

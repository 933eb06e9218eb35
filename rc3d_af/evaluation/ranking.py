"""Ranking by decreasing score under the two tie rules of the ActivityNet-protocol evaluators.

``"official"`` (default) ranks exactly as the official ActivityNet evaluators do: the items of a
group (a class's predictions in ``eval_detection.py``, a video's proposals in ``eval_proposal.py``)
are taken in input order and ordered by ``np.argsort(scores)[::-1]``, numpy's default sort kind
reversed. That sort (``"quicksort"``) is not stable, so the order of tied scores is whatever
numpy's sort produces, and it depends on the numpy version and on the CPU: numpy dispatches it to
x86-simd-sort on x86 CPUs with AVX-512 (numpy >= 1.25) or AVX2 (numpy >= 2.0), and to its own
introsort (insertion sort below 17 items) elsewhere. Measured with numpy 2.4.6 (forcing the lower
levels with ``NPY_DISABLE_CPU_FEATURES``): the three give different tie orders, and the official
evaluator's own mAP@0.1 on A2Net's af38 file is 57.41 with AVX-512, 57.42 with AVX2 and 57.34
without SIMD. This rule reproduces the official evaluator run with the same numpy on the same
machine.

``"stable"`` keeps tied items in input order (videos in order of first appearance in the results,
detections of a video in file order): deterministic across numpy versions and CPUs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from rc3d_af.errors import InputError

TieRule = Literal["official", "stable"]
TIE_RULES: tuple[str, ...] = ("official", "stable")

__all__ = ["TIE_RULES", "TieRule", "check_tie_rule", "descending_order", "grouped_rank"]


def check_tie_rule(tie_rule: str) -> None:
    if tie_rule not in TIE_RULES:
        raise InputError(f"tie rule: expected one of {TIE_RULES}, got {tie_rule!r}")


def descending_order(values: np.ndarray, tie_rule: TieRule) -> np.ndarray:
    """(N,) indices of ``values`` (N,) from highest to lowest, ties by ``tie_rule``."""
    if tie_rule == "official":
        return np.argsort(values)[::-1]
    return np.argsort(-values, kind="stable")


def grouped_rank(scores: np.ndarray, groups: np.ndarray, tie_rule: TieRule) -> np.ndarray:
    """(N,) int64 distinct ranking positions: groups by increasing id, within each group its items
    (taken in index order) by decreasing score.

    Args:
        scores: (N,) float64.
        groups: (N,) int64 group id of each item (class or video).
    """
    check_tie_rule(tie_rule)
    if tie_rule == "stable":
        order = np.lexsort((-scores, groups))
    else:
        by_group = np.argsort(groups, kind="stable")
        bounds = np.flatnonzero(groups[by_group][1:] != groups[by_group][:-1]) + 1
        pieces = [part[descending_order(scores[part], tie_rule)] for part in np.split(by_group, bounds)]
        order = np.concatenate(pieces) if len(scores) else by_group
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank

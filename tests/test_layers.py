"""The detector-agnostic parts of rc3d_af.models.layers on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch

from rc3d_af.models.layers.coder import SegmentCoder
from rc3d_af.models.layers.ground_truth import pad_ground_truth
from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from rc3d_af.models.layers.point_assigner import assign_points
from rc3d_af.models.layers.priors import anchor_grid, doubling_length_ranges, point_grid, point_levels
from rc3d_af.models.layers.proposals import rank_within_group, select_proposals
from rc3d_af.models.layers.sampling import draw_with_replacement, subsample_labels, top_priority, uniform
from rc3d_af.models.layers.segments import centre_width_to_segments, segments_to_rois
from rc3d_af.ops import nms_1d, segment_iou


# -- matcher -------------------------------------------------------------------------------------------
def test_matcher_intervals_left_closed_and_strict() -> None:
    quality = torch.tensor([[[0.2, 0.1], [0.3, 0.0], [0.5, 0.69], [0.7, 0.1], [0.0, 0.95]]])
    m = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE])(quality)
    assert m.labels.tolist() == [[NEGATIVE, IGNORE, IGNORE, POSITIVE, POSITIVE]]
    assert m.index.tolist() == [[0, 0, 1, 0, 1]]
    assert m.quality[0].tolist() == pytest.approx([0.2, 0.3, 0.69, 0.7, 0.95])
    # A2Net: positive only when IoU > 0.5 (0.5 itself is not).
    strict = Matcher([0.5], [NEGATIVE, POSITIVE], strict=True)(torch.tensor([[[0.5], [0.51], [0.2]]]))
    assert strict.labels.tolist() == [[NEGATIVE, POSITIVE, NEGATIVE]]


def test_matcher_low_quality_rule_ties_and_zero() -> None:
    # GT 0's best IoU is 0.25 (priors 1 and 2 tie), GT 1's best is 0.8 (prior 3); GT 2 overlaps nothing.
    quality = torch.tensor([[[0.1, 0.0, 0.0], [0.25, 0.0, 0.0], [0.25, 0.1, 0.0], [0.0, 0.8, 0.0]]])
    plain = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE])(quality)
    assert plain.labels.tolist() == [[NEGATIVE, NEGATIVE, NEGATIVE, POSITIVE]]
    low = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)(quality)
    assert low.labels.tolist() == [[NEGATIVE, POSITIVE, POSITIVE, POSITIVE]]
    assert low.index.tolist() == [[0, 0, 0, 1]]  # a low-quality positive keeps its own best ground truth


def test_matcher_ignores_padding_and_excluded_priors() -> None:
    quality = torch.tensor([[[0.9, 0.95], [0.2, 0.6]]])
    valid = torch.tensor([[True, False]])
    m = Matcher([0.5], [NEGATIVE, POSITIVE])(quality, valid)
    assert m.index.tolist() == [[0, 0]] and m.labels.tolist() == [[POSITIVE, NEGATIVE]]
    # No valid ground truth at all: every prior gets the lowest label, quality -1.
    empty = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)(
        torch.zeros(1, 3, 1), torch.tensor([[False]])
    )
    assert empty.labels.tolist() == [[NEGATIVE] * 3] and empty.quality.tolist() == [[-1.0] * 3]
    with pytest.raises(ValueError, match="labels: expected 3 labels"):
        Matcher([0.3, 0.7], [0, 1])
    with pytest.raises(ValueError, match="increasing"):
        Matcher([0.7, 0.3], [0, -1, 1])


# -- coder ---------------------------------------------------------------------------------------------
def test_coder_by_hand_and_round_trip() -> None:
    prior = torch.tensor([[8.0, 12.0]])  # centre 10, width 4
    coder = SegmentCoder((0.1, 0.2))
    deltas = coder.encode(torch.tensor([[9.0, 17.0]]), prior)  # centre 13, width 8
    assert deltas[0].tolist() == pytest.approx([(13 - 10) / (0.1 * 4), math.log(2) / 0.2])
    g = torch.Generator().manual_seed(0)
    start = torch.rand(300, generator=g, dtype=torch.float64) * 100
    segments = torch.stack([start, start + 0.5 + torch.rand(300, generator=g, dtype=torch.float64) * 50], -1)
    p_start = torch.rand(300, generator=g, dtype=torch.float64) * 100
    priors = torch.stack([p_start, p_start + 1 + torch.rand(300, generator=g, dtype=torch.float64) * 30], -1)
    for scales in ((1.0, 1.0), (0.1, 0.2), (0.1, 0.1)):
        coder = SegmentCoder(scales)
        torch.testing.assert_close(coder.decode(coder.encode(segments, priors), priors), segments)


def test_coder_class_specific_broadcast() -> None:
    coder = SegmentCoder((0.1, 0.2))
    priors = torch.tensor([[0.0, 10.0], [20.0, 24.0]])  # [K, 2]
    targets = torch.tensor(
        [[[1.0, 9.0], [0.0, 20.0], [2.0, 3.0]], [[21.0, 25.0], [18.0, 26.0], [20.0, 24.0]]]
    )
    deltas = coder.encode(targets, priors[:, None, :])  # [K, C, 2]
    assert deltas.shape == (2, 3, 2)
    torch.testing.assert_close(coder.decode(deltas, priors[:, None, :]), targets)
    assert deltas[1, 2].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="scales"):
        SegmentCoder((0.0, 1.0))


def test_coder_caps_the_width_exponent() -> None:
    decoded = SegmentCoder((1.0, 1.0)).decode(torch.tensor([[0.0, 1e4]]), torch.tensor([[0.0, 2.0]]))
    assert torch.isfinite(decoded).all() and decoded[0, 1].item() == pytest.approx(1 + math.exp(8.0))


# -- sampling ------------------------------------------------------------------------------------------
def test_top_priority_counts_and_ties() -> None:
    candidates = torch.tensor([[True, True, False, True, True]])
    priority = torch.tensor([[0.5, 0.9, 1.0, 0.5, 0.1]])
    picked = top_priority(candidates, torch.tensor([3]), priority)
    assert picked.tolist() == [[True, True, False, True, False]]  # 0.9, then the two 0.5 in index order
    assert top_priority(candidates, torch.tensor([10]), priority).tolist() == candidates.tolist()


def _top_priority_by_sorting(candidates: torch.Tensor, count: torch.Tensor, priority: torch.Tensor):
    """The rule spelled out: per window, candidates by descending priority, equal ones by index."""
    picked = torch.zeros_like(candidates)
    for b in range(candidates.size(0)):
        ranked = sorted(
            (i for i in range(candidates.size(1)) if candidates[b, i]), key=lambda i: (-priority[b, i], i)
        )
        picked[b, ranked[: int(count[b])]] = True
    return picked


def test_top_priority_equals_a_full_sort_with_ties_and_short_windows() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        batch = int(torch.randint(1, 5, (1,), generator=g))
        size = int(torch.randint(1, 30, (1,), generator=g))
        candidates = torch.rand(batch, size, generator=g) < 0.7
        # Coarse priorities make ties at the cut-off; counts may exceed the candidates or be 0.
        priority = (
            torch.randint(0, 4, (batch, size), generator=g).float()
            if trial % 2
            else torch.rand(batch, size, generator=g)
        )
        count = torch.randint(0, size + 1, (batch,), generator=g)
        expected = _top_priority_by_sorting(candidates, count, priority)
        assert torch.equal(top_priority(candidates, count, priority), expected), trial
        assert torch.equal(top_priority(candidates, count.float(), priority), expected), trial


def test_subsample_labels_fixed_size_and_fraction() -> None:
    labels = torch.full((3, 200), NEGATIVE)
    labels[0, :50] = POSITIVE  # plenty of both
    labels[1, :5] = POSITIVE  # few positives: negatives fill up
    labels[2, :] = IGNORE
    labels[2, :10] = NEGATIVE  # too few of everything
    g = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    sampled = subsample_labels(labels, 64, 0.5, uniform((3, 200), g))
    assert (sampled == POSITIVE).sum(1).tolist() == [32, 5, 0]
    assert (sampled == NEGATIVE).sum(1).tolist() == [32, 59, 10]
    assert bool(((sampled != IGNORE) <= (labels != IGNORE)).all())  # only candidates are sampled
    again = subsample_labels(
        labels, 64, 0.5, uniform((3, 200), [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    )
    assert torch.equal(sampled, again)


def test_per_window_generators_make_draws_independent_of_batching() -> None:
    together = uniform((2, 5), [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])
    alone = uniform((1, 5), [torch.Generator().manual_seed(8)])
    assert torch.equal(together[1], alone[0])
    with pytest.raises(ValueError, match="one per window"):
        uniform((2, 5), [torch.Generator()])


def test_draw_with_replacement_maps_draws_to_candidates() -> None:
    candidates = torch.tensor([[False, True, False, True, True], [False, False, False, False, False]])
    draws = torch.tensor([[0.0, 0.34, 0.67, 0.999], [0.5, 0.5, 0.5, 0.5]])
    index = draw_with_replacement(candidates, 4, draws)
    assert index.tolist() == [[1, 3, 4, 4], [-1, -1, -1, -1]]


# -- priors and point assignment -----------------------------------------------------------------------
def test_priors_and_length_ranges() -> None:
    anchors = centre_width_to_segments(anchor_grid([3], [2], (2.0, 5.0)))
    assert anchors.tolist() == [[-1, 3], [-4, 6], [1, 5], [-2, 8], [3, 7], [0, 10]]
    assert point_grid([3, 2], [1, 4])[:, 0].tolist() == [0, 1, 2, 2, 6]
    assert point_levels([3, 2]).tolist() == [0, 0, 0, 1, 1]
    assert doubling_length_ranges([2, 4, 8]) == ((0.0, 4.0), (4.0, 8.0), (8.0, math.inf))
    assert doubling_length_ranges([2]) == ((0.0, math.inf),)


@pytest.mark.parametrize("stride", [1, 4])
def test_point_assignment_on_one_level_whose_stride_is_not_two(stride: int) -> None:
    # One level of 8 cells: every point inside a ground truth is foreground; the shortest wins.
    points = point_grid([8], [stride])
    positions = points[:, 0]  # stride 1: 0..7; stride 4: 2, 6, ..., 30
    gts = [torch.tensor([[0.0, 3.0 * stride], [2.0 * stride, 8.0 * stride]])]
    segments, labels, valid = pad_ground_truth(gts, [torch.tensor([0, 1])], points)
    units = torch.full((8,), float(stride))
    t = assign_points(
        positions, point_levels([8]), doubling_length_ranges([stride]), units, segments, labels, valid
    )
    inside_first = (positions >= 0) & (positions <= 3 * stride)
    inside_second = (positions >= 2 * stride) & (positions <= 8 * stride)
    expected = torch.where(inside_first, 1, torch.where(inside_second, 2, 0))  # the first is shorter
    assert torch.equal(t.labels[0], expected) and int((t.labels[0] > 0).sum()) > 0
    j = int(expected.nonzero()[0])
    assert t.distances[0, j].tolist() == pytest.approx(
        [positions[j].item() / stride, 3 - positions[j].item() / stride]
    )
    assert t.num_unassigned == 0


# -- proposals -----------------------------------------------------------------------------------------
def test_select_proposals_matches_a_per_window_brute_force() -> None:
    g = torch.Generator().manual_seed(3)
    batch, num = 3, 120
    start = torch.rand(batch, num, generator=g) * 90
    segments = torch.stack([start, start + torch.rand(batch, num, generator=g) * 20], -1)
    segments[0, :5, 1] = segments[0, :5, 0]  # zero length: never a proposal
    scores = torch.rand(batch, num, generator=g)
    chosen = select_proposals(segments, scores, pre_nms_topk=80, nms_iou=0.6, post_nms_topk=25)
    for b in range(batch):
        valid = (segments[b, :, 1] - segments[b, :, 0]) > 0
        idx = valid.nonzero().squeeze(1)
        idx = idx[scores[b, idx].argsort(descending=True)][:80]
        keep = idx[nms_1d(segments[b, idx], scores[b, idx], 0.6)][:25]
        torch.testing.assert_close(chosen[b][0], segments[b, keep])
        torch.testing.assert_close(chosen[b][1], scores[b, keep])
        kept = chosen[b][0]
        iou = segment_iou(kept, kept) - torch.eye(len(kept))
        assert float(iou.max()) <= 0.6


def test_rank_within_group_and_rois() -> None:
    assert rank_within_group(torch.tensor([2, 0, 2, 2, 0])).tolist() == [0, 0, 1, 2, 1]
    rois = segments_to_rois(
        [torch.tensor([[1.0, 2.0]]), torch.zeros(0, 2), torch.tensor([[3.0, 4.0], [5.0, 6.0]])]
    )
    assert rois.tolist() == [[0, 1, 2], [2, 3, 4], [2, 5, 6]]

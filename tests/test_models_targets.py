"""Target assignment and losses of A2Net on hand-made cases (every expected number worked out by hand).

The tiny geometry used throughout: 3 levels over a window of T = 16 positions, strides 2, 4, 8.
Points (equation (2)): level 0 at 1, 3, ..., 15 (indices 0..7); level 1 at 2, 6, 10, 14 (8..11);
level 2 at 4, 12 (12, 13). With one anchor scale (1.0), anchors share those centres with widths
2, 4 and 8. Anchor-free length ranges (paper rule): [0, 4), [4, 8), [8, inf).
"""

from __future__ import annotations

import math

import pytest
import torch

from rc3d_af.errors import InputError
from rc3d_af.models import anchor_based, anchor_free, losses, targets
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.layers.ground_truth import check_batch, pad_ground_truth
from rc3d_af.models.targets import IGNORE, AnchorTargets, PointTargets

CFG = ModelConfig(num_levels=3, anchor_scales=(1.0,))
LENGTHS, STRIDES = [8, 4, 2], [2, 4, 8]
POINTS = anchor_free.point_grid(LENGTHS, STRIDES)
ANCHORS = anchor_based.anchor_grid(LENGTHS, STRIDES, CFG.anchor_scales)


def points_of(gt: torch.Tensor, labels: torch.Tensor, cfg: ModelConfig = CFG) -> PointTargets:
    """Targets of a one-window batch, with the batch dimension removed."""
    t = targets.assign_points(POINTS, [gt], [labels], cfg)
    return PointTargets(t.labels[0], t.distances[0], t.num_unassigned)


def anchors_of(
    gt: torch.Tensor,
    labels: torch.Tensor,
    cfg: ModelConfig = CFG,
    foreground: torch.Tensor | None = None,
    predicted: torch.Tensor | None = None,
) -> AnchorTargets:
    """Targets of a one-window batch, with the batch dimension removed."""
    fg = None if foreground is None else foreground[None]
    pred = None if predicted is None else predicted[None]
    t = targets.assign_anchors(ANCHORS, [gt], [labels], cfg, fg, pred)
    return AnchorTargets(t.labels[0], t.overlaps[0], t.deltas[0], t.num_unmatched)


def smooth_l1(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def test_geometry_matches_equation_2_and_the_anchor_layout() -> None:
    assert POINTS[:, 0].tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 2, 6, 10, 14, 4, 12]
    assert POINTS[:, 1].tolist() == [2] * 8 + [4] * 4 + [8] * 2
    assert torch.equal(ANCHORS[:, 0], POINTS[:, 0])
    assert ANCHORS[:, 1].tolist() == [2] * 8 + [4] * 4 + [8] * 2
    # Several scales: position-major, then scale; width = scale x stride.
    grid = anchor_based.anchor_grid([2], [4], (0.5, 2.0))
    assert grid.tolist() == [[2, 2], [2, 8], [6, 2], [6, 8]]
    assert CFG.af_ranges() == ((0.0, 4.0), (4.0, 8.0), (8.0, math.inf))


def test_anchor_free_assignment_levels_points_and_distances() -> None:
    gt = torch.tensor([[2.0, 9.0], [12.0, 16.0], [0.5, 0.9], [3.0, 8.0]])
    labels = torch.tensor([0, 1, 1, 2])
    t = points_of(gt, labels)
    # [2, 9] (length 7) and [3, 8] (length 5) go to level 1, [12, 16] (length 4) too, [0.5, 0.9] to
    # level 0 where no point lies inside it. Point 6 lies in both [2, 9] and [3, 8]: the shorter wins.
    expected = torch.zeros(14, dtype=torch.int64)
    expected[8], expected[9], expected[11] = 1, 3, 2
    assert torch.equal(t.labels, expected)
    # Equation (3) in AL1 cells (2 positions): point 2 -> (0, 7)/2, point 6 -> (3, 2)/2, point 14 -> (2, 2)/2.
    assert t.distances[8].tolist() == [0.0, 3.5]
    assert t.distances[9].tolist() == [1.5, 1.0]
    assert t.distances[11].tolist() == [1.0, 1.0]
    assert t.distances[t.labels == 0].abs().sum() == 0
    assert t.num_unassigned == 1  # [0.5, 0.9]


def test_anchor_free_custom_ranges_and_stride_normalisation() -> None:
    cfg = ModelConfig(num_levels=3, af_length_ranges=((0, 1), (1, 2), (2, 100)), af_normalize_distances=True)
    t = points_of(torch.tensor([[2.0, 9.0]]), torch.tensor([0]), cfg)
    # Length 7 now belongs to level 2: points 4 (index 12) only; distances (2, 5) / stride 8.
    assert t.labels.nonzero().squeeze(1).tolist() == [12]
    assert t.distances[12].tolist() == [0.25, 0.625]


def test_anchor_based_assignment_positives_overlaps_and_deltas() -> None:
    gt = torch.tensor([[2.0, 9.0], [12.0, 16.0], [5.0, 11.0]])
    labels = torch.tensor([0, 1, 1])
    torch.manual_seed(0)
    t = anchors_of(gt, labels)
    # [2, 9]: anchor [4, 8] (index 9) IoU 4/7, anchor [0, 8] (index 12) IoU 6/9; [12, 16]: anchor
    # [12, 16] (index 11) IoU 1 ([12, 14] and [8, 16] have exactly 0.5: not > 0.5). [5, 11] reaches
    # at most 3/7 (anchor [4, 8]) and 4/8 (anchor [8, 12]): unmatched.
    positive = (t.labels > 0).nonzero().squeeze(1).tolist()
    assert positive == [9, 11, 12]
    assert t.labels[[9, 11, 12]].tolist() == [1, 2, 1]
    assert t.overlaps[[9, 11, 12]].tolist() == pytest.approx([4 / 7, 1.0, 6 / 9])
    # Equation (1) inverted with alpha = beta = 0.1; the target of [2, 9] is centre 5.5, width 7.
    assert t.deltas[9].tolist() == pytest.approx([(5.5 - 6) / 0.4, math.log(7 / 4) / 0.1])
    assert t.deltas[12].tolist() == pytest.approx([(5.5 - 4) / 0.8, math.log(7 / 8) / 0.1])
    assert t.deltas[11].tolist() == pytest.approx([0.0, 0.0])
    assert t.num_unmatched == 1
    # 1:1 sampling: three negatives among the other eleven anchors, the rest ignored.
    negatives = (t.labels == 0).nonzero().squeeze(1)
    assert negatives.numel() == 3 and not set(negatives.tolist()) & set(positive)
    assert int((t.labels == IGNORE).sum()) == 14 - 6


def test_negative_sampling_is_seeded_and_follows_the_ratio() -> None:
    gt, labels = torch.tensor([[2.0, 9.0]]), torch.tensor([0])
    torch.manual_seed(7)
    first = anchors_of(gt, labels).labels
    torch.manual_seed(7)
    second = anchors_of(gt, labels).labels
    assert torch.equal(first, second)
    assert int((first > 0).sum()) == 2 and int((first == 0).sum()) == 2
    # A ratio larger than the supply takes every other anchor.
    greedy = ModelConfig(num_levels=3, anchor_scales=(1.0,), ab_negative_ratio=100.0)
    many = anchors_of(gt, labels, greedy).labels
    assert int((many == 0).sum()) == 12 and int((many == IGNORE).sum()) == 0


def test_hard_negative_mining_takes_the_most_confident_negatives() -> None:
    cfg = ModelConfig(num_levels=3, anchor_scales=(1.0,), ab_negative_mining="hard")
    foreground = torch.linspace(0.0, 0.5, 14)
    foreground[[0, 5]] = 0.9  # the two most confident non-positive anchors
    t = anchors_of(torch.tensor([[2.0, 9.0]]), torch.tensor([0]), cfg, foreground)
    assert (t.labels > 0).nonzero().squeeze(1).tolist() == [9, 12]
    assert (t.labels == 0).nonzero().squeeze(1).tolist() == [0, 5]
    with pytest.raises(ValueError, match="foreground_prob: required"):
        anchors_of(torch.tensor([[2.0, 9.0]]), torch.tensor([0]), cfg)


def test_matching_on_decoded_predictions() -> None:
    cfg = ModelConfig(num_levels=3, anchor_scales=(1.0,), ab_match_on="predictions")
    predicted = anchor_based.anchors_to_segments(ANCHORS).clone()
    predicted[0] = torch.tensor([2.0, 9.0])  # anchor 0 (default [0, 2]) predicts the ground truth exactly
    predicted[9] = torch.tensor([12.0, 14.0])  # anchor 9 (default [4, 8]) predicts elsewhere
    t = anchors_of(torch.tensor([[2.0, 9.0]]), torch.tensor([0]), cfg, predicted=predicted)
    assert (t.labels > 0).nonzero().squeeze(1).tolist() == [0, 12]
    assert t.overlaps[[0, 12]].tolist() == pytest.approx([1.0, 6 / 9])
    # Targets stay relative to the default anchor (centre 1, width 2): the target centre is 5.5, width 7.
    assert t.deltas[0].tolist() == pytest.approx([(5.5 - 1) / 0.2, math.log(7 / 2) / 0.1])
    with pytest.raises(ValueError, match="predicted: required"):
        anchors_of(torch.tensor([[2.0, 9.0]]), torch.tensor([0]), cfg)


def test_a_padded_batch_assigns_each_window_like_alone() -> None:
    gts = [
        torch.tensor([[2.0, 9.0], [12.0, 16.0], [3.0, 8.0]]),
        torch.zeros(0, 2),
        torch.tensor([[0.0, 16.0]]),
    ]
    labels = [torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.int64), torch.tensor([1])]
    batch = targets.assign_points(POINTS, gts, labels, CFG)
    alone = [points_of(g, lab) for g, lab in zip(gts, labels, strict=True)]
    assert torch.equal(batch.labels, torch.stack([t.labels for t in alone]))
    assert torch.equal(batch.distances, torch.stack([t.distances for t in alone]))
    assert batch.num_unassigned == sum(t.num_unassigned for t in alone)
    greedy = ModelConfig(num_levels=3, anchor_scales=(1.0,), ab_negative_ratio=100.0)  # no sampling
    batch_ab = targets.assign_anchors(ANCHORS, gts, labels, greedy)
    alone_ab = [anchors_of(g, lab, greedy) for g, lab in zip(gts, labels, strict=True)]
    assert torch.equal(batch_ab.labels, torch.stack([t.labels for t in alone_ab]))
    torch.testing.assert_close(batch_ab.overlaps, torch.stack([t.overlaps for t in alone_ab]))
    torch.testing.assert_close(batch_ab.deltas, torch.stack([t.deltas for t in alone_ab]))
    assert batch_ab.num_unmatched == sum(t.num_unmatched for t in alone_ab) == 1  # [0, 16]: best IoU 0.5


def test_empty_ground_truth_gives_background_only() -> None:
    empty = torch.zeros(0, 2)
    t = points_of(empty, torch.zeros(0, dtype=torch.int64))
    assert int(t.labels.sum()) == 0 and t.num_unassigned == 0
    a = anchors_of(empty, torch.zeros(0, dtype=torch.int64))
    assert bool((a.labels == IGNORE).all()) and a.num_unmatched == 0


@pytest.mark.parametrize(
    ("segments", "labels", "message"),
    [
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), r"gt_segments\[4\]: expected shape \[M, 2\]"),
        (torch.zeros(2, 2), torch.zeros(3, dtype=torch.int64), r"gt_labels\[4\]: expected shape \[2\]"),
        (torch.tensor([[3.0, 1.0]]), torch.zeros(1, dtype=torch.int64), r"gt_segments\[4\]: .*end >= start"),
        (torch.tensor([[1.0, 3.0]]), torch.tensor([5]), r"gt_labels\[4\]: expected class ids in \[0, 2\]"),
    ],
)
def test_bad_ground_truth_is_named(segments: torch.Tensor, labels: torch.Tensor, message: str) -> None:
    with pytest.raises(InputError, match=message):
        targets.check_ground_truth(segments, labels, num_classes=3, index=4)


@pytest.mark.parametrize(
    ("segments", "labels", "message"),
    [
        (torch.tensor([[3.0, 1.0]]), torch.zeros(1, dtype=torch.int64), r"gt_segments\[2\]: .*end >= start"),
        (torch.tensor([[1.0, math.nan]]), torch.zeros(1, dtype=torch.int64), r"gt_segments\[2\]: .*end >="),
        (torch.tensor([[1.0, 3.0]]), torch.tensor([-1]), r"gt_labels\[2\]: expected class ids in \[0, 2\]"),
        (torch.zeros(1, 3), torch.zeros(1, dtype=torch.int64), r"gt_segments\[2\]: expected shape \[M, 2\]"),
    ],
)
def test_a_batch_names_the_window_at_fault(segments: torch.Tensor, labels: torch.Tensor, message: str):
    good = [torch.tensor([[0.0, 2.0]]), torch.zeros(0, 2)]
    good_labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.int64)]
    check_batch(good, good_labels, 2, num_classes=3)  # valid batches pass
    with pytest.raises(InputError, match=message):
        check_batch([*good, segments], [*good_labels, labels], 3, num_classes=3)


def test_padding_keeps_each_windows_ground_truths_in_order() -> None:
    segments = [torch.tensor([[0.0, 2.0], [1.0, 5.0]]), torch.zeros(0, 2), torch.tensor([[3.0, 4.0]])]
    labels = [torch.tensor([2, 0]), torch.zeros(0, dtype=torch.int64), torch.tensor([1])]
    padded, padded_labels, valid = pad_ground_truth(segments, labels, torch.zeros(1, dtype=torch.float64))
    assert padded.dtype == torch.float64 and padded.tolist() == [
        [[0, 2], [1, 5]],
        [[0, 0], [0, 0]],
        [[3, 4], [0, 0]],
    ]
    assert padded_labels.tolist() == [[2, 0], [0, 0], [1, 0]]
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    empty = pad_ground_truth([torch.zeros(0, 2)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2, torch.zeros(1))
    assert [tuple(t.shape) for t in empty] == [(2, 1, 2), (2, 1), (2, 1)] and not empty[2].any()


def test_anchor_free_losses_by_hand() -> None:
    # Two points, C = 1: point 0 foreground (class 1) with logits (0, ln 3) -> p = 3/4;
    # point 1 background with logits (ln 4, 0) -> p = 4/5.
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(4.0), 0.0]]], requires_grad=True)
    distances = torch.tensor([[[1.0, 2.5], [9.0, 9.0]]], requires_grad=True)
    target = PointTargets(torch.tensor([[1, 0]]), torch.tensor([[[0.5, 0.0], [0.0, 0.0]]]), 0)
    terms = losses.anchor_free_losses(logits, distances, target)
    assert terms["af_cls"].item() == pytest.approx(-(math.log(3 / 4) + math.log(4 / 5)) / 2)
    # Only the foreground point regresses: smoothL1(0.5) + smoothL1(2.5) = 0.125 + 2.0.
    assert terms["af_reg"].item() == pytest.approx(smooth_l1(0.5) + smooth_l1(2.5))
    terms["af_reg"].backward()
    assert distances.grad[0, 1].abs().sum() == 0  # the background point gets no regression gradient


def test_anchor_based_losses_by_hand() -> None:
    # Three anchors, C = 1: a positive (class 1, IoU 0.6), a sampled negative and an ignored one.
    logits = torch.tensor([[[0.0, math.log(2.0)], [0.0, 0.0], [50.0, -50.0]]])
    overlap = torch.tensor([[0.0, 3.0, 3.0]])  # sigmoid(0) = 0.5
    deltas = torch.tensor([[[1.0, -3.0], [7.0, 7.0], [7.0, 7.0]]])
    target = AnchorTargets(
        labels=torch.tensor([[1, 0, IGNORE]]),
        overlaps=torch.tensor([[0.6, 0.0, 0.0]]),
        deltas=torch.tensor([[[0.2, -1.0], [0.0, 0.0], [0.0, 0.0]]]),
        num_unmatched=0,
    )
    terms = losses.anchor_based_losses(logits, overlap, deltas, target)
    assert terms["ab_cls"].item() == pytest.approx(-(math.log(2 / 3) + math.log(1 / 2)) / 2)
    assert terms["ab_overlap"].item() == pytest.approx((0.5 - 0.6) ** 2)
    assert terms["ab_reg"].item() == pytest.approx(smooth_l1(0.8) + smooth_l1(-2.0))


def test_terms_with_nothing_to_average_are_zero_but_attached() -> None:
    distances = torch.ones(1, 3, 2, requires_grad=True)
    target = PointTargets(torch.zeros(1, 3, dtype=torch.int64), torch.zeros(1, 3, 2), 0)
    terms = losses.anchor_free_losses(torch.zeros(1, 3, 2, requires_grad=True), distances, target)
    assert terms["af_reg"].item() == 0.0
    terms["af_reg"].backward()
    assert distances.grad is not None and distances.grad.abs().sum() == 0


def test_total_loss_uses_the_paper_coefficients() -> None:
    terms = {
        name: torch.tensor(value)
        for name, value in {
            "af_cls": 1.0,
            "af_reg": 2.0,
            "ab_cls": 3.0,
            "ab_overlap": 4.0,
            "ab_reg": 5.0,
        }.items()
    }
    # L = (2 + 30 * 1) + 1 * (3 + 10 * 4 + 10 * 5)
    assert float(losses.total_loss(terms, ModelConfig())) == pytest.approx(32 + 93)
    custom = ModelConfig(loss_gamma=0.5, loss_gamma_af=2.0, loss_gamma1=3.0, loss_gamma2=4.0)
    assert float(losses.total_loss(terms, custom)) == pytest.approx((2 + 2) + 0.5 * (3 + 12 + 20))
    af_only = {k: v for k, v in terms.items() if k.startswith("af")}
    assert float(losses.total_loss(af_only, ModelConfig())) == pytest.approx(32)

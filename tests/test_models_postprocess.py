"""Inference (section III-F): window decoding, branch weights, late fusion and video-level merging."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError
from rc3d_af.models import (
    ModelConfig,
    WindowDetections,
    anchor_based,
    anchor_free,
    fuse_detections,
    video_detections,
)
from rc3d_af.models.postprocess import window_detections

# Tiny geometry: 3 levels over T = 16 (points 1, 3, .., 15 | 2, 6, 10, 14 | 4, 12), one anchor scale.
CFG = ModelConfig(num_levels=3, anchor_scales=(1.0,))
LENGTHS, STRIDES = [8, 4, 2], [2, 4, 8]
BIG = 30.0  # a logit that makes a softmax one-hot to ~1e-13


def outputs_for(num_classes: int = 2) -> dict[str, torch.Tensor]:
    """Head outputs for one window where every point and anchor is confidently background."""
    points = anchor_free.point_grid(LENGTHS, STRIDES)
    anchors = anchor_based.anchor_grid(LENGTHS, STRIDES, CFG.anchor_scales)
    af_cls = torch.zeros(1, 14, num_classes + 1)
    af_cls[..., 0] = BIG
    ab_cls = af_cls.clone()
    return {
        "window_size": torch.tensor(16),
        "points": points,
        "af_cls": af_cls,
        "af_reg": torch.zeros(1, 14, 2),
        "anchors": anchors,
        "ab_cls": ab_cls,
        "ab_overlap": torch.zeros(1, 14),
        "ab_reg": torch.zeros(1, 14, 2),
    }


def test_window_decoding_scores_and_branch_weights() -> None:
    out = outputs_for()
    # Point 9 (position 6, level 1): class 1 with probability 3/4 (logits 0, 0, ln 6 -> 6/8),
    # distances (1, 2) AL1 cells -> [6 - 2, 6 + 4] = [4, 10].
    out["af_cls"][0, 9] = torch.tensor([0.0, 0.0, math.log(6.0)])
    out["af_reg"][0, 9] = torch.tensor([1.0, 2.0])
    # Anchor 12 (centre 4, width 8): class 0 with probability 3/5, overlap logit ln 4 -> p_o = 0.8,
    # deltas (1.25, 0) -> centre 4 + 0.1 * 1.25 * 8 = 5, width 8 -> [1, 9].
    out["ab_cls"][0, 12] = torch.tensor([0.0, math.log(3.0), 0.0])  # softmax (1/5, 3/5, 1/5)
    out["ab_overlap"][0, 12] = math.log(4.0)
    out["ab_reg"][0, 12] = torch.tensor([1.25, 0.0])
    (dets,) = window_detections(out, CFG)
    order = dets.scores.argsort(descending=True)
    segments, scores, labels = dets.segments[order], dets.scores[order], dets.labels[order]
    # Equation (11) and lambda = 0.5: anchor-based 0.5 * 0.8 * 3/5 = 0.24; anchor-free 0.5 * 3/4 = 0.375.
    assert labels.tolist() == [1, 0]
    torch.testing.assert_close(scores, torch.tensor([0.375, 0.24]))
    torch.testing.assert_close(segments, torch.tensor([[4.0, 10.0], [1.0, 9.0]]))

    weighted = window_detections(out, dataclasses.replace(CFG, branch_weight=0.2))[0]
    assert sorted(weighted.scores.tolist()) == pytest.approx([0.2 * 0.48, 0.8 * 0.75])
    # A single-branch model is not weighted.
    af_only = {k: v for k, v in out.items() if not k.startswith(("ab_", "anchors"))}
    (single,) = window_detections(af_only, dataclasses.replace(CFG, variant="anchor_free"))
    assert single.scores.tolist() == pytest.approx([0.75])


def test_window_filters_clip_background_gate_and_top_k() -> None:
    out = outputs_for()
    # Point 15 (last of level 0) predicts far past the window end: clipped to [11, 16].
    out["af_cls"][0, 7] = torch.tensor([0.0, 0.0, BIG])
    out["af_reg"][0, 7] = torch.tensor([2.0, 50.0])
    # Anchor 0: background probability 0.98 < p < 1 with a foreground score above the threshold.
    out["ab_cls"][0, 0] = torch.tensor([math.log(99.0), 0.0, -BIG])  # P(bg) = 0.99, P(c0) = 0.01
    out["ab_overlap"][0, 0] = BIG
    (dets,) = window_detections(out, CFG)
    assert len(dets) == 2
    assert dets.segments[dets.scores.argmax()].tolist() == [11.0, 16.0]
    (gated,) = window_detections(out, dataclasses.replace(CFG, ab_max_background=0.98))
    assert len(gated) == 1 and gated.labels.tolist() == [1]
    (top1,) = window_detections(out, dataclasses.replace(CFG, pre_nms_top_k=1))
    assert top1.labels.tolist() == [1]
    (none,) = window_detections(out, dataclasses.replace(CFG, score_threshold=0.6))
    assert len(none) == 0


def dets(segments: list[list[float]], scores: list[float], labels: list[int]) -> WindowDetections:
    return WindowDetections(torch.tensor(segments), torch.tensor(scores), torch.tensor(labels))


SPEC = FeatureSpec(stride_frames=4, clip_frames=16)


def seconds(index: float, fps: float) -> float:
    return (index * 4 + 8) / fps  # t = (i * stride + clip / 2) / fps


def test_video_merge_maps_windows_to_seconds_with_the_video_fps() -> None:
    windows = [
        (dets([[2.0, 10.0]], [0.9], [1]), 100, 1.0),
        (dets([[4.0, 6.0]], [0.5], [0]), 40, 2.0),  # a rescaled window: index = 40 + 2 x
    ]
    segments, scores, labels = video_detections(windows, 25.0, SPEC, CFG)
    assert segments.dtype == torch.float64 and labels.dtype == torch.int64
    expected = [[seconds(102, 25), seconds(110, 25)], [seconds(48, 25), seconds(52, 25)]]
    torch.testing.assert_close(segments, torch.tensor(expected, dtype=torch.float64))
    assert scores.tolist() == pytest.approx([0.9, 0.5]) and labels.tolist() == [1, 0]
    clipped, _, _ = video_detections(windows, 25.0, SPEC, CFG, duration=17.0)
    assert clipped[:, 1].max().item() == 17.0


def test_video_nms_per_class_caps_and_top_k() -> None:
    window = dets(
        [[0.0, 10.0], [1.0, 10.0], [1.0, 10.0], [20.0, 30.0], [40.0, 50.0], [60.0, 70.0]],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0, 0, 1, 0, 0, 1],
    )
    windows = [(window, 0, 1.0)]
    # Segment 1 overlaps segment 0 (IoU 0.9 > 0.2) in the same class and goes; segment 2 is class 1.
    _, scores, labels = video_detections(windows, 30.0, SPEC, CFG)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5, 0.4]) and labels.tolist() == [0, 1, 0, 0, 1]
    _, scores, _ = video_detections(windows, 30.0, SPEC, dataclasses.replace(CFG, class_agnostic_nms=True))
    assert scores.tolist() == pytest.approx([0.9, 0.6, 0.5, 0.4])
    _, scores, labels = video_detections(windows, 30.0, SPEC, dataclasses.replace(CFG, nms_per_class=1))
    assert scores.tolist() == pytest.approx([0.9, 0.7]) and labels.tolist() == [0, 1]
    _, scores, _ = video_detections(windows, 30.0, SPEC, dataclasses.replace(CFG, top_k=2))
    assert scores.tolist() == pytest.approx([0.9, 0.7])


def test_video_soft_nms_decays_instead_of_dropping() -> None:
    # Window positions [0, 10] and [0, 5]: in seconds both start at the same time and the second is
    # half as long, so IoU = 0.5 (the mapping is affine); gaussian decay exp(-0.25 / 0.5).
    windows = [(dets([[0.0, 10.0], [0.0, 5.0]], [0.9, 0.8], [0, 0]), 0, 1.0)]
    cfg = dataclasses.replace(CFG, soft_nms=True, soft_nms_sigma=0.5)
    _, scores, _ = video_detections(windows, 30.0, SPEC, cfg)
    assert scores.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.25 / 0.5)])
    linear = dataclasses.replace(cfg, soft_nms_method="linear", nms_iou=0.3)
    _, scores, _ = video_detections(windows, 30.0, SPEC, linear)
    assert scores.tolist() == pytest.approx([0.9, 0.8 * 0.5])


def test_empty_video_and_late_fusion() -> None:
    empty = dets([[0.0, 1.0]], [0.5], [0])
    empty = WindowDetections(empty.segments[:0], empty.scores[:0], empty.labels[:0])
    segments, scores, labels = video_detections([(empty, 0, 1.0)], 30.0, SPEC, CFG)
    assert segments.shape == (0, 2) and scores.numel() == 0 and labels.numel() == 0
    assert video_detections([], 30.0, SPEC, CFG)[0].shape == (0, 2)

    a = [dets([[0.0, 4.0]], [0.8], [0])]
    b = [dets([[8.0, 12.0], [0.0, 4.0]], [0.6, 0.4], [1, 0])]
    (fused,) = fuse_detections(a, b, weights=(0.25, 0.5))
    assert fused.scores.tolist() == pytest.approx([0.2, 0.3, 0.2]) and fused.labels.tolist() == [0, 1, 0]
    with pytest.raises(InputError, match="fuse: the two models gave 1 and 2 windows"):
        fuse_detections(a, b * 2)

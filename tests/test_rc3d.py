"""R-C3D and R-C3D + AF: proposal-network labels, RoI sampling, detection, overfit and bad input,
on hand-made cases (every expected number worked out by hand in the comments)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from rc3d_af.config import config_from_dict
from rc3d_af.errors import InputError
from rc3d_af.models import build_model, model_summary
from rc3d_af.models.layers.coder import SegmentCoder
from rc3d_af.models.layers.ground_truth import pad_ground_truth
from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from rc3d_af.models.layers.poolers import RoIPooler
from rc3d_af.models.layers.sampling import uniform
from rc3d_af.models.rc3d.config import (
    AnchorFreeProposalConfig,
    AnchorProposalConfig,
    BackboneConfig,
    ProposalSelectionConfig,
    RC3DConfig,
    RoIHeadConfig,
)
from rc3d_af.models.rc3d.proposal_network import AnchorProposals, GroundTruth
from rc3d_af.models.rc3d.roi_heads import RoIHeads

# A CPU-sized R-C3D + AF: every block narrow, R-C3D's rules otherwise.
TINY = RC3DConfig(
    backbone=BackboneConfig(channels=32),
    apn=AnchorProposalConfig(channels=32),
    af=AnchorFreeProposalConfig(head_channels=32),
    roi=RoIHeadConfig(fc_channels=64),
)


def ground_truth(segments: list[list[float]], labels: list[int]) -> GroundTruth:
    seg = torch.tensor(segments).reshape(-1, 2)
    return GroundTruth(*pad_ground_truth([seg], [torch.tensor(labels)], seg))


# -- the proposal network's anchor labels (R-C3D rules) ----------------------------------------------
def r_c3d_anchor_branch(num_samples: int = 100) -> AnchorProposals:
    matcher = Matcher([0.3, 0.7], [NEGATIVE, IGNORE, POSITIVE], allow_low_quality_matches=True)
    return AnchorProposals(
        4, 2, (1.0, 2.0), matcher,
        ignore_cross_boundary=True, num_samples=num_samples, positive_fraction=0.5, reg_beta=1 / 9,
    )  # fmt: skip


def test_apn_anchor_labels_on_hand_made_ground_truth() -> None:
    # Window of 16 positions, stride 2: centres 1, 3, ..., 15, widths 2 and 4 (index = 2 * position + scale).
    branch = r_c3d_anchor_branch()
    anchors = branch.anchors(8, torch.device("cpu"))
    assert anchors[:6].tolist() == [[0, 2], [-1, 3], [2, 4], [1, 5], [4, 6], [3, 7]]
    gt = ground_truth([[4.0, 8.0], [10.0, 16.0]], [0, 1])
    labels, deltas, unmatched = branch.targets(anchors, gt, 16, torch.rand(1, 16))
    # [4, 8]: [3, 7] and [5, 9] reach its best IoU 3/5 (< 0.7: positive by the low-quality rule, ties
    # included); [4, 6], [6, 8] have 0.5 -> ignored. [10, 16]: best [11, 15] with 4/6 -> positive;
    # [10, 12], [12, 14], [14, 16] (1/3) and [9, 13] (3/7) ignored. [-1, 3] and [13, 17] cross the edge.
    neg, ign, pos = NEGATIVE, IGNORE, POSITIVE
    expected = [neg, ign, neg, neg, ign, pos, ign, pos, neg, neg, ign, ign, ign, pos, ign, ign]
    assert labels[0].tolist() == expected
    # Targets: [3, 7] -> [4, 8]: centre +1 / width 4, same width; [11, 15] -> [10, 16]: centre 0, log(6/4).
    assert deltas[0, 5].tolist() == pytest.approx([0.25, 0.0])
    assert deltas[0, 13].tolist() == pytest.approx([0.0, math.log(1.5)])
    assert unmatched == 0


def test_apn_sampling_keeps_the_budget_and_the_fraction() -> None:
    branch = r_c3d_anchor_branch(num_samples=4)
    anchors = branch.anchors(8, torch.device("cpu"))
    gt = ground_truth([[4.0, 8.0], [10.0, 16.0]], [0, 1])
    generators = [torch.Generator().manual_seed(0)]
    labels, _, _ = branch.targets(anchors, gt, 16, uniform((1, 16), generators))
    # 3 positives and 8 negatives available: 2 of each sampled, the rest ignored.
    assert int((labels == POSITIVE).sum()) == 2 and int((labels == NEGATIVE).sum()) == 2
    assert set((labels[0] == POSITIVE).nonzero().squeeze(1).tolist()) <= {5, 7, 13}


# -- the second stage's RoI sampling --------------------------------------------------------------------
def roi_heads(num_samples: int = 8, fg_fraction: float = 0.5, append_gt: bool = False) -> RoIHeads:
    return RoIHeads(
        4, 3, RoIPooler("pool", 2, 2),
        fc_channels=8, dropout=0.0, matcher=Matcher([0.1, 0.5], [IGNORE, NEGATIVE, POSITIVE]),
        num_samples=num_samples, fg_fraction=fg_fraction, append_gt=append_gt,
        coder=SegmentCoder((0.1, 0.2)), reg_beta=1.0,
    )  # fmt: skip


def test_roi_sampling_fractions_labels_and_targets() -> None:
    gt = ground_truth([[10.0, 20.0]], [2])
    proposals = torch.tensor(
        [
            [10.0, 20.0], [11.0, 21.0], [9.0, 19.0], [12.0, 20.0], [10.0, 24.0], [8.0, 18.0],  # IoU >= 0.5
            [16.0, 26.0], [18.0, 30.0], [0.0, 12.0],  # IoU 4/16, 2/20, 2/20: background
            [30.0, 40.0], [19.5, 40.0],  # IoU 0 and 0.5/30: not sampled
        ]
    )  # fmt: skip
    heads = roi_heads()
    samples = heads.sample([proposals], gt, [torch.Generator().manual_seed(1)])
    labels, segments = samples.labels[0], samples.segments[0]
    assert labels.tolist()[:4] == [3, 3, 3, 3] and labels.tolist()[4:] == [0, 0, 0, 0]
    fg_rows = {tuple(s) for s in segments[:4].tolist()}
    assert len(fg_rows) == 4 and fg_rows <= {tuple(p) for p in proposals[:6].tolist()}  # no replacement
    assert {tuple(s) for s in segments[4:].tolist()} <= {tuple(p) for p in proposals[6:9].tolist()}
    # Class-specific targets normalised by (0.1, 0.2): e.g. [11, 21] -> [10, 20]: (-1 / 10) / 0.1, 0.
    for roi, delta in zip(segments[:4].tolist(), samples.deltas[0, :4], strict=True):
        expected_c = ((15.0 - (roi[0] + roi[1]) / 2) / (roi[1] - roi[0])) / 0.1
        expected_w = math.log(10.0 / (roi[1] - roi[0])) / 0.2
        assert delta.tolist() == pytest.approx([expected_c, expected_w])
    assert samples.deltas[0, 4:].abs().sum() == 0


def test_roi_sampling_fills_with_foreground_without_background_and_appends_gt() -> None:
    gt = ground_truth([[10.0, 20.0]], [0])
    heads = roi_heads(num_samples=6, fg_fraction=0.5, append_gt=True)
    samples = heads.sample([torch.tensor([[30.0, 40.0]])], gt, [torch.Generator().manual_seed(0)])
    # Only the appended ground truth is a candidate (the proposal has IoU 0): it fills every slot.
    assert samples.labels[0].tolist() == [1] * 6
    assert samples.segments[0].tolist() == [[10.0, 20.0]] * 6


def test_roi_sampling_of_a_window_does_not_depend_on_its_batch() -> None:
    g = torch.Generator().manual_seed(5)
    starts = [torch.rand(40, 1, generator=g) * 60 for _ in range(2)]
    proposals = [torch.cat([s, s + 5 + torch.rand(40, 1, generator=g) * 20], dim=1) for s in starts]
    segments = [torch.tensor([[10.0, 30.0], [40.0, 50.0]]), torch.tensor([[5.0, 25.0]])]
    labels = [torch.tensor([0, 1]), torch.tensor([2])]
    heads = roi_heads(num_samples=16)
    batch_gt = GroundTruth(*pad_ground_truth(segments, labels, segments[0]))
    both = heads.sample(proposals, batch_gt, [torch.Generator().manual_seed(s) for s in (10, 11)])
    alone_gt = GroundTruth(*pad_ground_truth(segments[1:], labels[1:], segments[0]))
    alone = heads.sample(proposals[1:], alone_gt, [torch.Generator().manual_seed(11)])
    assert torch.equal(both.segments[1], alone.segments[0]) and torch.equal(both.labels[1], alone.labels[0])


# -- detection ------------------------------------------------------------------------------------------
def test_roi_detection_scores_thresholds_and_per_class_nms() -> None:
    heads = roi_heads().eval()
    with torch.no_grad():
        for layer in (heads.fc, heads.cls_score, heads.reg_pred):
            layer.weight.zero_()
            layer.bias.zero_()
        heads.cls_score.bias.copy_(torch.tensor([0.0, math.log(6.0), math.log(2.0), -20.0]))
    # softmax (1, 6, 2, ~0) / 9: class 0 -> 2/3, class 1 -> 2/9, class 2 below any threshold; zero
    # deltas keep the RoIs. The two overlapping RoIs (IoU 8/12) suppress each other per class.
    proposals = [torch.tensor([[0.0, 10.0], [2.0, 12.0], [30.0, 40.0]]), torch.zeros(0, 2)]
    features = torch.randn(2, 4, 32)
    dets = heads.detect(features, proposals, 64, score_threshold=0.1, nms_iou=0.5)
    assert len(dets) == 2 and len(dets[1]) == 0
    assert dets[0].labels.tolist() == [0, 0, 1, 1]
    assert dets[0].scores.tolist() == pytest.approx([2 / 3, 2 / 3, 2 / 9, 2 / 9])
    assert dets[0].segments.tolist() == [[0.0, 10.0], [30.0, 40.0], [0.0, 10.0], [30.0, 40.0]]


# -- the whole detector -----------------------------------------------------------------------------------
def test_summary_of_the_r_c3d_geometry() -> None:
    summary = model_summary(RC3DConfig(), num_classes=20, in_channels=2048, window_size=192)
    # 96 positions x 10 anchors; 96 points (one level); 300 RoIs at test time.
    assert summary["anchors_per_window"] == 960 and summary["points_per_window"] == 96
    assert summary["rois_per_window"] == 300 and summary["levels"] == [
        {"length": 96, "channels": 512, "stride": 2}
    ]
    plain = model_summary(dataclasses.replace(RC3DConfig(), arch="rc3d"), 20, 2048, 192)
    assert plain["points_per_window"] == 0 and plain["parameters"] < summary["parameters"]


def test_contract_and_every_loss_term() -> None:
    torch.manual_seed(0)
    model = build_model(TINY, num_classes=3, in_channels=8)
    features = torch.randn(2, 8, 192)
    gt_segments = [torch.tensor([[10.0, 40.0], [100.0, 120.0]]), torch.tensor([[50.0, 60.0]])]
    gt_labels = [torch.tensor([0, 2]), torch.tensor([1])]
    diagnostics: dict[str, float] = {}
    weighted = model(features, gt_segments, gt_labels, diagnostics=diagnostics)
    assert set(weighted) == {"apn_cls", "apn_reg", "af_cls", "af_reg", "roi_cls", "roi_reg"}
    assert diagnostics["num_roi_fg"] + diagnostics["num_roi_bg"] == 2 * 128
    assert diagnostics["num_apn_pos"] + diagnostics["num_apn_neg"] == 2 * 64
    sum(weighted.values()).backward()
    plain = build_model(dataclasses.replace(TINY, arch="rc3d"), num_classes=3, in_channels=8)
    assert set(plain(features, gt_segments, gt_labels)) == {"apn_cls", "apn_reg", "roi_cls", "roi_reg"}
    model.eval()
    detections = model(features)
    assert len(detections) == 2 and all(bool((d.scores > TINY.score_threshold).all()) for d in detections)
    proposals = model.propose(features)
    assert all(len(p) <= 300 and bool((p.labels == 0).all()) for p in proposals)


def test_one_buffer_overfit() -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, roi=dataclasses.replace(TINY.roi, dropout=0.0))
    model = build_model(cfg, num_classes=2, in_channels=8)
    features = torch.randn(1, 8, 192)
    gt_segments = [torch.tensor([[20.0, 44.0], [100.0, 112.0], [150.0, 180.0]])]
    gt_labels = [torch.tensor([0, 1, 0])]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(120):
        total = sum(model(features, gt_segments, gt_labels).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert history[-1] < history[0] / 10, history[::12]
    model.eval()
    (found,) = model(features)
    # Each ground truth is found with its class by a detection of IoU >= 0.7.
    for segment, label in zip(gt_segments[0], gt_labels[0], strict=True):
        same = found.labels == label
        iou = torch.stack(
            [
                torch.clamp(torch.minimum(s[1], segment[1]) - torch.maximum(s[0], segment[0]), min=0)
                / (torch.maximum(s[1], segment[1]) - torch.minimum(s[0], segment[0]))
                for s in found.segments
            ]
        )
        assert float((iou * same).max()) >= 0.7


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"backbone": {"stride": 0}}, r"model.backbone.stride: expected an integer >= 1"),
        (
            {"apn": {"anchor_scales": [2.0, -1.0]}},
            r"model.apn.anchor_scales\[1\]: expected a finite number > 0",
        ),
        ({"apn": {"anchor_scales": []}}, r"model.apn.anchor_scales: expected at least one"),
        (
            {"proposals": {"post_nms_topk_test": 0}},
            r"model.proposals.post_nms_topk_test: expected an integer >= 1",
        ),
        ({"roi": {"bg_iou_low": 0.6}}, r"model.roi.bg_iou_low: expected < fg_iou"),
        ({"af": {"actionness": "multi"}}, r"model.af.actionness: expected one of binary, classes"),
    ],
)
def test_bad_config_values_name_the_field(model: dict, message: str) -> None:
    data = {
        "data": {"annotations": "a.json", "features": "f", "window_size": 192},
        "model": {"arch": "rc3d_af", **model},
    }
    with pytest.raises(InputError, match=message):
        config_from_dict(data)


def test_bad_inputs_are_named() -> None:
    model = build_model(TINY, num_classes=2, in_channels=4)
    with pytest.raises(InputError, match=r"T = 5 must be a positive multiple of model.backbone.stride .*2"):
        model(torch.randn(1, 4, 5))
    with pytest.raises(InputError, match="features: expected D = 4 channels"):
        model(torch.randn(1, 6, 192))
    with pytest.raises(InputError, match="required in training mode"):
        model(torch.randn(1, 4, 192))
    with pytest.raises(InputError, match="expected 1 entries"):
        model(torch.randn(1, 4, 192), [torch.zeros(0, 2)] * 2, [torch.zeros(0, dtype=torch.int64)] * 2)
    with pytest.raises(
        InputError, match=r"data.window_size: 191 must be a multiple of the model's stride = 2"
    ):
        config_from_dict(
            {"data": {"annotations": "a", "features": "f", "window_size": 191}, "model": {"arch": "rc3d"}}
        )
    assert ProposalSelectionConfig().settings(training=False)["post_nms_topk"] == 300

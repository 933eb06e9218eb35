"""R-C3D and R-C3D + AF over pre-extracted features (A2Net paper Figure 4, section III-G).

features [B, D, T] -> backbone (A2Net's base layer, output stride ``backbone.stride``)
    -> proposal network (proposal_network.py): anchor proposals (+ anchor-free proposals for
       ``rc3d_af``), gathered, one NMS -> proposals per window
    -> second stage (roi_heads.py): RoI pooling on the backbone output, fc head -> C+1 scores and
       class-specific segments
training: both stages' losses (APN, anchor-free, RoI), each weighted by the config;
inference: per-window detections, merged per video by the shared ``video_detections``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rc3d_af.errors import InputError
from rc3d_af.models.backbone import BaseConv
from rc3d_af.models.layers.ground_truth import check_batch, check_features, pad_ground_truth
from rc3d_af.models.postprocess import WindowDetections
from rc3d_af.models.rc3d.config import RC3DConfig
from rc3d_af.models.rc3d.proposal_network import (
    AnchorFreeProposals,
    AnchorProposals,
    GroundTruth,
    ProposalNetwork,
)
from rc3d_af.models.rc3d.roi_heads import RoIHeads


class RC3D(nn.Module):
    """Two-stage temporal action localizer over feature windows ("buffers")."""

    def __init__(self, cfg: RC3DConfig, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_channels = in_channels
        stride, channels = cfg.backbone.stride, cfg.backbone.channels
        self.backbone = BaseConv(in_channels, channels, cfg.backbone.kernel_size, stride)
        anchor_free = (
            AnchorFreeProposals.from_config(cfg.af, cfg.apn.channels, stride, num_classes)
            if cfg.uses_anchor_free
            else None
        )
        self.proposal_network = ProposalNetwork(
            channels,
            cfg.apn.channels,
            cfg.apn.num_convs,
            AnchorProposals.from_config(cfg.apn, stride),
            anchor_free,
        )
        self.roi_heads = RoIHeads.from_config(cfg.roi, channels, stride, num_classes)
        self.loss_weights = {
            "apn_cls": cfg.apn.loss_cls,
            "apn_reg": cfg.apn.loss_reg,
            "af_cls": cfg.af.loss_cls,
            "af_reg": cfg.af.loss_reg,
            "roi_cls": cfg.roi.loss_cls,
            "roi_reg": cfg.roi.loss_reg,
        }

    def forward(
        self,
        features: torch.Tensor,
        gt_segments: Sequence[torch.Tensor] | None = None,
        gt_labels: Sequence[torch.Tensor] | None = None,
        *,
        generators: Sequence[torch.Generator] | None = None,
        diagnostics: dict[str, float] | None = None,
    ) -> dict[str, torch.Tensor] | list[WindowDetections]:
        """The detector contract (docs/ARCHITECTURE.md).

        Training mode: weighted loss terms ``apn_cls``, ``apn_reg`` (+ ``af_cls``, ``af_reg``),
        ``roi_cls``, ``roi_reg`` for ``features [B, D, T]`` and the windows' ground truth
        (``gt_segments[b] [M_b, 2]`` window positions, ``gt_labels[b] [M_b]`` ids 0..C-1);
        ``generators`` (one per window) draw the anchor and RoI sampling and the dropout, torch's
        global generator when None; ``diagnostics`` (optional) receives the unweighted terms and counts.
        Eval mode: one :class:`WindowDetections` per window (window positions, before the video merge).
        """
        window_size = self._check_features(features)
        backbone = self.backbone(features)
        outputs = self.proposal_network(backbone)
        settings = self.cfg.proposals.settings(training=self.training)
        proposals = [p[0] for p in self.proposal_network.select(outputs, window_size, settings)]
        if not self.training:
            return self.roi_heads.detect(
                backbone, proposals, window_size, self.cfg.score_threshold, self.cfg.window_nms_iou
            )
        if gt_segments is None or gt_labels is None:
            raise InputError("gt_segments, gt_labels: required in training mode (model.train())")
        check_batch(gt_segments, gt_labels, features.size(0), self.num_classes)
        gt = GroundTruth(*pad_ground_truth(gt_segments, gt_labels, backbone.float()))
        terms, counts = self.proposal_network.losses(outputs, gt, window_size, generators)
        samples = self.roi_heads.sample(proposals, gt, generators)
        roi_terms, roi_counts = self.roi_heads.losses(backbone, samples, generators)
        terms.update(roi_terms)
        counts.update(roi_counts)
        weighted = {name: self.loss_weights[name] * value for name, value in terms.items()}
        if diagnostics is not None:
            diagnostics.update({name: float(value.detach()) for name, value in terms.items()})
            diagnostics["total"] = float(sum(weighted.values()).detach())
            diagnostics.update(counts)
        return weighted

    @torch.no_grad()
    def propose(self, features: torch.Tensor, branch: str = "both") -> list[WindowDetections]:
        """The proposal network's proposals per window (test settings, after its NMS), class-agnostic
        (label 0), window positions; ``branch``: ``both`` (the model's own), ``anchor_based`` or
        ``anchor_free`` alone."""
        window_size = self._check_features(features)
        outputs = self.proposal_network(self.backbone(features))
        settings = self.cfg.proposals.settings(training=False)
        chosen = self.proposal_network.select(outputs, window_size, settings, branch)
        return [WindowDetections(s, p, torch.zeros_like(p, dtype=torch.int64)) for s, p in chosen]

    def summary_forward(self, features: torch.Tensor) -> dict[str, Any]:
        """Every layer a window passes at inference, with the test-time number of RoIs and without the
        data-dependent selection (the model summary counts their multiply-accumulates on the meta
        device); returns the window geometry."""
        self._check_features(features)
        backbone = self.backbone(features)
        outputs = self.proposal_network(backbone)
        num_rois = min(self.cfg.proposals.post_nms_topk_test, self.cfg.proposals.pre_nms_topk_test)
        self.roi_heads.classify(features.new_zeros(num_rois, self.roi_heads.fc.in_features), 1)
        num_levels = self.cfg.af.num_levels if self.cfg.uses_anchor_free else 1
        return {
            "anchors_per_window": outputs["anchors"].size(0),
            "points_per_window": outputs["points"].size(0) if "points" in outputs else 0,
            "rois_per_window": num_rois,
            "levels": [
                {
                    "length": backbone.size(2) // 2**i,
                    "channels": self.cfg.apn.channels,
                    "stride": self.cfg.backbone.stride * 2**i,
                }
                for i in range(num_levels)
            ],
        }

    def _check_features(self, features: torch.Tensor) -> int:
        rule = "model.backbone.stride x 2**(model.af.num_levels - 1)"
        return check_features(features, self.in_channels, self.cfg.window_multiple, rule)

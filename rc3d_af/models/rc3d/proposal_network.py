"""R-C3D's Action Proposal Network, with the anchor-free proposal branch of R-C3D + AF (A2Net Figure 4).

Backbone output ``[B, C, L]`` -> ``num_convs`` k3 convs (the proposal feature) ->
  * anchor branch: per position and anchor, 2 logits (background, action) and 2 deltas (coder
    scales (1, 1)); labels from the IoU matcher, fixed-size sampling, cross-entropy + smooth L1;
  * anchor-free branch (``rc3d_af``): A2Net's anchor-free head on the proposal feature (and on
    extra stride-2 levels when asked), actionness and boundary distances per point, A2Net's point
    assignment, cross-entropy + smooth L1 (equations 6-7).
Both branches' proposals (probability of "action", segments clipped to the window) are gathered
and selected by one NMS (:func:`~rc3d_af.models.layers.proposals.select_proposals`).
All segments are in window positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rc3d_af.errors import InputError
from rc3d_af.models.layers.coder import SegmentCoder
from rc3d_af.models.layers.ground_truth import count_untaken
from rc3d_af.models.layers.heads import AnchorFreeHead, AnchorHead
from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from rc3d_af.models.layers.point_assigner import assign_points, decode_distances
from rc3d_af.models.layers.priors import anchor_grid, doubling_length_ranges, point_grid, point_levels
from rc3d_af.models.layers.proposals import select_proposals
from rc3d_af.models.layers.sampling import subsample_labels, uniform
from rc3d_af.models.layers.segments import centre_width_to_segments
from rc3d_af.models.losses import anchor_free_losses, mean_over
from rc3d_af.models.rc3d.config import AnchorFreeProposalConfig, AnchorProposalConfig
from rc3d_af.ops import segment_iou

BRANCHES = ("anchor_based", "anchor_free", "both")


@dataclass
class GroundTruth:
    """A batch's ground truth padded to ``M`` per window (window positions, class ids 0..C-1)."""

    segments: torch.Tensor  # [B, M, 2]
    labels: torch.Tensor  # [B, M] int64
    valid: torch.Tensor  # [B, M] bool


def conv_tower(in_channels: int, channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` x (conv k3 to ``channels``, ReLU); the identity when ``num_convs`` is 0."""
    layers: list[nn.Module] = []
    for i in range(num_convs):
        layers += [
            nn.Conv1d(in_channels if i == 0 else channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class AnchorProposals(nn.Module):
    """The anchor branch: ``A`` anchors of ``scales x stride`` positions at every proposal-feature
    position; 2 logits and 2 deltas each."""

    def __init__(
        self,
        channels: int,
        stride: int,
        scales: Sequence[float],
        matcher: Matcher,
        *,
        ignore_cross_boundary: bool,
        num_samples: int,
        positive_fraction: float,
        reg_beta: float,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.scales = tuple(float(s) for s in scales)
        self.head = AnchorHead([channels], len(self.scales), 4, kernel_size=1)
        self.coder = SegmentCoder((1.0, 1.0))
        self.matcher = matcher
        self.ignore_cross_boundary = ignore_cross_boundary
        self.num_samples = num_samples
        self.positive_fraction = positive_fraction
        self.reg_beta = reg_beta

    @classmethod
    def from_config(cls, cfg: AnchorProposalConfig, stride: int) -> AnchorProposals:
        matcher = Matcher(
            [cfg.negative_iou, cfg.positive_iou],
            [NEGATIVE, IGNORE, POSITIVE],
            allow_low_quality_matches=cfg.allow_low_quality,
        )
        return cls(
            cfg.channels,
            stride,
            cfg.anchor_scales,
            matcher,
            ignore_cross_boundary=cfg.ignore_cross_boundary,
            num_samples=cfg.num_samples,
            positive_fraction=cfg.positive_fraction,
            reg_beta=cfg.reg_beta,
        )

    def anchors(self, length: int, device: torch.device) -> torch.Tensor:
        """Anchors ``[L * A, 2]`` (start, end) for a proposal feature of ``length`` positions."""
        return centre_width_to_segments(anchor_grid([length], [self.stride], self.scales, device))

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """``feature [B, C, L]`` -> ``anchor_logits [B, Na, 2]``, ``anchor_deltas [B, Na, 2]`` and
        ``anchors [Na, 2]`` (start, end)."""
        out = self.head([feature])
        return {
            "anchor_logits": out[..., :2],
            "anchor_deltas": out[..., 2:],
            "anchors": self.anchors(feature.size(2), feature.device),
        }

    def candidates(
        self, outputs: dict[str, torch.Tensor], window_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded proposals ``[B, Na, 2]`` clipped to the window and their P(action) ``[B, Na]``."""
        segments = self.coder.decode(outputs["anchor_deltas"].float(), outputs["anchors"][None])
        scores = torch.softmax(outputs["anchor_logits"].float(), dim=-1)[..., 1]
        return segments.clamp(0.0, float(window_size)), scores

    def targets(
        self, anchors: torch.Tensor, gt: GroundTruth, window_size: int, priority: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Sampled labels ``[B, Na]`` (IGNORE / NEGATIVE / POSITIVE), regression targets ``[B, Na, 2]``
        (positives) and the number of ground truths no positive anchor matched."""
        batch = gt.segments.size(0)
        iou = torch.stack(
            [segment_iou(anchors, gt.segments[b], check_values=False) for b in range(batch)]
        )  # [B, Na, M]
        inside = (anchors[:, 0] >= 0) & (anchors[:, 1] <= window_size)
        if self.ignore_cross_boundary:
            iou = torch.where(inside[None, :, None], iou, torch.full_like(iou, -1.0))
        matches = self.matcher(iou, gt.valid)
        labels = matches.labels
        if self.ignore_cross_boundary:
            labels = torch.where(inside[None], labels, torch.full_like(labels, IGNORE))
        labels = subsample_labels(labels, self.num_samples, self.positive_fraction, priority)
        positive = labels == POSITIVE
        matched = gt.segments.gather(1, matches.index[..., None].expand(-1, -1, 2))
        deltas = torch.zeros_like(matched)
        deltas[positive] = self.coder.encode(matched[positive], anchors.expand(batch, -1, -1)[positive])
        unmatched = count_untaken(matches.index, matches.labels == POSITIVE, gt.valid)
        return labels, deltas, unmatched

    def losses(
        self, outputs: dict[str, torch.Tensor], gt: GroundTruth, window_size: int, priority: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """``apn_cls`` (cross-entropy over the sampled anchors) and ``apn_reg`` (smooth L1 over the
        positives, divided by the number sampled, as R-C3D), with counts."""
        labels, target, unmatched = self.targets(outputs["anchors"], gt, window_size, priority)
        sampled, positive = labels != IGNORE, labels == POSITIVE
        num_sampled = int(sampled.sum())
        logits, deltas = outputs["anchor_logits"].float(), outputs["anchor_deltas"].float()
        cls = F.cross_entropy(logits[sampled], labels[sampled], reduction="sum")
        reg = F.smooth_l1_loss(deltas[positive], target[positive], beta=self.reg_beta, reduction="sum")
        counts = {
            "num_apn_pos": float(positive.sum()),
            "num_apn_neg": float((labels == NEGATIVE).sum()),
            "num_gt_unmatched_apn": float(unmatched),
        }
        terms = {
            "apn_cls": mean_over(cls, num_sampled, logits),
            "apn_reg": mean_over(reg, num_sampled, deltas),
        }
        return terms, counts


class AnchorFreeProposals(nn.Module):
    """The anchor-free branch: A2Net's anchor-free head on ``num_levels`` levels (the proposal
    feature, then stride-2 convs), per point an actionness score and distances to the boundaries."""

    def __init__(
        self,
        channels: int,
        stride: int,
        num_levels: int,
        head_channels: int,
        num_classes: int,
        *,
        actionness: str,
        length_ranges: Sequence[tuple[float, float]] | None,
        normalize_distances: bool,
        score_weight: float,
        max_proposals: int,
    ) -> None:
        super().__init__()
        self.strides = [stride * 2**i for i in range(num_levels)]
        self.extra_levels = nn.ModuleList(
            nn.Sequential(nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(inplace=True))
            for _ in range(num_levels - 1)
        )
        self.actionness = actionness
        outputs = 1 if actionness == "binary" else num_classes
        self.head = AnchorFreeHead([channels] * num_levels, head_channels, outputs)
        self.length_ranges = tuple(length_ranges or doubling_length_ranges(self.strides))
        self.normalize_distances = normalize_distances
        self.score_weight = score_weight
        self.max_proposals = max_proposals

    @classmethod
    def from_config(
        cls, cfg: AnchorFreeProposalConfig, channels: int, stride: int, num_classes: int
    ) -> AnchorFreeProposals:
        return cls(
            channels,
            stride,
            cfg.num_levels,
            cfg.head_channels,
            num_classes,
            actionness=cfg.actionness,
            length_ranges=cfg.length_ranges,
            normalize_distances=cfg.normalize_distances,
            score_weight=cfg.score_weight,
            max_proposals=cfg.max_proposals,
        )

    def forward(self, feature: torch.Tensor) -> dict[str, torch.Tensor]:
        """``feature [B, C, L]`` -> ``af_cls [B, Np, K+1]``, ``af_reg [B, Np, 2]``, ``points [Np, 2]``
        (position, stride) and ``point_levels [Np]``."""
        pyramid = [feature]
        for level in self.extra_levels:
            pyramid.append(level(pyramid[-1]))
        lengths = [f.size(2) for f in pyramid]
        return {
            **self.head(pyramid),
            "points": point_grid(lengths, self.strides, feature.device),
            "point_levels": point_levels(lengths, feature.device),
        }

    def _units(self, points: torch.Tensor) -> torch.Tensor:
        return points[:, 1] if self.normalize_distances else torch.ones_like(points[:, 1])

    def candidates(
        self, outputs: dict[str, torch.Tensor], window_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposals ``[B, K, 2]`` clipped to the window and their P(action) x ``score_weight``
        ``[B, K]`` (the best ``max_proposals`` per window when it is set)."""
        points = outputs["points"]
        probs = torch.softmax(outputs["af_cls"].float(), dim=-1)
        scores = 1.0 - probs[..., 0]  # binary: P(action); classes: 1 - P(background)
        distances = outputs["af_reg"].float().clamp(min=0.0)
        batch = scores.size(0)
        segments = decode_distances(
            points[:, 0].repeat(batch), distances.flatten(0, 1), self._units(points).repeat(batch)
        ).view(batch, -1, 2)
        scores = scores * self.score_weight
        if 0 < self.max_proposals < scores.size(1):
            scores, index = scores.topk(self.max_proposals, dim=1)
            segments = segments.gather(1, index[..., None].expand(-1, -1, 2))
        return segments.clamp(0.0, float(window_size)), scores

    def losses(
        self, outputs: dict[str, torch.Tensor], gt: GroundTruth
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """``af_cls`` (cross-entropy over all points) and ``af_reg`` (smooth L1 over the foreground
        points), A2Net's equations (6)-(7), with counts."""
        points = outputs["points"]
        targets = assign_points(
            points[:, 0],
            outputs["point_levels"],
            self.length_ranges,
            self._units(points),
            gt.segments,
            gt.labels,
            gt.valid,
        )
        if self.actionness == "binary":
            targets.labels = (targets.labels > 0).long()
        terms = anchor_free_losses(outputs["af_cls"].float(), outputs["af_reg"].float(), targets)
        counts = {
            "num_af_fg": float((targets.labels > 0).sum()),
            "num_gt_unassigned_af": float(targets.num_unassigned),
        }
        return terms, counts


class ProposalNetwork(nn.Module):
    """Proposal feature + anchor branch (+ anchor-free branch) + joint selection."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_convs: int,
        anchors: AnchorProposals,
        anchor_free: AnchorFreeProposals | None,
    ) -> None:
        super().__init__()
        self.convs = conv_tower(in_channels, channels, num_convs)
        self.anchor = anchors
        self.anchor_free = anchor_free

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Backbone output ``[B, C, L]`` -> the outputs of both branches (see their ``forward``)."""
        feature = self.convs(features)
        outputs = self.anchor(feature)
        if self.anchor_free is not None:
            outputs.update(self.anchor_free(feature))
        return outputs

    @torch.no_grad()
    def candidates(
        self, outputs: dict[str, torch.Tensor], window_size: int, branch: str = "both"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The proposals of ``branch`` (``anchor_based``, ``anchor_free`` or ``both``, gathered):
        segments ``[B, N, 2]`` and scores ``[B, N]`` (detached)."""
        if branch not in BRANCHES:
            raise InputError(f"branch: expected one of {', '.join(BRANCHES)}, got {branch!r}")
        if branch == "anchor_free" and self.anchor_free is None:
            raise InputError("branch: 'anchor_free' needs model.arch rc3d_af (this model is plain R-C3D)")
        parts = []
        if branch != "anchor_free":
            parts.append(self.anchor.candidates(outputs, window_size))
        if branch != "anchor_based" and self.anchor_free is not None:
            parts.append(self.anchor_free.candidates(outputs, window_size))
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def select(
        self, outputs: dict[str, torch.Tensor], window_size: int, settings: dict, branch: str = "both"
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per window ``(segments [K, 2], scores [K])`` after the one NMS (``settings``: the keyword
        arguments of ``select_proposals``)."""
        segments, scores = self.candidates(outputs, window_size, branch)
        return select_proposals(segments, scores, **settings)

    def losses(
        self,
        outputs: dict[str, torch.Tensor],
        gt: GroundTruth,
        window_size: int,
        generators: Sequence[torch.Generator] | None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Unweighted loss terms of both branches and their counts."""
        num_anchors = outputs["anchors"].size(0)
        priority = uniform((gt.segments.size(0), num_anchors), generators, outputs["anchors"].device)
        terms, counts = self.anchor.losses(outputs, gt, window_size, priority)
        if self.anchor_free is not None:
            af_terms, af_counts = self.anchor_free.losses(outputs, gt)
            terms.update(af_terms)
            counts.update(af_counts)
        return terms, counts

"""R-C3D's second stage: RoI sampling, RoI pooling, the fc head, its losses and per-window detection.

Training: the ground truths join the proposals; each RoI takes its best ground truth (IoU matcher:
foreground >= ``fg_iou``, background in ``[bg_iou_low, fg_iou)``, lower not sampled); per window a
fixed number of RoIs: up to ``fg_fraction`` of them foreground without replacement, the rest
background drawn with replacement (foreground when a window has no background), as R-C3D.
Regression targets are class-specific deltas (coder scales ``reg_scales``: R-C3D's target stds).
Inference: softmax, class-specific decoding, classes above ``score_threshold``, per-class NMS within
the window. All segments are in window positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rc3d_af.models.layers.coder import SegmentCoder
from rc3d_af.models.layers.matcher import IGNORE, NEGATIVE, POSITIVE, Matcher
from rc3d_af.models.layers.poolers import RoIPooler
from rc3d_af.models.layers.proposals import split_by_window
from rc3d_af.models.layers.sampling import draw_with_replacement, top_priority, uniform
from rc3d_af.models.losses import mean_over
from rc3d_af.models.postprocess import WindowDetections
from rc3d_af.models.rc3d.config import RoIHeadConfig
from rc3d_af.models.rc3d.proposal_network import GroundTruth
from rc3d_af.ops import batched_nms_1d, segment_iou


@dataclass
class RoISamples:
    """``S`` sampled RoIs per window of a batch of ``B``."""

    segments: torch.Tensor  # [B, S, 2] window positions
    labels: torch.Tensor  # [B, S] int64: 1..C foreground, 0 background, IGNORE for an empty slot
    deltas: torch.Tensor  # [B, S, 2] regression targets of the foreground (0 elsewhere)


class RoIHeads(nn.Module):
    """RoI pooling on the backbone output, fc + ReLU + dropout, C+1 logits and (C+1) x 2 deltas."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pooler: RoIPooler,
        *,
        fc_channels: int,
        dropout: float,
        matcher: Matcher,
        num_samples: int,
        fg_fraction: float,
        append_gt: bool,
        coder: SegmentCoder,
        reg_beta: float,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.pooler = pooler
        self.fc = nn.Linear(in_channels * pooler.output_size, fc_channels)
        self.dropout = dropout
        self.cls_score = nn.Linear(fc_channels, num_classes + 1)
        self.reg_pred = nn.Linear(fc_channels, 2 * (num_classes + 1))
        self.matcher = matcher
        self.num_samples = num_samples
        self.fg_fraction = fg_fraction
        self.append_gt = append_gt
        self.coder = coder
        self.reg_beta = reg_beta

    @classmethod
    def from_config(cls, cfg: RoIHeadConfig, in_channels: int, stride: int, num_classes: int) -> RoIHeads:
        pooler = RoIPooler(cfg.pooler, cfg.output_size, stride, cfg.sampling_ratio, cfg.aligned)
        matcher = Matcher([cfg.bg_iou_low, cfg.fg_iou], [IGNORE, NEGATIVE, POSITIVE])
        return cls(
            in_channels,
            num_classes,
            pooler,
            fc_channels=cfg.fc_channels,
            dropout=cfg.dropout,
            matcher=matcher,
            num_samples=cfg.num_samples,
            fg_fraction=cfg.fg_fraction,
            append_gt=cfg.append_gt,
            coder=SegmentCoder(cfg.reg_scales),
            reg_beta=cfg.reg_beta,
        )

    def forward(
        self,
        features: torch.Tensor,
        segments: Sequence[torch.Tensor],
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``features [B, C, L]`` and ``[K_b, 2]`` RoIs per window -> ``logits [K, C+1]`` and
        ``deltas [K, C+1, 2]``.

        In training mode the dropout masks are drawn from ``generators`` (one per window, every window
        with the same number of RoIs) when given, else from torch's global generator."""
        return self.classify(self.pooler(features, segments).flatten(1), len(segments), generators)

    def classify(
        self, pooled: torch.Tensor, batch: int, generators: Sequence[torch.Generator] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled RoIs ``[K, C * bins]`` of ``batch`` windows -> ``logits [K, C+1]`` and
        ``deltas [K, C+1, 2]`` (dropout in training mode, see :meth:`forward`)."""
        x = F.relu(self.fc(pooled))
        if self.training and self.dropout > 0:
            x = self._dropout(x, batch, generators)
        return self.cls_score(x), self.reg_pred(x).view(-1, self.num_classes + 1, 2)

    def _dropout(
        self, x: torch.Tensor, batch: int, generators: Sequence[torch.Generator] | None
    ) -> torch.Tensor:
        if generators is None:
            return F.dropout(x, self.dropout, training=True)
        keep = uniform((batch, x.numel() // batch), generators, x.device).view_as(x) >= self.dropout
        return x * keep / (1.0 - self.dropout)

    def sample(
        self,
        proposals: Sequence[torch.Tensor],
        gt: GroundTruth,
        generators: Sequence[torch.Generator] | None = None,
    ) -> RoISamples:
        """``num_samples`` RoIs per window from its proposals ``[K_b, 2]`` (+ its ground truths)."""
        batch = len(proposals)
        candidates = [
            torch.cat([p, gt.segments[b][gt.valid[b]]]) if self.append_gt else p
            for b, p in enumerate(proposals)
        ]
        width = max([1, *(len(c) for c in candidates)])
        padded = gt.segments.new_zeros(batch, width, 2)
        iou = gt.segments.new_full((batch, width, gt.segments.size(1)), -1.0)  # padding never matches
        for b, c in enumerate(candidates):
            padded[b, : len(c)] = c
            iou[b, : len(c)] = segment_iou(c, gt.segments[b], check_values=False)
        matches = self.matcher(iou, gt.valid)
        foreground, background = matches.labels == POSITIVE, matches.labels == NEGATIVE
        index = self._sampled_indices(foreground, background, [len(c) for c in candidates], generators)
        taken = index >= 0
        index = index.clamp(min=0)
        segments = padded.gather(1, index[..., None].expand(-1, -1, 2))
        gt_index = matches.index.gather(1, index)
        is_fg = foreground.gather(1, index) & taken
        labels = torch.where(is_fg, gt.labels.gather(1, gt_index) + 1, torch.zeros_like(gt_index))
        labels = torch.where(taken, labels, torch.full_like(labels, IGNORE))
        deltas = torch.zeros_like(segments)
        matched = gt.segments.gather(1, gt_index[..., None].expand(-1, -1, 2))
        deltas[is_fg] = self.coder.encode(matched[is_fg], segments[is_fg])
        return RoISamples(segments, labels, deltas)

    def _sampled_indices(
        self,
        foreground: torch.Tensor,
        background: torch.Tensor,
        counts: Sequence[int],
        generators: Sequence[torch.Generator] | None,
    ) -> torch.Tensor:
        """``[B, S]`` candidate indices: the sampled foreground first, then the drawn filler; -1 for a
        slot no candidate can fill. ``counts[b]``: window ``b``'s candidates (the first of its row)."""
        batch, width = foreground.shape
        device = foreground.device
        priority = self._priority(counts, width, generators, device)
        num_fg = foreground.sum(dim=1).clamp(max=int(self.num_samples * self.fg_fraction))
        chosen = top_priority(foreground, num_fg, priority)
        fg_order = priority.masked_fill(~chosen, float("-inf")).argsort(dim=1, descending=True, stable=True)
        filler = torch.where(background.any(dim=1, keepdim=True), background, foreground)
        fill = draw_with_replacement(
            filler, self.num_samples, uniform((batch, self.num_samples), generators, device)
        )
        slot = torch.arange(self.num_samples, device=device).expand(batch, -1)
        from_fg = fg_order.gather(1, slot.clamp(max=width - 1))
        from_fill = fill.gather(1, (slot - num_fg[:, None]).clamp(min=0))
        return torch.where(slot < num_fg[:, None], from_fg, from_fill)

    @staticmethod
    def _priority(
        counts: Sequence[int], width: int, generators: Sequence[torch.Generator] | None, device: torch.device
    ) -> torch.Tensor:
        """Uniform priorities ``[B, width]``; with ``generators``, window ``b`` draws ``counts[b]`` of
        them (the rest of its row, never a candidate, is 0), so its later draws do not depend on the
        widest window of its batch."""
        if generators is None:
            return uniform((len(counts), width), None, device)
        priority = torch.zeros(len(counts), width, device=device)
        for b, (count, generator) in enumerate(zip(counts, generators, strict=True)):
            priority[b, :count] = uniform((1, count), [generator], device)[0]
        return priority

    def losses(
        self,
        features: torch.Tensor,
        samples: RoISamples,
        generators: Sequence[torch.Generator] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """``roi_cls`` (cross-entropy over the sampled RoIs) and ``roi_reg`` (smooth L1 of the
        foreground's own class, averaged over all sampled RoIs, as R-C3D), with counts."""
        logits, deltas = self(features, list(samples.segments), generators)
        logits, deltas = logits.float(), deltas.float()
        labels = samples.labels.flatten()
        sampled = labels != IGNORE
        foreground = labels > 0
        num_sampled = int(sampled.sum())
        cls = F.cross_entropy(logits[sampled], labels[sampled], reduction="sum")
        own_class = deltas[foreground, labels[foreground]]  # [F, 2]
        target = samples.deltas.flatten(0, 1)[foreground]
        reg = F.smooth_l1_loss(own_class, target, beta=self.reg_beta, reduction="sum")
        terms = {
            "roi_cls": mean_over(cls, num_sampled, logits),
            "roi_reg": mean_over(reg, num_sampled, deltas),
        }
        counts = {"num_roi_fg": float(foreground.sum()), "num_roi_bg": float((labels == 0).sum())}
        return terms, counts

    @torch.no_grad()
    def detect(
        self,
        features: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        window_size: int,
        score_threshold: float,
        nms_iou: float,
    ) -> list[WindowDetections]:
        """Per window: classes above ``score_threshold`` with their class-specific segments, per-class
        NMS at ``nms_iou`` (one ``batched_nms_1d`` call for the batch)."""
        pooled = self.pooler(features, proposals)
        return self.detect_pooled(pooled, proposals, window_size, score_threshold, nms_iou)

    @torch.no_grad()
    def detect_pooled(
        self,
        pooled: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        window_size: int,
        score_threshold: float,
        nms_iou: float,
    ) -> list[WindowDetections]:
        """:meth:`detect` from the pooled RoIs ``[K, C, bins]`` of ``proposals``."""
        batch, device = len(proposals), pooled.device
        rois = torch.cat(list(proposals)) if proposals else pooled.new_zeros(0, 2)
        logits, deltas = self.classify(pooled.flatten(1), batch)
        probs = torch.softmax(logits.float(), dim=-1)[:, 1:]  # [K, C]
        segments = self.coder.decode(deltas[:, 1:].float(), rois[:, None, :]).clamp(0.0, float(window_size))
        counts = torch.tensor([len(p) for p in proposals], device=device)
        window_of = torch.repeat_interleave(torch.arange(batch, device=device), counts)
        keep = (probs > score_threshold) & (segments[..., 1] > segments[..., 0])
        roi_index, label = keep.nonzero(as_tuple=True)
        flat_segments, flat_scores = segments[roi_index, label], probs[roi_index, label]
        windows = window_of[roi_index]
        kept = batched_nms_1d(
            flat_segments, flat_scores, windows * self.num_classes + label, nms_iou, check_values=False
        )
        return [
            WindowDetections(flat_segments[k], flat_scores[k], label[k])
            for k in split_by_window(kept, windows[kept], batch)
        ]

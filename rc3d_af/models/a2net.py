"""A2Net meta-architecture (paper Figure 2).

features [B, D, T] -> hierarchical feature module (backbone.py) -> pyramid of n levels
    -> anchor-free module (anchor_free.py): per point, C+1 class logits + distances to boundaries
    -> anchor-based module (anchor_based.py): per anchor, C+1 class logits, overlap, (delta_c, delta_w)
training: targets.py assigns ground truths, losses.py computes equations (4)-(10);
inference: postprocess.py decodes, weights and merges both branches (section III-F).
The variant (``cfg.variant``) decides which of the two modules exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rc3d_af.errors import InputError
from rc3d_af.models import anchor_based, anchor_free, losses, postprocess, targets
from rc3d_af.models.backbone import HierarchicalFeatures
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.layers.ground_truth import check_batch, check_features


class A2Net(nn.Module):
    """Anchor-free + anchor-based one-stage temporal action localizer over feature windows."""

    def __init__(self, cfg: ModelConfig, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.backbone = HierarchicalFeatures(cfg, in_channels)
        level_channels = self.backbone.level_channels
        self.anchor_free = (
            anchor_free.AnchorFreeHead(level_channels, cfg.channels(cfg.af_head_channels), num_classes)
            if cfg.uses_anchor_free
            else None
        )
        self.anchor_based = (
            anchor_based.AnchorBasedHead(level_channels, len(cfg.anchor_scales), num_classes)
            if cfg.uses_anchor_based
            else None
        )

    def level_lengths(self, window_size: int) -> list[int]:
        """Temporal length of each pyramid level for a window of ``window_size`` positions."""
        return [window_size // s for s in self.cfg.level_strides]

    def forward(
        self,
        features: torch.Tensor,
        gt_segments: Sequence[torch.Tensor] | None = None,
        gt_labels: Sequence[torch.Tensor] | None = None,
        *,
        generators: Sequence[torch.Generator] | None = None,
        diagnostics: dict[str, float] | None = None,
    ) -> dict[str, torch.Tensor] | list[postprocess.WindowDetections]:
        """The detector contract (docs/ARCHITECTURE.md).

        Training mode: the weighted loss terms of equations (4)-(10) for ``features [B, D, T]`` and the
        windows' ground truth (``gt_segments[b] [M_b, 2]`` window positions, ``gt_labels[b] [M_b]`` ids
        0..C-1); ``generators`` (one per window) draw the negative sampling, torch's global generator
        when None; ``diagnostics`` (optional) receives the unweighted terms and assignment counts.
        Eval mode: one :class:`WindowDetections` per window (window positions, before NMS).
        """
        outputs = self.head_outputs(features)
        if not self.training:
            return self.predict(outputs)
        if gt_segments is None or gt_labels is None:
            raise InputError("gt_segments, gt_labels: required in training mode (model.train())")
        # Losses in float32: the heads' logits may be float16 under autocast.
        outputs = {k: v.float() if v.is_floating_point() else v for k, v in outputs.items()}
        terms = self.losses(outputs, gt_segments, gt_labels, generators=generators)
        if diagnostics is not None:
            diagnostics.update({name: float(value.detach()) for name, value in terms.items()})
        return losses.weighted_terms(terms, self.cfg)

    def head_outputs(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features [B, D, T]`` -> raw head outputs and the window geometry (see ARCHITECTURE.md):
        ``af_cls [B, Np, C+1]``, ``af_reg [B, Np, 2]``, ``points [Np, 2]``, ``ab_cls [B, Na, C+1]``,
        ``ab_overlap [B, Na]``, ``ab_reg [B, Na, 2]``, ``anchors [Na, 2]``, ``window_size`` (0-dim)."""
        check_features(features, self.in_channels, self.cfg.window_multiple, "2**num_levels")
        window_size = features.size(2)
        pyramid = self.backbone(features)
        lengths = self.level_lengths(window_size)
        outputs = {"window_size": torch.tensor(window_size)}
        if self.anchor_free is not None:
            outputs.update(self.anchor_free(pyramid))
            outputs["points"] = anchor_free.point_grid(lengths, self.cfg.level_strides, features.device)
        if self.anchor_based is not None:
            outputs.update(self.anchor_based(pyramid))
            outputs["anchors"] = anchor_based.anchor_grid(
                lengths, self.cfg.level_strides, self.cfg.anchor_scales, features.device
            )
        return outputs

    def summary_forward(self, features: torch.Tensor) -> dict[str, Any]:
        """Every layer a window passes at inference, without the data-dependent selection (the model
        summary counts their multiply-accumulates on the meta device); returns the window geometry."""
        outputs = self.head_outputs(features)
        lengths = self.level_lengths(features.size(2))
        return {
            "anchors_per_window": outputs["anchors"].size(0) if "anchors" in outputs else 0,
            "points_per_window": outputs["points"].size(0) if "points" in outputs else 0,
            "levels": [
                {"length": length, "channels": channels, "stride": stride}
                for length, channels, stride in zip(
                    lengths, self.backbone.level_channels, self.cfg.level_strides, strict=True
                )
            ],
        }

    def losses(
        self,
        outputs: dict[str, torch.Tensor],
        gt_segments: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        *,
        generators: Sequence[torch.Generator] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms (unweighted), their weighted sum ``total`` and detached assignment counts.

        ``outputs``: :meth:`head_outputs`; ``gt_segments[b]``: ``[M_b, 2]`` window positions;
        ``gt_labels[b]``: ``[M_b]`` ids 0..C-1.
        """
        batch = next(v for k, v in outputs.items() if k.endswith("_cls")).size(0)
        check_batch(gt_segments, gt_labels, batch, self.num_classes)
        terms: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        if "af_cls" in outputs:
            point_targets = targets.assign_points(outputs["points"], gt_segments, gt_labels, self.cfg)
            terms.update(losses.anchor_free_losses(outputs["af_cls"], outputs["af_reg"], point_targets))
            counts["num_af_fg"] = int((point_targets.labels > 0).sum())
            counts["num_gt_unassigned_af"] = point_targets.num_unassigned
        if "ab_cls" in outputs:
            anchor_targets = targets.assign_anchors(
                outputs["anchors"],
                gt_segments,
                gt_labels,
                self.cfg,
                *self._matching_inputs(outputs),
                generators=generators,
            )
            terms.update(
                losses.anchor_based_losses(
                    outputs["ab_cls"], outputs["ab_overlap"], outputs["ab_reg"], anchor_targets
                )
            )
            counts["num_ab_pos"] = int((anchor_targets.labels > 0).sum())
            counts["num_ab_neg"] = int((anchor_targets.labels == 0).sum())
            counts["num_gt_unmatched_ab"] = anchor_targets.num_unmatched
        terms["total"] = losses.total_loss(terms, self.cfg)
        terms.update({name: torch.tensor(float(value)) for name, value in counts.items()})
        return terms

    def _matching_inputs(
        self, outputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Detached foreground probabilities ``[B, Na]`` (hard negative mining) and decoded predictions
        ``[B, Na, 2]`` (matching on predictions), each only when the configuration asks for it."""
        foreground = predicted = None
        if self.cfg.ab_negative_mining == "hard":
            foreground = 1.0 - torch.softmax(outputs["ab_cls"].detach().float(), dim=-1)[..., 0]
        if self.cfg.ab_match_on == "predictions":
            deltas = outputs["ab_reg"].detach().float()
            batch = deltas.size(0)
            anchors = outputs["anchors"].repeat(batch, 1)
            decoded = anchor_based.decode(deltas.flatten(0, 1), anchors, self.cfg.ab_alpha, self.cfg.ab_beta)
            predicted = decoded.view(batch, -1, 2)
        return foreground, predicted

    def predict(self, outputs: dict[str, torch.Tensor]) -> list[postprocess.WindowDetections]:
        """Candidate detections per window (window positions, before NMS), section III-F, from
        :meth:`head_outputs`."""
        return postprocess.window_detections(outputs, self.cfg)

    @torch.no_grad()
    def propose(self, features: torch.Tensor, branch: str = "both") -> list[postprocess.WindowDetections]:
        """Class-agnostic candidates per window (label 0, window positions, before NMS) of one branch
        (``anchor_free``: the best foreground probability; ``anchor_based``: equation (11)) or of
        ``both`` (weighted by lambda), for the paper's recall comparison of the branches (IV-C)."""
        wanted = {"anchor_free": ("af_",), "anchor_based": ("ab_",), "both": ("af_", "ab_")}
        if branch not in wanted:
            raise InputError(f"branch: expected one of {', '.join(wanted)}, got {branch!r}")
        outputs = self.head_outputs(features)
        heads = {k for k in outputs if k.startswith(("af_", "ab_"))}
        kept = {k for k in heads if k.startswith(wanted[branch])}
        if not kept:
            raise InputError(f"branch: this A2Net (variant {self.cfg.variant}) has no {branch} module")
        outputs = {k: v for k, v in outputs.items() if k not in heads or k in kept}
        return [
            postprocess.WindowDetections(d.segments, d.scores, torch.zeros_like(d.labels))
            for d in self.predict(outputs)
        ]

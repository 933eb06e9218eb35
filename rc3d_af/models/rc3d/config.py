"""``RC3DConfig``: R-C3D (``arch: rc3d``) and R-C3D + AF (``arch: rc3d_af``) as plain data.

Defaults are R-C3D's rules (R-C3D.pytorch, the reproduction the A2Net authors extended) carried
over to pre-extracted features: a buffer of 768 frames is 192 features at 4 frames per feature, and
the backbone's output stride of 8 frames is 2 features (96 positions). Every choice the A2Net paper
leaves open for the anchor-free proposal branch (section III-G) is a field of ``af`` with the
reason for its default.

Units: ``backbone.stride`` in window positions (features); anchor scales and AF level strides in
backbone positions; IoU thresholds are fractions; everything else says its unit. Each block is
validated on construction; ``rc3d_af.config`` builds them from YAML and names the key path in errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rc3d_af.models.config import (
    check_choice,
    check_inference,
    check_int,
    check_length_ranges,
    check_number,
)

ARCHS = ("rc3d", "rc3d_af")
ACTIONNESS = ("binary", "classes")
POOLERS = ("pool", "align")
R_C3D_ANCHOR_SCALES = (2.0, 4.0, 5.0, 6.0, 8.0, 9.0, 10.0, 12.0, 14.0, 16.0)


def _numbers(obj: Any, names: tuple[str, ...], **bounds: Any) -> None:
    for name in names:
        check_number(name, getattr(obj, name), section="", **bounds)


def _ints(obj: Any, names: tuple[str, ...], low: int) -> None:
    for name in names:
        check_int(name, getattr(obj, name), low, section="")


@dataclass(frozen=True)
class BackboneConfig:
    """Features ``[B, D, T]`` -> ``[B, channels, T / stride]``: A2Net's base layer (1x1 conv to
    ``channels``, conv ``kernel_size``, ReLUs) and a max-pool of ``stride`` (R-C3D's 8 frames)."""

    channels: int = 512
    kernel_size: int = 9
    stride: int = 2  # window positions per backbone position

    def __post_init__(self) -> None:
        _ints(self, ("channels", "kernel_size", "stride"), 1)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected an odd size, got {self.kernel_size}")


@dataclass(frozen=True)
class AnchorProposalConfig:
    """R-C3D's Action Proposal Network: ``num_convs`` k3 convs, then per anchor 2 logits (background,
    action) and 2 deltas; labels, sampling and losses of Faster R-CNN's RPN."""

    channels: int = 512
    num_convs: int = 2
    anchor_scales: tuple[float, ...] = R_C3D_ANCHOR_SCALES  # lengths, backbone positions
    negative_iou: float = 0.3  # IoU < this: negative
    positive_iou: float = 0.7  # IoU >= this: positive
    allow_low_quality: bool = True  # every anchor with a ground truth's best IoU is positive too
    ignore_cross_boundary: bool = True  # anchors crossing the window edge are never trained
    num_samples: int = 64  # anchors sampled per window for the loss
    positive_fraction: float = 0.5  # at most this share of them positive
    reg_beta: float = 1.0 / 9.0  # smooth-L1 transition (R-C3D's sigma 3)
    loss_cls: float = 1.0
    loss_reg: float = 1.0

    def __post_init__(self) -> None:
        _ints(self, ("channels", "num_samples"), 1)
        _ints(self, ("num_convs",), 0)
        if not self.anchor_scales:
            raise ValueError("anchor_scales: expected at least one anchor length")
        for i, scale in enumerate(self.anchor_scales):
            check_number(f"anchor_scales[{i}]", scale, low=0.0, low_open=True, section="")
        _numbers(self, ("negative_iou", "positive_iou", "positive_fraction"), low=0.0, high=1.0)
        if self.negative_iou > self.positive_iou:
            raise ValueError(
                f"negative_iou: expected <= positive_iou ({self.positive_iou}), got {self.negative_iou}"
            )
        _numbers(self, ("reg_beta",), low=0.0, low_open=True)
        _numbers(self, ("loss_cls", "loss_reg"), low=0.0)


@dataclass(frozen=True)
class AnchorFreeProposalConfig:
    """The anchor-free proposal branch of R-C3D + AF (A2Net section III-G, equations 2-3 and 6-7),
    on the proposal network's feature, in parallel with the anchors.

    Defaults and why: ``actionness: binary`` because a proposal network ranks actions against
    background only, like its anchor branch (``classes`` trains C+1 classes and scores 1 - P(bg));
    ``num_levels: 1`` because R-C3D has one feature map (every position inside a ground truth is
    foreground, the shortest containing ground truth wins; more levels add stride-2 convs and take
    the A2Net length ranges); ``score_weight: 1`` because both branches output a softmax probability
    of "action", which the joint NMS compares as they are; ``max_proposals: 0`` lets every point
    enter the joint selection (there are fewer points than anchors); ``loss_cls: 1`` like every
    R-C3D term (A2Net's 30 on its classification term balances A2Net's own terms, not these);
    ``loss_reg: 0.1`` because on one level the distance targets run to tens of strides, so the
    smooth-L1 term is tens of times the anchor branch's normalised-delta term and takes over the
    shared proposal feature: on the demo's benchmark (seed 0) weight 1 gave mAP@0.5 0.792 and
    proposal AUC 29.0, below plain R-C3D's 0.873 and 36.8; weight 0.1 gave 0.882 and 36.2.
    """

    actionness: str = "binary"
    num_levels: int = 1
    head_channels: int = 512
    length_ranges: tuple[tuple[float, float], ...] | None = None  # per level, window positions
    normalize_distances: bool = True  # distances in units of the level's stride (else positions)
    score_weight: float = 1.0  # AF proposal scores x this before the joint NMS
    max_proposals: int = 0  # best AF proposals per window entering the joint NMS; 0 = all
    loss_cls: float = 1.0
    loss_reg: float = 0.1  # see above

    def __post_init__(self) -> None:
        check_choice("actionness", self.actionness, ACTIONNESS, section="")
        _ints(self, ("num_levels", "head_channels"), 1)
        _ints(self, ("max_proposals",), 0)
        check_length_ranges("length_ranges", self.length_ranges, self.num_levels, section="")
        _numbers(self, ("score_weight",), low=0.0, low_open=True)
        _numbers(self, ("loss_cls", "loss_reg"), low=0.0)


@dataclass(frozen=True)
class ProposalSelectionConfig:
    """R-C3D's proposal layer: top-k by score, NMS, top-k, separately for training and test."""

    pre_nms_topk_train: int = 12000
    nms_iou_train: float = 0.8
    post_nms_topk_train: int = 2000
    pre_nms_topk_test: int = 6000
    nms_iou_test: float = 0.9
    post_nms_topk_test: int = 300
    min_length: float = 0.0  # proposals no longer than this (window positions) are dropped

    def __post_init__(self) -> None:
        _ints(
            self,
            ("pre_nms_topk_train", "post_nms_topk_train", "pre_nms_topk_test", "post_nms_topk_test"),
            1,
        )
        _numbers(self, ("nms_iou_train", "nms_iou_test"), low=0.0, high=1.0)
        _numbers(self, ("min_length",), low=0.0)

    def settings(self, training: bool) -> dict[str, Any]:
        """Keyword arguments of :func:`~rc3d_af.models.layers.proposals.select_proposals`."""
        phase = "train" if training else "test"
        return {
            "pre_nms_topk": getattr(self, f"pre_nms_topk_{phase}"),
            "nms_iou": getattr(self, f"nms_iou_{phase}"),
            "post_nms_topk": getattr(self, f"post_nms_topk_{phase}"),
            "min_length": self.min_length,
        }


@dataclass(frozen=True)
class RoIHeadConfig:
    """R-C3D's second stage: RoI sampling, RoI pooling on the backbone output, an fc head with C+1
    logits and class-specific regression."""

    pooler: str = "pool"  # "pool" (R-C3D's RoI max pooling, roi_pool_1d) or "align" (roi_align_1d)
    output_size: int = 4  # temporal bins
    sampling_ratio: int = 2  # roi_align_1d samples per bin (-1 adaptive)
    aligned: bool = False  # roi_align_1d half-pixel offset
    fc_channels: int = 4096  # R-C3D's fc6 (C3D), one fc layer
    dropout: float = 0.5
    fg_iou: float = 0.5  # foreground: IoU >= this
    bg_iou_low: float = 0.1  # background: IoU in [bg_iou_low, fg_iou); lower: not sampled
    num_samples: int = 128  # RoIs per window
    fg_fraction: float = 0.5  # at most this share foreground (without replacement)
    append_gt: bool = True  # the ground truths join the proposals as RoIs
    reg_scales: tuple[float, float] = (0.1, 0.2)  # regression targets divided by these (stds)
    reg_beta: float = 1.0  # smooth-L1 transition (sigma 1)
    loss_cls: float = 1.0
    loss_reg: float = 1.0

    def __post_init__(self) -> None:
        check_choice("pooler", self.pooler, POOLERS, section="")
        _ints(self, ("output_size", "fc_channels", "num_samples"), 1)
        if self.sampling_ratio == 0 or self.sampling_ratio < -1:
            raise ValueError(f"sampling_ratio: expected -1 (adaptive) or >= 1, got {self.sampling_ratio}")
        _numbers(self, ("dropout",), low=0.0, high=0.99)
        _numbers(self, ("fg_iou", "bg_iou_low", "fg_fraction"), low=0.0, high=1.0)
        if self.bg_iou_low >= self.fg_iou:
            raise ValueError(f"bg_iou_low: expected < fg_iou ({self.fg_iou}), got {self.bg_iou_low}")
        if len(self.reg_scales) != 2:
            raise ValueError(f"reg_scales: expected two numbers, got {self.reg_scales}")
        for i, scale in enumerate(self.reg_scales):
            check_number(f"reg_scales[{i}]", scale, low=0.0, low_open=True, section="")
        _numbers(self, ("reg_beta",), low=0.0, low_open=True)
        _numbers(self, ("loss_cls", "loss_reg"), low=0.0)


@dataclass(frozen=True)
class RC3DConfig:
    """R-C3D (``arch: rc3d``) or R-C3D + AF (``arch: rc3d_af``; ``af`` is ignored for ``rc3d``, so
    ``--set model.arch=rc3d`` gives plain R-C3D with every other setting equal).

    Inference (R-C3D's test rules): per window, classes scoring above ``score_threshold``,
    class-specific boxes, per-class NMS at ``window_nms_iou``; per video, the shared video merge
    (per-class NMS at ``nms_iou``, ``nms_per_class``, ``top_k``), the same fields as A2Net's.
    """

    arch: str = "rc3d_af"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    apn: AnchorProposalConfig = field(default_factory=AnchorProposalConfig)
    af: AnchorFreeProposalConfig = field(default_factory=AnchorFreeProposalConfig)
    proposals: ProposalSelectionConfig = field(default_factory=ProposalSelectionConfig)
    roi: RoIHeadConfig = field(default_factory=RoIHeadConfig)
    # -- inference
    score_threshold: float = 0.005
    window_nms_iou: float = 0.4
    nms_iou: float = 0.4
    nms_per_class: int = 200
    top_k: int = 200
    class_agnostic_nms: bool = False
    soft_nms: bool = False
    soft_nms_sigma: float = 0.5
    soft_nms_method: str = "gaussian"
    soft_nms_min_score: float = 0.001

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ARCHS, section="")
        check_number("window_nms_iou", self.window_nms_iou, low=0.0, high=1.0, section="")
        check_inference(self, section="")

    @property
    def uses_anchor_free(self) -> bool:
        return self.arch == "rc3d_af"

    @property
    def window_multiple(self) -> int:
        """Window lengths must be multiples of this (the backbone stride, and each extra AF level halves)."""
        levels = self.af.num_levels if self.uses_anchor_free else 1
        return self.backbone.stride * 2 ** (levels - 1)

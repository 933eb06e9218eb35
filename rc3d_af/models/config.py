"""``ModelConfig``: every A2Net hyper-parameter as plain data, validated on construction.

Defaults are the paper's THUMOS14 settings (Table II, section IV-B); where the reference code
differs, the code's choice is available as a switch and named in the field's comment.

Units: lengths and ranges are in *window positions* (input feature indices of a window, the unit of
``features[B, D, T]``), unless a field says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rc3d_af.errors import InputError
from rc3d_af.models.layers.priors import doubling_length_ranges

VARIANTS = ("a2net", "anchor_free", "anchor_based")
NEGATIVE_MINING = ("random", "hard")
MATCH_ON = ("anchors", "predictions")
SOFT_NMS_METHODS = ("gaussian", "linear")
MIN_LEVELS, MAX_LEVELS = 3, 7


@dataclass(frozen=True)
class ModelConfig:
    """A2Net architecture, training targets, losses and inference settings.

    Architecture (Table II): base conv (1x1 -> ``base_channels``, conv k``base_kernel_size``,
    max-pool 2), then ``num_levels`` pyramid levels (first stride 1, then stride 2) whose channel
    counts are the first ``num_levels`` entries of ``level_channels``; every channel count, including
    the anchor-free head width, is scaled by ``width_multiplier``.
    """

    arch: str = "a2net"  # the detector (see rc3d_af.models.build_model); this config is A2Net's
    variant: str = "a2net"  # "a2net" (joint, paper), "anchor_free" or "anchor_based" only
    # -- hierarchical feature module (Table II)
    num_levels: int = 6  # paper: 6 (Table VI studies 3..7)
    width_multiplier: float = 1.0
    base_channels: int = 512
    base_kernel_size: int = 9
    level_channels: tuple[int, ...] = (512, 1024, 1024, 2048, 2048, 4096, 4096)  # 7th: our choice
    # -- anchor-based module (III-C)
    anchor_scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.0)  # x the level's cell width
    ab_alpha: float = 0.1  # eq. (1); the paper's text says 1e-4, the reference code uses 0.1
    ab_beta: float = 0.1
    ab_match_iou: float = 0.5  # an anchor is positive when IoU > this with a ground truth
    # IoU of the default anchors (paper) or of the anchors' decoded predictions (reference code)
    ab_match_on: str = "anchors"
    ab_negative_ratio: float = 1.0  # negatives sampled per positive (paper 1:1)
    # "random" (paper) or "hard": the negatives most confidently foreground (the code's hard negatives)
    ab_negative_mining: str = "random"
    # -- anchor-free module (III-D)
    af_head_channels: int = 512
    # Ground-truth length range [low, high) per level, window positions. None = the paper's rule
    # [2^(i-1), 2^i) AL1 cells = [2^i, 2^(i+1)) positions, first level from 0, last level open-ended.
    af_length_ranges: tuple[tuple[float, float], ...] | None = None
    # False: distances regressed in AL1 cells (2 window positions), as the reference code;
    # True: divided by each level's stride (FCOS style).
    af_normalize_distances: bool = False
    # -- losses, eq. (4)-(5)
    loss_gamma: float = 1.0  # L = L_af + gamma * L_ab
    loss_gamma_af: float = 30.0  # L_af = L_reg + gamma_af * L_cls
    loss_gamma1: float = 10.0  # L_ab = L_cls + gamma1 * L_overlap + gamma2 * L_reg
    loss_gamma2: float = 10.0
    # -- inference (III-F)
    branch_weight: float = 0.5  # lambda: anchor-based scores x lambda, anchor-free x (1 - lambda)
    ab_max_background: float = 1.0  # drop anchors with P(background) >= this (code: 0.98; 1 keeps all)
    score_threshold: float = 0.001  # candidates below this are dropped before NMS
    pre_nms_top_k: int = 1000  # best candidates kept per window before NMS
    nms_iou: float = 0.2  # reference code on THUMOS14
    nms_per_class: int = 200  # kept per class and video after NMS
    top_k: int = 200  # kept per video
    class_agnostic_nms: bool = False  # ActivityNet-style reference setting uses True
    soft_nms: bool = False  # per-class soft-NMS instead of hard NMS (then nms_iou is the linear threshold)
    soft_nms_sigma: float = 0.5  # gaussian decay exp(-IoU^2 / sigma)
    soft_nms_method: str = "gaussian"  # or "linear": 1 - IoU above nms_iou
    soft_nms_min_score: float = 0.001  # decayed candidates below this are dropped

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("a2net",))
        check_choice("variant", self.variant, VARIANTS)
        check_int("num_levels", self.num_levels, MIN_LEVELS, MAX_LEVELS)
        check_number("width_multiplier", self.width_multiplier, low=0.0, low_open=True)
        check_int("base_channels", self.base_channels, 1)
        check_int("base_kernel_size", self.base_kernel_size, 1)
        if self.base_kernel_size % 2 == 0:
            raise InputError(f"model.base_kernel_size: expected an odd size, got {self.base_kernel_size}")
        if len(self.level_channels) < self.num_levels:
            raise InputError(
                f"model.level_channels: expected at least num_levels={self.num_levels} entries, "
                f"got {len(self.level_channels)}"
            )
        for i, channels in enumerate(self.level_channels):
            check_int(f"level_channels[{i}]", channels, 1)
        if not self.anchor_scales:
            raise InputError("model.anchor_scales: expected at least one scale")
        for i, scale in enumerate(self.anchor_scales):
            check_number(f"anchor_scales[{i}]", scale, low=0.0, low_open=True)
        for name in ("ab_alpha", "ab_beta", "ab_negative_ratio"):
            check_number(name, getattr(self, name), low=0.0, low_open=name != "ab_negative_ratio")
        check_number("ab_match_iou", self.ab_match_iou, low=0.0, high=1.0)
        check_choice("ab_negative_mining", self.ab_negative_mining, NEGATIVE_MINING)
        check_choice("ab_match_on", self.ab_match_on, MATCH_ON)
        check_int("af_head_channels", self.af_head_channels, 1)
        check_length_ranges("af_length_ranges", self.af_length_ranges, self.num_levels)
        for name in ("loss_gamma", "loss_gamma_af", "loss_gamma1", "loss_gamma2"):
            check_number(name, getattr(self, name), low=0.0)
        for name in ("branch_weight", "ab_max_background"):
            check_number(name, getattr(self, name), low=0.0, high=1.0)
        check_int("pre_nms_top_k", self.pre_nms_top_k, 1)
        check_inference(self)

    # -- derived quantities ------------------------------------------------------------------------
    def channels(self, base: int) -> int:
        """A channel count scaled by ``width_multiplier`` (at least 1)."""
        return max(1, round(base * self.width_multiplier))

    @property
    def uses_anchor_free(self) -> bool:
        return self.variant in ("a2net", "anchor_free")

    @property
    def uses_anchor_based(self) -> bool:
        return self.variant in ("a2net", "anchor_based")

    @property
    def window_multiple(self) -> int:
        """Window lengths must be multiples of this (every level halves the length exactly)."""
        return 2**self.num_levels

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Accumulated stride of each level in window positions: 2, 4, 8, ... (base max-pool = 2)."""
        return tuple(2 ** (i + 1) for i in range(self.num_levels))

    def af_ranges(self) -> tuple[tuple[float, float], ...]:
        """Ground-truth length range ``[low, high)`` of each level, window positions."""
        if self.af_length_ranges is not None:
            return tuple((float(lo), float(hi)) for lo, hi in self.af_length_ranges)
        return doubling_length_ranges(self.level_strides)

    # -- plain-data round trip ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-ready dict (tuples become lists); ``from_dict(to_dict())`` gives an equal config."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ModelConfig:
        """Build from a mapping (the ``model`` section of a YAML config); unknown keys raise InputError."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise InputError(f"model: expected a mapping of settings, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise InputError(f"model: unknown keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls(**{k: _as_tuple(v) for k, v in data.items()})


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def check_inference(cfg: Any, section: str = "model.") -> None:
    """The inference settings every detector config has: ``score_threshold`` and the video merge's
    (:class:`rc3d_af.models.postprocess.VideoMergeSettings`)."""
    for name in ("score_threshold", "nms_iou", "soft_nms_min_score"):
        check_number(name, getattr(cfg, name), low=0.0, high=1.0, section=section)
    for name in ("nms_per_class", "top_k"):
        check_int(name, getattr(cfg, name), 1, section=section)
    check_number("soft_nms_sigma", cfg.soft_nms_sigma, low=0.0, low_open=True, section=section)
    check_choice("soft_nms_method", cfg.soft_nms_method, SOFT_NMS_METHODS, section=section)


def check_length_ranges(
    name: str, ranges: tuple[tuple[float, float], ...] | None, num_levels: int, section: str = "model."
) -> None:
    """``None`` or one ``[low, high)`` pair with ``low < high`` per level."""
    if ranges is None:
        return
    if len(ranges) != num_levels:
        raise InputError(
            f"{section}{name}: expected {num_levels} [low, high) pairs (one per level), got {len(ranges)}"
        )
    for i, pair in enumerate(ranges):
        numeric = len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)
        if not numeric or not pair[0] < pair[1]:
            raise InputError(f"{section}{name}[{i}]: expected [low, high) with low < high, got {pair}")


# Value checks of the model configs. ``section`` prefixes the field name in the message: "model."
# for A2Net's flat config, "" for configs built by rc3d_af.config, which adds the key path itself.


def check_choice(name: str, value: object, choices: tuple[str, ...], section: str = "model.") -> None:
    if value not in choices:
        raise InputError(f"{section}{name}: expected one of {', '.join(choices)}, got {value!r}")


def check_int(name: str, value: object, low: int, high: int | None = None, section: str = "model.") -> None:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"{section}{name}: expected an integer {bound}, got {value!r}")


def check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    section: str = "model.",
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        bound = " and ".join(b for b in (lo, hi) if b)
        raise InputError(f"{section}{name}: expected a finite number {bound}, got {value!r}")

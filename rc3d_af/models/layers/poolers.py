"""RoI pooling of segments over a feature map, through the compiled 1D RoI ops.

The segments are in window positions; the feature map has one column every ``stride`` positions,
so the ops run with ``spatial_scale = 1 / stride`` (R-C3D: stride 8 frames = 2 features).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from rc3d_af.models.layers.segments import segments_to_rois
from rc3d_af.ops import roi_align_1d, roi_pool_1d

PoolerKind = Literal["pool", "align"]


class RoIPooler(nn.Module):
    """``roi_pool_1d`` (R-C3D's RoI max pooling) or ``roi_align_1d`` with ``output_size`` bins."""

    def __init__(
        self,
        kind: PoolerKind,
        output_size: int,
        stride: int,
        sampling_ratio: int = -1,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("pool", "align"):
            raise ValueError(f"kind: expected 'pool' or 'align', got {kind!r}")
        self.kind = kind
        self.output_size = output_size
        self.spatial_scale = 1.0 / stride
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, features: torch.Tensor, segments: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features [B, C, L]`` and one ``[K_b, 2]`` segment tensor per window -> ``[sum K_b, C, bins]``
        in the dtype of ``features``.

        The pooling runs in float32 at least: float16 / bfloat16 features (autocast) are pooled in
        float32 with float32 RoIs, whose boundaries would otherwise be rounded to a few bits."""
        dtype = torch.promote_types(features.dtype, torch.float32)
        rois = segments_to_rois(segments).to(features.device, dtype)
        x = features.to(dtype)
        # The segments are the proposal network's (finite, end >= start, NMS-checked): skip the value
        # checks, a host synchronisation each on CUDA.
        if self.kind == "pool":
            pooled = roi_pool_1d(x, rois, self.output_size, self.spatial_scale, check_values=False)
        else:
            pooled = roi_align_1d(
                x,
                rois,
                self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
                self.aligned,
                check_values=False,
            )
        return pooled.to(features.dtype)

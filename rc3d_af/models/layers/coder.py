"""The one segment coder: (start, end) segments <-> regression deltas relative to prior segments.

With prior centre ``c_p`` and width ``w_p`` (computed from the prior's (start, end)), the deltas of a
segment of centre ``c`` and width ``w`` are ``d_c = (c - c_p) / (alpha * w_p)`` and
``d_w = log(w / w_p) / beta``; decoding inverts them (A2Net equation (1), where alpha = beta = 0.1).
``scales = (alpha, beta)`` also expresses the target normalisation of R-C3D: its proposal network
regresses raw offsets (1, 1); its second stage divides the offsets by the standard deviations
(0.1, 0.2). Class-specific regression is broadcasting: deltas ``[N, K, 2]`` with priors ``[N, 1, 2]``.
"""

from __future__ import annotations

import torch

from rc3d_af.models.layers.segments import segments_to_centre_width

# exp() argument cap when decoding widths: keeps an untrained head from producing inf (a width of
# e^8 ~ 3000 prior widths is already far outside any window).
MAX_LOG_SCALE = 8.0


class SegmentCoder:
    """Encode and decode (start, end) segments against priors with scales ``(alpha, beta)``."""

    def __init__(
        self, scales: tuple[float, float] = (1.0, 1.0), max_log_scale: float = MAX_LOG_SCALE
    ) -> None:
        alpha, beta = scales
        if not (alpha > 0 and beta > 0):
            raise ValueError(f"scales: expected two positive numbers, got {scales}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.max_log_scale = float(max_log_scale)

    def encode(self, segments: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Deltas ``[..., 2]`` of ``segments [..., 2]`` (end > start) relative to ``priors [..., 2]``."""
        prior = segments_to_centre_width(priors)
        target = segments_to_centre_width(segments)
        delta_c = (target[..., 0] - prior[..., 0]) / (self.alpha * prior[..., 1])
        delta_w = torch.log(target[..., 1] / prior[..., 1]) / self.beta
        return torch.stack([delta_c, delta_w], dim=-1)

    def decode(self, deltas: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
        """Segments ``[..., 2]`` (start, end) from ``deltas [..., 2]`` and ``priors [..., 2]`` (broadcast)."""
        prior = segments_to_centre_width(priors)
        centres = prior[..., 0] + self.alpha * deltas[..., 0] * prior[..., 1]
        widths = prior[..., 1] * torch.exp((self.beta * deltas[..., 1]).clamp(max=self.max_log_scale))
        return torch.stack([centres - widths / 2, centres + widths / 2], dim=-1)

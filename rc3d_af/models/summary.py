"""Model summary: parameters, multiply-accumulates per window, pyramid, anchors and points.

The model is built on the meta device, so even the paper's 65 M-parameter configuration is summarised
without allocating its weights. MACs count the convolutions (the paper's "FLOPs" in Tables VI and XI
are these multiply-accumulates: 1.24 G for the THUMOS14 configuration); ReLU, pooling and the
softmax are not counted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rc3d_af.models.a2net import build_model
from rc3d_af.models.config import ModelConfig


def conv_macs(module: nn.Conv1d, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv1d call producing ``output [B, C_out, L_out]``."""
    per_output = module.in_channels // module.groups * module.kernel_size[0]
    return output.numel() * per_output


def model_summary(
    cfg: ModelConfig, num_classes: int, in_channels: int, window_size: int = 128
) -> dict[str, Any]:
    """Counts for one window of ``window_size`` positions.

    Returns a dict with ``parameters``, ``macs_per_window``, ``anchors_per_window``,
    ``points_per_window`` and ``levels`` (one ``{"length", "channels", "stride"}`` per level).
    """
    with torch.device("meta"):
        model = build_model(cfg, num_classes, in_channels)
    macs = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += conv_macs(module, output)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv1d)]
    try:
        with torch.no_grad():
            outputs = model(torch.empty(1, in_channels, window_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    lengths = model.level_lengths(window_size)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_per_window": macs,
        "anchors_per_window": outputs["anchors"].size(0) if "anchors" in outputs else 0,
        "points_per_window": outputs["points"].size(0) if "points" in outputs else 0,
        "levels": [
            {"length": length, "channels": channels, "stride": stride}
            for length, channels, stride in zip(
                lengths, model.backbone.level_channels, cfg.level_strides, strict=True
            )
        ],
    }

"""Model summary: parameters, multiply-accumulates per window, pyramid, anchors, points and RoIs.

The model is built on the meta device, so even the paper's 65 M-parameter configuration is summarised
without allocating its weights. MACs count the convolutions and fully connected layers (the paper's
"FLOPs" in Tables VI and XI are these multiply-accumulates: 1.24 G for the THUMOS14 A2Net
configuration); ReLU, pooling, RoI pooling and the softmax are not counted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rc3d_af.models.build import build_model


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv1d call (``output [B, C_out, L_out]``) or Linear call."""
    if isinstance(module, nn.Conv1d):
        return output.numel() * (module.in_channels // module.groups * module.kernel_size[0])
    return output.numel() * module.in_features


def model_summary(cfg: Any, num_classes: int, in_channels: int, window_size: int = 128) -> dict[str, Any]:
    """Counts for one window of ``window_size`` positions, for the detector of ``cfg`` (any arch).

    Returns a dict with ``arch``, ``parameters``, ``macs_per_window`` and the model's window
    geometry (its ``summary_forward``): ``anchors_per_window``, ``points_per_window``, ``levels``
    (one ``{"length", "channels", "stride"}`` per level) and, for two-stage detectors,
    ``rois_per_window``.
    """
    with torch.device("meta"):
        model = build_model(cfg, num_classes, in_channels)
    model.eval()
    macs = 0

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += layer_macs(module, output)

    counted = (nn.Conv1d, nn.Linear)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            geometry = model.summary_forward(torch.empty(1, in_channels, window_size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "arch": cfg.arch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "macs_per_window": macs,
        **geometry,
    }

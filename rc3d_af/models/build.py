"""``build_model``: the one dispatch from a model config to its detector, on ``cfg.arch``."""

from __future__ import annotations

from torch import nn

from rc3d_af.errors import InputError
from rc3d_af.models.a2net import A2Net
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.rc3d import RC3D, RC3DConfig

ARCHS = ("a2net", "rc3d", "rc3d_af")


def build_model(cfg: object, num_classes: int, in_channels: int) -> nn.Module:
    """The detector of ``cfg`` (``cfg.arch``: ``a2net`` -> :class:`A2Net`, ``rc3d`` / ``rc3d_af`` ->
    :class:`~rc3d_af.models.rc3d.RC3D`) for ``num_classes`` action classes (background excluded) and
    ``in_channels``-dimensional input features."""
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name}: expected a positive integer, got {value!r}")
    if isinstance(cfg, ModelConfig):
        return A2Net(cfg, num_classes, in_channels)
    if isinstance(cfg, RC3DConfig):
        return RC3D(cfg, num_classes, in_channels)
    raise InputError(f"model.arch: expected one of {', '.join(ARCHS)}, got a {type(cfg).__name__}")


def describe_model(cfg: object) -> str:
    """A short name for logs: the arch, and A2Net's variant when it is not the joint model."""
    if isinstance(cfg, ModelConfig) and cfg.variant != "a2net":
        return f"a2net ({cfg.variant})"
    return str(cfg.arch)

"""A2Net (anchor-free + anchor-based temporal action localization), laid out like the paper's Figure 2.

``config`` (ModelConfig), ``backbone`` (hierarchical feature module), ``anchor_free`` and
``anchor_based`` (the two localization modules), ``targets`` (assignment), ``losses``
(equations (4)-(10)), ``postprocess`` (inference, section III-F), ``a2net`` (the meta-architecture)
and ``summary`` (parameters, MACs, anchors and points per window).
"""

from rc3d_af.models.a2net import A2Net
from rc3d_af.models.build import ARCHS, build_model, describe_model
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.postprocess import WindowDetections, fuse_detections, video_detections
from rc3d_af.models.summary import model_summary

__all__ = [
    "ARCHS",
    "A2Net",
    "ModelConfig",
    "WindowDetections",
    "build_model",
    "describe_model",
    "fuse_detections",
    "model_summary",
    "video_detections",
]

"""Detector-agnostic 1D parts shared by A2Net and R-C3D (no model config imports here).

``segments`` (formats and RoIs), ``coder`` (segment <-> regression deltas), ``matcher`` (quality
matrix -> matches and labels), ``sampling`` (seeded fixed-size and ratio sampling), ``priors``
(anchor and point generators), ``point_assigner`` (the anchor-free assignment of section III-D),
``heads`` (anchor head, anchor-free head), ``poolers`` (RoI pooling over the compiled ops) and
``proposals`` (per-window proposal selection with NMS on the model's device).
Every function takes explicit arguments, so a hand-made case drives each one.
"""

"""R-C3D and R-C3D + AF: the two-stage detector with the anchor-free proposal branch.

``config`` (RC3DConfig and its blocks), ``proposal_network`` (anchor and anchor-free proposals,
joint selection), ``roi_heads`` (second stage) and ``rc3d`` (the meta-architecture).
"""

from rc3d_af.models.rc3d.config import RC3DConfig
from rc3d_af.models.rc3d.rc3d import RC3D

__all__ = ["RC3D", "RC3DConfig"]

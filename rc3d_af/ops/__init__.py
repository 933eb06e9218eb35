"""Temporal (1D) operators: segment IoU, NMS, soft-NMS, RoIAlign and RoI max pooling.

Every op runs a compiled C++ (CPU) or CUDA kernel when ``rc3d_af._C`` is built, and otherwise an
equivalent pure-PyTorch reference (one warning at import says how to build the kernels).
``python -m rc3d_af.ops`` reports which backend is in use.

Segments are ``[N, 2]`` (start, end) tensors in any continuous unit (seconds, frames or feature
indices; lengths have no "+1"). RoIs are ``[K, 3]`` (batch index, start, end).
"""

from rc3d_af.ops._extension import STATUS as EXTENSION_STATUS
from rc3d_af.ops.nms import batched_nms_1d, nms_1d, segment_iou, soft_nms_1d
from rc3d_af.ops.roi import roi_align_1d, roi_pool_1d

__all__ = [
    "EXTENSION_STATUS",
    "batched_nms_1d",
    "nms_1d",
    "roi_align_1d",
    "roi_pool_1d",
    "segment_iou",
    "soft_nms_1d",
]

// The operator schemas of rc3d_af: the whole public surface of the compiled library in one place.
// Kernels are registered per dispatch key in csrc/cpu and csrc/cuda; fake (meta) kernels and
// autograd formulas are registered from Python beside each op (rc3d_af/ops/nms.py, rc3d_af/ops/roi.py).
//
// Units: segments and RoIs are (start, end) pairs in any continuous unit (no "+1" on lengths);
// RoIs carry a leading batch index, (b, start, end), in input units before spatial_scale.

#include <Python.h>
#include <torch/library.h>

// Importing rc3d_af._C from Python runs the static registrations below; no pybind11 is needed.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(rc3d_af, m) {
  // IoU of every pair: a [N, 2], b [M, 2] -> [N, M].
  m.def("segment_iou(Tensor a, Tensor b) -> Tensor");
  // Greedy NMS; returns int64 indices kept, by decreasing score (ties in index order).
  m.def("nms_1d(Tensor segments, Tensor scores, float iou_threshold) -> Tensor");
  // NMS independently per label in one call; output sorted like nms_1d.
  m.def("batched_nms_1d(Tensor segments, Tensor scores, Tensor labels, float iou_threshold) -> Tensor");
  // Soft-NMS (method 0 = linear, 1 = gaussian); returns (keep int64[K], decayed scores[K]).
  m.def(
      "soft_nms_1d(Tensor segments, Tensor scores, float iou_threshold, float sigma, float min_score, "
      "int method) -> (Tensor, Tensor)");
  // RoIAlign on [B, C, T] -> [K, C, output_size]; torchvision.ops.roi_align on height-1 images.
  m.def(
      "roi_align_1d(Tensor input, Tensor rois, float spatial_scale, int output_size, int sampling_ratio, "
      "bool aligned) -> Tensor");
  m.def(
      "_roi_align_1d_backward(Tensor grad, Tensor rois, float spatial_scale, int output_size, "
      "int batch_size, int channels, int length, int sampling_ratio, bool aligned) -> Tensor");
  // RoI max pooling; returns (output [K, C, output_size], argmax int32 [K, C, output_size]) where
  // argmax is the index along T of the maximum, -1 for an empty bin (int32: T < 2^31 is checked).
  m.def("roi_pool_1d(Tensor input, Tensor rois, float spatial_scale, int output_size) -> (Tensor, Tensor)");
  // The backward needs each RoI's batch index (rois) to place the gradient at argmax.
  m.def(
      "_roi_pool_1d_backward(Tensor grad, Tensor rois, Tensor argmax, int batch_size, int channels, "
      "int length) -> Tensor");
}

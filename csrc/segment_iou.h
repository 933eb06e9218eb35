// The one segment IoU formula shared by the CPU and CUDA kernels, and the argument checks of the
// segment ops (segment_iou, nms_1d, batched_nms_1d, soft_nms_1d).
//
// Segments are (start, end) pairs in any continuous unit; a segment's length is end - start (no "+1").
// The pure-PyTorch reference (rc3d_af/ops/nms.py, segment_iou_reference) performs the same floating-
// point operations in the same order, so compiled and reference results agree bit for bit.

#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

namespace rc3d_af {

// IoU of [s1, e1] and [s2, e2]: intersection / union, with union = len1 + len2 - intersection.
// Disjoint or touching segments give 0; two zero-length segments (union 0) give 0, not NaN.
// Symmetric in its two segments (IEEE addition is commutative).
template <typename T>
C10_HOST_DEVICE inline T segment_iou_pair(T s1, T e1, T s2, T e2) {
  const T lo = s1 > s2 ? s1 : s2;
  const T hi = e1 < e2 ? e1 : e2;
  const T overlap = hi - lo;
  const T inter = overlap > T(0) ? overlap : T(0);
  const T uni = (e1 - s1) + (e2 - s2) - inter;
  return uni > T(0) ? inter / uni : T(0);
}

inline void check_segments_arg(const at::Tensor& segments, const char* name) {
  TORCH_CHECK(segments.dim() == 2 && segments.size(1) == 2, name,
              ": expected shape [N, 2] of (start, end), got ", segments.sizes());
  TORCH_CHECK(segments.scalar_type() == at::kFloat || segments.scalar_type() == at::kDouble, name,
              ": expected dtype float32 or float64, got ", segments.scalar_type());
}

// The arguments of segment_iou(a, b): two [N, 2] / [M, 2] floating tensors of one dtype.
inline void check_segment_iou_args(const at::Tensor& a, const at::Tensor& b) {
  check_segments_arg(a, "a");
  check_segments_arg(b, "b");
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), "b: dtype ", b.scalar_type(), " differs from a dtype ",
              a.scalar_type());
}

inline void check_scores_arg(const at::Tensor& scores, const at::Tensor& segments) {
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == segments.size(0), "scores: expected shape [",
              segments.size(0), "] (one per segment), got ", scores.sizes());
  TORCH_CHECK(scores.scalar_type() == segments.scalar_type(), "scores: dtype ", scores.scalar_type(),
              " differs from segments dtype ", segments.scalar_type());
  TORCH_CHECK(scores.device() == segments.device(), "scores: on ", scores.device(),
              " but segments on ", segments.device());
}

// The value checks of the NMS inputs (a NaN score would break the sort order), as bits of a 0-dim
// int64 tensor computed on the inputs' device without a host synchronisation: 1 = a NaN score,
// 2 = a NaN in the segments, 4 = a segment with end < start. The CUDA kernels bring the bits back
// with the copy to the host that greedy NMS needs anyway; check_nms_value_bits reads them.
inline at::Tensor nms_value_bits(const at::Tensor& segments, const at::Tensor& scores) {
  const at::Tensor reversed = at::lt(segments.select(1, 1), segments.select(1, 0)).any();
  return at::isnan(scores).any().to(at::kLong) + at::isnan(segments).any().to(at::kLong) * 2 +
         reversed.to(at::kLong) * 4;
}

inline void check_nms_value_bits(int64_t bits) {
  TORCH_CHECK(!(bits & 1), "scores: contains NaN");
  TORCH_CHECK(!(bits & 2), "segments: contains NaN");
  TORCH_CHECK(!(bits & 4), "segments: a segment has end < start; segments must be (start, end)");
}

inline void check_labels_arg(const at::Tensor& labels, const at::Tensor& segments) {
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == segments.size(0), "labels: expected shape [",
              segments.size(0), "] (one per segment), got ", labels.sizes());
  TORCH_CHECK(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false),
              "labels: expected an integer dtype, got ", labels.scalar_type());
  TORCH_CHECK(labels.device() == segments.device(), "labels: on ", labels.device(),
              " but segments on ", segments.device());
}

inline void check_iou_threshold_arg(double iou_threshold) {
  TORCH_CHECK(iou_threshold >= 0.0 && iou_threshold <= 1.0,
              "iou_threshold: expected a number in [0, 1], got ", iou_threshold);
}

// The structural arguments shared by nms_1d and batched_nms_1d (labels are checked by the batched
// entry point; values by nms_value_bits).
inline void check_nms_args(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold) {
  check_segments_arg(segments, "segments");
  check_scores_arg(scores, segments);
  check_iou_threshold_arg(iou_threshold);
}

}  // namespace rc3d_af

// Geometry shared by the RoI kernels (CPU and CUDA): where RoIAlign samples and which input
// positions a RoI max-pooling bin covers, along the one time axis of a [B, C, T] input.
//
// The rules are torchvision.ops.roi_align / roi_pool applied to height-1 images with boxes
// (b, start, 0, end, 1 / spatial_scale). In that embedding the height direction never matters:
// every y sample lies in [-0.5, 1) and is clamped to row 0 with weight 1, and the pooled row range
// is always [0, 1). So each RoIAlign bin is the mean over its x samples, and each pooling bin a
// max over a range of x. All arithmetic below is done in T (float for half/bfloat16 inputs), in
// torchvision's order of operations.
#pragma once

#include <ATen/ATen.h>
#include <ATen/NumericUtils.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

namespace rc3d_af::roi {

// Structural checks every RoI kernel repeats (the Python wrappers give friendlier messages first).
// rois [K, 3] of (batch index, start, end), in the dtype and on the device of `data`.
inline void check_rois_arg(const at::Tensor& rois, const at::Tensor& data, const char* data_name) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 3,
              "rois: expected shape [K, 3] of (batch_index, start, end), got ", rois.sizes());
  TORCH_CHECK(at::isFloatingType(data.scalar_type()), data_name, ": expected a floating dtype, got ",
              data.scalar_type());
  TORCH_CHECK(rois.scalar_type() == data.scalar_type(), "rois: dtype ", rois.scalar_type(), " differs from ",
              data_name, " dtype ", data.scalar_type());
  TORCH_CHECK(rois.device() == data.device(), "rois: on ", rois.device(), " but ", data_name, " on ",
              data.device());
}

// input [B, C, T] (T > 0 unless there are no RoIs) and a positive output_size.
inline void check_roi_args(const at::Tensor& input, const at::Tensor& rois, int64_t output_size) {
  TORCH_CHECK(input.dim() == 3, "input: expected shape [B, C, T], got ", input.sizes());
  check_rois_arg(rois, input, "input");
  TORCH_CHECK(output_size > 0, "output_size: expected a positive integer, got ", output_size);
  TORCH_CHECK(rois.size(0) == 0 || input.size(2) > 0,
              "input: expected a non-empty time axis (T > 0) when rois are given, got ", input.sizes());
}

// grad [K, C, output_size] of a RoI op's output, for an input [batch_size, C, length].
inline void check_roi_grad_args(const at::Tensor& grad, const at::Tensor& rois, int64_t output_size,
                                int64_t channels, int64_t length) {
  check_rois_arg(rois, grad, "grad");
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == output_size,
              "grad: expected shape [", rois.size(0), ", ", channels, ", ", output_size, "], got ",
              grad.sizes());
  TORCH_CHECK(rois.size(0) == 0 || length > 0, "length: expected T > 0 when rois are given, got ", length);
}

// RoI pooling records the argmax positions as int32 (half the memory traffic of int64): the time
// axis must fit.
inline void check_argmax_range(int64_t length) {
  TORCH_CHECK(length <= std::numeric_limits<int32_t>::max(), "input: T = ", length,
              " exceeds the int32 range of the argmax positions");
}

// The arguments of the RoI pooling backward: grad [K, C, output_size] and its argmax (same shape, int32).
inline void check_roi_pool_grad_args(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                     int64_t channels, int64_t length) {
  TORCH_CHECK(grad.dim() == 3, "grad: expected shape [K, C, output_size], got ", grad.sizes());
  check_roi_grad_args(grad, rois, grad.size(2), channels, length);
  check_argmax_range(length);
  TORCH_CHECK(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kInt &&
                  argmax.device() == grad.device(),
              "argmax: expected int32 of shape ", grad.sizes(), " on ", grad.device(), ", got ",
              argmax.scalar_type(), " ", argmax.sizes(), " on ", argmax.device());
}

// RoIAlign bins of one RoI along x, in input positions (after spatial_scale).
template <typename T>
struct AlignGeometry {
  T start;     // left edge of bin 0 (shifted by -0.5 when aligned)
  T bin_size;  // width of one bin
  int grid;    // samples per bin; 0 only for an aligned zero-length RoI with adaptive sampling
};

template <typename T>
C10_HOST_DEVICE inline AlignGeometry<T> align_geometry(T roi_start, T roi_end, T spatial_scale,
                                                      int64_t output_size, int64_t sampling_ratio,
                                                      bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  const T start = roi_start * spatial_scale - offset;
  const T end = roi_end * spatial_scale - offset;
  T width = end - start;
  if (!aligned) {
    // Legacy (non-aligned) RoIAlign forces malformed RoIs to be at least one unit long.
    width = width > T(1) ? width : T(1);
  }
  const T bins = static_cast<T>(output_size);
  const int grid = sampling_ratio > 0 ? static_cast<int>(sampling_ratio)
                                      : static_cast<int>(std::ceil(width / bins));
  return {start, width / bins, grid};
}

// Position of sample `ix` (0 <= ix < grid) of bin `bin`.
template <typename T>
C10_HOST_DEVICE inline T sample_position(const AlignGeometry<T>& g, int64_t bin, int ix) {
  return g.start + static_cast<T>(bin) * g.bin_size +
         static_cast<T>(ix + .5f) * g.bin_size / static_cast<T>(g.grid);
}

// Linear-interpolation taps of a sample at x on an axis of `length` (> 0) positions.
// Samples more than one unit outside [0, length] contribute nothing (returns false); samples in
// [-1, 0] read position 0 and samples past the last position read the last one.
template <typename T>
C10_HOST_DEVICE inline bool interpolation_taps(T x, int64_t length, int64_t& low, int64_t& high,
                                               T& w_low, T& w_high) {
  if (x < T(-1) || x > static_cast<T>(length)) {
    return false;
  }
  if (x <= T(0)) {
    x = T(0);
  }
  low = static_cast<int64_t>(x);
  if (low >= length - 1) {
    low = high = length - 1;
    x = static_cast<T>(low);
  } else {
    high = low + 1;
  }
  w_high = x - static_cast<T>(low);
  w_low = T(1) - w_high;
  return true;
}

// Round half away from zero (std::round), on host and device.
template <typename T>
C10_HOST_DEVICE inline int64_t round_half_away(T value) {
  return static_cast<int64_t>(std::round(value));
}

// RoI max-pooling bins of one RoI: integer start and a fractional bin size, torchvision's
// "round the RoI, then floor/ceil the bins" rule (a RoI [s, e] covers e - s + 1 positions).
template <typename T>
struct PoolGeometry {
  int64_t start;  // first covered position (may lie outside the input)
  int64_t width;  // covered positions, >= 1
  T bin_size;
};

template <typename T>
C10_HOST_DEVICE inline PoolGeometry<T> pool_geometry(T roi_start, T roi_end, T spatial_scale,
                                                    int64_t output_size) {
  const int64_t start = round_half_away(roi_start * spatial_scale);
  const int64_t end = round_half_away(roi_end * spatial_scale);
  const int64_t width = end - start + 1 > 1 ? end - start + 1 : 1;
  return {start, width, static_cast<T>(width) / static_cast<T>(output_size)};
}

// Input positions [lo, hi) of bin `bin`, clipped to [0, length]; empty when hi <= lo.
template <typename T>
C10_HOST_DEVICE inline void pool_bin_range(const PoolGeometry<T>& g, int64_t bin, int64_t length,
                                           int64_t& lo, int64_t& hi) {
  lo = static_cast<int64_t>(std::floor(static_cast<T>(bin) * g.bin_size)) + g.start;
  hi = static_cast<int64_t>(std::ceil(static_cast<T>(bin + 1) * g.bin_size)) + g.start;
  lo = lo < 0 ? 0 : (lo > length ? length : lo);
  hi = hi < 0 ? 0 : (hi > length ? length : hi);
}

// Position of the maximum of row[lo:hi] (lo < hi), stored in `best`: the first maximum, or the
// first NaN, which wins so that a NaN is not silently hidden.
template <typename T, typename scalar_t>
C10_HOST_DEVICE inline int64_t bin_argmax(const scalar_t* row, int64_t lo, int64_t hi, T& best) {
  best = static_cast<T>(row[lo]);
  int64_t where = lo;
  bool saw_nan = at::_isnan(best);
  for (int64_t t = lo + 1; t < hi; ++t) {
    const T value = static_cast<T>(row[t]);
    // Selects instead of data-dependent (mispredicted) branches; NaN is tracked on the side.
    const bool take = value > best;
    best = take ? value : best;
    where = take ? t : where;
    saw_nan |= at::_isnan(value);
  }
  if (saw_nan) {  // rare: the first NaN is the maximum
    for (where = lo; !at::_isnan(static_cast<T>(row[where])); ++where) {
    }
    best = static_cast<T>(row[where]);
  }
  return where;
}

#ifdef __CUDACC__
// CUDA launches: one thread per element in a grid-stride loop, so any n fits a capped grid.
constexpr int kRoiThreads = 256;

inline int roi_blocks(int64_t n) {
  return static_cast<int>(std::min<int64_t>((n + kRoiThreads - 1) / kRoiThreads, int64_t{1} << 20));
}

#define RC3D_AF_ROI_KERNEL_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
#endif

// Batch index of every RoI (host memory), checked to be an integer in [0, batch_size); the bounds
// are checked to be finite with end >= start (the Python wrappers check this first, except while
// torch.compile traces, where data-dependent checks cannot run).
template <typename scalar_t>
std::vector<int64_t> batch_indices(const at::Tensor& rois_cpu, int64_t batch_size) {
  const scalar_t* r = rois_cpu.const_data_ptr<scalar_t>();
  std::vector<int64_t> batch(rois_cpu.size(0));
  for (int64_t k = 0; k < rois_cpu.size(0); ++k) {
    const double value = static_cast<double>(r[3 * k]);
    const double start = static_cast<double>(r[3 * k + 1]);
    const double end = static_cast<double>(r[3 * k + 2]);
    TORCH_CHECK(value >= 0 && value < static_cast<double>(batch_size) && value == std::floor(value),
                "rois: row ", k, " has batch index ", value, ", expected an integer in [0, ", batch_size,
                ")");
    TORCH_CHECK(std::isfinite(start) && std::isfinite(end) && end >= start, "rois: row ", k,
                " has (start, end) = (", start, ", ", end, "), expected finite values with end >= start");
    batch[k] = static_cast<int64_t>(value);
  }
  return batch;
}

// RoIs grouped by batch element, keeping their order within a group (a stable sort), so that a
// backward kernel can own whole input rows and add without atomics. Returns int64 tensors
// (order [K], group_begin [batch_size + 1]) on the device of `rois`, without a host
// synchronisation: the RoIs of element b are order[group_begin[b]:group_begin[b + 1]]. RoIs with an
// invalid batch index fall in no group.
inline std::tuple<at::Tensor, at::Tensor> group_by_batch(const at::Tensor& rois, int64_t batch_size) {
  const at::Tensor batch = rois.select(1, 0).to(at::kLong);
  const auto [sorted, order] = at::sort(batch, /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const at::Tensor group_begin = at::searchsorted(sorted, at::arange(batch_size + 1, batch.options()));
  return {order.contiguous(), group_begin.contiguous()};
}

}  // namespace rc3d_af::roi

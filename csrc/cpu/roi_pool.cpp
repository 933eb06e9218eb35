// CPU kernels of rc3d_af::roi_pool_1d (RoI max pooling, the R-C3D "RoI temporal pooling") and its
// backward.
//
// In 1D every channel of a RoI is pooled over the same bins (ranges of positions). The forward
// therefore reads a channel-last copy of the positions a batch element's RoIs cover: the maximum of
// a bin is a running maximum over its positions, each step one contiguous row of channels, a loop
// without branches that the compiler vectorizes across channels. It runs in parallel over (batch
// element, channel block) tasks and records per output the position of the maximum (int32; -1 for
// an empty bin). The backward runs in parallel over the same kind of tasks; each adds the gradients
// of its batch element's RoIs at their recorded positions, RoI by RoI in a fixed order, so no two
// threads write the same element (no atomics) and the sums do not depend on the thread count.
// Memory, not arithmetic, bounds both: the copies to and from channel-last order move 4 x 4 tiles
// (SSE2), and each next RoI's rows are prefetched.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../roi_common.h"

namespace rc3d_af {
namespace {

// Channels per task: as many as keep a task's working set (forward: its channel-last slab, T
// values per channel; backward: its gradient rows, T + 1 values per channel) within about
// `budget` values, so that it stays in cache (at T = 128: 64 channels forward, 126 backward).
constexpr int64_t kSlabValues = 8192;
constexpr int64_t kGradRowValues = 16384;

inline int64_t channels_per_task(int64_t channels, int64_t values_per_channel, int64_t budget) {
  return std::clamp<int64_t>(budget / values_per_channel, 1, channels);
}

// The bins of every RoI: positions [lo[k * P + p], hi[k * P + p]) of bin p of RoI k, clipped to
// the input (empty when hi <= lo).
struct PoolBins {
  std::vector<int32_t> lo;  // [K * P]
  std::vector<int32_t> hi;  // [K * P]
};

template <typename scalar_t>
PoolBins pool_bins(const at::Tensor& rois, int64_t batch_size, int64_t length, double spatial_scale,
                   int64_t output_size) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t num_rois = rois.size(0);
  roi::batch_indices<scalar_t>(rois, batch_size);  // checks the RoIs
  PoolBins bins{std::vector<int32_t>(num_rois * output_size), std::vector<int32_t>(num_rois * output_size)};
  const scalar_t* r = rois.const_data_ptr<scalar_t>();
  for (int64_t k = 0; k < num_rois; ++k) {
    const roi::PoolGeometry<acc_t> g =
        roi::pool_geometry<acc_t>(r[3 * k + 1], r[3 * k + 2], static_cast<acc_t>(spatial_scale), output_size);
    for (int64_t p = 0; p < output_size; ++p) {
      int64_t lo, hi;
      roi::pool_bin_range(g, p, length, lo, hi);  // within [0, length], which fits int32 (checked)
      bins.lo[k * output_size + p] = static_cast<int32_t>(lo);
      bins.hi[k * output_size + p] = static_cast<int32_t>(hi);
    }
  }
  return bins;
}

// Asks for [begin, begin + bytes) to be brought into the cache (kWrite: for writing) ahead of use.
// The RoIs of a batch element lie anywhere in the [K, C, P] outputs and gradients: the hardware
// cannot guess where the next one starts, so each RoI's rows are requested while the previous one
// is processed.
template <int kWrite>
inline void prefetch(const void* begin, int64_t bytes) {
#if defined(__GNUC__)
  constexpr int64_t kCacheLine = 64;
  for (int64_t offset = 0; offset < bytes; offset += kCacheLine) {
    __builtin_prefetch(static_cast<const char*>(begin) + offset, kWrite);
  }
#endif
}

// dst[j * dst_stride + i] = src[i * src_stride + j] for i < rows, j < cols: a transposed copy
// (converting S to D). Same-type 32-bit values go 4 x 4 at a time through SSE2 registers where
// the target has them; the rest one by one.
template <typename S, typename D>
void transpose(const S* src, int64_t rows, int64_t cols, int64_t src_stride, D* dst, int64_t dst_stride) {
  int64_t rows4 = 0;  // rows and columns done in 4 x 4 tiles
  int64_t cols4 = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<S, D> && sizeof(S) == sizeof(float)) {
    rows4 = rows / 4 * 4;
    cols4 = cols / 4 * 4;
    for (int64_t j = 0; j < cols4; j += 4) {
      for (int64_t i = 0; i < rows4; i += 4) {
        const float* s = reinterpret_cast<const float*>(src + i * src_stride + j);
        __m128 r0 = _mm_loadu_ps(s);
        __m128 r1 = _mm_loadu_ps(s + src_stride);
        __m128 r2 = _mm_loadu_ps(s + 2 * src_stride);
        __m128 r3 = _mm_loadu_ps(s + 3 * src_stride);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        float* d = reinterpret_cast<float*>(dst + j * dst_stride + i);
        _mm_storeu_ps(d, r0);
        _mm_storeu_ps(d + dst_stride, r1);
        _mm_storeu_ps(d + 2 * dst_stride, r2);
        _mm_storeu_ps(d + 3 * dst_stride, r3);
      }
    }
  }
#endif
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = j < cols4 ? rows4 : 0; i < rows; ++i) {
      dst[j * dst_stride + i] = static_cast<D>(src[i * src_stride + j]);
    }
  }
}

// Maximum over positions [lo, hi) (lo < hi) of `count` channels of a channel-last slab that
// starts at position `origin` (position t, channel c at slab[(t - origin) * count + c]): best[c]
// and where[c] receive the first maximum and its position, or the first NaN, which wins (the rule
// of roi::bin_argmax).
template <typename acc_t>
void bin_max_over_channels(const acc_t* __restrict__ slab, int64_t count, int32_t origin, int32_t lo,
                           int32_t hi, acc_t* __restrict__ best, int32_t* __restrict__ where) {
  const acc_t* row = slab + (lo - origin) * count;
  for (int64_t c = 0; c < count; ++c) {
    best[c] = row[c];
    where[c] = lo;
  }
  for (int32_t t = lo + 1; t < hi; ++t) {
    row += count;
    for (int64_t c = 0; c < count; ++c) {
      const acc_t value = row[c];
      const acc_t current = best[c];
      // Take a larger value or the first NaN; keep a NaN once taken. A bitwise & of the two
      // comparisons (no branch), so that the loop vectorizes.
      const bool take = !(value <= current) & (current == current);
      best[c] = take ? value : current;
      where[c] = take ? t : where[c];
    }
  }
}

// Pools `count` channels of one RoI: slab [span, count] (channel-last, from position `origin`;
// it covers the RoI's bins lo/hi [P]) -> out, argmax [count, P]. best/where: output_size * count
// scratch.
template <typename scalar_t, typename acc_t>
void pool_roi(const acc_t* slab, int64_t count, int32_t origin, const int32_t* lo, const int32_t* hi,
              int64_t output_size, scalar_t* out, int32_t* argmax, acc_t* best, int32_t* where) {
  for (int64_t p = 0; p < output_size; ++p) {
    if (hi[p] <= lo[p]) {  // the bin lies wholly outside the input
      std::fill_n(best + p * count, count, acc_t(0));
      std::fill_n(where + p * count, count, int32_t{-1});
    } else {
      bin_max_over_channels(slab, count, origin, lo[p], hi[p], best + p * count, where + p * count);
    }
  }
  // Back to the output's [C, P] layout.
  transpose(best, output_size, count, count, out, output_size);
  transpose(where, output_size, count, count, argmax, output_size);
}

// Positions [first, last) covered by the RoIs order[begin:end]: bins never move left, so a RoI
// covers [lo of its first bin, hi of its last bin). Empty when last <= first.
inline std::pair<int32_t, int32_t> covered_positions(const PoolBins& bins, const int64_t* order, int64_t begin,
                                                     int64_t end, int64_t output_size) {
  int32_t first = std::numeric_limits<int32_t>::max();
  int32_t last = 0;
  for (int64_t i = begin; i < end; ++i) {
    first = std::min(first, bins.lo[order[i] * output_size]);
    last = std::max(last, bins.hi[order[i] * output_size + output_size - 1]);
  }
  return {first, last};
}

// input [B, C, T], rois [K, 3] -> (output [K, C, output_size], argmax int32 [K, C, output_size]).
// Parallel over (batch element, channel block): each task makes a channel-last copy of the
// positions its RoIs cover once and pools every RoI of its batch element from it.
std::tuple<at::Tensor, at::Tensor> roi_pool_1d_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                   double spatial_scale, int64_t output_size) {
  roi::check_roi_args(input, rois, output_size);
  roi::check_argmax_range(input.size(2));
  const int64_t batch_size = input.size(0);
  const int64_t channels = input.size(1);
  const int64_t length = input.size(2);
  const int64_t num_rois = rois.size(0);
  at::Tensor output = at::empty({num_rois, channels, output_size}, input.options());
  at::Tensor argmax = at::empty({num_rois, channels, output_size}, input.options().dtype(at::kInt));
  if (output.numel() == 0) {
    return {output, argmax};
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_1d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const PoolBins bins = pool_bins<scalar_t>(rois_c, batch_size, length, spatial_scale, output_size);
    const auto [order_t, group_begin_t] = roi::group_by_batch(rois_c, batch_size);
    const int64_t* order = order_t.const_data_ptr<int64_t>();
    const int64_t* group_begin = group_begin_t.const_data_ptr<int64_t>();
    const scalar_t* in = input_c.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    int32_t* arg = argmax.mutable_data_ptr<int32_t>();
    const int64_t block = channels_per_task(channels, length, kSlabValues);
    const int64_t blocks = (channels + block - 1) / block;
    at::parallel_for(0, batch_size * blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> slab, best(output_size * block);
      std::vector<int32_t> where(output_size * block);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks;
        if (group_begin[b] == group_begin[b + 1]) {
          continue;
        }
        const int64_t c0 = (task % blocks) * block;
        const int64_t count = std::min(block, channels - c0);
        const auto [first, last] = covered_positions(bins, order, group_begin[b], group_begin[b + 1], output_size);
        if (last > first) {  // else every bin of these RoIs is empty: pool_roi reads no slab
          slab.resize((last - first) * count);
          // Channel-last copy of the covered positions of the block's rows (float for half inputs).
          transpose(in + (b * channels + c0) * length + first, count, last - first, length, slab.data(), count);
        }
        for (int64_t i = group_begin[b]; i < group_begin[b + 1]; ++i) {
          const int64_t k = order[i];
          const int64_t o = (k * channels + c0) * output_size;
          if (i + 1 < group_begin[b + 1]) {
            const int64_t next = (order[i + 1] * channels + c0) * output_size;
            prefetch<1>(out + next, count * output_size * static_cast<int64_t>(sizeof(scalar_t)));
            prefetch<1>(arg + next, count * output_size * static_cast<int64_t>(sizeof(int32_t)));
          }
          pool_roi(slab.data(), count, first, bins.lo.data() + k * output_size, bins.hi.data() + k * output_size,
                   output_size, out + o, arg + o, best.data(), where.data());
        }
      }
    });
  });
  return {output, argmax};
}

// Adds the gradients of the RoIs order[first:last] (all of one batch element) for channels
// [c0, c0 + count) at their argmax positions t: sum [count, length + 1] (zeroed by the caller)
// receives them at t + 1; column 0 collects those of the empty bins (t = -1), without a branch.
template <typename scalar_t, typename acc_t>
void add_roi_gradients(const scalar_t* grad, const int32_t* argmax, const int64_t* order, int64_t first,
                       int64_t last, int64_t channels, int64_t output_size, int64_t length, int64_t c0,
                       int64_t count, acc_t* sum) {
  const int64_t grad_row_bytes = output_size * static_cast<int64_t>(sizeof(scalar_t));
  const int64_t argmax_row_bytes = output_size * static_cast<int64_t>(sizeof(int32_t));
  for (int64_t i = first; i < last; ++i) {
    const int64_t o = (order[i] * channels + c0) * output_size;
    const int64_t next = (order[i + 1 < last ? i + 1 : i] * channels + c0) * output_size;
    const scalar_t* g = grad + o;
    const int32_t* where = argmax + o;
    for (int64_t c = 0; c < count; ++c) {
      prefetch<0>(grad + next + c * output_size, grad_row_bytes);  // the next RoI's row of channel c
      prefetch<0>(argmax + next + c * output_size, argmax_row_bytes);
      acc_t* row = sum + c * (length + 1);
      for (int64_t p = 0; p < output_size; ++p) {
        const int64_t slot = int64_t{where[c * output_size + p]} + 1;
        TORCH_CHECK(static_cast<uint64_t>(slot) <= static_cast<uint64_t>(length), "argmax: position ", slot - 1,
                    " outside [-1, ", length, ")");
        row[slot] += static_cast<acc_t>(g[c * output_size + p]);
      }
    }
  }
}

// grad [K, C, output_size], argmax int32 [K, C, output_size] -> grad_input [B, C, T].
at::Tensor roi_pool_1d_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                    int64_t batch_size, int64_t channels, int64_t length) {
  roi::check_roi_pool_grad_args(grad, rois, argmax, channels, length);
  // Every row is written below; only a call without RoIs or channels needs the zeros.
  at::Tensor grad_input = at::empty({batch_size, channels, length}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.zero_();
  }
  const int64_t output_size = grad.size(2);
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor argmax_c = argmax.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool_1d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    roi::batch_indices<scalar_t>(rois_c, batch_size);  // checks the RoIs
    const auto [order_t, group_begin_t] = roi::group_by_batch(rois_c, batch_size);
    const int64_t* order = order_t.const_data_ptr<int64_t>();
    const int64_t* group_begin = group_begin_t.const_data_ptr<int64_t>();
    const scalar_t* g = grad_c.const_data_ptr<scalar_t>();
    const int32_t* arg = argmax_c.const_data_ptr<int32_t>();
    scalar_t* out = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t block = channels_per_task(channels, length + 1, kGradRowValues);
    const int64_t blocks = (channels + block - 1) / block;
    at::parallel_for(0, batch_size * blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> sum(block * (length + 1));
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / blocks;
        const int64_t c0 = (task % blocks) * block;
        const int64_t count = std::min(block, channels - c0);
        std::fill_n(sum.begin(), count * (length + 1), acc_t(0));
        add_roi_gradients(g, arg, order, group_begin[b], group_begin[b + 1], channels, output_size, length, c0,
                          count, sum.data());
        for (int64_t c = 0; c < count; ++c) {
          const acc_t* row = sum.data() + c * (length + 1) + 1;
          std::transform(row, row + length, out + (b * channels + c0 + c) * length,
                         [](acc_t value) { return static_cast<scalar_t>(value); });
        }
      }
    });
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CPU, m) {
  m.impl("roi_pool_1d", &roi_pool_1d_cpu);
  m.impl("_roi_pool_1d_backward", &roi_pool_1d_backward_cpu);
}

}  // namespace rc3d_af

// CPU kernels of rc3d_af::roi_pool_1d (RoI max pooling, the R-C3D "RoI temporal pooling") and its
// backward. The forward runs in parallel over RoIs and records, per output, the input position of
// the maximum (-1 for an empty bin); the backward runs in parallel over (batch, channel) rows and
// adds each output gradient at its recorded position, so no two threads write the same element.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../roi_common.h"

namespace rc3d_af {
namespace {

// Input positions [lo[p], hi[p]) of every bin of RoI `k`.
template <typename scalar_t>
void pool_bin_ranges(const scalar_t* roi, double spatial_scale, int64_t output_size, int64_t length,
                     int64_t* lo, int64_t* hi) {
  using acc_t = at::opmath_type<scalar_t>;
  const roi::PoolGeometry<acc_t> g =
      roi::pool_geometry<acc_t>(roi[1], roi[2], static_cast<acc_t>(spatial_scale), output_size);
  for (int64_t p = 0; p < output_size; ++p) {
    roi::pool_bin_range(g, p, length, lo[p], hi[p]);
  }
}

// input [B, C, T], rois [K, 3] -> (output [K, C, output_size], argmax int64 [K, C, output_size]).
std::tuple<at::Tensor, at::Tensor> roi_pool_1d_cpu(const at::Tensor& input, const at::Tensor& rois,
                                                   double spatial_scale, int64_t output_size) {
  roi::check_roi_args(input, rois, output_size);
  const int64_t channels = input.size(1);
  const int64_t length = input.size(2);
  const int64_t num_rois = rois.size(0);
  at::Tensor output = at::empty({num_rois, channels, output_size}, input.options());
  at::Tensor argmax = at::empty({num_rois, channels, output_size}, input.options().dtype(at::kLong));
  if (output.numel() == 0) {
    return {output, argmax};
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_1d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const std::vector<int64_t> batch = roi::batch_indices<scalar_t>(rois_c, input.size(0));
    const scalar_t* r = rois_c.const_data_ptr<scalar_t>();
    const scalar_t* in = input_c.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    int64_t* arg = argmax.mutable_data_ptr<int64_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / (channels * output_size));
    at::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> lo(output_size), hi(output_size);
      for (int64_t k = begin; k < end; ++k) {
        pool_bin_ranges(r + 3 * k, spatial_scale, output_size, length, lo.data(), hi.data());
        // Bins outer, channels inner: every channel scans the same number of positions, which
        // keeps the short, variable-length scans well predicted.
        const scalar_t* slab = in + batch[k] * channels * length;
        for (int64_t p = 0; p < output_size; ++p) {
          const int64_t o = k * channels * output_size + p;
          for (int64_t c = 0; c < channels; ++c) {
            if (hi[p] <= lo[p]) {  // the bin lies wholly outside the input
              out[o + c * output_size] = scalar_t(0);
              arg[o + c * output_size] = -1;
              continue;
            }
            acc_t best;
            arg[o + c * output_size] = roi::bin_argmax(slab + c * length, lo[p], hi[p], best);
            out[o + c * output_size] = static_cast<scalar_t>(best);
          }
        }
      }
    });
  });
  return {output, argmax};
}

// grad [K, C, output_size], argmax [K, C, output_size] -> grad_input [B, C, T].
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
    const int64_t* arg = argmax_c.const_data_ptr<int64_t>();
    scalar_t* out = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 2048 / length);
    at::parallel_for(0, batch_size * channels, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> row(length);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / channels;
        const int64_t c = r % channels;
        std::fill(row.begin(), row.end(), acc_t(0));
        for (int64_t i = group_begin[b]; i < group_begin[b + 1]; ++i) {
          const int64_t o = (order[i] * channels + c) * output_size;
          for (int64_t p = 0; p < output_size; ++p) {
            const int64_t where = arg[o + p];
            TORCH_CHECK(where >= -1 && where < length, "argmax: position ", where, " outside [-1, ", length,
                        ")");
            if (where >= 0) {
              row[where] += static_cast<acc_t>(g[o + p]);
            }
          }
        }
        std::copy(row.begin(), row.end(), out + r * length);
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

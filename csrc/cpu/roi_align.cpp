// CPU kernels of rc3d_af::roi_align_1d and its backward.
//
// In 1D every output bin is a fixed weighted sum of input positions (its samples' interpolation
// taps), the same for all channels. So the sampling is computed once per call as a sparse table
// (per (RoI, bin): positions and weights) and then applied to every channel row. The forward runs
// in parallel over RoIs; the backward in parallel over (batch, channel) rows, each row adding the
// contributions of its batch element's RoIs, so no two threads write the same element (no atomics,
// and the result does not depend on the thread count).

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../roi_common.h"

namespace rc3d_af {
namespace {

// The taps of every (RoI, bin): entries [bin_begin[k * P + p], bin_begin[k * P + p + 1]).
template <typename acc_t>
struct AlignTable {
  std::vector<int64_t> batch;      // [K] batch index of each RoI
  std::vector<acc_t> count;        // [K] samples per bin (the divisor of the mean; >= 1)
  std::vector<int64_t> bin_begin;  // [K * P + 1]
  std::vector<int64_t> position;   // input position along T of each tap
  std::vector<acc_t> weight;       // interpolation weight of each tap
};

template <typename scalar_t, typename acc_t>
AlignTable<acc_t> build_align_table(const at::Tensor& rois, int64_t batch_size, int64_t length,
                                    double spatial_scale, int64_t output_size, int64_t sampling_ratio,
                                    bool aligned) {
  const int64_t num_rois = rois.size(0);
  AlignTable<acc_t> table;
  table.batch = roi::batch_indices<scalar_t>(rois, batch_size);
  table.count.resize(num_rois);
  table.bin_begin.reserve(num_rois * output_size + 1);
  table.bin_begin.push_back(0);
  const scalar_t* r = rois.const_data_ptr<scalar_t>();
  for (int64_t k = 0; k < num_rois; ++k) {
    const roi::AlignGeometry<acc_t> g = roi::align_geometry<acc_t>(
        r[3 * k + 1], r[3 * k + 2], static_cast<acc_t>(spatial_scale), output_size, sampling_ratio, aligned);
    // torchvision divides by max(grid_h * grid_w, 1) after adding grid_h identical rows: a mean over x.
    table.count[k] = static_cast<acc_t>(std::max(g.grid, 1));
    for (int64_t p = 0; p < output_size; ++p) {
      for (int ix = 0; ix < g.grid; ++ix) {
        int64_t low, high;
        acc_t w_low, w_high;
        if (!roi::interpolation_taps(roi::sample_position(g, p, ix), length, low, high, w_low, w_high)) {
          continue;
        }
        table.position.push_back(low);
        table.weight.push_back(w_low);
        if (high != low) {
          table.position.push_back(high);
          table.weight.push_back(w_high);
        }
      }
      table.bin_begin.push_back(static_cast<int64_t>(table.position.size()));
    }
  }
  return table;
}

// input [B, C, T], rois [K, 3] -> [K, C, output_size].
at::Tensor roi_align_1d_cpu(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                            int64_t output_size, int64_t sampling_ratio, bool aligned) {
  roi::check_roi_args(input, rois, output_size);
  const int64_t channels = input.size(1);
  const int64_t length = input.size(2);
  const int64_t num_rois = rois.size(0);
  at::Tensor output = at::empty({num_rois, channels, output_size}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_1d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const AlignTable<acc_t> table = build_align_table<scalar_t, acc_t>(
        rois_c, input.size(0), length, spatial_scale, output_size, sampling_ratio, aligned);
    const scalar_t* in = input_c.const_data_ptr<scalar_t>();
    scalar_t* out = output.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 32768 / (channels * output_size));
    at::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t* bins = table.bin_begin.data() + k * output_size;
        // Bins outer, channels inner: the same taps for every channel (a well-predicted loop).
        const scalar_t* slab = in + table.batch[k] * channels * length;
        for (int64_t p = 0; p < output_size; ++p) {
          scalar_t* out_bin = out + k * channels * output_size + p;
          for (int64_t c = 0; c < channels; ++c) {
            const scalar_t* row = slab + c * length;
            acc_t sum = 0;
            for (int64_t e = bins[p]; e < bins[p + 1]; ++e) {
              sum += table.weight[e] * static_cast<acc_t>(row[table.position[e]]);
            }
            out_bin[c * output_size] = static_cast<scalar_t>(sum / table.count[k]);
          }
        }
      }
    });
  });
  return output;
}

// grad [K, C, output_size] -> grad_input [B, C, T].
at::Tensor roi_align_1d_backward_cpu(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                     int64_t output_size, int64_t batch_size, int64_t channels,
                                     int64_t length, int64_t sampling_ratio, bool aligned) {
  roi::check_roi_grad_args(grad, rois, output_size, channels, length);
  // Every row is written below; only a call without RoIs or channels needs the zeros.
  at::Tensor grad_input = at::empty({batch_size, channels, length}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_1d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const AlignTable<acc_t> table = build_align_table<scalar_t, acc_t>(
        rois_c, batch_size, length, spatial_scale, output_size, sampling_ratio, aligned);
    const auto [order_t, group_begin_t] = roi::group_by_batch(rois_c, batch_size);
    const int64_t* order = order_t.const_data_ptr<int64_t>();
    const int64_t* group_begin = group_begin_t.const_data_ptr<int64_t>();
    const scalar_t* g = grad_c.const_data_ptr<scalar_t>();
    scalar_t* out = grad_input.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 2048 / length);
    at::parallel_for(0, batch_size * channels, grain, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> row(length);
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / channels;
        const int64_t c = r % channels;
        std::fill(row.begin(), row.end(), acc_t(0));
        for (int64_t i = group_begin[b]; i < group_begin[b + 1]; ++i) {
          const int64_t k = order[i];
          const int64_t* bins = table.bin_begin.data() + k * output_size;
          const scalar_t* g_row = g + (k * channels + c) * output_size;
          for (int64_t p = 0; p < output_size; ++p) {
            const acc_t share = static_cast<acc_t>(g_row[p]) / table.count[k];
            for (int64_t e = bins[p]; e < bins[p + 1]; ++e) {
              row[table.position[e]] += table.weight[e] * share;
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
  m.impl("roi_align_1d", &roi_align_1d_cpu);
  m.impl("_roi_align_1d_backward", &roi_align_1d_backward_cpu);
}

}  // namespace rc3d_af

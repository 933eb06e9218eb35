// CUDA kernels of rc3d_af::roi_align_1d and its backward.
//
// Forward: one thread per output element (RoI, channel, bin) averages the bin's samples.
// Backward: one thread per input element (batch, channel, position) gathers the contributions of
// the RoIs of its batch element, in a fixed order. No atomics, so the gradient is bitwise
// reproducible from run to run (a scatter with atomicAdd is not). Half and bfloat16 inputs are
// computed in float.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>


#include "../roi_common.h"

namespace rc3d_af {
namespace {

// output [K, C, output_size]; n = its number of elements.
template <typename scalar_t>
__global__ void roi_align_forward_kernel(int64_t n, const scalar_t* __restrict__ input,
                                         const scalar_t* __restrict__ rois, double spatial_scale,
                                         int64_t batch_size, int64_t channels, int64_t length,
                                         int64_t output_size, int64_t sampling_ratio, bool aligned,
                                         scalar_t* __restrict__ output) {
  using acc_t = at::opmath_type<scalar_t>;
  RC3D_AF_ROI_KERNEL_LOOP(i, n) {
    const int64_t p = i % output_size;
    const int64_t c = (i / output_size) % channels;
    const scalar_t* roi = rois + 3 * (i / (output_size * channels));
    const int64_t b = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch_size);
    const roi::AlignGeometry<acc_t> g = roi::align_geometry<acc_t>(
        roi[1], roi[2], static_cast<acc_t>(spatial_scale), output_size, sampling_ratio, aligned);
    const scalar_t* row = input + (b * channels + c) * length;
    acc_t sum = 0;
    for (int ix = 0; ix < g.grid; ++ix) {
      int64_t low, high;
      acc_t w_low, w_high;
      if (roi::interpolation_taps(roi::sample_position(g, p, ix), length, low, high, w_low, w_high)) {
        sum += w_low * static_cast<acc_t>(row[low]);
        if (high != low) {
          sum += w_high * static_cast<acc_t>(row[high]);
        }
      }
    }
    output[i] = static_cast<scalar_t>(sum / static_cast<acc_t>(g.grid > 1 ? g.grid : 1));
  }
}

// grad_input [B, C, T]; n = its number of elements. The RoIs of batch element b are
// order[group_begin[b]:group_begin[b + 1]].
template <typename scalar_t>
__global__ void roi_align_backward_kernel(int64_t n, const scalar_t* __restrict__ grad,
                                          const scalar_t* __restrict__ rois, const int64_t* __restrict__ order,
                                          const int64_t* __restrict__ group_begin, double spatial_scale,
                                          int64_t channels, int64_t length, int64_t output_size,
                                          int64_t sampling_ratio, bool aligned, scalar_t* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  RC3D_AF_ROI_KERNEL_LOOP(i, n) {
    const int64_t t = i % length;
    const int64_t c = (i / length) % channels;
    const int64_t b = i / (length * channels);
    acc_t sum = 0;
    for (int64_t j = group_begin[b]; j < group_begin[b + 1]; ++j) {
      const int64_t k = order[j];
      const scalar_t* roi = rois + 3 * k;
      const roi::AlignGeometry<acc_t> g = roi::align_geometry<acc_t>(
          roi[1], roi[2], static_cast<acc_t>(spatial_scale), output_size, sampling_ratio, aligned);
      // Only samples within one unit of t reach it. Bins wholly farther away are skipped; the
      // margin (one more unit, plus a relative term) exceeds any rounding of the positions and of
      // t, and the samples of the bins kept are recomputed exactly below.
      const acc_t width = g.bin_size * static_cast<acc_t>(output_size);
      const acc_t margin = acc_t(2) + acc_t(1e-4) * ((g.start < 0 ? -g.start : g.start) + width);
      const acc_t reach_lo = static_cast<acc_t>(t) - margin;
      const acc_t reach_hi = static_cast<acc_t>(t) + margin;
      const scalar_t* grad_row = grad + (k * channels + c) * output_size;
      for (int64_t p = 0; p < output_size && g.grid > 0; ++p) {
        const acc_t bin_lo = g.start + static_cast<acc_t>(p) * g.bin_size;
        if (bin_lo > reach_hi) {
          break;  // bins only move right
        }
        if (bin_lo + g.bin_size < reach_lo) {
          continue;
        }
        const acc_t share = static_cast<acc_t>(grad_row[p]) / static_cast<acc_t>(g.grid);
        for (int ix = 0; ix < g.grid; ++ix) {
          int64_t low, high;
          acc_t w_low, w_high;
          if (!roi::interpolation_taps(roi::sample_position(g, p, ix), length, low, high, w_low, w_high)) {
            continue;
          }
          if (low == t) {
            sum += w_low * share;
          }
          if (high == t && high != low) {
            sum += w_high * share;
          }
        }
      }
    }
    grad_input[i] = static_cast<scalar_t>(sum);
  }
}

at::Tensor roi_align_1d_cuda(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                             int64_t output_size, int64_t sampling_ratio, bool aligned) {
  roi::check_roi_args(input, rois, output_size);
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty({rois.size(0), input.size(1), output_size}, input.options());
  const int64_t n = output.numel();
  if (n == 0) {
    return output;
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_1d_cuda", [&] {
    roi_align_forward_kernel<scalar_t><<<roi::roi_blocks(n), roi::kRoiThreads, 0, stream>>>(
        n, input_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(), spatial_scale, input.size(0),
        input.size(1), input.size(2), output_size, sampling_ratio, aligned, output.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

at::Tensor roi_align_1d_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                      int64_t output_size, int64_t batch_size, int64_t channels,
                                      int64_t length, int64_t sampling_ratio, bool aligned) {
  roi::check_roi_grad_args(grad, rois, output_size, channels, length);
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::empty({batch_size, channels, length}, grad.options());
  const int64_t n = grad_input.numel();
  if (n == 0) {
    return grad_input;
  }
  if (rois.size(0) == 0) {
    return grad_input.zero_();
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const auto [order, group_begin] = roi::group_by_batch(rois_c, batch_size);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_align_1d_backward_cuda", [&] {
    roi_align_backward_kernel<scalar_t><<<roi::roi_blocks(n), roi::kRoiThreads, 0, stream>>>(
        n, grad_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(), order.const_data_ptr<int64_t>(),
        group_begin.const_data_ptr<int64_t>(), spatial_scale, channels, length, output_size, sampling_ratio,
        aligned, grad_input.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CUDA, m) {
  m.impl("roi_align_1d", &roi_align_1d_cuda);
  m.impl("_roi_align_1d_backward", &roi_align_1d_backward_cuda);
}

}  // namespace rc3d_af

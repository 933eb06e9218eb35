// CUDA kernels of rc3d_af::roi_pool_1d (RoI max pooling) and its backward.
//
// Forward: one thread per output element (RoI, channel, bin) scans its bin for the maximum and
// records its position (int32, as on the CPU: half the memory traffic of int64).
// Backward: one thread per input element (batch, channel, position) sums the gradients of the
// outputs whose argmax is that position, over the RoIs of its batch element in a fixed order: no
// atomics, so the gradient is bitwise reproducible. Consecutive bins share at most one position,
// so along the bins of one (RoI, channel) the argmax positions never decrease (empty bins, -1,
// aside): a thread stops reading a RoI's bins at the first position past its own. Half and
// bfloat16 inputs are compared and summed in float.

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../roi_common.h"

namespace rc3d_af {
namespace {

// output, argmax [K, C, output_size]; n = their number of elements.
template <typename scalar_t>
__global__ void roi_pool_forward_kernel(int64_t n, const scalar_t* __restrict__ input,
                                        const scalar_t* __restrict__ rois, double spatial_scale,
                                        int64_t batch_size, int64_t channels, int64_t length,
                                        int64_t output_size, scalar_t* __restrict__ output,
                                        int32_t* __restrict__ argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  RC3D_AF_ROI_KERNEL_LOOP(i, n) {
    const int64_t p = i % output_size;
    const int64_t c = (i / output_size) % channels;
    const scalar_t* roi = rois + 3 * (i / (output_size * channels));
    const int64_t b = static_cast<int64_t>(static_cast<acc_t>(roi[0]));
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch_size);
    const roi::PoolGeometry<acc_t> g =
        roi::pool_geometry<acc_t>(roi[1], roi[2], static_cast<acc_t>(spatial_scale), output_size);
    int64_t lo, hi;
    roi::pool_bin_range(g, p, length, lo, hi);
    if (hi <= lo) {  // the bin lies wholly outside the input
      output[i] = static_cast<scalar_t>(0);
      argmax[i] = -1;
      continue;
    }
    const scalar_t* row = input + (b * channels + c) * length;
    acc_t best;
    argmax[i] = static_cast<int32_t>(roi::bin_argmax(row, lo, hi, best));  // < length < 2^31
    output[i] = static_cast<scalar_t>(best);
  }
}

// grad_input [B, C, T]; n = its number of elements. The RoIs of batch element b are
// order[group_begin[b]:group_begin[b + 1]].
template <typename scalar_t>
__global__ void roi_pool_backward_kernel(int64_t n, const scalar_t* __restrict__ grad,
                                         const int32_t* __restrict__ argmax, const int64_t* __restrict__ order,
                                         const int64_t* __restrict__ group_begin, int64_t channels,
                                         int64_t length, int64_t output_size, scalar_t* __restrict__ grad_input) {
  using acc_t = at::opmath_type<scalar_t>;
  RC3D_AF_ROI_KERNEL_LOOP(i, n) {
    const int64_t t = i % length;
    const int64_t c = (i / length) % channels;
    const int64_t b = i / (length * channels);
    acc_t sum = 0;
    for (int64_t j = group_begin[b]; j < group_begin[b + 1]; ++j) {
      // Neighbouring threads (positions) read the same argmax row: broadcast loads.
      const int64_t o = (order[j] * channels + c) * output_size;
      for (int64_t p = 0; p < output_size; ++p) {
        const int64_t where = argmax[o + p];
        if (where > t) {
          break;  // every later non-empty bin lies further right
        }
        if (where == t) {
          sum += static_cast<acc_t>(grad[o + p]);
        }
      }
    }
    grad_input[i] = static_cast<scalar_t>(sum);
  }
}

std::tuple<at::Tensor, at::Tensor> roi_pool_1d_cuda(const at::Tensor& input, const at::Tensor& rois,
                                                    double spatial_scale, int64_t output_size) {
  roi::check_roi_args(input, rois, output_size);
  roi::check_argmax_range(input.size(2));
  const c10::cuda::CUDAGuard guard(input.device());
  at::Tensor output = at::empty({rois.size(0), input.size(1), output_size}, input.options());
  at::Tensor argmax = at::empty(output.sizes(), input.options().dtype(at::kInt));
  const int64_t n = output.numel();
  if (n == 0) {
    return {output, argmax};
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_pool_1d_cuda", [&] {
    roi_pool_forward_kernel<scalar_t><<<roi::roi_blocks(n), roi::kRoiThreads, 0, stream>>>(
        n, input_c.const_data_ptr<scalar_t>(), rois_c.const_data_ptr<scalar_t>(), spatial_scale, input.size(0),
        input.size(1), input.size(2), output_size, output.mutable_data_ptr<scalar_t>(),
        argmax.mutable_data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {output, argmax};
}

at::Tensor roi_pool_1d_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, const at::Tensor& argmax,
                                     int64_t batch_size, int64_t channels, int64_t length) {
  roi::check_roi_pool_grad_args(grad, rois, argmax, channels, length);
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
  const at::Tensor argmax_c = argmax.contiguous();
  const auto [order, group_begin] = roi::group_by_batch(rois, batch_size);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_pool_1d_backward_cuda", [&] {
    roi_pool_backward_kernel<scalar_t><<<roi::roi_blocks(n), roi::kRoiThreads, 0, stream>>>(
        n, grad_c.const_data_ptr<scalar_t>(), argmax_c.const_data_ptr<int32_t>(), order.const_data_ptr<int64_t>(),
        group_begin.const_data_ptr<int64_t>(), channels, length, grad.size(2),
        grad_input.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CUDA, m) {
  m.impl("roi_pool_1d", &roi_pool_1d_cuda);
  m.impl("_roi_pool_1d_backward", &roi_pool_1d_backward_cuda);
}

}  // namespace rc3d_af

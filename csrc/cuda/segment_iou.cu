// CUDA kernel of rc3d_af::segment_iou: one thread per (i, j) pair, grid-stride.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../segment_iou.h"

namespace rc3d_af {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;  // the grid-stride loop covers larger problems

template <typename scalar_t>
__global__ void segment_iou_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t n,
                                   int64_t m, scalar_t* __restrict__ out) {
  const int64_t total = n * m;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const int64_t i = k / m;
    const int64_t j = k - i * m;
    out[k] = segment_iou_pair(a[2 * i], a[2 * i + 1], b[2 * j], b[2 * j + 1]);
  }
}

at::Tensor segment_iou_cuda(const at::Tensor& a, const at::Tensor& b) {
  check_segment_iou_args(a, b);
  TORCH_CHECK(a.device() == b.device(), "b: on ", b.device(), " but a on ", a.device());
  const c10::cuda::CUDAGuard guard(a.device());
  const at::Tensor a_c = a.contiguous();
  const at::Tensor b_c = b.contiguous();
  const int64_t n = a.size(0);
  const int64_t m = b.size(0);
  at::Tensor out = at::empty({n, m}, a.options());
  if (out.numel() == 0) {
    return out;
  }
  const int64_t blocks = std::min<int64_t>((n * m + kThreads - 1) / kThreads, kMaxBlocks);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "segment_iou_cuda", [&] {
    segment_iou_kernel<scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        a_c.data_ptr<scalar_t>(), b_c.data_ptr<scalar_t>(), n, m, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CUDA, m) {
  m.impl("segment_iou", &segment_iou_cuda);
}

}  // namespace rc3d_af

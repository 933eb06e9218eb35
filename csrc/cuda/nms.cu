// CUDA kernels of rc3d_af::nms_1d and rc3d_af::batched_nms_1d: block-bitmask NMS.
//
// Segments are sorted by score (stable, so equal scores stay in index order). One CUDA block of 64
// threads compares 64 rows with 64 columns; row i gets a 64-bit word per column block with bit j set
// when a later segment j (same label) has IoU > iou_threshold with i. The greedy pass over these
// words is sequential and short, so it runs on the host, as in torchvision's CUDA NMS. Memory:
// N * ceil(N / 64) * 8 bytes (50 MB at N = 20,000). The input value checks (NaN, end < start) ride
// on the one copy of the mask to the host, and the kept indices go back from pinned memory without
// waiting: one host synchronisation per call.

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../segment_iou.h"

namespace rc3d_af {
namespace {

constexpr int kWordBits = 64;
constexpr int64_t kMaxGridY = 65535;

// `labels` is nullptr for nms_1d (one group).
template <typename scalar_t>
__global__ void nms_mask_kernel(const scalar_t* __restrict__ segments, const int64_t* __restrict__ labels,
                                int64_t n, double iou_threshold, int64_t words, uint64_t* __restrict__ mask) {
  const int64_t row_block = blockIdx.y;
  const int64_t col_block = blockIdx.x;
  if (row_block > col_block) {
    return;  // only later columns can be suppressed by a row; the host never reads these words
  }
  const int64_t row_rest = n - row_block * kWordBits;
  const int64_t col_rest = n - col_block * kWordBits;
  const int row_size = row_rest < kWordBits ? static_cast<int>(row_rest) : kWordBits;
  const int col_size = col_rest < kWordBits ? static_cast<int>(col_rest) : kWordBits;
  __shared__ scalar_t col_segments[2 * kWordBits];
  __shared__ int64_t col_labels[kWordBits];
  const int t = threadIdx.x;
  if (t < col_size) {
    const int64_t j = col_block * kWordBits + t;
    col_segments[2 * t] = segments[2 * j];
    col_segments[2 * t + 1] = segments[2 * j + 1];
    col_labels[t] = labels != nullptr ? labels[j] : 0;
  }
  __syncthreads();
  if (t >= row_size) {
    return;
  }
  const int64_t i = row_block * kWordBits + t;
  const scalar_t s = segments[2 * i];
  const scalar_t e = segments[2 * i + 1];
  const int64_t label = labels != nullptr ? labels[i] : 0;
  uint64_t bits = 0;
  for (int j = row_block == col_block ? t + 1 : 0; j < col_size; ++j) {
    if (col_labels[j] == label &&
        static_cast<double>(segment_iou_pair(s, e, col_segments[2 * j], col_segments[2 * j + 1])) > iou_threshold) {
      bits |= uint64_t{1} << j;
    }
  }
  mask[i * words + col_block] = bits;
}

// Greedy pass over the suppression words of the score-sorted segments; returns kept positions.
std::vector<int64_t> greedy_pass(const uint64_t* mask, int64_t n, int64_t words) {
  std::vector<uint64_t> removed(words, 0);
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < n; ++i) {
    if ((removed[i / kWordBits] >> (i % kWordBits)) & 1) {
      continue;
    }
    kept.push_back(i);
    const uint64_t* row = mask + i * words;
    for (int64_t w = i / kWordBits; w < words; ++w) {
      removed[w] |= row[w];
    }
  }
  return kept;
}

// `labels` undefined: one group (nms_1d).
at::Tensor nms_cuda_common(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels,
                           double iou_threshold) {
  check_nms_args(segments, scores, iou_threshold);
  const c10::cuda::CUDAGuard guard(segments.device());
  const int64_t n = segments.size(0);
  const at::TensorOptions index_options = segments.options().dtype(at::kLong);
  if (n == 0) {
    return at::empty({0}, index_options);
  }
  const int64_t words = (n + kWordBits - 1) / kWordBits;
  TORCH_CHECK(words <= kMaxGridY, "segments: at most ", kMaxGridY * kWordBits,
              " segments per call on CUDA, got ", n);
  const at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted = segments.index_select(0, order).contiguous();
  const at::Tensor sorted_labels =
      labels.defined() ? labels.index_select(0, order).to(at::kLong).contiguous() : at::Tensor();
  // The n * words mask words, then the value-check bits.
  at::Tensor mask = at::empty({n * words + 1}, index_options);
  const dim3 grid(static_cast<unsigned>(words), static_cast<unsigned>(words));
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "nms_1d_cuda", [&] {
    nms_mask_kernel<scalar_t><<<grid, kWordBits, 0, c10::cuda::getCurrentCUDAStream()>>>(
        sorted.data_ptr<scalar_t>(), sorted_labels.defined() ? sorted_labels.data_ptr<int64_t>() : nullptr, n,
        iou_threshold, words, reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  mask.narrow(0, n * words, 1).copy_(nms_value_bits(segments, scores).view({1}));
  const at::Tensor mask_cpu = mask.to(at::kCPU);
  check_nms_value_bits(mask_cpu.data_ptr<int64_t>()[n * words]);
  const std::vector<int64_t> kept =
      greedy_pass(reinterpret_cast<const uint64_t*>(mask_cpu.data_ptr<int64_t>()), n, words);
  at::Tensor kept_cpu = at::empty({static_cast<int64_t>(kept.size())},
                                  at::TensorOptions().dtype(at::kLong).pinned_memory(true));
  std::copy(kept.begin(), kept.end(), kept_cpu.data_ptr<int64_t>());
  return order.index_select(0, kept_cpu.to(segments.device(), /*non_blocking=*/true));
}

at::Tensor nms_1d_cuda(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold) {
  return nms_cuda_common(segments, scores, at::Tensor(), iou_threshold);
}

at::Tensor batched_nms_1d_cuda(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels,
                               double iou_threshold) {
  check_labels_arg(labels, segments);
  return nms_cuda_common(segments, scores, labels, iou_threshold);
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CUDA, m) {
  m.impl("nms_1d", &nms_1d_cuda);
  m.impl("batched_nms_1d", &batched_nms_1d_cuda);
}

}  // namespace rc3d_af

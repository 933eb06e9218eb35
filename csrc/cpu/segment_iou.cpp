// CPU kernel of rc3d_af::segment_iou: the IoU of every pair of two segment sets.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../segment_iou.h"

namespace rc3d_af {
namespace {

template <typename scalar_t>
void segment_iou_rows(const scalar_t* a, const scalar_t* b, int64_t m, int64_t row_begin, int64_t row_end,
                      scalar_t* out) {
  for (int64_t i = row_begin; i < row_end; ++i) {
    const scalar_t s = a[2 * i];
    const scalar_t e = a[2 * i + 1];
    scalar_t* row = out + i * m;
    for (int64_t j = 0; j < m; ++j) {
      row[j] = segment_iou_pair(s, e, b[2 * j], b[2 * j + 1]);
    }
  }
}

// a [N, 2], b [M, 2] -> [N, M] in the dtype of the inputs.
at::Tensor segment_iou_cpu(const at::Tensor& a, const at::Tensor& b) {
  check_segment_iou_args(a, b);
  const at::Tensor a_c = a.contiguous();
  const at::Tensor b_c = b.contiguous();
  const int64_t n = a.size(0);
  const int64_t m = b.size(0);
  at::Tensor out = at::empty({n, m}, a.options());
  if (out.numel() == 0) {
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "segment_iou_cpu", [&] {
    const scalar_t* a_ptr = a_c.data_ptr<scalar_t>();
    const scalar_t* b_ptr = b_c.data_ptr<scalar_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    // Rows are independent; the grain keeps small problems on one thread.
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(m, 1));
    at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
      segment_iou_rows(a_ptr, b_ptr, m, begin, end, out_ptr);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CPU, m) {
  m.impl("segment_iou", &segment_iou_cpu);
}

}  // namespace rc3d_af

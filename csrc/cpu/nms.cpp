// CPU kernels of rc3d_af::nms_1d, rc3d_af::batched_nms_1d and rc3d_af::soft_nms_1d.
//
// Greedy NMS visits the segments by decreasing score (equal scores in index order) and keeps one
// unless a kept segment of the same label overlaps it with IoU > iou_threshold. Unlike 2D boxes,
// segments can be ordered by start, and IoU > t bounds both the length ratio (t < l_k / l_c < 1 / t)
// and the start of an overlapping segment. So the segments are grouped by (label, power-of-two length
// class) and sorted by start within a group; a candidate is compared only with the kept segments of
// the few classes the ratio allows, inside the start window each class allows (one binary search per
// class, then a scan of a bitset of kept ranks). Cost: two sorts plus a few searches per candidate,
// instead of torchvision's scan of every kept box; results are identical to that scan.

#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "../segment_iou.h"

namespace rc3d_af {
namespace {

// The window bounds below are derived from IoU > tau with tau = threshold * (1 - kPruneSlack), so
// that floating-point rounding in the IoU (a few units in the last place, relative) can never make
// a window miss a segment that the exact IoU test would suppress.
constexpr double kPruneSlack = 1e-4;
// Below these the rounding argument behind the length-ratio bound no longer holds (subnormal
// numbers have only absolute accuracy); the windows then rely on overlap alone (as for threshold 0).
constexpr double kMinPruneThreshold = 1e-6;
constexpr double kMinPruneLength = 1e-20;
constexpr double kInf = std::numeric_limits<double>::infinity();
// Length class of segments that never overlap anything with IoU > 0 (zero or non-finite length).
constexpr int kInert = std::numeric_limits<int>::max();

// The segments that share a label and a length class [2^(exponent-1), 2^exponent), by start.
struct Group {
  int64_t begin;           // first rank
  int64_t end;             // one past the last rank
  int64_t first_of_label;  // the groups of one label are consecutive, by increasing exponent
  int64_t end_of_label;    // one past the label's last group
  int exponent;
  double shortest = 0.0;  // 2^(exponent-1): every length in the class is >= this
  double longest = 0.0;   // 2^exponent: every length in the class is < this
  int64_t kept = 0;
  double max_length = 0.0;  // longest kept segment, rounded up
};

// Where the kept segments are: a bitset over the segments' ranks in (label, length class, start)
// order. A candidate is compared only with kept segments of its label in the length classes and
// start windows that an IoU above the threshold allows.
template <typename scalar_t>
class KeptSegments {
 public:
  KeptSegments(const scalar_t* segments, const int64_t* labels, int64_t n)
      : rank_(n), start_(n), end_(n), group_of_(n), kept_(static_cast<size_t>((n + 63) / 64), 0) {
    struct Key {
      int64_t label;
      int exponent;
      scalar_t start;
      int64_t index;
    };
    std::vector<Key> keys(n);
    for (int64_t i = 0; i < n; ++i) {
      keys[i] = {labels != nullptr ? labels[i] : 0, length_class(segments[2 * i], segments[2 * i + 1]),
                 segments[2 * i], i};
    }
    std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) {
      if (a.label != b.label) {
        return a.label < b.label;
      }
      return a.exponent != b.exponent ? a.exponent < b.exponent : a.start < b.start;
    });
    for (int64_t r = 0; r < n; ++r) {
      const Key& key = keys[r];
      rank_[key.index] = r;
      start_[r] = key.start;
      end_[r] = segments[2 * key.index + 1];
      const bool new_label = r == 0 || key.label != keys[r - 1].label;
      if (new_label || key.exponent != keys[r - 1].exponent) {
        if (!groups_.empty()) {
          groups_.back().end = r;
        }
        const int64_t first = new_label ? static_cast<int64_t>(groups_.size()) : groups_.back().first_of_label;
        groups_.push_back(Group{r, n, first, 0, key.exponent, std::ldexp(1.0, key.exponent - 1),
                                std::ldexp(1.0, key.exponent)});
      }
      group_of_[r] = static_cast<int64_t>(groups_.size()) - 1;
    }
    // Walking backwards, a label's groups end where the previous (later) label's first group begins.
    int64_t label_end = static_cast<int64_t>(groups_.size());
    for (int64_t g = label_end - 1; g >= 0; --g) {
      groups_[g].end_of_label = label_end;
      if (groups_[g].first_of_label == g) {
        label_end = g;
      }
    }
  }

  // True when a kept segment of the same label has IoU > threshold with segment `index`.
  bool suppresses(int64_t index, double threshold) const {
    const int64_t r = rank_[index];
    const scalar_t s = start_[r];
    const scalar_t e = end_[r];
    const Group& own = groups_[group_of_[r]];
    if (own.exponent == kInert) {
      return false;
    }
    const double length = static_cast<double>(e) - static_cast<double>(s);
    // IoU > tau implies intersection > tau * (either length): the kept segment is longer than
    // tau * length and shorter than length / tau, starts before e - tau * length and after
    // s + tau * length - (its length). With tau = 0 this is plain overlap.
    const bool by_ratio = threshold >= kMinPruneThreshold && length >= kMinPruneLength;
    const double tau = by_ratio ? threshold * (1.0 - kPruneSlack) : 0.0;
    const double shortest = tau * length;
    const double longest = by_ratio ? length / tau : kInf;
    const double hi = widen(static_cast<double>(e), -shortest, 1.0);
    for (int64_t g = own.first_of_label; g < own.end_of_label; ++g) {
      const Group& group = groups_[g];
      if (group.exponent == kInert || group.shortest >= longest) {
        break;  // this and every later class holds only longer (or inert) segments
      }
      if (group.kept == 0 || group.longest <= shortest) {
        continue;
      }
      const double lo = widen(static_cast<double>(s), shortest - std::fmin(group.max_length, longest), -1.0);
      const int64_t first = group.begin + first_not_below(start_.data() + group.begin, group.end - group.begin, lo);
      if (any_kept_above(first, group.end, hi, s, e, threshold)) {
        return true;
      }
    }
    return false;
  }

  void add(int64_t index) {
    const int64_t r = rank_[index];
    kept_[r >> 6] |= uint64_t{1} << (r & 63);
    Group& group = groups_[group_of_[r]];
    group.kept += 1;
    // Rounded up so that the windows in suppresses() stay conservative.
    const double length = widen(static_cast<double>(end_[r]), -static_cast<double>(start_[r]), 1.0);
    group.max_length = std::fmax(group.max_length, length);
  }

 private:
  // a + b moved outwards (direction +1 or -1) by more than its rounding error (half an ulp of the
  // result, at most 2^-53 (|a| + |b|); additions with a subnormal result are exact). Cheaper than
  // std::nextafter, which is a library call.
  static double widen(double a, double b, double direction) {
    return (a + b) + direction * 1e-12 * (std::fabs(a) + std::fabs(b));
  }

  // Length class: the exponent x with length in [2^(x-1), 2^x), or kInert.
  static int length_class(scalar_t s, scalar_t e) {
    const scalar_t length = e - s;  // as the IoU computes it: zero or non-finite means IoU 0
    if (!(length > scalar_t(0)) || !std::isfinite(length)) {
      return kInert;
    }
    int exponent = 0;
    std::frexp(static_cast<double>(e) - static_cast<double>(s), &exponent);
    return exponent;
  }

  // First position in the ascending values[0, n) that is >= bound (n >= 1). Branch-free: the
  // comparisons are unpredictable and the search dominated the run time with branches.
  static int64_t first_not_below(const scalar_t* values, int64_t n, double bound) {
    const scalar_t* base = values;
    while (n > 1) {
      const int64_t half = n / 2;
      base = static_cast<double>(base[half]) < bound ? base + half : base;
      n -= half;
    }
    return (base - values) + (static_cast<double>(*base) < bound ? 1 : 0);
  }

  // Scans the kept segments of ranks [first, last) in start order until one starts after `hi`.
  bool any_kept_above(int64_t first, int64_t last, double hi, scalar_t s, scalar_t e, double threshold) const {
    for (int64_t w = first >> 6; w << 6 < last; ++w) {
      const int64_t word_begin = std::max(first, w << 6);
      if (static_cast<double>(start_[word_begin]) > hi) {
        return false;
      }
      uint64_t bits = kept_[w] & (~uint64_t{0} << (word_begin & 63));
      const int64_t word_end = std::min(last, (w + 1) << 6);  // exclusive
      if (word_end < (w + 1) << 6) {
        bits &= ~(~uint64_t{0} << (word_end & 63));
      }
      while (bits != 0) {
        const int64_t k = (w << 6) + std::countr_zero(bits);
        bits &= bits - 1;
        if (static_cast<double>(start_[k]) > hi) {
          return false;
        }
        if (static_cast<double>(segment_iou_pair(s, e, start_[k], end_[k])) > threshold) {
          return true;
        }
      }
    }
    return false;
  }

  std::vector<int64_t> rank_;      // rank of each segment index
  std::vector<scalar_t> start_;    // by rank
  std::vector<scalar_t> end_;      // by rank
  std::vector<int64_t> group_of_;  // by rank
  std::vector<Group> groups_;      // by (label, exponent)
  std::vector<uint64_t> kept_;     // bit r set when the segment of rank r is kept
};

// Indices by decreasing score, equal scores in increasing index (a strict total order: no NaN).
template <typename scalar_t>
std::vector<int64_t> score_order(const scalar_t* scores, int64_t n) {
  std::vector<std::pair<scalar_t, int64_t>> keyed(n);
  for (int64_t i = 0; i < n; ++i) {
    keyed[i] = {scores[i], i};
  }
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  std::vector<int64_t> order(n);
  std::transform(keyed.begin(), keyed.end(), order.begin(), [](const auto& k) { return k.second; });
  return order;
}

template <typename scalar_t>
std::vector<int64_t> greedy_nms(const scalar_t* segments, const scalar_t* scores, const int64_t* labels,
                                int64_t n, double threshold) {
  KeptSegments<scalar_t> kept(segments, labels, n);
  std::vector<int64_t> keep;
  for (const int64_t i : score_order(scores, n)) {
    if (!kept.suppresses(i, threshold)) {
      kept.add(i);
      keep.push_back(i);
    }
  }
  return keep;
}

at::Tensor to_index_tensor(const std::vector<int64_t>& values) {
  at::Tensor out = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kLong));
  std::copy(values.begin(), values.end(), out.data_ptr<int64_t>());
  return out;
}

// `labels` undefined: one group (nms_1d).
at::Tensor nms_common(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels,
                      double iou_threshold) {
  check_nms_args(segments, scores, iou_threshold);
  check_nms_value_bits(nms_value_bits(segments, scores).item<int64_t>());
  const at::Tensor segments_c = segments.contiguous();
  const at::Tensor scores_c = scores.contiguous();
  const at::Tensor labels_c = labels.defined() ? labels.to(at::kLong).contiguous() : labels;
  std::vector<int64_t> keep;
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "nms_1d_cpu", [&] {
    keep = greedy_nms(segments_c.data_ptr<scalar_t>(), scores_c.data_ptr<scalar_t>(),
                      labels_c.defined() ? labels_c.data_ptr<int64_t>() : nullptr, segments.size(0),
                      iou_threshold);
  });
  return to_index_tensor(keep);
}

at::Tensor nms_1d_cpu(const at::Tensor& segments, const at::Tensor& scores, double iou_threshold) {
  return nms_common(segments, scores, at::Tensor(), iou_threshold);
}

at::Tensor batched_nms_1d_cpu(const at::Tensor& segments, const at::Tensor& scores, const at::Tensor& labels,
                              double iou_threshold) {
  check_labels_arg(labels, segments);
  return nms_common(segments, scores, labels, iou_threshold);
}

// Soft-NMS, O(N^2): repeatedly select the highest current score (lowest index on ties), then decay
// the others by their IoU with it; segments whose score drops below min_score are discarded.
// Decay weights are computed in float64 and the decayed score rounded back to the input dtype.
template <typename scalar_t>
void soft_nms(const scalar_t* segments, const scalar_t* scores, int64_t n, double iou_threshold, double sigma,
              double min_score, bool gaussian, std::vector<int64_t>& keep, std::vector<scalar_t>& kept_scores) {
  std::vector<scalar_t> current(scores, scores + n);
  std::vector<int64_t> alive;  // increasing index, so a strict '>' scan finds the lowest index on ties
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<double>(current[i]) >= min_score) {
      alive.push_back(i);
    }
  }
  while (!alive.empty()) {
    size_t best_pos = 0;
    for (size_t p = 1; p < alive.size(); ++p) {
      if (current[alive[p]] > current[alive[best_pos]]) {
        best_pos = p;
      }
    }
    const int64_t best = alive[best_pos];
    keep.push_back(best);
    kept_scores.push_back(current[best]);
    const scalar_t s = segments[2 * best];
    const scalar_t e = segments[2 * best + 1];
    size_t survivors = 0;
    for (size_t p = 0; p < alive.size(); ++p) {
      const int64_t j = alive[p];
      if (p == best_pos) {
        continue;
      }
      const double iou = static_cast<double>(segment_iou_pair(s, e, segments[2 * j], segments[2 * j + 1]));
      double weight = 1.0;
      if (gaussian) {
        weight = std::exp(-(iou * iou) / sigma);
      } else if (iou > iou_threshold) {
        weight = 1.0 - iou;
      }
      current[j] = static_cast<scalar_t>(static_cast<double>(current[j]) * weight);
      if (static_cast<double>(current[j]) >= min_score) {
        alive[survivors++] = j;
      }
    }
    alive.resize(survivors);
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_1d_cpu(const at::Tensor& segments, const at::Tensor& scores,
                                                   double iou_threshold, double sigma, double min_score,
                                                   int64_t method) {
  check_segments_arg(segments, "segments");
  check_scores_arg(scores, segments);
  check_iou_threshold_arg(iou_threshold);
  TORCH_CHECK(sigma > 0.0, "sigma: expected a positive number, got ", sigma);
  TORCH_CHECK(!std::isnan(min_score), "min_score: expected a number, got NaN");
  TORCH_CHECK(method == 0 || method == 1, "method: expected 0 (linear) or 1 (gaussian), got ", method);
  check_nms_value_bits(nms_value_bits(segments, scores).item<int64_t>());
  const at::Tensor segments_c = segments.contiguous();
  const at::Tensor scores_c = scores.contiguous();
  at::Tensor keep_tensor;
  at::Tensor scores_out;
  AT_DISPATCH_FLOATING_TYPES(segments.scalar_type(), "soft_nms_1d_cpu", [&] {
    std::vector<int64_t> keep;
    std::vector<scalar_t> kept_scores;
    soft_nms(segments_c.data_ptr<scalar_t>(), scores_c.data_ptr<scalar_t>(), segments.size(0), iou_threshold,
             sigma, min_score, method == 1, keep, kept_scores);
    keep_tensor = to_index_tensor(keep);
    scores_out = at::empty({static_cast<int64_t>(kept_scores.size())}, scores.options());
    std::copy(kept_scores.begin(), kept_scores.end(), scores_out.data_ptr<scalar_t>());
  });
  return {keep_tensor, scores_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(rc3d_af, CPU, m) {
  m.impl("nms_1d", &nms_1d_cpu);
  m.impl("batched_nms_1d", &batched_nms_1d_cpu);
  m.impl("soft_nms_1d", &soft_nms_1d_cpu);
}

}  // namespace rc3d_af

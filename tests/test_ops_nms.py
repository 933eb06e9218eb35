"""Segment IoU, NMS, batched NMS and soft-NMS: hand-computed cases, an independent pure-Python
oracle, compiled-vs-reference parity, opcheck, torch.compile, bad input, the in-model path without
value checks, and CUDA-vs-CPU parity and host synchronisations."""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

from rc3d_af.ops import _extension
from rc3d_af.ops import nms as nms_module
from rc3d_af.ops.nms import (
    batched_nms_1d,
    batched_nms_1d_reference,
    nms_1d,
    nms_1d_reference,
    segment_iou,
    segment_iou_reference,
    soft_nms_1d,
    soft_nms_1d_reference,
)

REQUIRE_COMPILED = os.environ.get("RC3D_AF_REQUIRE_COMPILED") == "1"  # set by `make test`
requires_compiled = pytest.mark.skipif(
    not (REQUIRE_COMPILED or _extension.STATUS.loaded),
    reason="compiled extension not built (make test requires it)",
)
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

THRESHOLDS = (0.0, 0.2, 0.5, 0.7, 1.0)


def tensor(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# --------------------------------------------------------------------------------------------------
# An independent oracle: the definitions, in plain Python floats (IEEE float64, same formula).
# --------------------------------------------------------------------------------------------------


def naive_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def naive_nms(segments: list, scores: list, labels: list, threshold: float) -> list[int]:
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(labels[i] != labels[k] or naive_iou(segments[i], segments[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


def naive_soft_nms(segments, scores, threshold, sigma, min_score, method) -> tuple[list[int], list[float]]:
    current = {i: s for i, s in enumerate(scores) if s >= min_score}
    keep, kept_scores = [], []
    while current:
        best = min(current, key=lambda i: (-current[i], i))
        keep.append(best)
        kept_scores.append(current.pop(best))
        for j in list(current):
            iou = naive_iou(segments[best], segments[j])
            if method == "gaussian":
                current[j] *= math.exp(-(iou * iou) / sigma)
            elif iou > threshold:
                current[j] *= 1.0 - iou
            if current[j] < min_score:
                del current[j]
    return keep, kept_scores


# --------------------------------------------------------------------------------------------------
# Random cases
# --------------------------------------------------------------------------------------------------


def random_case(n: int, kind: str, dtype: torch.dtype, seed: int):
    """``continuous``: THUMOS-like (centres over 100 s, lengths 0.4-20 s). ``grid``: integer endpoints
    and four score levels: shared endpoints, identical and zero-length segments, heavy score ties."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "continuous":
        centre = torch.rand(n, generator=gen, dtype=torch.float64) * 100
        length = torch.exp(torch.rand(n, generator=gen, dtype=torch.float64) * 4 - 1)
        segments = torch.stack([centre - length / 2, centre + length / 2], 1)
        scores = torch.rand(n, generator=gen, dtype=torch.float64)
    else:
        start = torch.randint(0, 12, (n,), generator=gen).double()
        segments = torch.stack([start, start + torch.randint(0, 5, (n,), generator=gen)], 1)
        scores = torch.randint(0, 4, (n,), generator=gen).double() / 4
    labels = torch.randint(-1, 3, (n,), generator=gen)
    return segments.to(dtype), scores.to(dtype), labels


CASES = [(kind, dtype) for kind in ("continuous", "grid") for dtype in (torch.float32, torch.float64)]


# --------------------------------------------------------------------------------------------------
# Hand-computed cases (public API: compiled kernels when built, else the references)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("iou_fn", [segment_iou, segment_iou_reference])
def test_segment_iou_hand_computed(iou_fn) -> None:
    a = tensor([[0.0, 2.0], [1.0, 1.0]])
    b = tensor([[1.0, 3.0], [2.0, 4.0], [0.0, 2.0], [5.0, 5.0], [0.5, 1.5], [1.0, 1.0]])
    expected = tensor(
        [
            [1 / 3, 0.0, 1.0, 0.0, 0.5, 0.0],  # touching -> 0; zero-length inside -> 0
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # zero-length: union 0 with itself -> 0, not NaN
        ]
    )
    torch.testing.assert_close(iou_fn(a, b), expected)
    assert iou_fn(a, b[:0]).shape == (2, 0)


def test_segment_iou_is_symmetric_and_matches_oracle() -> None:
    segments, _, _ = random_case(40, "continuous", torch.float64, seed=1)
    iou = segment_iou(segments, segments)
    assert torch.equal(iou, iou.T)
    pairs = segments.tolist()
    expected = torch.tensor([[naive_iou(p, q) for q in pairs] for p in pairs], dtype=torch.float64)
    assert torch.equal(iou, expected)


SEGMENTS = [[0.0, 10.0], [1.0, 11.0], [20.0, 30.0], [0.0, 5.0]]
SCORES = [0.9, 0.8, 0.7, 0.95]
# IoU(0, 1) = 9/11, IoU(3, 0) = 5/10, IoU(3, 1) = 4/11; segment 2 overlaps nothing.


@pytest.mark.parametrize("nms_fn", [nms_1d, nms_1d_reference])
@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.5, [3, 0, 2]), (0.49, [3, 1, 2]), (0.0, [3, 2]), (1.0, [3, 0, 1, 2]), (0.9, [3, 0, 1, 2])],
)
def test_nms_hand_computed(nms_fn, threshold: float, expected: list[int]) -> None:
    # At 0.5, IoU(3, 0) = 0.5 exactly is not above the threshold: 0 stays and suppresses 1.
    keep = nms_fn(tensor(SEGMENTS), tensor(SCORES), threshold)
    assert keep.dtype == torch.int64
    assert keep.tolist() == expected


def test_nms_equal_scores_in_index_order_and_identical_segments() -> None:
    identical = tensor([[1.0, 2.0]] * 3)
    assert nms_1d(identical, tensor([0.5, 0.5, 0.5]), 0.9).tolist() == [0]
    assert nms_1d(identical, tensor([0.5, 0.7, 0.7]), 0.9).tolist() == [1]
    disjoint = tensor([[4.0, 5.0], [0.0, 1.0], [2.0, 3.0]])
    assert nms_1d(disjoint, tensor([0.5, 0.5, 0.5]), 0.0).tolist() == [0, 1, 2]


def test_nms_touching_and_zero_length_segments_never_suppress() -> None:
    segments = tensor([[0.0, 1.0], [1.0, 2.0], [1.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    assert nms_1d(segments, tensor([0.9, 0.8, 0.7, 0.6, 0.5]), 0.0).tolist() == [0, 1, 2, 3, 4]


def test_nms_empty_input() -> None:
    empty = torch.zeros(0, 2)
    for keep in (
        nms_1d(empty, torch.zeros(0), 0.5),
        batched_nms_1d(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5),
    ):
        assert keep.shape == (0,)
        assert keep.dtype == torch.int64
    keep, scores = soft_nms_1d(empty, torch.zeros(0), 0.5, 0.5, 0.0)
    assert keep.shape == (0,) and scores.shape == (0,) and keep.dtype == torch.int64


def test_nms_single_segment() -> None:
    assert nms_1d(tensor([[3.0, 4.0]]), tensor([0.1]), 0.5).tolist() == [0]
    assert batched_nms_1d(tensor([[3.0, 4.0]]), tensor([0.1]), torch.tensor([7]), 0.5).tolist() == [0]


@pytest.mark.parametrize("nms_fn", [batched_nms_1d, batched_nms_1d_reference])
def test_batched_nms_hand_computed(nms_fn) -> None:
    segments = tensor([[0.0, 10.0], [0.0, 10.0], [1.0, 10.0], [30.0, 40.0]])
    scores = tensor([0.5, 0.9, 0.8, 0.9])
    labels = torch.tensor([1, 2, 2, 1], dtype=torch.int32)
    # Label 2: 1 keeps, 2 (IoU 0.9 with 1) goes; label 1: both kept. Equal scores 0.9: index order.
    assert nms_fn(segments, scores, labels, 0.5).tolist() == [1, 3, 0]
    # Different labels never suppress each other, even for identical segments.
    assert nms_fn(segments[:2], scores[:2], torch.tensor([4, -4]), 0.0).tolist() == [1, 0]


@pytest.mark.parametrize("soft_fn", [soft_nms_1d, soft_nms_1d_reference])
def test_soft_nms_hand_computed(soft_fn) -> None:
    segments = tensor([[0.0, 10.0], [0.0, 5.0], [20.0, 30.0]], torch.float64)
    scores = tensor([0.9, 0.8, 0.3], torch.float64)
    # Linear: IoU(0, 1) = 0.5 > 0.3 -> 0.8 * (1 - 0.5) = 0.4, selected before 0.3.
    keep, new_scores = soft_fn(segments, scores, 0.3, 0.5, 0.1, "linear")
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(new_scores, tensor([0.9, 0.4, 0.3], torch.float64))
    # Below the linear threshold nothing decays.
    keep, new_scores = soft_fn(segments, scores, 0.6, 0.5, 0.1, "linear")
    torch.testing.assert_close(new_scores, tensor([0.9, 0.8, 0.3], torch.float64))
    # Gaussian: 0.8 * exp(-0.25 / 0.5), threshold unused.
    keep, new_scores = soft_fn(segments, scores, 0.9, 0.5, 0.1, "gaussian")
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(new_scores, tensor([0.9, 0.8 * math.exp(-0.5), 0.3], torch.float64))
    # min_score drops 2 at once (0.3 < 0.45) and 1 after its decay (0.4 < 0.45).
    keep, new_scores = soft_fn(segments, scores, 0.3, 0.5, 0.45, "linear")
    assert keep.tolist() == [0]
    # Equal current scores: the lowest index first.
    keep, _ = soft_fn(segments[[2, 2]], scores[[2, 2]], 0.3, 0.5, 0.0, "linear")
    assert keep.tolist() == [0, 1]


# --------------------------------------------------------------------------------------------------
# Public ops against the independent oracle, and compiled kernels against the references
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["continuous", "grid"])
@pytest.mark.parametrize(
    ("nms_fn", "batched_fn"), [(nms_1d, batched_nms_1d), (nms_1d_reference, batched_nms_1d_reference)]
)
def test_nms_matches_naive_oracle(kind: str, nms_fn, batched_fn) -> None:
    # 300 segments: several blocks of the reference's blockwise greedy pass.
    for seed in range(3):
        segments, scores, labels = random_case(300, kind, torch.float64, seed)
        args = (segments.tolist(), scores.tolist())
        for threshold in THRESHOLDS:
            assert nms_fn(segments, scores, threshold).tolist() == naive_nms(*args, [0] * 300, threshold)
            expected = naive_nms(*args, labels.tolist(), threshold)
            assert batched_fn(segments, scores, labels, threshold).tolist() == expected


@pytest.mark.parametrize(("method", "threshold"), [("linear", 0.3), ("gaussian", 0.0)])
@pytest.mark.parametrize("soft_fn", [soft_nms_1d, soft_nms_1d_reference])
def test_soft_nms_matches_naive_oracle(method: str, threshold: float, soft_fn) -> None:
    segments, scores, _ = random_case(60, "continuous", torch.float64, seed=3)
    keep, new_scores = soft_fn(segments, scores, threshold, 0.5, 0.05, method)
    expected_keep, expected_scores = naive_soft_nms(
        segments.tolist(), scores.tolist(), threshold, 0.5, 0.05, method
    )
    assert keep.tolist() == expected_keep
    torch.testing.assert_close(new_scores, torch.tensor(expected_scores, dtype=torch.float64))


@requires_compiled
@pytest.mark.parametrize(("kind", "dtype"), CASES)
def test_compiled_matches_reference(kind: str, dtype: torch.dtype) -> None:
    ops = torch.ops.rc3d_af
    for seed in range(8):
        n = (0, 1, 2, 7, 64, 150, 257, 400)[seed]
        segments, scores, labels = random_case(n, kind, dtype, seed)
        assert torch.equal(
            ops.segment_iou(segments, segments[: n // 2]), segment_iou_reference(segments, segments[: n // 2])
        )
        random_threshold = float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))
        assert_nms_kernels_match_reference(segments, scores, labels, (*THRESHOLDS, random_threshold))


def assert_nms_kernels_match_reference(
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, thresholds: tuple[float, ...]
) -> None:
    """The compiled nms_1d and batched_nms_1d keep exactly what the references keep, in the same order."""
    ops = torch.ops.rc3d_af
    for threshold in thresholds:
        expected = nms_1d_reference(segments, scores, threshold)
        assert torch.equal(ops.nms_1d(segments, scores, threshold), expected)
        assert torch.equal(
            ops.batched_nms_1d(segments, scores, labels, threshold),
            batched_nms_1d_reference(segments, scores, labels, threshold),
        )


@requires_compiled
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_matches_reference_at_extreme_scales(dtype: torch.dtype) -> None:
    # The CPU kernel prunes candidates by start and length class; rounding must never hide a suppressor:
    # large offsets (few significant bits left for the length), lengths over 12 decades, tiny thresholds.
    for seed, (offset, decades) in enumerate([(0.0, 2), (1e6, 12), (-3e4, 4), (1e-3, 20), (1e12, 6)] * 2):
        gen = torch.Generator().manual_seed(seed)
        centre = offset + torch.rand(100, generator=gen, dtype=torch.float64) * 10 ** (seed % 4)
        length = 10 ** ((torch.rand(100, generator=gen, dtype=torch.float64) - 0.5) * decades)
        segments = torch.stack([centre - length / 2, centre + length / 2], 1).to(dtype)
        segments[:, 1] = torch.maximum(segments[:, 1], segments[:, 0])  # rounding may not reverse a segment
        scores = (torch.randint(0, 20, (100,), generator=gen) / 20).to(dtype)
        labels = torch.randint(0, 2, (100,), generator=gen)
        assert_nms_kernels_match_reference(segments, scores, labels, (0.0, 1e-9, 1e-5, 0.3, 0.999999))


@requires_compiled
@pytest.mark.parametrize(("kind", "dtype"), CASES)
@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_compiled_soft_nms_matches_reference(kind: str, dtype: torch.dtype, method: str) -> None:
    segments, scores, _ = random_case(150, kind, dtype, seed=11)
    keep, new_scores = torch.ops.rc3d_af.soft_nms_1d(
        segments, scores, 0.4, 0.7, 0.01, int(method == "gaussian")
    )
    expected_keep, expected_scores = soft_nms_1d_reference(segments, scores, 0.4, 0.7, 0.01, method)
    assert torch.equal(keep, expected_keep)
    if method == "linear":  # only basic IEEE operations: bit-identical
        assert torch.equal(new_scores, expected_scores)
    torch.testing.assert_close(new_scores, expected_scores)


@requires_compiled
def test_compiled_handles_non_contiguous_and_infinite_input() -> None:
    segments, scores, labels = random_case(200, "grid", torch.float32, seed=5)
    strided = torch.stack([segments[:, 0], torch.zeros(200), segments[:, 1]], 1)[:, ::2]
    assert not strided.is_contiguous()
    strided_scores = torch.stack([scores, scores], 1)[:, 0]
    assert torch.equal(nms_1d(strided, strided_scores, 0.3), nms_1d_reference(segments, scores, 0.3))
    assert torch.equal(
        batched_nms_1d(strided, strided_scores, labels, 0.3),
        batched_nms_1d_reference(segments, scores, labels, 0.3),
    )
    assert torch.equal(segment_iou(strided, strided), segment_iou_reference(segments, segments))
    # Infinite endpoints: IoU 0 (or NaN union -> 0) with everything, so never suppressed.
    infinite = tensor([[-math.inf, 1.0], [0.0, math.inf], [0.0, 1.0], [0.5, 1.0], [-math.inf, math.inf]])
    inf_scores = tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    for threshold in THRESHOLDS:
        assert torch.equal(
            nms_1d(infinite, inf_scores, threshold), nms_1d_reference(infinite, inf_scores, threshold)
        )
    assert torch.equal(segment_iou(infinite, infinite), segment_iou_reference(infinite, infinite))


def _use_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nms_module, "use_compiled", lambda *tensors: False)
    monkeypatch.setattr(
        nms_module, "STATUS", _extension.ExtensionStatus(loaded=False, cuda_kernels=False, error="x")
    )


def test_public_ops_fall_back_to_the_references(monkeypatch: pytest.MonkeyPatch) -> None:
    segments, scores, labels = random_case(200, "grid", torch.float32, seed=2)
    expected = (
        nms_1d(segments, scores, 0.4),
        batched_nms_1d(segments, scores, labels, 0.4),
        segment_iou(segments, segments),
    )
    _use_references(monkeypatch)
    assert torch.equal(nms_1d(segments, scores, 0.4), expected[0])
    assert torch.equal(batched_nms_1d(segments, scores, labels, 0.4), expected[1])
    assert torch.equal(segment_iou(segments, segments), expected[2])


@pytest.mark.parametrize("kind", ["continuous", "grid"])
def test_segment_iou_gradients_match_reference_autograd(kind: str) -> None:
    a, _, _ = random_case(30, kind, torch.float64, seed=12)
    b, _, _ = random_case(20, kind, torch.float64, seed=13)
    if (
        kind == "grid"
    ):  # shared endpoints (min/max ties) but no zero-length pair: the reference gives NaN there
        a[:, 1] += 1e-3 * torch.arange(1, 31)
        b[:, 1] += 7e-4 * torch.arange(1, 21)
    weight = torch.rand(30, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = []
    for iou_fn in (segment_iou, segment_iou_reference):
        a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
        (iou_fn(a_, b_) * weight).sum().backward()
        grads.append((a_.grad, b_.grad))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    if kind == "continuous":  # away from kinks: finite differences agree
        assert torch.autograd.gradcheck(segment_iou, (a.requires_grad_(), b.requires_grad_()))


@pytest.mark.parametrize("iou_fn", [segment_iou, segment_iou_reference])
def test_segment_iou_gradient_is_zero_where_the_union_is_empty(iou_fn) -> None:
    segments = tensor([[1.0, 1.0], [0.0, 2.0]], torch.float64).requires_grad_()
    iou_fn(segments[:1], segments[:1]).sum().backward()
    assert segments.grad.tolist() == [[0.0, 0.0], [0.0, 0.0]]


# --------------------------------------------------------------------------------------------------
# Custom-op registration: opcheck and torch.compile
# --------------------------------------------------------------------------------------------------


@requires_compiled
def test_opcheck_every_op() -> None:
    segments, scores, labels = random_case(50, "grid", torch.float32, seed=4)
    ops = torch.ops.rc3d_af
    torch.library.opcheck(ops.segment_iou.default, (segments, segments[:20]))
    differentiable = segments.double().requires_grad_()
    torch.library.opcheck(ops.segment_iou.default, (differentiable, differentiable[:20].detach()))
    torch.library.opcheck(ops.nms_1d.default, (segments, scores, 0.5))
    torch.library.opcheck(ops.batched_nms_1d.default, (segments, scores, labels, 0.5))
    torch.library.opcheck(ops.soft_nms_1d.default, (segments, scores, 0.5, 0.5, 0.01, 1))


@requires_compiled
def test_torch_compile_fullgraph() -> None:
    def detect(segments, scores, labels):
        keep = batched_nms_1d(segments, scores, labels, 0.5)
        best = nms_1d(segments, scores, 0.3)
        soft_keep, soft_scores = soft_nms_1d(segments, scores, 0.3, 0.5, 0.01, "linear")
        return segments[keep], segment_iou(segments[best], segments).sum(1), soft_keep, soft_scores

    torch._dynamo.reset()
    compiled = torch.compile(detect, backend="aot_eager", fullgraph=True)
    segments, scores, labels = random_case(80, "continuous", torch.float32, seed=6)
    for got, expected in zip(
        compiled(segments, scores, labels), detect(segments, scores, labels), strict=True
    ):
        assert torch.equal(got, expected)


# --------------------------------------------------------------------------------------------------
# Bad input: each error names the argument
# --------------------------------------------------------------------------------------------------

GOOD = tensor([[0.0, 1.0], [0.5, 2.0]])
GOOD_SCORES = tensor([0.9, 0.8])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: nms_1d(GOOD[0], GOOD_SCORES, 0.5), ValueError, r"segments: expected shape \[N, 2\]"),
        (
            lambda: nms_1d(torch.zeros(2, 3), GOOD_SCORES, 0.5),
            ValueError,
            r"segments: expected shape \[N, 2\]",
        ),
        (lambda: nms_1d(GOOD, GOOD_SCORES[:1], 0.5), ValueError, r"scores: expected shape \[2\]"),
        (lambda: nms_1d(GOOD.long(), GOOD_SCORES, 0.5), TypeError, "segments: expected dtype"),
        (
            lambda: nms_1d(GOOD.half(), GOOD_SCORES.half(), 0.5),
            TypeError,
            "segments: expected dtype float32, float64",
        ),
        (lambda: nms_1d(GOOD, GOOD_SCORES.double(), 0.5), TypeError, "scores: dtype"),
        (lambda: nms_1d(GOOD, GOOD_SCORES.to("meta"), 0.5), ValueError, "one device"),
        (
            lambda: nms_1d(tensor([[1.0, 0.0]]), GOOD_SCORES[:1], 0.5),
            ValueError,
            "segments: end < start in row 0",
        ),
        (
            lambda: nms_1d(tensor([[0.0, math.nan]]), GOOD_SCORES[:1], 0.5),
            ValueError,
            "segments: contains NaN",
        ),
        (lambda: nms_1d(GOOD, tensor([0.1, math.nan]), 0.5), ValueError, "scores: contains NaN"),
        (lambda: nms_1d(GOOD, GOOD_SCORES, 1.5), ValueError, r"iou_threshold: expected a number in \[0, 1\]"),
        (lambda: nms_1d(GOOD, GOOD_SCORES, -0.1), ValueError, "iou_threshold"),
        (lambda: nms_1d(GOOD, GOOD_SCORES, math.nan), TypeError, "iou_threshold"),
        (lambda: nms_1d(GOOD, GOOD_SCORES, "0.5"), TypeError, "iou_threshold"),
        (lambda: nms_1d([[0.0, 1.0]], GOOD_SCORES, 0.5), TypeError, "segments: expected a torch.Tensor"),
        (
            lambda: batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([0.0, 1.0]), 0.5),
            TypeError,
            "labels: expected an integer",
        ),
        (lambda: batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([True, False]), 0.5), TypeError, "labels"),
        (
            lambda: batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([0]), 0.5),
            ValueError,
            r"labels: expected shape \[2\]",
        ),
        (
            lambda: batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([0, 1], device="meta"), 0.5),
            ValueError,
            "one device",
        ),
        (lambda: segment_iou(GOOD, GOOD.double()), TypeError, "b: dtype"),
        (lambda: segment_iou(GOOD, GOOD.to("meta")), ValueError, "one device"),
        (lambda: segment_iou(GOOD, tensor([[2.0, 1.0]])), ValueError, "b: end < start"),
        (
            lambda: soft_nms_1d(GOOD, GOOD_SCORES, 0.5, 0.0, 0.01),
            ValueError,
            "sigma: expected a positive number",
        ),
        (lambda: soft_nms_1d(GOOD, GOOD_SCORES, 0.5, 0.5, math.nan), TypeError, "min_score"),
        (
            lambda: soft_nms_1d(GOOD, GOOD_SCORES, 0.5, 0.5, 0.01, "hard"),
            ValueError,
            "method: expected one of",
        ),
    ],
)
def test_bad_input_names_the_argument(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


@requires_compiled
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ops: ops.nms_1d(GOOD, tensor([0.1, math.nan]), 0.5), "scores: contains NaN"),
        (
            lambda ops: ops.nms_1d(tensor([[1.0, 0.0]]), GOOD_SCORES[:1], 0.5),
            "segments: a segment has end < start",
        ),
        (lambda ops: ops.nms_1d(tensor([[0.0, math.nan]]), GOOD_SCORES[:1], 0.5), "segments: contains NaN"),
        (lambda ops: ops.nms_1d(GOOD[0], GOOD_SCORES, 0.5), r"segments: expected shape \[N, 2\]"),
        (lambda ops: ops.nms_1d(GOOD, GOOD_SCORES.double(), 0.5), "scores: dtype"),
        (lambda ops: ops.nms_1d(GOOD, GOOD_SCORES, 2.0), "iou_threshold"),
        (
            lambda ops: ops.batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([0.0, 1.0]), 0.5),
            "labels: expected an integer",
        ),
        (lambda ops: ops.segment_iou(GOOD, GOOD.double()), "b: dtype"),
        (lambda ops: ops.segment_iou(GOOD.long(), GOOD.long()), "a: expected dtype float32 or float64"),
        (lambda ops: ops.soft_nms_1d(GOOD, GOOD_SCORES, 0.5, 0.5, 0.0, 2), "method: expected 0"),
        (lambda ops: ops.soft_nms_1d(GOOD, GOOD_SCORES, 0.5, -1.0, 0.0, 1), "sigma"),
    ],
)
def test_kernels_check_their_arguments(call, match: str) -> None:
    # Under torch.compile the Python value checks are skipped; the kernels must catch bad input.
    with pytest.raises(RuntimeError, match=match):
        call(torch.ops.rc3d_af)


# --------------------------------------------------------------------------------------------------
# The in-model path: check_values=False
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=requires_compiled), False])
def test_check_values_false_skips_only_the_python_value_checks(
    monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    if not compiled:
        _use_references(monkeypatch)
    segments, scores, labels = random_case(300, "grid", torch.float32, seed=4)
    unchecked = {"check_values": False}
    assert torch.equal(nms_1d(segments, scores, 0.5, **unchecked), nms_1d(segments, scores, 0.5))
    batched = batched_nms_1d(segments, scores, labels, 0.5)
    assert torch.equal(batched_nms_1d(segments, scores, labels, 0.5, **unchecked), batched)
    assert torch.equal(segment_iou(segments, segments, **unchecked), segment_iou(segments, segments))
    reversed_segments = tensor([[1.0, 0.0], [0.0, 1.0]])
    nan_scores = tensor([0.1, math.nan])
    with pytest.raises(ValueError, match="segments: end < start in row 0"):
        nms_1d(reversed_segments, GOOD_SCORES, 0.5)
    if compiled:  # the kernels check the values themselves
        with pytest.raises(RuntimeError, match="segments: a segment has end < start"):
            nms_1d(reversed_segments, GOOD_SCORES, 0.5, **unchecked)
        with pytest.raises(RuntimeError, match="scores: contains NaN"):
            batched_nms_1d(GOOD, nan_scores, torch.tensor([0, 1]), 0.5, **unchecked)
    else:  # nothing reads the values: the reference suppresses as the IoU says
        assert nms_1d(reversed_segments, GOOD_SCORES, 0.5, **unchecked).tolist() == [0, 1]
    assert segment_iou(reversed_segments, GOOD, **unchecked).shape == (2, 2)  # no value check in the kernel
    with pytest.raises(ValueError, match=r"scores: expected shape \[2\]"):  # structural checks remain
        nms_1d(GOOD, GOOD_SCORES[:1], 0.5, **unchecked)
    with pytest.raises(TypeError, match="scores: dtype"):
        batched_nms_1d(GOOD, GOOD_SCORES.double(), torch.tensor([0, 1]), 0.5, **unchecked)
    with pytest.raises(TypeError, match="labels: expected an integer"):
        batched_nms_1d(GOOD, GOOD_SCORES, torch.tensor([0.0, 1.0]), 0.5, **unchecked)
    with pytest.raises(TypeError, match="b: dtype"):
        segment_iou(GOOD, GOOD.double(), **unchecked)
    with pytest.raises(TypeError, match="check_values: expected a bool"):
        nms_1d(GOOD, GOOD_SCORES, 0.5, check_values="no")


# --------------------------------------------------------------------------------------------------
# CUDA (skipped, visibly, without a GPU)
# --------------------------------------------------------------------------------------------------


def _synchronisations(call) -> int:
    """How many synchronising CUDA calls ``call()`` makes (torch.cuda's sync debug mode)."""
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


@requires_cuda
@requires_compiled
def test_cuda_in_model_calls_synchronise_once_per_nms() -> None:
    segments, scores, labels = (t.cuda() for t in random_case(700, "grid", torch.float32, seed=5))
    assert _synchronisations(lambda: segment_iou(segments, segments, check_values=False)) == 0
    # One copy to the host, of the suppression mask with the value checks' bits.
    assert _synchronisations(lambda: nms_1d(segments, scores, 0.5, check_values=False)) == 1
    assert _synchronisations(lambda: batched_nms_1d(segments, scores, labels, 0.5, check_values=False)) == 1
    assert _synchronisations(lambda: nms_1d(segments, scores, 0.5)) > 1  # the Python value checks
    with pytest.raises(RuntimeError, match="scores: contains NaN"):
        nms_1d(segments, torch.full_like(scores, math.nan), 0.5, check_values=False)


@requires_cuda
@pytest.mark.parametrize(("kind", "dtype"), CASES)
def test_cuda_matches_cpu(kind: str, dtype: torch.dtype) -> None:
    for seed, n in enumerate((0, 1, 65, 700, 3000)):
        segments, scores, labels = random_case(n, kind, dtype, seed)
        cuda = segments.cuda(), scores.cuda(), labels.cuda()
        iou = segment_iou(cuda[0], cuda[0][: n // 3])
        assert iou.is_cuda
        assert torch.equal(iou.cpu(), segment_iou(segments, segments[: n // 3]))
        for threshold in THRESHOLDS:
            keep = nms_1d(cuda[0], cuda[1], threshold)
            assert keep.is_cuda and keep.dtype == torch.int64
            assert torch.equal(keep.cpu(), nms_1d(segments, scores, threshold))
            batched = batched_nms_1d(*cuda, threshold)
            assert torch.equal(batched.cpu(), batched_nms_1d(segments, scores, labels, threshold))
        keep, new_scores = soft_nms_1d(cuda[0][:200], cuda[1][:200], 0.3, 0.5, 0.01, "gaussian")
        assert keep.is_cuda and new_scores.is_cuda
        expected = soft_nms_1d(segments[:200], scores[:200], 0.3, 0.5, 0.01, "gaussian")
        assert torch.equal(keep.cpu(), expected[0]) and torch.equal(new_scores.cpu(), expected[1])


@requires_cuda
@requires_compiled
def test_cuda_kernels_registered_and_opcheck() -> None:
    assert _extension.STATUS.cuda_kernels
    segments, scores, labels = random_case(100, "grid", torch.float32, seed=9)
    segments, scores, labels = segments.cuda(), scores.cuda(), labels.cuda()
    ops = torch.ops.rc3d_af
    torch.library.opcheck(ops.segment_iou.default, (segments, segments))
    torch.library.opcheck(ops.nms_1d.default, (segments, scores, 0.5))
    torch.library.opcheck(ops.batched_nms_1d.default, (segments, scores, labels, 0.5))

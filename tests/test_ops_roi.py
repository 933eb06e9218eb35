"""roi_align_1d / roi_pool_1d: hand-computed cases, compiled kernels vs the pure-PyTorch references,
torchvision parity (when importable), gradients, custom-op registration, torch.compile, autocast,
bad input, the in-model path without value checks, and CUDA parity/determinism/autocast/no host
synchronisation (skipped without a GPU)."""

from __future__ import annotations

import itertools
import os

import pytest
import torch

from rc3d_af.ops import EXTENSION_STATUS, roi_align_1d, roi_pool_1d
from rc3d_af.ops import roi as roi_module
from rc3d_af.ops.roi import roi_align_1d_reference, roi_pool_1d_reference

REQUIRE_COMPILED = os.environ.get("RC3D_AF_REQUIRE_COMPILED") == "1"  # set by `make test`
needs_compiled = pytest.mark.skipif(
    not (REQUIRE_COMPILED or EXTENSION_STATUS.loaded),
    reason="compiled extension not built (make test requires it)",
)
needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and EXTENSION_STATUS.cuda_kernels),
    reason="needs a GPU and the CUDA kernels",
)
try:
    import torchvision
except ImportError:  # torchvision is not a dependency; its parity tests run where it is installed
    torchvision = None

ALIGN_SETTINGS = list(itertools.product((-1, 0, 1, 2, 3), (False, True)))  # (sampling_ratio, aligned)


def row(*values: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A [1, 1, T] input."""
    return torch.tensor(values, dtype=dtype).view(1, 1, -1)


def rois_of(*rows: tuple[float, float, float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype).view(-1, 3)


def random_case(
    seed: int,
    dtype: torch.dtype = torch.float64,
    batch: int = 3,
    channels: int = 4,
    length: int = 23,
    rois: int = 30,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input and RoIs incl. zero-length, sub-unit, partly and wholly outside ones."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, length, generator=g, dtype=dtype)
    start = torch.rand(rois, generator=g, dtype=dtype) * 1.6 * length - 0.3 * length
    size = torch.rand(rois, generator=g, dtype=dtype) ** 2 * length
    size[::5] = 0
    size[1::7] *= 0.03
    b = torch.randint(0, batch, (rois,), generator=g).to(dtype)
    return x, torch.stack([b, start, start + size], 1)


# ---------------------------------------------------------------------------------------------
# Hand-computed cases (public functions: compiled kernels when built, references otherwise)


def test_align_linear_input_bins_are_sample_means() -> None:
    x = torch.arange(10, dtype=torch.float64).view(1, 1, -1)  # value = position: interpolation is exact
    out = roi_align_1d(x, rois_of((0, 2, 6)), 2, sampling_ratio=2)
    assert out.flatten().tolist() == [3.0, 5.0]  # samples 2.5, 3.5 | 4.5, 5.5
    out = roi_align_1d(x, rois_of((0, 2, 6)), 2, sampling_ratio=2, aligned=True)
    assert out.flatten().tolist() == [2.5, 4.5]  # shifted by -0.5: samples 2, 3 | 4, 5
    out = roi_align_1d(x, rois_of((0, 4, 12)), 2, spatial_scale=0.5, sampling_ratio=2)
    assert out.flatten().tolist() == [3.0, 5.0]


def test_align_adaptive_grid_counts_samples() -> None:
    x = (torch.arange(6, dtype=torch.float64) ** 2).view(1, 1, -1)  # piecewise linear t^2
    out = roi_align_1d(x, rois_of((0, 0, 5)), 2).flatten()  # length 5, 2 bins: ceil(2.5) = 3 samples
    # samples 5/12, 15/12, 25/12 -> 5/12, 1 + 3 * 3/12, 4 + 5/12
    assert out[0].item() == pytest.approx((5 / 12 + 1.75 + 4 + 5 / 12) / 3, abs=1e-12)
    two = roi_align_1d(x, rois_of((0, 0, 5)), 2, sampling_ratio=2).flatten()  # samples 0.625, 1.875
    assert two[0].item() == pytest.approx((0.625 + 1 + 3 * 0.875) / 2, abs=1e-12)


def test_align_borders_and_degenerate_rois() -> None:
    x = row(10, 20, 30)
    cases = [
        ((0, -3, -1.5), False, 2, 0.0),  # samples -2.625, -1.875: more than 1 outside -> nothing
        ((0, -1.5, 0.5), False, 2, 10.0),  # samples -1, 0 both clamp to position 0
        ((0, 2, 4), False, 2, 15.0),  # 2.5 reads the last position, 3.5 > T reads nothing: (30 + 0) / 2
        ((0, 2, 2), False, -1, 30.0),  # non-aligned length is at least 1: one sample at 2.5 -> last
        ((0, 0, 0), False, -1, 15.0),  # one sample at 0.5
        ((0, 1.5, 1.5), True, 2, 20.0),  # aligned zero length, fixed grid: both samples at 1.0
        ((0, 1.5, 1.5), True, -1, 0.0),  # aligned zero length, adaptive: no samples at all
    ]
    for roi, aligned, sampling, expected in cases:
        out = roi_align_1d(x, rois_of(roi), 1, sampling_ratio=sampling, aligned=aligned)
        assert out.item() == pytest.approx(expected, abs=1e-12), (roi, aligned, sampling)


def test_align_gradient_spreads_interpolation_weights() -> None:
    x = torch.zeros(1, 1, 4, dtype=torch.float64, requires_grad=True)
    roi_align_1d(x, rois_of((0, 0.5, 1.5)), 1, sampling_ratio=2).sum().backward()
    # samples 0.75 and 1.25, each weighted 1/2: 0.75 -> (0.25, 0.75) on (0, 1); 1.25 -> (0.75, 0.25) on (1, 2)
    assert x.grad.flatten().tolist() == pytest.approx([0.125, 0.75, 0.125, 0.0], abs=1e-12)


def test_pool_rounds_half_away_from_zero_and_floor_ceil_bins() -> None:
    x = row(1, 5, 2, 8, 3, 0)
    out, arg = roi_pool_1d_reference(x, rois_of((0, 1, 4), (0, 0.5, 2.5)), 2)
    # (1, 4): 4 positions, bins [1, 3) [3, 5). (0.5, 2.5) rounds to (1, 3) (torch.round would give
    # (0, 2)): 3 positions, bins [1, 3) and [2, 4) overlap.
    assert out.flatten().tolist() == [5, 8, 5, 8]
    assert arg.flatten().tolist() == [1, 3, 1, 3]
    assert roi_pool_1d(x, rois_of((0, 1, 4), (0, 0.5, 2.5)), 2).flatten().tolist() == [5, 8, 5, 8]


def test_pool_outside_bins_are_empty_and_get_no_gradient() -> None:
    x = row(1, 5, 2, 8, 3, 0).requires_grad_(True)
    rois = rois_of((0, 7, 9), (0, -2, 1), (0, 1, 4), (0, 0.5, 2.5))
    out = roi_pool_1d(x, rois, 2)
    assert out.flatten().tolist() == [0, 0, 0, 5, 5, 8, 5, 8]
    assert roi_pool_1d_reference(x, rois, 2)[1].flatten().tolist() == [-1, -1, -1, 1, 1, 3, 1, 3]
    out.sum().backward()
    assert x.grad.flatten().tolist() == [0, 3, 0, 2, 0, 0]
    # A batch element whose only RoI lies wholly outside the input.
    two = torch.cat([x.detach(), x.detach()])  # [2, 1, 6]
    assert roi_pool_1d(two, rois_of((1, 7, 9), (0, 1, 4)), 2).flatten().tolist() == [0, 0, 5, 8]


def test_pool_ties_take_the_first_and_nan_propagates() -> None:
    out, arg = roi_pool_1d_reference(row(3, 3, 1), rois_of((0, 0, 2)), 1)
    assert (out.item(), arg.item()) == (3.0, 0)
    x = row(1, float("nan"), 4)
    assert torch.isnan(roi_pool_1d(x, rois_of((0, 0, 2)), 1)).all()
    assert roi_pool_1d_reference(x, rois_of((0, 0, 2)), 1)[1].item() == 1


def test_empty_inputs_give_empty_outputs_and_zero_gradients() -> None:
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    for op in (roi_align_1d, roi_pool_1d):
        out = op(x, torch.zeros(0, 3, dtype=torch.float64), 4)
        assert out.shape == (0, 3, 4)
        out.sum().backward()
        assert x.grad is not None and not x.grad.any()
        assert op(torch.zeros(2, 0, 8, dtype=torch.float64), rois_of((1, 0, 3)), 4).shape == (1, 0, 4)


def test_non_contiguous_input_and_rois() -> None:
    x, rois = random_case(1)
    x_t = x.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channel-last strides
    rois_t = rois.t().contiguous().t()
    assert not x_t.is_contiguous() and not rois_t.is_contiguous()
    torch.testing.assert_close(roi_align_1d(x_t, rois_t, 5), roi_align_1d(x, rois, 5), rtol=0, atol=0)
    torch.testing.assert_close(roi_pool_1d(x_t, rois_t, 5), roi_pool_1d(x, rois, 5), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Compiled kernels vs references


def _align_both(x, rois, output_size, scale, sampling, aligned):
    """(output, input grad) of the compiled op and of the reference for one random upstream grad."""
    results = []
    for fn in (lambda a: torch.ops.rc3d_af.roi_align_1d(a, rois, scale, output_size, sampling, aligned),
               lambda a: roi_align_1d_reference(a, rois, output_size, scale, sampling, aligned)):
        a = x.clone().requires_grad_(True)
        out = fn(a)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=x.dtype).view_as(out))
        results.append((out.detach(), a.grad))
    return results


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25, 1 / 3])
def test_compiled_roi_align_matches_reference(dtype: torch.dtype, scale: float) -> None:
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for seed, (sampling, aligned) in enumerate(ALIGN_SETTINGS):
        x, rois = random_case(seed, dtype, length=1 + seed * 3)
        rois[:, 1:] /= scale
        (out, grad), (ref_out, ref_grad) = _align_both(x, rois, 1 + seed % 7, scale, sampling, aligned)
        torch.testing.assert_close(out, ref_out, **tol)
        torch.testing.assert_close(grad, ref_grad, **tol)


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 3])
def test_compiled_roi_pool_matches_reference(dtype: torch.dtype, scale: float) -> None:
    for seed in range(6):
        x, rois = random_case(seed, dtype, length=1 + seed * 5)
        rois[:, 1:] /= scale
        output_size = 1 + seed % 5
        out, arg = torch.ops.rc3d_af.roi_pool_1d(x, rois, scale, output_size)
        ref, ref_arg = roi_pool_1d_reference(x, rois, output_size, scale)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        assert arg.dtype == ref_arg.dtype == torch.int32 and torch.equal(arg, ref_arg)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        g = torch.randn_like(out)
        roi_pool_1d(a, rois, output_size, scale).backward(g)
        roi_pool_1d_reference(b, rois, output_size, scale)[0].backward(g)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12 if dtype == torch.float64 else 1e-5)


@needs_compiled
def test_compiled_roi_pool_matches_reference_across_channel_blocks_and_with_nan() -> None:
    # At T = 200 the CPU kernels take 40 channels per task (the backward 81): 130 channels make
    # several tasks per batch element and a partial last one. NaNs at random places: the first NaN
    # of a bin is its maximum.
    x, rois = random_case(8, torch.float32, batch=3, channels=130, length=200, rois=40)
    x[torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) < 0.02] = float("nan")
    out, arg = torch.ops.rc3d_af.roi_pool_1d(x, rois, 1.0, 7)
    ref, ref_arg = roi_pool_1d_reference(x, rois, 7)
    assert out.isnan().any()
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(arg, ref_arg)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(2))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    roi_pool_1d(a, rois, 7).backward(g)
    roi_pool_1d_reference(b, rois, 7)[0].backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-6)


def test_pool_argmax_never_decreases_along_the_bins() -> None:
    # Consecutive bins share at most one position; the CUDA backward relies on this order.
    for seed in range(4):
        x, rois = random_case(seed, torch.float32, channels=3, length=5 + seed * 9, rois=50)
        for output_size in (1, 3, 7, 20):
            argmax = roi_pool_1d_reference(x, rois, output_size, 0.5)[1]
            for bins in argmax.reshape(-1, output_size).tolist():
                filled = [position for position in bins if position >= 0]
                assert filled == sorted(filled), bins


@needs_compiled
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_half_precision_computes_in_float(dtype: torch.dtype) -> None:
    x, rois = random_case(3, dtype)
    out = roi_align_1d(x, rois, 4, sampling_ratio=2)
    assert out.dtype == dtype
    torch.testing.assert_close(out, roi_align_1d_reference(x, rois, 4, 1.0, 2), rtol=0, atol=1e-2)
    torch.testing.assert_close(roi_pool_1d(x, rois, 4), roi_pool_1d_reference(x, rois, 4)[0], rtol=0, atol=0)


@needs_compiled
def test_cpu_backward_does_not_depend_on_thread_count() -> None:
    x, rois = random_case(6, torch.float32, batch=2, channels=130, length=200, rois=200)  # several tasks
    previous = torch.get_num_threads()
    grads = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for op in (lambda a: roi_align_1d(a, rois, 8, 1.0, 2), lambda a: roi_pool_1d(a, rois, 8)):
                a = x.clone().requires_grad_(True)
                op(a).backward(torch.ones(200, 130, 8))
                grads.append(a.grad)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(grads[0], grads[2]) and torch.equal(grads[1], grads[3])


# ---------------------------------------------------------------------------------------------
# torchvision parity (the definition of the semantics)


def _as_boxes(rois: torch.Tensor, scale: float) -> torch.Tensor:
    zero = torch.zeros_like(rois[:, 0])
    return torch.stack([rois[:, 0], rois[:, 1], zero, rois[:, 2], torch.full_like(zero, 1 / scale)], 1)


@pytest.mark.skipif(torchvision is None, reason="torchvision is not importable here")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.25])
def test_matches_torchvision_on_height_one_images(dtype: torch.dtype, scale: float) -> None:
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 2e-5}
    for seed, (sampling, aligned) in enumerate(ALIGN_SETTINGS):
        x, rois = random_case(seed, dtype, length=2 + seed * 4)
        rois[:, 1:] /= scale
        output_size = 1 + seed % 6
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        out = roi_align_1d(a, rois, output_size, scale, sampling, aligned)
        boxes = _as_boxes(rois, scale)
        tv = torchvision.ops.roi_align(b[:, :, None], boxes, (1, output_size), scale, sampling, aligned)
        torch.testing.assert_close(out, tv[:, :, 0], **tol)
        g = torch.randn_like(out)
        out.backward(g)
        tv[:, :, 0].backward(g)
        torch.testing.assert_close(a.grad, b.grad, **tol)
        a.grad = b.grad = None
        out = roi_pool_1d(a, rois, output_size, scale)
        tv = torchvision.ops.roi_pool(b[:, :, None], boxes, (1, output_size), scale)[:, :, 0]
        torch.testing.assert_close(out, tv, rtol=0, atol=0)
        out.backward(g)
        tv.backward(g)
        torch.testing.assert_close(a.grad, b.grad, **tol)


# ---------------------------------------------------------------------------------------------
# Gradients, registration, torch.compile


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_compiled), False])
def test_gradcheck(compiled: bool) -> None:
    x, rois = random_case(5, torch.float64, batch=2, channels=2, length=9, rois=7)
    x.requires_grad_(True)
    if compiled:
        align = lambda a: roi_align_1d(a, rois, 3, 0.5, -1, True)  # noqa: E731
        pool = lambda a: roi_pool_1d(a, rois, 3, 0.5)  # noqa: E731
        assert torch.autograd.gradgradcheck(align, (x,))
        assert torch.autograd.gradgradcheck(pool, (x,))
    else:
        align = lambda a: roi_align_1d_reference(a, rois, 3, 0.5, -1, True)  # noqa: E731
        pool = lambda a: roi_pool_1d_reference(a, rois, 3, 0.5)[0]  # noqa: E731
    assert torch.autograd.gradcheck(align, (x,))
    assert torch.autograd.gradcheck(pool, (x,))
    x2 = x.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: roi_align_1d(a, rois, 4, 1.0, 2, False), (x2,))


@needs_compiled
def test_opcheck_every_op() -> None:
    ops = torch.ops.rc3d_af
    x, rois = random_case(2, torch.float64, batch=2, channels=3, length=11, rois=6)
    x.requires_grad_(True)
    grad = torch.randn(6, 3, 4, dtype=torch.float64)
    _, argmax = ops.roi_pool_1d(x, rois, 0.5, 4)
    cases = [
        (ops.roi_align_1d.default, (x, rois, 0.5, 4, -1, False)),
        (ops.roi_align_1d.default, (x, rois, 1.0, 4, 2, True)),
        (ops._roi_align_1d_backward.default, (grad.requires_grad_(True), rois, 0.5, 4, 2, 3, 11, 2, False)),
        (ops.roi_pool_1d.default, (x, rois, 0.5, 4)),
        (ops._roi_pool_1d_backward.default, (grad, rois, argmax, 2, 3, 11)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph_forward_and_backward() -> None:
    x, rois = random_case(4, torch.float32, batch=2, channels=3, length=16, rois=5)

    def head(features: torch.Tensor) -> torch.Tensor:
        return roi_align_1d(features, rois, 4, 0.5, 2, True).sum() + roi_pool_1d(features, rois, 4, 0.5).sum()

    # Without the kernels the reference's data-dependent sample grid needs a graph break.
    compiled = torch.compile(head, backend="aot_eager", fullgraph=EXTENSION_STATUS.loaded)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    compiled(a).backward()
    head(b).backward()
    torch.testing.assert_close(a.grad, b.grad)


# ---------------------------------------------------------------------------------------------
# Autocast


def _op(pool: bool):
    """roi_pool_1d or roi_align_1d at fixed settings: fn(input, rois)."""
    if pool:
        return lambda a, rois: roi_pool_1d(a, rois, 4, 0.5)
    return lambda a, rois: roi_align_1d(a, rois, 4, 0.5, 2)


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_compiled), False])
@pytest.mark.parametrize("pool", [False, True])
def test_cpu_autocast_computes_in_float32_and_returns_the_input_dtype(
    monkeypatch: pytest.MonkeyPatch, compiled: bool, pool: bool
) -> None:
    if not compiled:
        monkeypatch.setattr(roi_module, "use_compiled", lambda *tensors: False)
    op = _op(pool)
    x, rois = random_case(3, torch.float32, channels=5, rois=20)
    features = x.bfloat16()  # with float32 rois: a TypeError outside autocast
    a = features.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = op(a, rois)
    b = features.float().requires_grad_(True)  # the same values, in float32
    expected = op(b, rois)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected.bfloat16())
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).bfloat16()
    out.backward(g)
    expected.backward(g.float())
    assert a.grad.dtype == torch.bfloat16
    assert torch.equal(a.grad, b.grad.bfloat16())


@needs_compiled
def test_autocast_kernels_are_registered_for_the_ops_themselves() -> None:
    ops = torch.ops.rc3d_af
    x, rois = random_case(2, torch.float32, channels=3)
    features = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        aligned = ops.roi_align_1d(features, rois, 1.0, 4, 2, False)
        pooled, argmax = ops.roi_pool_1d(features, rois, 1.0, 4)
    assert aligned.dtype == pooled.dtype == torch.bfloat16 and argmax.dtype == torch.int32
    assert torch.equal(aligned, ops.roi_align_1d(features.float(), rois, 1.0, 4, 2, False).bfloat16())
    assert torch.equal(pooled, ops.roi_pool_1d(features.float(), rois, 1.0, 4)[0].bfloat16())
    with pytest.raises(RuntimeError, match="rois: dtype"):  # no autocast: the kernels refuse mixed dtypes
        ops.roi_pool_1d(features, rois, 1.0, 4)


@pytest.mark.parametrize("op", [roi_align_1d, roi_pool_1d])
def test_mixed_dtypes_outside_autocast_name_the_argument(op) -> None:
    x, rois = random_case(2, torch.float32)
    message = r"^rois: dtype torch.float32 differs from input dtype torch.float16$"
    with pytest.raises(TypeError, match=message):
        op(x.half(), rois, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError, match="under autocast"):
        op(x.bfloat16(), rois.double(), 4)  # float64 is not cast: float64 rois, float32 features


# ---------------------------------------------------------------------------------------------
# The in-model path: check_values=False


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_compiled), False])
@pytest.mark.parametrize("op", [roi_align_1d, roi_pool_1d])
def test_check_values_false_skips_only_the_value_checks(
    monkeypatch: pytest.MonkeyPatch, compiled: bool, op
) -> None:
    if not compiled:
        monkeypatch.setattr(roi_module, "use_compiled", lambda *tensors: False)
    x, rois = random_case(5, torch.float32)
    assert torch.equal(op(x, rois, 3, check_values=False), op(x, rois, 3))
    reversed_roi = torch.tensor([[0.0, 4.0, 1.0]])
    with pytest.raises(ValueError, match="rois: end < start"):
        op(x, reversed_roi, 3)
    if compiled:  # the CPU kernels check the values themselves
        with pytest.raises(RuntimeError, match="end >= start"):
            op(x, reversed_roi, 3, check_values=False)
    else:  # nothing reads the values: the reference pools the reversed RoI as it is
        assert op(x, reversed_roi, 3, check_values=False).shape == (1, 4, 3)
    with pytest.raises(ValueError, match="rois: expected shape"):  # structural checks remain
        op(x, rois[:, :2], 3, check_values=False)
    with pytest.raises(TypeError, match="rois: dtype"):
        op(x, rois.double(), 3, check_values=False)
    with pytest.raises(TypeError, match="check_values: expected a bool"):
        op(x, rois, 3, check_values=1)


# ---------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("op", [roi_align_1d, roi_pool_1d])
def test_bad_input_names_the_argument(op) -> None:
    x = torch.randn(2, 3, 8)
    good = torch.tensor([[0.0, 1.0, 4.0]])
    cases = [
        ((x[0], good, 2), ValueError, "input: expected shape"),
        ((x.long(), good.long(), 2), TypeError, "input: expected dtype"),
        ((x, good[:, :2], 2), ValueError, "rois: expected shape"),
        ((x, good.double(), 2), TypeError, "rois: dtype"),
        ((x, torch.tensor([[2.0, 1.0, 4.0]]), 2), ValueError, "batch index 2.0"),
        ((x, torch.tensor([[-1.0, 1.0, 4.0]]), 2), ValueError, "batch index -1.0"),
        ((x, torch.tensor([[0.5, 1.0, 4.0]]), 2), ValueError, "batch index 0.5"),
        ((x, torch.tensor([[0.0, 4.0, 1.0]]), 2), ValueError, "rois: end < start"),
        ((x, torch.tensor([[0.0, float("nan"), 1.0]]), 2), ValueError, "rois: contains NaN"),
        ((x, torch.tensor([[0.0, 1.0, float("inf")]]), 2), ValueError, "not finite"),
        ((x, good, 0), ValueError, "output_size"),
        ((x, good, 2.0), ValueError, "output_size"),
        ((x, good, 2, 0.0), ValueError, "spatial_scale"),
        ((x[:, :, :0], good, 2), ValueError, "T > 0"),
        (("x", good, 2), TypeError, "input: expected a torch.Tensor"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
            op(*args)
    if op is roi_align_1d:
        with pytest.raises(TypeError, match="sampling_ratio"):
            op(x, good, 2, 1.0, 1.5)
        with pytest.raises(TypeError, match="aligned"):
            op(x, good, 2, 1.0, 2, 1)


@needs_compiled
def test_kernels_check_values_themselves() -> None:
    # torch.compile skips the Python value checks; the kernels must still refuse bad RoIs.
    x = torch.randn(2, 3, 8)
    with pytest.raises(RuntimeError, match="batch index 5"):
        torch.ops.rc3d_af.roi_align_1d(x, torch.tensor([[5.0, 1.0, 4.0]]), 1.0, 2, -1, False)
    with pytest.raises(RuntimeError, match="end >= start"):
        torch.ops.rc3d_af.roi_pool_1d(x, torch.tensor([[0.0, 4.0, float("nan")]]), 1.0, 2)
    grad, roi = torch.ones(1, 3, 2), torch.tensor([[0.0, 1.0, 4.0]])
    backward = torch.ops.rc3d_af._roi_pool_1d_backward
    with pytest.raises(RuntimeError, match="argmax: position 8 outside"):
        backward(grad, roi, torch.full((1, 3, 2), 8, dtype=torch.int32), 2, 3, 8)
    with pytest.raises(RuntimeError, match="argmax: expected int32"):
        backward(grad, roi, torch.zeros(1, 3, 2, dtype=torch.long), 2, 3, 8)


# ---------------------------------------------------------------------------------------------
# CUDA


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype: torch.dtype) -> None:
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}[dtype]
    for seed, (sampling, aligned) in enumerate(ALIGN_SETTINGS):
        x, rois = random_case(seed, dtype, batch=4, channels=5, length=3 + seed * 7, rois=40)
        output_size = 1 + seed % 6
        g = torch.randn(40, 5, output_size, dtype=dtype)
        for op, args in ((roi_align_1d, (0.5, sampling, aligned)), (roi_pool_1d, (0.5,))):
            a, b = x.clone().requires_grad_(True), x.cuda().requires_grad_(True)
            cpu, gpu = op(a, rois, output_size, *args), op(b, rois.cuda(), output_size, *args)
            torch.testing.assert_close(gpu.cpu(), cpu, rtol=tol, atol=tol)
            cpu.backward(g)
            gpu.backward(g.cuda())
            torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=tol, atol=tol)


@needs_cuda
def test_cuda_autocast_pools_float16_features_with_float32_rois() -> None:
    x, rois = random_case(4, torch.float32, batch=2, channels=8, length=30, rois=25)
    features, rois = x.cuda().half(), rois.cuda()
    for pool in (False, True):
        op = _op(pool)
        a = features.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.float16):
            out = op(a, rois)
        b = features.float().requires_grad_(True)
        expected = op(b, rois)
        assert out.dtype == torch.float16 and torch.equal(out, expected.half())
        g = torch.randn(out.shape, device="cuda").half()
        out.backward(g)
        expected.backward(g.float())
        assert a.grad.dtype == torch.float16 and torch.equal(a.grad, b.grad.half())


@needs_cuda
def test_cuda_check_values_false_never_synchronises() -> None:
    x, rois = random_case(9, torch.float32, batch=3, channels=6, length=40, rois=30)
    x, rois = x.cuda().requires_grad_(True), rois.cuda()
    grad = torch.randn(30, 6, 5, device="cuda")
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        roi_align_1d(x, rois, 5, 1.0, 2, check_values=False).backward(grad)
        roi_pool_1d(x, rois, 5, check_values=False).backward(grad)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert x.grad is not None


@needs_cuda
def test_cuda_backward_is_deterministic() -> None:
    x, rois = random_case(7, torch.float32, batch=2, channels=64, length=64, rois=300)
    x, rois = x.cuda().requires_grad_(True), rois.cuda()
    for op in (lambda a: roi_align_1d(a, rois, 8, 1.0, 2), lambda a: roi_pool_1d(a, rois, 8)):
        grads = []
        for _ in range(2):
            x.grad = None
            op(x).backward(torch.ones(300, 64, 8, device="cuda"))
            grads.append(x.grad.clone())
        assert torch.equal(grads[0], grads[1])

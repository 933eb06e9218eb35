"""1D RoIAlign and RoI max pooling over ``[B, C, T]`` feature sequences.

Both ops read RoIs ``[K, 3]`` of (batch index, start, end) in input units (feature indices) before
``spatial_scale`` and return ``[K, C, output_size]``.

* :func:`roi_align_1d` is exactly ``torchvision.ops.roi_align`` applied to the input viewed as
  height-1 images (``input[:, :, None, :]``, boxes ``(b, start, 0, end, 1 / spatial_scale)``,
  output size ``(1, output_size)``), ``aligned`` and adaptive sampling included. In that embedding
  the height direction has no effect (every y sample falls in [-0.5, 1) and reads row 0 with weight
  1), so a bin is the mean of its linearly interpolated x samples.
* :func:`roi_pool_1d` is ``torchvision.ops.roi_pool`` on the same images (the R-C3D "RoI temporal
  pooling"): the RoI is rounded to integer positions (half away from zero) and covers
  ``end - start + 1`` of them, bin ``p`` covers ``[floor(p * w / P), ceil((p + 1) * w / P))``
  positions after the start, clipped to the input; empty bins give 0. Unlike torchvision, a NaN
  in a bin is propagated (the first NaN is the maximum) instead of silently skipped.

The compiled kernels (CPU, CUDA) are used when built; otherwise the pure-PyTorch references below,
which have the same semantics and autograd, and serve as test oracles. float16/bfloat16 inputs are
computed (positions, weights, sums) in float32.

Autocast (torchvision's rule for its RoI ops, registered for the AutocastCPU and AutocastCUDA
dispatch keys, and followed by the fallback): inside ``torch.autocast`` for the input's device,
``input`` and ``rois`` are cast to float32 (float64 stays), the op runs there, and the output is
returned in the dtype of ``input``. So float16 features from autocast layers pool with float32
proposals; outside autocast, ``rois`` must have the dtype of ``input``.

``check_values=False`` skips the value checks of ``rois`` (finite, end >= start, batch indices in
range), which read the data: a host synchronisation on CUDA, which in-model callers avoid. The CPU
kernels check the values anyway; the CUDA kernels assert the batch index.
"""

from __future__ import annotations

import math

import torch

from rc3d_af.ops._checks import (
    check_bool,
    check_floating,
    check_positive_int,
    check_same_device,
    check_segments,
    check_tensor,
)
from rc3d_af.ops._extension import STATUS, use_compiled

__all__ = ["roi_align_1d", "roi_align_1d_reference", "roi_pool_1d", "roi_pool_1d_reference"]


def roi_align_1d(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    check_values: bool = True,
) -> torch.Tensor:
    """RoIAlign along time: ``input [B, C, T]``, ``rois [K, 3]`` -> ``[K, C, output_size]``.

    Args:
        input: features, floating dtype.
        rois: (batch index, start, end) rows in input units before scaling, dtype of ``input``
            (any floating dtype under autocast, see the module docstring). RoIs partly or wholly
            outside ``[0, T]`` are valid (outside samples read nothing).
        output_size: bins per RoI.
        spatial_scale: multiplies the RoI bounds to get input positions.
        sampling_ratio: samples per bin; ``<= 0`` means ``ceil(roi_length / output_size)`` per RoI.
        aligned: shift the RoI by -0.5 (pixel-centre model) and do not clamp its length to >= 1.
        check_values: check the values of ``rois`` first (see the module docstring).

    Differentiable with respect to ``input``.
    """
    _check_roi_args(input, rois, output_size, spatial_scale, check_values)
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, int):
        raise TypeError(f"sampling_ratio: expected an int (<= 0 for adaptive), got {sampling_ratio!r}")
    check_bool(aligned, "aligned")
    if use_compiled(input):
        return torch.ops.rc3d_af.roi_align_1d(
            input, rois, float(spatial_scale), output_size, sampling_ratio, aligned
        )
    x, r = _autocast_inputs(input, rois)
    return roi_align_1d_reference(x, r, output_size, spatial_scale, sampling_ratio, aligned).to(input.dtype)


def roi_pool_1d(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float = 1.0,
    *,
    check_values: bool = True,
) -> torch.Tensor:
    """RoI max pooling along time: ``input [B, C, T]``, ``rois [K, 3]`` -> ``[K, C, output_size]``.

    Same arguments as :func:`roi_align_1d`. The gradient of each output flows to the position of
    its maximum (the first one on ties).
    """
    _check_roi_args(input, rois, output_size, spatial_scale, check_values)
    if use_compiled(input):
        return torch.ops.rc3d_af.roi_pool_1d(input, rois, float(spatial_scale), output_size)[0]
    x, r = _autocast_inputs(input, rois)
    return roi_pool_1d_reference(x, r, output_size, spatial_scale)[0].to(input.dtype)


# ---------------------------------------------------------------------------------------------
# Autocast


def _autocasting(tensor: torch.Tensor) -> bool:
    """Whether ``torch.autocast`` is on for the device of ``tensor``."""
    device = tensor.device.type
    return torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)


def _autocast_dtypes(input: torch.Tensor, rois: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """The dtypes the op computes ``input`` and ``rois`` in: float32 under autocast for the input's
    device (float64 stays, as with ``at::autocast::cached_cast``), otherwise their own."""
    if not _autocasting(input):
        return input.dtype, rois.dtype
    dtype_in, dtype_rois = (t.dtype if t.dtype == torch.float64 else torch.float32 for t in (input, rois))
    return dtype_in, dtype_rois


def _autocast_inputs(input: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input, rois)`` in the dtypes the op computes them in (see :func:`_autocast_dtypes`)."""
    dtype_in, dtype_rois = _autocast_dtypes(input, rois)
    return input.to(dtype_in), rois.to(dtype_rois)


# ---------------------------------------------------------------------------------------------
# Argument checks


def _check_roi_args(
    input: object, rois: object, output_size: object, spatial_scale: object, check_values: object
) -> None:
    input = check_tensor(input, "input")
    if input.dim() != 3:
        raise ValueError(f"input: expected shape [B, C, T], got {list(input.shape)}")
    check_floating(input, "input")
    rois = check_tensor(rois, "rois")
    if rois.dim() != 2 or rois.size(1) != 3:
        raise ValueError(f"rois: expected shape [K, 3] of (batch_index, start, end), got {list(rois.shape)}")
    check_floating(rois, "rois")
    dtype_in, dtype_rois = _autocast_dtypes(input, rois)
    if dtype_rois != dtype_in:
        under = " (under autocast, float16/bfloat16/float32 run as float32)" if _autocasting(input) else ""
        raise TypeError(f"rois: dtype {rois.dtype} differs from input dtype {input.dtype}{under}")
    check_same_device(input=input, rois=rois)
    check_positive_int(output_size, "output_size")
    if (
        isinstance(spatial_scale, bool)
        or not isinstance(spatial_scale, (int, float))
        or not math.isfinite(spatial_scale)
        or spatial_scale <= 0
    ):
        raise ValueError(f"spatial_scale: expected a positive finite number, got {spatial_scale!r}")
    if rois.size(0) and input.size(2) == 0:
        raise ValueError(f"input: expected T > 0 when rois are given, got shape {list(input.shape)}")
    # Value checks read the data (a device sync, a graph break): skipped on request and while
    # torch.compile traces, where the kernels' own checks remain.
    if check_bool(check_values, "check_values") and rois.size(0) and not torch.compiler.is_compiling():
        _check_roi_values(rois, input.size(0))


def _check_roi_values(rois: torch.Tensor, batch_size: int) -> None:
    check_segments(rois, "rois", columns=3)  # no NaN, end >= start
    if not torch.isfinite(rois).all():
        row = int((~torch.isfinite(rois)).any(1).nonzero()[0, 0])
        raise ValueError(f"rois: row {row} is not finite ({rois[row].tolist()})")
    batch = rois[:, 0]
    bad = (batch < 0) | (batch >= batch_size) | (batch != batch.floor())
    if bad.any():
        row = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"rois: row {row} has batch index {batch[row].item()}, expected an integer in [0, {batch_size})"
        )


# ---------------------------------------------------------------------------------------------
# Pure-PyTorch references (fallback and test oracles)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Positions, weights and sums of half-precision inputs are computed in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _scaled_bounds(rois: torch.Tensor, spatial_scale: float, dtype: torch.dtype) -> torch.Tensor:
    """``[K, 2]`` (start, end) times spatial_scale, rounded in ``dtype`` like the kernels."""
    return rois[:, 1:].to(dtype) * torch.tensor(spatial_scale, dtype=dtype, device=rois.device)


def _row_starts(input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """``[K, C, 1]`` flat offset of row ``input[batch[k], c, :]`` in ``input.reshape(-1)``."""
    channels, length = input.shape[1:]
    rows = rois[:, 0].long().view(-1, 1) * channels + torch.arange(channels, device=input.device)
    return (rows * length).unsqueeze(-1)


def roi_align_1d_reference(
    input: torch.Tensor,
    rois: torch.Tensor,
    output_size: int,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """Vectorized RoIAlign along time (torchvision's rules, see the module docstring).

    ``input [B, C, T]``, ``rois [K, 3]`` -> ``[K, C, output_size]``; autograd through indexing.
    """
    dtype = _compute_dtype(input.dtype)
    length = input.size(2)
    bounds = _scaled_bounds(rois, spatial_scale, dtype) - (0.5 if aligned else 0.0)
    start = bounds[:, 0]
    width = bounds[:, 1] - start
    if not aligned:
        width = width.clamp_min(1.0)
    bin_size = width / output_size
    if sampling_ratio > 0:
        grid = torch.full_like(width, sampling_ratio, dtype=torch.long)
    else:
        grid = torch.ceil(width / output_size).long()
    max_grid = max(int(grid.max()), 1) if grid.numel() else 1
    # Sample positions [K, P, G]: start + p * bin + (ix + 0.5) * bin / grid (torchvision's order).
    bins = torch.arange(output_size, dtype=dtype, device=input.device).view(1, -1, 1)
    samples = torch.arange(max_grid, device=input.device).view(1, 1, -1)
    size = bin_size.view(-1, 1, 1)
    steps = grid.view(-1, 1, 1).to(dtype)
    x = (start.view(-1, 1, 1) + bins * size) + ((samples.to(dtype) + 0.5) * size) / steps
    in_grid = samples < grid.view(-1, 1, 1)
    x = torch.where(in_grid, x, -2.0)  # unused sample slots (and 0/0 of empty grids) read nothing
    valid = (x >= -1.0) & (x <= length)
    x = torch.where(valid, x.clamp_min(0.0), 0.0)
    low = x.long()
    last = low >= length - 1
    low = torch.where(last, length - 1, low)
    x = torch.where(last, low.to(dtype), x)
    w_high = x - low.to(dtype)
    w_low = 1.0 - w_high
    data = input.to(dtype).reshape(-1)
    rows = _row_starts(input, rois).unsqueeze(-1)  # [K, C, 1, 1]
    value = w_low.unsqueeze(1) * data[rows + low.unsqueeze(1)]
    # At the last position both taps coincide; the high tap (weight 0) is skipped, as in the kernels.
    high_term = w_high.unsqueeze(1) * data[rows + torch.where(last, low, low + 1).unsqueeze(1)]
    value = value + torch.where(last.unsqueeze(1), 0.0, high_term)
    value = torch.where(valid.unsqueeze(1), value, 0.0)
    count = grid.clamp_min(1).to(dtype).view(-1, 1, 1)
    return (value.sum(-1) / count).to(input.dtype)


def _round_half_away(value: torch.Tensor) -> torch.Tensor:
    """``std::round`` (half away from zero) to int64; torch.round rounds half to even."""
    whole = value.trunc()
    return (whole + torch.where((value - whole).abs() >= 0.5, value.sign(), 0.0)).long()


def roi_pool_1d_reference(
    input: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI max pooling along time (see the module docstring).

    Returns ``(output [K, C, output_size], argmax int32 [K, C, output_size])``, argmax the input
    position of each maximum (the first on ties, the first NaN if any), -1 for an empty bin.
    """
    dtype = _compute_dtype(input.dtype)
    length = input.size(2)
    bounds = _scaled_bounds(rois, spatial_scale, dtype)
    start = _round_half_away(bounds[:, 0])
    width = (_round_half_away(bounds[:, 1]) - start + 1).clamp_min(1)
    bin_size = (width.to(dtype) / output_size).view(-1, 1)
    bins = torch.arange(output_size + 1, dtype=dtype, device=input.device).view(1, -1)
    lo = (torch.floor(bins[:, :-1] * bin_size).long() + start.view(-1, 1)).clamp(0, length)
    hi = (torch.ceil(bins[:, 1:] * bin_size).long() + start.view(-1, 1)).clamp(0, length)
    span = (hi - lo).unsqueeze(1)  # [K, 1, P]
    rows = _row_starts(input, rois)  # [K, C, 1]
    data = input.detach().to(dtype).reshape(-1)
    shape = (rois.size(0), input.size(1), output_size)
    best = torch.zeros(shape, dtype=dtype, device=input.device)
    argmax = torch.full(shape, -1, dtype=torch.long, device=input.device)
    # Scan the bins position by position, all RoIs and channels at once (a bin spans <= T + 1).
    for offset in range(int(span.max()) if span.numel() else 0):
        position = (lo + offset).clamp_max(length - 1).unsqueeze(1)
        value = data[rows + position]
        take = (offset < span) & ((argmax < 0) | ((value > best) | value.isnan()) & ~best.isnan())
        best = torch.where(take, value, best)
        argmax = torch.where(take, position, argmax)
    # The output is read at argmax from `input` itself, so autograd routes the gradient there.
    picked = input.to(dtype).reshape(-1)[rows + argmax.clamp_min(0)]
    return torch.where(argmax >= 0, picked, 0.0).to(input.dtype), argmax.int()


# ---------------------------------------------------------------------------------------------
# Fake kernels (shapes for torch.compile / meta tensors) and autograd of the compiled ops


def _register_compiled_ops() -> None:
    ops = torch.ops.rc3d_af

    @torch.library.register_fake("rc3d_af::roi_align_1d")
    def _(input, rois, spatial_scale, output_size, sampling_ratio, aligned):
        return input.new_empty((rois.shape[0], input.shape[1], output_size))

    @torch.library.register_fake("rc3d_af::_roi_align_1d_backward")
    def _(grad, rois, spatial_scale, output_size, batch_size, channels, length, sampling_ratio, aligned):
        return grad.new_empty((batch_size, channels, length))

    @torch.library.register_fake("rc3d_af::roi_pool_1d")
    def _(input, rois, spatial_scale, output_size):
        shape = (rois.shape[0], input.shape[1], output_size)
        return input.new_empty(shape), input.new_empty(shape, dtype=torch.int32)

    @torch.library.register_fake("rc3d_af::_roi_pool_1d_backward")
    def _(grad, rois, argmax, batch_size, channels, length):
        return grad.new_empty((batch_size, channels, length))

    def align_setup(ctx, inputs, output):
        input, rois, spatial_scale, output_size, sampling_ratio, aligned = inputs
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, output_size, *input.shape, sampling_ratio, aligned)

    def align_backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        grad_input = ops._roi_align_1d_backward(grad, rois, *ctx.args)
        return grad_input, None, None, None, None, None

    # The backward is linear in `grad`; its own gradient is the forward op (double backward).
    def align_backward_setup(ctx, inputs, output):
        _, rois, spatial_scale, output_size, _, _, _, sampling_ratio, aligned = inputs
        ctx.save_for_backward(rois)
        ctx.args = (spatial_scale, output_size, sampling_ratio, aligned)

    def align_backward_backward(ctx, grad_grad_input):
        (rois,) = ctx.saved_tensors
        return (ops.roi_align_1d(grad_grad_input, rois, *ctx.args),) + (None,) * 8

    def pool_setup(ctx, inputs, output):
        input, rois, _, _ = inputs
        ctx.save_for_backward(rois, output[1])
        ctx.input_shape = input.shape

    def pool_backward(ctx, grad, grad_argmax):
        rois, argmax = ctx.saved_tensors
        return ops._roi_pool_1d_backward(grad, rois, argmax, *ctx.input_shape), None, None, None

    # The pooling backward is linear in `grad`; its gradient reads the outputs' argmax positions.
    def pool_backward_setup(ctx, inputs, output):
        _, rois, argmax, _, _, _ = inputs
        ctx.save_for_backward(rois, argmax)

    def pool_backward_backward(ctx, grad_grad_input):
        rois, argmax = ctx.saved_tensors
        picked = grad_grad_input.reshape(-1)[_row_starts(grad_grad_input, rois) + argmax.clamp_min(0)]
        return (torch.where(argmax >= 0, picked, 0.0),) + (None,) * 5

    # Autocast kernels (torchvision's rule, see the module docstring): below them, with the autocast
    # keys excluded, the op runs on float32 copies.
    def align_autocast(input, rois, *args):
        x, r = _autocast_inputs(input, rois)
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_KEYS):
            return ops.roi_align_1d(x, r, *args).to(input.dtype)

    def pool_autocast(input, rois, *args):
        x, r = _autocast_inputs(input, rois)
        with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_KEYS):
            output, argmax = ops.roi_pool_1d(x, r, *args)
        return output.to(input.dtype), argmax

    for key in ("AutocastCPU", "AutocastCUDA"):
        _LIBRARY.impl("roi_align_1d", align_autocast, key)
        _LIBRARY.impl("roi_pool_1d", pool_autocast, key)

    torch.library.register_autograd("rc3d_af::roi_align_1d", align_backward, setup_context=align_setup)
    torch.library.register_autograd(
        "rc3d_af::_roi_align_1d_backward", align_backward_backward, setup_context=align_backward_setup
    )
    torch.library.register_autograd("rc3d_af::roi_pool_1d", pool_backward, setup_context=pool_setup)
    torch.library.register_autograd(
        "rc3d_af::_roi_pool_1d_backward", pool_backward_backward, setup_context=pool_backward_setup
    )


_AUTOCAST_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU) | torch._C.DispatchKeySet(
    torch._C.DispatchKey.AutocastCUDA
)

if STATUS.loaded:
    # Holds the Python (Autocast) kernel registrations: they last as long as this module.
    _LIBRARY = torch.library.Library("rc3d_af", "IMPL")
    _register_compiled_ops()

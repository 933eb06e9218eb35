"""Segment IoU, NMS, batched (per-label) NMS and soft-NMS for 1D segments.

Segments are ``[N, 2]`` tensors of (start, end) in any continuous unit; a segment's length is
``end - start`` (no "+1"). The IoU of two segments is ``intersection / union`` with
``union = length_a + length_b - intersection``; disjoint or touching segments have IoU 0, and so do
two zero-length segments (their union is 0). Inputs are float32 or float64; integer or mixed dtypes,
mixed devices, NaN and ``end < start`` are rejected with a message naming the argument.

Each public function runs the compiled kernel of ``rc3d_af._C`` for the input's device when it is
built (CPU kernels for all four ops, CUDA kernels for ``segment_iou``, ``nms_1d`` and
``batched_nms_1d``; ``soft_nms_1d`` on CUDA input runs the CPU kernel on a copy and returns results
on the input's device), and otherwise the pure-PyTorch reference of the same name + ``_reference``.
The references perform the same floating-point operations in the same order as the kernels (IoU in
the input dtype, compared with the threshold in float64), so both give identical indices; they are
also the test oracles.

``segment_iou`` is differentiable (compiled op and reference alike; zero gradient where the union is
empty); NMS returns indices, and soft-NMS scores are returned detached.

The value checks (NaN, ``end < start``) read tensor data: on CUDA each is a host synchronisation.
Callers inside a model (proposal selection at every training step, on the model's device) pass
``check_values=False`` to skip them in Python; the shape, dtype and device checks remain. The NMS
kernels check the values anyway (CPU: one pass; CUDA: the check's bits come back with the one copy
to the host that greedy NMS needs, so a CUDA ``nms_1d`` / ``batched_nms_1d`` synchronises once) and
raise ``RuntimeError`` with the same messages; ``segment_iou`` does not check values in its kernel.
Under ``torch.compile`` the Python checks are skipped, as with ``check_values=False``.
"""

from __future__ import annotations

import torch

from rc3d_af.ops._checks import (
    check_bool,
    check_floating,
    check_labels,
    check_number,
    check_probability,
    check_same_device,
    check_scores,
    check_segments,
    check_tensor,
)
from rc3d_af.ops._extension import STATUS, use_compiled

__all__ = [
    "batched_nms_1d",
    "batched_nms_1d_reference",
    "nms_1d",
    "nms_1d_reference",
    "segment_iou",
    "segment_iou_reference",
    "soft_nms_1d",
    "soft_nms_1d_reference",
]

KERNEL_DTYPES = (torch.float32, torch.float64)
SOFT_NMS_METHODS = {"linear": 0, "gaussian": 1}


# ----------------------------------------------------------------------------------------------------
# Public ops
# ----------------------------------------------------------------------------------------------------


def segment_iou(a: torch.Tensor, b: torch.Tensor, *, check_values: bool = True) -> torch.Tensor:
    """IoU of every pair of segments.

    Args:
        a: ``[N, 2]`` (start, end), float32 or float64.
        b: ``[M, 2]`` (start, end), same dtype and device as ``a``.
        check_values: check for NaN and ``end < start`` (a host synchronisation on CUDA; see the
            module docstring).

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``, dtype of the inputs (0 for disjoint segments and for pairs
        whose union is empty).
    """
    check_bool(check_values, "check_values")
    if not torch.compiler.is_compiling():
        _check_segments(a, "a", check_values)
        check_same_device(a=a, b=check_tensor(b, "b"))
        _check_segments(b, "b", check_values)
        if b.dtype != a.dtype:
            raise TypeError(f"b: dtype {b.dtype} differs from a dtype {a.dtype}")
    if use_compiled(a):
        return torch.ops.rc3d_af.segment_iou(a, b)
    return segment_iou_reference(a, b)


def nms_1d(
    segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, check_values: bool = True
) -> torch.Tensor:
    """Greedy non-maximum suppression of segments (``torchvision.ops.nms`` for 1D).

    Segments are visited by decreasing score, equal scores in index order; a segment is dropped when
    its IoU with an already kept one is strictly greater than ``iou_threshold``.

    Args:
        segments: ``[N, 2]`` (start, end), float32 or float64.
        scores: ``[N]``, same dtype and device.
        iou_threshold: in ``[0, 1]``; 0 drops anything that overlaps a kept segment at all, 1 keeps all.
        check_values: check for NaN and ``end < start`` in Python first (host synchronisations on
            CUDA; the kernels check anyway, see the module docstring).

    Returns:
        int64 ``[K]`` indices of the kept segments, by decreasing score.
    """
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    check_bool(check_values, "check_values")
    if not torch.compiler.is_compiling():
        _check_segments(segments, "segments", check_values)
        check_scores(scores, segments, values=check_values)
    if use_compiled(segments):
        return torch.ops.rc3d_af.nms_1d(segments, scores, iou_threshold)
    return nms_1d_reference(segments, scores, iou_threshold)


def batched_nms_1d(
    segments: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    iou_threshold: float,
    *,
    check_values: bool = True,
) -> torch.Tensor:
    """:func:`nms_1d` run independently for each label, in one call.

    Segments of different labels never suppress each other.

    Args:
        segments: ``[N, 2]`` (start, end), float32 or float64.
        scores: ``[N]``, same dtype and device.
        labels: ``[N]`` integer class ids (any values), same device.
        iou_threshold: in ``[0, 1]``.
        check_values: as in :func:`nms_1d`.

    Returns:
        int64 ``[K]`` indices kept, sorted by decreasing score (equal scores in index order).
    """
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    check_bool(check_values, "check_values")
    if not torch.compiler.is_compiling():
        _check_segments(segments, "segments", check_values)
        check_scores(scores, segments, values=check_values)
        check_labels(labels, segments)
    if use_compiled(segments):
        return torch.ops.rc3d_af.batched_nms_1d(segments, scores, labels, iou_threshold)
    return batched_nms_1d_reference(segments, scores, labels, iou_threshold)


def soft_nms_1d(
    segments: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    sigma: float,
    min_score: float,
    method: str = "gaussian",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS: decay the scores of overlapping segments instead of dropping them.

    Repeatedly selects the remaining segment with the highest current score (on equal current
    scores, the lowest index) and multiplies the score of every other remaining segment by a weight
    of its IoU with the selected one: ``"linear"``: ``1 - IoU`` where ``IoU > iou_threshold`` (else
    1); ``"gaussian"``: ``exp(-IoU**2 / sigma)`` (``iou_threshold`` unused). Segments whose score is
    (or falls) below ``min_score`` are dropped. Weights are computed in float64, scores rounded back
    to the input dtype. O(N^2); the kernel runs on the CPU (CUDA input is copied there and back).

    Args:
        segments: ``[N, 2]`` (start, end), float32 or float64.
        scores: ``[N]``, same dtype and device.
        iou_threshold: in ``[0, 1]``.
        sigma: > 0.
        min_score: a number (``-inf`` keeps every segment).
        method: ``"gaussian"`` or ``"linear"``.

    Returns:
        ``(keep, new_scores)``: int64 ``[K]`` indices in selection order and their decayed scores
        ``[K]`` (non-increasing, detached), on the input's device.
    """
    iou_threshold = check_probability(iou_threshold, "iou_threshold")
    sigma = check_number(sigma, "sigma", positive=True)
    min_score = check_number(min_score, "min_score")
    if method not in SOFT_NMS_METHODS:
        raise ValueError(f"method: expected one of {sorted(SOFT_NMS_METHODS)}, got {method!r}")
    if not torch.compiler.is_compiling():
        _check_segments(segments, "segments")
        check_scores(scores, segments)
    segments, scores = segments.detach(), scores.detach()  # a selection, not a differentiable function
    if not STATUS.loaded:
        return soft_nms_1d_reference(segments, scores, iou_threshold, sigma, min_score, method)
    keep, new_scores = torch.ops.rc3d_af.soft_nms_1d(
        segments.cpu(), scores.cpu(), iou_threshold, sigma, min_score, SOFT_NMS_METHODS[method]
    )
    return keep.to(segments.device), new_scores.to(segments.device)


def _check_segments(segments: object, name: str, values: bool = True) -> torch.Tensor:
    segments = check_segments(segments, name, values=values)
    check_floating(segments, name, KERNEL_DTYPES)
    return segments


# ----------------------------------------------------------------------------------------------------
# Pure-PyTorch references: the fallback when the kernels are not built, and the test oracles.
# They expect already checked arguments.
# ----------------------------------------------------------------------------------------------------


def segment_iou_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, 2]``, ``[M, 2]`` -> ``[N, M]``; the operations of csrc/segment_iou.h, in its order."""
    lo = torch.maximum(a[:, None, 0], b[None, :, 0])
    hi = torch.minimum(a[:, None, 1], b[None, :, 1])
    overlap = hi - lo
    # where() rather than clamp(): like the kernel's comparison, it maps a NaN (inf - inf) to 0.
    inter = torch.where(overlap > 0, overlap, torch.zeros_like(overlap))
    union = ((a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :]) - inter
    valid = union > 0
    # Dividing by 1 where the union is empty keeps 0/0 out of the backward pass (zero gradient there).
    return torch.where(
        valid, inter / torch.where(valid, union, torch.ones_like(union)), torch.zeros_like(inter)
    )


def nms_1d_reference(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Reference of :func:`nms_1d`."""
    return _greedy_nms_reference(segments, scores, None, iou_threshold)


def batched_nms_1d_reference(
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Reference of :func:`batched_nms_1d`."""
    return _greedy_nms_reference(segments, scores, labels, iou_threshold)


REFERENCE_BLOCK = 128  # candidates resolved together by the reference NMS


def _greedy_nms_reference(
    segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor | None, iou_threshold: float
) -> torch.Tensor:
    # Candidates in score order, in blocks: a block is first filtered by every segment kept before it
    # (one vectorised IoU), then resolved inside, where a kept candidate removes the later candidates
    # of the block that it overlaps. Equivalent to the one-by-one greedy loop, in O(N / block) steps.
    order = torch.sort(scores, descending=True, stable=True).indices
    ordered = segments[order]
    groups = labels[order] if labels is not None else torch.zeros_like(order)
    kept = torch.zeros(order.numel(), dtype=torch.bool, device=segments.device)
    for begin in range(0, order.numel(), REFERENCE_BLOCK):
        block = slice(begin, min(begin + REFERENCE_BLOCK, order.numel()))
        before = kept[: block.start].nonzero()[:, 0]
        candidates = ~_suppression(
            ordered[before], groups[before], ordered[block], groups[block], iou_threshold
        ).any(0)
        # Pairs (i, j), i < j, where i would suppress j, in row-major order: by the time a pair of row i
        # is read, every pair that could remove i (column i, smaller rows) has been applied.
        keep = candidates.tolist()
        inside = _suppression(ordered[block], groups[block], ordered[block], groups[block], iou_threshold)
        for i, j in inside.triu(1).nonzero().tolist():
            if keep[i]:
                keep[j] = False
        kept[block] = torch.tensor(keep, dtype=torch.bool, device=segments.device)
    return order[kept]


def _suppression(
    kept: torch.Tensor,
    kept_groups: torch.Tensor,
    candidates: torch.Tensor,
    candidate_groups: torch.Tensor,
    threshold: float,
) -> torch.Tensor:
    """``[K, C]`` bool: kept segment k would suppress candidate c (same group, IoU > threshold)."""
    same_group = kept_groups[:, None] == candidate_groups[None, :]
    return same_group & (segment_iou_reference(kept, candidates).double() > threshold)


def soft_nms_1d_reference(
    segments: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    sigma: float,
    min_score: float,
    method: str = "gaussian",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`soft_nms_1d`."""
    current = scores.clone()
    alive = (current.double() >= min_score).nonzero()[:, 0]  # increasing index
    keep: list[torch.Tensor] = []
    while alive.numel():
        best_pos = int(torch.argmax(current[alive]))  # first maximum: the lowest index on ties
        best = alive[best_pos]
        keep.append(best)
        alive = torch.cat([alive[:best_pos], alive[best_pos + 1 :]])
        iou = segment_iou_reference(segments[best].view(1, 2), segments[alive])[0].double()
        if method == "gaussian":
            weight = torch.exp(-(iou * iou) / sigma)
        else:
            weight = torch.where(iou > iou_threshold, 1.0 - iou, torch.ones_like(iou))
        current[alive] = (current[alive].double() * weight).to(current.dtype)
        alive = alive[current[alive].double() >= min_score]
    index = torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long, device=segments.device)
    return index, current[index]


def _segment_iou_backward(
    a: torch.Tensor, b: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of ``segment_iou`` w.r.t. ``a [N, 2]`` and ``b [M, 2]`` given ``grad [N, M]``.

    The derivative of the reference's operations, so the compiled op and the reference have the same
    gradients (at equal endpoints, min/max split the gradient evenly, as ``torch.minimum`` does).
    """
    s1, e1 = a[:, None, 0], a[:, None, 1]
    s2, e2 = b[None, :, 0], b[None, :, 1]
    overlap = torch.minimum(e1, e2) - torch.maximum(s1, s2)
    inter = torch.where(overlap > 0, overlap, torch.zeros_like(overlap))
    union = ((e1 - s1) + (e2 - s2)) - inter
    valid = union > 0
    union = torch.where(valid, union, torch.ones_like(union))  # no 0/0 where the IoU is constant 0
    # iou = inter / (len1 + len2 - inter): d/d inter = (union + inter) / union^2, d/d len = -inter / union^2.
    d_len = torch.where(valid, -inter / (union * union), torch.zeros_like(union)) * grad
    d_inter = (
        torch.where(valid & (overlap > 0), (union + inter) / (union * union), torch.zeros_like(union)) * grad
    )
    half = torch.full_like(union, 0.5)
    end_share = torch.where(
        e1 < e2, torch.ones_like(half), torch.where(e1 == e2, half, torch.zeros_like(half))
    )
    start_share = torch.where(
        s1 > s2, torch.ones_like(half), torch.where(s1 == s2, half, torch.zeros_like(half))
    )
    grad_a = torch.stack([(-d_inter * start_share - d_len).sum(1), (d_inter * end_share + d_len).sum(1)], 1)
    grad_b = torch.stack(
        [(-d_inter * (1 - start_share) - d_len).sum(0), (d_inter * (1 - end_share) + d_len).sum(0)], 1
    )
    return grad_a, grad_b


# ----------------------------------------------------------------------------------------------------
# Fake (meta) kernels (output shapes for torch.compile / FakeTensor tracing) and autograd.
# ----------------------------------------------------------------------------------------------------

if STATUS.loaded:

    def _segment_iou_setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    def _segment_iou_autograd(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _segment_iou_backward(*ctx.saved_tensors, grad)

    torch.library.register_autograd(
        "rc3d_af::segment_iou", _segment_iou_autograd, setup_context=_segment_iou_setup_context
    )

    @torch.library.register_fake("rc3d_af::segment_iou")
    def _segment_iou_fake(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.new_empty((a.shape[0], b.shape[0]))

    @torch.library.register_fake("rc3d_af::nms_1d")
    def _nms_1d_fake(segments: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        kept = torch.library.get_ctx().new_dynamic_size()
        return segments.new_empty((kept,), dtype=torch.long)

    @torch.library.register_fake("rc3d_af::batched_nms_1d")
    def _batched_nms_1d_fake(
        segments: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
    ) -> torch.Tensor:
        kept = torch.library.get_ctx().new_dynamic_size()
        return segments.new_empty((kept,), dtype=torch.long)

    @torch.library.register_fake("rc3d_af::soft_nms_1d")
    def _soft_nms_1d_fake(
        segments: torch.Tensor,
        scores: torch.Tensor,
        iou_threshold: float,
        sigma: float,
        min_score: float,
        method: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        kept = torch.library.get_ctx().new_dynamic_size()
        return segments.new_empty((kept,), dtype=torch.long), scores.new_empty((kept,))

"""Sliding-window inference: windows -> per-window detections -> per-video detections in seconds.

Three steps, kept apart so that late fusion (Table III, "fuse") can combine two models between
them: :func:`predict_windows` runs a model over a :class:`WindowDataset`,
:func:`rc3d_af.models.fuse_detections` may merge two such lists, and :func:`assemble_videos`
groups the windows by video and calls the model's post-processing
(:func:`rc3d_af.models.video_detections`: window positions -> seconds with each video's fps,
per-class NMS, top-k).

Devices: the windows' detections stay where the model ran; a video's merge (decoding to seconds,
NMS, top-k) runs there too and its result reaches the host in one transfer. Under torchrun
(:mod:`rc3d_af.engine.distributed`) each process predicts a contiguous share of the batches (the
batches of one process, so every window's numbers are those of a single-process run), the windows'
detections are gathered (a video's windows may come from several processes), each process merges
a share of the videos and the videos are gathered again: every process returns the same complete
list or Results, equal to a single process's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Subset

from rc3d_af.config import Config, TrainConfig
from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.data.dataset import WindowDataset, collate_windows
from rc3d_af.data.features import FeatureSpec
from rc3d_af.engine import distributed
from rc3d_af.errors import InputError
from rc3d_af.evaluation import evaluate_detections
from rc3d_af.evaluation.results import Results
from rc3d_af.models import WindowDetections, video_detections
from rc3d_af.models.postprocess import VideoMergeSettings

__all__ = [
    "amp_dtype",
    "assemble_videos",
    "autocast",
    "denormals_flushed",
    "evaluate_results",
    "infer_proposals",
    "infer_split",
    "predict_windows",
]


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for on ``device``: ``train.amp_dtype`` on CUDA, bfloat16
    on the CPU too; None (float32) when AMP is off or float16 is asked on the CPU."""
    if not cfg.amp:
        return None
    dtype = getattr(torch, cfg.amp_dtype)
    return dtype if device.type == "cuda" or dtype == torch.bfloat16 else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``'s type; a no-op for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


_flushing_denormals = False  # what this module last set (torch has no getter for the mode)


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[None]:
    """CPU arithmetic with denormal floats (magnitude below 1.2e-38 in float32) read and written as
    0 inside the block (``torch.set_flush_denormal``), the previous mode put back after.

    Why: weight decay drives many weights of a trained model into that range (42% of a demo A2Net's
    after 19 epochs), and x86 CPUs take a slow path for every operation on such numbers: its
    training steps ran 8x and its inference 7x slower on one thread. The mode is per thread and
    set on the calling one: with ``torch.get_num_threads() > 1`` torch's other intra-op threads
    keep the slow path. CUDA is not affected."""
    global _flushing_denormals
    previous = _flushing_denormals
    if enabled != previous:
        torch.set_flush_denormal(enabled)
        _flushing_denormals = enabled
    try:
        yield
    finally:
        if _flushing_denormals != previous:
            torch.set_flush_denormal(previous)
            _flushing_denormals = previous


@torch.no_grad()
def predict_windows(
    model: torch.nn.Module,
    dataset: WindowDataset,
    *,
    batch_size: int,
    device: torch.device,
    amp: torch.dtype | None = None,
    proposals: str | None = None,
    num_workers: int = 0,
    flush_denormal: bool = True,
) -> list[WindowDetections]:
    """Detections of every window of ``dataset`` (window positions, before NMS), in dataset order,
    on ``device`` (on the CPU when gathered from several processes); with ``proposals`` (a branch:
    ``both``, ``anchor_based`` or ``anchor_free``), the model's class-agnostic proposals instead
    (``model.propose``). ``amp``: the autocast dtype (:func:`amp_dtype`); ``num_workers``: data
    loading processes (pinned memory on CUDA); ``flush_denormal``: :func:`denormals_flushed`."""
    was_training = model.training
    model.eval()
    mine = distributed.shard(math.ceil(len(dataset) / batch_size))  # whole batches per process
    windows = range(mine.start * batch_size, min(mine.stop * batch_size, len(dataset)))
    loader = DataLoader(
        Subset(dataset, windows),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate_windows,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    detections: list[WindowDetections] = []
    try:
        with denormals_flushed(flush_denormal):
            for batch in loader:
                features = batch["features"].to(device, non_blocking=True)
                with autocast(device, amp):
                    found = model(features) if proposals is None else model.propose(features, proposals)
                detections += [
                    WindowDetections(d.segments.float(), d.scores.float(), d.labels) for d in found
                ]
    finally:
        model.train(was_training)
    if distributed.world_size() == 1:
        return detections
    return [window for part in distributed.all_gather(_pack(detections)) for window in _unpack(part)]


def _pack(detections: Sequence[WindowDetections]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows' detections as ``counts [W]`` int64 and ``rows [N, 4]`` float64 (start, end, score,
    label) on the CPU: one host transfer, and few objects to send."""
    counts = torch.tensor([len(d) for d in detections], dtype=torch.int64)
    rows = [torch.cat([d.segments.double(), d.scores.double()[:, None], d.labels.double()[:, None]], 1)
            for d in detections]
    return counts, torch.cat([torch.zeros(0, 4, dtype=torch.float64), *rows]).cpu()


def _unpack(packed: tuple[torch.Tensor, torch.Tensor]) -> list[WindowDetections]:
    """Inverse of :func:`_pack` (float32 segments and scores, int64 labels: the values exactly)."""
    counts, rows = packed
    return [
        WindowDetections(part[:, :2].float(), part[:, 2].float(), part[:, 3].long())
        for part in rows.split(counts.tolist())
    ]


def assemble_videos(
    detections: list[WindowDetections],
    dataset: WindowDataset,
    annotations: AnnotationSet,
    spec: FeatureSpec,
    cfg: VideoMergeSettings,
    label_names: Sequence[str] | None = None,
) -> Results:
    """Merge the windows of each video into its final detections in seconds (NMS, top-k).

    ``detections[i]`` belongs to ``dataset.windows[i]``. Each video uses its own fps and is clipped
    to its duration. Every video of the dataset gets an entry, possibly empty. Labels are named
    by ``label_names`` (default: the annotations' classes; ``[""]`` for proposals).
    """
    names = annotations.class_names if label_names is None else list(label_names)
    if len(detections) != len(dataset.windows):
        raise ValueError(f"{len(detections)} window detections for {len(dataset.windows)} windows")
    per_video: dict[str, list[tuple[WindowDetections, int, float]]] = defaultdict(list)
    for window, window_detections in zip(dataset.windows, detections, strict=True):
        per_video[window.video_id].append((window_detections, window.start_index, window.scale))
    for video_id in per_video:
        if annotations.videos[video_id].fps is None:
            raise InputError(f"video '{video_id}': the annotations give no fps, needed to convert to seconds")
    video_ids = list(per_video)
    mine = distributed.shard(len(video_ids))  # each process merges a share of the videos
    merged = {}
    for video_id in video_ids[mine.start : mine.stop]:
        video = annotations.videos[video_id]
        segments, scores, labels = video_detections(
            per_video[video_id], video.fps, spec, cfg, duration=video.duration
        )
        # One host transfer per video.
        merged[video_id] = torch.cat([segments, scores[:, None], labels[:, None].double()], 1).cpu().numpy()
    if distributed.world_size() > 1:
        merged = {key: rows for part in distributed.all_gather(merged) for key, rows in part.items()}
    results = Results(source="inference")
    for video_id in video_ids:
        rows = merged[video_id]
        results.add(video_id, rows[:, :2], rows[:, 2], [names[int(i)] for i in rows[:, 3]])
    return results


def infer_split(
    model: torch.nn.Module,
    cfg: Config,
    annotations: AnnotationSet,
    dataset: WindowDataset,
    device: torch.device,
) -> Results:
    """Detections in seconds for every video of ``dataset`` (one model)."""
    detections = predict_windows(
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=amp_dtype(cfg.train, device),
        num_workers=cfg.train.num_workers, flush_denormal=cfg.train.flush_denormal,
    )  # fmt: skip
    return assemble_videos(detections, dataset, annotations, cfg.data.feature_spec, cfg.model)


def infer_proposals(
    model: torch.nn.Module,
    cfg: Config,
    annotations: AnnotationSet,
    dataset: WindowDataset,
    device: torch.device,
    *,
    branch: str = "both",
    nms_iou: float = 0.9,
    top_k: int = 1000,
) -> Results:
    """Class-agnostic proposals in seconds for every video of ``dataset``: the model's per-window
    proposals of ``branch`` (``model.propose``), merged per video with class-agnostic NMS at
    ``nms_iou``, the best ``top_k`` kept (labels are empty strings)."""
    windows = predict_windows(
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=amp_dtype(cfg.train, device),
        proposals=branch, num_workers=cfg.train.num_workers, flush_denormal=cfg.train.flush_denormal,
    )  # fmt: skip
    merge = dataclasses.replace(
        cfg.model, nms_iou=nms_iou, class_agnostic_nms=True, soft_nms=False, nms_per_class=top_k, top_k=top_k
    )
    return assemble_videos(windows, dataset, annotations, cfg.data.feature_spec, merge, label_names=[""])


def evaluate_results(
    cfg: Config, annotations: AnnotationSet, results: Results, subset: str | None = None
) -> dict:
    """The evaluation report of ``results`` on ``subset`` (default ``data.test_subset``) with the
    config's protocol, thresholds and duration buckets (``rc3d-af evaluate --json`` layout)."""
    return evaluate_detections(
        annotations,
        results,
        subset or cfg.data.test_subset,
        cfg.test.tiou_thresholds,
        protocol=cfg.test.protocol,
        by_duration=cfg.test.by_duration,
    )

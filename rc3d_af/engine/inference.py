"""Sliding-window inference: windows -> per-window detections -> per-video detections in seconds.

Three steps, kept apart so that late fusion (Table III, "fuse") can combine two models between
them: :func:`predict_windows` runs a model over a :class:`WindowDataset`,
:func:`rc3d_af.models.fuse_detections` may merge two such lists, and :func:`assemble_videos`
groups the windows by video and calls the model's post-processing
(:func:`rc3d_af.models.video_detections`: window positions -> seconds with each video's fps,
per-class NMS, top-k).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader

from rc3d_af.config import Config
from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.data.dataset import WindowDataset, collate_windows
from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError
from rc3d_af.evaluation import evaluate_detections
from rc3d_af.evaluation.results import Results
from rc3d_af.models import WindowDetections, video_detections
from rc3d_af.models.postprocess import VideoMergeSettings

__all__ = [
    "assemble_videos",
    "autocast",
    "evaluate_results",
    "infer_proposals",
    "infer_split",
    "predict_windows",
]


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA when ``enabled``; a no-op otherwise (AMP is a CUDA option)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_windows(
    model: torch.nn.Module,
    dataset: WindowDataset,
    *,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    proposals: str | None = None,
) -> list[WindowDetections]:
    """Detections of every window of ``dataset`` (window positions, before NMS), in dataset order;
    with ``proposals`` (a branch: ``both``, ``anchor_based`` or ``anchor_free``), the model's
    class-agnostic proposals instead (``model.propose``)."""
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_windows)
    detections: list[WindowDetections] = []
    try:
        for batch in loader:
            features = batch["features"].to(device, non_blocking=True)
            with autocast(device, amp):
                windows = model(features) if proposals is None else model.propose(features, proposals)
            for window in windows:
                detections.append(
                    WindowDetections(window.segments.cpu(), window.scores.float().cpu(), window.labels.cpu())
                )
    finally:
        model.train(was_training)
    return detections


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
    results = Results(source="inference")
    for video_id, windows in per_video.items():
        video = annotations.videos[video_id]
        if video.fps is None:
            raise InputError(f"video '{video_id}': the annotations give no fps, needed to convert to seconds")
        segments, scores, labels = video_detections(windows, video.fps, spec, cfg, duration=video.duration)
        results.add(
            video_id, segments.numpy(), scores.numpy(), [names[i] for i in labels.tolist()]
        )
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
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=cfg.train.amp
    )
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
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=cfg.train.amp, proposals=branch
    )
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

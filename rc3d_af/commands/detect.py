"""Detect actions in video feature files with a trained checkpoint; JSON out, optional timeline PNG.

The features are cut into windows as at test time (the checkpoint's data settings), detections are
merged per video (NMS, top-k) and printed as JSON (``--out`` writes a file instead):
``{"video_id", "fps", "duration", "detections": [{"label", "score", "segment": [start, end]}]}``
with seconds computed at the video's fps. The fps comes from ``--fps`` or from ``--ground-truth``
(an annotation file or THUMOS14 folder holding the video, which also supplies its duration and is
drawn on the ``--plot`` timeline): one of the two is required. With a known duration (the ground
truth's, or ``--duration``) the feature count is checked against it, as every command does;
without one it cannot be, and a note says so.

Several feature files are detected together (windows of all of them batched): ``--out`` is then a
folder receiving ``<video_id>.json`` per file, and ``--plot`` a folder of ``<video_id>.png``. Under
``torchrun --nproc_per_node=N -m rc3d_af detect ...`` their windows are shared out over N processes
(the same detections as one process); rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rc3d_af.commands import positive_float
from rc3d_af.commands.checkpointed import add_checkpoint_arguments, load_trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", type=Path, nargs="+", help="(T, D) .npy feature file(s), one per video")
    add_checkpoint_arguments(parser, "override a setting of the checkpoint's config, e.g. model.top_k=50")
    timing = parser.add_mutually_exclusive_group(required=True)
    timing.add_argument("--fps", type=positive_float, help="the videos' frame rate (or --ground-truth)")
    timing.add_argument(
        "--ground-truth", type=Path, help="annotations holding the videos (their fps, duration; the plot)"
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        help="the video's length in seconds, with --fps (checks T; one file)",
    )
    parser.add_argument(
        "--video-id", help="video name (default: the feature file name without .npy; one file)"
    )
    parser.add_argument("--video-info", type=Path, help="THUMOS14 video info CSV for a --ground-truth folder")
    parser.add_argument(
        "--plot",
        type=Path,
        help="write a timeline PNG of the detections (and ground truth); a folder for several",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="write the JSON here instead of printing it; a folder for several files (required)",
    )
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections scoring below this")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed

    with distributed.session():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rc3d_af.data.annotations import AnnotationSet
    from rc3d_af.data.dataset import WindowDataset
    from rc3d_af.data.features import FeatureStore
    from rc3d_af.engine import distributed
    from rc3d_af.engine.datasets import make_windows
    from rc3d_af.engine.inference import amp_dtype, assemble_videos, predict_windows

    _check_arguments(args)
    trained = load_trained(args, None)
    state, cfg, device, model = trained.state, trained.cfg, trained.device, trained.model
    inputs = _read_videos(args, int(state["in_channels"]), cfg.data.feature_spec)
    annotations = AnnotationSet({v.video.video_id: v.video for v in inputs}, list(state["class_names"]))
    store = FeatureStore.from_arrays({v.video.video_id: v.features for v in inputs})
    windows = [  # each file's windows, cut (and checked) as at test time
        window
        for v in inputs
        for window in make_windows(
            cfg.data, AnnotationSet({v.video.video_id: v.video}, annotations.class_names),
            {v.video.video_id: len(v.features)}, "detect", training=False, where=str(v.path),
        )
    ]  # fmt: skip
    dataset = WindowDataset(windows, store, cfg.data.window_size)
    detections = predict_windows(
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=amp_dtype(cfg.train, device),
        flush_denormal=cfg.train.flush_denormal,
    )
    results = assemble_videos(detections, dataset, annotations, cfg.data.feature_spec, cfg.model)
    if not distributed.is_main():
        return 0
    for v in inputs:
        _write(args, v, results.videos[v.video.video_id], several=len(inputs) > 1)
    return 0


class _Input:
    """One feature file: its path, ``(T, D)`` features, annotation (fps, duration) and ground truth."""

    def __init__(self, path: Path, features: Any, video: Any, truth: Any) -> None:
        self.path, self.features, self.video, self.truth = path, features, video, truth


def _check_arguments(args: argparse.Namespace) -> None:
    from rc3d_af.errors import InputError

    for path in args.features:
        if path.suffix != ".npy":
            raise InputError(f"{path}: expected a .npy feature file")
    if len(args.features) > 1:
        for name, value in (("--video-id", args.video_id), ("--duration", args.duration)):
            if value is not None:
                raise InputError(
                    f"{name}: describes one video; {len(args.features)} feature files were given"
                )
        if args.out is None:
            raise InputError(
                f"--out: required with {len(args.features)} feature files (a folder for their JSON)"
            )
    if args.ground_truth is not None and args.duration is not None:
        raise InputError("--duration: the ground truth gives the duration; use it with --fps only")


def _read_videos(args: argparse.Namespace, in_channels: int, spec: Any) -> list[_Input]:
    """Every feature file with its video's fps and duration (checked width, distinct names)."""
    from rc3d_af.data.annotations import VideoAnnotation, load_annotations
    from rc3d_af.data.features import load_features
    from rc3d_af.errors import InputError

    truths = (
        None if args.ground_truth is None else load_annotations(args.ground_truth, video_info=args.video_info)
    )
    inputs: list[_Input] = []
    seen: dict[str, Path] = {}
    for path in args.features:
        video_id = args.video_id or path.stem
        if video_id in seen:
            raise InputError(f"{path}: video '{video_id}' was already given ({seen[video_id]})")
        seen[video_id] = path
        features = load_features(path.parent, path.stem)
        if features.shape[1] != in_channels:
            raise InputError(
                f"{path}: features have width {features.shape[1]}, the checkpoint expects {in_channels}"
            )
        truth = None
        if truths is not None:
            if video_id not in truths.videos:
                raise InputError(f"{args.ground_truth}: no video '{video_id}' (use --video-id to name it)")
            truth = truths.videos[video_id]
            if truth.fps is None:
                raise InputError(
                    f"--ground-truth: {args.ground_truth} gives no fps for '{video_id}'; use --fps"
                )
        fps = args.fps if truth is None else truth.fps
        duration = truth.duration if truth is not None else args.duration
        if duration is None:
            # Without a known duration, the video lasts until the end of its last feature's clip.
            duration = ((features.shape[0] - 1) * spec.stride_frames + spec.clip_frames) / fps
            print(
                f"note: no duration (--duration or --ground-truth): the {features.shape[0]} features of "
                f"{path} cannot be checked against the video's length; at {fps:g} fps and stride "
                f"{spec.stride_frames} frames they span {duration:.1f} s",
                file=sys.stderr,
            )
        inputs.append(_Input(path, features, VideoAnnotation(video_id, "detect", duration, fps), truth))
    return inputs


def _write(args: argparse.Namespace, video: _Input, found: Any, *, several: bool) -> None:
    """The JSON document (and the timeline) of one video: printed, or written to --out (a folder
    with ``several`` files)."""
    import numpy as np

    from rc3d_af.engine.report import plot_timeline

    keep = np.flatnonzero(found.scores >= args.min_score)
    document = {
        "video_id": video.video.video_id,
        "fps": video.video.fps,
        "duration": video.video.duration,
        "detections": [
            {
                "label": found.labels[i],
                "score": float(found.scores[i]),
                "segment": [float(v) for v in found.segments[i]],
            }
            for i in keep
        ],
    }
    text = json.dumps(document, indent=1)
    name = video.video.video_id
    if args.out:
        out = args.out / f"{name}.json" if several else args.out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"{len(keep)} detections written to {out}", file=sys.stderr)
    else:
        print(text)
    if args.plot:
        plot = args.plot / f"{name}.png" if several else args.plot
        plot_timeline(plot, document, video.truth)
        print(f"timeline written to {plot}", file=sys.stderr)

"""Detect actions in one video's feature file with a trained checkpoint; JSON out, optional timeline PNG.

The features are cut into windows as at test time (the checkpoint's data settings), detections are
merged per video (NMS, top-k) and printed as JSON (``--out`` writes a file instead):
``{"video_id", "fps", "duration", "detections": [{"label", "score", "segment": [start, end]}]}``
with seconds computed at the video's fps. The fps comes from ``--fps`` or from ``--ground-truth``
(an annotation file or THUMOS14 folder holding the video, which also supplies its duration and is
drawn on the ``--plot`` timeline): one of the two is required. With a known duration (the ground
truth's, or ``--duration``) the feature count is checked against it, as every command does;
without one it cannot be, and a note says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rc3d_af.commands import add_overrides_argument, positive_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", type=Path, help="(T, D) .npy feature file of one video")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt) written by train")
    timing = parser.add_mutually_exclusive_group(required=True)
    timing.add_argument("--fps", type=positive_float, help="the video's frame rate (or --ground-truth)")
    timing.add_argument(
        "--ground-truth", type=Path, help="annotations holding this video (its fps, duration; the plot)"
    )
    parser.add_argument(
        "--duration", type=positive_float, help="the video's length in seconds, with --fps (checks T)"
    )
    parser.add_argument("--video-id", help="video name (default: the feature file name without .npy)")
    parser.add_argument("--video-info", type=Path, help="THUMOS14 video info CSV for a --ground-truth folder")
    parser.add_argument("--plot", type=Path, help="write a timeline PNG of the detections (and ground truth)")
    parser.add_argument("--out", type=Path, help="write the JSON here instead of printing it")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop detections scoring below this")
    add_overrides_argument(parser, help="override a setting of the checkpoint's config, e.g. model.top_k=50")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's train.device)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from rc3d_af.data.annotations import AnnotationSet, VideoAnnotation
    from rc3d_af.data.dataset import WindowDataset
    from rc3d_af.data.features import FeatureStore, load_features
    from rc3d_af.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
    from rc3d_af.engine.datasets import make_windows
    from rc3d_af.engine.inference import assemble_videos, predict_windows
    from rc3d_af.engine.report import plot_timeline
    from rc3d_af.engine.trainer import resolve_device
    from rc3d_af.errors import InputError

    state = load_checkpoint(args.checkpoint)
    cfg = checkpoint_config(state, None, args.overrides)
    device = resolve_device(args.device, "--device") if args.device else resolve_device(cfg.train.device)
    model = model_from_checkpoint(state, cfg, device)
    if args.features.suffix != ".npy":
        raise InputError(f"{args.features}: expected a .npy feature file")
    video_id = args.video_id or args.features.stem
    features = load_features(args.features.parent, args.features.stem)
    if features.shape[1] != int(state["in_channels"]):
        raise InputError(
            f"{args.features}: features have width {features.shape[1]}, the checkpoint expects "
            f"{int(state['in_channels'])}"
        )
    truth = _ground_truth(args, video_id)
    fps = args.fps if truth is None else truth.fps
    if fps is None:
        raise InputError(f"--ground-truth: {args.ground_truth} gives no fps for '{video_id}'; use --fps")
    if truth is not None and args.duration is not None:
        raise InputError("--duration: the ground truth gives the duration; use it with --fps only")
    spec = cfg.data.feature_spec
    num_features = features.shape[0]
    # Without a known duration, the video lasts until the end of its last feature's clip.
    duration = truth.duration if truth is not None else args.duration
    if duration is None:
        duration = ((num_features - 1) * spec.stride_frames + spec.clip_frames) / fps
        print(
            f"note: no duration (--duration or --ground-truth): the {num_features} features cannot be "
            f"checked against the video's length; at {fps:g} fps and stride {spec.stride_frames} frames "
            f"they span {duration:.1f} s",
            file=sys.stderr,
        )
    video = VideoAnnotation(video_id, "detect", duration, fps)
    annotations = AnnotationSet({video_id: video}, list(state["class_names"]))
    store = FeatureStore.from_arrays({video_id: features})
    windows = make_windows(
        cfg.data, annotations, {video_id: num_features}, "detect", training=False, where=str(args.features)
    )
    dataset = WindowDataset(windows, store, cfg.data.window_size)
    detections = predict_windows(
        model, dataset, batch_size=cfg.test.batch_size, device=device, amp=cfg.train.amp
    )
    found = assemble_videos(detections, dataset, annotations, spec, cfg.model).videos[video_id]
    keep = np.flatnonzero(found.scores >= args.min_score)
    document = {
        "video_id": video_id,
        "fps": fps,
        "duration": duration,
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
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"{len(keep)} detections written to {args.out}", file=sys.stderr)
    else:
        print(text)
    if args.plot:
        plot_timeline(args.plot, document, truth)
        print(f"timeline written to {args.plot}", file=sys.stderr)
    return 0


def _ground_truth(args: argparse.Namespace, video_id: str):
    """The video's annotation from --ground-truth, or None."""
    from rc3d_af.data.annotations import load_annotations
    from rc3d_af.errors import InputError

    if args.ground_truth is None:
        return None
    annotations = load_annotations(args.ground_truth, video_info=args.video_info)
    if video_id not in annotations.videos:
        raise InputError(f"{args.ground_truth}: no video '{video_id}' (use --video-id to name it)")
    return annotations.videos[video_id]

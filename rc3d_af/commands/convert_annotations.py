"""Convert annotations (THUMOS14 kit folder or ActivityNet JSON) to the project's JSON layout.

The output keeps durations, per-video fps, Ambiguous intervals, the class order (class ids) and
THUMOS class ids, so it can replace the folder everywhere. Several inputs (for example the
THUMOS14 val and test folders) are merged into one file.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="annotation JSON file(s) or THUMOS14 folder(s)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output JSON file")
    parser.add_argument("--video-info", metavar="CSV",
                        help="video,duration_sec,fps table (THUMOS14 folders; default: found beside them)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.data.annotations import AnnotationSet, load_annotations, save_annotations_json
    from rc3d_af.errors import InputError

    merged: AnnotationSet = load_annotations(args.inputs[0], video_info=args.video_info)
    for source in args.inputs[1:]:
        part = load_annotations(source, video_info=args.video_info)
        if part.class_names != merged.class_names or part.class_ids != merged.class_ids:
            raise InputError(f"{source}: its class list differs from that of {args.inputs[0]}")
        clash = sorted(set(part.videos) & set(merged.videos))
        if clash:
            raise InputError(f"{source}: video {clash[0]} is also in an earlier input")
        merged.videos.update(part.videos)
    save_annotations_json(merged, args.out)
    counts = {}
    for video in merged.videos.values():
        videos, instances = counts.get(video.subset, (0, 0))
        counts[video.subset] = (videos + 1, instances + len(video.instances))
    summary = ", ".join(f"{subset}: {v} videos / {n} instances" for subset, (v, n) in sorted(counts.items()))
    print(f"wrote {args.out}: {len(merged.class_names)} classes; {summary}")
    return 0

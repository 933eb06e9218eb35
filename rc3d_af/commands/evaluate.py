"""Evaluate detections (mAP, ActivityNet or THUMOS14-kit protocol) or proposals (AR@AN, AUC).

Ground truth: an ActivityNet-layout JSON file or a THUMOS14 annotation folder. Results: an
ActivityNet results JSON or a THUMOS14 text file (video t_start t_end class score; class by name
or THUMOS id). Prints a table; --json writes every number, --plot a PNG (mAP per duration bucket
with --by-duration, the AR-AN curve with --proposals). Predictions on videos without ground
truth and labels that are not classes are counted and reported; results none of whose labels is
a class of the ground truth are an error.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ground-truth", required=True, metavar="GT",
                        help="annotation JSON (ActivityNet layout) or THUMOS14 annotation folder")
    parser.add_argument("--video-info", metavar="CSV",
                        help="video,duration_sec,fps table for a THUMOS14 folder (default: found beside it)")
    parser.add_argument("--results", required=True, metavar="RES", help="results JSON or THUMOS14 text file")
    parser.add_argument("--subset", help="evaluate the videos of this subset (default: all; required when "
                        "the ground truth holds several subsets)")
    parser.add_argument("--protocol", choices=("activitynet", "thumos14"), default="activitynet",
                        help="detection protocol (default: activitynet)")
    parser.add_argument("--tiou", metavar="T", help="start:stop:step (stop included) or a,b,c. Default, "
                        "chosen from the ground truth since evaluate reads no config: THUMOS14 ground truth "
                        "(class ids, e.g. a kit folder) or --protocol thumos14: 0.1:0.7:0.1 (proposals "
                        "0.5:1.0:0.05), else 0.5:0.95:0.05. `rc3d-af test` uses its config's "
                        "test.tiou_thresholds instead, so on ground truth without class ids the two "
                        "print different thresholds unless --tiou gives the config's")
    parser.add_argument("--by-duration", action="store_true",
                        help="also mAP per ground-truth duration bucket")
    parser.add_argument("--buckets", metavar="EDGES",
                        help="bucket edges in seconds (default 1.5,2.5,4.2,6.9)")
    parser.add_argument("--duration-rule", choices=("same_class", "a2net"), default="same_class",
                        help="which predictions take part in a duration bucket (default same_class; a2net: "
                        "the A2Net Table I scripts' rule)")
    parser.add_argument("--unknown-videos", choices=("false_positive", "ignore"), default="false_positive",
                        help="predictions on videos without ground truth (default: false positives, "
                        "as the official evaluators)")
    parser.add_argument("--clip-to-duration", action="store_true",
                        help="clip predictions to their video (the official evaluators do not)")
    parser.add_argument("--tie-rule", choices=("official", "stable"), default="official",
                        help="order of tied scores (ActivityNet protocol and proposals): official (default) "
                        "ranks as the official ActivityNet evaluators, with numpy's default argsort, whose "
                        "tie order depends on the numpy version and the CPU; stable keeps ties in file "
                        "order, the same on every machine. The kit protocol has one deterministic order")
    parser.add_argument("--nms-schedule", choices=("none", "rc3d"), default="none",
                        help="rc3d: before scoring each tIoU t, per-class NMS at t - 0.1 on every video "
                        "(R-C3D's THUMOS14 script; its numbers are not comparable with the default single "
                        "set of detections)")
    parser.add_argument("--proposals", action="store_true",
                        help="evaluate class-agnostic proposals (labels are ignored)")
    parser.add_argument("--an", default="50,100,200,500,1000",
                        help="AN values for AR@AN (proposals); activitynet convention: read on the official "
                        "curve of max AN at multiples of max AN / 100")
    parser.add_argument("--convention", choices=("activitynet", "per_video"), default="activitynet",
                        help="proposal budget convention for ar/auc (both are always in the JSON)")
    parser.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG figure")
    parser.add_argument("--no-per-class", action="store_true", help="omit the per-class table")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.data.annotations import load_annotations
    from rc3d_af.errors import InputError
    from rc3d_af.evaluation.detection import evaluate_detections
    from rc3d_af.evaluation.duration import DEFAULT_BUCKETS, parse_buckets
    from rc3d_af.evaluation.nms_schedule import evaluate_with_nms_schedule
    from rc3d_af.evaluation.plots import plot_report
    from rc3d_af.evaluation.proposals import evaluate_proposals
    from rc3d_af.evaluation.report import format_report, report_warnings, write_json
    from rc3d_af.evaluation.results import load_results
    from rc3d_af.evaluation.thresholds import (
        ACTIVITYNET_TIOU,
        PROPOSAL_TIOU,
        THUMOS14_PROPOSAL_TIOU,
        THUMOS14_TIOU,
        parse_int_list,
        parse_thresholds,
    )

    ground_truth = load_annotations(args.ground_truth, video_info=args.video_info)
    subsets = sorted({video.subset for video in ground_truth.videos.values()})
    if args.subset is None and len(subsets) > 1:
        raise InputError(f"{args.ground_truth}: holds subsets {subsets}: choose one with --subset")
    results = load_results(args.results, ground_truth.class_names, class_ids=ground_truth.class_ids,
                           require_labels=not args.proposals)
    thumos_like = args.protocol == "thumos14" or bool(ground_truth.class_ids)
    if args.proposals:
        thresholds = parse_thresholds(args.tiou) if args.tiou else (
            THUMOS14_PROPOSAL_TIOU if thumos_like else PROPOSAL_TIOU)
        report = evaluate_proposals(ground_truth, results, args.subset, thresholds,
                                    parse_int_list(args.an, "--an"), convention=args.convention,
                                    tie_rule=args.tie_rule)
    else:
        thresholds = parse_thresholds(args.tiou) if args.tiou else (
            THUMOS14_TIOU if thumos_like else ACTIVITYNET_TIOU)
        evaluate = evaluate_detections if args.nms_schedule == "none" else evaluate_with_nms_schedule
        report = evaluate(
            ground_truth, results, args.subset, thresholds,
            protocol=args.protocol, by_duration=args.by_duration,
            buckets=parse_buckets(args.buckets) if args.buckets else DEFAULT_BUCKETS,
            duration_rule=args.duration_rule,
            unknown_videos=args.unknown_videos, clip_to_duration=args.clip_to_duration,
            tie_rule=args.tie_rule,
        )
    for message in report_warnings(report, args.results):
        print(f"warning: {message}", file=sys.stderr)
    print(format_report(report, per_class=not args.no_per_class))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot_report(report, args.plot)
    return 0

"""Export and evaluate a checkpoint's action proposals on a split: proposals JSON, AR@AN / AUC, AR-AN curve.

R-C3D / R-C3D + AF checkpoints give their proposal network's proposals (anchor and anchor-free,
after its NMS; ``--branch`` keeps one branch's); A2Net checkpoints give the class-agnostic
candidates of ``--branch`` (the paper's recall comparison of the two modules, section IV-C). The
windows of a video are merged with class-agnostic NMS at ``--nms`` and the best ``--top-k`` kept.
Writes ``proposals.json`` (``{"results": {video: [{"segment": [s, e], "score": x}]}}``, seconds),
``proposals_metrics.json`` (the ``rc3d-af evaluate --proposals --json`` layout) and ``ar_an.png``
to --out (default: ``<checkpoint folder>/proposals_<split>``). Under ``torchrun`` the windows are
shared out over the processes as in ``rc3d-af test``: the same files, written by rank 0, whose
metrics record the ``world_size``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rc3d_af.commands.checkpointed import add_checkpoint_arguments, load_split, load_trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, nargs="?", help="YAML config whose data/test sections to use")
    add_checkpoint_arguments(parser, "override a config value (applied after the checkpoint's config)")
    parser.add_argument("--split", help="subset to run on (default: data.test_subset)")
    parser.add_argument(
        "--out", type=Path, help="output folder (default: <checkpoint folder>/proposals_<split>)"
    )
    parser.add_argument(
        "--branch",
        choices=("both", "anchor_based", "anchor_free"),
        default="both",
        help="whose proposals: both branches (default) or one",
    )
    parser.add_argument(
        "--nms", type=float, default=0.9, help="class-agnostic NMS IoU across a video's windows (default 0.9)"
    )
    parser.add_argument("--top-k", type=int, default=1000, help="proposals kept per video (default 1000)")
    parser.add_argument(
        "--tiou",
        default="thumos14",
        help="tIoU thresholds of the average recall: thumos14 (0.5:1.0:0.05, default), activitynet "
        "(0.5:0.95:0.05) or start:stop:step / a,b,c",
    )
    parser.add_argument("--an", default="50,100,200,500,1000", help="AN values of AR@AN")
    parser.add_argument(
        "--convention",
        choices=("activitynet", "per_video"),
        default="activitynet",
        help="proposal budget convention for ar/auc (both are always in the JSON)",
    )
    parser.add_argument("--no-plots", action="store_true", help="do not draw the AR-AN curve")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed

    with distributed.session():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed
    from rc3d_af.engine.inference import infer_proposals
    from rc3d_af.errors import InputError
    from rc3d_af.evaluation.plots import plot_ar_an
    from rc3d_af.evaluation.proposals import evaluate_proposals
    from rc3d_af.evaluation.report import format_report, write_json
    from rc3d_af.evaluation.results import save_results_json
    from rc3d_af.evaluation.thresholds import ACTIVITYNET_TIOU, THUMOS14_PROPOSAL_TIOU, parse_int_list

    if not 0.0 <= args.nms <= 1.0:
        raise InputError(f"--nms: expected an IoU in [0, 1], got {args.nms}")
    if args.top_k < 1:
        raise InputError(f"--top-k: expected a positive number of proposals per video, got {args.top_k}")
    an = parse_int_list(args.an, "--an")
    trained = load_trained(args, args.config)
    split = args.split or trained.cfg.data.test_subset
    annotations, dataset = load_split(trained, split)
    results = infer_proposals(
        trained.model, trained.cfg, annotations, dataset, trained.device,
        branch=args.branch, nms_iou=args.nms, top_k=args.top_k,
    )  # fmt: skip
    if not distributed.is_main():
        return 0
    named = {"thumos14": THUMOS14_PROPOSAL_TIOU, "activitynet": ACTIVITYNET_TIOU}
    report = evaluate_proposals(
        annotations, results, split, named.get(args.tiou, args.tiou), an, convention=args.convention
    )
    report["branch"] = args.branch
    report["world_size"] = distributed.world_size()
    out = args.out or args.checkpoint.parent / f"proposals_{split}"
    save_results_json(results, out / "proposals.json", labels=False)
    write_json(report, out / "proposals_metrics.json")
    if not args.no_plots:
        plot_ar_an(report, out / "ar_an.png")
    print(format_report(report))
    print(f"proposals, metrics and curve in {out}")
    return 0

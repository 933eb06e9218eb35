"""Evaluate a trained checkpoint on a split: results JSON, mAP and duration tables, plots.

The model and its settings come from the checkpoint's stored config; CONFIG (optional) replaces its
data and test sections, and --set overrides come last (e.g. --set model.nms_iou=0.3). Writes
``results.json`` (ActivityNet results layout), ``metrics.json`` (``rc3d-af evaluate --json``
layout, with the ``world_size`` that ran it) and the plots to --out (default:
``<checkpoint folder>/test_<split>``). Under ``torchrun --nproc_per_node=N -m rc3d_af test ...`` the
windows are shared out over N processes and their detections gathered before the per-video merge:
the files are exactly those of one process, written by rank 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rc3d_af.commands.checkpointed import add_checkpoint_arguments, load_split, load_trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, nargs="?", help="YAML config whose data/test sections to use")
    add_checkpoint_arguments(parser, "override a config value (applied after the checkpoint's config)")
    parser.add_argument("--split", help="subset to evaluate (default: data.test_subset)")
    parser.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/test_<split>)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed

    with distributed.session():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed
    from rc3d_af.engine.inference import evaluate_results, infer_split
    from rc3d_af.engine.report import print_report, write_evaluation

    trained = load_trained(args, args.config)
    cfg = trained.cfg
    split = args.split or cfg.data.test_subset
    annotations, dataset = load_split(trained, split)
    results = infer_split(trained.model, cfg, annotations, dataset, trained.device)
    if not distributed.is_main():
        return 0
    report = {**evaluate_results(cfg, annotations, results, split), "world_size": distributed.world_size()}
    out = args.out or args.checkpoint.parent / f"test_{split}"
    write_evaluation(out, results, report, plots=not args.no_plots)
    print_report(report)
    print(f"results and metrics{'' if args.no_plots else ' and plots'} in {out}")
    return 0

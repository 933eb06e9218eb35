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

from rc3d_af.commands import add_overrides_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, nargs="?", help="YAML config whose data/test sections to use")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt) written by train")
    parser.add_argument("--split", help="subset to evaluate (default: data.test_subset)")
    parser.add_argument("--out", type=Path, help="output folder (default: <checkpoint folder>/test_<split>)")
    add_overrides_argument(parser, help="override a config value (applied after the checkpoint's config)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's train.device)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed

    with distributed.session():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from rc3d_af.engine import distributed
    from rc3d_af.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
    from rc3d_af.engine.datasets import load_data, make_dataset
    from rc3d_af.engine.inference import evaluate_results, infer_split
    from rc3d_af.engine.report import print_report, write_evaluation
    from rc3d_af.engine.trainer import resolve_device

    state = distributed.on_main(load_checkpoint, args.checkpoint)
    cfg = checkpoint_config(state, args.config, args.overrides)
    device = resolve_device(args.device, "--device") if args.device else resolve_device(cfg.train.device)
    model = model_from_checkpoint(state, cfg, device)
    split = args.split or cfg.data.test_subset
    annotations, store = load_data(cfg.data)
    _check_classes(state["class_names"], annotations.class_names, cfg.data.annotations)
    dataset = make_dataset(cfg.data, annotations, store, split, training=False)
    results = infer_split(model, cfg, annotations, dataset, device)
    if not distributed.is_main():
        return 0
    report = {**evaluate_results(cfg, annotations, results, split), "world_size": distributed.world_size()}
    out = args.out or args.checkpoint.parent / f"test_{split}"
    write_evaluation(out, results, report, plots=not args.no_plots)
    print_report(report)
    print(f"results and metrics{'' if args.no_plots else ' and plots'} in {out}")
    return 0


def _check_classes(trained: list[str], current: list[str], source: str) -> None:
    from rc3d_af.errors import InputError

    if list(trained) != list(current):
        raise InputError(
            f"{source}: its classes differ from the checkpoint's ({len(current)} vs {len(trained)} classes, "
            "or another order); the model's class ids would be mislabelled"
        )

"""Check a config's dataset before training: features against annotations, for every split.

Reads the annotations and every feature file in full and prints, per subset: the videos and
instances, videos without features, unreadable files and NaN/inf values, the feature count of each
video against the one its duration and fps imply (``rc3d_af.data.checks``), ground truth outside
its video, instances shorter than one feature or longer than a window; for the whole dataset the
feature width and the test-split classes that never occur in training. Exit status 0 when nothing
would make training or evaluation wrong (warnings allowed), 1 when something would (lines marked
``problem``), 2 when the config or the annotations cannot be read.
"""

from __future__ import annotations

import argparse

from rc3d_af.commands.train import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.data.annotations import load_annotations
    from rc3d_af.data.checks import dataset_report
    from rc3d_af.data.features import FeatureStore

    cfg = load_config(args.config, args.overrides).data
    annotations = load_annotations(cfg.annotations, video_info=cfg.video_info)
    store = FeatureStore(cfg.features, cfg.streams)
    print(
        f"annotations: {cfg.annotations} ({len(annotations.class_names)} classes, "
        f"{len(annotations.videos)} videos)"
    )
    print(
        f"features:    {cfg.features} (stride {cfg.stride_frames}, clip {cfg.clip_frames} frames"
        + (f", streams {', '.join(cfg.streams)})" if cfg.streams else ")")
    )
    findings = dataset_report(
        annotations, store, cfg.feature_spec,
        train_subset=cfg.train_subset, test_subset=cfg.test_subset,
        window_size=cfg.window_size if cfg.windowing == "sliding" else None,
        length_tolerance=cfg.length_tolerance, segment_slack=cfg.segment_slack,
        segments_beyond=cfg.segments_beyond,
    )  # fmt: skip
    roles = {cfg.train_subset: "training", cfg.test_subset: "test"}
    labels = {f.subset: _label(f.subset, roles) for f in findings}
    width = max(len(label) for label in labels.values())
    for finding in findings:
        print(f"{labels[finding.subset]:<{width}}  {finding.level:<7}  {finding.message}")
    problems = sum(f.level == "problem" for f in findings)
    warnings = sum(f.level == "warning" for f in findings)
    if problems:
        print(f"\n{problems} problem(s), {warnings} warning(s): training or evaluation would be wrong")
        return 1
    print(f"\nno problem, {warnings} warning(s)")
    return 0


def _label(subset: str | None, roles: dict[str, str]) -> str:
    if subset is None:
        return "[dataset]"
    return f"[{subset} ({roles[subset]})]" if subset in roles else f"[{subset}]"

"""Model summary of a config: arch, parameters, MACs per window, levels, anchors/points/RoIs, ops backend.

Needs only the config: the number of classes and the input width come from --num-classes /
--in-channels (which win), else from the config's data.num_classes / data.feature_dim (the paper
configs state them), else from the annotations and one feature file. When the dataset is readable
and the config states them too, a disagreement is reported.
"""

from __future__ import annotations

import argparse
import json

from rc3d_af.commands.train import add_config_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--num-classes", type=int, help="classes C (default: from data.annotations)")
    parser.add_argument("--in-channels", type=int, help="feature width D (default: from data.features)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.models import model_summary
    from rc3d_af.ops import EXTENSION_STATUS

    cfg = load_config(args.config, args.overrides)
    num_classes, in_channels, notes = _shape(cfg, args.num_classes, args.in_channels)
    summary = model_summary(cfg.model, num_classes, in_channels, window_size=cfg.data.window_size)
    backend = _backend(EXTENSION_STATUS)
    summary = {
        "arch": summary.pop("arch"),
        "variant": getattr(cfg.model, "variant", None),
        "num_classes": num_classes,
        "in_channels": in_channels,
        "window_size": cfg.data.window_size,
        **summary,
        "ops_backend": backend,
        "notes": notes,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_format(summary))
    return 0


def _shape(cfg, num_classes: int | None, in_channels: int | None) -> tuple[int, int, list[str]]:
    """(C, D) from the arguments, else the config's data.num_classes / data.feature_dim, else the
    dataset (annotations and the first video's features); and notes on any disagreement."""
    from rc3d_af.errors import InputError

    num_classes = cfg.data.num_classes if num_classes is None else _positive(num_classes, "--num-classes")
    in_channels = cfg.data.feature_dim if in_channels is None else _positive(in_channels, "--in-channels")
    try:
        found = _dataset_shape(cfg)
    except (InputError, StopIteration) as exc:
        if num_classes is None or in_channels is None:
            raise InputError(
                f"cannot read the dataset of the config to size the model ({exc}); set data.num_classes "
                "and data.feature_dim in the config or give --num-classes and --in-channels"
            ) from exc
        return num_classes, in_channels, []
    notes = [
        f"the dataset has {value} {what}, not the {used} used here"
        for used, value, what in (
            (num_classes, found[0], "classes"),
            (in_channels, found[1], "feature dimensions"),
        )
        if used is not None and used != value
    ]
    return num_classes or found[0], in_channels or found[1], notes


def _dataset_shape(cfg) -> tuple[int, int]:
    """(C, D) of the config's dataset: the annotations' classes and the first video's features."""
    from rc3d_af.engine.datasets import load_data

    annotations, store = load_data(cfg.data)
    store.num_features(next(iter(annotations.videos)))
    return len(annotations.class_names), store.dim


def _positive(value: int, name: str) -> int:
    from rc3d_af.errors import InputError

    if value < 1:
        raise InputError(f"{name}: expected a positive integer, got {value}")
    return value


def _backend(status) -> str:
    if not status.loaded:
        return "pure-PyTorch fallback (compiled kernels not loaded)"
    return "compiled CPU + CUDA" if status.cuda_kernels else "compiled CPU"


def _format(summary: dict) -> str:
    variant = f" (variant {summary['variant']})" if summary["variant"] not in (None, "a2net") else ""
    lines = [
        f"arch:                {summary['arch']}{variant}",
        f"classes / input dim: {summary['num_classes']} / {summary['in_channels']}",
        f"parameters:          {summary['parameters']:,} ({summary['parameters'] / 1e6:.2f} M)",
        f"MACs per window:     {summary['macs_per_window']:,} ({summary['macs_per_window'] / 1e9:.3f} G, "
        f"window of {summary['window_size']} features)",
        f"anchors per window:  {summary['anchors_per_window']}",
        f"points per window:   {summary['points_per_window']}",
        *(
            [f"RoIs per window:     {summary['rois_per_window']} (test)"]
            if "rois_per_window" in summary else []
        ),
        "levels:              "
        + ", ".join(
            f"L{i + 1} {lv['length']}x{lv['channels']}ch stride {lv['stride']}"
            for i, lv in enumerate(summary["levels"])
        ),
        f"ops backend:         {summary['ops_backend']}",
        *(f"note:                {note}" for note in summary["notes"]),
    ]
    return "\n".join(lines)

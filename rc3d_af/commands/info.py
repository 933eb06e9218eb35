"""Model summary of a config: parameters, MACs per window, pyramid, anchors/points, ops backend.

Needs only the config: the number of classes and the input width are read from the annotations
and one feature file when they exist, or given with --num-classes / --in-channels (which win).
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
    num_classes, in_channels = _dataset_shape(cfg, args.num_classes, args.in_channels)
    summary = model_summary(cfg.model, num_classes, in_channels, window_size=cfg.data.window_size)
    backend = _backend(EXTENSION_STATUS)
    summary = {
        "variant": cfg.model.variant,
        "num_classes": num_classes,
        "in_channels": in_channels,
        "window_size": cfg.data.window_size,
        **summary,
        "ops_backend": backend,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_format(summary))
    return 0


def _dataset_shape(cfg, num_classes: int | None, in_channels: int | None) -> tuple[int, int]:
    """(C, D) from the arguments, else from the annotations and the first video's features."""
    from rc3d_af.engine.datasets import load_data
    from rc3d_af.errors import InputError

    if num_classes is not None and in_channels is not None:
        return _positive(num_classes, "--num-classes"), _positive(in_channels, "--in-channels")
    try:
        annotations, store = load_data(cfg.data)
        if in_channels is None:
            store.num_features(next(iter(annotations.videos)))
            in_channels = store.dim
    except (InputError, StopIteration) as exc:
        raise InputError(
            f"cannot read the dataset of the config to size the model ({exc}); "
            "give --num-classes and --in-channels"
        ) from exc
    return _positive(num_classes or len(annotations.class_names), "--num-classes"), _positive(
        in_channels, "--in-channels"
    )


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
    lines = [
        f"variant:             {summary['variant']}",
        f"classes / input dim: {summary['num_classes']} / {summary['in_channels']}",
        f"parameters:          {summary['parameters']:,} ({summary['parameters'] / 1e6:.2f} M)",
        f"MACs per window:     {summary['macs_per_window']:,} ({summary['macs_per_window'] / 1e9:.3f} G, "
        f"window of {summary['window_size']} features)",
        f"anchors per window:  {summary['anchors_per_window']}",
        f"points per window:   {summary['points_per_window']}",
        "pyramid levels:      "
        + ", ".join(
            f"L{i + 1} {lv['length']}x{lv['channels']}ch stride {lv['stride']}"
            for i, lv in enumerate(summary["levels"])
        ),
        f"ops backend:         {summary['ops_backend']}",
    ]
    return "\n".join(lines)

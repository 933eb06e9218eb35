"""What ``test``, ``proposals`` and ``detect`` share: a trained checkpoint's model on a device, and
the split it runs on, checked against the classes the model was trained with."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc3d_af.commands import add_overrides_argument

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rc3d_af.config import Config
    from rc3d_af.data.annotations import AnnotationSet
    from rc3d_af.data.dataset import WindowDataset


def add_checkpoint_arguments(parser: argparse.ArgumentParser, overrides_help: str) -> None:
    """``--checkpoint`` (required), ``--set`` overrides of its config, and ``--device``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt) written by train")
    add_overrides_argument(parser, help=overrides_help)
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's train.device)")


@dataclass
class Trained:
    """A checkpoint loaded for inference: its stored state, resolved config, device and model."""

    state: dict[str, Any]
    cfg: Config
    device: torch.device
    model: nn.Module


def load_trained(args: argparse.Namespace, config: Path | None) -> Trained:
    """The checkpoint of ``args.checkpoint`` (read on rank 0 under torchrun) with ``config``'s data
    and test sections (None: the stored ones) and ``args.overrides``, its model on ``args.device``."""
    from rc3d_af.engine import distributed
    from rc3d_af.engine.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
    from rc3d_af.engine.trainer import resolve_device

    state = distributed.on_main(load_checkpoint, args.checkpoint)
    cfg = checkpoint_config(state, config, args.overrides)
    device = resolve_device(args.device, "--device") if args.device else resolve_device(cfg.train.device)
    return Trained(state, cfg, device, model_from_checkpoint(state, cfg, device))


def load_split(trained: Trained, split: str) -> tuple[AnnotationSet, WindowDataset]:
    """The annotations of the config's dataset and the test-time windows of ``split``; refuses a
    dataset whose classes are not the checkpoint's, in the same order."""
    from rc3d_af.engine.datasets import load_data, make_dataset
    from rc3d_af.errors import InputError

    data = trained.cfg.data
    annotations, store = load_data(data)
    trained_classes, classes = list(trained.state["class_names"]), list(annotations.class_names)
    if trained_classes != classes:
        raise InputError(
            f"{data.annotations}: its classes differ from the checkpoint's ({len(classes)} vs "
            f"{len(trained_classes)} classes, or another order); the model's class ids would be mislabelled"
        )
    return annotations, make_dataset(data, annotations, store, split, training=False)

"""Train a model from a YAML config (Adam, lr schedule, checkpoints each epoch, --resume).

Writes the run directory (default ``runs/<config name>``): ``config.yaml`` (resolved),
``train.log``, ``last.pt`` after every epoch and ``best.pt`` when ``train.eval_every`` > 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rc3d_af.commands import add_overrides_argument


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The CONFIG argument and repeated ``--set key.path=value`` overrides (shared by several commands)."""
    parser.add_argument("config", type=Path, help="YAML config file (see configs/)")
    add_overrides_argument(
        parser, help="override a config value, e.g. --set train.lr=1e-3 --set model.variant=anchor_free"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<config file name>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.engine.trainer import Trainer
    from rc3d_af.errors import InputError

    cfg = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / args.config.stem
    if args.resume and not (out / "last.pt").is_file():
        raise InputError(f"--resume: no checkpoint {out / 'last.pt'} to resume from")
    with Trainer(cfg, out, resume=args.resume, progress=not args.no_progress) as trainer:
        trainer.fit()
        trainer.logger.info("checkpoints in %s", out)
    return 0

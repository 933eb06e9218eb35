"""Train a model from a YAML config (Adam, lr schedule, checkpoints each epoch, --resume).

CONFIG is a file or the name of a packaged config (``rc3d-af train a2net_synthetic``). Writes the
run directory (default ``runs/<config name>``): ``config.yaml`` (resolved), ``train.log`` (a line
per epoch and every ``train.log_every`` steps), ``metrics.jsonl`` (every epoch's numbers),
``last.pt`` after every epoch, ``best.pt`` when ``train.eval_every`` > 0 and, with
``train.tensorboard: true``, TensorBoard logs in ``tensorboard/``. A folder that already holds a
checkpoint is refused unless --resume (continue it) or --force (delete it and start over) is given.
Ctrl-C stops after saying what was saved and the command that resumes.

Data parallel: ``torchrun --standalone --nproc_per_node=N -m rc3d_af train CONFIG ...`` (or across
machines ``torchrun --nnodes M --node-rank R --rdzv-endpoint HOST:PORT ...``) trains one model with
N processes (gloo on the CPU, nccl on GPUs: one GPU per process); ``train.batch_size`` is the
global batch, split evenly across them, and the result is that of one process up to floating-point
reduction order. Rank 0 alone writes the run folder; ``--resume`` may use another N.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rc3d_af.commands import add_overrides_argument

if TYPE_CHECKING:
    from rc3d_af.config import Config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The CONFIG argument and repeated ``--set key.path=value`` overrides (shared by several commands)."""
    parser.add_argument(
        "config", type=Path, help="YAML config file, or a packaged config's name (e.g. a2net_synthetic)"
    )
    add_overrides_argument(
        parser, help="override a config value, e.g. --set train.lr=1e-3 --set model.variant=anchor_free"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--out", type=Path, help="run directory (default: runs/<config file name>)")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    runs.add_argument(
        "--force", action="store_true", help="delete the run in <out> (checkpoints, logs) and start over"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import load_config
    from rc3d_af.engine import distributed
    from rc3d_af.engine.run_dir import interrupted_message
    from rc3d_af.engine.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    out = args.out or Path("runs") / args.config.stem
    with distributed.session():
        distributed.on_main(_prepare_run_dir, cfg, out, args)
        try:
            with Trainer(cfg, out, resume=args.resume, progress=not args.no_progress) as trainer:
                trainer.fit()
                trainer.logger.info("checkpoints in %s", out)
        except KeyboardInterrupt:
            if distributed.is_main():
                message = interrupted_message(out, cfg.train.epochs, _resume_command(args, out))
                print(f"rc3d-af train: {message}", file=sys.stderr)
            return 130
    return 0


def _prepare_run_dir(cfg: Config, out: Path, args: argparse.Namespace) -> None:
    """What comes before anything is written (on rank 0): the checks, then --force's deletion."""
    from rc3d_af.engine import distributed
    from rc3d_af.engine.run_dir import check_run_dir, check_tensorboard, clear_run_dir

    distributed.check_divisible(cfg.train.batch_size)
    check_run_dir(out, resume=args.resume, force=args.force)
    check_tensorboard(cfg.train.tensorboard)
    if args.force:
        removed = clear_run_dir(out)
        if removed:
            print(f"--force: deleted {', '.join(removed)} of the earlier run in {out}", file=sys.stderr)


def _resume_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The command line that continues this run."""
    overrides = [part for item in args.overrides for part in ("--set", item)]
    progress = ["--no-progress"] if args.no_progress else []
    return ["rc3d-af", "train", str(args.config), *overrides, "--out", str(out), "--resume", *progress]

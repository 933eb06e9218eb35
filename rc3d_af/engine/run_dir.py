"""The run folder of a training: safety, what an interruption left, and the logs besides ``train.log``.

* :func:`check_run_dir` refuses, before anything is written, to train into a folder that already
  holds a checkpoint unless the run is resumed (``--resume``) or deliberately restarted
  (``--force``, which deletes the files :data:`RUN_FILES` of the old run first).
* :func:`interrupted_message` says what an interrupted run saved and the command that resumes it.
* :class:`RunLog` writes a ``train.log`` line every ``train.log_every`` optimizer steps, one JSON
  line per epoch to ``metrics.jsonl`` (the epoch, lr, every loss value the model returned, windows,
  seconds and the evaluation's mAP when there was one) and, with ``train.tensorboard``, the same
  numbers as TensorBoard scalars in ``<run dir>/tensorboard``.

Loss values are whatever the model's ``losses`` returns: the keys differ between detectors. Keys
starting with ``num_`` are counts (assigned ground truths, sampled anchors...): they go to
``metrics.jsonl`` and TensorBoard but not into the text lines, which show ``total`` first and then
the other terms in the model's order (:func:`loss_terms`).
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rc3d_af.errors import InputError

__all__ = [
    "RUN_FILES",
    "RunLog",
    "check_run_dir",
    "check_tensorboard",
    "clear_run_dir",
    "interrupted_message",
    "loss_terms",
    "saved_epoch",
]

CHECKPOINTS = ("last.pt", "best.pt")
RUN_FILES = (*CHECKPOINTS, "train.log", "metrics.jsonl", "config.yaml")
TENSORBOARD_DIR = "tensorboard"
FILE_ONLY = {"file_only": True}  # ``extra`` of a log record that stays out of the console


def on_console(record: logging.LogRecord) -> bool:
    """Filter of a run logger's console handler: records logged with ``extra=FILE_ONLY`` stay out."""
    return not getattr(record, "file_only", False)


def check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse a run folder that holds a checkpoint, unless resuming or forcing; nothing is written."""
    found = [name for name in CHECKPOINTS if (run_dir / name).is_file()]
    if resume and "last.pt" not in found:
        raise InputError(f"--resume: no checkpoint {run_dir / 'last.pt'} to resume from")
    if found and not (resume or force):
        raise InputError(
            f"{run_dir}: this run folder already holds a run ({', '.join(found)}); pass --resume to continue "
            "it, --force to delete it and start over, or --out for another folder (nothing was written)"
        )


def clear_run_dir(run_dir: Path) -> list[str]:
    """Delete the files of an earlier run (:data:`RUN_FILES` and ``tensorboard/``); their names."""
    removed = []
    for name in RUN_FILES:
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    if (run_dir / TENSORBOARD_DIR).is_dir():
        shutil.rmtree(run_dir / TENSORBOARD_DIR)
        removed.append(TENSORBOARD_DIR)
    return removed


def saved_epoch(path: Path) -> int | None:
    """Epochs completed in the checkpoint at ``path`` (None when there is none); reads little of it."""
    import torch

    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception:  # a foreign or damaged file: say nothing rather than guess
        return None


def interrupted_message(run_dir: Path, epochs: int, resume_command: Sequence[str]) -> str:
    """What an interrupted training saved in ``run_dir`` and the exact command that resumes it."""
    last = saved_epoch(run_dir / "last.pt")
    if last is None:
        return (
            f"interrupted before the first epoch ended: no checkpoint was saved in {run_dir}; run the same "
            "command again to start over"
        )
    saved = [f"{run_dir / 'last.pt'} (after epoch {last} of {epochs})"]
    best = saved_epoch(run_dir / "best.pt")
    if best is not None:
        saved.append(f"best.pt (epoch {best})")
    saved += [name for name in ("train.log", "metrics.jsonl") if (run_dir / name).is_file()]
    return (
        f"interrupted; saved {', '.join(saved)}. The unfinished epoch is lost. Resume with:\n"
        f"  {shlex.join(resume_command)}"
    )


def check_tensorboard(enabled: bool) -> None:
    """With ``train.tensorboard`` on, the ``tensorboard`` package must be importable."""
    if enabled:
        _summary_writer_class()


def _summary_writer_class() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise InputError(
            f"train.tensorboard: true needs the tensorboard package ({exc}); install it "
            "(pip install tensorboard) or set train.tensorboard: false"
        ) from None
    return SummaryWriter


def loss_terms(losses: dict[str, float]) -> dict[str, float]:
    """The loss values shown in text lines: ``total`` first, then the others, counts (``num_*``) left out."""
    terms = {name: value for name, value in losses.items() if not name.startswith("num_")}
    return dict(sorted(terms.items(), key=lambda item: item[0] != "total"))


def format_losses(losses: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.4f}" for name, value in loss_terms(losses).items())


class RunLog:
    """Step lines in ``train.log``, ``metrics.jsonl`` and TensorBoard scalars of one training run.

    Args:
        run_dir: the run folder.
        logger: the run's logger (its console handler must skip records with ``FILE_ONLY``).
        log_every: a step line every this many optimizer steps (0: none).
        tensorboard: also write TensorBoard scalars (InputError when the package is missing).
        steps_per_epoch: batches per epoch, to number the steps across epochs.
        history: the epochs already done (a resumed run): ``metrics.jsonl`` is rewritten from them,
            so it never holds an epoch the checkpoint does not.
    """

    def __init__(
        self,
        run_dir: Path,
        logger: logging.Logger,
        *,
        log_every: int,
        tensorboard: bool,
        steps_per_epoch: int,
        history: Sequence[dict[str, Any]] = (),
    ) -> None:
        self.logger = logger
        self.log_every = log_every
        self.steps_per_epoch = steps_per_epoch
        self.metrics_path = run_dir / "metrics.jsonl"
        self.writer = _summary_writer_class()(str(run_dir / TENSORBOARD_DIR)) if tensorboard else None
        self.metrics_path.write_text("".join(json.dumps(_jsonable(entry)) + "\n" for entry in history))

    def step(self, epoch: int, epochs: int, batch: int, lr: float, losses: dict[str, float]) -> None:
        """After optimizer step ``batch`` (1-based) of ``epoch`` (1-based)."""
        step = (epoch - 1) * self.steps_per_epoch + batch
        if self.log_every and step % self.log_every == 0:
            self.logger.info(
                "epoch %d/%d step %d (batch %d/%d) lr %.3g %s",
                epoch, epochs, step, batch, self.steps_per_epoch, lr, format_losses(losses),
                extra=FILE_ONLY,
            )  # fmt: skip
        if self.writer is not None:
            for name, value in losses.items():
                self.writer.add_scalar(f"train_step/{name}", value, step)

    def epoch(self, stats: dict[str, Any]) -> None:
        """One finished epoch (``EpochStats.as_dict()``), after its checkpoint was written."""
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(_jsonable(stats)) + "\n")
        if self.writer is None:
            return
        epoch = stats["epoch"]
        self.writer.add_scalar("epoch/lr", stats["lr"], epoch)
        self.writer.add_scalar(
            "epoch/windows_per_second", stats["windows"] / max(stats["seconds"], 1e-9), epoch
        )
        for name, value in stats["losses"].items():
            self.writer.add_scalar(f"epoch/{name}", value, epoch)
        report = stats.get("evaluation")
        if report:
            for tiou, value in zip(report["tiou_thresholds"], report["mAP"], strict=True):
                self.writer.add_scalar(f"eval/mAP@{tiou:g}", value, epoch)
            self.writer.add_scalar("eval/average_mAP", report["average_mAP"], epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _jsonable(stats: dict[str, Any]) -> dict[str, Any]:
    """An epoch's numbers for metrics.jsonl: the evaluation reduced to its summary (mAP per tIoU)."""
    entry = dict(stats)
    report = entry.get("evaluation")
    if report:
        entry["evaluation"] = {
            key: report[key] for key in ("subset", "tiou_thresholds", "mAP", "average_mAP")
        }
    return entry

"""The training loop: Adam or SGD, step learning-rate schedule, progress bar, log file, checkpoints,
exact resume and periodic evaluation with the best checkpoint kept.

A run directory holds::

    config.yaml    the resolved config (what was actually run)
    train.log      one line per epoch (loss terms, lr, throughput), per evaluation and every
                   ``train.log_every`` steps
    metrics.jsonl  one JSON line per epoch (engine/run_dir.py; TensorBoard too with train.tensorboard)
    last.pt        written atomically after every epoch; ``resume=True`` continues from it
    best.pt        the checkpoint with the best mAP at ``test.select_tiou`` (when evaluating)

Determinism: every RNG (torch, numpy, python, CUDA, the data loader's shuffling generator) is
seeded from ``train.seed`` and saved in each checkpoint, so on the CPU a run interrupted after
any epoch and resumed gives bit-identical weights to an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rc3d_af.config import Config, TrainConfig, config_from_dict, config_to_dict, save_config
from rc3d_af.data.dataset import WindowDataset, collate_windows
from rc3d_af.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from rc3d_af.engine.datasets import check_declared_shape, load_data, make_dataset
from rc3d_af.engine.inference import autocast, evaluate_results, infer_split
from rc3d_af.engine.run_dir import RunLog, format_losses, on_console
from rc3d_af.errors import InputError
from rc3d_af.models import build_model, describe_model

__all__ = ["Trainer", "resolve_device", "seed_everything"]

# What a resumed run may change (none of them changes the training itself).
RESUMABLE_CHANGES = ("epochs", "eval_every", "log_every", "tensorboard")


def resolve_device(name: str, source: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist. ``source``
    names where ``name`` came from in the error (``--device`` when given on the command line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{source}: {name!r} requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class EpochStats:
    """Mean loss terms of one epoch and its throughput."""

    epoch: int
    lr: float
    losses: dict[str, float]
    windows: int
    seconds: float
    evaluation: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "losses": self.losses,
            "windows": self.windows,
            "seconds": self.seconds,
            "evaluation": self.evaluation,
        }


class Trainer:
    """Trains the model of ``cfg`` and writes the run directory ``run_dir``.

    Args:
        cfg: the resolved config.
        run_dir: output folder (created).
        resume: continue from ``run_dir/last.pt``; the config must equal the checkpoint's except
            for ``train.epochs`` and ``train.eval_every`` (so a run can be extended).
        progress: show a tqdm progress bar per epoch.
        evaluate: ``report = evaluate(trainer)`` called every ``train.eval_every`` epochs; by
            default :meth:`evaluate_test_split`.
    """

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        evaluate: Callable[[Trainer], dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.train.device)
        # The data is read and checked before anything is written to the run folder.
        self.annotations, self.store = load_data(cfg.data)
        self.train_set = make_dataset(
            cfg.data, self.annotations, self.store, cfg.data.train_subset, training=True
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self._evaluate = evaluate or Trainer.evaluate_test_split
        self.logger = _file_logger(self.run_dir / "train.log")
        self.amp = cfg.train.amp and self.device.type == "cuda"
        if cfg.train.amp and not self.amp:
            self.logger.warning("train.amp is a CUDA option; training in float32 on %s", self.device)
        if cfg.train.num_threads is not None:
            torch.set_num_threads(cfg.train.num_threads)
        seed_everything(cfg.train.seed)

        self._test_set: WindowDataset | None = None
        check_declared_shape(cfg.data, len(self.annotations.class_names), self.store.dim)
        self.model = build_model(cfg.model, len(self.annotations.class_names), self.store.dim).to(self.device)
        self.optimizer = _optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.train.lr_milestones), gamma=cfg.train.lr_gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loader_generator = torch.Generator().manual_seed(cfg.train.seed)
        self.loader = DataLoader(
            self.train_set,
            batch_size=cfg.train.batch_size,
            shuffle=True,
            generator=self.loader_generator,
            collate_fn=collate_windows,
            num_workers=cfg.train.num_workers,
            drop_last=False,
        )
        self.epoch = 0  # epochs completed
        self.best: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []
        if resume:
            self._resume()
        unused = [m for m in cfg.train.lr_milestones if m >= cfg.train.epochs]
        if unused:
            self.logger.warning(
                "train.lr_milestones %s: at or after train.epochs = %d, so those lr steps never happen",
                unused, cfg.train.epochs,
            )  # fmt: skip
        self.run_log = RunLog(
            self.run_dir, self.logger, log_every=cfg.train.log_every, tensorboard=cfg.train.tensorboard,
            steps_per_epoch=len(self.loader), history=self.history,
        )  # fmt: skip
        save_config(cfg, self.run_dir / "config.yaml")

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the log file and TensorBoard writer (the trainer stays usable for inspection)."""
        self.run_log.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)

    # -- public API ------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train up to ``train.epochs``; returns the history (one dict per epoch, see EpochStats)."""
        cfg = self.cfg.train
        self.logger.info(
            "training %s on %d windows (%s, subset %s), %d parameters, device %s%s",
            describe_model(self.cfg.model),
            len(self.train_set),
            self.cfg.data.annotations,
            self.cfg.data.train_subset,
            sum(p.numel() for p in self.model.parameters()),
            self.device,
            ", AMP" if self.amp else "",
        )
        while self.epoch < cfg.epochs:
            stats = self.train_one_epoch()
            if cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                stats.evaluation = self._evaluate(self)
                self._log_evaluation(stats.evaluation)
            self.history.append(stats.as_dict())
            self._save_checkpoints(stats)
            self.run_log.epoch(self.history[-1])
        return self.history

    def train_one_epoch(self) -> EpochStats:
        """One pass over the training windows; updates ``self.epoch`` and the lr schedule."""
        self.model.train()
        epoch = self.epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        sums: dict[str, float] = {}
        batches = windows = 0
        start = time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch}/{self.cfg.train.epochs}",
            unit="batch",
            disable=None if self.progress else True,  # None: no bar when stderr is not a terminal
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            losses = self.train_step(batch)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            batches += 1
            windows += batch["features"].shape[0]
            rate = windows / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(format_losses(losses) + f" {rate:.0f} win/s")
            self.run_log.step(epoch, self.cfg.train.epochs, batches, lr, losses)
        bar.close()
        self.scheduler.step()
        self.epoch = epoch
        seconds = time.perf_counter() - start
        means = {name: value / max(batches, 1) for name, value in sums.items()}
        self.logger.info(
            "epoch %d/%d lr %.3g %s | %d windows in %.1f s (%.1f win/s)",
            epoch,
            self.cfg.train.epochs,
            lr,
            format_losses(means),
            windows,
            seconds,
            windows / max(seconds, 1e-9),
        )
        return EpochStats(epoch, lr, means, windows, seconds)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward, losses, backward and an optimizer step on one batch; returns the loss values."""
        features = batch["features"].to(self.device, non_blocking=True)
        gt_segments = [g.to(self.device) for g in batch["gt_segments"]]
        gt_labels = [g.to(self.device) for g in batch["gt_labels"]]
        diagnostics: dict[str, float] = {}
        with autocast(self.device, self.amp):
            weighted = self.model(features, gt_segments, gt_labels, diagnostics=diagnostics)
        total = sum(weighted.values())
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"epoch {self.epoch + 1}: non-finite loss {format_losses(diagnostics)}; "
                "lower train.lr or check the features for extreme values"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # The unweighted terms and counts the model reported, and what was optimised.
        return {**diagnostics, "total": float(total.detach())}

    @property
    def test_set(self) -> WindowDataset:
        """Windows of the test subset (built on first use)."""
        if self._test_set is None:
            self._test_set = make_dataset(
                self.cfg.data, self.annotations, self.store, self.cfg.data.test_subset, training=False
            )
        return self._test_set

    def evaluate_test_split(self) -> dict[str, Any]:
        """Inference on ``data.test_subset``; the report in the ``rc3d-af evaluate --json`` layout."""
        results = infer_split(self.model, self.cfg, self.annotations, self.test_set, self.device)
        return evaluate_results(self.cfg, self.annotations, results)

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (config, classes, input width) and to resume."""
        return {
            "epoch": self.epoch,
            "config": config_to_dict(self.cfg),
            "class_names": list(self.annotations.class_names),
            "in_channels": self.store.dim,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(self.loader_generator),
            "best": self.best,
            "history": self.history,
        }

    def _save_checkpoints(self, stats: EpochStats) -> None:
        state = self.state()
        if stats.evaluation is not None:
            score = selection_score(self.cfg, stats.evaluation)
            if self.best is None or score > self.best["score"]:
                self.best = {"epoch": stats.epoch, "score": score}
                state["best"] = self.best
                save_checkpoint(state, self.run_dir / "best.pt")
                self.logger.info(
                    "best so far: mAP@%g = %.4f at epoch %d", self.cfg.test.select_tiou, score, stats.epoch
                )
        save_checkpoint(state, self.run_dir / "last.pt")

    def _resume(self) -> None:
        path = self.run_dir / "last.pt"
        state = load_checkpoint(path, map_location=self.device)
        _check_resumable(config_from_dict(state["config"], source=str(path)), self.cfg, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"], self.loader_generator)
        self.epoch = int(state["epoch"])
        self.best = state["best"]
        self.history = list(state["history"])
        self.logger.info("resumed from %s after epoch %d", path, self.epoch)

    def _log_evaluation(self, report: dict[str, Any]) -> None:
        pairs = " ".join(
            f"{t:g}:{m:.4f}" for t, m in zip(report["tiou_thresholds"], report["mAP"], strict=True)
        )
        self.logger.info(
            "epoch %d evaluation on %s: mAP %s | average %.4f",
            self.epoch,
            report["subset"],
            pairs,
            report["average_mAP"],
        )


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (A2Net) or SGD with momentum (R-C3D.pytorch) over every parameter."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def selection_score(cfg: Config, report: dict[str, Any]) -> float:
    """mAP at ``test.select_tiou`` from an evaluation report (chooses the best checkpoint)."""
    for tiou, value in zip(report["tiou_thresholds"], report["mAP"], strict=True):
        if math.isclose(tiou, cfg.test.select_tiou):
            return float(value)
    raise InputError(f"test.select_tiou {cfg.test.select_tiou} is not among the evaluated thresholds")


def _check_resumable(saved: Config, current: Config, path: Path) -> None:
    saved_dict, current_dict = config_to_dict(saved), config_to_dict(current)
    for key in RESUMABLE_CHANGES:
        saved_dict["train"].pop(key)
        current_dict["train"].pop(key)
    for section, values in current_dict.items():
        for key, value in values.items():
            if saved_dict[section][key] != value:
                raise InputError(
                    f"--resume: {section}.{key} is {value!r} but {path} was trained with "
                    f"{saved_dict[section][key]!r}; only train.{', train.'.join(RESUMABLE_CHANGES)} may "
                    "change"
                )


def _file_logger(path: Path) -> logging.Logger:
    """A logger writing to ``path`` and to stderr, private to this run directory."""
    logger = logging.getLogger(f"rc3d_af.train.{path.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console.addFilter(on_console)
        logger.addHandler(file_handler)
        logger.addHandler(console)
    return logger

"""The training loop: Adam or SGD, step learning-rate schedule, progress bar, log file, checkpoints,
exact resume and periodic evaluation with the best checkpoint kept.

A run directory holds::

    config.yaml    the resolved config (what was actually run)
    train.log      one line per epoch (loss terms, lr, throughput), per evaluation and every
                   ``train.log_every`` steps
    metrics.jsonl  one JSON line per epoch (engine/run_dir.py; TensorBoard too with train.tensorboard)
    last.pt        written atomically after every epoch; ``resume=True`` continues from it
    best.pt        the checkpoint with the best mAP at ``test.select_tiou`` (when evaluating)

With ``train.ema_decay > 0`` the trainer also keeps an exponential moving average of the weights
(``torch.optim.swa_utils.AveragedModel``, updated after every optimizer step); evaluation during
training uses it, and checkpoints hold it as ``averaged_model`` beside the raw ``model``
(test, proposals and detect load the averaged weights when present).

Determinism: each epoch's shuffling and every random draw of a window's step (negative / RoI
sampling, dropout) come from generators seeded from (``train.seed``, epoch, window index)
(:mod:`rc3d_af.engine.batching`); every other RNG (torch, numpy, python, CUDA, the data loader's
generator) is seeded from ``train.seed`` and saved in each checkpoint, so on the CPU a run
interrupted after any epoch and resumed gives bit-identical weights to an uninterrupted run.

Data parallel (``torchrun --nproc_per_node=N -m rc3d_af train ...``, :mod:`rc3d_af.engine.distributed`):
``train.batch_size`` is the global batch, each process trains its share of it through
DistributedDataParallel, the loss normalisers count over the global batch
(:func:`rc3d_af.models.losses.global_counts`) and the gradients are summed over the processes, so
N processes follow one process's optimisation up to floating-point reduction order. Rank 0 alone
writes the run folder, the log and the progress bar; the others wait for it at a barrier after
each checkpoint. A process whose share of the last, shorter global batch is empty runs a stand-in
window with weight 0 so that every process takes part in every gradient reduction.
"""

from __future__ import annotations

import contextlib
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
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rc3d_af.config import Config, TrainConfig, config_from_dict, config_to_dict, save_config
from rc3d_af.data.dataset import WindowDataset
from rc3d_af.engine import distributed
from rc3d_af.engine.batching import GlobalBatchSampler, IndexedDataset, collate_indexed, window_generators
from rc3d_af.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from rc3d_af.engine.datasets import check_declared_shape, load_data, make_dataset
from rc3d_af.engine.inference import amp_dtype, autocast, denormals_flushed, evaluate_results, infer_split
from rc3d_af.engine.run_dir import RunLog, format_losses, on_console
from rc3d_af.errors import InputError
from rc3d_af.models import build_model, describe_model
from rc3d_af.models.losses import global_counts

__all__ = ["Trainer", "resolve_device", "seed_everything"]

# What a resumed run may change (none of them changes the training itself).
RESUMABLE_CHANGES = ("epochs", "eval_every", "log_every", "tensorboard")


def resolve_device(name: str, source: str = "train.device") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an explicit CUDA device must exist. Under torchrun
    each process takes ``cuda:LOCAL_RANK`` (``cuda`` or ``auto``; an explicit index is refused).
    ``source`` names where ``name`` came from in the error (``--device`` when given on the command
    line)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise InputError(f"{source}: {name!r} requested but CUDA is not available on this machine")
    if distributed.world_size() > 1:
        if device.index is not None:
            raise InputError(
                f"{source}: {name!r}: under torchrun each process uses the GPU of its LOCAL_RANK; give "
                "'cuda' or 'auto' (choose the GPUs with CUDA_VISIBLE_DEVICES)"
            )
        if distributed.local_rank() >= torch.cuda.device_count():
            raise InputError(
                f"{source}: process LOCAL_RANK {distributed.local_rank()} has no GPU (this machine has "
                f"{torch.cuda.device_count()}); start at most that many processes per node"
            )
        device = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(device)
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
    windows: int  # over every process
    seconds: float
    world_size: int = 1  # processes that trained the epoch
    evaluation: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "losses": self.losses,
            "windows": self.windows,
            "seconds": self.seconds,
            "world_size": self.world_size,
            "evaluation": self.evaluation,
        }


class Trainer:
    """Trains the model of ``cfg`` and writes the run directory ``run_dir``.

    Args:
        cfg: the resolved config.
        run_dir: output folder (created).
        resume: continue from ``run_dir/last.pt``; the config must equal the checkpoint's except
            for ``train.epochs`` and ``train.eval_every`` (so a run can be extended); the number of
            processes may differ.
        progress: show a tqdm progress bar per epoch (rank 0).
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
        self.world_size = distributed.world_size()
        self.is_main = distributed.is_main()
        distributed.check_divisible(cfg.train.batch_size)
        self.device = resolve_device(cfg.train.device)
        # The data is read and checked before anything is written to the run folder.
        self.annotations, self.store = load_data(cfg.data)
        self.train_set = make_dataset(
            cfg.data, self.annotations, self.store, cfg.data.train_subset, training=True
        )
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress and self.is_main
        self._evaluate = evaluate or Trainer.evaluate_test_split
        self.logger = _file_logger(self.run_dir / "train.log") if self.is_main else _silent_logger()
        self.amp = amp_dtype(cfg.train, self.device)  # the autocast dtype, None for float32
        if cfg.train.amp and self.amp is None:
            self.logger.warning(
                "train.amp with float16 is a CUDA option; training in float32 on %s (amp_dtype bfloat16 "
                "autocasts on the CPU too)", self.device,
            )  # fmt: skip
        if cfg.train.num_threads is not None:
            torch.set_num_threads(cfg.train.num_threads)
        seed_everything(cfg.train.seed)

        self._test_set: WindowDataset | None = None
        check_declared_shape(cfg.data, len(self.annotations.class_names), self.store.dim)
        self.model = build_model(cfg.model, len(self.annotations.class_names), self.store.dim).to(self.device)
        # What a training step calls: the model itself, or its DistributedDataParallel wrapper.
        self.network: torch.nn.Module = self.model
        if self.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=device_ids)
        self.optimizer = _optimizer(self.model, cfg.train)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.averaged = _moving_average(self.model, cfg.train.ema_decay)
        self.loader_generator = torch.Generator().manual_seed(cfg.train.seed)  # worker seeds only
        self.sampler = GlobalBatchSampler(
            len(self.train_set), cfg.train.batch_size, seed=cfg.train.seed,
            rank=distributed.rank(), world_size=self.world_size,
        )  # fmt: skip
        self.loader = DataLoader(
            IndexedDataset(self.train_set),
            batch_sampler=self.sampler,
            generator=self.loader_generator,
            collate_fn=collate_indexed,
            num_workers=cfg.train.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.train.num_workers > 0,
        )
        # Stepped after every optimizer step; an epoch has len(sampler) global batches on every process.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(cfg.train, len(self.sampler))
        )
        self._stand_in: dict[str, Any] | None = None
        self.epoch = 0  # epochs completed
        self.best: dict[str, float] | None = None
        self.history: list[dict[str, Any]] = []
        if resume:
            self._resume()
        stepped = cfg.train.lr_schedule == "step"
        unused = [m for m in cfg.train.lr_milestones if m >= cfg.train.epochs and stepped]
        if unused:
            self.logger.warning(
                "train.lr_milestones %s: at or after train.epochs = %d, so those lr steps never happen",
                unused, cfg.train.epochs,
            )  # fmt: skip
        self.run_log = RunLog(
            self.run_dir, self.logger, log_every=cfg.train.log_every, tensorboard=cfg.train.tensorboard,
            steps_per_epoch=len(self.loader), history=self.history,
        ) if self.is_main else None  # fmt: skip
        if self.is_main:
            save_config(cfg, self.run_dir / "config.yaml")

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the log file and TensorBoard writer (the trainer stays usable for inspection)."""
        if self.run_log is not None:
            self.run_log.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)

    # -- public API ------------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train up to ``train.epochs``; returns the history (one dict per epoch, see EpochStats)."""
        cfg = self.cfg.train
        self.logger.info(
            "training %s on %d windows (%s, subset %s), %d parameters, device %s%s%s",
            describe_model(self.cfg.model),
            len(self.train_set),
            self.cfg.data.annotations,
            self.cfg.data.train_subset,
            sum(p.numel() for p in self.model.parameters()),
            self.device,
            f", AMP {str(self.amp).removeprefix('torch.')}" if self.amp else "",
            f", {self.world_size} processes of {cfg.batch_size // self.world_size} windows per batch"
            if self.world_size > 1 else "",
        )
        while self.epoch < cfg.epochs:
            stats = self.train_one_epoch()
            if cfg.eval_every and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                stats.evaluation = self._evaluate(self)
                self._log_evaluation(stats.evaluation)
            self.history.append(stats.as_dict())
            if self.is_main:
                self._save_checkpoints(stats)
                self.run_log.epoch(self.history[-1])
            distributed.barrier()
        return self.history

    def train_one_epoch(self) -> EpochStats:
        """One pass over the training windows; updates ``self.epoch`` and the lr schedule."""
        self.model.train()
        epoch = self.epoch + 1
        self.sampler.set_epoch(epoch)
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
        sizes = [len(b) for b in self.sampler.global_batches()]  # windows of each global batch
        for batch in bar:
            step_lr = self.optimizer.param_groups[0]["lr"]  # the lr schedule moves every step
            with denormals_flushed(self.cfg.train.flush_denormal):
                losses = self.train_step(batch)
            windows += sizes[batches]
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value
            batches += 1
            rate = windows / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(format_losses(losses) + f" {rate:.0f} win/s")
            if self.run_log is not None:
                self.run_log.step(epoch, self.cfg.train.epochs, batches, step_lr, losses)
        bar.close()
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
        return EpochStats(epoch, lr, means, windows, seconds, self.world_size)

    def train_step(self, batch: dict[str, Any] | None) -> dict[str, float]:
        """Forward, losses, backward and an optimizer step on this process's share of one global
        batch (``collate_indexed``; None when the share is empty) of the epoch under way. Returns
        the loss values and counts of the whole global batch."""
        epoch = self.epoch + 1
        present = batch is not None
        if batch is None:
            batch = self._stand_in_batch()
        features = batch["features"].to(self.device, non_blocking=True)
        gt_segments = [g.to(self.device, non_blocking=True) for g in batch["gt_segments"]]
        gt_labels = [g.to(self.device, non_blocking=True) for g in batch["gt_labels"]]
        generators = window_generators(self.cfg.train.seed, epoch, batch["index"].tolist(), self.device)
        diagnostics: dict[str, float] = {}
        counts = (
            global_counts(lambda count: distributed.sum_count(count if present else 0))
            if self.world_size > 1
            else contextlib.nullcontext()
        )
        with counts, autocast(self.device, self.amp):
            weighted = self.network(
                features, gt_segments, gt_labels, generators=generators, diagnostics=diagnostics
            )
        total = sum(weighted.values())
        # The unweighted terms and counts the model reported, and what was optimised: each process
        # holds its part of every term (its sums over the global counts), their sum is the term.
        local = {**diagnostics, "total": float(total.detach())}
        losses = distributed.sum_values(local if present else dict.fromkeys(local, 0.0))
        if not math.isfinite(losses["total"]):
            raise FloatingPointError(
                f"epoch {epoch}: non-finite loss {format_losses(losses)}; "
                "lower train.lr or check the features for extreme values"
            )
        if self.world_size > 1:
            # DistributedDataParallel averages the gradients; the parts of a term must add up.
            total = total * (self.world_size if present else 0.0)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        return losses

    def _stand_in_batch(self) -> dict[str, Any]:
        """One training window, run with weight 0 by a process whose share of a batch is empty."""
        if self._stand_in is None:
            self._stand_in = collate_indexed([IndexedDataset(self.train_set)[0]])
        return self._stand_in

    @property
    def test_set(self) -> WindowDataset:
        """Windows of the test subset (built on first use)."""
        if self._test_set is None:
            self._test_set = make_dataset(
                self.cfg.data, self.annotations, self.store, self.cfg.data.test_subset, training=False
            )
        return self._test_set

    @property
    def inference_model(self) -> torch.nn.Module:
        """The weights that are evaluated: the moving average with ``train.ema_decay``, else the model."""
        return self.model if self.averaged is None else self.averaged.module

    def evaluate_test_split(self) -> dict[str, Any]:
        """Inference with :attr:`inference_model` on ``data.test_subset`` (sharded over the processes;
        every process gets the report); the report in the ``rc3d-af evaluate --json`` layout."""
        results = infer_split(self.inference_model, self.cfg, self.annotations, self.test_set, self.device)
        return evaluate_results(self.cfg, self.annotations, results)

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (config, classes, input width) and to resume."""
        state = {
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
        if self.averaged is not None:
            state["averaged_model"] = self.averaged.module.state_dict()
            state["averaged_steps"] = int(self.averaged.n_averaged)
        return state

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
        state = distributed.on_main(load_checkpoint, path)  # rank 0 reads it, every process gets it
        _check_resumable(config_from_dict(state["config"], source=str(path)), self.cfg, path)
        if "lr_lambdas" not in state["scheduler"]:
            raise InputError(
                f"--resume: {path} was written by an older rc3d_af whose lr schedule stepped per epoch; "
                "it cannot be resumed by this version (its weights still load for test and detect)"
            )
        self.load_state(state)
        self.logger.info("resumed from %s after epoch %d", path, self.epoch)

    def load_state(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`state` of this run: weights, optimizer, lr schedule, gradient scaler,
        moving average, RNGs, epochs done, best checkpoint and history."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.averaged is not None:
            self.averaged.module.load_state_dict(state["averaged_model"])
            self.averaged.n_averaged.fill_(int(state["averaged_steps"]))
        restore_rng_state(state["rng"], self.loader_generator)
        self.epoch = int(state["epoch"])
        self.best = state["best"]
        self.history = list(state["history"])

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


def _moving_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """The exponential moving average of ``model``'s weights and buffers (a copy on the model's
    device; its first update copies the weights), or None when ``decay`` is 0."""
    if decay == 0.0:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The lr multiplier of optimizer step ``step`` (0-based, over the whole run) under
    ``cfg.lr_schedule`` with ``cfg.warmup_epochs``; ``steps_per_epoch`` global batches per epoch.

    "step": ``lr_gamma`` once for every milestone at or before the step's epoch (epochs counted from
    0, so milestone 20 lowers lr from the 21st epoch on, as MultiStepLR stepped per epoch does);
    "cosine": ``(1 + cos(pi * step / total_steps)) / 2``. A warm-up multiplies the first
    ``round(warmup_epochs * steps_per_epoch)`` steps by ``(step + 1) / warm-up steps``.
    """
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if cfg.lr_schedule == "cosine":
            value = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        else:
            value = cfg.lr_gamma ** sum(step // steps_per_epoch >= m for m in cfg.lr_milestones)
        return value * (step + 1) / warmup if step < warmup else value

    return factor


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
    if current.train.lr_schedule == "cosine" and current.train.epochs != saved.train.epochs:
        raise InputError(
            f"--resume: train.epochs is {current.train.epochs} but {path} was trained with "
            f"{saved.train.epochs} under lr_schedule 'cosine', whose curve is laid over train.epochs; "
            "a cosine run resumes only with its own epochs"
        )
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


def _silent_logger() -> logging.Logger:
    """The run logger of a process other than rank 0: it writes nothing."""
    logger = logging.getLogger(f"rc3d_af.train.rank{distributed.rank()}")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


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

"""Scale-out benchmark: training throughput on 1 and 2 processes, the training step's overhead over a
bare forward + backward, and THUMOS14-test inference of the paper's A2Net end to end by stage.

Sections (``--sections``, all by default), each side by side in one run:

- ``train``: windows/s of ``rc3d-af train`` (the packaged ``a2net_synthetic`` and
  ``rc3d_af_synthetic`` configs on ``--train-videos`` synthetic THUMOS14-timed videos, 64-d) for
  1 process x 1 thread, 2 processes x 1 thread (torchrun, gloo) and 1 process x 2 threads on the CPU,
  and 1 and all GPUs (nccl) with ``--device cuda``; the second epoch's throughput, median of
  ``--repeat`` launches (the layouts interleaved).
- ``overhead``: one process, one thread: an epoch of ``Trainer.train_one_epoch`` (data loading,
  target assignment and sampling, losses, backward, optimizer step, logging every
  ``train.log_every`` steps) beside, batch by batch, a bare forward + backward + optimizer step of
  the network on the same batch (every stage a training forward runs, R-C3D + AF's proposal layer
  and its RoI head's dropout included, without assignment, sampling or losses; the loss a plain
  mean of its outputs; on a copy of the model and optimizer put in the real ones' state before
  every batch; the two steps of a batch in alternating order, so the machine's drift falls on
  both alike); the weights at the end must equal a plain run's, bit for bit. The difference, as a share of
  the bare steps, split into data loading + logging + the loop, the forward of targets + losses
  (two forward passes without gradients, with and without them) and the rest (their backward, the
  step's bookkeeping); the median over ``--repeat`` epochs; the goal is at most 10%.
- ``inference``: the paper's A2Net (THUMOS14 config, 65 M parameters, untrained: every candidate
  survives, the worst case for NMS) over the THUMOS14 test videos (213 videos at their real
  durations and fps, one 2048-d feature per 4 frames: 5,172 windows of 128 at stride 64; synthetic
  values) written as .npy files: reading windows, forward, window decoding, video merge (NMS), and
  the end-to-end ``infer_split``, on each ``--device``; ``--videos N`` measures N of them (spread
  over the lengths) when the whole set is too long for the machine.

Usage::

    python benchmarks/scale.py [--sections train overhead inference] [--device cpu cuda]
                               [--repeat 3] [--train-videos 40] [--videos 213] [--amp bfloat16]
                               [--work DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rc3d_af.config import Config, config_path, load_config
from rc3d_af.data.annotations import AnnotationSet, save_annotations_json
from rc3d_af.data.synthetic import generate_synthetic, resolve_like
from rc3d_af.engine.batching import window_generators
from rc3d_af.engine.datasets import load_data, make_dataset
from rc3d_af.engine.inference import assemble_videos, autocast, infer_split
from rc3d_af.engine.trainer import Trainer
from rc3d_af.models import build_model

CONFIGS = {"a2net": "a2net_synthetic", "rc3d_af": "rc3d_af_synthetic"}
PAPER = "a2net_thumos14_i3d"
FEATURE_DIM = 2048


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Wall time of one call of ``fn`` (CUDA work synchronised) and its result."""
    synchronize(device)
    start = time.perf_counter()
    value = fn()
    synchronize(device)
    return time.perf_counter() - start, value


# -- training throughput ------------------------------------------------------------------------
def train_data(args: argparse.Namespace) -> list[str]:
    """The synthetic training set (generated once in ``--work``), as config overrides."""
    annotations = Path(args.work) / "train_data" / "annotations.json"
    if not annotations.is_file():
        generate_synthetic(annotations.parent, like="thumos14", videos=args.train_videos, dim=64, seed=0)
    return [f"data.annotations={annotations}", f"data.features={annotations.parent / 'features'}"]


def launch_throughput(
    arch: str, processes: int, threads: int, device: str, args: argparse.Namespace, run: int
) -> float:
    """Windows/s of the second epoch of one ``rc3d-af train`` launch under torchrun."""
    out = Path(args.work) / "train_runs" / f"{arch}_{device}_{processes}x{threads}_{run}"
    overrides = [*train_data(args), "train.epochs=2", f"train.num_threads={threads}",
                 f"train.device={device}", "train.log_every=0", "train.eval_every=0"]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "rc3d_af", "train", str(config_path(CONFIGS[arch])), "--out", str(out), "--force",
               "--no-progress", *[part for o in overrides for part in ("--set", o)]]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}")
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    return last["windows"] / last["seconds"]


def train_section(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    layouts = []
    for name in args.device:
        if name == "cpu":
            layouts += [("cpu", 1, 1, "1 process x 1 thread"), ("cpu", 2, 1, "2 processes x 1 thread (gloo)"),
                        ("cpu", 1, 2, "1 process x 2 threads")]  # fmt: skip
        elif torch.cuda.is_available():
            gpus = torch.cuda.device_count()
            layouts.append(("cuda", 1, 1, f"1 GPU ({torch.cuda.get_device_name(0)})"))
            if gpus > 1:
                layouts.append(("cuda", gpus, 1, f"{gpus} GPUs (nccl)"))
    rates: dict[tuple[str, str], list[float]] = {}
    for run in range(args.repeat):  # interleaved: the machine's load drifts alike for all
        for arch in CONFIGS:
            for device, processes, threads, label in layouts:
                rate = launch_throughput(arch, processes, threads, device, args, run)
                rates.setdefault((label, arch), []).append(rate)
    table: dict[str, dict[str, float]] = {}
    for (label, arch), values in rates.items():
        table.setdefault(label, {})[f"{arch} (windows/s)"] = median(values)
    return table


# -- overhead of a training step ------------------------------------------------------------------
def dense_outputs(
    model: torch.nn.Module,
    features: torch.Tensor,
    rois: list[torch.Tensor] | None,
    generators: list[torch.Generator],
) -> list[torch.Tensor]:
    """Every stage of a training forward, without assignment, sampling or losses: A2Net's heads;
    R-C3D + AF's backbone, proposal network, proposal layer (decoding and NMS, as inference runs it
    too) and RoI head, which pools ``rois`` (the RoIs a training step of the batch sampled from those
    proposals) with its dropout drawn from ``generators`` as in a training step."""
    if rois is None:
        return [v for v in model.head_outputs(features).values() if v.requires_grad]
    backbone = model.backbone(features)
    raw = model.proposal_network(backbone)
    model.proposal_network.select(raw, features.size(2), model.cfg.proposals.settings(training=True))
    logits, deltas = model.roi_heads(backbone, rois, generators)
    return [*[v for v in raw.values() if v.requires_grad], logits, deltas]


def sampled_rois(
    model: torch.nn.Module, batch: tuple, generators: list[torch.Generator]
) -> list[torch.Tensor] | None:
    """The RoIs a training forward of ``batch`` pools (None for A2Net, which has no RoI head)."""
    if not hasattr(model, "roi_heads"):
        return None
    seen: list[list[torch.Tensor]] = []
    hook = model.roi_heads.pooler.register_forward_pre_hook(lambda module, args: seen.append(list(args[1])))
    try:
        with torch.no_grad():
            model(*batch, generators=generators)
    finally:
        hook.remove()
    return seen[0]


class PairedSteps:
    """Stands in for ``Trainer.train_step`` during an epoch of ``Trainer.train_one_epoch``: before
    each real step it runs, on a copy of the model and optimizer put in the real ones' state, the
    bare step of the same batch and the forward passes without gradients (dense, and with targets
    and losses), each timed; the bare and the real step of a batch in alternating order, so the
    machine's drift falls alike on both. ``times``: seconds summed per pass."""

    def __init__(self, trainer: Trainer, device: torch.device) -> None:
        self.trainer, self.device = trainer, device
        self.real_step = trainer.train_step
        # One deepcopy of both keeps the copy's optimizer pointing at the copy's parameters.
        self.model, self.optimizer = copy.deepcopy((trainer.model, trainer.optimizer))
        self.times: dict[str, float] = {}
        self.steps = 0

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        elapsed, value = seconds(fn, self.device)
        self.times[name] = self.times.get(name, 0.0) + elapsed
        return value

    def _sync(self) -> None:
        # The copy starts every batch where the real model is: its bare steps never accumulate (the
        # plain-mean loss drives the weights to ever larger values, whose arithmetic may cost more).
        # A copy of the optimizer's state: loading it keeps the tensors it is given (Adam's moments).
        self.model.load_state_dict(self.trainer.model.state_dict())
        self.optimizer.load_state_dict(copy.deepcopy(self.trainer.optimizer.state_dict()))

    def __call__(self, batch: dict[str, Any]) -> dict[str, float]:
        trainer, model = self.trainer, self.model
        moved = (batch["features"].to(self.device), [g.to(self.device) for g in batch["gt_segments"]],
                 [g.to(self.device) for g in batch["gt_labels"]])  # fmt: skip
        index = batch["index"].tolist()

        def generators() -> list[torch.Generator]:
            return window_generators(trainer.cfg.train.seed, trainer.epoch + 1, index, self.device)

        self._timed("set-up", self._sync)
        rois = self._timed("set-up", lambda: sampled_rois(model, moved, generators()))

        def bare() -> None:
            loss = sum(out.float().mean() for out in dense_outputs(model, moved[0], rois, generators()))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

        def forward(with_losses: bool) -> Callable[[], None]:
            @torch.no_grad()
            def run() -> None:
                if with_losses:
                    model(*moved, generators=generators())
                else:
                    dense_outputs(model, moved[0], rois, generators())

            return run

        self._timed("dense", forward(False))
        self._timed("losses", forward(True))
        if self.steps % 2 == 0:
            self._timed("bare", bare)
            losses = self._timed("step", lambda: self.real_step(batch))
        else:
            losses = self._timed("step", lambda: self.real_step(batch))
            self._timed("bare", bare)
        self.steps += 1
        return losses


def check_untouched(cfg: Config, measured: Trainer) -> None:
    """The passes run beside the real steps must leave the training as it is: the weights after
    the measured epochs equal those of a plain run of the same epochs, bit for bit."""
    with tempfile.TemporaryDirectory() as run_dir, Trainer(cfg, run_dir, progress=False) as plain:
        while plain.epoch < measured.epoch:
            plain.train_one_epoch()
        for name, value in plain.model.state_dict().items():
            if not torch.equal(value, measured.model.state_dict()[name]):
                raise RuntimeError(f"the side passes changed the training: {name} differs from a plain run")


def overhead_one(arch: str, device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    overrides = [*train_data(args), f"train.device={device}", "train.num_threads=1"]
    cfg = load_config(config_path(CONFIGS[arch]), overrides)
    ratios: dict[str, list[float]] = {}
    per_window: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as run_dir, Trainer(cfg, run_dir, progress=False) as trainer:
        trainer.train_one_epoch()  # warm-up
        windows = len(trainer.train_set)
        for _ in range(args.repeat):
            paired = PairedSteps(trainer, device)
            trainer.train_step = paired  # type: ignore[method-assign]  # shadows the method
            try:
                epoch, _ = seconds(trainer.train_one_epoch, device)
            finally:
                del trainer.train_step
            t = paired.times
            # The real epoch (loading, steps, logging) is what remains of the whole once the passes
            # run beside it are taken out.
            full = epoch - sum(v for k, v in t.items() if k != "step")
            parts = {
                "overhead": full / t["bare"] - 1.0,
                "  data loading, logging, the loop": (full - t["step"]) / t["bare"],
                "  targets + losses (forward)": (t["losses"] - t["dense"]) / t["bare"],
                "  their backward, the step's bookkeeping": (t["step"] - t["bare"] - t["losses"] + t["dense"])
                / t["bare"],
            }
            for name, value in parts.items():
                ratios.setdefault(name, []).append(value)
            per_window.setdefault("bare", []).append(t["bare"] / windows)
            per_window.setdefault("full", []).append(full / windows)
        check_untouched(cfg, trainer)
    return {
        "bare forward + backward (ms/window)": 1e3 * median(per_window["bare"]),
        "training step (ms/window)": 1e3 * median(per_window["full"]),
        **{name: median(values) for name, values in ratios.items()},
    }


def overhead_section(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    threads = torch.get_num_threads()
    try:
        for name in args.device:
            device = torch.device(name)
            if device.type == "cuda" and not torch.cuda.is_available():
                continue
            for arch in CONFIGS:
                table[f"{arch}, {name} (1 thread)"] = overhead_one(arch, device, args)
    finally:
        torch.set_num_threads(threads)  # the trainer set train.num_threads
    return table


# -- THUMOS14-test inference of the paper's A2Net ---------------------------------------------------
def thumos14_test(args: argparse.Namespace) -> Path:
    """The test videos' annotations and (T, 2048) synthetic features, T = frames // 4 (written once)."""
    folder = Path(args.work) / f"thumos14_test_{args.videos}"
    annotations = folder / "annotations.json"
    if annotations.is_file():
        return annotations
    timings = resolve_like("thumos14")
    test = sorted((v for v in timings.videos.values() if v.subset == "test"), key=lambda v: v.duration)
    keep = [test[i] for i in np.linspace(0, len(test) - 1, args.videos).round().astype(int)]
    (folder / "features").mkdir(parents=True, exist_ok=True)
    # Values from one random block, each video starting elsewhere in it: the speed does not depend
    # on them, and drawing 690 M fresh numbers for the whole set would dominate the benchmark.
    block = np.random.default_rng(0).standard_normal((4099, FEATURE_DIM), np.float32)
    for i, video in enumerate(keep):
        length = math.floor(video.duration * video.fps) // 4
        rows = (np.arange(length) + 997 * i) % len(block)
        np.save(folder / "features" / f"{video.video_id}.npy", block[rows])
    save_annotations_json(AnnotationSet({v.video_id: v for v in keep}, timings.class_names), annotations)
    return annotations


def inference_one(device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    path = thumos14_test(args)
    overrides = [f"data.annotations={path}", f"data.features={path.parent / 'features'}",
                 "data.video_info=null", "data.streams=[]", "data.train_subset=test"]  # fmt: skip
    cfg = load_config(config_path(PAPER), overrides)
    annotations, store = load_data(cfg.data)
    dataset = make_dataset(cfg.data, annotations, store, "test", training=False)
    torch.manual_seed(0)
    model = build_model(cfg.model, len(annotations.class_names), store.dim).to(device).eval()
    amp = getattr(torch, args.amp) if args.amp else None
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.test.batch_size, collate_fn=_collate, num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    reading, batches = seconds(lambda: [b.to(device, non_blocking=True) for b in loader], device)
    with torch.no_grad(), autocast(device, amp):
        forward, outputs = seconds(lambda: [model.head_outputs(b) for b in batches], device)
        decoding, windows = seconds(lambda: [d for out in outputs for d in model.predict(out)], device)
    merge, _ = seconds(
        lambda: assemble_videos(windows, dataset, annotations, cfg.data.feature_spec, cfg.model), device
    )
    cfg = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, amp=amp is not None, amp_dtype=args.amp or "float16")
    )
    total, _ = seconds(lambda: infer_split(model, cfg, annotations, dataset, device), device)
    stages = {"reading windows": reading, "forward": forward, "window decoding": decoding,
              "video merge + NMS": merge}  # fmt: skip
    result = {"videos": float(len(annotations.videos)), "windows": float(len(dataset)),
              "end to end (s)": total, "windows/s": len(dataset) / total}  # fmt: skip
    result |= {f"{name} (s)": value for name, value in stages.items()}
    result |= {f"{name} share": value / sum(stages.values()) for name, value in stages.items()}
    if len(dataset) < 5172:
        result["213 videos, extrapolated (s)"] = total / len(dataset) * 5172
    return result


def _collate(items: list[dict[str, Any]]) -> torch.Tensor:
    return torch.stack([item["features"] for item in items])


def inference_section(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for name in args.device:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            continue
        label = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)"
        )
        table[label + (f", {args.amp}" if args.amp else "")] = inference_one(device, args)
    return table


# -- output ------------------------------------------------------------------------------------------
def format_table(title: str, table: dict[str, dict[str, float]]) -> str:
    columns = list(table)
    rows = list(dict.fromkeys(key for values in table.values() for key in values))
    lines = [f"## {title}", "", "| | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = table[column].get(row)
            if value is None:
                cells.append("")
            elif "share" in row or row.startswith("  ") or row == "overhead":
                cells.append(f"{value:.1%}")
            else:
                cells.append(f"{value:.0f}" if value >= 100 else f"{value:.2f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def transpose(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row, values in table.items():
        for column, value in values.items():
            out.setdefault(column, {})[row] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=["train", "overhead", "inference"],
                        choices=["train", "overhead", "inference"])  # fmt: skip
    parser.add_argument("--device", nargs="+", default=["cpu"], help="cpu and/or cuda")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (median reported)")
    parser.add_argument("--train-videos", type=int, default=40, help="synthetic videos of the train sections")
    parser.add_argument(
        "--videos", type=int, default=213, help="THUMOS14 test videos of the inference section"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="data-loading processes of the inference section"
    )
    parser.add_argument(
        "--amp", choices=["bfloat16", "float16"], help="autocast dtype of the inference section"
    )
    parser.add_argument("--work", default=None, help="folder for data and runs (default: a temporary one)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if not 1 <= args.videos <= 213:
        parser.error("--videos: between 1 and 213")
    with tempfile.TemporaryDirectory() as scratch:
        args.work = args.work or scratch
        sections = {
            "train": ("training throughput (second epoch, median)", lambda: train_section(args)),
            "overhead": ("training step over a bare forward + backward (one process)",
                         lambda: overhead_section(args)),
            "inference": ("THUMOS14 test, the paper's A2Net, end to end", lambda: inference_section(args)),
        }  # fmt: skip
        results = {}
        for name in args.sections:
            title, run = sections[name]
            results[name] = run()
            print(
                format_table(title, transpose(results[name]) if name == "train" else results[name]),
                flush=True,
            )
            print(flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "args": vars(args)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

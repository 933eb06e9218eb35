"""ActionFormer's side of the peers benchmark, run in ActionFormer's own environment (never rc3d_af's).

``benchmarks/peers.py`` starts this script with the interpreter of a separate virtual environment
that holds the PyPI package ``actionformer==1.5.0`` and a CPU torch; the product never imports
ActionFormer. Everything here is ActionFormer's own code, called as its ``actionformer-train``
and ``actionformer-eval`` commands call it, with the differences that a CPU-only run needs:

* ``torch.cuda.synchronize`` (called by its loops to time their log lines) is a no-op without CUDA;
* the model is not wrapped in ``nn.DataParallel`` (which does nothing without CUDA devices);
* no TensorBoard writer;
* checkpoints are loaded onto the CPU and with ``weights_only=True`` (its CLI maps them to CUDA);
* inference keeps the raw (final) weights or the EMA weights as asked (its CLI always takes EMA),
  and writes JSON (seconds, class ids, scores) instead of its pickle.

Usage (``CONFIG`` is an ActionFormer YAML config, read by its ``load_config`` over its defaults)::

    python peers_actionformer.py train CONFIG --out DIR [--threads N]
        -> DIR/final.pt ({"epoch", "state_dict", "state_dict_ema"}), DIR/train.json
    python peers_actionformer.py infer CONFIG --checkpoint DIR/final.pt --weights raw|ema --out FILE
        -> FILE: {"seconds", "cpu_seconds", "videos": {video_id: {"segments", "scores", "labels"}}}

``train.json`` holds the parameter count, iterations per epoch, the process's own CPU seconds
(``time.process_time``: data-loader workers are separate processes, counted by the caller) and wall
seconds of the training loop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def _cpu_only_shims() -> None:
    """``torch.cuda.synchronize`` as a no-op when CUDA is absent (ActionFormer times with it)."""
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda device=None: None


def _build(cfg: dict, training: bool, split_key: str):
    """ActionFormer's dataset and model for ``cfg``, as its train/eval commands build them."""
    from actionformer.datasets import make_dataset
    from actionformer.modeling import make_meta_arch

    dataset = make_dataset(cfg["dataset_name"], training, cfg[split_key], **cfg["dataset"])
    cfg["model"]["train_cfg"]["head_empty_cls"] = dataset.get_attributes()["empty_label_ids"]
    model = make_meta_arch(cfg["model_name"], **cfg["model"])
    return dataset, model


def train(args: argparse.Namespace) -> None:
    """ActionFormer's training: its loader, AdamW with its decay groups, warm-up + cosine schedule
    stepped per iteration, EMA of the weights, gradient clipping, ``train_one_epoch``."""
    from actionformer.core import load_config
    from actionformer.datasets import make_data_loader
    from actionformer.utils import (
        ModelEma,
        fix_random_seed,
        make_optimizer,
        make_scheduler,
        train_one_epoch,
    )

    cfg = load_config(str(args.config))
    rng_generator = fix_random_seed(cfg["init_rand_seed"], include_cuda=True)  # as its train.py: first
    dataset, model = _build(cfg, True, "train_split")
    loader = make_data_loader(dataset, True, rng_generator, **cfg["loader"])
    optimizer = make_optimizer(model, cfg["opt"])
    scheduler = make_scheduler(optimizer, cfg["opt"], len(loader))
    model_ema = ModelEma(model)
    epochs = cfg["opt"]["epochs"] + cfg["opt"]["warmup_epochs"]
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        train_one_epoch(
            loader,
            model,
            optimizer,
            scheduler,
            epoch,
            model_ema=model_ema,
            clip_grad_l2norm=cfg["train_cfg"]["clip_grad_l2norm"],
            tb_writer=None,
            print_freq=args.print_freq,
        )
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    args.out.mkdir(parents=True, exist_ok=True)
    state = {
        "epoch": epochs,
        "state_dict": model.state_dict(),
        "state_dict_ema": model_ema.module.state_dict(),
    }
    torch.save(state, args.out / "final.pt")
    summary = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "iterations_per_epoch": len(loader),
        "train_videos": len(dataset),
        "loop_wall_seconds": wall,
        "loop_process_cpu_seconds": cpu,
        "threads": torch.get_num_threads(),
    }
    (args.out / "train.json").write_text(json.dumps(summary, indent=1) + "\n")


@torch.no_grad()
def infer(args: argparse.Namespace) -> None:
    """The test split through ActionFormer's inference (batch 1, its NMS and conversion to seconds)."""
    from actionformer.core import load_config
    from actionformer.datasets import make_data_loader
    from actionformer.utils import fix_random_seed

    cfg = load_config(str(args.config))
    fix_random_seed(0, include_cuda=True)  # as its eval.py
    dataset, model = _build(cfg, False, "val_split")
    loader = make_data_loader(dataset, False, None, 1, cfg["loader"]["num_workers"])
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict_ema" if args.weights == "ema" else "state_dict"])
    model.eval()
    videos = {}
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for video_list in loader:
        for output in model(video_list):
            videos[output["video_id"]] = {
                "segments": output["segments"].tolist(),
                "scores": output["scores"].tolist(),
                "labels": output["labels"].tolist(),
            }
    document = {
        "weights": args.weights,
        "seconds": time.perf_counter() - start_wall,
        "cpu_seconds": time.process_time() - start_cpu,
        "videos": videos,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train")
    infer_parser = sub.add_parser("infer")
    for p in (train_parser, infer_parser):
        p.add_argument("config", type=Path)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    train_parser.add_argument("--print-freq", type=int, default=50, help="iterations between log lines")
    infer_parser.add_argument("--checkpoint", type=Path, required=True)
    infer_parser.add_argument("--weights", choices=("raw", "ema"), required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _cpu_only_shims()
    {"train": train, "infer": infer}[args.command](args)


if __name__ == "__main__":
    main()

"""benchmarks/scale.py's overhead section: its side passes must leave the training untouched, and
the check of that must fail when the training is changed."""

from __future__ import annotations

import argparse
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from rc3d_af.config import config_path, load_config
from rc3d_af.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_scale", ROOT / "benchmarks/scale.py")
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


@pytest.fixture(scope="module")
def args(tmp_path_factory: pytest.TempPathFactory) -> argparse.Namespace:
    return argparse.Namespace(work=str(tmp_path_factory.mktemp("scale")), train_videos=3, repeat=2)


@pytest.mark.parametrize("arch", ["a2net", "rc3d_af"])
def test_overhead_passes_leave_the_training_as_it_is(arch: str, args: argparse.Namespace) -> None:
    # overhead_one trains 1 + repeat epochs with the side passes, then compares the weights with a
    # plain run of as many epochs (check_untouched raises on any difference).
    row = scale.overhead_one(arch, torch.device("cpu"), args)
    assert row["bare forward + backward (ms/window)"] > 0
    assert row["training step (ms/window)"] > 0
    parts = [v for k, v in row.items() if k.startswith("  ")]
    assert len(parts) == 3 and all(math.isfinite(v) for v in parts)


def test_check_untouched_sees_a_changed_weight(args: argparse.Namespace) -> None:
    cfg = load_config(config_path("a2net_synthetic"), [*scale.train_data(args), "train.num_threads=1"])
    with Trainer(cfg, Path(args.work) / "changed", progress=False) as trainer:
        trainer.train_one_epoch()
        scale.check_untouched(cfg, trainer)  # the same training: passes
        with torch.no_grad():
            next(trainer.model.parameters()).view(-1)[0] += 1e-6
        with pytest.raises(RuntimeError, match="changed the training"):
            scale.check_untouched(cfg, trainer)

"""The main job's headline over training seeds: `make demo`'s recipe per seed, mean and spread.

Runs the demo's models (``rc3d_af.commands.demo.run_model``: the packaged synthetic configs on the
demo's benchmark) once per training seed and prints, per model, mAP at tIoU 0.1..0.7 for every
seed, then the mean, the sample standard deviation and the spread (max - min) of mAP@0.5, beside
the shuffled-label chance level, and the CPU-seconds of training. A finished seed (its
``metrics.json`` present) is read back, not retrained, unless ``--force``. Seed ``k`` of a model trains
in ``<out>/<model>/seed<k>`` (checkpoints and results together), the layout of ``rc3d-af ablation``:
an ablation given the same ``--out`` and data paths reuses these runs for its A2Net and R-C3D + AF
rows (``data`` holds the benchmark: ``--set data.annotations=<out>/data/annotations.json``).

Usage::

    python benchmarks/demo_seeds.py [--seeds 0,1,2] [--models a2net,rc3d_af] [--jobs 2]
                                    [--out runs/demo_seeds] [--json out.json] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rc3d_af.commands.ablation import mean_std
from rc3d_af.commands.demo import DEMO_SCENE, DEMO_SIGNAL, MODELS, NAMES, _benchmark, run_model
from rc3d_af.commands.workers import worker_pool
from rc3d_af.config import config_path
from rc3d_af.data.synthetic import SynthParams


def runs(args: argparse.Namespace) -> dict[str, dict[int, dict[str, Any]]]:
    """``{model: {seed: metrics}}``, training what is not finished (``--jobs`` processes at once)."""
    annotations = _benchmark(
        args.out / "data", 64, 0, None, SynthParams(signal=DEMO_SIGNAL, scene=DEMO_SCENE)
    )
    data = [f"data.annotations={annotations}", f"data.features={annotations.parent / 'features'}"]
    tasks, done = [], {}
    for seed in args.seeds:
        for model in args.models:
            out = args.out / model / f"seed{seed}"
            if (out / "metrics.json").is_file() and not args.force:
                done[(model, seed)] = json.loads((out / "metrics.json").read_text())
                continue
            arch = [f"model.arch={model}"] if model.startswith("rc3d") else []
            overrides = [*data, *arch, *args.overrides, f"train.seed={seed}"]
            tasks.append(((model, seed), (model, config_path(MODELS[model]), overrides, out)))
    with worker_pool(args.jobs) as pool:
        futures = {
            key: pool.submit(run_model, *task, progress=False, train_dir=task[3]) for key, task in tasks
        }
        done.update({key: future.result() for key, future in futures.items()})
    return {m: {s: done[(m, s)] for s in args.seeds} for m in args.models}


def format_table(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    lines = []
    for model, per_seed in results.items():
        first = next(iter(per_seed.values()))
        tious = first["tiou_thresholds"]
        at = tious.index(0.5)
        lines += ["", f"{NAMES[model]} ({model}): mAP (%) on the test split (213 videos, 3,358 instances)"]
        lines.append(
            f"{'seed':<8}" + "".join(f"{t:>7g}" for t in tious) + f"{'avg':>7}{'shuffled':>10}{'CPU-s':>8}"
        )
        for seed, m in per_seed.items():
            shuffled = m["baselines"]["shuffled_labels"]["mAP"][at]
            lines.append(
                f"{seed:<8}"
                + "".join(f"{100 * v:>7.1f}" for v in m["mAP"])
                + f"{100 * m['average_mAP']:>7.1f}"
                f"{100 * shuffled:>10.1f}{m['cpu_seconds']['train']:>8.0f}"
            )
        at_05 = np.array([m["mAP"][at] for m in per_seed.values()])
        stats = mean_std(at_05)
        lines.append(
            f"mAP@0.5 over {len(at_05)} seeds: mean {stats['mean']:.3f}, std {stats['std']:.3f}, "
            f"spread (max - min) {at_05.max() - at_05.min():.3f}, min {at_05.min():.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", type=lambda t: [int(s) for s in t.split(",")])
    parser.add_argument("--models", default="a2net,rc3d_af", type=lambda t: t.split(","))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--force", action="store_true", help="retrain finished seeds")
    parser.add_argument("--json", type=Path, help="also write every seed's numbers here")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    results = runs(args)
    print(format_table(results))
    if args.json:
        summary = {
            model: {str(seed): {k: m[k] for k in ("mAP", "average_mAP", "cpu_seconds", "wall_seconds")}
                    for seed, m in per_seed.items()}
            for model, per_seed in results.items()
        }  # fmt: skip
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job: synthetic THUMOS14-timed benchmark, A2Net trained on the CPU, evaluation, chance baselines.

Steps: (1) generate the benchmark into ``<out>/data`` with the real THUMOS14 timings shipped in the
package (reused when it already exists with the same settings); (2) train the config (default
``a2net_synthetic``, the packaged ``configs/a2net_synthetic.yaml``) on its training split
("validation", as THUMOS14); (3) run it on the test split, write ``results.json``, ``metrics.json``
(the ``rc3d-af evaluate --json`` layout plus ``baselines`` and ``wall_seconds``) and the plots to
``<out>``, and print the mAP and duration tables beside what the same predictions score with
labels or videos shuffled.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rc3d_af.commands import add_overrides_argument

if TYPE_CHECKING:
    from rc3d_af.data.synthetic import SynthParams

DEFAULT_CONFIG = "a2net_synthetic"  # a packaged config's name (rc3d_af.config.config_path)
# The generator's calibration (rc3d_af.data.synthetic.SynthParams): a per-feature linear probe scores
# mAP@0.5 0.19 at its default signal 3.0 and 0.27 at 4.5. At 3.0 the CPU-sized A2Net of the demo,
# trained for ~2000 steps, memorizes the per-video scene offsets of the 200 training videos (train
# class accuracy ~60%, test ~30%) and stays near 0.11. Measured with this config (12 epochs, D=64,
# 1 thread): signal 4.5 / scene 0.25 -> mAP@0.5 0.263; 5.5 / 0.25 -> 0.306; 6.0 / 0.25 -> 0.334
# (labels shuffled: 0.011, videos shuffled: 0.001). The demo uses the last, with a margin over 0.3.
DEMO_SIGNAL = 6.0
DEMO_SCENE = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default=DEFAULT_CONFIG, help="training config, a file or a packaged config's name "
        "(default: %(default)s)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default: %(default)s)"
    )
    add_overrides_argument(parser, help="override a config value, e.g. --set train.epochs=4")
    parser.add_argument(
        "--dim", type=int, default=64, help="synthetic feature width D (default: %(default)s)"
    )
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic benchmark")
    parser.add_argument(
        "--signal",
        type=float,
        default=DEMO_SIGNAL,
        help="class signal norm of the benchmark, in noise standard deviations (default: %(default)s)",
    )
    parser.add_argument(
        "--scene",
        type=float,
        default=DEMO_SCENE,
        help="per-dimension std of the per-shot scene offsets of the benchmark (default: %(default)s)",
    )
    parser.add_argument("--videos", type=int, help="use only this many videos (quick runs; default: all 413)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def run(args: argparse.Namespace) -> int:
    from rc3d_af.config import config_path, load_config
    from rc3d_af.data.synthetic import SynthParams
    from rc3d_af.engine.baselines import shuffle_labels, shuffle_videos
    from rc3d_af.engine.inference import evaluate_results, infer_split
    from rc3d_af.engine.report import print_report, write_evaluation
    from rc3d_af.engine.trainer import Trainer

    start = time.perf_counter()
    config = config_path(args.config)  # before the benchmark is generated
    params = SynthParams(signal=args.signal, scene=args.scene)  # other knobs: the generator's defaults
    annotation_path = _benchmark(args.out / "data", args.dim, args.data_seed, args.videos, params)
    data_seconds = time.perf_counter() - start
    overrides = [
        f"data.annotations={annotation_path}",
        f"data.features={annotation_path.parent / 'features'}",
    ]
    cfg = load_config(config, [*overrides, *args.overrides])

    with Trainer(cfg, args.out / "train", progress=not args.no_progress) as trainer:
        trainer.fit()
        train_seconds = time.perf_counter() - start - data_seconds
        results = infer_split(trainer.model, cfg, trainer.annotations, trainer.test_set, trainer.device)
        report = evaluate_results(cfg, trainer.annotations, results)
        baselines = {
            "shuffled_labels": evaluate_results(cfg, trainer.annotations, shuffle_labels(results, seed=0)),
            "shuffled_videos": evaluate_results(
                cfg, trainer.annotations, shuffle_videos(results, trainer.annotations, seed=0)
            ),
        }
    report["baselines"] = {
        name: {"mAP": b["mAP"], "average_mAP": b["average_mAP"], "by_duration": b.get("by_duration")}
        for name, b in baselines.items()
    }
    total = time.perf_counter() - start
    report["wall_seconds"] = {
        "data": round(data_seconds, 1),
        "train": round(train_seconds, 1),
        "test": round(total - data_seconds - train_seconds, 1),
        "total": round(total, 1),
        # CPU seconds of this process (all threads): what the run costs on an otherwise idle machine.
        "cpu": round(time.process_time(), 1),
    }
    write_evaluation(args.out, results, report)
    print_report(report)
    print(_baseline_table(report))
    print(
        f"\nwall time {total / 60:.1f} min (data {data_seconds:.0f} s, train {train_seconds:.0f} s, "
        f"test {report['wall_seconds']['test']:.0f} s); results, metrics.json and plots in {args.out}"
    )
    return 0


def _benchmark(data_dir: Path, dim: int, seed: int, videos: int | None, params: SynthParams) -> Path:
    """The synthetic THUMOS14-timed benchmark in ``data_dir``: reused when its recorded settings
    (``synthetic.json``) match, generated otherwise. Returns its annotations path."""
    import json
    from dataclasses import asdict

    from rc3d_af.data.synthetic import generate_synthetic

    wanted = {
        "dim": dim,
        "seed": seed,
        "timings": "thumos14",
        "params": asdict(params),
        "requested_videos": videos,
    }
    info_path = data_dir / "synthetic.json"
    annotation_path = data_dir / "annotations.json"
    if info_path.is_file() and annotation_path.is_file():
        info = json.loads(info_path.read_text())
        if {key: info.get(key) for key in wanted} == wanted:
            print(f"reusing the synthetic benchmark in {data_dir}")
            return annotation_path
    print(f"generating the synthetic THUMOS14-timed benchmark in {data_dir} (D={dim}, seed {seed}, {params})")
    path = generate_synthetic(data_dir, like="thumos14", videos=videos, dim=dim, seed=seed, params=params)
    info = json.loads(info_path.read_text())
    info["requested_videos"] = videos
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return path


def _baseline_table(report: dict) -> str:
    """mAP per tIoU of the detector beside its shuffled-prediction baselines."""
    tious = report["tiou_thresholds"]
    rows = [("A2Net (this run)", report["mAP"], report["average_mAP"])]
    names = {"shuffled_labels": "labels shuffled", "shuffled_videos": "videos shuffled"}
    rows += [(names[k], v["mAP"], v["average_mAP"]) for k, v in report["baselines"].items()]
    header = f"{'predictions':<20}" + "".join(f"{t:>8g}" for t in tious) + f"{'avg':>8}"
    lines = ["", "mAP of the same predictions shuffled (chance level of this benchmark):", header]
    for name, values, average in rows:
        lines.append(f"{name:<20}" + "".join(f"{_pct(v):>8}" for v in values) + f"{_pct(average):>8}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"

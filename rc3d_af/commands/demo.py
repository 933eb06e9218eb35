"""The main job: the synthetic THUMOS14-timed benchmark, A2Net and R-C3D + AF trained on the CPU, evaluated.

Steps: (1) generate the benchmark into ``<out>/data`` with the real THUMOS14 timings shipped in the
package (reused when it already exists with the same settings); (2) train each model of
``--models`` (default ``a2net`` with the packaged ``a2net_synthetic`` config and ``rc3d_af`` with
``rc3d_af_synthetic``) on the training split ("validation", as THUMOS14), in parallel processes
(``--jobs``, one per model by default on a machine with that many cores); (3) run each model on the
test split and write, per model, ``<out>/<model>/`` ``results.json``, ``metrics.json`` (the
``rc3d-af evaluate --json`` layout plus ``baselines``, ``wall_seconds`` and ``cpu_seconds``) and the
plots; for R-C3D + AF also its proposal network's ``proposals.json``, ``proposals_metrics.json``
(AR@AN / AUC, THUMOS14 tIoU 0.5:0.05:1.0) and ``ar_an.png``; (4) print every mAP table beside what
the same predictions score with labels or videos shuffled, and the AR@AN table. Each model's
training folder ``<out>/<model>/train`` is started afresh.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc3d_af.commands import add_overrides_argument

if TYPE_CHECKING:
    from rc3d_af.data.synthetic import SynthParams

MODELS = {"a2net": "a2net_synthetic", "rc3d_af": "rc3d_af_synthetic", "rc3d": "rc3d_af_synthetic"}
NAMES = {"a2net": "A2Net", "rc3d_af": "R-C3D + AF", "rc3d": "R-C3D"}
# The generator's calibration (rc3d_af.data.synthetic.SynthParams): a per-feature linear probe scores
# mAP@0.5 0.19 at its default signal 3.0 and 0.27 at 4.5. At 3.0 the CPU-sized A2Net of the demo,
# trained for ~2000 steps, memorizes the per-video scene offsets of the 200 training videos (train
# class accuracy ~60%, test ~30%) and stays near 0.11. The demo uses signal 6.0 / scene 0.25.
DEMO_SIGNAL = 6.0
DEMO_SCENE = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="a2net,rc3d_af",
        help="models to train, comma-separated, of " + ", ".join(MODELS) + " (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default: %(default)s)"
    )
    add_overrides_argument(parser, help="override a value of every model's config, e.g. --set train.epochs=4")
    parser.add_argument("--seed", type=int, help="training seed of every model (default: its config's)")
    parser.add_argument(
        "--jobs", type=int, help="models trained at once, one process each (default: min(models, CPU cores))"
    )
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
    from rc3d_af.commands.workers import worker_pool
    from rc3d_af.config import config_path
    from rc3d_af.data.synthetic import SynthParams
    from rc3d_af.errors import InputError

    start = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown or len(set(models)) != len(models):
        raise InputError(f"--models: expected distinct names of {', '.join(MODELS)}, got {args.models!r}")
    jobs = args.jobs or min(len(models), os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"--jobs: expected a positive number of processes, got {jobs}")
    configs = {m: config_path(MODELS[m]) for m in models}  # before the benchmark is generated
    params = SynthParams(signal=args.signal, scene=args.scene)  # other knobs: the generator's defaults
    annotation_path = _benchmark(args.out / "data", args.dim, args.data_seed, args.videos, params)
    overrides = [
        f"data.annotations={annotation_path}",
        f"data.features={annotation_path.parent / 'features'}",
        *args.overrides,
        *([f"train.seed={args.seed}"] if args.seed is not None else []),
    ]
    tasks = [
        (m, configs[m], [*overrides, f"model.arch={m}"] if m.startswith("rc3d") else overrides, args.out / m)
        for m in models
    ]
    progress = not args.no_progress and jobs == 1  # parallel bars would interleave: log lines then
    if jobs == 1:
        reports = [run_model(*task, progress=progress) for task in tasks]
    else:
        with worker_pool(jobs) as pool:
            futures = [pool.submit(run_model, *task, progress=False) for task in tasks]
            reports = [future.result() for future in futures]
    for model, report in zip(models, reports, strict=True):
        print(f"\n== {NAMES[model]} ({model}) ==")
        _print_model(report)
    total = time.perf_counter() - start
    print(
        f"\nwall time {total / 60:.1f} min for {len(models)} model(s) on {jobs} process(es) "
        f"(data {reports[0]['wall_seconds']['data_ready']:.0f} s); per model in {args.out}/<model>/: "
        "results.json, metrics.json, plots"
    )
    return 0


def run_model(
    model: str,
    config: Path,
    overrides: list[str],
    out: Path,
    *,
    progress: bool,
    train_dir: Path | None = None,
) -> dict[str, Any]:
    """Train ``model`` from ``config`` with ``overrides`` in ``train_dir`` (default ``out/train``;
    started afresh), test it, write its files to ``out`` and return its report (``metrics.json``);
    a top-level function so that a worker process can run it."""
    from rc3d_af.config import load_config
    from rc3d_af.engine.baselines import shuffle_labels, shuffle_videos
    from rc3d_af.engine.inference import evaluate_results, infer_proposals, infer_split
    from rc3d_af.engine.report import write_evaluation
    from rc3d_af.engine.run_dir import clear_run_dir
    from rc3d_af.engine.trainer import Trainer
    from rc3d_af.evaluation import write_json
    from rc3d_af.evaluation.plots import plot_ar_an
    from rc3d_af.evaluation.proposals import evaluate_proposals
    from rc3d_af.evaluation.results import save_results_json
    from rc3d_af.evaluation.thresholds import THUMOS14_PROPOSAL_TIOU

    start, cpu_start = time.perf_counter(), time.process_time()
    cfg = load_config(config, overrides)
    train_dir = out / "train" if train_dir is None else train_dir
    clear_run_dir(train_dir)
    with Trainer(cfg, train_dir, progress=progress) as trainer:
        data_ready = time.perf_counter() - start
        trainer.fit()
        train_seconds, train_cpu = time.perf_counter() - start - data_ready, time.process_time() - cpu_start
        model_, annotations, dataset = trainer.inference_model, trainer.annotations, trainer.test_set
        results = infer_split(model_, cfg, annotations, dataset, trainer.device)
        report = evaluate_results(cfg, annotations, results)
        baselines = {
            "shuffled_labels": evaluate_results(cfg, annotations, shuffle_labels(results, seed=0)),
            "shuffled_videos": evaluate_results(
                cfg, annotations, shuffle_videos(results, annotations, seed=0)
            ),
        }
        if model.startswith("rc3d"):
            proposals = infer_proposals(model_, cfg, annotations, dataset, trainer.device)
            proposal_report = evaluate_proposals(
                annotations, proposals, cfg.data.test_subset, THUMOS14_PROPOSAL_TIOU
            )
            save_results_json(proposals, out / "proposals.json", labels=False)
            write_json(proposal_report, out / "proposals_metrics.json")
            plot_ar_an(proposal_report, out / "ar_an.png")
            report["proposals"] = {k: proposal_report[k] for k in ("an", "ar", "auc", "tiou_thresholds")}
    report["model"] = model
    report["baselines"] = {
        name: {"mAP": b["mAP"], "average_mAP": b["average_mAP"], "by_duration": b.get("by_duration")}
        for name, b in baselines.items()
    }
    total = time.perf_counter() - start
    report["wall_seconds"] = {
        "data_ready": round(data_ready, 3),
        "train": round(train_seconds, 3),
        "test": round(total - data_ready - train_seconds, 3),
        "total": round(total, 3),
    }
    # CPU seconds of this model's process (all its threads): what it costs on an otherwise idle machine.
    report["cpu_seconds"] = {"train": round(train_cpu, 3), "total": round(time.process_time() - cpu_start, 3)}
    write_evaluation(out, results, report)
    return report


def _print_model(report: dict[str, Any]) -> None:
    from rc3d_af.engine.report import print_report

    print_report(report)
    print(_baseline_table(report))
    if "proposals" in report:
        p = report["proposals"]
        print(f"\nproposal network, tIoU {p['tiou_thresholds'][0]:g}..{p['tiou_thresholds'][-1]:g}: "
              + ", ".join(f"AR@{n} {100 * ar:.1f}" for n, ar in zip(p["an"], p["ar"], strict=True))
              + f", AUC {p['auc']:.1f}")  # fmt: skip
    seconds, cpu = report["wall_seconds"], report["cpu_seconds"]
    print(f"train {seconds['train']:.0f} s ({cpu['train']:.0f} CPU-s), test {seconds['test']:.0f} s")


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
    rows = [(f"{NAMES[report['model']]} (this run)", report["mAP"], report["average_mAP"])]
    names = {"shuffled_labels": "labels shuffled", "shuffled_videos": "videos shuffled"}
    rows += [(names[k], v["mAP"], v["average_mAP"]) for k, v in report["baselines"].items()]
    header = f"{'predictions':<22}" + "".join(f"{t:>8g}" for t in tious) + f"{'avg':>8}"
    lines = ["", "mAP of the same predictions shuffled (chance level of this benchmark):", header]
    for name, values, average in rows:
        lines.append(f"{name:<22}" + "".join(f"{_pct(v):>8}" for v in values) + f"{_pct(average):>8}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"

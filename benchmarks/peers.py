"""Peers benchmark: ActionFormer beside our detectors on the demo's benchmark, per CPU-second of training.

The data is exactly what ``rc3d-af demo`` trains and tests on: the synthetic THUMOS14-timed set
of its generator (``rc3d_af.commands.demo``: D=64, data seed 0, ``DEMO_SIGNAL``/``DEMO_SCENE``;
train on ``validation``, 200 videos; test on ``test``, 213 videos, 3,358 instances).

Models (``--models``):

* ``a2net``, ``rc3d``, ``rc3d_af``: our trainer (``rc3d-af train`` in a subprocess) on the packaged
  synthetic configs (``configs/a2net_synthetic.yaml``; ``configs/rc3d_af_synthetic.yaml``, with
  ``model.arch=rc3d`` for plain R-C3D).
* ``actionformer``: the PyPI package ``actionformer==1.5.0``, trained by its own code (its loader,
  AdamW with its weight-decay groups, linear warm-up + cosine schedule per iteration, focal + DIoU
  losses, EMA of the weights, gradient clipping, ``train_one_epoch``) with its THUMOS14 recipe
  (``configs/thumos_i3d.yaml`` of its release: lr 1e-4, weight decay 0.05, batch 2, 5 warm-up +
  30 cosine epochs, ``max_seq_len`` 2304, local attention window 19, crops 0.9-1.0) and its
  THUMOS14 dataset class, reading our feature files as they are (one ``(T, D)`` ``.npy`` per
  video: feature stride 4 frames, 16-frame clips, each video's own fps) and our annotations
  converted to its JSON (:func:`actionformer_annotations`). Its channel width (``embd_dim``,
  ``fpn_dim``, ``head_dim``: 512 in the recipe) is scaled to ``--af-width`` (default 128, a quarter)
  for the CPU; everything else is the recipe. It runs in a separate virtual environment
  (``--af-python``) through ``benchmarks/peers_actionformer.py``: rc3d_af never imports it.

Budgets (``--budgets``, multiples of the 1x budget): our models' 1x is their packaged demo
recipe (its epochs); k x multiplies the epochs and the lr milestones by k. ActionFormer's 1x is
the number of its epochs whose training CPU-seconds match our A2Net 1x runs' (their mean),
measured in the same benchmark folder: once A2Net's 1x runs are in, one epoch of ActionFormer is
timed, and 1x = ``max(1, round(A2Net CPU-s / epoch CPU-s))``, recorded once for the folder
(``--af-epochs`` sets it instead). A budget of
N ActionFormer epochs keeps the recipe's proportions: ``max(1, round(N / 7))`` warm-up epochs (5
of 35), the rest cosine.

Every model is scored with our evaluator (``rc3d-af evaluate``'s ActivityNet protocol, tIoU
0.1:0.7:0.1, the configs' test section); ActionFormer twice, with its final (raw) weights and with
its EMA weights, its detections converted to the ActivityNet results layout (our class names,
seconds). Training cost is the CPU time (user + system) of the training subprocess and all its
children (``getrusage(RUSAGE_CHILDREN)``, start-up included), beside its wall time; inference
time is the wall time of the inference loop over the whole test split (model, decoding, NMS,
conversion to seconds), beside its CPU time. Threads: every model trains and infers with 1 torch
thread (our configs' ``train.num_threads``; ``--af-threads`` for ActionFormer).

Runs: each in a worker process of its own (``--jobs`` at once, default 1), which starts the
training subprocess, so that its ``RUSAGE_CHILDREN`` holds that one training; our models' inference
runs in the worker, ActionFormer's in its driver. With ``--jobs 2`` on 2 cores the runs share the
machine: wall times grow and CPU-seconds a little (``--quick`` here: A2Net 7.1 against 6.1 CPU-s).
``kill PID`` (SIGTERM) or Ctrl-C of this script ends its workers and their training
subprocesses (:mod:`rc3d_af.commands.workers`); the runs they were doing restart from scratch.

Output in ``--out``: ``peers.json`` (settings, ActionFormer's environment and calibration, every
run, the summary), the table on stdout (mean +- std over seeds; then, per budget, each of our
detectors against the better ActionFormer weights: mAP@0.5 ratio and mAP@0.7 difference) and
``learning_curve.png`` (mAP@0.5 against training CPU-seconds, one line per model, error bars over
the seeds). Resumable: every finished run is recorded in ``peers.json`` at once and never redone;
an unfinished one restarts from scratch; a folder recorded with other settings is refused.
``--report`` trains nothing and prints the table and curve of every run recorded in ``--out``: runs
of the same settings made in several folders (or sessions) are gathered by joining the ``runs``
lists of their ``peers.json`` files into one.

``--quick`` checks the pipeline in a few minutes: every recipe at 1 epoch, on the demo's generator
fed with the first video of each class in each subset (18 training and 19 test videos: ActionFormer's
loader needs every class among its instances), ActionFormer's calibration included.

Measured on the 2-core development machine (shared, so wall times are long): A2Net 1x (the demo's
24 epochs) 588 CPU-s under load; ActionFormer at width 128 has 1,685,020 parameters and one epoch
(100 iterations of batch 2) cost 96 CPU-s with 1 thread, start-up included, so its 1x was 6 epochs.

Set-up of ActionFormer's environment (outside the repository). It compiles its 1-D NMS extension
``nms_1d_cpu`` (C++, OpenMP) against the installed torch at install time, hence
``--no-build-isolation`` after torch; it imports h5py without declaring it; it declares torchvision
without importing it, and an unpinned torchvision would replace the CPU torch 2.13 by a newer CUDA
build, so it is pinned to torch 2.13's 0.28.0::

    python3 -m venv $AF_VENV
    $AF_VENV/bin/pip install torch==2.13.0 setuptools wheel ninja numpy h5py
    $AF_VENV/bin/pip install --no-build-isolation actionformer==1.5.0 torchvision==0.28.0

Usage::

    python benchmarks/peers.py --af-python $AF_VENV/bin/python [--models actionformer,a2net,rc3d,rc3d_af]
        [--budgets 1,4,8] [--seeds 0,1] [--jobs 1] [--out runs/peers] [--data runs/demo/data]
    python benchmarks/peers.py --quick --af-python $AF_VENV/bin/python --seeds 0 --budgets 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rc3d_af.commands.ablation import mean_std, mean_std_cell  # the one seed statistics and cell format
from rc3d_af.commands.workers import worker_pool  # ends its workers and their trainings with this script
from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.errors import InputError
from rc3d_af.evaluation import Results

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "peers_actionformer.py"
ACTIONFORMER_VERSION = "1.5.0"
MODELS = ("actionformer", "a2net", "rc3d", "rc3d_af")
# Our detectors: packaged config and overrides.
OURS = {
    "a2net": ("configs/a2net_synthetic.yaml", ()),
    "rc3d": ("configs/rc3d_af_synthetic.yaml", ("model.arch=rc3d",)),
    "rc3d_af": ("configs/rc3d_af_synthetic.yaml", ()),
}
ROW_NAMES = {
    "actionformer_raw": "ActionFormer (final)",
    "actionformer_ema": "ActionFormer (EMA)",
    "a2net": "A2Net",
    "rc3d": "R-C3D",
    "rc3d_af": "R-C3D + AF",
}
# ActionFormer's THUMOS14 recipe (configs/thumos_i3d.yaml of its release), over its defaults.
AF_RECIPE_EPOCHS, AF_RECIPE_WARMUP = 30, 5
AF_RECIPE = {
    "dataset": {"trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0], "max_seq_len": 2304},
    "model": {"fpn_type": "identity", "max_buffer_len_factor": 6.0, "n_mha_win_size": 19},
    "opt": {"learning_rate": 1.0e-4, "weight_decay": 0.05},
    "loader": {"batch_size": 2},
    "train_cfg": {
        "init_loss_norm": 100,
        "clip_grad_l2norm": 1.0,
        "cls_prior_prob": 0.01,
        "center_sample": "radius",
        "center_sample_radius": 1.5,
    },
    "test_cfg": {
        "voting_thresh": 0.7,
        "pre_nms_topk": 2000,
        "max_seg_num": 200,
        "min_score": 0.001,
        "multiclass_nms": True,
    },
}
AF_HEADS = 4  # its default n_head; the width must be a multiple of it
QUICK_EPOCHS = 1


# ----------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------


def scaled_schedule(epochs: int, milestones: Sequence[int], factor: int) -> tuple[int, list[int]]:
    """Our recipe at ``factor`` x its budget: epochs and lr milestones (epochs) times ``factor``."""
    if factor < 1:
        raise InputError(f"--budgets: a budget must be a positive integer multiple, got {factor}")
    return epochs * factor, [m * factor for m in milestones]


def schedule_overrides(epochs: int, milestones: Sequence[int]) -> list[str]:
    """``--set`` overrides of our trainer for a schedule."""
    return [f"train.epochs={epochs}", f"train.lr_milestones=[{', '.join(str(m) for m in milestones)}]"]


def actionformer_one_x(a2net_cpu_seconds: float, epoch_cpu_seconds: float) -> int:
    """ActionFormer epochs whose CPU-seconds match A2Net's 1x training: at least 1."""
    if not (a2net_cpu_seconds > 0 and epoch_cpu_seconds > 0):
        raise InputError(
            f"calibration: CPU-seconds must be positive, got A2Net {a2net_cpu_seconds}, "
            f"ActionFormer epoch {epoch_cpu_seconds}"
        )
    return max(1, round(a2net_cpu_seconds / epoch_cpu_seconds))


def actionformer_schedule(total_epochs: int) -> tuple[int, int]:
    """``(warm-up, cosine)`` epochs of an ActionFormer budget of ``total_epochs``, in the recipe's
    proportion (5 warm-up of 35): ``max(1, round(total / 7))`` warm-up, the rest cosine."""
    if total_epochs < 1:
        raise InputError(f"ActionFormer needs at least 1 epoch, got {total_epochs}")
    share = AF_RECIPE_WARMUP / (AF_RECIPE_WARMUP + AF_RECIPE_EPOCHS)
    warmup = max(1, round(total_epochs * share))
    return warmup, total_epochs - warmup


# ----------------------------------------------------------------------------------------------
# Format conversion
# ----------------------------------------------------------------------------------------------


def actionformer_annotations(annotations: AnnotationSet, train_subset: str) -> dict[str, Any]:
    """Our annotations in the JSON that ActionFormer's THUMOS14 dataset reads.

    ``{"database": {video: {"subset", "duration", "fps", "annotations": [{"label", "segment",
    "label_id"}]}}}``; seconds as ours, ``label_id`` = our class id. Its loader needs every video's
    fps, an instance on every training video, and every class among the instances (it counts the
    classes it sees): anything else is an InputError.
    """
    database, seen = {}, set()
    for video_id, video in annotations.videos.items():
        if video.fps is None:
            raise InputError(f"video '{video_id}': no fps, which ActionFormer's THUMOS14 loader needs")
        if video.subset == train_subset and not video.instances:
            raise InputError(
                f"video '{video_id}' of the training subset {train_subset!r} has no instance; "
                "ActionFormer's THUMOS14 loader cannot train on it"
            )
        items = []
        for inst in video.instances:
            label_id = annotations.class_index(inst.label)
            seen.add(label_id)
            items.append({"label": inst.label, "segment": [inst.start, inst.end], "label_id": label_id})
        database[video_id] = {
            "subset": video.subset,
            "duration": video.duration,
            "fps": video.fps,
            "annotations": items,
        }
    missing = [name for i, name in enumerate(annotations.class_names) if i not in seen]
    if missing:
        raise InputError(
            f"classes without any instance: {missing}; ActionFormer's loader needs every class once"
        )
    return {"database": database}


def actionformer_config(
    *,
    json_file: Path,
    feature_dir: Path,
    num_classes: int,
    input_dim: int,
    width: int,
    total_epochs: int,
    seed: int,
    train_subset: str,
    test_subset: str,
    spec: Any,
) -> dict[str, Any]:
    """ActionFormer's THUMOS14 config for our data: the recipe, channel width ``width`` (embedding,
    FPN and heads), ``total_epochs`` split by :func:`actionformer_schedule`, ``init_rand_seed``
    ``seed``, the feature spec ``spec`` (a :class:`FeatureSpec`: stride and clip frames)."""
    if width < AF_HEADS or width % AF_HEADS:
        raise InputError(f"--af-width must be a positive multiple of {AF_HEADS} (its heads), got {width}")
    warmup, cosine = actionformer_schedule(total_epochs)
    recipe = json.loads(json.dumps(AF_RECIPE))  # a deep copy
    recipe["dataset"].update(
        json_file=str(json_file),
        feat_folder=str(feature_dir),
        file_prefix=None,
        file_ext=".npy",
        num_classes=num_classes,
        input_dim=input_dim,
        feat_stride=spec.stride_frames,
        num_frames=spec.clip_frames,
        default_fps=None,  # each video's own fps, from the JSON
    )
    recipe["model"].update(embd_dim=width, fpn_dim=width, head_dim=width)
    recipe["opt"].update(epochs=cosine, warmup_epochs=warmup)
    recipe["loader"]["num_workers"] = 1  # its default is 4; data loading is a small share on the CPU
    return {
        "dataset_name": "thumos",
        "train_split": [train_subset],
        "val_split": [test_subset],
        "init_rand_seed": seed,
        "devices": ["cpu"],
        "output_folder": "unused",
        **recipe,
    }


def results_from_actionformer(document: dict[str, Any], class_names: Sequence[str]) -> Results:
    """ActionFormer's detections (``peers_actionformer.py infer``: seconds, class ids) as our
    results: labels named by ``class_names``."""
    results = Results(source="ActionFormer detections")
    for video_id, video in document["videos"].items():
        labels = [int(label) for label in video["labels"]]
        bad = [label for label in labels if not 0 <= label < len(class_names)]
        if bad:
            raise InputError(f"ActionFormer detections, video {video_id!r}: class id {bad[0]} out of range")
        results.add(video_id, video["segments"], video["scores"], [class_names[label] for label in labels])
    return results


def quick_timings(annotations: AnnotationSet, subsets: Iterable[str]) -> AnnotationSet:
    """A few videos that hold every class in each of ``subsets``: per subset and class, the first
    video (by id) with an instance of that class. ``--quick`` generates its benchmark from these."""
    chosen = set()
    for subset in subsets:
        ids = sorted(v for v, video in annotations.videos.items() if video.subset == subset)
        for name in annotations.class_names:
            first = next(
                (v for v in ids if any(i.label == name for i in annotations.videos[v].instances)), None
            )
            if first is None:
                raise InputError(f"subset {subset!r}: no video with class {name!r}")
            chosen.add(first)
    return AnnotationSet(
        videos={v: annotations.videos[v] for v in sorted(chosen)},
        class_names=list(annotations.class_names),
        class_ids=dict(annotations.class_ids),
    )


# ----------------------------------------------------------------------------------------------
# Aggregation and table
# ----------------------------------------------------------------------------------------------


def run_rows(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The table rows of one training run: ``(row, numbers)`` per scored set of weights."""
    rows = []
    for weights, score in run["scores"].items():
        row = run["model"] if weights == "final" else f"{run['model']}_{weights}"
        numbers = {
            "mAP": score["mAP"],
            "average_mAP": score["average_mAP"],
            "parameters": run["parameters"],
            "epochs": run["epochs"],
            "train_cpu_seconds": run["train"]["cpu_seconds"],
            "train_wall_seconds": run["train"]["wall_seconds"],
            "inference_seconds": score["inference_seconds"],
        }
        rows.append((row, numbers))
    return rows


def aggregate(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{row: {budget: {"seeds", "mAP", "average_mAP", ...}}}``, every number as ``{"mean", "std"}``
    over the seeds; rows in :data:`ROW_NAMES` order, budgets ascending."""
    grouped: dict[str, dict[int, list[tuple[int, dict[str, Any]]]]] = {}
    for run in runs:
        for row, numbers in run_rows(run):
            grouped.setdefault(row, {}).setdefault(run["budget"], []).append((run["seed"], numbers))
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    order = [r for r in ROW_NAMES if r in grouped] + sorted(set(grouped) - set(ROW_NAMES))
    for row in order:
        summary[row] = {}
        for budget in sorted(grouped[row]):
            entries = grouped[row][budget]
            cell: dict[str, Any] = {"seeds": sorted(seed for seed, _ in entries)}
            for key in entries[0][1]:
                cell[key] = mean_std([numbers[key] for _, numbers in entries])
            summary[row][str(budget)] = cell
    return summary


def format_table(summary: dict[str, dict[str, dict[str, Any]]], tious: Sequence[float]) -> str:
    """Side by side per model and budget: mAP (%) at each tIoU and their average, parameters (M),
    epochs, training CPU-s and wall s, inference s (whole test split); mean +- std over seeds."""
    header = (
        f"{'model':<22}{'budget':>7}{'seeds':>6}{'params M':>9}{'epochs':>8}{'train CPU-s':>15}"
        f"{'train wall s':>15}{'infer s':>12}" + "".join(f"{t:>12g}" for t in tious) + f"{'avg':>12}"
    )
    lines = ["mAP (%) at tIoU (ActivityNet protocol), mean +- std over seeds", header]
    for row, budgets in summary.items():
        for budget, cell in budgets.items():
            lines.append(
                f"{ROW_NAMES.get(row, row):<22}{budget + 'x':>7}{len(cell['seeds']):>6}"
                f"{cell['parameters']['mean'] / 1e6:>9.3f}{cell['epochs']['mean']:>8.0f}"
                f"{mean_std_cell(cell['train_cpu_seconds'], scale=1.0):>15}"
                f"{mean_std_cell(cell['train_wall_seconds'], scale=1.0):>15}"
                f"{mean_std_cell(cell['inference_seconds'], scale=1.0):>12}"
                + "".join(f"{mean_std_cell(cell['mAP'], i):>12}" for i in range(len(tious)))
                + f"{mean_std_cell(cell['average_mAP']):>12}"
            )
    return "\n".join(lines)


def tiou_index(tious: Sequence[float], tiou: float) -> int | None:
    """Position of ``tiou`` among ``tious`` (None when absent)."""
    return next((i for i, t in enumerate(tious) if math.isclose(t, tiou)), None)


def format_ratios(summary: dict[str, dict[str, dict[str, Any]]], tious: Sequence[float]) -> str:
    """Per budget, each of our detectors against the better ActionFormer weights (by mean mAP@0.5):
    the ratio of the mean mAP@0.5 and the difference of the mean mAP@0.7 (points); '' without both."""
    i5, i7 = tiou_index(tious, 0.5), tiou_index(tious, 0.7)
    peers = [r for r in ("actionformer_raw", "actionformer_ema") if r in summary]
    if i5 is None or i7 is None or not peers:
        return ""
    lines = [
        "",
        "against ActionFormer (its better weights at each budget): mAP@0.5 ratio, mAP@0.7 difference",
    ]
    for row in (r for r in summary if not r.startswith("actionformer")):
        for budget, cell in summary[row].items():
            cells = [summary[p][budget] for p in peers if budget in summary[p]]
            if not cells or cell["mAP"]["mean"][i5] is None:
                continue
            best = max(cells, key=lambda c: c["mAP"]["mean"][i5] or 0.0)
            ratio = cell["mAP"]["mean"][i5] / best["mAP"]["mean"][i5] if best["mAP"]["mean"][i5] else math.inf
            ours, theirs = cell["mAP"]["mean"][i7], best["mAP"]["mean"][i7]
            gap = "-" if ours is None or theirs is None else f"{100 * (ours - theirs):+.1f}"
            lines.append(
                f"{ROW_NAMES.get(row, row):<22}{budget + 'x':>7}   x{ratio:.2f} at 0.5   {gap} at 0.7"
            )
    return "\n".join(lines)


def plot_learning_curve(
    summary: dict[str, dict[str, dict[str, Any]]], tious: Sequence[float], path: Path
) -> None:
    """mAP@0.5 (%) against training CPU-seconds, one line per model, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i5 = tiou_index(tious, 0.5)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row, budgets in summary.items():
        cells = list(budgets.values())
        ax.errorbar(
            [c["train_cpu_seconds"]["mean"] for c in cells],
            [100 * (c["mAP"]["mean"][i5] or 0.0) for c in cells],
            xerr=[c["train_cpu_seconds"]["std"] for c in cells],
            yerr=[100 * (c["mAP"]["std"][i5] or 0.0) for c in cells],
            marker="o",
            capsize=3,
            label=ROW_NAMES.get(row, row),
        )
        for budget, c in budgets.items():
            ax.annotate(
                f"{budget}x",
                (c["train_cpu_seconds"]["mean"], 100 * (c["mAP"]["mean"][i5] or 0.0)),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    ax.set_xscale("log")
    ax.set_xlabel("training CPU-seconds")
    ax.set_ylabel("mAP@0.5 (%)")
    ax.set_title("synthetic THUMOS14-timed benchmark (D=64): mAP@0.5 per training budget", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


def _our_run(
    model: str,
    budget: int,
    seed: int,
    epochs: int,
    milestones: list[int],
    parameters: int,
    train: dict[str, Any],
    score: dict[str, Any],
) -> dict[str, Any]:
    """The ledger record of one of our runs."""
    return {
        "model": model,
        "budget": budget,
        "seed": seed,
        "epochs": epochs,
        "lr_milestones": milestones,
        "parameters": parameters,
        "train": train,
        "scores": {"final": score},
    }


def _same_benchmark(a: Path, b: Path) -> bool:
    """Whether two synthetic benchmarks' ``annotations.json`` and ``synthetic.json`` (generator
    settings) are byte-identical (the features follow from them)."""
    return all(
        (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
        for name in ("annotations.json", "synthetic.json")
    )


def measured(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``command`` to completion (output to ``log``): its CPU seconds (user + system of it and
    its children) and wall seconds. A failure is an InputError that names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
        raise InputError(f"{command[0]} {' '.join(command[1:3])} failed (exit {code}); see {log}:\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2)}


def generate_data(args: argparse.Namespace) -> Path:
    """The demo's benchmark (its generator and settings) in ``--data`` (default ``<out>/data``);
    ``--quick``: the same generator on :func:`quick_timings` of the THUMOS14 timings. Returns
    its annotations path."""
    from rc3d_af.commands.demo import DEMO_SCENE, DEMO_SIGNAL, _benchmark
    from rc3d_af.data.synthetic import SynthParams, generate_synthetic, resolve_like

    params = SynthParams(signal=DEMO_SIGNAL, scene=DEMO_SCENE)
    data_dir = (args.data or args.out / "data").resolve()
    if not args.quick:
        return _benchmark(data_dir, args.dim, args.data_seed, None, params)
    if (data_dir / "annotations.json").is_file():
        return data_dir / "annotations.json"
    timings = quick_timings(resolve_like("thumos14"), ("validation", "test"))
    return generate_synthetic(data_dir, like=timings, dim=args.dim, seed=args.data_seed, params=params)


def check_actionformer(python: str | None) -> dict[str, Any]:
    """Version of the package in ActionFormer's environment and whether its compiled NMS loads."""
    if python is None:
        raise InputError("--af-python: the interpreter of ActionFormer's environment is needed (see --help)")
    probe = (
        "import json, torch, actionformer\n"
        "try:\n    import nms_1d_cpu; nms = 'compiled nms_1d_cpu'\n"
        "except ImportError as e:\n    nms = f'python fallback ({e})'\n"
        "print(json.dumps({'version': actionformer.__version__, 'torch': torch.__version__, 'nms': nms}))"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise InputError(f"--af-python {python}: cannot import actionformer:\n{done.stderr[-800:]}")
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if info["version"] != ACTIONFORMER_VERSION:
        raise InputError(f"--af-python: actionformer {info['version']}, expected {ACTIONFORMER_VERSION}")
    return info


def reused_folder(ours_from: Path | None, model: str, budget: int) -> Path | None:
    """``<ours_from>/<model>`` when ``--ours-from`` holds 1x runs of ``model`` to reuse, else None
    (train it): ``benchmarks/demo_seeds.py`` trains only the demo's models, so a model without a
    folder there (plain R-C3D) is trained here; a folder without the seed's run is an error later."""
    if budget != 1 or ours_from is None or not (ours_from / model).is_dir():
        return None
    return ours_from / model


class Runner:
    """Trains and scores one model at one budget and seed; runs in a worker process of its own, so
    that ``getrusage(RUSAGE_CHILDREN)`` there sees only that run's training subprocess."""

    def __init__(self, args: argparse.Namespace, annotation_path: Path) -> None:
        from rc3d_af.config import load_config
        from rc3d_af.data.annotations import load_annotations

        self.args = args
        self.out: Path = args.out.resolve()
        self.annotations = load_annotations(annotation_path)
        self.data_overrides = [
            f"data.annotations={annotation_path}",
            f"data.features={annotation_path.parent / 'features'}",
        ]
        self.eval_cfg = load_config(ROOT / OURS["a2net"][0], self.data_overrides)  # its test section
        self.af_json = self.out / "actionformer" / "annotations.json"

    def run_dir(self, *parts: str) -> Path:
        """An empty ``<out>/runs/<parts>`` (an unfinished run there restarts from scratch)."""
        path = self.out.joinpath("runs", *parts)
        shutil.rmtree(path, ignore_errors=True)
        return path

    # -- our detectors ---------------------------------------------------------------------------

    def run_ours(self, model: str, budget: int, seed: int) -> dict[str, Any]:
        from rc3d_af.config import load_config
        from rc3d_af.engine.checkpoint import load_checkpoint

        config, extra = OURS[model]
        folder = reused_folder(self.args.ours_from, model, budget)
        if folder is not None:
            return self.reuse_ours(folder, model, seed)
        base = load_config(ROOT / config, [*self.data_overrides, *extra])
        recipe = (QUICK_EPOCHS, []) if self.args.quick else (base.train.epochs, base.train.lr_milestones)
        epochs, milestones = scaled_schedule(*recipe, budget)
        overrides = [
            *self.data_overrides,
            *extra,
            *schedule_overrides(epochs, milestones),
            f"train.seed={seed}",
        ]
        run_dir = self.run_dir(model, f"budget{budget}", f"seed{seed}")
        command = [sys.executable, "-m", "rc3d_af", "train", str(ROOT / config), "--out", str(run_dir)]
        command += ["--no-progress", *(arg for o in overrides for arg in ("--set", o))]
        train = measured(command, run_dir / "train.stdout")
        parameters, score = self._score_ours(load_checkpoint(run_dir / "last.pt"))
        return _our_run(model, budget, seed, epochs, milestones, parameters, train, score)

    def reuse_ours(self, folder: Path, model: str, seed: int) -> dict[str, Any]:
        """A 1x run of ``benchmarks/demo_seeds.py`` (``<folder>/seed<k>``, ``folder`` from
        :func:`reused_folder`: the same recipe and seed on the same benchmark, which
        :meth:`run_ours` would train again), re-scored here; its training CPU- and wall seconds are
        those ``rc3d-af demo`` recorded (Trainer set-up + fit, the interpreter's start-up excluded)."""
        from rc3d_af.config import config_to_dict, load_config
        from rc3d_af.engine.checkpoint import checkpoint_config, load_checkpoint

        run_dir = folder / f"seed{seed}"
        metrics_path, checkpoint = run_dir / "metrics.json", run_dir / "last.pt"
        if not (metrics_path.is_file() and checkpoint.is_file()):
            raise InputError(f"--ours-from: {run_dir} holds no finished run (metrics.json and last.pt)")
        config, extra = OURS[model]
        expected = load_config(ROOT / config, [*self.data_overrides, *extra, f"train.seed={seed}"])
        state = load_checkpoint(checkpoint)
        trained = checkpoint_config(state)
        if not _same_benchmark(Path(trained.data.annotations), Path(expected.data.annotations)):
            raise InputError(
                f"--ours-from: {checkpoint} was trained on {trained.data.annotations}, which is not the "
                f"benchmark of {expected.data.annotations} (its annotations.json and synthetic.json differ)"
            )
        trained_dict, expected_dict = config_to_dict(trained), config_to_dict(expected)
        for section in (trained_dict, expected_dict):  # the same benchmark, maybe in another folder
            del section["data"]["annotations"], section["data"]["features"]
        if trained_dict != expected_dict:
            raise InputError(f"--ours-from: {checkpoint} was trained with another config than {config}'s 1x")
        metrics = json.loads(metrics_path.read_text())
        parameters, score = self._score_ours(state)
        train = {key: metrics[key]["train"] for key in ("cpu_seconds", "wall_seconds")}
        train["reused_from"] = str(run_dir)
        epochs, milestones = expected.train.epochs, list(expected.train.lr_milestones)
        return _our_run(model, 1, seed, epochs, milestones, parameters, train, score)

    def _score_ours(self, state: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Parameters and the test-split score of a loaded checkpoint, inference timed."""
        import torch

        from rc3d_af.engine.checkpoint import checkpoint_config, model_from_checkpoint
        from rc3d_af.engine.datasets import load_data, make_dataset
        from rc3d_af.engine.inference import evaluate_results, infer_split

        cfg = checkpoint_config(state)
        torch.set_num_threads(cfg.train.num_threads or 1)
        model = model_from_checkpoint(state, cfg, torch.device("cpu"))
        annotations, store = load_data(cfg.data)
        dataset = make_dataset(cfg.data, annotations, store, cfg.data.test_subset, training=False)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        results = infer_split(model, cfg, annotations, dataset, torch.device("cpu"))
        wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
        report = evaluate_results(cfg, annotations, results)
        return sum(p.numel() for p in model.parameters()), _score(report, wall, cpu)

    # -- ActionFormer ----------------------------------------------------------------------------

    def write_af_annotations(self) -> None:
        """Our annotations converted for ActionFormer (once, before any of its runs)."""
        document = actionformer_annotations(self.annotations, self.eval_cfg.data.train_subset)
        self.af_json.parent.mkdir(parents=True, exist_ok=True)
        self.af_json.write_text(json.dumps(document) + "\n")

    def _af_train(self, total_epochs: int, seed: int, run_dir: Path) -> tuple[Path, dict[str, Any]]:
        """Train ActionFormer in its environment; its config path and the training's numbers."""
        import yaml

        from rc3d_af.data.features import load_features

        data = self.eval_cfg.data
        config = actionformer_config(
            json_file=self.af_json,
            feature_dir=Path(data.features),
            num_classes=len(self.annotations.class_names),
            input_dim=load_features(data.features, next(iter(self.annotations.videos))).shape[1],
            width=self.args.af_width,
            total_epochs=total_epochs,
            seed=seed,
            train_subset=data.train_subset,
            test_subset=data.test_subset,
            spec=data.feature_spec,
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        config_path = run_dir / "actionformer.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        command = [self.args.af_python, str(DRIVER), "train", str(config_path), "--out", str(run_dir)]
        train = measured([*command, "--threads", str(self.args.af_threads)], run_dir / "train.stdout")
        return config_path, {**train, **json.loads((run_dir / "train.json").read_text())}

    def calibrate(self) -> dict[str, Any]:
        """One ActionFormer epoch (seed 0), timed."""
        _, train = self._af_train(1, 0, self.run_dir("actionformer", "calibration"))
        return {"cpu_seconds": train["cpu_seconds"], "wall_seconds": train["wall_seconds"]}

    def run_actionformer(self, budget: int, seed: int, one_x: int) -> dict[str, Any]:
        from rc3d_af.engine.inference import evaluate_results

        total = budget * one_x
        run_dir = self.run_dir("actionformer", f"budget{budget}", f"seed{seed}")
        config, train = self._af_train(total, seed, run_dir)
        scores = {}
        for weights in ("raw", "ema"):
            out = run_dir / f"detections_{weights}.json"
            command = [self.args.af_python, str(DRIVER), "infer", str(config), "--out", str(out)]
            command += ["--checkpoint", str(run_dir / "final.pt"), "--weights", weights]
            measured([*command, "--threads", str(self.args.af_threads)], run_dir / f"infer_{weights}.stdout")
            document = json.loads(out.read_text())
            results = results_from_actionformer(document, self.annotations.class_names)
            report = evaluate_results(self.eval_cfg, self.annotations, results)
            scores[weights] = _score(report, document["seconds"], document["cpu_seconds"])
        warmup, cosine = actionformer_schedule(total)
        return {
            "model": "actionformer",
            "budget": budget,
            "seed": seed,
            "epochs": total,
            "warmup_epochs": warmup,
            "cosine_epochs": cosine,
            "width": self.args.af_width,
            "iterations_per_epoch": train["iterations_per_epoch"],
            "parameters": train["parameters"],
            "train": {
                "cpu_seconds": train["cpu_seconds"],
                "wall_seconds": train["wall_seconds"],
                "loop_process_cpu_seconds": round(train["loop_process_cpu_seconds"], 2),
            },
            "scores": scores,
        }


def _work(args: argparse.Namespace, annotation_path: Path, task: tuple, one_x: int | None) -> dict[str, Any]:
    """A worker's task: ``("calibration",)`` or ``(model, budget, seed)``."""
    runner = Runner(args, annotation_path)
    if task == ("calibration",):
        return runner.calibrate()
    model, budget, seed = task
    if model == "actionformer":
        return runner.run_actionformer(budget, seed, one_x)
    return runner.run_ours(model, budget, seed)


class Ledger:
    """``peers.json``: the settings, ActionFormer's environment and calibration, every finished run."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.state = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "runs": []}
        if self.state["settings"] != settings:
            raise InputError(
                f"{path}: recorded with other settings ({self.state['settings']}); "
                f"use another --out for {settings}"
            )

    def done(self, model: str, budget: int, seed: int) -> bool:
        return any((r["model"], r["budget"], r["seed"]) == (model, budget, seed) for r in self.state["runs"])

    def a2net_1x(self) -> list[float]:
        """Training CPU-seconds of every finished A2Net 1x run."""
        return [
            r["train"]["cpu_seconds"] for r in self.state["runs"] if (r["model"], r["budget"]) == ("a2net", 1)
        ]

    def record(self, key: str, value: Any) -> None:
        """Set ``key`` (``"runs"``: append a run) and write the file atomically."""
        if key == "runs":
            self.state["runs"].append(value)
        else:
            self.state[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1) + "\n")
        os.replace(tmp, self.path)


def plan(models: Sequence[str], budgets: Sequence[int], seeds: Sequence[int]) -> list[tuple[str, int, int]]:
    """Every ``(model, budget, seed)`` in the order they start: budgets ascending, our detectors
    before ActionFormer (its budget needs A2Net's 1x runs), A2Net first among ours."""
    order = sorted(models, key=lambda m: (m == "actionformer", m != "a2net"))
    return [(m, b, s) for b in sorted(budgets) for m in order for s in seeds]


class Scheduler:
    """Runs the tasks not yet in the ledger in ``jobs`` worker processes, recording each as it ends.

    ActionFormer's runs wait for its 1x epochs: ``--af-epochs``, the ledger's calibration, or a
    calibration task started once no A2Net 1x run is pending. A failed task is reported and the
    others go on; dependants of a failed calibration are not started.
    """

    def __init__(
        self, args: argparse.Namespace, ledger: Ledger, annotation_path: Path, tious: Sequence[float]
    ):
        self.args, self.ledger, self.annotation_path, self.tious = args, ledger, annotation_path, tious
        self.pool: ProcessPoolExecutor | None = None  # while run() runs
        self.pending: dict[Any, tuple] = {}
        self.waiting: list[tuple[str, int, int]] = []  # ActionFormer runs waiting for the 1x epochs
        self.failures: list[str] = []

    def one_x(self) -> int | None:
        if self.args.af_epochs is not None:
            return self.args.af_epochs
        return self.ledger.state.get("calibration", {}).get("actionformer_1x_epochs")

    def submit(self, task: tuple, one_x: int | None = None) -> None:
        self.pending[self.pool.submit(_work, self.args, self.annotation_path, task, one_x)] = task

    def release_actionformer(self) -> None:
        """Start ActionFormer's runs, or its calibration, when what they need is there."""
        if not self.waiting or ("calibration",) in self.pending.values():
            return
        if self.one_x() is not None:
            for task in self.waiting:
                self.submit(task, self.one_x())
            self.waiting.clear()
        elif not any(t[:2] == ("a2net", 1) for t in self.pending.values()):
            if self.ledger.a2net_1x():
                self.submit(("calibration",))
            else:
                self.failures += [
                    f"{t}: no A2Net 1x run to calibrate ActionFormer's budget" for t in self.waiting
                ]
                self.waiting.clear()

    def finish(self, task: tuple, result: dict[str, Any]) -> None:
        if task == ("calibration",):
            a2net = self.ledger.a2net_1x()
            mean = float(np.mean(a2net))
            calibration = {
                "a2net_1x_cpu_seconds": round(mean, 2),
                "a2net_runs": len(a2net),
                "actionformer_epoch_cpu_seconds": result["cpu_seconds"],
                "actionformer_epoch_wall_seconds": result["wall_seconds"],
                "actionformer_1x_epochs": actionformer_one_x(mean, result["cpu_seconds"]),
            }
            self.ledger.record("calibration", calibration)
            print(f"ActionFormer calibration: {calibration}", flush=True)
        else:
            self.ledger.record("runs", result)
            print(_run_line(result, self.tious), flush=True)

    def run(self, tasks: Iterable[tuple[str, int, int]]) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        with worker_pool(self.args.jobs) as self.pool:
            for task in tasks:
                if task[0] == "actionformer":
                    self.waiting.append(task)
                else:
                    self.submit(task)
            self.release_actionformer()
            while self.pending:
                finished, _ = wait(self.pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    task = self.pending.pop(future)
                    try:
                        self.finish(task, future.result())
                    except Exception as exc:  # a failed run must not stop the others
                        self.failures.append(f"{task}: {exc}")
                        print(f"{task} failed: {exc}", file=sys.stderr, flush=True)
                self.release_actionformer()
        if self.failures:
            raise InputError("runs failed (finished runs are recorded):\n" + "\n".join(self.failures))


def report(ledger: Ledger) -> tuple[dict[str, Any], list[float]]:
    """``--report``: the summary of every run the ledger holds (nothing trained, no data read) and
    the tIoUs that scored them (one set for all)."""
    runs = ledger.state["runs"]
    tious = {tuple(score["tiou_thresholds"]) for run in runs for score in run["scores"].values()}
    if len(tious) != 1:
        raise InputError(f"{ledger.path}: expected runs scored at one set of tIoUs, found {sorted(tious)}")
    summary = aggregate(runs)
    ledger.record("summary", summary)
    return summary, list(tious.pop())


def run_all(
    args: argparse.Namespace,
    ledger: Ledger,
    models: Sequence[str],
    budgets: Sequence[int],
    seeds: Sequence[int],
) -> tuple[dict[str, Any], list[float]]:
    """Every run of the benchmark not yet in the ledger; the summary of those asked for and the tIoUs."""
    annotation_path = generate_data(args)
    runner = Runner(args, annotation_path)
    tious = list(runner.eval_cfg.test.tiou_thresholds)
    tasks = plan(models, budgets, seeds)
    for task in (t for t in tasks if ledger.done(*t)):
        print(f"{task[0]} {task[1]}x seed {task[2]}: done before, reused")
    todo = [t for t in tasks if not ledger.done(*t)]
    if any(t[0] == "actionformer" for t in todo):
        ledger.record("actionformer_environment", check_actionformer(args.af_python))
        runner.write_af_annotations()
        calibrated = args.af_epochs is not None or "calibration" in ledger.state
        if not (calibrated or ledger.a2net_1x() or any(t[:2] == ("a2net", 1) for t in todo)):
            raise InputError(
                "ActionFormer's 1x budget is calibrated on A2Net's 1x runs: include a2net and budget 1 "
                "in --models/--budgets, or give --af-epochs"
            )
    Scheduler(args, ledger, annotation_path, tious).run(todo)
    wanted = set(tasks)
    summary = aggregate(r for r in ledger.state["runs"] if (r["model"], r["budget"], r["seed"]) in wanted)
    ledger.record("summary", summary)
    return summary, tious


def _run_line(run: dict[str, Any], tious: Sequence[float]) -> str:
    i5 = tiou_index(tious, 0.5)
    scores = ", ".join(f"{w} mAP@0.5 {100 * s['mAP'][i5]:.1f}" for w, s in run["scores"].items())
    train = run["train"]
    return (
        f"{run['model']} {run['budget']}x seed {run['seed']}: {run['epochs']} epochs, "
        f"{train['cpu_seconds']:.0f} CPU-s, {train['wall_seconds']:.0f} s wall; {scores}"
    )


def _score(report: dict[str, Any], wall: float, cpu: float) -> dict[str, Any]:
    return {
        "tiou_thresholds": report["tiou_thresholds"],
        "mAP": report["mAP"],
        "average_mAP": report["average_mAP"],
        "inference_seconds": round(wall, 2),
        "inference_cpu_seconds": round(cpu, 2),
    }


def _int_list(text: str, name: str, minimum: int) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < minimum or len(set(values)) != len(values):
        raise InputError(f"{name}: expected distinct integers >= {minimum} separated by commas, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: %(default)s)")
    parser.add_argument(
        "--budgets", default="1,4,8", help="multiples of the 1x budget (default: %(default)s)"
    )
    parser.add_argument("--seeds", default="0,1", help="training seeds (default: %(default)s)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/peers"), help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="benchmark folder (default: <out>/data; the demo's "
        "runs/demo/data is reused when its settings match)",
    )
    parser.add_argument("--dim", type=int, default=64, help="feature width D (default: %(default)s)")
    parser.add_argument(
        "--data-seed", type=int, default=0, help="seed of the benchmark (default: %(default)s)"
    )
    parser.add_argument("--af-python", help="python of ActionFormer's environment (see the set-up above)")
    parser.add_argument(
        "--af-width",
        type=int,
        default=128,
        help="ActionFormer's embedding/FPN/head channels (recipe: 512; default: %(default)s)",
    )
    parser.add_argument("--af-threads", type=int, default=1, help="ActionFormer's torch threads (default: 1)")
    parser.add_argument(
        "--af-epochs", type=int, help="ActionFormer's 1x epochs (default: calibrated on A2Net)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="runs at once, one process each (default: %(default)s)"
    )
    parser.add_argument(
        "--ours-from",
        type=Path,
        help="reuse our models' finished 1x runs from this benchmarks/demo_seeds.py --out folder "
        "(<model>/seed<k>, trained on the same benchmark) instead of training them again; a model "
        "without a folder there (plain R-C3D) is trained",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="train nothing: the table and curve of every run recorded in --out (runs gathered from "
        "other folders or sessions)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"check the pipeline: {QUICK_EPOCHS}-epoch recipes on a few videos holding every class",
    )
    args = parser.parse_args(argv)
    try:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = sorted(set(models) - set(MODELS))
        if unknown or not models:
            raise InputError(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
        budgets = _int_list(args.budgets, "--budgets", 1)
        seeds = _int_list(args.seeds, "--seeds", 0)
        if args.af_epochs is not None and args.af_epochs < 1:
            raise InputError(f"--af-epochs must be at least 1, got {args.af_epochs}")
        if args.jobs < 1:
            raise InputError(f"--jobs must be at least 1, got {args.jobs}")
        args.out = args.out.resolve()
        settings = {
            "quick": args.quick,
            "dim": args.dim,
            "data_seed": args.data_seed,
            "af_width": args.af_width,
            "af_threads": args.af_threads,
            "af_epochs": args.af_epochs,
        }
        ledger = Ledger(args.out / "peers.json", settings)
        summary, tious = report(ledger) if args.report else run_all(args, ledger, models, budgets, seeds)
    except InputError as exc:
        print(f"peers: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(format_table(summary, tious))
    print(format_ratios(summary, tious))
    if "calibration" in ledger.state:
        c = ledger.state["calibration"]
        print(
            f"\nActionFormer 1x = {c['actionformer_1x_epochs']} epochs: one epoch took "
            f"{c['actionformer_epoch_cpu_seconds']:.0f} CPU-s, "
            f"A2Net's 1x {c['a2net_1x_cpu_seconds']:.0f} CPU-s"
        )
    plot_learning_curve(summary, tious, args.out / "learning_curve.png")
    print(f"runs and summary in {ledger.path}, curve in {args.out / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

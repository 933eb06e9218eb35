"""Where a detector is weak on the demo's benchmark: per-class AP against training instances, their
duration and how much of them a window holds, and which classes are confused.

Reads finished run folders (``metrics.json`` and ``results.json``, as ``rc3d-af demo``,
``benchmarks/demo_seeds.py`` and ``rc3d-af ablation`` write them: ``<out>/<model>/seed<k>``) and the
benchmark's annotations; trains nothing.

    python benchmarks/diagnose.py --annotations runs/demo_seeds/data/annotations.json \\
        --runs a2net=runs/demo_seeds/a2net --runs rc3d_af=runs/demo_seeds/rc3d_af

Per class: training instances, their mean duration (s), the share of them longer than one window
(``--window-seconds``, 128 features x 4 frames at 30 fps by default: such an instance cannot be seen
whole), test instances, and AP at ``--tiou`` per model as mean +- std over the seed folders. Then, per
model (its first seed), the confusion of localized instances: a test instance counts as localized
when some detection of any class overlaps it at tIoU >= ``--tiou``; it is confused when the best
scoring of those detections names another class.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rc3d_af.commands.ablation import mean_std, mean_std_cell
from rc3d_af.data.annotations import AnnotationSet, load_annotations
from rc3d_af.evaluation.iou import segment_iou_np
from rc3d_af.evaluation.results import Results, load_results


def seed_folders(folder: Path) -> list[Path]:
    """The ``seed<k>`` folders of a model that hold a ``metrics.json``, in seed order."""
    found = sorted(folder.glob("seed*/metrics.json"), key=lambda p: int(p.parent.name[4:]))
    if not found:
        raise SystemExit(f"{folder}: no seed<k>/metrics.json below it")
    return [p.parent for p in found]


def per_class_ap(runs: list[Path], tiou: float) -> dict[str, np.ndarray]:
    """``{class: AP at tiou per seed}``."""
    reports = [json.loads((run / "metrics.json").read_text()) for run in runs]
    at = reports[0]["tiou_thresholds"].index(tiou)
    return {c: np.array([r["per_class"][c]["AP"][at] for r in reports]) for c in reports[0]["per_class"]}


def training_statistics(
    annotations: AnnotationSet, subset: str, window_seconds: float
) -> dict[str, tuple[int, float, float]]:
    """``{class: (instances, mean duration s, share longer than a window)}`` of ``subset``."""
    durations: dict[str, list[float]] = {c: [] for c in annotations.class_names}
    for video in annotations.videos.values():
        if video.subset == subset:
            for instance in video.instances:
                durations[instance.label].append(instance.end - instance.start)
    return {
        c: (len(d), float(np.mean(d)), float(np.mean(np.array(d) > window_seconds))) if d else (0, 0.0, 0.0)
        for c, d in durations.items()
    }


def confusion(annotations: AnnotationSet, results: Results, subset: str, tiou: float) -> Counter:
    """``Counter((true class, predicted class))`` over the localized test instances (see the module
    docstring); ``(c, c)`` counts the correctly labelled ones, and those whose best detection names a
    class that another ground truth at the same place has (THUMOS14 labels every CliffDiving instance
    Diving too)."""
    counts: Counter = Counter()
    for video_id, video in annotations.videos.items():
        detections = results.videos.get(video_id)
        if video.subset != subset or detections is None or not len(detections):
            continue
        truth = np.array([[i.start, i.end] for i in video.instances]).reshape(-1, 2)
        overlaps = segment_iou_np(truth, detections.segments) >= tiou  # [G, N]
        for g, instance in enumerate(video.instances):
            hits = np.flatnonzero(overlaps[g])
            if len(hits):
                best = hits[np.argmax(detections.scores[hits])]
                label = detections.labels[best]
                co_labelled = any(
                    other.label == label for h, other in enumerate(video.instances) if overlaps[h, best]
                )
                counts[(instance.label, instance.label if co_labelled else label)] += 1
    return counts


def format_tables(
    stats: dict[str, tuple[int, float, float]],
    test_counts: Counter,
    aps: dict[str, dict[str, np.ndarray]],
    confusions: dict[str, Counter],
    tiou: float,
) -> str:
    models = list(aps)
    header = "| class | train inst. | mean dur. s | > window | test inst. | " + " | ".join(
        f"{m} AP@{tiou:g}" for m in models
    )
    lines = [header + " |", "|---" * (5 + len(models)) + "|"]
    for c in sorted(stats, key=lambda c: stats[c][0]):
        n, mean, long = stats[c]
        cells = [mean_std_cell(mean_std(aps[m][c])) for m in models]
        row = [c, str(n), f"{mean:.1f}", f"{100 * long:.0f}%", str(test_counts[c]), *cells]
        lines.append("| " + " | ".join(row) + " |")
    for m, counts in confusions.items():
        localized = sum(counts.values())
        wrong = {pair: k for pair, k in counts.items() if pair[0] != pair[1]}
        top = ", ".join(f"{t} as {p} {k}" for (t, p), k in Counter(wrong).most_common(6))
        lines.append(
            f"\n{m}: {localized} test instances localized at tIoU {tiou:g}, "
            f"{sum(wrong.values())} of them ({100 * sum(wrong.values()) / max(localized, 1):.1f}%) "
            f"labelled with another class by their best detection; most often: {top or 'none'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, required=True)
    parser.add_argument("--runs", action="append", required=True, metavar="NAME=DIR",
                        help="a model's folder of seed<k> run folders (repeatable)")  # fmt: skip
    parser.add_argument("--train-subset", default="validation")
    parser.add_argument("--test-subset", default="test")
    parser.add_argument("--tiou", type=float, default=0.5)
    parser.add_argument("--window-seconds", type=float, default=128 * 4 / 30.0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    annotations = load_annotations(args.annotations)
    models: dict[str, list[Path]] = {}
    for entry in args.runs:
        name, sep, folder = entry.partition("=")
        if not sep:
            parser.error(f"--runs: expected NAME=DIR, got {entry!r}")
        models[name] = seed_folders(Path(folder))
    stats = training_statistics(annotations, args.train_subset, args.window_seconds)
    test_counts = Counter(
        i.label for v in annotations.videos.values() if v.subset == args.test_subset for i in v.instances
    )
    aps = {m: per_class_ap(runs, args.tiou) for m, runs in models.items()}
    confusions = {
        m: confusion(annotations, load_results(runs[0] / "results.json", annotations.class_names),
                     args.test_subset, args.tiou)
        for m, runs in models.items()
    }  # fmt: skip
    print(format_tables(stats, test_counts, aps, confusions, args.tiou))
    if args.json:
        document: dict[str, Any] = {
            "training": {c: dict(zip(("instances", "mean_seconds", "longer_than_window"), s, strict=True))
                         for c, s in stats.items()},
            "ap": {m: {c: v.tolist() for c, v in per.items()} for m, per in aps.items()},
            "confusion": {m: [[t, p, k] for (t, p), k in c.most_common()] for m, c in confusions.items()},
        }  # fmt: skip
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

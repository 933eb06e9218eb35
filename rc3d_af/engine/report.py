"""Writing what a test run produced: results JSON, metrics JSON, the evaluation layer's plots, the
printed tables, and the timeline PNG of ``rc3d-af detect``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rc3d_af.data.annotations import VideoAnnotation
from rc3d_af.evaluation import format_report, write_json
from rc3d_af.evaluation.plots import plot_duration_bars, plot_map_vs_tiou
from rc3d_af.evaluation.results import Results, save_results_json

__all__ = ["plot_timeline", "print_report", "write_evaluation"]


def write_evaluation(
    out_dir: str | Path, results: Results, report: dict[str, Any], *, plots: bool = True
) -> None:
    """``results.json`` (ActivityNet results layout), ``metrics.json`` (the report) and, with
    ``plots``, ``map_vs_tiou.png`` and (when the report has ``by_duration``) ``duration.png``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_results_json(results, out_dir / "results.json")
    write_json(report, out_dir / "metrics.json")
    if plots:
        plot_map_vs_tiou(report, out_dir / "map_vs_tiou.png")
        if report.get("by_duration"):
            plot_duration_bars(report, out_dir / "duration.png")


def print_report(report: dict[str, Any]) -> None:
    """The evaluation layer's terminal tables (mAP per tIoU, duration buckets)."""
    print(format_report(report))


def plot_timeline(
    path: str | Path, document: dict[str, Any], truth: VideoAnnotation | None, top: int = 30
) -> None:
    """A timeline of one video: ground truth (when given) above the ``top`` best detections, one row
    per class, bar opacity = score. ``document`` is the JSON of ``rc3d-af detect``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    detections = sorted(document["detections"], key=lambda d: -d["score"])[:top]
    truth_instances = truth.instances if truth is not None else []
    labels = sorted({d["label"] for d in detections} | {i.label for i in truth_instances})
    row = {label: i for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(12, 1.2 + 0.45 * max(len(labels), 1)))
    for inst in truth_instances:
        ax.broken_barh(
            [(inst.start, inst.end - inst.start)], (row[inst.label] + 0.05, 0.4), color="tab:green"
        )
    for det in detections:
        start, end = det["segment"]
        alpha = 0.25 + 0.75 * min(max(det["score"], 0.0), 1.0)
        ax.broken_barh([(start, end - start)], (row[det["label"]] + 0.5, 0.4), color="tab:blue", alpha=alpha)
    ax.set_yticks([i + 0.5 for i in range(len(labels))], labels)
    ax.set_xlim(0, document["duration"])
    ax.set_ylim(0, max(len(labels), 1))
    ax.set_xlabel("seconds")
    legend = "green: ground truth (lower half), blue: detections (upper half, opacity = score)"
    ax.set_title(f"{document['video_id']}: top {len(detections)} detections\n{legend}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""PNG figures of evaluation reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["duration_tick_labels", "plot_ar_an", "plot_duration_bars", "plot_map_vs_tiou", "plot_report"]


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """The figure that fits ``report``: AR-AN for proposals, duration bars with ``by_duration``,
    otherwise mAP against the tIoU threshold."""
    if report.get("task") == "proposals":
        plot_ar_an(report, path)
    elif "by_duration" in report:
        plot_duration_bars(report, path)
    else:
        plot_map_vs_tiou(report, path)


def plot_ar_an(report: dict[str, Any], path: str | Path) -> None:
    """AR-AN curves of both conventions (log AN axis) and the AR@AN points of a proposal report."""

    def draw(ax: Any) -> None:
        for name, curve in report["curves"].items():
            auc = report["conventions"][name]["auc"]
            ax.plot(curve["an"], [100 * v for v in curve["ar"]], label=f"{name} (AUC {auc:.2f})")
        ax.scatter(report["an"], [100 * v for v in report["ar"]], color="black", zorder=3,
                   label=f"AR@AN ({report['convention']})")
        ax.set_xscale("log")
        ax.set_xlabel("average number of proposals per video (AN)")
        ax.set_ylabel("average recall (%)")
        ax.set_title(f"AR-AN, subset {report['subset'] or 'all'}, tIoU {report['tiou_range']}")
        ax.legend()

    _save(draw, path)


def duration_tick_labels(report: dict[str, Any]) -> list[str]:
    """One x-axis label per duration bucket: name, range in seconds, ground truths."""
    labels = []
    for name, entry in report["by_duration_details"].items():
        low, high = entry["range_s"]
        upper = "inf" if high is None else f"{high:g}"
        labels.append(f"{name}\n[{low:g}, {upper}) s\n{entry['ground_truths']} GT")
    return labels


def plot_duration_bars(report: dict[str, Any], path: str | Path) -> None:
    """mAP per ground-truth duration bucket (the paper's Table I), one bar per tIoU threshold."""
    buckets = list(report["by_duration"])
    thresholds = report["tiou_thresholds"]
    width = 0.8 / len(thresholds)

    def draw(ax: Any) -> None:
        for k, threshold in enumerate(thresholds):
            values = [100 * (report["by_duration"][b][k] or 0.0) for b in buckets]
            offset = (k - (len(thresholds) - 1) / 2) * width
            ax.bar([i + offset for i in range(len(buckets))], values, width, label=f"tIoU {threshold:g}")
        ax.set_xticks(range(len(buckets)), duration_tick_labels(report))
        ax.set_xlabel("ground-truth duration bucket (range of instance length, ground truths)")
        ax.set_ylabel("mAP (%)")
        ax.set_title(f"mAP by action duration ({report['protocol']} protocol)")
        ax.legend(fontsize="small", ncol=2)

    _save(draw, path)


def plot_map_vs_tiou(report: dict[str, Any], path: str | Path) -> None:
    """mAP against the tIoU threshold of a detection report."""

    def draw(ax: Any) -> None:
        ax.plot(report["tiou_thresholds"], [100 * (v or 0.0) for v in report["mAP"]], marker="o")
        ax.set_xlabel("tIoU threshold")
        ax.set_ylabel("mAP (%)")
        average = 100 * (report["average_mAP"] or 0.0)
        ax.set_title(f"mAP ({report['protocol']} protocol), average {average:.2f}")

    _save(draw, path)


def _save(draw: Callable[[Any], None], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        draw(ax)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)

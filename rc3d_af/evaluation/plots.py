"""PNG figures of evaluation reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_report"]


def plot_report(report: dict[str, Any], path: str | Path) -> None:
    """AR-AN curves for proposal reports; mAP per duration bucket (bars) when the report has
    ``by_duration``; otherwise mAP against the tIoU threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    try:
        if report.get("task") == "proposals":
            _proposals(ax, report)
        elif "by_duration" in report:
            _durations(ax, report)
        else:
            _map_vs_tiou(ax, report)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)


def _proposals(ax: Any, report: dict[str, Any]) -> None:
    for name, curve in report["curves"].items():
        auc = report["conventions"][name]["auc"]
        ax.plot(curve["an"], [100 * v for v in curve["ar"]], label=f"{name} (AUC {auc:.2f})")
    ax.scatter(report["an"], [100 * v for v in report["ar"]], color="black", zorder=3,
               label=f"AR@AN ({report['convention']})")
    ax.set_xscale("log")
    ax.set_xlabel("average number of proposals per video (AN)")
    ax.set_ylabel("average recall (%)")
    ax.set_title(f"AR-AN, subset {report['subset'] or 'all'}")
    ax.legend()


def _durations(ax: Any, report: dict[str, Any]) -> None:
    buckets = list(report["by_duration"])
    thresholds = report["tiou_thresholds"]
    width = 0.8 / len(thresholds)
    for k, threshold in enumerate(thresholds):
        values = [100 * (report["by_duration"][b][k] or 0.0) for b in buckets]
        ax.bar([i + (k - (len(thresholds) - 1) / 2) * width for i in range(len(buckets))], values, width,
               label=f"tIoU {threshold:g}")
    ax.set_xticks(range(len(buckets)), buckets)
    ax.set_xlabel("ground-truth duration bucket")
    ax.set_ylabel("mAP (%)")
    ax.set_title(f"mAP by action duration ({report['protocol']} protocol)")
    ax.legend(fontsize="small", ncol=2)


def _map_vs_tiou(ax: Any, report: dict[str, Any]) -> None:
    ax.plot(report["tiou_thresholds"], [100 * (v or 0.0) for v in report["mAP"]], marker="o")
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_title(f"mAP ({report['protocol']} protocol), average {100 * (report['average_mAP'] or 0):.2f}")

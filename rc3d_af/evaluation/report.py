"""Terminal tables and JSON files for evaluation reports (the dicts the evaluators return)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["AMBIGUOUS_NOTE", "format_report", "report_warnings", "write_json"]

AMBIGUOUS_NOTE = (
    "note: the ground truth has no Ambiguous intervals; the THUMOS14 kit drops unmatched detections "
    "that overlap them (Ambiguous_test.txt), so its numbers differ (A2Net's af38: mAP@0.5 36.64 with "
    "them, 35.98 without)"
)


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100.0 * value:6.2f}"


def format_report(report: dict[str, Any], per_class: bool = True) -> str:
    """A readable table (percentages) of a detection or proposal report."""
    if report.get("task") == "proposals":
        return _format_proposals(report)
    thresholds = report["tiou_thresholds"]
    header = "".join(f"{t:>7g}" for t in thresholds) + "    avg"  # columns of " 12.34"
    lines = [
        f"Detection mAP (%), {report['protocol']} protocol (ties: {report['options']['tie_rule']}), subset "
        f"{report['subset'] or 'all'}: {report['videos']} videos, {report['ground_truths']} ground truths, "
        f"{report['predictions']} predictions, {report['classes_scored']} classes; "
        f"tIoU {report['tiou_range']}",
        f"{'tIoU':<30}{header}",
        f"{'mAP':<30}" + "".join(f" {_pct(v)}" for v in report["mAP"]) + f" {_pct(report['average_mAP'])}",
    ]
    if "average_mAP_0.3_0.7" in report:
        lines.append(f"{'avg mAP 0.3:0.7':<30} {_pct(report['average_mAP_0.3_0.7'])}")
    if per_class:
        lines.append("AP per class (ground truths / predictions)")
        for name, entry in report["per_class"].items():
            label = f"{name[:17]} ({entry['ground_truths']}/{entry['predictions']})"
            values = entry["AP"] or [None] * len(thresholds)
            lines.append(f"  {label:<28}" + "".join(f" {_pct(v)}" for v in values))
    if "by_duration_details" in report:
        lines.append("mAP by ground-truth duration (bucket [s), ground truths)")
        for name, entry in report["by_duration_details"].items():
            low, high = entry["range_s"]
            label = f"{name} [{low:g},{'inf' if high is None else f'{high:g}'}) {entry['ground_truths']}"
            lines.append(f"  {label:<28}" + "".join(f" {_pct(v)}" for v in entry["mAP"])
                         + f" {_pct(entry['average_mAP'])}")
    if "ambiguous_dropped" in report:
        lines.append(f"unmatched predictions on Ambiguous intervals, dropped: {report['ambiguous_dropped']}")
    if report.get("ambiguous_intervals") == 0:
        lines.append(AMBIGUOUS_NOTE)
    return "\n".join(lines)


def _format_proposals(report: dict[str, Any]) -> str:
    lines = [
        f"Proposals, subset {report['subset'] or 'all'}: {report['videos']} videos, "
        f"{report['ground_truths']} ground truths, {report['proposals']} proposals "
        f"({report['proposals_in_results']} in the results); tIoU {report['tiou_range']} "
        f"({len(report['tiou_thresholds'])} thresholds); ties: {report['tie_rule']}",
        f"{'AN':<26}" + "".join(f"{n:>8d}" for n in report["an"]) + "   AUC (%)",
    ]
    for name, entry in report["conventions"].items():
        marker = "*" if name == report["convention"] else " "
        label = f"{marker}AR (%) {name}"
        values = entry["ar"] or [None] * len(report["an"])  # None: AN off the official grid
        lines.append(f"{label:<26}" + "".join("     -  " if v is None else f"{100 * v:8.2f}" for v in values)
                     + f"   {entry['auc']:.2f} (AN <= {entry['auc_max_an']})")
    return "\n".join(lines)


def report_warnings(report: dict[str, Any], source: str) -> list[str]:
    """Messages about predictions that were not evaluated normally (unknown videos / labels)."""
    messages = []
    unknown = report.get("unknown_videos", {})
    if unknown.get("videos"):
        handling = {"false_positive": "counted as false positives", "ignore": "ignored"}.get(
            unknown.get("handling", ""), "not evaluated")
        messages.append(f"{source}: {unknown['predictions']} predictions on {unknown['videos']} videos "
                        f"without ground truth in the subset (e.g. {unknown['examples'][0]!r}), {handling}")
    labels = report.get("unknown_labels", {}).get("labels", {})
    if labels:
        shown = ", ".join(f"{label!r} x{count}" for label, count in list(labels.items())[:5])
        messages.append(f"{source}: {sum(labels.values())} predictions with labels that are not classes "
                        f"of the ground truth ({shown}), not evaluated")
    return messages


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write every number of ``report`` (NaN-free: missing values are null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")

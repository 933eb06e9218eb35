"""Evaluation: detection mAP (ActivityNet protocol and the THUMOS14 kit's), proposal AR@AN and
AUC, duration diagnostics, results files, terminal/JSON reports and plots.

Importing this package does not import matplotlib (``plots`` does, when called).
"""

from rc3d_af.evaluation.detection import evaluate_detections
from rc3d_af.evaluation.proposals import evaluate_proposals
from rc3d_af.evaluation.report import format_report, write_json
from rc3d_af.evaluation.results import Results, VideoDetections, load_results, save_results_json

__all__ = [
    "Results",
    "VideoDetections",
    "evaluate_detections",
    "evaluate_proposals",
    "format_report",
    "load_results",
    "save_results_json",
    "write_json",
]

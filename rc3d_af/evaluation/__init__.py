"""Evaluation: detection mAP (ActivityNet protocol and the THUMOS14 kit's), proposal AR@AN and
AUC, duration diagnostics, results files, terminal/JSON reports and plots."""

from rc3d_af.evaluation.detection import evaluate_detections
from rc3d_af.evaluation.results import Results, VideoDetections, load_results, save_results_json

__all__ = ["Results", "VideoDetections", "evaluate_detections", "load_results", "save_results_json"]

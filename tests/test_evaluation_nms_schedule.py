"""R-C3D's tIoU-dependent NMS schedule (an explicit evaluation option) on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rc3d_af.cli import main
from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.evaluation.detection import evaluate_detections
from rc3d_af.evaluation.nms_schedule import evaluate_with_nms_schedule, per_class_nms, schedule_iou
from rc3d_af.evaluation.results import Results


def case() -> tuple[AnnotationSet, Results]:
    # One ground truth [0, 10] of class a. A high-scoring detection [0, 10] and a lower one [4, 14]
    # (IoU 6/14 = 0.43 with the first and with the ground truth), plus a class-b detection on top.
    video = VideoAnnotation("v", "test", 60.0, 30.0, [Instance("a", 0.0, 10.0)])
    gt = AnnotationSet({"v": video}, ["a", "b"])
    results = Results()
    results.add("v", [[0.0, 10.0], [4.0, 14.0], [0.0, 10.0]], [0.9, 0.8, 0.7], ["a", "a", "b"])
    return gt, results


def test_schedule_iou_and_per_class_nms() -> None:
    assert [schedule_iou(t) for t in (0.1, 0.3, 0.5, 0.7)] == [0.0, 0.2, 0.4, 0.6]
    _, results = case()
    pruned = per_class_nms(results, 0.4)  # 0.43 > 0.4: the second class-a detection goes
    assert pruned.videos["v"].labels == ["a", "b"] and pruned.videos["v"].scores.tolist() == [0.9, 0.7]
    assert len(per_class_nms(results, 0.5).videos["v"]) == 3  # never across classes


def test_the_schedule_scores_each_threshold_on_its_own_pruned_detections() -> None:
    gt, results = case()
    # Single set: the second class-a detection is a false positive ranked after the true positive, so
    # the interpolated AP stays 1 (class b has no ground truth and is not in the mean).
    plain = evaluate_detections(gt, results, "test", [0.5, 0.6])
    scheduled = evaluate_with_nms_schedule(gt, results, "test", [0.5, 0.6])
    assert plain["mAP"] == pytest.approx([1.0, 1.0]) and scheduled["mAP"] == pytest.approx([1.0, 1.0])
    assert scheduled["tiou_thresholds"] == [0.5, 0.6]
    # At 0.5 (NMS at 0.4) the 0.43-overlap detection was pruned; at 0.6 (NMS at 0.5) it was kept.
    assert scheduled["predictions_per_tiou"] == [2, 3] and scheduled["predictions"] == 3
    assert scheduled["options"]["nms_schedule"]["nms_iou"] == [0.4, 0.5]
    assert scheduled["average_mAP"] == pytest.approx(1.0)


def test_evaluate_cli_option(tmp_path: Path, capsys) -> None:
    gt = {"database": {"v": {"subset": "test", "duration": 60.0, "fps": 30.0,
                             "annotations": [{"label": "a", "segment": [0.0, 10.0]}]}}}  # fmt: skip
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    res = {"results": {"v": [{"label": "a", "score": 0.9, "segment": [0.0, 10.0]},
                             {"label": "a", "score": 0.95, "segment": [4.0, 14.0]}]}}  # fmt: skip
    (tmp_path / "res.json").write_text(json.dumps(res))
    args = ["evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json"),
            "--tiou", "0.5", "--json", str(tmp_path / "out.json")]  # fmt: skip
    assert main(args) == 0
    # The 0.95 detection [4, 14] (IoU 0.43) ranks first as a false positive: AP 0.5 (precision 1/2
    # at recall 1).
    assert json.loads((tmp_path / "out.json").read_text())["mAP"] == pytest.approx([0.5])
    assert main([*args, "--nms-schedule", "rc3d"]) == 0
    # NMS at 0.4 removes the lower-scoring overlapping one ([0, 10]): the ground truth is missed at 0.5.
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["mAP"] == pytest.approx([0.0]) and report["options"]["nms_schedule"]["name"] == "rc3d"
    capsys.readouterr()

"""Results files, the `evaluate` / `convert-annotations` commands and their output contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rc3d_af.cli import main
from rc3d_af.data.annotations import load_annotations
from rc3d_af.errors import InputError
from rc3d_af.evaluation import Results, evaluate_detections, load_results, save_results_json
from rc3d_af.evaluation.results import save_results_txt
from shared_data import THUMOS14

THUMOS = THUMOS14  # real kit annotations and A2Net detections (read-only)
AF38 = THUMOS / "reference_results/a2net_table1_example/action_detection_af38.txt"

GT_DOC = {
    "classes": ["Jump", "Run"],
    "class_ids": {"Jump": 7, "Run": 9},
    "database": {
        "v1": {"subset": "test", "duration": 30.0, "fps": 30.0,
               "annotations": [{"label": "Jump", "segment": [1.0, 3.0]},
                               {"label": "Run", "segment": [10, 20]}]},
        "v2": {"subset": "test", "duration": 30.0, "fps": 25.0,
               "annotations": [{"label": "Run", "segment": [5.0, 9.0]}]},
    },
}


@pytest.fixture
def gt_file(tmp_path: Path) -> Path:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(GT_DOC))
    return path


def test_text_results_by_name_and_by_id(tmp_path: Path) -> None:
    path = tmp_path / "res.txt"
    path.write_text("v1.mp4\t1.0\t3.0\t7\t0.9\nv2 5 9 Run 0.8\nv1 10 20 99 0.1\n")
    results = load_results(path, ["Jump", "Run"], class_ids={"Jump": 7, "Run": 9})
    assert list(results.videos) == ["v1", "v2"]
    assert results.videos["v1"].labels == ["Jump", "99"]  # unknown id kept, reported later
    np.testing.assert_array_equal(results.videos["v1"].segments, [[1.0, 3.0], [10.0, 20.0]])
    assert results.videos["v2"].labels == ["Run"] and results.num_predictions == 3


def test_results_round_trips(tmp_path: Path) -> None:
    results = Results()
    results.add("v1", [[1.0, 3.25], [10.0, 20.0]], [0.9, 0.123456789], ["Jump", "Run"])
    results.add("v2", [[5.0, 9.0]], [0.8], ["Run"])
    save_results_json(results, tmp_path / "r.json")
    save_results_txt(results, tmp_path / "r.txt", class_ids={"Jump": 7, "Run": 9})
    for name in ("r.json", "r.txt"):
        loaded = load_results(tmp_path / name, ["Jump", "Run"], class_ids={"Jump": 7, "Run": 9})
        assert list(loaded.videos) == ["v1", "v2"]
        for vid in results.videos:
            np.testing.assert_allclose(loaded.videos[vid].segments, results.videos[vid].segments, atol=1e-6)
            np.testing.assert_allclose(loaded.videos[vid].scores, results.videos[vid].scores, rtol=1e-9)
            assert loaded.videos[vid].labels == results.videos[vid].labels


def _one(fields: str) -> str:
    """A results JSON with one detection made of ``fields``."""
    return '{"results": {"v1": [{' + fields + '}]}}'


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("bad.json", "{", r"bad\.json: not valid JSON"),
        ("bad.json", '{"res": {}}', "'results' object"),
        ("bad.json", _one('"label": "Run", "score": 0.5'), r"results\['v1'\]\[0\]\.segment"),
        ("bad.json", _one('"label": "Run", "score": 0.5, "segment": [3, 1]'), "ends before"),
        ("bad.json", _one('"label": "Run", "score": NaN, "segment": [1, 3]'), r"\.score"),
        ("bad.json", _one('"score": 0.5, "segment": [1, 3]'), "label"),
        ("bad.txt", "v1 1 3 Run\n", "line 1: expected 'video t_start t_end class score'"),
        ("bad.txt", "v1 1 3 Run 0.5\nv1 nan 3 Run 0.5\n", "line 2, t_start"),
        ("bad.txt", "v1 1 3 Run nan\n", "line 1, score"),
        ("bad.txt", "v1 4 3 Run 0.5\n", "line 1: segment"),
    ],
)
def test_bad_results_name_file_and_entry(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError, match=expected) as info:
        load_results(path, ["Run"])
    assert str(path) in str(info.value)


def test_evaluate_command_detection_contract(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "res.txt"
    res.write_text("v1 1 3 Jump 0.9\nv1 10 19 Run 0.8\nv3 0 1 Run 0.95\nv2 5 9 Swim 0.5\n")
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--subset", "test",
                 "--tiou", "0.3,0.5", "--by-duration", "--json", str(out_json), "--plot", str(out_png)])
    assert code == 0
    captured = capsys.readouterr()
    assert "v3" in captured.err and "'Swim' x1" in captured.err
    assert "Detection mAP" in captured.out
    report = json.loads(out_json.read_text())
    for key in ("protocol", "subset", "tiou_thresholds", "mAP", "average_mAP", "videos", "ground_truths",
                "predictions", "per_class", "by_duration"):
        assert key in report
    assert report["tiou_thresholds"] == [0.3, 0.5] and report["subset"] == "test"
    # Jump: TP -> AP 1. Run: the v3 false positive ranks first, then a TP (IoU 0.9), 2 GT -> AP 0.25.
    assert report["mAP"] == [pytest.approx(0.625), pytest.approx(0.625)]
    assert report["unknown_videos"]["predictions"] == 1 and report["unknown_labels"]["predictions"] == 1
    assert set(report["by_duration"]) == {"ES", "S", "M", "L", "EL"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_command_proposals_contract(gt_file: Path, tmp_path: Path) -> None:
    res = tmp_path / "props.json"
    res.write_text(json.dumps({"results": {"v1": [{"segment": [1, 3], "score": 0.9}],
                                           "v2": [{"segment": [5, 9], "score": 0.4}]}}))
    out_json, out_png = tmp_path / "p.json", tmp_path / "p.png"
    assert main(["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--proposals",
                 "--an", "1,2", "--json", str(out_json), "--plot", str(out_png)]) == 0
    report = json.loads(out_json.read_text())
    assert report["an"] == [1, 2] and len(report["ar"]) == 2
    assert report["ar"][1] == pytest.approx(2 / 3) and 0 <= report["auc"] <= 100
    assert out_png.exists()


def test_evaluate_command_bad_input_exits_2(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "res.txt"
    res.write_text("v1 3 1 Jump 0.9\n")
    assert main(["evaluate", "--ground-truth", str(gt_file), "--results", str(res)]) == 2
    assert f"{res}, line 1" in capsys.readouterr().err
    res.write_text("v1 1 3 Jump 0.9\n")
    args = ["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--tiou", "0.7:0.1:0.1"]
    assert main(args) == 2
    assert "--tiou" in capsys.readouterr().err


def test_several_subsets_need_a_choice(tmp_path: Path, capsys) -> None:
    doc = json.loads(json.dumps(GT_DOC))
    doc["database"]["v2"]["subset"] = "validation"
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(doc))
    res = tmp_path / "res.txt"
    res.write_text("v1 1 3 Jump 0.9\n")
    assert main(["evaluate", "--ground-truth", str(gt), "--results", str(res)]) == 2
    assert "choose one with --subset" in capsys.readouterr().err


def test_convert_annotations_then_evaluate_af38_alike(tmp_path: Path, capsys) -> None:
    out = tmp_path / "thumos14.json"
    assert main(["convert-annotations", str(THUMOS / "annotation_val"), str(THUMOS / "annotation_test"),
                 "--out", str(out)]) == 0
    assert "test: 213 videos / 3358 instances" in capsys.readouterr().out
    converted = load_annotations(out)
    folder = load_annotations(THUMOS / "annotation_test")
    assert converted.subset("test").videos == folder.videos
    assert converted.class_ids == folder.class_ids
    results = load_results(AF38, converted.class_names, class_ids=converted.class_ids)
    via_json = evaluate_detections(converted, results, "test", "0.5", "thumos14")
    via_folder = evaluate_detections(folder, results, "test", "0.5", "thumos14")
    assert via_json["mAP"] == via_folder["mAP"]


def test_plot_map_vs_tiou(gt_file: Path, tmp_path: Path) -> None:
    from rc3d_af.evaluation.plots import plot_report

    results = Results()
    results.add("v1", [[1.0, 3.0]], [0.9], ["Jump"])
    report = evaluate_detections(load_annotations(gt_file), results, "test", "0.5,0.7")
    plot_report(report, tmp_path / "map.png")
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"

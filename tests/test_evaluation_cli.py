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
    path.write_text("v1.mp4\t1.0\t3.0\t7\t0.9\nv2 5 9 Run 0.8\nv1 10 20 Swim 0.1\n")
    results = load_results(path, ["Jump", "Run"], class_ids={"Jump": 7, "Run": 9})
    assert list(results.videos) == ["v1", "v2"]
    assert results.videos["v1"].labels == ["Jump", "Swim"]  # unknown name kept, reported later
    np.testing.assert_array_equal(results.videos["v1"].segments, [[1.0, 3.0], [10.0, 20.0]])
    assert results.videos["v2"].labels == ["Run"] and results.num_predictions == 3


def test_text_results_with_an_unknown_class_id_name_the_line(gt_file: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "res.txt"
    path.write_text("v1 1 3 7 0.9\nv1 10 20 999 0.1\n")
    with pytest.raises(InputError, match=r"res\.txt, line 2: class 999 is a number but not a class id; "
                       r"the known ids are 7=Jump, 9=Run"):
        load_results(path, ["Jump", "Run"], class_ids={"Jump": 7, "Run": 9})
    with pytest.raises(InputError, match=r"line 1: class 7 .* defines no class ids"):
        load_results(path, ["Jump", "Run"])
    assert main(["evaluate", "--ground-truth", str(gt_file), "--results", str(path)]) == 2
    assert f"{path}, line 2: class 999" in capsys.readouterr().err
    # Proposals ignore the class field whatever it holds.
    assert load_results(path, ["Jump"], require_labels=False).videos["v1"].labels == ["", ""]


def test_no_label_of_the_results_is_a_class(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "res.json"  # e.g. ActionFormer's class names against THUMOS ids written as text
    res.write_text(json.dumps({"results": {"v1": [{"label": "7", "score": 0.9, "segment": [1, 3]},
                                                  {"label": "9", "score": 0.8, "segment": [10, 20]}]}}))
    assert main(["evaluate", "--ground-truth", str(gt_file), "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert "none of its 2 predictions has a label that is a class of the ground truth" in err
    assert "results labels ['7', '9'] (2 in all); ground-truth classes ['Jump', 'Run'] (2 in all)" in err


def test_ground_truth_video_without_annotations_field(tmp_path: Path, capsys) -> None:
    doc = json.loads(json.dumps(GT_DOC))
    doc["database"]["v2"]["annotations"] = []  # an empty list is a video without instances
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(doc))
    assert load_annotations(gt).videos["v2"].instances == []
    del doc["database"]["v2"]["annotations"]
    gt.write_text(json.dumps(doc))
    res = tmp_path / "res.txt"
    res.write_text("v1 1 3 Jump 0.9\n")
    assert main(["evaluate", "--ground-truth", str(gt), "--results", str(res)]) == 2
    assert "database['v2']: no 'annotations' field" in capsys.readouterr().err


def test_tie_rule_option(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "res.txt"  # v2's false positive listed before v1's true positive, tied scores
    res.write_text("v2 0 1 Run 0.5\nv1 1 3 Jump 0.9\nv1 10 20 Run 0.5\n")
    reports = {}
    for rule in ("official", "stable"):
        out = tmp_path / f"{rule}.json"
        args = ["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--tiou", "0.5", "--json",
                str(out)]
        assert main([*args, "--tie-rule", rule] if rule == "stable" else args) == 0
        assert f"(ties: {rule})" in capsys.readouterr().out
        reports[rule] = json.loads(out.read_text())
        assert reports[rule]["options"]["tie_rule"] == rule
    # Run: 2 ground truths; stable: FP then TP -> AP 0.25; official (argsort reversed): TP first -> 0.5.
    assert reports["stable"]["per_class"]["Run"]["AP"] == [pytest.approx(0.25)]
    assert reports["official"]["per_class"]["Run"]["AP"] == [pytest.approx(0.5)]


def test_kit_protocol_without_ambiguous_says_so(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "res.txt"
    res.write_text("v1 1 3 Jump 0.9\n")
    out = tmp_path / "kit.json"
    args = ["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--protocol", "thumos14"]
    assert main([*args, "--json", str(out)]) == 0
    assert "the ground truth has no Ambiguous intervals" in capsys.readouterr().out
    assert json.loads(out.read_text())["ambiguous_intervals"] == 0
    doc = json.loads(json.dumps(GT_DOC))
    doc["database"]["v2"]["ambiguous"] = [[20.0, 25.0]]
    gt_file.write_text(json.dumps(doc))
    assert main(args) == 0
    assert "Ambiguous" not in capsys.readouterr().out.replace("on Ambiguous intervals, dropped", "")


def test_evaluate_help_explains_the_default_thresholds(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "`rc3d-af test` uses its config's test.tiou_thresholds instead" in text
    assert "--tie-rule {official,stable}" in text


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


def test_evaluate_command_proposals_contract(gt_file: Path, tmp_path: Path, capsys) -> None:
    res = tmp_path / "props.json"  # R-C3D.pytorch writes "label": 100 on every proposal
    res.write_text(json.dumps({"results": {"v1": [{"segment": [1, 3], "score": 0.9, "label": 100}],
                                           "v2": [{"segment": [5, 9], "score": 0.4, "label": 100}]}}))
    out_json, out_png = tmp_path / "p.json", tmp_path / "p.png"
    assert main(["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--proposals",
                 "--an", "1,2", "--json", str(out_json), "--plot", str(out_png)]) == 0
    report = json.loads(out_json.read_text())
    for key in ("an", "ar", "auc", "auc_max_an", "tiou_thresholds", "tiou_range", "tie_rule", "videos",
                "ground_truths", "proposals", "proposals_in_results", "conventions", "curves"):
        assert key in report
    assert report["an"] == [1, 2] and len(report["ar"]) == 2
    assert report["ar"][1] == pytest.approx(2 / 3) and 0 <= report["auc"] <= 100
    # THUMOS14-like ground truth (class ids): the THUMOS14 range by default.
    assert report["tiou_range"] == "0.5:1.0:0.05" and report["tiou_thresholds"][-1] == 1.0
    assert "tIoU 0.5:1.0:0.05 (11 thresholds)" in capsys.readouterr().out
    assert out_png.exists()
    args = ["evaluate", "--ground-truth", str(gt_file), "--results", str(res), "--proposals", "--an", "1,2",
            "--json", str(out_json), "--tiou", "0.5:0.95:0.05"]
    assert main(args) == 0
    assert "tIoU 0.5:0.95:0.05 (10 thresholds)" in capsys.readouterr().out
    assert len(json.loads(out_json.read_text())["tiou_thresholds"]) == 10
    doc = {key: value for key, value in GT_DOC.items() if key != "class_ids"}
    gt_file.write_text(json.dumps(doc))  # no class ids: the ActivityNet range by default
    assert main(args[:-2]) == 0
    assert json.loads(out_json.read_text())["tiou_range"] == "0.5:0.95:0.05"


def test_proposals_text_file_with_class_100_on_the_kit_folder(tmp_path: Path, capsys) -> None:
    res = tmp_path / "props.txt"
    res.write_text("video_test_0000004 0.0 10.0 100 0.9\n")  # a class field that is no class id
    out = tmp_path / "p.json"
    assert main(["evaluate", "--ground-truth", str(THUMOS / "annotation_test"), "--results", str(res),
                 "--proposals", "--an", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tiou_range"] == "0.5:1.0:0.05" and report["proposals_in_results"] == 1
    assert "tIoU 0.5:1.0:0.05 (11 thresholds)" in capsys.readouterr().out


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


def test_duration_chart_axis_names_ranges_and_ground_truths(gt_file: Path, tmp_path: Path) -> None:
    from rc3d_af.evaluation.plots import duration_tick_labels, plot_report

    results = Results()
    results.add("v1", [[1.0, 3.0]], [0.9], ["Jump"])
    report = evaluate_detections(load_annotations(gt_file), results, "test", "0.5", by_duration=True)
    # GT_DOC: Jump 2 s (S), Run 10 s (EL) and 4 s (M).
    assert duration_tick_labels(report) == ["ES\n[0, 1.5) s\n0 GT", "S\n[1.5, 2.5) s\n1 GT",
                                            "M\n[2.5, 4.2) s\n1 GT", "L\n[4.2, 6.9) s\n0 GT",
                                            "EL\n[6.9, inf) s\n1 GT"]
    plot_report(report, tmp_path / "duration.png")
    assert (tmp_path / "duration.png").read_bytes()[:4] == b"\x89PNG"

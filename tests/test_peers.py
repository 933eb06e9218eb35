"""benchmarks/peers.py, its pure parts: format conversion for ActionFormer and back, budget scaling,
aggregation over seeds and the tables. Nothing here needs ActionFormer or trains a model."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rc3d_af.config import load_config
from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "benchmarks/peers.py")
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)

CLASSES = ["Diving", "LongJump"]


def make_set(videos: dict[str, tuple[str, float | None, list[tuple[str, float, float]]]]) -> AnnotationSet:
    """``{video: (subset, fps, [(label, start, end)])}``, every video 100 s long."""
    return AnnotationSet(
        videos={
            vid: VideoAnnotation(vid, subset, 100.0, fps, [Instance(*row) for row in rows], [])
            for vid, (subset, fps, rows) in videos.items()
        },
        class_names=list(CLASSES),
    )


# ----------------------------------------------------------------------------------------------
# Our annotations -> ActionFormer's JSON
# ----------------------------------------------------------------------------------------------


def test_annotations_carry_seconds_fps_and_our_class_ids() -> None:
    gt = make_set(
        {
            "v1": ("validation", 30.0, [("LongJump", 1.5, 4.0), ("Diving", 10.0, 12.25)]),
            "v2": ("test", 25.0, []),
        }
    )
    document = peers.actionformer_annotations(gt, "validation")
    assert document == {
        "database": {
            "v1": {
                "subset": "validation",
                "duration": 100.0,
                "fps": 30.0,
                "annotations": [
                    {"label": "LongJump", "segment": [1.5, 4.0], "label_id": 1},
                    {"label": "Diving", "segment": [10.0, 12.25], "label_id": 0},
                ],
            },
            "v2": {"subset": "test", "duration": 100.0, "fps": 25.0, "annotations": []},
        }
    }


@pytest.mark.parametrize(
    ("videos", "message"),
    [
        ({"v1": ("validation", None, [("Diving", 1.0, 2.0), ("LongJump", 3.0, 4.0)])}, "no fps"),
        (
            {
                "v1": ("validation", 30.0, [("Diving", 1.0, 2.0), ("LongJump", 3.0, 4.0)]),
                "v2": ("validation", 30.0, []),
            },
            "has no instance",
        ),
        ({"v1": ("validation", 30.0, [("Diving", 1.0, 2.0)])}, "LongJump"),
    ],
)
def test_annotations_that_its_loader_cannot_read_are_errors(videos, message) -> None:
    with pytest.raises(InputError, match=message):
        peers.actionformer_annotations(make_set(videos), "validation")


def test_config_maps_seconds_to_the_same_feature_grid_as_ours() -> None:
    """ActionFormer's THUMOS14 loader puts an instance at ``t * fps / feat_stride - 0.5 *
    num_frames / feat_stride``; with the config's values that is FeatureSpec.seconds_to_index."""
    spec = FeatureSpec(stride_frames=4, clip_frames=16)
    cfg = peers.actionformer_config(
        json_file=Path("/a.json"), feature_dir=Path("/f"), num_classes=20, input_dim=64, width=128,
        total_epochs=8, seed=3, train_subset="validation", test_subset="test", spec=spec,
    )  # fmt: skip
    data = cfg["dataset"]
    for seconds, fps in [(0.0, 30.0), (12.34, 29.97), (100.0, 25.0)]:
        theirs = seconds * fps / data["feat_stride"] - 0.5 * data["num_frames"] / data["feat_stride"]
        assert theirs == pytest.approx(spec.seconds_to_index(seconds, fps))
    assert data["default_fps"] is None  # each video's own fps
    assert (data["file_ext"], data["input_dim"], data["num_classes"]) == (".npy", 64, 20)
    assert (cfg["train_split"], cfg["val_split"], cfg["init_rand_seed"]) == (["validation"], ["test"], 3)


def test_config_is_the_thumos14_recipe_at_the_given_width() -> None:
    cfg = peers.actionformer_config(
        json_file=Path("/a.json"), feature_dir=Path("/f"), num_classes=20, input_dim=64, width=96,
        total_epochs=35, seed=0, train_subset="validation", test_subset="test", spec=FeatureSpec(),
    )  # fmt: skip
    assert cfg["opt"] == {"learning_rate": 1e-4, "weight_decay": 0.05, "epochs": 30, "warmup_epochs": 5}
    assert {cfg["model"][k] for k in ("embd_dim", "fpn_dim", "head_dim")} == {96}
    assert cfg["model"]["n_mha_win_size"] == 19 and cfg["dataset"]["max_seq_len"] == 2304
    assert cfg["loader"]["batch_size"] == 2 and cfg["train_cfg"]["clip_grad_l2norm"] == 1.0
    # the recipe table itself is not modified by building a config
    assert "embd_dim" not in peers.AF_RECIPE["model"] and "json_file" not in peers.AF_RECIPE["dataset"]


@pytest.mark.parametrize("width", [0, 2, 130])
def test_config_refuses_a_width_its_heads_cannot_split(width) -> None:
    with pytest.raises(InputError, match="--af-width"):
        peers.actionformer_config(
            json_file=Path("/a.json"), feature_dir=Path("/f"), num_classes=2, input_dim=8, width=width,
            total_epochs=2, seed=0, train_subset="validation", test_subset="test", spec=FeatureSpec(),
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# ActionFormer's detections -> our results
# ----------------------------------------------------------------------------------------------


def test_detections_become_results_with_our_class_names_in_seconds() -> None:
    document = {
        "videos": {
            "v1": {"segments": [[1.5, 4.0], [10.0, 12.0]], "scores": [0.9, 0.25], "labels": [1, 0]},
            "v2": {"segments": [], "scores": [], "labels": []},
        }
    }
    results = peers.results_from_actionformer(document, CLASSES)
    assert list(results.videos) == ["v1", "v2"]
    v1 = results.videos["v1"]
    np.testing.assert_array_equal(v1.segments, [[1.5, 4.0], [10.0, 12.0]])
    np.testing.assert_array_equal(v1.scores, [0.9, 0.25])
    assert v1.labels == ["LongJump", "Diving"]
    assert len(results.videos["v2"]) == 0


def test_detections_with_an_unknown_class_id_are_an_error() -> None:
    document = {"videos": {"v1": {"segments": [[1.0, 2.0]], "scores": [0.5], "labels": [2]}}}
    with pytest.raises(InputError, match="class id 2"):
        peers.results_from_actionformer(document, CLASSES)


def test_quick_timings_hold_every_class_in_each_subset() -> None:
    gt = make_set(
        {
            "a": ("validation", 30.0, [("Diving", 1.0, 2.0)]),
            "b": ("validation", 30.0, [("Diving", 1.0, 2.0), ("LongJump", 3.0, 4.0)]),
            "c": ("validation", 30.0, [("LongJump", 3.0, 4.0)]),
            "d": ("test", 30.0, [("LongJump", 3.0, 4.0), ("Diving", 5.0, 6.0)]),
            "e": ("test", 30.0, [("Diving", 5.0, 6.0)]),
        }
    )
    assert list(peers.quick_timings(gt, ("validation", "test")).videos) == ["a", "b", "d"]
    with pytest.raises(InputError, match="LongJump"):
        peers.quick_timings(make_set({"a": ("test", 30.0, [("Diving", 1.0, 2.0)])}), ("test",))


# ----------------------------------------------------------------------------------------------
# Budgets
# ----------------------------------------------------------------------------------------------


def test_our_budgets_scale_epochs_and_milestones_through_the_config() -> None:
    assert peers.scaled_schedule(12, [10], 1) == (12, [10])
    assert peers.scaled_schedule(12, [10], 8) == (96, [80])
    assert peers.scaled_schedule(8, [3, 6], 4) == (32, [12, 24])
    with pytest.raises(InputError, match="--budgets"):
        peers.scaled_schedule(12, [10], 0)
    cfg = load_config(ROOT / "configs/a2net_synthetic.yaml", peers.schedule_overrides(48, [40]))
    assert (cfg.train.epochs, list(cfg.train.lr_milestones)) == (48, [40])
    cfg = load_config(ROOT / "configs/a2net_synthetic.yaml", peers.schedule_overrides(1, []))
    assert (cfg.train.epochs, list(cfg.train.lr_milestones)) == (1, [])


def test_actionformer_budget_matches_the_a2net_cpu_seconds() -> None:
    assert peers.actionformer_one_x(200.0, 88.0) == 2  # 2.27 epochs
    assert peers.actionformer_one_x(200.0, 60.0) == 3  # 3.33
    assert peers.actionformer_one_x(6.0, 12.0) == 1  # never below one epoch
    with pytest.raises(InputError, match="positive"):
        peers.actionformer_one_x(0.0, 88.0)


@pytest.mark.parametrize(
    ("total", "split"), [(35, (5, 30)), (1, (1, 0)), (2, (1, 1)), (16, (2, 14)), (24, (3, 21))]
)
def test_actionformer_schedule_keeps_the_recipes_warmup_share(total, split) -> None:
    assert peers.actionformer_schedule(total) == split


def test_actionformer_schedule_needs_an_epoch() -> None:
    with pytest.raises(InputError, match="at least 1 epoch"):
        peers.actionformer_schedule(0)


# ----------------------------------------------------------------------------------------------
# Aggregation and tables
# ----------------------------------------------------------------------------------------------

TIOUS = [0.1, 0.5, 0.7]


def fake_run(model: str, budget: int, seed: int, maps: dict[str, list[float]], cpu: float) -> dict:
    return {
        "model": model,
        "budget": budget,
        "seed": seed,
        "epochs": 12 * budget,
        "parameters": 1_500_000,
        "train": {"cpu_seconds": cpu, "wall_seconds": 2 * cpu},
        "scores": {
            weights: {
                "tiou_thresholds": TIOUS,
                "mAP": m,
                "average_mAP": None if None in m else sum(m) / len(m),
                "inference_seconds": 5.0 + seed,
            }
            for weights, m in maps.items()
        },
    }


RUNS = [
    fake_run("a2net", 1, 0, {"final": [0.30, 0.20, 0.10]}, 200.0),
    fake_run("a2net", 1, 1, {"final": [0.40, 0.30, 0.20]}, 210.0),
    fake_run("actionformer", 1, 0, {"raw": [0.40, 0.10, 0.02], "ema": [0.2, 0.05, None]}, 220.0),
    fake_run("actionformer", 1, 1, {"raw": [0.50, 0.14, 0.04], "ema": [0.3, 0.07, None]}, 230.0),
    fake_run("a2net", 4, 0, {"final": [0.7, 0.6, 0.5]}, 800.0),
]


def test_aggregate_means_and_sample_stds_over_seeds() -> None:
    summary = peers.aggregate(RUNS)
    assert list(summary) == ["actionformer_raw", "actionformer_ema", "a2net"]
    assert list(summary["a2net"]) == ["1", "4"]
    a2 = summary["a2net"]["1"]
    assert a2["seeds"] == [0, 1]
    assert a2["mAP"]["mean"] == pytest.approx([0.35, 0.25, 0.15])
    assert a2["mAP"]["std"] == pytest.approx([math.sqrt(0.005)] * 3)  # sample std of two values 0.1 apart
    assert a2["train_cpu_seconds"]["mean"] == pytest.approx(205.0)
    assert a2["train_cpu_seconds"]["std"] == pytest.approx(math.sqrt(50.0))
    assert a2["inference_seconds"]["mean"] == pytest.approx(5.5)
    one_seed = summary["a2net"]["4"]
    assert one_seed["seeds"] == [0] and one_seed["mAP"]["std"] == [0.0, 0.0, 0.0]
    ema = summary["actionformer_ema"]["1"]
    assert ema["mAP"]["mean"][:2] == pytest.approx([0.25, 0.06]) and ema["mAP"]["mean"][2] is None
    # raw and EMA rows share the training run
    assert summary["actionformer_raw"]["1"]["train_cpu_seconds"] == ema["train_cpu_seconds"]


def test_table_shows_every_row_and_number_side_by_side() -> None:
    table = peers.format_table(peers.aggregate(RUNS), TIOUS)
    lines = table.splitlines()
    assert lines[1].split()[-4:] == ["0.1", "0.5", "0.7", "avg"]
    a2net_1x = next(line for line in lines if line.startswith("A2Net") and " 1x " in line)
    cells = a2net_1x.split()
    assert cells[1:6] == ["1x", "2", "1.500", "12", "205.0+-7.1"]  # budget, seeds, params M, epochs, CPU-s
    assert cells[6:8] == ["410.0+-14.1", "5.5+-0.7"]  # wall s, inference s
    assert cells[8:11] == ["35.0+-7.1", "25.0+-7.1", "15.0+-7.1"]
    assert cells[11] == "25.0+-7.1"  # average over the tIoUs
    ema = next(line for line in lines if line.startswith("ActionFormer (EMA)"))
    assert ema.split()[-2:] == ["-", "-"]  # mAP@0.7 undefined, so is its average
    assert sum(line.startswith("ActionFormer (final)") for line in lines) == 1


def test_ratios_compare_with_the_better_actionformer_weights() -> None:
    text = peers.format_ratios(peers.aggregate(RUNS), TIOUS)
    # budget 1: ActionFormer raw (mAP@0.5 0.12, @0.7 0.03) beats EMA (0.06); A2Net 0.25 and 0.15
    line = next(line for line in text.splitlines() if line.startswith("A2Net") and " 1x " in line)
    assert "x2.08 at 0.5" in line and "+12.0 at 0.7" in line
    assert not any(" 4x " in line for line in text.splitlines())  # no ActionFormer run at 4x
    assert peers.format_ratios(peers.aggregate(RUNS[:2]), TIOUS) == ""  # no peer at all


def test_plan_starts_a2net_first_and_actionformer_after_our_detectors() -> None:
    tasks = peers.plan(["actionformer", "rc3d_af", "a2net"], [4, 1], [0, 1])
    assert tasks[:6] == [
        ("a2net", 1, 0), ("a2net", 1, 1), ("rc3d_af", 1, 0), ("rc3d_af", 1, 1),
        ("actionformer", 1, 0), ("actionformer", 1, 1),
    ]  # fmt: skip
    assert tasks[6:] == [(m, 4, s) for m in ("a2net", "rc3d_af", "actionformer") for s in (0, 1)]


def test_a_reused_run_must_come_from_the_same_benchmark(tmp_path: Path) -> None:
    for name, text in (("a", "x"), ("b", "x"), ("c", "y")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "annotations.json").write_text('{"database": {}}')
        (tmp_path / name / "synthetic.json").write_text(text)
    a, b, c = (tmp_path / n / "annotations.json" for n in "abc")
    assert peers._same_benchmark(a, b)
    assert not peers._same_benchmark(a, c)  # other generator settings


def test_ours_from_reuses_only_the_models_it_holds(tmp_path: Path) -> None:
    (tmp_path / "a2net").mkdir()
    assert peers.reused_folder(tmp_path, "a2net", 1) == tmp_path / "a2net"
    assert peers.reused_folder(tmp_path, "rc3d", 1) is None  # demo_seeds does not train plain R-C3D
    assert peers.reused_folder(tmp_path, "a2net", 4) is None  # only the 1x budget is the demo's recipe
    assert peers.reused_folder(None, "a2net", 1) is None


def test_report_prints_every_recorded_run_and_trains_nothing(tmp_path: Path, capsys) -> None:
    settings = {"quick": False, "dim": 64, "data_seed": 0, "af_width": 128, "af_threads": 1}
    settings["af_epochs"] = None  # the command line's defaults
    (tmp_path / "peers.json").write_text(json.dumps({"settings": settings, "runs": RUNS}))
    assert peers.main(["--report", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("A2Net") and " 4x " in line for line in out.splitlines())
    assert "ActionFormer (final)" in out and (tmp_path / "learning_curve.png").is_file()
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()
    assert "summary" in json.loads((tmp_path / "peers.json").read_text())

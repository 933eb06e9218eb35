"""End to end through the command line: synth -> train (1 epoch) -> test -> detect -> info."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rc3d_af.cli import main
from rc3d_af.data.annotations import load_annotations
from rc3d_af.engine.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set (4 THUMOS14-timed videos, 16-d) and a tiny-model config for it."""
    root = tmp_path_factory.mktemp("e2e")
    assert (
        main(["synth", "--like", "thumos14", "--videos", "4", "--dim", "16", "--out", str(root / "data")])
        == 0
    )
    config = {
        "data": {
            "annotations": str(root / "data" / "annotations.json"),
            "features": str(root / "data" / "features"),
            "window_size": 64,
            "train_stride": 64,
            "test_stride": 64,
        },
        "model": {"num_levels": 3, "width_multiplier": 0.03125, "af_head_channels": 256},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "device": "cpu"},
        "test": {"tiou_thresholds": [0.3, 0.5, 0.7], "by_duration": True},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def trained(workspace: Path) -> Path:
    run_dir = workspace / "run"
    code = main(["train", str(workspace / "tiny.yaml"), "--out", str(run_dir), "--no-progress"])
    assert code == 0
    return run_dir


def test_train_writes_the_run_directory(trained: Path, workspace: Path) -> None:
    assert {p.name for p in trained.iterdir()} >= {"config.yaml", "train.log", "last.pt"}
    state = load_checkpoint(trained / "last.pt")
    assert state["epoch"] == 1 and state["in_channels"] == 16
    assert state["class_names"] == load_annotations(workspace / "data" / "annotations.json").class_names
    assert state["config"]["model"]["num_levels"] == 3  # the resolved config travels with the weights
    log = (trained / "train.log").read_text()
    assert "epoch 1/1" in log and "win/s" in log


def test_test_writes_results_metrics_and_plots(trained: Path, workspace: Path, capsys) -> None:
    out = workspace / "test_out"
    assert main(["test", "--checkpoint", str(trained / "last.pt"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed
    results = json.loads((out / "results.json").read_text())
    annotations = load_annotations(workspace / "data" / "annotations.json")
    test_videos = {v for v, video in annotations.videos.items() if video.subset == "test"}
    assert set(results["results"]) == test_videos
    for video_id, detections in results["results"].items():
        for det in detections:
            assert det["label"] in annotations.class_names
            assert 0.0 <= det["segment"][0] < det["segment"][1] <= annotations.videos[video_id].duration
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tiou_thresholds"] == [0.3, 0.5, 0.7] and len(metrics["mAP"]) == 3
    assert all(0.0 <= v <= 1.0 for v in metrics["mAP"])
    assert metrics["videos"] == len(test_videos)
    assert metrics["predictions"] == sum(len(d) for d in results["results"].values())
    assert set(metrics["by_duration"]) == {"ES", "S", "M", "L", "EL"}
    assert (out / "duration.png").stat().st_size > 0 and (out / "map_vs_tiou.png").stat().st_size > 0


def test_detect_one_video_json_and_plot(trained: Path, workspace: Path, capsys) -> None:
    annotations = load_annotations(workspace / "data" / "annotations.json")
    video_id = next(v for v, video in annotations.videos.items() if video.subset == "test")
    features = workspace / "data" / "features" / f"{video_id}.npy"
    plot = workspace / "timeline.png"
    args = ["detect", str(features), "--checkpoint", str(trained / "last.pt"), "--plot", str(plot)]
    assert main([*args, "--ground-truth", str(workspace / "data" / "annotations.json")]) == 0
    document = json.loads(capsys.readouterr().out)
    video = annotations.videos[video_id]
    assert document["video_id"] == video_id and document["fps"] == video.fps
    assert document["duration"] == video.duration
    assert 0 < len(document["detections"]) <= 200
    scores = [d["score"] for d in document["detections"]]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= d["segment"][0] < d["segment"][1] <= video.duration for d in document["detections"])
    assert plot.stat().st_size > 0
    # The same detections as the test command's results for that video (same windows, same NMS).
    results = json.loads((workspace / "test_out" / "results.json").read_text())["results"][video_id]
    assert np.allclose([d["segment"] for d in results], [d["segment"] for d in document["detections"]])
    # Without ground truth the frame rate must be given (the synopsis says so, and argparse stops).
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(features), "--checkpoint", str(trained / "last.pt")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "(--fps FPS | --ground-truth GROUND_TRUTH)" in err and "one of the arguments --fps" in err


def test_info_json_keys(workspace: Path, capsys) -> None:
    assert main(["info", str(workspace / "tiny.yaml"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"parameters", "macs_per_window", "anchors_per_window", "points_per_window", "levels"} <= set(info)
    assert info["in_channels"] == 16 and len(info["levels"]) == 3
    assert info["points_per_window"] == 32 + 16 + 8  # window 64: levels of length 32, 16, 8
    assert info["anchors_per_window"] == 5 * info["points_per_window"]
    assert "ops_backend" in info


def test_info_paper_config_counts(capsys) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "a2net_thumos14_i3d.yaml"
    assert main(["info", str(config), "--num-classes", "20", "--in-channels", "2048", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["anchors_per_window"], info["points_per_window"]) == (630, 126)
    assert info["parameters"] == pytest.approx(65.5e6, rel=0.01)


def test_bad_input_is_one_line_exit_2(workspace: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"annotations": "a", "features": "f"}, "train": {"epochz": 1}}))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key train.epochz" in err and "Traceback" not in err
    assert main(["test", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err


TINY_MODEL = [
    "--set", "data.window_size=64", "--set", "data.train_stride=64", "--set", "model.num_levels=3",
    "--set", "model.width_multiplier=0.03125", "--set", "model.af_head_channels=256",
    "--set", "train.epochs=1", "--set", "train.batch_size=16",
]  # fmt: skip


def test_demo_writes_metrics_with_baselines(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--videos", "4", "--dim", "16", "--no-progress", "--models", "a2net"]
    assert main([*args, *TINY_MODEL]) == 0
    printed = capsys.readouterr().out
    assert "labels shuffled" in printed and "videos shuffled" in printed and "wall time" in printed
    assert "A2Net (this run)" in printed
    metrics = json.loads((out / "a2net" / "metrics.json").read_text())
    assert len(metrics["mAP"]) == 7 and set(metrics["by_duration"]) == {"ES", "S", "M", "L", "EL"}
    assert set(metrics["baselines"]) == {"shuffled_labels", "shuffled_videos"}
    assert all(len(b["mAP"]) == 7 for b in metrics["baselines"].values())
    assert metrics["wall_seconds"]["total"] >= metrics["wall_seconds"]["train"] > 0
    assert metrics["cpu_seconds"]["total"] >= metrics["cpu_seconds"]["train"] > 0
    assert (out / "a2net" / "results.json").is_file() and (out / "a2net" / "duration.png").is_file()
    assert not (out / "rc3d_af").exists()
    synthetic = json.loads((out / "data" / "synthetic.json").read_text())
    assert synthetic["timings"] == "thumos14" and synthetic["dim"] == 16
    # The benchmark is reused when its settings are unchanged, regenerated otherwise.
    from rc3d_af.commands.demo import DEMO_SCENE, DEMO_SIGNAL, _benchmark
    from rc3d_af.data.synthetic import SynthParams

    params = SynthParams(signal=DEMO_SIGNAL, scene=DEMO_SCENE)
    assert _benchmark(out / "data", 16, 0, 4, params) == out / "data" / "annotations.json"
    assert "reusing the synthetic benchmark" in capsys.readouterr().out
    _benchmark(out / "data", 16, 0, 4, SynthParams(signal=DEMO_SIGNAL + 1, scene=DEMO_SCENE))
    assert "generating" in capsys.readouterr().out


def test_ablation_tables_mean_and_spread_over_seeds() -> None:
    from rc3d_af.commands.ablation import A2NET_ROWS, format_tables, summarize

    def report(value: float) -> dict:
        buckets = {"ES": [value / 2, None], "S": [value / 4, value / 4]}
        return {"tiou_thresholds": [0.3, 0.5], "mAP": [value, value / 2], "average_mAP": 0.75 * value,
                "by_duration": buckets}  # fmt: skip

    # Two seeds: mean 0.4 and sample std 0.1 * sqrt(2) for anchor-free at tIoU 0.3.
    summary = {"anchor_free": summarize([report(0.3), report(0.5)]), "a2net": summarize([report(0.6)])}
    assert summary["anchor_free"]["mAP"]["mean"] == pytest.approx([0.4, 0.2])
    assert summary["anchor_free"]["mAP"]["std"][0] == pytest.approx(0.1 * 2**0.5)
    assert summary["a2net"]["mAP"]["std"] == [0.0, 0.0]
    lines = format_tables(summary, A2NET_ROWS, 0.5, num_seeds=2).splitlines()
    assert "mean +- std over 2 seeds" in lines[0] and "mAP@0.5 (%) by ground-truth duration" in lines[0]
    assert lines[2].split() == ["anchor-free", "40.0+-14.1", "20.0+-7.1", "30.0+-10.6", "-", "10.0+-3.5"]
    assert lines[3].split() == ["A2Net", "60.0+-0.0", "30.0+-0.0", "45.0+-0.0", "-", "15.0+-0.0"]

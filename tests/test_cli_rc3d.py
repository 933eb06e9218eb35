"""R-C3D + AF end to end through the command line: train (1 epoch) -> test -> proposals -> detect,
and the proposals of an A2Net checkpoint's branches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rc3d_af.cli import main
from rc3d_af.data.annotations import load_annotations
from rc3d_af.engine.checkpoint import load_checkpoint

TINY_RC3D = {
    "arch": "rc3d_af",
    "backbone": {"channels": 16, "kernel_size": 3, "stride": 2},
    "apn": {"channels": 16, "anchor_scales": [2, 4, 8]},
    "af": {"head_channels": 16},
    "proposals": {"post_nms_topk_train": 200, "post_nms_topk_test": 50},
    "roi": {"fc_channels": 32, "num_samples": 32},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic set (6 THUMOS14-timed videos, 16-d) and tiny configs for both detectors."""
    root = tmp_path_factory.mktemp("rc3d_e2e")
    synth = ["synth", "--like", "thumos14", "--videos", "6", "--dim", "16", "--out", str(root / "data")]
    assert main(synth) == 0
    data = {
        "annotations": str(root / "data" / "annotations.json"),
        "features": str(root / "data" / "features"),
        "window_size": 64,
        "train_stride": 32,
        "test_stride": 64,
    }
    common = {
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "test": {"tiou_thresholds": [0.3, 0.5, 0.7], "by_duration": False},
    }
    (root / "rc3d.yaml").write_text(yaml.safe_dump({"data": data, "model": TINY_RC3D, **common}))
    a2net = {"num_levels": 3, "width_multiplier": 0.03125, "af_head_channels": 32}
    (root / "a2net.yaml").write_text(yaml.safe_dump({"data": data, "model": a2net, **common}))
    return root


@pytest.fixture(scope="module")
def trained(workspace: Path) -> Path:
    run_dir = workspace / "run"
    assert main(["train", str(workspace / "rc3d.yaml"), "--out", str(run_dir), "--no-progress"]) == 0
    return run_dir


def test_train_logs_every_two_stage_loss_term(trained: Path) -> None:
    state = load_checkpoint(trained / "last.pt")
    assert state["config"]["model"]["arch"] == "rc3d_af" and state["epoch"] == 1
    losses = state["history"][0]["losses"]
    assert {"apn_cls", "apn_reg", "af_cls", "af_reg", "roi_cls", "roi_reg", "total"} <= set(losses)
    log = (trained / "train.log").read_text()
    assert "training rc3d_af" in log and "roi_cls" in log and "apn_reg" in log


def test_test_results_and_metrics(trained: Path, workspace: Path) -> None:
    out = workspace / "test_out"
    assert main(["test", "--checkpoint", str(trained / "last.pt"), "--out", str(out), "--no-plots"]) == 0
    annotations = load_annotations(workspace / "data" / "annotations.json")
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {v for v, video in annotations.videos.items() if video.subset == "test"}
    for video_id, detections in results.items():
        assert len(detections) <= 200
        for det in detections:
            assert det["label"] in annotations.class_names and det["score"] > 0.005
            assert 0.0 <= det["segment"][0] < det["segment"][1] <= annotations.videos[video_id].duration
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tiou_thresholds"] == [0.3, 0.5, 0.7]


def test_proposals_files_and_ar_an(trained: Path, workspace: Path, capsys) -> None:
    out = workspace / "proposals"
    args = ["proposals", "--checkpoint", str(trained / "last.pt"), "--out", str(out)]
    assert main([*args, "--top-k", "100"]) == 0
    printed = capsys.readouterr().out
    assert "Proposals, subset test" in printed and "tIoU 0.5:1.0:0.05" in printed
    proposals = json.loads((out / "proposals.json").read_text())["results"]
    for entries in proposals.values():
        assert len(entries) <= 100
        assert all(set(e) == {"segment", "score"} for e in entries)
        scores = [e["score"] for e in entries]
        assert scores == sorted(scores, reverse=True)
    metrics = json.loads((out / "proposals_metrics.json").read_text())
    assert metrics["an"] == [50, 100, 200, 500, 1000] and len(metrics["ar"]) == 5
    assert metrics["tiou_thresholds"][0] == 0.5 and metrics["tiou_thresholds"][-1] == 1.0  # THUMOS14 practice
    assert all(0.0 <= ar <= 1.0 for ar in metrics["ar"]) and metrics["branch"] == "both"
    assert (out / "ar_an.png").stat().st_size > 0
    anchor_free = workspace / "proposals_af"
    assert main([*args[:-1], str(anchor_free), "--branch", "anchor_free", "--tiou", "activitynet"]) == 0
    metrics = json.loads((anchor_free / "proposals_metrics.json").read_text())
    assert metrics["branch"] == "anchor_free" and metrics["tiou_thresholds"][-1] == 0.95


def test_detect_one_video(trained: Path, workspace: Path, capsys) -> None:
    annotations = load_annotations(workspace / "data" / "annotations.json")
    video_id = next(v for v, video in annotations.videos.items() if video.subset == "test")
    features = workspace / "data" / "features" / f"{video_id}.npy"
    args = ["detect", str(features), "--checkpoint", str(trained / "last.pt")]
    assert main([*args, "--ground-truth", str(workspace / "data" / "annotations.json")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["video_id"] == video_id and len(document["detections"]) <= 200
    results = json.loads((workspace / "test_out" / "results.json").read_text())["results"][video_id]
    # The test command's detections of that video (same windows; batches of other sizes may move the
    # last bits of the scores).
    assert np.allclose([d["segment"] for d in results], [d["segment"] for d in document["detections"]])


def test_a_config_of_another_arch_is_refused(trained: Path, workspace: Path, capsys) -> None:
    args = ["test", str(workspace / "a2net.yaml"), "--checkpoint", str(trained / "last.pt")]
    assert main(args) == 2
    assert "model.arch is 'a2net' but the checkpoint holds a 'rc3d_af' model" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["test", "proposals"])
def test_a_dataset_of_other_classes_is_refused(trained: Path, workspace: Path, command: str, capsys) -> None:
    document = json.loads((workspace / "data" / "annotations.json").read_text())
    document["classes"] = document["classes"][::-1]  # the same classes, another id order
    document.pop("class_ids", None)
    reordered = workspace / f"reordered_{command}.json"
    reordered.write_text(json.dumps(document))
    args = [command, "--checkpoint", str(trained / "last.pt"), "--set", f"data.annotations={reordered}"]
    assert main([*args, "--out", str(workspace / f"refused_{command}")]) == 2
    assert f"{reordered}: its classes differ from the checkpoint's" in capsys.readouterr().err
    assert not (workspace / f"refused_{command}").exists()


def test_a2net_branch_proposals(workspace: Path) -> None:
    run_dir = workspace / "a2net_run"
    assert main(["train", str(workspace / "a2net.yaml"), "--out", str(run_dir), "--no-progress"]) == 0
    for branch in ("anchor_free", "anchor_based"):
        out = workspace / f"a2net_{branch}"
        args = ["proposals", "--checkpoint", str(run_dir / "last.pt"), "--out", str(out), "--branch", branch]
        assert main([*args, "--no-plots"]) == 0
        assert json.loads((out / "proposals_metrics.json").read_text())["branch"] == branch


def test_rc3d_ablation_tables_over_two_seeds(workspace: Path, capsys) -> None:
    out = workspace / "ablation"
    args = ["ablation", str(workspace / "rc3d.yaml"), "--out", str(out), "--seeds", "0,1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "R-C3D + AF" in printed and "AR@50" in printed and "over 2 seeds" in printed
    document = json.loads((out / "ablation.json").read_text())
    assert document["seeds"] == [0, 1] and set(document["summary"]) == {"rc3d", "rc3d_af"}
    assert {p.name for p in (out / "rc3d").iterdir()} == {"seed0", "seed1"}
    for row in ("rc3d", "rc3d_af"):
        runs = document["per_seed"][row]
        assert len(runs) == 2 and all(len(r["proposals"]["ar"]) == 5 for r in runs)
        mean = document["summary"][row]["proposals"]["auc"]["mean"]
        assert mean == pytest.approx(sum(r["proposals"]["auc"] for r in runs) / 2)
    # The two seeds trained different models (the spread is real, not a copy).
    assert document["per_seed"]["rc3d_af"][0]["mAP"] != document["per_seed"]["rc3d_af"][1]["mAP"]


def test_demo_trains_both_detectors_in_two_processes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    tiny = [f"--set=model.{k}={json.dumps(v)}" for k, v in TINY_RC3D.items() if k != "arch"]
    args = [
        "demo",
        "--out",
        str(out),
        "--videos",
        "6",
        "--dim",
        "16",
        "--no-progress",
        "--models",
        "rc3d,rc3d_af",
    ]
    common = [
        "--set",
        "train.epochs=1",
        "--set",
        "data.window_size=64",
        "--set",
        "data.train_stride=32",
        "--jobs",
        "2",
    ]
    assert main([*args, *common, *tiny]) == 0
    printed = capsys.readouterr().out
    assert "== R-C3D (rc3d) ==" in printed and "== R-C3D + AF (rc3d_af) ==" in printed
    assert "proposal network, tIoU 0.5..1: AR@50" in printed and "on 2 process(es)" in printed
    for model in ("rc3d", "rc3d_af"):
        metrics = json.loads((out / model / "metrics.json").read_text())
        assert metrics["model"] == model and len(metrics["mAP"]) == 7 and len(metrics["proposals"]["ar"]) == 5
        assert (out / model / "proposals.json").is_file() and (out / model / "ar_an.png").is_file()
        state = load_checkpoint(out / model / "train" / "last.pt")
        assert state["config"]["model"]["arch"] == model
        assert state["config"]["model"]["backbone"]["channels"] == 16

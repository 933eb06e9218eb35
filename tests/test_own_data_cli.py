"""Bringing your own data, through the command line where a user meets each case: features that do
not match the annotations, ground truth outside its video, check-data, and the rough edges
(npz files, detect's arguments, messages that blamed the wrong thing)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from own_data import SPEC, TINY, VIDEOS, write_config, write_dataset
from rc3d_af.cli import main
from rc3d_af.data.annotations import VideoAnnotation
from rc3d_af.data.checks import compare_lengths
from rc3d_af.data.features import FeatureSpec
from shared_data import THUMOS14


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", str(config), "--out", str(out), "--no-progress", *TINY, *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained one epoch on the made-up dataset; returns its run folder."""
    root = tmp_path_factory.mktemp("own")
    config = write_config(root / "config.yaml", write_dataset(root / "data"))
    assert _train(config, root / "run") == 0
    return root / "run"


# ----------------------------------------------------------------------------------------------
# Features that do not match the annotations


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (
            lambda t: math.ceil(t / 4),
            "T is 1/4 of the expected length: were the features extracted with stride 16",
        ),
        (lambda t: 2 * t, "T is 2 times the expected length: were the features extracted with stride 2"),
        (lambda t: 3, "for 5 of 5 videos"),  # 3 rows where 223 to 465 are expected
    ],
    ids=["thinned_x4", "repeated_x2", "three_rows"],
)
def test_train_stops_before_any_work_on_misaligned_features(tmp_path: Path, capsys, lengths, message) -> None:
    config = write_config(tmp_path / "c.yaml", write_dataset(tmp_path / "data", lengths=lengths))
    assert _train(config, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert message in err and "does not match the annotated duration" in err
    assert "video_0001 (62.4 s at 30 fps: 465 expected" in err  # names videos and both lengths
    assert not (tmp_path / "run").exists()  # nothing written


def test_test_and_detect_stop_on_misaligned_features(trained: Path, tmp_path: Path, capsys) -> None:
    thinned = write_dataset(tmp_path / "thin", lengths=lambda t: math.ceil(t / 4))
    checkpoint = str(trained / "last.pt")
    out = tmp_path / "out"
    args = [
        "test",
        "--checkpoint",
        checkpoint,
        "--set",
        f"data.features={thinned / 'features'}",
        "--out",
        str(out),
    ]
    assert main(args) == 2
    assert "T is 1/4 of the expected length" in capsys.readouterr().err and not out.exists()
    features = str(thinned / "features" / "video_0002.npy")
    assert (
        main(
            [
                "detect",
                features,
                "--checkpoint",
                checkpoint,
                "--ground-truth",
                str(thinned / "annotations.json"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "video_0002.npy" in err and "stride 16 frames, not 4" in err
    # With --fps and --duration: correct features of a video said to last four times longer.
    correct = str(trained.parent / "data" / "features" / "video_0002.npy")
    assert main(["detect", correct, "--checkpoint", checkpoint, "--fps", "25", "--duration", "192"]) == 2
    assert "T is 1/4 of the expected length" in capsys.readouterr().err
    # Without a duration nothing can be checked, and detect says so.
    assert main(["detect", features, "--checkpoint", checkpoint, "--fps", "25"]) == 0
    captured = capsys.readouterr()
    assert "note: no duration" in captured.err and "cannot be checked" in captured.err
    assert json.loads(captured.out)["video_id"] == "video_0002"


def test_a_fixed_fps_extraction_is_explained_by_its_frame_rate(tmp_path: Path, capsys) -> None:
    videos = [(v, s, d, 30.0, i) for v, s, d, _, i in VIDEOS]
    resampled = {v: SPEC.num_features(d, 15.0) for v, _, d, _, _ in videos}  # extracted at 15 fps
    config = write_config(tmp_path / "c.yaml", write_dataset(tmp_path / "data", videos, lengths=resampled))
    assert _train(config, tmp_path / "run") == 2
    assert "from video at 15 fps, not 30 as annotated" in capsys.readouterr().err


def test_small_differences_are_one_summary_warning(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path / "c.yaml", write_dataset(tmp_path / "data", lengths=lambda t: t + 3))
    assert _train(config, tmp_path / "run") == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "differs slightly from the annotated duration" in line]
    assert len(lines) == 1 and "for 3 of 3 videos, by 3 to 3 features" in lines[0]  # the training subset
    assert lines[0].startswith("rc3d-af train: warning: ")


def _thumos14_videos() -> list[VideoAnnotation]:
    with (THUMOS14 / "thumos14_video_info.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [VideoAnnotation(r["video"], r["subset"], float(r["duration_sec"]), float(r["fps"])) for r in rows]


def test_no_false_alarm_on_the_413_real_thumos14_durations() -> None:
    """Correctly extracted features under the extraction conventions in use; the default tolerance."""
    videos = _thumos14_videos()
    assert len(videos) == 413
    spec = FeatureSpec()
    frames = {v.video_id: math.floor(v.duration * v.fps + 1e-6) for v in videos}
    conventions = {
        "exact": {v.video_id: spec.num_features(v.duration, v.fps) for v in videos},
        "last clip padded": {k: math.ceil(n / 4) for k, n in frames.items()},
        "frames // stride": {k: n // 4 for k, n in frames.items()},
        "duration 0.5 s longer": {v.video_id: spec.num_features(v.duration + 0.5, v.fps) for v in videos},
        "duration 0.5 s shorter": {v.video_id: spec.num_features(v.duration - 0.5, v.fps) for v in videos},
    }
    for name, lengths in conventions.items():
        report = compare_lengths(videos, lengths, spec)
        assert report.gross == [], name
        assert report.exact + len(report.small) == 413, name
    for name, lengths in {
        "thinned x4": {v.video_id: math.ceil(spec.num_features(v.duration, v.fps) / 4) for v in videos},
        "repeated x2": {v.video_id: 2 * spec.num_features(v.duration, v.fps) for v in videos},
        "stride 8": {v.video_id: FeatureSpec(8, 16).num_features(v.duration, v.fps) for v in videos},
    }.items():
        assert len(compare_lengths(videos, lengths, spec).gross) == 413, name


@pytest.fixture(scope="module")
def thumos14_features(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zero features of the exact length for the 413 real THUMOS14 videos (2-d, tiny files)."""
    root = tmp_path_factory.mktemp("thumos14")
    (root / "exact").mkdir()
    (root / "thin").mkdir()
    for video in _thumos14_videos():
        length = SPEC.num_features(video.duration, video.fps)
        np.save(root / "exact" / f"{video.video_id}.npy", np.zeros((length, 2), np.float32))
        np.save(root / "thin" / f"{video.video_id}.npy", np.zeros((math.ceil(length / 4), 2), np.float32))
    return root


def _thumos14_config(path: Path, features: Path) -> Path:
    config = {
        "data": {
            "annotations": str(THUMOS14 / "annotation_val"),
            "features": str(features),
            "video_info": str(THUMOS14 / "thumos14_video_info.csv"),
            "segments_beyond": "keep",
        }
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_check_data_on_real_thumos14_timings(thumos14_features: Path, tmp_path: Path, capsys) -> None:
    # The kit's validation folder holds the validation videos only; the test split comes from its own folder.
    both = tmp_path / "annotations"
    both.mkdir()
    for folder in ("annotation_val", "annotation_test"):
        for file in (THUMOS14 / folder).iterdir():
            (both / file.name).write_bytes(file.read_bytes())
    config = _thumos14_config(tmp_path / "exact.yaml", thumos14_features / "exact")
    config.write_text(config.read_text().replace(str(THUMOS14 / "annotation_val"), str(both)))
    assert main(["check-data", str(config)]) == 0
    out = capsys.readouterr().out
    assert "feature counts: 200 of 200 videos exactly as expected" in out
    assert "feature counts: 213 of 213 videos exactly as expected" in out
    # Kept (segments_beyond: keep): warnings; 30 instances in 5 videos of the official annotations.
    assert "26 ground-truth instance(s) in 3 video(s) lie outside their video" in out  # test
    assert "4 ground-truth instance(s) in 2 video(s) lie outside their video" in out  # validation
    config.write_text(
        config.read_text().replace(str(thumos14_features / "exact"), str(thumos14_features / "thin"))
    )
    assert main(["check-data", str(config)]) == 1
    out = capsys.readouterr().out
    assert (
        "does not match the annotated duration for 213 of 213 videos. T is 1/4 of the expected length" in out
    )
    assert "for 200 of 200 videos. T is 1/4" in out
    config.write_text(config.read_text().replace("segments_beyond: keep", "segments_beyond: error"))
    assert main(["check-data", str(config)]) == 1
    assert "video_test_0000270 instance" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------
# Ground truth outside its video


def _one_video_set(tmp_path: Path, segment: tuple[float, float], **data: object) -> Path:
    videos = [
        ("short", "training", 9.0, 30.0, [("jump", *segment)]),
        ("other", "training", 40.0, 30.0, [("jump", 3.0, 6.0)]),
        ("val", "validation", 20.0, 30.0, [("jump", 2.0, 5.0)]),
    ]
    return write_config(tmp_path / "c.yaml", write_dataset(tmp_path / "data", videos), **data)


def test_ground_truth_far_beyond_the_video_is_an_error_naming_video_and_instance(
    tmp_path: Path, capsys
) -> None:
    config = _one_video_set(tmp_path, (5.0, 10000.0))
    assert _train(config, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "short instance 0 (jump [5, 10000] s, video 9 s)" in err and "malformed annotation" in err
    assert "segments_beyond: keep" in err and not (tmp_path / "run").exists()
    config = _one_video_set(tmp_path, (5.0, 10000.0), segments_beyond="keep")
    assert _train(config, tmp_path / "run") == 0
    assert "kept (data.segments_beyond: keep)" in capsys.readouterr().err


def test_ground_truth_slightly_beyond_the_video_is_clipped_with_a_warning(tmp_path: Path, capsys) -> None:
    config = _one_video_set(tmp_path, (5.0, 9.5))
    assert _train(config, tmp_path / "run") == 0
    err = capsys.readouterr().err
    assert "1 ground-truth instance(s) in 1 video(s) extend past their video by at most 0.5 s" in err
    assert "clipped to the video for training" in err


# ----------------------------------------------------------------------------------------------
# check-data


def test_check_data_reports_every_problem_and_exits_1(tmp_path: Path, capsys) -> None:
    videos = [
        *VIDEOS,
        ("tiny_action", "training", 30.0, 30.0, [("jump", 1.0, 1.05), ("run", 2.0, 28.0)]),
        ("no_features", "training", 30.0, 30.0, [("jump", 1.0, 3.0)]),
        ("with_nan", "validation", 30.0, 30.0, [("run", 1.0, 3.0)]),
        ("val_only_class", "validation", 30.0, 30.0, [("skip", 1.0, 3.0)]),
    ]
    data = write_dataset(tmp_path / "data", videos)
    (data / "features" / "no_features.npy").unlink()
    nan = np.load(data / "features" / "with_nan.npy")
    nan[7, 2] = np.nan
    np.save(data / "features" / "with_nan.npy", nan)
    np.save(data / "features" / "video_0003.npy", np.zeros((SPEC.num_features(40.0, 25.0), 5), np.float32))
    config = write_config(tmp_path / "c.yaml", data, window_size=64)
    assert main(["check-data", str(config)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if "  problem  " in line]
    assert any("1 of 5 videos have no features: no_features" in line for line in problems)
    assert any("non-finite value (NaN or inf) in feature row 7" in line for line in problems)
    assert any("feature widths differ" in line and "video_0003: D = 5" in line for line in problems)
    assert any("never occur in the training split 'training' (skip" in line for line in problems)
    warnings = [line for line in out.splitlines() if "  warning  " in line]
    assert any("1 of 9 instances are shorter than one feature" in line for line in warnings)
    assert any("3 of 9 instances are longer than a window (64 features)" in line for line in warnings)
    assert "4 problem(s)" in out


def test_check_data_exit_2_on_unreadable_config(tmp_path: Path, capsys) -> None:
    assert main(["check-data", str(tmp_path / "none.yaml")]) == 2
    assert "no such config file" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Small things a new user hits


def test_npz_named_npy_is_named_not_a_traceback(trained: Path, tmp_path: Path, capsys) -> None:
    data = write_dataset(tmp_path / "data")
    path = data / "features" / "video_0001.npy"
    np.savez(tmp_path / "x.npz", feats=np.load(path))
    path.write_bytes((tmp_path / "x.npz").read_bytes())
    config = write_config(tmp_path / "c.yaml", data)
    assert _train(config, tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert f"{path}: an .npz archive (feats), expected one (T, D) array saved with np.save" in err
    assert main(["detect", str(path), "--checkpoint", str(trained / "last.pt"), "--fps", "30"]) == 2
    assert "an .npz archive" in capsys.readouterr().err


def test_detect_arguments(trained: Path, tmp_path: Path, capsys) -> None:
    from rc3d_af.cli import build_parser

    usage = build_parser()._subparsers._group_actions[0].choices["detect"].format_usage()
    assert "(--fps FPS | --ground-truth GROUND_TRUTH)" in usage  # required, one of the two
    features = str(trained.parent / "data" / "features" / "video_0002.npy")
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", features, "--checkpoint", str(trained / "last.pt"), "--fps", "-5"])
    assert exit_info.value.code == 2
    assert "argument --fps: expected a positive number, got '-5'" in capsys.readouterr().err


def test_state_dict_mismatch_names_keys_and_shapes(trained: Path, capsys) -> None:
    args = ["test", "--checkpoint", str(trained / "last.pt"), "--set", "model.width_multiplier=0.0625"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "shape mismatch(es): backbone." in err and "in the checkpoint" in err and "in the model" in err


def test_test_no_plots_says_no_plots(trained: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t"
    assert main(["test", "--checkpoint", str(trained / "last.pt"), "--out", str(out), "--no-plots"]) == 0
    assert f"results and metrics in {out}" in capsys.readouterr().out
    assert not list(out.glob("*.png"))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_cuda_blames_the_option(trained: Path, capsys) -> None:
    assert main(["test", "--checkpoint", str(trained / "last.pt"), "--device", "cuda"]) == 2
    assert "--device: 'cuda' requested but CUDA is not available" in capsys.readouterr().err


def test_set_a_section_blames_that_override(trained: Path, tmp_path: Path, capsys) -> None:
    config = trained.parent / "config.yaml"
    assert main(["train", str(config), "--set", "train=5", "--set", "train.lr=1"]) == 2
    assert "--set 'train=5': train is a section of the config, not a value" in capsys.readouterr().err


def test_string_lr_and_unreachable_milestones(trained: Path, tmp_path: Path, capsys) -> None:
    config = trained.parent / "config.yaml"
    assert main(["train", str(config), "--out", str(tmp_path / "a"), "--set", 'train.lr="3e-3"']) == 2
    assert "train.lr: expected a number, got '3e-3'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert _train(config, tmp_path / "b", "--set", "train.lr_milestones=[5]") == 0
    log = (tmp_path / "b" / "train.log").read_text()
    assert "train.lr_milestones [5]: at or after train.epochs = 1, so those lr steps never happen" in log


def test_version_and_doctor(capsys) -> None:
    import rc3d_af

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"rc3d-af {rc3d_af.__version__}"
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"rc3d_af:           {rc3d_af.__version__}" in out and "a2net_synthetic" in out


def test_synth_videos_cover_every_class(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    assert main(["synth", "--like", "thumos14", "--videos", "40", "--dim", "2", "--out", str(out)]) == 0
    annotations = json.loads((out / "annotations.json").read_text())
    for subset in ("validation", "test"):
        labels = {a["label"] for v in annotations["database"].values() if v["subset"] == subset
                  for a in v["annotations"]}  # fmt: skip
        assert len(labels) == 20, subset  # the first 40 by name held 2 and 15 classes
    assert "warning" not in capsys.readouterr().err
    assert (
        main(["synth", "--like", "thumos14", "--videos", "4", "--dim", "2", "--out", str(tmp_path / "f")])
        == 0
    )
    assert "warning: subset 'validation' holds no instance of" in capsys.readouterr().err

"""The synthetic benchmark: real formats, real timings, determinism, signal placement, speed, errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from rc3d_af.cli import main
from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation, load_annotations
from rc3d_af.data.features import FeatureSpec, load_features
from rc3d_af.data.synthetic import SynthParams, generate_synthetic, resolve_like, synthetic_timings
from rc3d_af.errors import InputError
from shared_data import THUMOS14

SHARED_THUMOS14 = THUMOS14
SPEC = FeatureSpec()


def _timings(annotations: AnnotationSet) -> dict:
    return {
        vid: (v.subset, v.duration, v.fps, [(i.label, i.start, i.end) for i in v.instances], v.ambiguous)
        for vid, v in annotations.videos.items()
    }


def test_packaged_thumos14_timings_equal_the_official_annotations() -> None:
    packaged = resolve_like("thumos14")
    info = SHARED_THUMOS14 / "thumos14_video_info.csv"
    val = load_annotations(SHARED_THUMOS14 / "annotation_val", video_info=info)
    test = load_annotations(SHARED_THUMOS14 / "annotation_test", video_info=info)
    assert packaged.class_names == val.class_names and packaged.class_ids == val.class_ids
    assert _timings(packaged) == {**_timings(val), **_timings(test)}
    subsets = [v.subset for v in packaged.videos.values()]
    assert subsets.count("validation") == 200 and subsets.count("test") == 213
    assert packaged.num_instances == 3007 + 3358
    assert packaged.videos["video_test_0001207"].fps == 24.0  # per-video fps survives


@pytest.fixture(scope="module")
def thumos_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    began = time.perf_counter()
    generate_synthetic(out, like="thumos14", videos=6, dim=16, seed=3)
    assert time.perf_counter() - began < 20.0  # vectorized; a per-element loop would take minutes
    return out


def test_formats_and_timings_follow_the_source(thumos_like: Path) -> None:
    annotations = load_annotations(thumos_like / "annotations.json")
    source = resolve_like("thumos14")
    assert len(annotations.videos) == 6
    assert sorted(v.subset for v in annotations.videos.values()) == ["test"] * 3 + ["validation"] * 3
    assert annotations.class_names == source.class_names
    expected = _timings(source)
    assert _timings(annotations) == {vid: expected[vid] for vid in annotations.videos}
    for video in annotations.videos.values():
        features = load_features(thumos_like / "features", video.video_id)
        assert features.shape == (SPEC.num_features(video.duration, video.fps), 16)
        assert features.dtype == np.float32 and np.isfinite(features).all()
    info = json.loads((thumos_like / "synthetic.json").read_text())
    assert info["feature_spec"] == {"stride_frames": 4, "clip_frames": 16}
    assert info["dim"] == 16 and info["seed"] == 3 and info["videos"] == 6


def test_deterministic_and_independent_of_the_video_selection(thumos_like: Path, tmp_path: Path) -> None:
    generate_synthetic(tmp_path, like="thumos14", videos=4, dim=16, seed=3)
    for path in sorted((tmp_path / "features").iterdir()):  # 4 of the 6 videos, byte-identical
        assert path.read_bytes() == (thumos_like / "features" / path.name).read_bytes()
    other = tmp_path / "other_seed"
    generate_synthetic(other, like="thumos14", videos=4, dim=16, seed=4)
    name = next((tmp_path / "features").iterdir()).name
    assert not np.array_equal(np.load(other / "features" / name), np.load(tmp_path / "features" / name))


def test_signal_sits_inside_the_instances(tmp_path: Path) -> None:
    # No distractors, cues or scene offsets: the mean squared norm is D outside the instances and
    # D + signal^2 where a feature's whole clip lies inside one (2 indices from its ends).
    params = SynthParams(signal=6.0, boundary=0.0, scene=0.0, distractors=0.0)
    generate_synthetic(tmp_path, like="thumos14", videos=4, dim=32, seed=0, params=params)
    annotations = load_annotations(tmp_path / "annotations.json")
    inside, outside = [], []
    for video in annotations.videos.values():
        features = load_features(tmp_path / "features", video.video_id)
        index = np.arange(len(features))
        seconds = np.array(
            [(i.start, i.end) for i in video.instances] + [(v[0], v[1]) for v in video.ambiguous]
        )
        span = SPEC.seconds_to_index(seconds, video.fps)
        within = (index[:, None] >= span[:, 0] - 2) & (index[:, None] <= span[:, 1] + 2)  # clip touches
        core = (index[:, None] >= span[:, 0] + 2) & (index[:, None] <= span[:, 1] - 2)  # clip fully inside
        single = within.sum(axis=1) == 1  # THUMOS duplicates (CliffDiving is also Diving) add up: skip
        squared = (features.astype(np.float64) ** 2).sum(axis=1)
        inside.append(squared[core.any(axis=1) & single])
        outside.append(squared[~within.any(axis=1)])
    assert np.mean(np.concatenate(outside)) == pytest.approx(32.0, rel=0.05)
    assert np.mean(np.concatenate(inside)) == pytest.approx(32.0 + 36.0, rel=0.08)


def test_thumos_like_timings_without_a_source(tmp_path: Path) -> None:
    timings = synthetic_timings(num_videos=60, seed=1)
    durations = np.array([i.end - i.start for v in timings.videos.values() for i in v.instances])
    assert durations.min() >= 0.2 - 0.01 and durations.max() <= 100.0 + 0.01
    assert 2.0 <= np.median(durations) <= 4.5
    assert {v.subset for v in timings.videos.values()} == {"validation", "test"}
    assert {v.fps for v in timings.videos.values()} <= {30.0, 29.97, 25.0, 24.0}
    for video in timings.videos.values():  # instances never overlap and stay inside the video
        bounds = np.array([(i.start, i.end) for i in video.instances])
        assert (bounds[1:, 0] >= bounds[:-1, 1] - 0.011).all() and bounds.max() <= video.duration + 0.01
    assert _timings(timings) == _timings(synthetic_timings(num_videos=60, seed=1))
    path = generate_synthetic(tmp_path, videos=4, dim=8, seed=1)
    annotations = load_annotations(path)
    assert len(annotations.videos) == 4 and len(annotations.class_names) == 20


def test_errors_are_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--videos"):
        generate_synthetic(tmp_path, like="thumos14", videos=0)
    with pytest.raises(InputError, match="--dim"):
        generate_synthetic(tmp_path, dim=0)
    with pytest.raises(InputError, match="signal"):
        SynthParams(signal=-1.0)
    with pytest.raises(InputError, match="noise_corr"):
        SynthParams(noise_corr=1.0)
    with pytest.raises(InputError, match=r"no_such_file\.json"):
        generate_synthetic(tmp_path, like=tmp_path / "no_such_file.json")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["synth", "--out", str(tmp_path), "--like", "thumos14", "--videos", "2", "--dim", "4"]
    assert main([*args, "--signal", "2.5", "--seed", "7"]) == 0
    assert "2 feature files" in capsys.readouterr().out
    info = json.loads((tmp_path / "synthetic.json").read_text())
    assert info["params"]["signal"] == 2.5 and info["seed"] == 7
    assert main([*args, "--noise-corr", "1.5"]) == 2
    assert "noise_corr" in capsys.readouterr().err


def test_instance_profile_is_hand_checked(tmp_path: Path) -> None:
    # One 25 fps video, an instance at 10-14 s = feature indices 60.5-85.5 ((s * 25 - 8) / 4). The
    # signal weight of feature i is the share of its clip [i - 2, i + 2] inside the instance:
    # features 58..63 -> 0, 1/8, 3/8, 5/8, 7/8, 1. A strong signal makes the unit-variance noise
    # (norm about sqrt(D) = 2) small beside it, so a shift of one index (12.5) cannot pass.
    video = VideoAnnotation("hand", "test", 30.0, 25.0, [Instance("x", 10.0, 14.0)], [])
    timings = AnnotationSet({"hand": video}, ["x"])
    params = SynthParams(signal=50.0, boundary=0.0, scene=0.0, distractors=0.0)
    generate_synthetic(tmp_path, like=timings, dim=4, seed=0, params=params)
    norms = np.linalg.norm(load_features(tmp_path / "features", "hand"), axis=1)
    expected = 50.0 * np.array([0, 1 / 8, 3 / 8, 5 / 8, 7 / 8, 1, 1])
    assert np.abs(norms[58:65] - expected).max() < 6.0
    assert np.abs(norms[83:89] - 50.0 * np.array([1, 7 / 8, 5 / 8, 3 / 8, 1 / 8, 0])).max() < 6.0

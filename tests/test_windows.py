"""Sliding and rescaled windows on hand-made videos, and the window dataset."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.data.dataset import WindowDataset, collate_windows
from rc3d_af.data.features import FeatureSpec, FeatureStore
from rc3d_af.data.windows import rescaled_windows, sliding_windows
from rc3d_af.errors import InputError

SPEC = FeatureSpec()  # stride 4, clip 16
FPS = 4.0  # at 4 fps, feature index = seconds - 2: hand computation stays easy


def _video(
    video_id: str, spans: list[tuple[float, float]], subset: str = "validation", fps=FPS
) -> VideoAnnotation:
    """A video whose instances are given in FEATURE INDICES (converted to seconds here)."""
    instances = [
        Instance("b" if k % 2 else "a", start + 2.0, end + 2.0) for k, (start, end) in enumerate(spans)
    ]
    return VideoAnnotation(video_id, subset, 10_000.0, fps, instances, [])  # longer than any T here


def _annotations(*videos: VideoAnnotation) -> AnnotationSet:
    return AnnotationSet({v.video_id: v for v in videos}, ["a", "b"])


def test_window_starts_counts_and_end_window() -> None:
    annotations = _annotations(_video("long", []), _video("exact", []), _video("short", []))
    lengths = {"long": 300, "exact": 256, "short": 50}
    windows = sliding_windows(annotations, "validation", lengths, SPEC, stride=64, training=False)
    starts = {vid: [w.start_index for w in windows if w.video_id == vid] for vid in lengths}
    assert starts["long"] == [0, 64, 128, 172]  # 172 = 300 - 128: the extra window at the end
    assert starts["exact"] == [0, 64, 128]  # 128 + 128 = 256 already ends at the video end
    assert starts["short"] == [0]
    assert [w.length for w in windows if w.video_id == "short"] == [50]
    assert all(w.length == 128 and w.scale == 1.0 for w in windows if w.video_id != "short")


def test_default_strides_follow_the_reference() -> None:
    annotations = _annotations(_video("v", []))
    test = sliding_windows(annotations, None, {"v": 300}, SPEC, training=False)
    assert [w.start_index for w in test] == [0, 64, 128, 172]
    annotations = _annotations(_video("v", [(0.0, 20.0), (150.0, 170.0), (250.0, 270.0)]))
    train = sliding_windows(annotations, None, {"v": 300}, SPEC)
    # stride 32 plus the end window; the window at 32 holds no instance (90% rule) and is dropped
    assert [w.start_index for w in train] == [0, 64, 96, 128, 160, 172]


def test_gt_clipping_and_the_90_percent_rule() -> None:
    spans = [(10.0, 30.0), (109.0, 129.0), (110.0, 130.0), (200.0, 200.0)]
    annotations = _annotations(_video("v", spans))
    windows = sliding_windows(annotations, "validation", {"v": 300}, SPEC, stride=64, training=False)
    first = windows[0]  # positions 0..128
    # [10, 30] fully inside; [109, 129] has 19/20 = 95% inside -> kept, clipped to 128;
    # [110, 130] has exactly 90% inside, not more -> not this window's.
    np.testing.assert_allclose(first.gt_segments, [[10.0, 30.0], [109.0, 128.0]], atol=1e-5)
    assert first.gt_labels.tolist() == [0, 1]
    assert first.gt_segments.dtype == np.float32 and first.gt_labels.dtype == np.int64
    second = windows[1]  # start 64: [10, 30] is outside, both straddlers fully inside
    np.testing.assert_allclose(second.gt_segments, [[45.0, 65.0], [46.0, 66.0]], atol=1e-5)
    point = next(w for w in windows if w.start_index == 128)  # the zero-length instance at 200
    np.testing.assert_allclose(point.gt_segments, [[72.0, 72.0]], atol=1e-5)
    assert point.gt_labels.tolist() == [1]


def test_training_drops_empty_windows() -> None:
    annotations = _annotations(_video("v", [(10.0, 30.0)]))
    windows = sliding_windows(annotations, "validation", {"v": 300}, SPEC, stride=64)
    assert [w.start_index for w in windows] == [0]
    assert windows[0].to_video_index(np.array([10.0, 30.0])).tolist() == [10.0, 30.0]


def test_per_video_fps_is_used() -> None:
    # The same instance in seconds lands at other indices at 25 and 24 fps.
    instance = Instance("a", 10.0, 12.0)
    videos = [VideoAnnotation(f"v{fps:g}", "test", 60.0, fps, [instance], []) for fps in (30.0, 25.0, 24.0)]
    annotations = AnnotationSet({v.video_id: v for v in videos}, ["a"])
    windows = sliding_windows(annotations, "test", {v.video_id: 300 for v in videos}, SPEC, training=False)
    first = {w.video_id: w.gt_segments[0].tolist() for w in windows if w.start_index == 0}
    assert first["v30"] == pytest.approx([(300 - 8) / 4, (360 - 8) / 4])
    assert first["v25"] == pytest.approx([(250 - 8) / 4, (300 - 8) / 4])
    assert first["v24"] == pytest.approx([(240 - 8) / 4, (288 - 8) / 4])


def test_uncovered_instances_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    annotations = _annotations(_video("v", [(0.0, 200.0), (10.0, 20.0)]))  # the first outgrows a window
    with caplog.at_level(logging.WARNING, logger="rc3d_af.data.windows"):
        sliding_windows(annotations, "validation", {"v": 300}, SPEC)
    assert "1 of 2 ground-truth instances" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rc3d_af.data.windows"):
        sliding_windows(annotations, "validation", {"v": 300}, SPEC, training=False)
    assert caplog.text == ""  # test windows' ground truth is not learned from: nothing to report


def test_rescaled_windows() -> None:
    annotations = _annotations(_video("v", [(10.0, 30.0)]), _video("w", [(4.0, 8.0)]))
    windows = rescaled_windows(annotations, "validation", {"v": 256, "w": 64}, SPEC)
    by_video = {w.video_id: w for w in windows}
    assert by_video["v"].scale == 2.0 and by_video["w"].scale == 0.5
    np.testing.assert_allclose(by_video["v"].gt_segments, [[5.0, 15.0]], atol=1e-5)
    np.testing.assert_allclose(by_video["w"].gt_segments, [[8.0, 16.0]], atol=1e-5)
    assert all(w.length == 128 and w.start_index == 0 for w in windows)


def test_input_errors_are_named() -> None:
    annotations = _annotations(_video("v", [(1.0, 2.0)], fps=None))
    with pytest.raises(InputError, match=r"video 'v' has no fps"):
        sliding_windows(annotations, None, {"v": 300}, SPEC)
    with pytest.raises(InputError, match=r"subset 'test'.*\['validation'\]"):
        sliding_windows(annotations, "test", {"v": 300}, SPEC)
    with pytest.raises(InputError, match=r"no features.*'v'"):
        rescaled_windows(annotations, None, {}, SPEC)
    with pytest.raises(InputError, match="stride"):
        sliding_windows(annotations, None, {"v": 300}, SPEC, stride=0)
    with pytest.raises(InputError, match="min_gt_coverage"):
        sliding_windows(annotations, None, {"v": 300}, SPEC, min_gt_coverage=1.0)


def _ramp_store(**lengths: int) -> FeatureStore:
    """Feature row i of every video is (i, 10 * i): values show which rows were read."""
    return FeatureStore.from_arrays(
        {
            vid: np.stack([np.arange(n), 10 * np.arange(n)], axis=1).astype(np.float32)
            for vid, n in lengths.items()
        }
    )


def test_dataset_items_padding_and_interpolation() -> None:
    annotations = _annotations(_video("v", [(10.0, 30.0)]), _video("s", [(5.0, 8.0)]))
    store = _ramp_store(v=300, s=50)
    windows = sliding_windows(annotations, None, store.lengths(["v", "s"]), SPEC, stride=64, training=False)
    dataset = WindowDataset(windows, store)
    end = dataset[3]  # the end window of v
    assert end["features"].shape == (2, 128) and end["features"].dtype == torch.float32
    assert end["start_index"] == 172 and end["length"] == 128 and end["video_id"] == "v"
    torch.testing.assert_close(end["features"][0], torch.arange(172, 300, dtype=torch.float32))
    short = dataset[4]
    assert short["length"] == 50
    expected = torch.cat([torch.arange(50.0), torch.full((78,), 49.0)])  # padding repeats the last feature
    torch.testing.assert_close(short["features"][0], expected)
    torch.testing.assert_close(short["gt_segments"], torch.tensor([[5.0, 8.0]]))
    assert short["gt_labels"].tolist() == [0]

    rescaled = WindowDataset(rescaled_windows(annotations, None, store.lengths(["v", "s"]), SPEC), store)
    down = rescaled[0]["features"][0]  # v: 300 features -> 128, position p samples index p * 300 / 128
    torch.testing.assert_close(down, torch.arange(128) * (300 / 128), rtol=0, atol=1e-4)
    up = rescaled[1]["features"][1]  # s: 50 -> 128, index p * 50 / 128, clamped to the last feature
    expected = torch.clamp(torch.arange(128) * (50 / 128), max=49.0) * 10
    torch.testing.assert_close(up, expected.float(), rtol=0, atol=1e-3)


def test_collate() -> None:
    annotations = _annotations(_video("v", [(10.0, 30.0)]), _video("s", [(5.0, 8.0), (20.0, 25.0)]))
    store = _ramp_store(v=300, s=50)
    dataset = WindowDataset(sliding_windows(annotations, None, store.lengths(["v", "s"]), SPEC), store)
    batch = collate_windows([dataset[i] for i in range(len(dataset))])
    assert batch["features"].shape == (2, 2, 128)
    assert [g.shape for g in batch["gt_segments"]] == [(1, 2), (2, 2)]
    assert [g.tolist() for g in batch["gt_labels"]] == [[0], [0, 1]]
    assert batch["video_id"] == ["v", "s"]
    assert batch["start_index"].tolist() == [0, 0] and batch["length"].tolist() == [128, 50]
    assert batch["scale"].dtype == torch.float64
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate_windows)
    assert next(iter(loader))["features"].shape == (2, 2, 128)
    with pytest.raises(InputError, match="empty batch"):
        collate_windows([])

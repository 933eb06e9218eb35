"""FeatureSpec (the one time <-> index mapping), feature files and the FeatureStore."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rc3d_af.data.features import FeatureSpec, FeatureStore, load_features
from rc3d_af.errors import InputError

SPEC = FeatureSpec()  # stride 4 frames, clip 16 frames


@pytest.mark.parametrize(
    ("index", "fps", "seconds"),
    [
        (0, 30.0, 8 / 30),  # first feature: centre at frame 8
        (10, 30.0, 48 / 30),  # frame 10 * 4 + 8 = 48
        (10, 25.0, 48 / 25),  # the THUMOS14 25 fps videos
        (10, 24.0, 2.0),  # video_test_0001207 (24 fps)
        (2.5, 24.0, 18 / 24),  # continuous index: frame 2.5 * 4 + 8 = 18
        (-2, 30.0, 0.0),  # index of t = 0 is -clip / (2 * stride)
    ],
)
def test_hand_checked_values(index: float, fps: float, seconds: float) -> None:
    assert SPEC.index_to_seconds(index, fps) == pytest.approx(seconds, abs=1e-12)
    assert SPEC.seconds_to_index(seconds, fps) == pytest.approx(index, abs=1e-9)


def test_other_spec_values() -> None:
    spec = FeatureSpec(stride_frames=8, clip_frames=64)  # e.g. TSP-style features
    assert spec.index_to_seconds(3, 30.0) == pytest.approx((24 + 32) / 30)
    assert spec.seconds_to_index(1.0, 30.0) == pytest.approx((30 - 32) / 8)


@pytest.mark.parametrize("fps", [30.0, 29.97, 25.0, 24.0])
def test_round_trip_for_every_type(fps: float) -> None:
    index = np.linspace(-3.0, 5000.0, 97)
    back = SPEC.seconds_to_index(SPEC.index_to_seconds(index, fps), fps)
    np.testing.assert_allclose(back, index, rtol=0, atol=1e-9)
    tensor = torch.tensor(index, dtype=torch.float64)
    seconds = SPEC.index_to_seconds(tensor, fps)
    assert isinstance(seconds, torch.Tensor)
    torch.testing.assert_close(SPEC.seconds_to_index(seconds, fps), tensor, rtol=0, atol=1e-9)
    assert isinstance(SPEC.index_to_seconds(3.0, fps), float)


@pytest.mark.parametrize(
    ("duration", "fps", "expected"),
    [
        (10.0, 30.0, 72),  # 300 frames: (300 - 16) // 4 + 1
        (10.0, 25.0, 59),  # 250 frames: 234 // 4 + 1
        (10.0, 24.0, 57),  # 240 frames
        (10.0, 29.97, 71),  # 299.7 -> 299 complete frames
        (0.3, 30.0, 1),  # shorter than one clip: still one (padded) feature
        (16 / 30, 30.0, 1),  # exactly one clip
        (20 / 30, 30.0, 2),  # one clip plus one stride
    ],
)
def test_num_features(duration: float, fps: float, expected: int) -> None:
    assert SPEC.num_features(duration, fps) == expected


@pytest.mark.parametrize("fps", [None, 0.0, -25.0, float("nan"), float("inf")])
def test_bad_fps_is_named(fps: float | None) -> None:
    with pytest.raises(InputError, match="fps"):
        SPEC.index_to_seconds(1.0, fps)  # type: ignore[arg-type]


def test_bad_spec_fields_are_named() -> None:
    with pytest.raises(InputError, match="stride_frames"):
        FeatureSpec(stride_frames=0)
    with pytest.raises(InputError, match="clip_frames"):
        FeatureSpec(clip_frames=2.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="duration"):
        SPEC.num_features(0.0, 30.0)


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)


def test_single_file_and_mmap(tmp_path: Path) -> None:
    array = np.arange(40, dtype=np.float32).reshape(10, 4)
    _write(tmp_path / "v1.npy", array)
    loaded = load_features(tmp_path, "v1")
    assert loaded.dtype == np.float32 and loaded.shape == (10, 4)
    np.testing.assert_array_equal(loaded, array)
    mapped = load_features(tmp_path, "v1", mmap=True)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, array)
    _write(tmp_path / "half.npy", array.astype(np.float16))  # other float dtypes are converted
    assert load_features(tmp_path, "half").dtype == np.float32


def test_two_streams_concatenate_and_mismatch_truncates_with_warning(tmp_path: Path) -> None:
    rgb = np.ones((12, 3), dtype=np.float32)
    flow = np.full((10, 2), 2.0, dtype=np.float32)
    _write(tmp_path / "rgb" / "v.npy", rgb)
    _write(tmp_path / "flow" / "v.npy", flow)
    with pytest.warns(UserWarning, match=r"video 'v'.*rgb.*12.*flow.*10.*first 10 rows") as record:
        features = load_features(tmp_path, "v", streams=("rgb", "flow"))
    assert len(record) == 1
    assert features.shape == (10, 5)
    np.testing.assert_array_equal(features[:, :3], 1.0)
    np.testing.assert_array_equal(features[:, 3:], 2.0)


def test_equal_streams_do_not_warn(tmp_path: Path) -> None:
    _write(tmp_path / "rgb" / "v.npy", np.zeros((5, 2), np.float32))
    _write(tmp_path / "flow" / "v.npy", np.zeros((5, 2), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_features(tmp_path, "v", streams=("rgb", "flow")).shape == (5, 4)


def test_errors_name_the_file_and_video(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"video 'nope'.*nope\.npy"):
        load_features(tmp_path, "nope")
    with pytest.raises(InputError, match=r"folder .*flow does not exist"):
        load_features(tmp_path, "v", streams=("flow",))
    _write(tmp_path / "flat.npy", np.zeros(8, np.float32))
    with pytest.raises(InputError, match=r"flat\.npy.*\(T, D\).*\(8,\)"):
        load_features(tmp_path, "flat")
    _write(tmp_path / "ints.npy", np.zeros((4, 2), np.int64))
    with pytest.raises(InputError, match=r"ints\.npy.*floating.*int64"):
        load_features(tmp_path, "ints")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(InputError, match=r"junk\.npy"):
        load_features(tmp_path, "junk")
    bad = np.zeros((6, 2), np.float32)
    bad[4, 1] = np.nan
    _write(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError, match=r"video 'nan'.*row 4"):
        load_features(tmp_path, "nan")


def test_store_reads_slices_and_lengths(tmp_path: Path) -> None:
    for name, length in (("a", 7), ("b", 9)):
        _write(tmp_path / "rgb" / f"{name}.npy", np.arange(length * 2, dtype=np.float32).reshape(length, 2))
        _write(tmp_path / "flow" / f"{name}.npy", -np.arange(length, dtype=np.float32).reshape(length, 1))
    store = FeatureStore(tmp_path, streams=("rgb", "flow"), max_open=1)  # forces re-opening
    assert store.lengths(["a", "b"]) == {"a": 7, "b": 9}
    assert store.dim == 3
    rows = store.read("a", 2, 5)
    np.testing.assert_array_equal(rows, [[4, 5, -2], [6, 7, -3], [8, 9, -4]])
    np.testing.assert_array_equal(store.read("b", 8, 9), [[16, 17, -8]])
    np.testing.assert_array_equal(store.read("a", 0, 1), [[0, 1, 0]])  # re-opened after eviction
    with pytest.raises(InputError, match=r"rows 5:8 out of range for video 'a' with 7"):
        store.read("a", 5, 8)


def test_store_rejects_inconsistent_widths_and_bad_rows(tmp_path: Path) -> None:
    _write(tmp_path / "a.npy", np.zeros((4, 3), np.float32))
    _write(tmp_path / "b.npy", np.zeros((4, 5), np.float32))
    store = FeatureStore(tmp_path)
    store.num_features("a")
    with pytest.raises(InputError, match=r"video 'b'.*width 5.*other videos have 3"):
        store.num_features("b")
    bad = np.zeros((6, 3), np.float32)
    bad[3, 0] = np.inf
    _write(tmp_path / "c.npy", bad)
    store.read("c", 0, 3)  # rows before the bad one are fine
    with pytest.raises(InputError, match=r"video 'c'.*row 3"):
        store.read("c", 2, 6)


def test_store_from_arrays() -> None:
    store = FeatureStore.from_arrays({"x": np.ones((3, 2), np.float64)})
    assert store.num_features("x") == 3
    assert store.read("x", 1, 3).dtype == np.float32
    with pytest.raises(InputError, match="'y'"):
        store.read("y", 0, 1)
    with pytest.raises(InputError, match="'z'"):
        FeatureStore.from_arrays({"z": np.ones(3)})

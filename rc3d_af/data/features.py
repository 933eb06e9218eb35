"""Pre-extracted video features: the one time <-> feature-index mapping and the feature files.

A feature file holds one video: a ``(T, D)`` array saved with ``np.save`` as ``<video_id>.npy``.
Two-stream features (RGB and optical flow) live in one sub-folder per stream,
``<dir>/<stream>/<video_id>.npy``, and are concatenated along ``D`` (I3D: 1024 + 1024 = 2048).

Feature ``i`` is computed from the ``clip_frames`` frames starting at frame ``i * stride_frames``;
its centre is frame ``i * stride_frames + clip_frames / 2``. A (continuous) feature index ``x``
therefore maps to seconds as ``t = (x * stride_frames + 0.5 * clip_frames) / fps``
(:meth:`FeatureSpec.index_to_seconds`) and back by the inverse (:meth:`FeatureSpec.seconds_to_index`).
This is the convention of the field's toolboxes (ActionFormer's ``feat_offset``); every part of
rc3d_af converts between seconds and feature indices through these two methods only.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from rc3d_af.errors import InputError

if TYPE_CHECKING:
    import torch

__all__ = ["FeatureSpec", "FeatureStore", "load_features"]

Number = TypeVar("Number", float, np.ndarray, "torch.Tensor")  # torch is not imported: the CLI stays light


def _check_fps(fps: float | None) -> float:
    if fps is None or isinstance(fps, bool) or not isinstance(fps, (int, float, np.floating, np.integer)):
        raise InputError(f"fps must be a positive number of frames per second, got {fps!r}")
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number of frames per second, got {fps!r}")
    return float(fps)


@dataclass(frozen=True)
class FeatureSpec:
    """How features were sampled from the frames of a video.

    Attributes:
        stride_frames: frames between the starts of consecutive features (I3D on THUMOS14: 4).
        clip_frames: frames seen by one feature (I3D: 16).
    """

    stride_frames: int = 4
    clip_frames: int = 16

    def __post_init__(self) -> None:
        for name in ("stride_frames", "clip_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InputError(f"FeatureSpec.{name} must be a positive integer, got {value!r}")

    def index_to_seconds(self, index: Number, fps: float) -> Number:
        """Seconds of the centre of (continuous) feature index ``index`` in a video at ``fps``.

        ``index`` may be a float, a numpy array or a tensor; the same type comes back.
        """
        fps = _check_fps(fps)
        return (index * self.stride_frames + 0.5 * self.clip_frames) / fps

    def seconds_to_index(self, seconds: Number, fps: float) -> Number:
        """Continuous feature index whose centre is at ``seconds``; inverse of :meth:`index_to_seconds`.

        The result may be negative (times before the first feature's centre) or beyond the last
        feature; callers clip to what they need.
        """
        fps = _check_fps(fps)
        return (seconds * fps - 0.5 * self.clip_frames) / self.stride_frames

    def num_features(self, duration: float, fps: float) -> int:
        """Number of features of a video of ``duration`` seconds at ``fps``.

        The video has ``floor(duration * fps)`` frames and every feature sees a complete clip:
        ``T = floor((frames - clip_frames) / stride_frames) + 1``, at least 1 (a video shorter than
        one clip still gives one, padded, feature).
        """
        fps = _check_fps(fps)
        if not (math.isfinite(duration) and duration > 0):
            raise InputError(f"duration must be a positive number of seconds, got {duration!r}")
        frames = math.floor(duration * fps + 1e-6)  # 1e-6: 10.0 s * 29.97 must not lose a frame
        return max(1, (frames - self.clip_frames) // self.stride_frames + 1)


def _video_paths(feature_dir: Path, video_id: str, streams: tuple[str, ...]) -> list[Path]:
    """``<dir>/<video_id>.npy``, or ``<dir>/<stream>/<video_id>.npy`` for each stream."""
    return [(feature_dir / s if s else feature_dir) / f"{video_id}.npy" for s in streams or ("",)]


def _open_array(path: Path, video_id: str, mmap: bool) -> np.ndarray:
    """Open one feature file lazily (memory-mapped) or fully, and check its shape and dtype."""
    if not path.is_file():
        where = "" if path.parent.is_dir() else f" (the folder {path.parent} does not exist)"
        raise InputError(f"features of video '{video_id}' not found: expected the file {path}{where}")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
    if isinstance(array, np.lib.npyio.NpzFile):  # np.load reads by content, not by file name
        names = ", ".join(array.files[:5]) or "no arrays"
        array.close()
        raise InputError(
            f"{path}: an .npz archive ({names}), expected one (T, D) array saved with np.save "
            "(e.g. np.save(path, np.load(npz)['<name>']))"
        )
    if array.ndim != 2:
        raise InputError(f"{path}: expected a (T, D) feature array, got shape {tuple(array.shape)}")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: expected floating-point features, got dtype {array.dtype}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{path}: empty feature array of shape {tuple(array.shape)}")
    return array


def _check_finite(values: np.ndarray, source: str, first_row: int = 0) -> None:
    if not np.isfinite(values).all():
        row = first_row + int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
        raise InputError(f"{source}: non-finite value (NaN or inf) in feature row {row}")


def _common_length(arrays: list[np.ndarray], paths: list[Path], video_id: str) -> int:
    """Length shared by all streams; a mismatch is truncated to the shorter one, with a warning."""
    lengths = [a.shape[0] for a in arrays]
    if len(set(lengths)) > 1:
        detail = ", ".join(f"{p} has {n}" for p, n in zip(paths, lengths, strict=True))
        warnings.warn(
            f"video '{video_id}': feature streams differ in length ({detail} rows); "
            f"using the first {min(lengths)} rows of each",
            stacklevel=3,
        )
    return min(lengths)


def _open_video(
    feature_dir: Path, video_id: str, streams: tuple[str, ...], mmap: bool
) -> tuple[list[np.ndarray], list[Path], int]:
    paths = _video_paths(feature_dir, video_id, streams)
    arrays = [_open_array(p, video_id, mmap) for p in paths]
    return arrays, paths, _common_length(arrays, paths, video_id)


def load_features(
    feature_dir: str | Path, video_id: str, streams: tuple[str, ...] = (), *, mmap: bool = False
) -> np.ndarray:
    """Load the features of one video.

    Args:
        feature_dir: folder holding ``<video_id>.npy`` (no streams) or ``<stream>/<video_id>.npy``.
        video_id: the video's name, as in the annotations.
        streams: stream sub-folders to concatenate along D, e.g. ``("rgb", "flow")``; ``()`` for one file.
        mmap: with one float32 file, return a read-only memory map instead of reading it all.

    Returns:
        ``(T, D)`` float32 array (D = sum of the streams' widths). Streams of different lengths are
        truncated to the shortest, with a warning that names the files.

    Raises:
        InputError: missing file (names the path and the video), not a 2-D floating array, empty,
            NaN/inf values (checked when the file is read fully).
    """
    arrays, paths, length = _open_video(Path(feature_dir), video_id, tuple(streams), mmap)
    if mmap and len(arrays) == 1 and arrays[0].dtype == np.float32:
        return arrays[0][:length]
    features = np.concatenate([np.asarray(a[:length], dtype=np.float32) for a in arrays], axis=1)
    _check_finite(features, f"features of video '{video_id}' ({', '.join(map(str, paths))})")
    return features


class FeatureStore:
    """Random access to feature rows of many videos, each file opened once (memory-mapped).

    Windows of a video are read as slices of memory maps: nothing is read twice from disk while
    the page cache holds it, and the process never holds all videos in its own memory. At most
    ``max_open`` videos stay open (least recently used are closed) so that ActivityNet-sized sets
    do not exhaust file descriptors.

    Args:
        feature_dir: as for :func:`load_features`.
        streams: as for :func:`load_features`.
        max_open: videos kept open at once.
    """

    def __init__(
        self, feature_dir: str | Path, streams: tuple[str, ...] = (), *, max_open: int = 256
    ) -> None:
        if max_open < 1:
            raise InputError(f"max_open must be at least 1, got {max_open}")
        self.feature_dir = Path(feature_dir)
        self.streams = tuple(streams)
        self.max_open = max_open
        self._open: OrderedDict[str, tuple[list[np.ndarray], int]] = OrderedDict()
        self._lengths: dict[str, int] = {}
        self._arrays: dict[str, np.ndarray] | None = None
        self._dim: int | None = None

    @classmethod
    def from_arrays(cls, features: Mapping[str, np.ndarray]) -> FeatureStore:
        """A store over in-memory ``(T, D)`` arrays keyed by video id (tests, single-video inference)."""
        store = cls(Path("<memory>"))
        store._arrays = {}
        for video_id, array in features.items():
            array = np.asarray(array)
            if array.ndim != 2 or array.shape[0] == 0 or not np.issubdtype(array.dtype, np.floating):
                raise InputError(
                    f"features of video '{video_id}': expected a non-empty floating (T, D) array, "
                    f"got shape {tuple(array.shape)} dtype {array.dtype}"
                )
            store._arrays[video_id] = array
            store._check_dim(video_id, array.shape[1])
        return store

    @property
    def dim(self) -> int:
        """Feature width D (known once a video has been opened)."""
        if self._dim is None:
            raise InputError(f"no video opened yet from {self.feature_dir}: the feature width is unknown")
        return self._dim

    def _check_dim(self, video_id: str, dim: int) -> None:
        if self._dim is None:
            self._dim = dim
        elif dim != self._dim:
            raise InputError(
                f"features of video '{video_id}' in {self.feature_dir} have width {dim}, "
                f"other videos have {self._dim}"
            )

    def _get(self, video_id: str) -> tuple[list[np.ndarray], int]:
        if self._arrays is not None:
            if video_id not in self._arrays:
                raise InputError(f"features of video '{video_id}' not found among the in-memory arrays")
            array = self._arrays[video_id]
            return [array], array.shape[0]
        if video_id in self._open:
            self._open.move_to_end(video_id)
            return self._open[video_id]
        arrays, _, length = _open_video(self.feature_dir, video_id, self.streams, mmap=True)
        self._check_dim(video_id, sum(a.shape[1] for a in arrays))
        self._lengths[video_id] = length
        self._open[video_id] = (arrays, length)
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return arrays, length

    def paths(self, video_id: str) -> list[Path]:
        """The files a video's features are read from (one per stream)."""
        return _video_paths(self.feature_dir, video_id, self.streams)

    def has(self, video_id: str) -> bool:
        """Whether the video's features exist (every stream's file); nothing is opened."""
        if self._arrays is not None:
            return video_id in self._arrays
        return all(path.is_file() for path in self.paths(video_id))

    def num_features(self, video_id: str) -> int:
        """T of one video (reads only the file headers)."""
        if video_id not in self._lengths:
            self._lengths[video_id] = self._get(video_id)[1]
        return self._lengths[video_id]

    def lengths(self, video_ids: Iterable[str]) -> dict[str, int]:
        """``{video_id: T}`` for the given videos, the ``num_features`` argument of the window builders."""
        return {video_id: self.num_features(video_id) for video_id in video_ids}

    def read(self, video_id: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` (``0 <= start < stop <= T``) as a ``(stop - start, D)`` float32 copy."""
        arrays, length = self._get(video_id)
        if not 0 <= start < stop <= length:
            raise InputError(
                f"rows {start}:{stop} out of range for video '{video_id}' with {length} features"
            )
        rows = np.concatenate([np.asarray(a[start:stop], dtype=np.float32) for a in arrays], axis=1)
        _check_finite(rows, f"features of video '{video_id}' in {self.feature_dir}", first_row=start)
        return rows

"""A synthetic temporal-localization benchmark in the real formats.

:func:`generate_synthetic` writes ``annotations.json`` (ActivityNet layout with per-video fps and
the ``classes`` list, readable by :func:`rc3d_af.data.annotations.load_annotations`),
``features/<video_id>.npy`` (``(T, D)`` float32, readable by
:func:`rc3d_af.data.features.load_features`) and ``synthetic.json`` (the feature spec, dimension,
seed and knobs used). ``T`` comes from :meth:`FeatureSpec.num_features` (default: one feature
every 4 frames, 16-frame clips, at the video's own fps), and every instance is placed in feature
indices through :meth:`FeatureSpec.seconds_to_index`, the same mapping the models use.

Timings: ``like`` reuses the videos, subsets, durations, fps, instances, classes and Ambiguous
intervals of a real annotation set (``"thumos14"`` names the THUMOS14 val + test timings shipped in
``rc3d_af/resources``); without it, THUMOS14-like timings are drawn (:func:`synthetic_timings`).

Features of a video (all amplitudes in units of the per-dimension noise standard deviation):

* background: AR(1) noise in time (``noise_corr`` between consecutive features, unit variance),
  plus a per-shot scene offset (std ``scene`` per dimension, shots of ``shot_seconds`` on average)
  whose changes look like boundaries;
* an instance of class ``c``: a signal of norm ``signal`` that moves from the class's "start"
  prototype to its "end" prototype as the action progresses (so the middle of an action differs
  from its ends), weighted by the fraction of each feature's clip inside the instance; plus
  ``boundary``-strong start and end cues (shared by all classes) at its boundaries;
* distractors (``distractors`` per instance, at random places outside instances, wrong lengths):
  one phase of a class pattern without progression or cues, a blend of two classes, or a lone
  boundary cue; Ambiguous intervals get a partial pattern too.

Signal strength per feature is independent of ``dim`` (prototypes have unit norm), so a small
``dim`` for CPU runs is as hard as a large one. A video's features depend only on the seed, the
settings, the class list and that video's own timings, so subsets of a benchmark (``videos``)
agree with the full one.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from rc3d_af.data.annotations import (
    AnnotationSet,
    Instance,
    VideoAnnotation,
    load_annotations,
    save_annotations_json,
)
from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError

__all__ = ["SynthParams", "generate_synthetic", "resolve_like", "synthetic_timings"]

PACKAGED_TIMINGS = {"thumos14": "thumos14_timings.json"}


@dataclass(frozen=True)
class SynthParams:
    """Difficulty knobs (amplitudes in noise standard deviations per dimension).

    Attributes:
        signal: norm of the class signal inside an instance.
        boundary: peak norm of the start/end cues.
        noise_corr: AR(1) correlation of the background noise between consecutive features.
        scene: per-dimension std of the per-shot scene offset.
        shot_seconds: mean shot length in seconds.
        distractors: distractor segments per ground-truth instance (Poisson mean).
        distractor_signal: norm of a distractor's pattern, relative to ``signal``.

    Calibration (THUMOS14 timings, D=64, seed 0, mAP@0.5 on the test split, ActivityNet protocol):
    a per-feature linear probe (class means learned on the validation split, thresholded runs as
    segments) scores 0.017 / 0.19 / 0.27 at ``signal`` 1.5 / 3.0 / 4.5 (``boundary`` 1.5; 0.19
    also with the default 2.0); thresholding the feature norm scores below 0.001 at all three,
    and the probe's detections moved to random videos 0.001.
    The default (3.0) leaves a learned detector room above the probe without making it trivial.
    """

    signal: float = 3.0
    boundary: float = 2.0
    noise_corr: float = 0.7
    scene: float = 0.5
    shot_seconds: float = 20.0
    distractors: float = 1.0
    distractor_signal: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"synthetic parameter {name} must be a finite number >= 0, got {value!r}")
        if self.noise_corr >= 1:
            raise InputError(f"synthetic parameter noise_corr must be < 1, got {self.noise_corr}")
        if self.shot_seconds <= 0:
            raise InputError(f"synthetic parameter shot_seconds must be > 0, got {self.shot_seconds}")


def resolve_like(like: str | Path | AnnotationSet | None) -> AnnotationSet | None:
    """The timing source: an AnnotationSet, a packaged name (``"thumos14"``) or an annotation path."""
    if like is None or isinstance(like, AnnotationSet):
        return like
    if str(like) in PACKAGED_TIMINGS:
        packaged = resources.files("rc3d_af").joinpath("resources", PACKAGED_TIMINGS[str(like)])
        with resources.as_file(packaged) as path:
            return load_annotations(path)
    return load_annotations(like)


# ----------------------------------------------------------------------------------------------
# Timings
# ----------------------------------------------------------------------------------------------


def synthetic_timings(num_videos: int = 200, num_classes: int = 20, seed: int = 0) -> AnnotationSet:
    """THUMOS14-like videos: half ``"validation"`` (training) and half ``"test"``.

    Videos last 20 s to 15 min (median about 2.5 min) at 30 fps (some 29.97, 25 and 24). Each
    class has its own typical duration; instances last 0.2 s to 100 s, median about 3 s; a video
    holds about 15 non-overlapping instances, mostly of one class.
    """
    if num_videos < 2 or num_classes < 1:
        raise InputError(
            f"need at least 2 videos and 1 class, got {num_videos} videos, {num_classes} classes"
        )
    rng = np.random.default_rng([seed, 2])
    names = [f"action_{c:02d}" for c in range(num_classes)]
    class_median = 3.0 * np.exp(rng.normal(0.0, 0.6, num_classes))
    videos = {}
    for v in range(num_videos):
        video_id = f"synthetic_{v:05d}"
        subset = "validation" if v < num_videos // 2 else "test"
        duration = float(np.clip(150.0 * np.exp(rng.normal(0.0, 0.6)), 20.0, 900.0).round(2))
        fps = float(rng.choice([30.0, 29.97, 25.0, 24.0], p=[0.9, 0.05, 0.04, 0.01]))
        main_class = rng.integers(num_classes)
        count = max(1, int(rng.poisson(15)))
        classes = np.where(rng.random(count) < 0.85, main_class, rng.integers(num_classes, size=count))
        lengths = np.clip(class_median[classes] * np.exp(rng.normal(0.0, 0.6, count)), 0.2, 100.0)
        keep = np.cumsum(lengths) <= 0.6 * duration  # actions fill at most 60% of a video
        keep[0] = lengths[0] <= 0.9 * duration
        classes, lengths = classes[keep], lengths[keep]
        gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (duration - lengths.sum())
        starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        instances = [
            Instance(names[c], round(float(s), 2), round(float(s + n), 2))
            for c, s, n in zip(classes, starts, lengths, strict=True)
        ]
        videos[video_id] = VideoAnnotation(video_id, subset, duration, fps, instances, [])
    return AnnotationSet(videos=videos, class_names=names)


def _coverage_order(video_ids: list[str], annotations: AnnotationSet) -> list[str]:
    """The videos in the order a selection takes them: first, greedily, the video that adds the most
    classes not yet present (the first name on ties) while one adds any, then the rest by name.

    Any first N of this order therefore hold as many of the classes as a greedy cover can, and a
    smaller selection is part of a larger one.
    """
    labels = {vid: {inst.label for inst in annotations.videos[vid].instances} for vid in video_ids}
    remaining, order, present = sorted(video_ids), [], set()
    while remaining:
        best = max(remaining, key=lambda vid: len(labels[vid] - present))  # max keeps the first on ties
        if not labels[best] - present:
            break
        order.append(best)
        present |= labels[best]
        remaining.remove(best)
    return order + remaining


def _select(annotations: AnnotationSet, videos: int | None) -> AnnotationSet:
    """``videos`` videos, shared out among the subsets in proportion to their sizes, each subset's in
    :func:`_coverage_order` (so that every subset holds every class where its share allows).

    Largest-remainder apportionment; every subset keeps at least one video when ``videos`` allows.
    """
    if videos is None:
        return annotations
    if videos < 1:
        raise InputError(f"--videos must be at least 1, got {videos}")
    by_subset: dict[str, list[str]] = {}
    for video_id in sorted(annotations.videos):
        by_subset.setdefault(annotations.videos[video_id].subset, []).append(video_id)
    sizes = np.array([len(ids) for ids in by_subset.values()])
    videos = min(videos, int(sizes.sum()))
    quota = videos * sizes / sizes.sum()
    counts = np.floor(quota).astype(int)
    if videos >= len(sizes):
        counts = np.maximum(counts, 1)
    for k in np.argsort(-(quota - counts), kind="stable")[: max(videos - counts.sum(), 0)]:
        counts[k] += 1
    chosen = [
        vid
        for ids, n in zip(by_subset.values(), counts, strict=True)
        for vid in _coverage_order(ids, annotations)[:n]
    ]
    return AnnotationSet(
        {vid: annotations.videos[vid] for vid in sorted(chosen)},
        annotations.class_names,
        annotations.class_ids,
    )


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prototypes:
    """Unit vectors: per class a start and an end pattern, and the shared boundary cues."""

    start: np.ndarray  # (C, D)
    end: np.ndarray  # (C, D)
    onset: np.ndarray  # (D,)
    offset: np.ndarray  # (D,)

    @classmethod
    def draw(cls, num_classes: int, dim: int, seed: int) -> _Prototypes:
        rng = np.random.default_rng([seed, 0])
        vectors = rng.standard_normal((2 * num_classes + 2, dim))
        if len(vectors) <= dim:  # orthonormal when there is room, so classes never share a direction
            vectors = np.linalg.qr(vectors.T)[0].T
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        c = num_classes
        return cls(vectors[:c], vectors[c : 2 * c], vectors[2 * c], vectors[2 * c + 1])


def _background(
    rng: np.random.Generator, length: int, dim: int, params: SynthParams, shot: float
) -> np.ndarray:
    """AR(1) unit-variance noise plus per-shot scene offsets, ``(length, dim)`` float32."""
    from scipy.signal import lfilter  # slow to import; the CLI imports this module to build its help

    rho = np.float32(params.noise_corr)
    innovation = rng.standard_normal((dim, length), dtype=np.float32)  # time last: lfilter runs contiguous
    gain = np.sqrt(1 - rho * rho, dtype=np.float32)
    # Initial state so that the first value is a unit-variance draw: the process starts stationary.
    state = ((1 - gain) * innovation[:, :1]).astype(np.float32)
    noise, _ = lfilter(
        np.array([gain], np.float32), np.array([1, -rho], np.float32), innovation, axis=1, zi=state
    )
    features = np.ascontiguousarray(noise.T, dtype=np.float32)
    cuts = np.cumsum(rng.exponential(shot, size=int(length / shot) * 2 + 8))
    shot_of = np.searchsorted(cuts[cuts < length], np.arange(length), side="right")
    features += rng.normal(0.0, params.scene, (shot_of[-1] + 1, dim)).astype(np.float32)[shot_of]
    return features


def _add_pattern(
    features: np.ndarray,
    start: float,
    end: float,
    first: np.ndarray,
    last: np.ndarray,
    norm: float,
    half: float,
) -> None:
    """Add a pattern moving from ``first`` to ``last`` over [start, end] (feature indices), in place.

    Each feature is weighted by the share of its clip (``±half`` indices around its centre) that
    lies inside the segment; the pattern has norm ``norm`` at full weight.
    """
    lo, hi = max(0, math.floor(start - half)), min(len(features), math.ceil(end + half) + 1)
    if lo >= hi:
        return
    centre = np.arange(lo, hi, dtype=np.float32)
    weight = np.clip(np.minimum(centre + half, end) - np.maximum(centre - half, start), 0, None) / (2 * half)
    progress = np.clip((centre - start) / max(end - start, 1e-6), 0.0, 1.0)[:, None]
    pattern = (1 - progress) * first + progress * last
    pattern /= np.maximum(np.linalg.norm(pattern, axis=1, keepdims=True), 1e-6)
    features[lo:hi] += (norm * weight)[:, None] * pattern


def _add_cue(features: np.ndarray, at: float, vector: np.ndarray, norm: float, width: float) -> None:
    """Add a Gaussian bump (std ``width`` indices) of ``vector`` centred on index ``at``, in place."""
    lo, hi = max(0, math.floor(at - 3 * width)), min(len(features), math.ceil(at + 3 * width) + 1)
    if lo >= hi:
        return
    offset = np.arange(lo, hi, dtype=np.float32) - at
    features[lo:hi] += (norm * np.exp(-0.5 * (offset / width) ** 2))[:, None] * vector


def _distractor_places(
    rng: np.random.Generator, lengths: np.ndarray, total: int, busy: np.ndarray
) -> list[tuple[float, float]]:
    """Random segments of the given lengths (indices) that overlap no busy segment (8 tries each)."""
    places = []
    for length in lengths:
        starts = rng.uniform(0.0, max(total - length, 1.0), size=8)
        free = ~((starts[:, None] < busy[:, 1]) & (starts[:, None] + length > busy[:, 0])).any(axis=1)
        if free.any():
            start = float(starts[np.argmax(free)])
            places.append((start, start + float(length)))
    return places


def _synthesize_video(
    video: VideoAnnotation,
    class_ids: list[int],
    prototypes: _Prototypes,
    params: SynthParams,
    spec: FeatureSpec,
    seed: int,
) -> np.ndarray:
    """Features ``(T, D)`` float32 of one video; ``class_ids[k]`` is the class of ``video.instances[k]``."""
    fps = video.fps
    if fps is None:
        raise InputError(
            f"video '{video.video_id}': the timing source gives no fps; synthetic features need it"
        )
    rng = np.random.default_rng([seed, 1, zlib.crc32(video.video_id.encode())])
    length = spec.num_features(video.duration, fps)
    dim = prototypes.onset.shape[0]
    shot = max(params.shot_seconds * fps / spec.stride_frames, 1.0)
    features = _background(rng, length, dim, params, shot)
    half = 0.5 * spec.clip_frames / spec.stride_frames  # a clip reaches this many indices each side
    width = max(half / 2, 0.5)

    segments = np.array([(i.start, i.end) for i in video.instances] or np.zeros((0, 2)), dtype=np.float64)
    segments = spec.seconds_to_index(segments, fps)
    for (start, end), c in zip(segments, class_ids, strict=True):
        _add_pattern(features, start, end, prototypes.start[c], prototypes.end[c], params.signal, half)
        _add_cue(features, start, prototypes.onset, params.boundary, width)
        _add_cue(features, end, prototypes.offset, params.boundary, width)

    num_classes = len(prototypes.start)
    norm = params.signal * params.distractor_signal
    for start, end in spec.seconds_to_index(np.array(video.ambiguous, dtype=np.float64).reshape(-1, 2), fps):
        c = rng.integers(num_classes)
        _add_pattern(features, start, end, prototypes.start[c], prototypes.start[c], norm, half)

    count = int(rng.poisson(params.distractors * max(len(segments), 1)))
    pool = segments[:, 1] - segments[:, 0] if len(segments) else np.array([3.0 * fps / spec.stride_frames])
    lengths = rng.choice(pool, size=count) * np.exp(rng.normal(0.0, 0.5, count))  # wrong lengths
    busy = segments + np.array([-half, half])  # distractors keep clear of every instance's clips
    for start, end in _distractor_places(rng, lengths, length, busy):
        kind, a = rng.integers(3), rng.integers(num_classes)
        b = (a + 1 + rng.integers(max(num_classes - 1, 1))) % num_classes  # another class when there is one
        if kind == 0:  # one phase of a class, no progression, no cues
            phase = prototypes.start[a] if rng.random() < 0.5 else prototypes.end[a]
            _add_pattern(features, start, end, phase, phase, norm, half)
        elif kind == 1:  # the start of one class running into the end of another
            _add_pattern(features, start, end, prototypes.start[a], prototypes.end[b], norm, half)
        else:  # a lone boundary cue
            cue = prototypes.onset if rng.random() < 0.5 else prototypes.offset
            _add_cue(features, start, cue, params.boundary, width)
    return features


def generate_synthetic(
    out_dir: str | Path,
    like: str | Path | AnnotationSet | None = None,
    videos: int | None = None,
    dim: int = 256,
    seed: int = 0,
    params: SynthParams | None = None,
    spec: FeatureSpec | None = None,
) -> Path:
    """Write a synthetic benchmark to ``out_dir``; returns the path of its ``annotations.json``.

    Args:
        out_dir: created if needed; existing files of the same names are overwritten.
        like: timing source (see :func:`resolve_like`); None draws THUMOS14-like timings.
        videos: keep this many videos (subsets in proportion, each covering as many classes as it
            can, see :func:`_select`); None keeps all (without ``like``: 200).
        dim: feature width D.
        seed: the benchmark is a pure function of (timings, dim, seed, params, spec).
        params: difficulty knobs, :class:`SynthParams` defaults when None.
        spec: feature sampling, ``FeatureSpec()`` (stride 4, clip 16 frames) when None.
    """
    params = params or SynthParams()
    spec = spec or FeatureSpec()
    if dim < 1:
        raise InputError(f"--dim must be at least 1, got {dim}")
    if videos is not None and videos < 1:
        raise InputError(f"--videos must be at least 1, got {videos}")
    source = resolve_like(like)
    timings = _select(source, videos) if source is not None else synthetic_timings(videos or 200, seed=seed)
    prototypes = _Prototypes.draw(len(timings.class_names), dim, seed)
    out_dir = Path(out_dir)
    feature_dir = out_dir / "features"
    feature_dir.mkdir(parents=True, exist_ok=True)
    for video in timings.videos.values():
        class_ids = [timings.class_index(inst.label) for inst in video.instances]
        np.save(
            feature_dir / f"{video.video_id}.npy",
            _synthesize_video(video, class_ids, prototypes, params, spec, seed),
        )
    annotation_path = out_dir / "annotations.json"
    save_annotations_json(timings, annotation_path)
    info = {
        "feature_spec": asdict(spec),
        "dim": dim,
        "seed": seed,
        "params": asdict(params),
        "videos": len(timings.videos),
        "instances": timings.num_instances,
        "timings": str(like) if isinstance(like, (str, Path)) else "given" if like else "THUMOS14-like",
    }
    (out_dir / "synthetic.json").write_text(json.dumps(info, indent=1) + "\n")
    return annotation_path

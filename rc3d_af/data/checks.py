"""Dataset checks before any work: feature lengths against the annotated durations, ground truth
against its video, classes across the splits.

The field's most common silent failure is features that do not match their annotations: extracted
with another stride or from video at another frame rate than the config says, or cut short. A model
then trains and tests on misplaced ground truth and nothing complains. Every command that reads
features passes :func:`verify_videos` (through ``rc3d_af.engine.datasets``), and
``rc3d-af check-data`` prints :func:`dataset_report` for the whole dataset.

**Expected length.** A video of ``duration`` seconds at ``fps`` has ``E =
FeatureSpec.num_features(duration, fps) = floor((floor(duration * fps) - clip_frames) / stride_frames) + 1``
features. Extractors differ at the end of a video (padding the last clip or not) and decoded frame
counts differ from ``duration * fps`` (measured: by at most 3.6 frames on the THUMOS14 test videos,
by up to 7% on ActivityNet), so a found length ``T`` is accepted when
``|T - E| <= max(tolerance * E, clip_frames / stride_frames + 1)`` (``tolerance`` is
``data.length_tolerance``, default :data:`LENGTH_TOLERANCE`); accepted differences are counted in
one summary warning. A larger difference stops the command with one message naming the videos and
the stride or frame rate that would explain their lengths.

**Ground truth outside its video.** A segment that ends at most ``slack`` seconds after the video's
duration (``data.segment_slack``, default :data:`SEGMENT_SLACK`; ActivityNet v1.3 has 215 such
instances, by at most 0.85 s) is clipped to the duration for training and counted in a warning.
One further outside is a malformed annotation: an error naming the video and the instance, unless
``data.segments_beyond: keep`` (the official THUMOS14 annotations hold 30 instances in 5 videos
that lie wholly after their video's end; the evaluation kit counts them as missed).

Problems raise :class:`rc3d_af.errors.InputError`; what is only worth knowing is a
:class:`DataWarning`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.data.features import FeatureSpec, FeatureStore
from rc3d_af.errors import InputError

__all__ = [
    "LENGTH_TOLERANCE",
    "SEGMENT_SLACK",
    "DataWarning",
    "Finding",
    "Length",
    "LengthReport",
    "classes_missing_by_subset",
    "compare_lengths",
    "dataset_report",
    "read_lengths",
    "segments_outside",
    "untrained_classes",
    "untrained_message",
    "verify_videos",
]

LENGTH_TOLERANCE = 0.1  # share of the expected feature count (data.length_tolerance)
SEGMENT_SLACK = 1.0  # seconds ground truth may end after its video's duration (data.segment_slack)
_EXAMPLES = 3  # videos or instances named in a message
COMMON_FPS = (10.0, 12.0, 15.0, 23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)  # extraction frame rates


class DataWarning(UserWarning):
    """Something about the data worth knowing that does not stop a command."""


# ----------------------------------------------------------------------------------------------
# Feature lengths
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Length:
    """Expected and found feature counts of one video."""

    video_id: str
    duration: float  # seconds
    fps: float
    expected: int  # FeatureSpec.num_features(duration, fps)
    found: int  # rows of the feature file(s)

    @property
    def ratio(self) -> float:
        return self.found / self.expected

    def describe(self) -> str:
        return (
            f"{self.video_id} ({self.duration:g} s at {self.fps:g} fps: {self.expected} expected, "
            f"{self.found} found)"
        )


@dataclass
class LengthReport:
    """Feature lengths of a set of videos compared with their annotated durations.

    Attributes:
        videos: videos asked about.
        exact: videos with exactly the expected count.
        small: within the allowance (``|T - E| <= max(tolerance * E, clip / stride + 1)``) but not exact.
        gross: beyond it.
        no_fps: videos whose annotations give no fps (not comparable).
    """

    videos: int = 0
    exact: int = 0
    small: list[Length] = field(default_factory=list)
    gross: list[Length] = field(default_factory=list)
    no_fps: list[str] = field(default_factory=list)


def compare_lengths(
    videos: Iterable[VideoAnnotation],
    lengths: Mapping[str, int],
    spec: FeatureSpec,
    tolerance: float = LENGTH_TOLERANCE,
) -> LengthReport:
    """Compare each video's feature count ``lengths[video_id]`` with the count its duration implies."""
    report = LengthReport()
    slack_rows = spec.clip_frames / spec.stride_frames + 1
    for video in videos:
        report.videos += 1
        if video.fps is None:
            report.no_fps.append(video.video_id)
            continue
        expected = spec.num_features(video.duration, video.fps)
        length = Length(video.video_id, video.duration, video.fps, expected, int(lengths[video.video_id]))
        difference = abs(length.found - expected)
        if difference == 0:
            report.exact += 1
        elif difference <= max(tolerance * expected, slack_rows):
            report.small.append(length)
        else:
            report.gross.append(length)
    return report


def _prefix(where: str) -> str:
    """``"where: "``, or nothing when the caller names the data itself (check-data's subset column)."""
    return f"{where}: " if where else ""


def _fraction(ratio: float) -> str:
    """``0.25 -> "1/4 of"``, ``2.0 -> "2 times"``, ``0.6 -> "0.60 times"``."""
    if ratio < 1 and abs(1 / ratio - round(1 / ratio)) <= 0.05 / ratio:
        return f"1/{round(1 / ratio)} of"
    if ratio > 1 and abs(ratio - round(ratio)) <= 0.05 * ratio:
        return f"{round(ratio)} times"
    return f"{ratio:.2f} times"


def _consistent(values: np.ndarray, spread: float = 0.1) -> bool:
    return bool(np.all(np.abs(values / np.median(values) - 1) <= spread))


def _explain(gross: Sequence[Length], spec: FeatureSpec) -> str:
    """The stride or frame rate that would give the found lengths, when one explains them all."""
    found = {length.found for length in gross}
    if len(gross) > 2 and len(found) == 1 and len({length.expected for length in gross}) > 1:
        return (
            f"every one of them has T = {found.pop()}: features resampled to one length per video do "
            "not keep the time <-> index mapping (stride_frames, clip_frames); extract at a fixed "
            "frame stride instead"
        )
    ratios = np.array([length.ratio for length in gross])
    if not np.all(ratios > 0):
        return ""
    implied_fps = np.array([length.fps * length.ratio for length in gross])
    guesses = []
    stride = spec.stride_frames / float(np.median(ratios))
    if _consistent(ratios) and 1 <= round(stride) <= 64 and abs(stride - round(stride)) <= 0.03 * stride:
        guesses.append(f"with stride {round(stride)} frames, not {spec.stride_frames} (data.stride_frames)")
    fps = float(np.median(implied_fps))
    common = min(COMMON_FPS, key=lambda rate: abs(rate - fps))
    if _consistent(implied_fps, spread=0.03) and abs(common - fps) <= 0.01 * common:
        annotated = sorted({f"{length.fps:g}" for length in gross}, key=float)
        guesses.append(f"from video at {common:g} fps, not {'/'.join(annotated[:3])} as annotated")
    if not guesses:
        return ""
    return f"T is {_fraction(float(np.median(ratios)))} the expected length: were the features extracted " + (
        " or ".join(guesses) + "?"
    )


def _length_error(report: LengthReport, spec: FeatureSpec, tolerance: float, where: str) -> str:
    gross = report.gross
    explanation = _explain(gross, spec)
    examples = "; ".join(length.describe() for length in gross[:_EXAMPLES])
    return (
        f"{_prefix(where)}the feature count T does not match the annotated duration for {len(gross)} of "
        f"{report.videos} videos"
        + (f". {explanation}" if explanation else ".")
        + f" E.g. {examples}{'; ...' if len(gross) > _EXAMPLES else ''}. Expected "
        f"T = floor((floor(duration * fps) - {spec.clip_frames}) / {spec.stride_frames}) + 1, accepted "
        f"within max({tolerance:g} * expected, {spec.clip_frames}/{spec.stride_frames} + 1) features: set "
        "data.stride_frames / data.clip_frames to those of the extraction, fix the fps or durations of the "
        "annotations, or re-extract the features (data.length_tolerance sets the accepted difference)"
    )


def _length_warning(report: LengthReport, where: str) -> str:
    small = report.small
    differences = [abs(length.found - length.expected) for length in small]
    worst = max(small, key=lambda length: abs(length.ratio - 1))
    compared = report.videos - len(report.no_fps)
    return (
        f"{_prefix(where)}the feature count differs slightly from the annotated duration for {len(small)} of "
        f"{compared} videos, by {min(differences)} to {max(differences)} features (at most "
        f"{100 * abs(worst.ratio - 1):.1f}%: {worst.describe()}); within data.length_tolerance (the usual "
        "rounding at the end of a video); windows use the features' own count"
    )


# ----------------------------------------------------------------------------------------------
# Ground truth outside its video
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outside:
    """A ground-truth instance that extends beyond ``[0, duration]`` of its video."""

    video_id: str
    index: int  # position in VideoAnnotation.instances (the annotation file's order)
    instance: Instance
    duration: float

    @property
    def overrun(self) -> float:
        """Seconds outside the video (after its end or before its start)."""
        return max(self.instance.end - self.duration, -self.instance.start)

    def describe(self) -> str:
        inst = self.instance
        return (
            f"{self.video_id} instance {self.index} ({inst.label} [{inst.start:g}, {inst.end:g}] s, "
            f"video {self.duration:g} s)"
        )


def segments_outside(
    videos: Iterable[VideoAnnotation], slack: float = SEGMENT_SLACK
) -> tuple[list[Outside], list[Outside]]:
    """Instances outside their video: ``(slightly, far)``, split at ``slack`` seconds."""
    slightly: list[Outside] = []
    far: list[Outside] = []
    for video in videos:
        for index, instance in enumerate(video.instances):
            outside = Outside(video.video_id, index, instance, video.duration)
            if outside.overrun > slack:
                far.append(outside)
            elif outside.overrun > 0:
                slightly.append(outside)
    return slightly, far


def _videos_of(items: Sequence[Outside]) -> int:
    return len({item.video_id for item in items})


def _far_error(far: Sequence[Outside], slack: float, where: str) -> str:
    examples = "; ".join(item.describe() for item in far[:_EXAMPLES])
    return (
        f"{_prefix(where)}{len(far)} ground-truth instance(s) in {_videos_of(far)} video(s) lie more than "
        f"data.segment_slack = {slack:g} s outside their video: {examples}"
        f"{'; ...' if len(far) > _EXAMPLES else ''}. "
        "A malformed annotation (wrong video, duration or time unit?): fix it, or set "
        "data.segments_beyond: keep to keep such instances (they are left out of the training windows "
        "and evaluation counts them as missed, as the THUMOS14 kit does with the 30 of its official "
        "annotations)"
    )


def _slight_warning(slightly: Sequence[Outside], where: str) -> str:
    worst = max(slightly, key=lambda item: item.overrun)
    return (
        f"{_prefix(where)}{len(slightly)} ground-truth instance(s) in {_videos_of(slightly)} video(s) "
        f"extend past their video by at most {worst.overrun:.3g} s (e.g. {worst.describe()}); clipped to "
        "the video for training (within data.segment_slack)"
    )


def _kept_warning(far: Sequence[Outside], where: str) -> str:
    examples = "; ".join(item.describe() for item in far[:_EXAMPLES])
    return (
        f"{_prefix(where)}{len(far)} ground-truth instance(s) in {_videos_of(far)} video(s) lie outside "
        f"their video (e.g. {examples}); kept (data.segments_beyond: keep): no training window holds them "
        "and evaluation counts them as missed"
    )


# ----------------------------------------------------------------------------------------------
# Classes across the splits
# ----------------------------------------------------------------------------------------------


def untrained_classes(annotations: AnnotationSet, train_subset: str, test_subset: str) -> dict[str, int]:
    """``{class: instances}`` of the classes that occur in ``test_subset`` but never in ``train_subset``."""
    counts: dict[str, Counter[str]] = {train_subset: Counter(), test_subset: Counter()}
    for video in annotations.videos.values():
        if video.subset in counts:
            counts[video.subset].update(inst.label for inst in video.instances)
    trained = counts[train_subset]
    return {label: n for label, n in sorted(counts[test_subset].items()) if label not in trained}


def classes_missing_by_subset(annotations: AnnotationSet) -> dict[str, list[str]]:
    """``{subset: classes}``: for each subset, the classes annotated in another subset but not in it."""
    present: dict[str, set[str]] = {}
    for video in annotations.videos.values():
        present.setdefault(video.subset, set()).update(inst.label for inst in video.instances)
    annotated = set().union(*present.values()) if present else set()
    return {
        subset: sorted(annotated - labels) for subset, labels in sorted(present.items()) if annotated - labels
    }


def untrained_message(missing: Mapping[str, int], train_subset: str, test_subset: str) -> str:
    names = ", ".join(list(missing)[:8]) + (", ..." if len(missing) > 8 else "")
    return (
        f"{len(missing)} class(es) of the test split '{test_subset}' never occur in the training split "
        f"'{train_subset}' ({names}; {sum(missing.values())} test instances): the model cannot learn "
        "them and evaluation counts their instances as missed"
    )


# ----------------------------------------------------------------------------------------------
# The check every feature-reading command passes
# ----------------------------------------------------------------------------------------------


def read_lengths(store: FeatureStore, video_ids: Sequence[str], where: str) -> dict[str, int]:
    """``{video_id: T}``; one InputError naming every video without features (count, first few)."""
    missing = [video_id for video_id in video_ids if not store.has(video_id)]
    if missing:
        expected = ", ".join(str(path) for path in store.paths(missing[0]))
        raise InputError(
            f"{where}: {len(missing)} of {len(video_ids)} videos have no features in {store.feature_dir}: "
            f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''} (expected e.g. {expected})"
        )
    return store.lengths(video_ids)


def verify_videos(
    videos: Sequence[VideoAnnotation],
    lengths: Mapping[str, int],
    spec: FeatureSpec,
    *,
    length_tolerance: float = LENGTH_TOLERANCE,
    segment_slack: float = SEGMENT_SLACK,
    segments_beyond: Literal["error", "keep"] = "error",
    where: str = "data",
    warn: bool = True,
) -> None:
    """Stop on features that do not match their videos or ground truth outside its video; warn on the rest.

    Args:
        videos: the videos a command is about to use.
        lengths: ``{video_id: T}`` of their features.
        spec: the feature sampling of the config.
        length_tolerance, segment_slack, segments_beyond: the ``data`` config fields (module docstring).
        where: names the data in messages (``"data subset 'test'"``).
        warn: also issue the :class:`DataWarning` summaries (small length differences, instances
            slightly outside, kept instances, videos without fps).

    Raises:
        InputError: one message for all the gross length mismatches and instances far outside.
    """
    report = compare_lengths(videos, lengths, spec, length_tolerance)
    slightly, far = segments_outside(videos, segment_slack)
    errors = []
    if report.gross:
        errors.append(_length_error(report, spec, length_tolerance, where))
    if far and segments_beyond == "error":
        errors.append(_far_error(far, segment_slack, where))
    if errors:
        raise InputError("\n".join(errors))
    if not warn:
        return
    notes = []
    if report.small:
        notes.append(_length_warning(report, where))
    if slightly:
        notes.append(_slight_warning(slightly, where))
    if far:
        notes.append(_kept_warning(far, where))
    if report.no_fps:
        notes.append(
            f"{where}: {len(report.no_fps)} video(s) have no fps in the annotations (e.g. "
            f"{report.no_fps[0]}): their feature counts cannot be checked against their durations"
        )
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)


# ----------------------------------------------------------------------------------------------
# The whole-dataset report of ``rc3d-af check-data``
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One line of the report. ``level``: "ok", "warning" or "problem" (training or evaluation
    would be wrong)."""

    level: Literal["ok", "warning", "problem"]
    subset: str | None  # None: the whole dataset
    message: str


def _scan_features(
    store: FeatureStore, video_ids: Sequence[str]
) -> tuple[dict[str, int], dict[str, int], dict[str, str]]:
    """Read every video fully: ``({video: T}, {video: D}, {video: error})`` (NaN/inf, unreadable files)."""
    from rc3d_af.data.features import load_features

    lengths, widths, errors = {}, {}, {}
    for video_id in video_ids:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)  # streams of different lengths
                features = load_features(store.feature_dir, video_id, store.streams)
        except (InputError, UserWarning) as exc:
            errors[video_id] = str(exc)
            continue
        lengths[video_id], widths[video_id] = features.shape
    return lengths, widths, errors


def _instance_lengths(
    videos: Sequence[VideoAnnotation], spec: FeatureSpec, window_size: int | None
) -> tuple[int, int, int]:
    """(instances, shorter than one feature, longer than ``window_size`` features)."""
    total = short = long = 0
    for video in videos:
        if video.fps is None:
            continue
        for inst in video.instances:
            features = (inst.end - inst.start) * video.fps / spec.stride_frames
            total += 1
            short += features < 1
            long += window_size is not None and features > window_size
    return total, short, long


def dataset_report(
    annotations: AnnotationSet,
    store: FeatureStore,
    spec: FeatureSpec,
    *,
    train_subset: str,
    test_subset: str,
    window_size: int | None,
    length_tolerance: float = LENGTH_TOLERANCE,
    segment_slack: float = SEGMENT_SLACK,
    segments_beyond: Literal["error", "keep"] = "error",
) -> list[Finding]:
    """Everything :func:`verify_videos` checks, for every subset, plus: videos without features,
    unreadable files, NaN/inf values and feature widths (every file is read in full), classes of the
    test split absent from training, instances shorter than one feature or longer than a window
    (``window_size`` features; None for rescaled windows, which hold whole videos)."""
    findings: list[Finding] = []
    subsets: dict[str, list[VideoAnnotation]] = {}
    for video in annotations.videos.values():
        subsets.setdefault(video.subset, []).append(video)
    for name in (train_subset, test_subset):
        if name not in subsets:
            findings.append(
                Finding(
                    "problem",
                    name,
                    f"no video of the annotations is in subset '{name}' "
                    f"(subsets: {', '.join(sorted(subsets))})",
                )
            )
    widths: dict[str, int] = {}
    for name, videos in sorted(subsets.items()):
        findings += _subset_findings(
            name, videos, store, spec, widths, window_size, length_tolerance, segment_slack, segments_beyond
        )
    findings += _width_findings(widths)
    if train_subset in subsets and test_subset in subsets:
        missing = untrained_classes(annotations, train_subset, test_subset)
        findings.append(
            Finding("problem", None, untrained_message(missing, train_subset, test_subset))
            if missing
            else Finding("ok", None, f"every class of '{test_subset}' occurs in '{train_subset}'")
        )
    return findings


def _subset_findings(
    name: str,
    videos: list[VideoAnnotation],
    store: FeatureStore,
    spec: FeatureSpec,
    widths: dict[str, int],
    window_size: int | None,
    length_tolerance: float,
    segment_slack: float,
    segments_beyond: Literal["error", "keep"],
) -> list[Finding]:
    found: list[Finding] = []
    instances = sum(len(v.instances) for v in videos)
    found.append(Finding("ok", name, f"{len(videos)} videos, {instances} instances"))
    ids = [v.video_id for v in videos]
    missing = [video_id for video_id in ids if not store.has(video_id)]
    if missing:
        found.append(
            Finding(
                "problem",
                name,
                f"{len(missing)} of {len(ids)} videos have no features: "
                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''} "
                f"(expected e.g. {store.paths(missing[0])[0]})",
            )
        )
    lengths, subset_widths, errors = _scan_features(store, [i for i in ids if i not in set(missing)])
    widths.update(subset_widths)
    for error in list(errors.values())[:5]:
        found.append(Finding("problem", name, error))
    if len(errors) > 5:
        found.append(Finding("problem", name, f"... and {len(errors) - 5} more unreadable feature files"))
    readable = [v for v in videos if v.video_id in lengths]
    found += _length_findings(name, readable, lengths, spec, length_tolerance)
    slightly, far = segments_outside(videos, segment_slack)
    if far and segments_beyond == "error":
        found.append(Finding("problem", name, _far_error(far, segment_slack, "")))
    elif far:
        found.append(Finding("warning", name, _kept_warning(far, "")))
    if slightly:
        found.append(Finding("warning", name, _slight_warning(slightly, "")))
    total, short, long = _instance_lengths(videos, spec, window_size)
    if short:
        found.append(
            Finding(
                "warning",
                name,
                f"{short} of {total} instances are shorter than one feature "
                f"({spec.stride_frames} frames): their boundaries cannot be localized finer",
            )
        )
    if long:
        found.append(
            Finding(
                "warning",
                name,
                f"{long} of {total} instances are longer than a window "
                f"({window_size} features): no window holds them whole (data.window_size)",
            )
        )
    return found


def _length_findings(
    name: str, videos: list[VideoAnnotation], lengths: Mapping[str, int], spec: FeatureSpec, tolerance: float
) -> list[Finding]:
    report = compare_lengths(videos, lengths, spec, tolerance)
    found = []
    compared = report.videos - len(report.no_fps)
    if compared:
        found.append(
            Finding(
                "ok",
                name,
                f"feature counts: {report.exact} of {compared} videos exactly as "
                "expected from their duration and fps",
            )
        )
    if report.small:
        found.append(Finding("warning", name, _length_warning(report, "")))
    if report.gross:
        found.append(Finding("problem", name, _length_error(report, spec, tolerance, "")))
    if report.no_fps:
        annotated = any(v.instances for v in videos if v.fps is None)
        found.append(
            Finding(
                "problem" if annotated else "warning",
                name,
                f"{len(report.no_fps)} videos have no fps in the annotations (e.g. "
                f"{report.no_fps[0]}): their feature counts cannot be checked"
                + (" and their ground truth cannot be placed in the features" if annotated else ""),
            )
        )
    return found


def _width_findings(widths: Mapping[str, int]) -> list[Finding]:
    if not widths:
        return []
    counts = Counter(widths.values())
    width, _ = counts.most_common(1)[0]
    odd = [video_id for video_id, d in widths.items() if d != width]
    if not odd:
        return [Finding("ok", None, f"feature width D = {width} in all {len(widths)} readable videos")]
    return [
        Finding(
            "problem",
            None,
            f"feature widths differ: {len(widths) - len(odd)} videos have D = {width}, "
            f"{len(odd)} others (e.g. {odd[0]}: D = {widths[odd[0]]})",
        )
    ]

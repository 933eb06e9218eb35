"""Detection / proposal results: the ActivityNet results JSON and the THUMOS14 text layout.

ActivityNet layout::

    {"version": "VERSION 1.3",
     "results": {"<video_id>": [{"label": "Diving", "score": 0.93, "segment": [12.1, 15.0]}, ...]},
     "external_data": {}}

THUMOS14 layout (the kit's detection file): one detection per line,
``video_name t_start t_end class score``, whitespace separated, the class given by name or by its
THUMOS id (``detclasslist.txt``; pass ``class_ids``). A ``.mp4`` suffix on video names is dropped.
A class written as a number that is not a known class id is a malformed line (the ids are fixed
by the class list), an error naming the line.

Times are seconds. The input order is kept (videos in order of first appearance, detections of a
video in file order): the official evaluators build their tables in this order and the tie rules
start from it. Labels that are not class names are kept as written, so the evaluators can count
and report them. For proposals (``require_labels=False``) labels are ignored, whatever they hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rc3d_af.data.annotations import finite_number, normalize_video_id
from rc3d_af.errors import InputError

__all__ = ["Results", "VideoDetections", "load_results", "save_results_json", "save_results_txt"]


@dataclass
class VideoDetections:
    """Detections of one video: ``segments`` (N, 2) float64 seconds, ``scores`` (N,) float64."""

    segments: np.ndarray
    scores: np.ndarray
    labels: list[str]

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Results:
    """Per-video detections (or proposals: labels may then be empty strings)."""

    videos: dict[str, VideoDetections] = field(default_factory=dict)
    source: str = "results"  # named in error messages

    def add(self, video_id: str, segments: Any, scores: Any, labels: Iterable[str]) -> None:
        """Append detections to a video, checking shapes and values (finite, start <= end)."""
        segments = np.asarray(segments, dtype=np.float64).reshape(-1, 2)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        labels = [str(label) for label in labels]
        where = f"{self.source}: video {video_id!r}"
        if not len(segments) == len(scores) == len(labels):
            raise InputError(f"{where}: {len(segments)} segments, {len(scores)} scores, {len(labels)} labels")
        _check_values(segments, scores, where)
        old = self.videos.get(video_id)
        if old is not None:
            segments = np.concatenate([old.segments, segments])
            scores = np.concatenate([old.scores, scores])
            labels = old.labels + labels
        self.videos[video_id] = VideoDetections(segments, scores, labels)

    @property
    def num_predictions(self) -> int:
        return sum(len(video) for video in self.videos.values())


def _check_values(segments: np.ndarray, scores: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(segments).all(axis=1) | ~np.isfinite(scores)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}, entry {k}: segment {segments[k].tolist()} / score "
                         f"{scores[k]} is not finite")
    reversed_ = segments[:, 1] < segments[:, 0]
    if reversed_.any():
        k = int(np.flatnonzero(reversed_)[0])
        raise InputError(f"{where}, entry {k}: segment {segments[k].tolist()} ends before "
                         "it starts")


def load_results(
    path: str | Path,
    class_names: Iterable[str] = (),
    *,
    class_ids: Mapping[str, int] | None = None,
    require_labels: bool = True,
) -> Results:
    """Read an ActivityNet results JSON (``.json``) or a THUMOS14 detection text file.

    Args:
        class_names: the ground truth's classes (used to tell class names from THUMOS ids in text).
        class_ids: ``name -> THUMOS id``, to read text files that give classes by id.
        require_labels: False for proposals: labels are not read (every label becomes ``""``).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read results: {exc}") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _parse_json(path, text, require_labels)
    by_id = {value: name for name, value in (class_ids or {}).items()}
    return _parse_text(path, text, set(class_names), by_id, require_labels)


def _parse_json(path: Path, text: str, require_labels: bool) -> Results:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict):
        raise InputError(f"{path}: expected an object with a 'results' object (ActivityNet layout)")
    results = Results(source=str(path))
    for vid, entries in document["results"].items():
        where = f"{path}: results[{vid!r}]"
        if not isinstance(entries, list):
            raise InputError(f"{where}: expected a list of detections")
        segments, scores, labels = [], [], []
        for k, entry in enumerate(entries):
            item = f"{where}[{k}]"
            if not isinstance(entry, dict):
                raise InputError(f"{item}: expected an object with 'segment', 'score' and 'label'")
            segment = entry.get("segment")
            if not isinstance(segment, list) or len(segment) != 2:
                raise InputError(f"{item}.segment: expected [t_start, t_end], got {segment!r}")
            segments.append(_segment(segment[0], segment[1], f"{item}.segment"))
            scores.append(finite_number(entry.get("score"), f"{item}.score"))
            labels.append(_label(entry.get("label"), item, require_labels))
        results.add(normalize_video_id(vid), segments, scores, labels)
    return results


def _parse_text(
    path: Path, text: str, names: set[str], by_id: dict[int, str], require_labels: bool
) -> Results:
    rows: dict[str, tuple[list, list, list]] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {line_no}"
        if len(fields) != 5:
            raise InputError(f"{where}: expected 'video t_start t_end class score', got {line!r}")
        segments, scores, labels = rows.setdefault(normalize_video_id(fields[0]), ([], [], []))
        segments.append(_segment(fields[1], fields[2], where))
        scores.append(finite_number(fields[4], f"{where}, score"))
        labels.append(_text_class(fields[3], names, by_id, where) if require_labels else "")
    results = Results(source=str(path))
    for vid, (segments, scores, labels) in rows.items():
        results.add(vid, segments, scores, labels)
    return results


def _segment(start: Any, end: Any, where: str) -> list[float]:
    segment = [finite_number(start, f"{where}, t_start"), finite_number(end, f"{where}, t_end")]
    if segment[1] < segment[0]:
        raise InputError(f"{where}: segment {segment} ends before it starts")
    return segment


def _text_class(field: str, names: set[str], by_id: dict[int, str], where: str) -> str:
    """The class name of a text line's class field: a name, or a known class id."""
    if field in names or not field.lstrip("+-").isdigit():
        return field  # a name (unknown names are counted and reported by the evaluators)
    if int(field) not in by_id:
        known = ", ".join(f"{i}={name}" for i, name in list(by_id.items())[:5])
        known = f"the known ids are {known}{', ...' if len(by_id) > 5 else ''}" if by_id else (
            "the ground truth defines no class ids (detclasslist.txt or 'class_ids')")
        raise InputError(f"{where}: class {field} is a number but not a class id; {known}")
    return by_id[int(field)]


def _label(value: Any, where: str, required: bool) -> str:
    if not required:
        return ""  # proposals: labels play no part
    if not isinstance(value, str) or not value:
        raise InputError(f"{where}: expected a class-name string 'label', got {value!r}")
    return value


def save_results_json(results: Results, path: str | Path, *, labels: bool = True) -> None:
    """Write the ActivityNet results layout (videos and detections in their stored order); without
    ``labels``, entries have only ``segment`` and ``score`` (a proposals file)."""

    def entry(segment: np.ndarray, score: float, label: str) -> dict[str, Any]:
        item = {"score": float(score), "segment": [float(segment[0]), float(segment[1])]}
        return {"label": label, **item} if labels else item

    document = {
        "version": "VERSION 1.3",
        "results": {
            vid: [entry(*row) for row in zip(video.segments, video.scores, video.labels, strict=True)]
            for vid, video in results.videos.items()
        },
        "external_data": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) + "\n")


def save_results_txt(results: Results, path: str | Path, class_ids: Mapping[str, int] | None = None) -> None:
    """Write the THUMOS14 kit layout; classes as ids when ``class_ids`` is given, else by name."""
    lines = []
    for vid, video in results.videos.items():
        for (start, end), score, label in zip(video.segments, video.scores, video.labels, strict=True):
            name = str(class_ids[label]) if class_ids and label in class_ids else label
            lines.append(f"{vid}\t{start:.6f}\t{end:.6f}\t{name}\t{score:.10g}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if lines else ""))

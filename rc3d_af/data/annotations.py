"""Ground-truth annotations: the ActivityNet JSON layout and the official THUMOS14 folder.

Both layouts load into one in-memory form, :class:`AnnotationSet`. All times are in **seconds**.

ActivityNet JSON layout (what :func:`save_annotations_json` writes)::

    {"classes": ["BaseballPitch", ...],            # optional; class id = position in the list
     "class_ids": {"BaseballPitch": 7, ...},       # optional; source ids (THUMOS ids)
     "database": {"<video_id>": {"subset": "validation", "duration": 33.8, "fps": 30.0,
                                 "annotations": [{"label": "BaseballPitch", "segment": [1.2, 3.4]}],
                                 "ambiguous": [[5.0, 6.0]]}}}

``fps`` and ``ambiguous`` are optional. Without ``classes`` the class ids follow the label names
sorted alphabetically (over all subsets, so ids do not depend on the subset evaluated).

THUMOS14 folder (the evaluation kit's layout): ``<Class>_<split>.txt`` files with lines
``video_name t_start t_end``, ``Ambiguous_<split>.txt`` and ``detclasslist.txt`` (``id name`` per
line; it fixes the class order and keeps the THUMOS ids). The split ``val`` becomes the subset
``"validation"`` and ``test`` the subset ``"test"``. Durations and per-video fps come from a
video-info CSV (``thumos14_video_info.csv``: columns ``video``, ``duration_sec`` and ``fps``),
passed as ``video_info`` or found in the folder or its parent. The fps is never assumed.

BSN's ActivityNet file (``anet_anno_action.json``: ``{video: {duration_second, annotations}}``)
is read too, with ``video_info`` its ``video_info_new.csv``, which gives each video's subset and fps.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from rc3d_af.errors import InputError

__all__ = [
    "AnnotationSet",
    "Instance",
    "VideoAnnotation",
    "load_annotations",
    "load_video_info",
    "normalize_video_id",
    "save_annotations_json",
]

# THUMOS14 file-name split suffix -> subset name.
THUMOS_SPLITS = {"val": "validation", "test": "test"}
VIDEO_INFO_NAME = "thumos14_video_info.csv"
_DURATION_COLUMNS = ("duration_sec", "duration", "seconds")


@dataclass(frozen=True)
class Instance:
    """One ground-truth action instance; ``start``/``end`` in seconds."""

    label: str
    start: float
    end: float


@dataclass
class VideoAnnotation:
    """All annotations of one video (seconds)."""

    video_id: str
    subset: str
    duration: float
    fps: float | None
    instances: list[Instance] = field(default_factory=list)
    ambiguous: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class AnnotationSet:
    """Videos plus the class list; ``class_names[i]`` is the class with id ``i``.

    ``class_ids`` optionally keeps the ids the source used for the classes (the THUMOS ids of
    ``detclasslist.txt``), so that results naming classes by those ids can be read.
    """

    videos: dict[str, VideoAnnotation]
    class_names: list[str]
    class_ids: dict[str, int] = field(default_factory=dict)

    def subset(self, name: str) -> AnnotationSet:
        """The videos of one subset; class names and ids are kept unchanged."""
        videos = {vid: video for vid, video in self.videos.items() if video.subset == name}
        if not videos:
            available = sorted({video.subset for video in self.videos.values()})
            raise InputError(f"subset {name!r}: no video has it; available subsets: {available}")
        return replace(self, videos=videos)

    def class_index(self, label: str) -> int:
        """The class id (0..C-1) of ``label``."""
        try:
            return self._index[label]
        except KeyError:
            raise InputError(f"label {label!r}: not one of the {len(self.class_names)} classes") from None

    @cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_instances(self) -> int:
        return sum(len(video.instances) for video in self.videos.values())


def normalize_video_id(name: str) -> str:
    """Video name as used for matching: surrounding space and a ``.mp4`` suffix removed."""
    name = name.strip()
    return name[:-4] if name.endswith(".mp4") else name


def load_annotations(
    path: str | Path, *, video_info: str | Path | Mapping[str, tuple[float, float | None]] | None = None
) -> AnnotationSet:
    """Load an ActivityNet-layout JSON file, a THUMOS14 annotation folder or BSN's ActivityNet file.

    Args:
        path: a ``.json`` file or a folder of ``<Class>_<split>.txt`` files.
        video_info: CSV path (see :func:`load_video_info`) or a mapping ``video -> (duration_s, fps)``.
            For JSON files it fills a missing ``duration``/``fps``; for a THUMOS14 folder it is
            required (found beside the folder when not given).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such annotation file or folder")
    info = load_video_info(video_info) if isinstance(video_info, (str, Path)) else video_info
    if path.is_dir():
        return _load_thumos_folder(path, info)
    document = _read_json(path)
    if "database" not in document and _is_bsn_layout(document):
        if not isinstance(video_info, (str, Path)):
            raise InputError(f"{path}: BSN layout (videos with 'duration_second', no 'database'): pass "
                             "video_info, the CSV with video, subset and fps columns (video_info_new.csv)")
        document = _bsn_to_database(path, document, Path(video_info))
    return _parse_json(path, document, info)


def load_video_info(path: str | Path) -> dict[str, tuple[float, float | None]]:
    """Read ``video -> (duration in seconds, fps or None)`` from a CSV with a header row.

    Columns: ``video``; the duration in ``duration_sec``, ``duration`` or ``seconds``; ``fps``
    optional (an empty cell means unknown).
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise InputError(f"{path}: cannot read video info: {exc}") from None
    header = set(rows[0]) if rows else set()
    duration_key = next((key for key in _DURATION_COLUMNS if key in header), None)
    if "video" not in header or duration_key is None:
        raise InputError(f"{path}: expected a header with 'video' and one of {_DURATION_COLUMNS}")
    info: dict[str, tuple[float, float | None]] = {}
    for line, row in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        duration = finite_number(row[duration_key], f"{where}, {duration_key}")
        fps_text = (row.get("fps") or "").strip()
        fps = finite_number(fps_text, f"{where}, fps") if fps_text else None
        if duration <= 0 or (fps is not None and fps <= 0):
            raise InputError(f"{where}: duration and fps must be positive")
        info[normalize_video_id(row["video"])] = (duration, fps)
    return info


def save_annotations_json(annotations: AnnotationSet, path: str | Path) -> None:
    """Write the ActivityNet JSON layout, with ``classes`` so class ids survive a round trip."""
    database = {}
    for vid, video in annotations.videos.items():
        entry: dict[str, Any] = {"subset": video.subset, "duration": video.duration}
        if video.fps is not None:
            entry["fps"] = video.fps
        entry["annotations"] = [
            {"label": inst.label, "segment": [inst.start, inst.end]} for inst in video.instances
        ]
        if video.ambiguous:
            entry["ambiguous"] = [list(interval) for interval in video.ambiguous]
        database[vid] = entry
    document: dict[str, Any] = {"classes": list(annotations.class_names)}
    if annotations.class_ids:
        document["class_ids"] = dict(annotations.class_ids)
    document["database"] = database
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


# ----------------------------------------------------------------------------------------------
# ActivityNet JSON
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file: {exc}") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object with a 'database' object (ActivityNet layout)")
    return document


def _is_bsn_layout(document: dict) -> bool:
    """BSN's ``anet_anno_action.json``: ``{video: {duration_second, annotations, ...}}``."""
    first = next(iter(document.values()), None)
    return isinstance(first, dict) and "duration_second" in first and "annotations" in first


def _bsn_to_database(path: Path, document: dict, video_info: Path) -> dict:
    """The BSN layout as an ActivityNet ``database``; subset and fps come from the CSV."""
    try:
        with video_info.open(newline="") as handle:
            rows = {normalize_video_id(row["video"]): row for row in csv.DictReader(handle)}
    except (OSError, KeyError) as exc:
        raise InputError(f"{video_info}: cannot read a CSV with a 'video' column: {exc}") from None
    database = {}
    for vid, entry in document.items():
        row = rows.get(normalize_video_id(vid))
        if row is None or not row.get("subset"):
            raise InputError(f"{video_info}: no subset for video {vid!r} of {path}")
        if not isinstance(entry, dict):
            raise InputError(f"{path}: [{vid!r}]: expected an object")
        database[vid] = {"subset": row["subset"], "duration": entry.get("duration_second"),
                         "annotations": entry.get("annotations", [])}
        if row.get("fps"):
            database[vid]["fps"] = row["fps"]
    return {"database": database}


def _parse_json(
    path: Path, document: dict, info: Mapping[str, tuple[float, float | None]] | None
) -> AnnotationSet:
    if not isinstance(document.get("database"), dict):
        raise InputError(f"{path}: expected a JSON object with a 'database' object (ActivityNet layout)")
    videos = {}
    for vid, entry in document["database"].items():
        video = _parse_json_video(path, normalize_video_id(vid), entry, info)
        if video.video_id in videos:
            raise InputError(f"{path}: database entry {vid!r}: video listed twice")
        videos[video.video_id] = video
    labels = {inst.label for video in videos.values() for inst in video.instances}
    class_names = _json_class_names(path, document, labels)
    class_ids = _json_class_ids(path, document, class_names)
    return AnnotationSet(videos=videos, class_names=class_names, class_ids=class_ids)


def _parse_json_video(
    path: Path, vid: str, entry: Any, info: Mapping[str, tuple[float, float | None]] | None
) -> VideoAnnotation:
    where = f"{path}: database[{vid!r}]"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object")
    subset = entry.get("subset")
    if not isinstance(subset, str):
        raise InputError(f"{where}.subset: expected a string, got {subset!r}")
    known_duration, known_fps = (info or {}).get(vid, (None, None))
    duration = entry.get("duration", known_duration)
    if duration is None:
        raise InputError(f"{where}.duration: missing (and no video info gives it)")
    duration = finite_number(duration, f"{where}.duration")
    fps = entry.get("fps", known_fps)
    fps = None if fps is None else finite_number(fps, f"{where}.fps")
    if duration <= 0 or (fps is not None and fps <= 0):
        raise InputError(f"{where}: duration and fps must be positive, got {duration}, {fps}")
    if "annotations" not in entry:
        raise InputError(f"{where}: no 'annotations' field (a video without instances has an empty "
                         "list, \"annotations\": [])")
    raw = entry["annotations"]
    if not isinstance(raw, list):
        raise InputError(f"{where}.annotations: expected a list")
    instances = []
    for k, ann in enumerate(raw):
        item = f"{where}.annotations[{k}]"
        if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
            raise InputError(f"{item}: expected an object with a string 'label'")
        start, end = _segment(ann.get("segment"), f"{item}.segment")
        instances.append(Instance(ann["label"], start, end))
    ambiguous = [_segment(seg, f"{where}.ambiguous[{k}]") for k, seg in enumerate(entry.get("ambiguous", []))]
    return VideoAnnotation(vid, subset, duration, fps, instances, ambiguous)


def _json_class_names(path: Path, document: dict, labels: set[str]) -> list[str]:
    if "classes" not in document:
        return sorted(labels)
    names = document["classes"]
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InputError(f"{path}: 'classes' must be a list of class-name strings")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: 'classes' lists a name twice")
    unknown = sorted(labels - set(names))
    if unknown:
        raise InputError(f"{path}: labels {unknown[:5]} are not in the 'classes' list")
    return list(names)


def _json_class_ids(path: Path, document: dict, class_names: list[str]) -> dict[str, int]:
    ids = document.get("class_ids", {})
    if not isinstance(ids, dict) or not all(
        name in class_names and isinstance(value, int) for name, value in ids.items()
    ):
        raise InputError(f"{path}: 'class_ids' must map class names of 'classes' to integers")
    if len(set(ids.values())) != len(ids):
        raise InputError(f"{path}: 'class_ids' gives one id to two classes")
    return dict(ids)


# ----------------------------------------------------------------------------------------------
# THUMOS14 folder
# ----------------------------------------------------------------------------------------------

_FILE_PATTERN = re.compile(r"^(?P<name>.+)_(?P<split>val|test)\.txt$")


def _load_thumos_folder(
    folder: Path, info: Mapping[str, tuple[float, float | None]] | None
) -> AnnotationSet:
    files: dict[str, dict[str, Path]] = {}  # split -> class name (or Ambiguous) -> file
    for file in sorted(folder.iterdir()):
        match = _FILE_PATTERN.match(file.name)
        if match:
            files.setdefault(match["split"], {})[match["name"]] = file
    if not files:
        raise InputError(f"{folder}: no <Class>_val.txt or <Class>_test.txt annotation files")
    class_ids = _read_class_list(folder / "detclasslist.txt")
    if class_ids:
        class_names = list(class_ids)
    else:
        class_names = sorted({name for split in files.values() for name in split} - {"Ambiguous"})
    if info is None:
        info = _find_video_info(folder)
    videos: dict[str, VideoAnnotation] = {}
    for split, by_name in files.items():
        unknown = sorted(set(by_name) - set(class_names) - {"Ambiguous"})
        if unknown:
            raise InputError(f"{folder}: files for classes {unknown} that detclasslist.txt does not list")
        subset = THUMOS_SPLITS[split]
        for name in [*class_names, "Ambiguous"]:
            if name not in by_name:
                continue
            for vid, start, end in _read_thumos_file(by_name[name]):
                video = videos.get(vid)
                if video is None:
                    video = videos[vid] = _new_thumos_video(vid, subset, info, by_name[name])
                elif video.subset != subset:
                    raise InputError(f"{by_name[name]}: video {vid} also appears in split {video.subset!r}")
                if name == "Ambiguous":
                    video.ambiguous.append((start, end))
                else:
                    video.instances.append(Instance(name, start, end))
    return AnnotationSet(videos=videos, class_names=class_names, class_ids=class_ids)


def _read_class_list(path: Path) -> dict[str, int]:
    """``detclasslist.txt`` (``id name`` per line) -> ordered ``name -> id``; {} if absent."""
    if not path.exists():
        return {}
    ids: dict[str, int] = {}
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            raise InputError(f"{path}, line {line_no}: expected 'class_id ClassName', got {line!r}")
        if fields[1] in ids or int(fields[0]) in ids.values():
            raise InputError(f"{path}, line {line_no}: class {fields[1]} or id {fields[0]} listed twice")
        ids[fields[1]] = int(fields[0])
    return ids


def _read_thumos_file(path: Path) -> Iterable[tuple[str, float, float]]:
    """Rows ``video t_start t_end`` of one kit annotation file, in file order."""
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {line_no}"
        if len(fields) != 3:
            raise InputError(f"{where}: expected 'video t_start t_end', got {line!r}")
        start, end = _segment([finite_number(fields[1], where), finite_number(fields[2], where)], where)
        yield normalize_video_id(fields[0]), start, end


def _find_video_info(folder: Path) -> dict[str, tuple[float, float | None]]:
    for candidate in (folder / VIDEO_INFO_NAME, folder.parent / VIDEO_INFO_NAME):
        if candidate.exists():
            return load_video_info(candidate)
    raise InputError(
        f"{folder}: durations and fps of THUMOS14 videos are unknown: pass video_info "
        f"(--video-info), a CSV with columns video,duration_sec,fps such as {VIDEO_INFO_NAME}; "
        "none was found in the folder or its parent (fps is never assumed)"
    )


def _new_thumos_video(
    vid: str, subset: str, info: Mapping[str, tuple[float, float | None]], source: Path
) -> VideoAnnotation:
    if vid not in info:
        raise InputError(f"{source}: video {vid}: its duration and fps are not in the video info")
    duration, fps = info[vid]
    return VideoAnnotation(vid, subset, float(duration), None if fps is None else float(fps))


# ----------------------------------------------------------------------------------------------
# Field checks
# ----------------------------------------------------------------------------------------------


def finite_number(value: Any, where: str) -> float:
    """``value`` as a finite float; otherwise an InputError naming ``where`` (file, entry, field)."""
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{where}: expected a finite number, got {value!r}")
    return number


def _segment(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"{where}: expected [t_start, t_end] in seconds, got {value!r}")
    start, end = finite_number(value[0], where), finite_number(value[1], where)
    if end < start:
        raise InputError(f"{where}: segment [{start}, {end}] ends before it starts")
    return start, end

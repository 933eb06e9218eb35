"""Annotation loading: ActivityNet JSON, the THUMOS14 kit folder, round trips and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rc3d_af.data.annotations import (
    AnnotationSet,
    Instance,
    VideoAnnotation,
    load_annotations,
    load_video_info,
    save_annotations_json,
)
from rc3d_af.errors import InputError
from shared_data import THUMOS14

SHARED = THUMOS14  # the real kit annotations (read-only)


def _write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def _small_document() -> dict:
    return {
        "database": {
            "v2": {"subset": "validation", "duration": 10.0, "fps": 25,
                   "annotations": [{"label": "Jump", "segment": [1.0, 2.5]}]},
            "v1": {"subset": "training", "duration": 20.0,
                   "annotations": [{"label": "Run", "segment": [0.0, 4.0]},
                                   {"label": "Jump", "segment": [5.0, 5.0]}]},
        }
    }


def test_json_layout_loads_with_sorted_classes(tmp_path: Path) -> None:
    annotations = load_annotations(_write_json(tmp_path / "a.json", _small_document()))
    assert annotations.class_names == ["Jump", "Run"]
    assert annotations.class_index("Run") == 1
    v1 = annotations.videos["v1"]
    assert v1.fps is None and v1.duration == 20.0 and v1.subset == "training"
    assert v1.instances == [Instance("Run", 0.0, 4.0), Instance("Jump", 5.0, 5.0)]
    assert annotations.videos["v2"].fps == 25.0
    validation = annotations.subset("validation")
    assert list(validation.videos) == ["v2"] and validation.class_names == ["Jump", "Run"]


def test_json_round_trip_keeps_class_order_and_ambiguous(tmp_path: Path) -> None:
    original = AnnotationSet(
        videos={"a": VideoAnnotation("a", "test", 12.5, 29.97, [Instance("Z", 1.0, 2.0)], [(3.0, 4.0)])},
        class_names=["Z", "A"],
        class_ids={"Z": 9, "A": 3},
    )
    save_annotations_json(original, tmp_path / "out.json")
    assert load_annotations(tmp_path / "out.json") == original


def test_video_info_fills_missing_fps_and_duration(tmp_path: Path) -> None:
    document = _small_document()
    del document["database"]["v1"]["duration"]
    info = tmp_path / "info.csv"
    info.write_text("video,seconds,fps\nv1,20.5,24\n")
    annotations = load_annotations(_write_json(tmp_path / "a.json", document), video_info=info)
    assert (annotations.videos["v1"].duration, annotations.videos["v1"].fps) == (20.5, 24.0)
    assert load_video_info(info) == {"v1": (20.5, 24.0)}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["database"]["v1"].pop("subset"), r"database\['v1'\]\.subset"),
        (lambda d: d["database"]["v1"].pop("duration"), r"v1'\]\.duration: missing"),
        (lambda d: d["database"]["v1"]["annotations"][0].update(segment=[4.0, 1.0]), "ends before"),
        (lambda d: d["database"]["v1"]["annotations"][0].update(segment=[float("nan"), 1.0]), "finite"),
        (lambda d: d["database"]["v1"]["annotations"][0].update(segment=[1.0]), r"annotations\[0\]"),
        (lambda d: d["database"]["v1"]["annotations"][0].pop("label"), "label"),
        (lambda d: d.update(classes=["Run"]), r"\['Jump'\] are not in the 'classes'"),
        (lambda d: d.pop("database"), "'database'"),
    ],
)
def test_json_bad_input_names_the_entry(tmp_path: Path, mutate, expected: str) -> None:
    document = _small_document()
    mutate(document)
    path = _write_json(tmp_path / "bad.json", document)
    with pytest.raises(InputError, match=expected) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_malformed_json_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match=r"broken\.json: not a readable JSON"):
        load_annotations(tmp_path / "broken.json")
    with pytest.raises(InputError, match="no such annotation"):
        load_annotations(tmp_path / "absent.json")
    annotations = load_annotations(_write_json(tmp_path / "a.json", _small_document()))
    with pytest.raises(InputError, match="subset 'testing'"):
        annotations.subset("testing")
    with pytest.raises(InputError, match="'Swim'"):
        annotations.class_index("Swim")


def _write_thumos_folder(folder: Path, info: bool = True) -> Path:
    folder.mkdir()
    (folder / "detclasslist.txt").write_text("12 Billiards\n7 BaseballPitch\n")
    (folder / "BaseballPitch_test.txt").write_text("video_test_2  5.0 6.0\nvideo_test_1.mp4  1.0 2.0\n")
    (folder / "Billiards_test.txt").write_text("video_test_1  3.0 4.5\n")
    (folder / "Ambiguous_test.txt").write_text("video_test_3  0.0 1.0\nvideo_test_1 7 8\n")
    if info:
        (folder / "thumos14_video_info.csv").write_text(
            "video,subset,duration_sec,fps\nvideo_test_1,test,30,25\nvideo_test_2,test,40,30\n"
            "video_test_3,test,50,24\n"
        )
    return folder


def test_thumos_folder_layout(tmp_path: Path) -> None:
    annotations = load_annotations(_write_thumos_folder(tmp_path / "ann"))
    assert annotations.class_names == ["Billiards", "BaseballPitch"]  # detclasslist order
    assert annotations.class_ids == {"Billiards": 12, "BaseballPitch": 7}
    video = annotations.videos["video_test_1"]  # ".mp4" stripped
    assert video.subset == "test" and video.fps == 25.0 and video.duration == 30.0
    assert video.instances == [Instance("Billiards", 3.0, 4.5), Instance("BaseballPitch", 1.0, 2.0)]
    assert video.ambiguous == [(7.0, 8.0)]
    only_ambiguous = annotations.videos["video_test_3"]
    assert only_ambiguous.instances == [] and only_ambiguous.fps == 24.0


def test_thumos_folder_without_video_info_says_so(tmp_path: Path) -> None:
    folder = _write_thumos_folder(tmp_path / "ann", info=False)
    with pytest.raises(InputError, match="fps is never assumed"):
        load_annotations(folder)
    info = tmp_path / "other.csv"
    info.write_text("video,duration_sec,fps\nvideo_test_1,30,25\n")
    with pytest.raises(InputError, match="video_test_2: its duration and fps are not in the video info"):
        load_annotations(folder, video_info=info)


def test_thumos_folder_bad_line(tmp_path: Path) -> None:
    folder = _write_thumos_folder(tmp_path / "ann")
    (folder / "Billiards_test.txt").write_text("video_test_1  3.0\n")
    with pytest.raises(InputError, match=r"Billiards_test.txt, line 1: expected 'video t_start t_end'"):
        load_annotations(folder)


def test_real_thumos14_folders() -> None:
    test = load_annotations(SHARED / "annotation_test")
    assert len(test.videos) == 213 and test.num_instances == 3358
    assert sum(len(v.ambiguous) for v in test.videos.values()) == 99
    assert {v.subset for v in test.videos.values()} == {"test"}
    assert test.videos["video_test_0001207"].fps == 24.0
    assert test.class_ids["VolleyballSpiking"] == 97 and len(test.class_names) == 20
    val = load_annotations(SHARED / "annotation_val")
    assert len(val.videos) == 200 and val.num_instances == 3007
    assert {v.subset for v in val.videos.values()} == {"validation"}
    assert val.videos["video_validation_0000411"].fps == 24.0
    assert val.videos["video_validation_0000311"].fps == 25.0


def test_bsn_layout_takes_subset_and_fps_from_the_csv(tmp_path: Path) -> None:
    document = {"v_a": {"duration_second": 12.5, "duration_frame": 375, "feature_frame": 368,
                        "annotations": [{"segment": [1.0, 4.0], "label": "Ballet"}]},
                "v_b": {"duration_second": 8.0, "annotations": []}}
    path = _write_json(tmp_path / "anet_anno_action.json", document)
    info = tmp_path / "video_info_new.csv"
    info.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
                    "v_a,375,12.5,30.0,30.0,training,368\nv_b,200,8.0,25.0,25.0,testing,192\n")
    annotations = load_annotations(path, video_info=info)
    expected = VideoAnnotation("v_a", "training", 12.5, 30.0, [Instance("Ballet", 1.0, 4.0)])
    assert annotations.videos["v_a"] == expected
    assert annotations.videos["v_b"].subset == "testing" and annotations.class_names == ["Ballet"]
    with pytest.raises(InputError, match="BSN layout"):
        load_annotations(path)
    info.write_text("video,seconds,fps,subset\nv_a,12.5,30,training\n")
    with pytest.raises(InputError, match="no subset for video 'v_b'"):
        load_annotations(path, video_info=info)

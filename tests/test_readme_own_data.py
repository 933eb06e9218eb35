"""README's "Your own data" section, run as written: its JSON, its numbers, its config and its commands."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from own_data import TINY, write_dataset
from rc3d_af.cli import main
from rc3d_af.data.annotations import load_annotations
from rc3d_af.data.features import FeatureSpec

README = Path(__file__).resolve().parents[1] / "README.md"


def _section() -> str:
    text = README.read_text()
    start = text.index("## Your own data")
    return text[start : text.index("\n## ", start + 1)]


def _block(after: str, language: str) -> str:
    """The first ```language code block after the text ``after`` in the section."""
    section = _section()
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(section, section.index(after))
    assert match, f"no {language} block after {after!r}"
    return match.group(1)


def test_the_annotation_example_loads_with_the_documented_class_ids(tmp_path: Path) -> None:
    path = tmp_path / "example.json"
    path.write_text(_block("**Annotations**", "json"))
    annotations = load_annotations(path)
    assert annotations.class_names == ["jump", "run"]  # id = position in "classes"
    assert annotations.videos["video_0001"].fps == 30.0
    document = json.loads(path.read_text())
    del document["classes"]
    path.write_text(json.dumps(document))
    assert load_annotations(path).class_names == ["jump", "run"]  # sorted label names without it


def test_the_worked_example_numbers() -> None:
    spec = FeatureSpec(stride_frames=4, clip_frames=16)
    section = _section()
    assert spec.index_to_seconds(100, 30.0) == pytest.approx(13.6) and "13.6" in section
    assert spec.seconds_to_index(3.2, 30.0) == pytest.approx(22.0) and "22.0" in section
    assert spec.seconds_to_index(5.9, 30.0) == pytest.approx(42.25) and "42.25" in section
    assert spec.num_features(62.4, 30.0) == 465 and "= 465" in section


def test_the_four_commands_run_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "my_data")
    (tmp_path / "my_config.yaml").write_text(_block("<!-- own-data-config -->", "yaml"))
    commands = [line for line in _block("<!-- own-data-commands -->", "bash").splitlines() if line.strip()]
    assert [shlex.split(line)[1] for line in commands] == ["check-data", "train", "test", "detect"]
    outputs = {}
    for line in commands:
        argv = shlex.split(line)
        assert argv[0] == "rc3d-af"
        extra = [*TINY, "--no-progress"] if argv[1] == "train" else []
        assert main(argv[1:] + extra) == 0, line
        outputs[argv[1]] = capsys.readouterr()
    assert "no problem" in outputs["check-data"].out
    run = tmp_path / "runs" / "my_config"
    assert {"config.yaml", "train.log", "metrics.jsonl", "last.pt"} <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "test_validation" / "metrics.json").read_text())
    assert metrics["tiou_thresholds"] == [0.3, 0.5, 0.7] and metrics["videos"] == 2
    detections = json.loads(outputs["detect"].out)
    assert detections["video_id"] == "video_0002" and detections["duration"] == 48.0
    assert "note: no duration" not in outputs["detect"].err  # --duration given: the length was checked

"""The run config: YAML round trip, --set overrides, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rc3d_af.config import (
    Config,
    DataConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from rc3d_af.errors import InputError
from rc3d_af.models import ModelConfig

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
MINIMAL = {"data": {"annotations": "a.json", "features": "feats"}}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_configs_exist_and_round_trip(tmp_path: Path) -> None:
    names = {p.name for p in CONFIGS}
    assert {"a2net_thumos14_i3d.yaml", "a2net_anet13_i3d.yaml", "a2net_synthetic.yaml"} <= names
    for path in CONFIGS:
        cfg = load_config(path)
        save_config(cfg, tmp_path / path.name)
        again = load_config(tmp_path / path.name)
        assert again == cfg, path.name
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_paper_settings_in_the_thumos14_config() -> None:
    cfg = load_config(next(p for p in CONFIGS if p.name == "a2net_thumos14_i3d.yaml"))
    assert cfg.model == ModelConfig(
        variant="a2net", branch_weight=0.5, nms_iou=0.2, nms_per_class=200, top_k=200
    )
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs) == (1e-4, 32, 40)
    assert (cfg.train.lr_milestones, cfg.train.lr_gamma) == ((30,), 0.1)
    assert (cfg.data.window_size, cfg.data.train_stride, cfg.data.test_stride) == (128, 32, 64)
    assert cfg.data.streams == ("rgb", "flow")
    assert cfg.data.train_subset == "validation"


def test_defaults_and_types_after_loading(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, {**MINIMAL, "train": {"lr": "1e-3", "lr_milestones": [3, 5]}}))
    assert cfg.train.lr == pytest.approx(1e-3)  # written unquoted: PyYAML alone would read a string
    assert cfg.train.lr_milestones == (3, 5)  # lists become tuples
    assert cfg.data == DataConfig("a.json", "feats")
    assert cfg.model == ModelConfig()


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL)
    cfg = load_config(
        path,
        [
            "train.epochs=3",
            "model.variant=anchor_free",
            "test.tiou_thresholds=[0.3, 0.5]",
            "data.video_info=null",
        ],
    )
    assert cfg.train.epochs == 3
    assert cfg.model.variant == "anchor_free"
    assert cfg.test.tiou_thresholds == (0.3, 0.5)
    assert cfg.data.video_info is None
    with pytest.raises(InputError, match=r"train\.epochs: expected an integer, got 'three'"):
        load_config(path, ["train.epochs=three"])
    with pytest.raises(InputError, match=r"KEY\.PATH=VALUE"):
        load_config(path, ["train.epochs"])
    with pytest.raises(InputError, match=r"train\.epochs is a value, not a section"):
        apply_overrides({"train": {"epochs": 2}}, ["train.epochs.x=1"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "trian": {}}, r"unknown key trian; valid keys of top level: data, model, train, test"),
        ({"data": {**MINIMAL["data"], "windw_size": 3}}, r"unknown key data\.windw_size"),
        ({**MINIMAL, "model": {"num_level": 3}}, r"model: unknown keys \['num_level'\]"),
        ({"data": {"annotations": "a.json"}}, r"missing required key data\.features"),
        ({**MINIMAL, "train": {"lr": -1}}, r"train\.lr: expected a positive finite number"),
        ({**MINIMAL, "train": {"amp": "yes"}}, r"train\.amp: expected true or false"),
        ({**MINIMAL, "train": {"device": "gpu"}}, r"train\.device: expected 'auto', 'cpu'"),
        ({**MINIMAL, "train": {"lr_milestones": [5, 3]}}, r"train\.lr_milestones: expected increasing"),
        ({**MINIMAL, "train": {"ema_decay": 1.0}}, r"train\.ema_decay: expected a value in \[0, 1\)"),
        ({**MINIMAL, "data": {**MINIMAL["data"], "windowing": "tiles"}}, r"data\.windowing: expected one of"),
        (
            {**MINIMAL, "test": {"tiou_thresholds": [0.3, "x"]}},
            r"test\.tiou_thresholds\[1\]: expected a number",
        ),
        ({**MINIMAL, "test": {"select_tiou": 0.9}}, r"test\.select_tiou: 0\.9 is not one of tiou_thresholds"),
        ({**MINIMAL, "model": {"nms_iou": 2}}, r"model\.nms_iou: expected a finite number"),
        ({**MINIMAL, "train": [1, 2]}, r"train: expected a mapping, got list"),
        (
            {"data": {**MINIMAL["data"], "window_size": 100}},
            r"data\.window_size: 100 must be a multiple of 2\*\*model\.num_levels = 64",
        ),
    ],
)
def test_errors_name_the_file_and_key_path(tmp_path: Path, data: dict, message: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InputError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unreadable_or_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such config file, nor a packaged config name"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(InputError, match="expected a mapping with sections"):
        load_config(bad)


def test_config_is_plain_data() -> None:
    cfg = config_from_dict(MINIMAL)
    assert isinstance(cfg, Config)
    plain = config_to_dict(cfg)
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain  # only YAML-native types inside
    assert plain["test"]["tiou_thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]

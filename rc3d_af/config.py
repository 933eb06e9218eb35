"""The run configuration: plain YAML mapped onto dataclasses, validated on load.

A config file has four sections, each a dataclass below (``model`` is the model's own
:class:`rc3d_af.models.config.ModelConfig`)::

    data:  {annotations: ..., features: ..., window_size: 128, ...}
    model: {...}
    train: {epochs: 40, batch_size: 32, lr: 1.0e-4, ...}
    test:  {protocol: activitynet, tiou_thresholds: [0.1, ..., 0.7], ...}

Every key is checked against the dataclass fields: an unknown key, a missing required key or a
value of the wrong type raises :class:`rc3d_af.errors.InputError` naming the key path (for
example ``train.lr``) and what was expected. ``--set a.b=value`` overrides are parsed as YAML
scalars/lists and go through the same checks. Numbers are read as YAML 1.2 reads them (``1e-4`` is
a number; PyYAML alone reads it as a string), and a quoted string is never taken for a number.
Relative paths in ``data`` are taken relative to the current working directory (not to the config
file), so a config can be used from the repository root as written and moved with ``--set``.

A config is a file path or the name of a packaged config (``a2net_synthetic``: the files of the
top-level ``configs/`` folder, which installs copy into the package), see :func:`config_path`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rc3d_af.data.checks import LENGTH_TOLERANCE, SEGMENT_SLACK
from rc3d_af.data.features import FeatureSpec
from rc3d_af.errors import InputError
from rc3d_af.evaluation.thresholds import THUMOS14_TIOU
from rc3d_af.models.config import ModelConfig
from rc3d_af.models.rc3d.config import ARCHS as RC3D_ARCHS
from rc3d_af.models.rc3d.config import RC3DConfig

__all__ = [
    "Config",
    "DataConfig",
    "TestConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_path",
    "config_to_dict",
    "load_config",
    "save_config",
]


@dataclass
class DataConfig:
    """Where the features and annotations are and how videos are cut into windows.

    Window sizes and strides are in feature indices (one feature every ``stride_frames`` frames).
    """

    annotations: str  # ActivityNet-layout JSON file or official THUMOS14 annotation folder
    features: str  # folder with <video_id>.npy (or <stream>/<video_id>.npy), each (T, D)
    video_info: str | None = None  # THUMOS14 per-video fps/duration CSV (folder input only)
    streams: tuple[str, ...] = ()  # e.g. ("rgb", "flow"): concatenated along D
    stride_frames: int = 4  # frames between consecutive features
    clip_frames: int = 16  # frames seen by one feature
    train_subset: str = "validation"  # THUMOS14 trains on its validation split
    test_subset: str = "test"
    windowing: Literal["sliding", "rescaled"] = "sliding"  # THUMOS14 / ActivityNet style
    window_size: int = 128  # features per window
    train_stride: int = 32  # 128 frames at stride 4 (reference code)
    test_stride: int = 64  # 256 frames at stride 4 (reference code)
    min_gt_coverage: float = 0.9  # a training window needs a ground truth this much inside it
    # The model's input shape, so that `rc3d-af info` sizes it without the dataset; when the dataset
    # is read, its class count and feature width must agree.
    num_classes: int | None = None  # action classes C (background excluded)
    feature_dim: int | None = None  # feature width D (after concatenating the streams)
    # Checks before any work (rc3d_af.data.checks): a video's feature count T may differ from
    # FeatureSpec.num_features(duration, fps) by max(length_tolerance * that, clip/stride + 1) features;
    # ground truth may end segment_slack seconds after its video (clipped); further is an error
    # unless segments_beyond is "keep" (the official THUMOS14 annotations need it).
    length_tolerance: float = LENGTH_TOLERANCE
    segment_slack: float = SEGMENT_SLACK  # seconds
    segments_beyond: Literal["error", "keep"] = "error"

    def __post_init__(self) -> None:
        _check_positive(self, "stride_frames", "clip_frames", "window_size", "train_stride", "test_stride")
        for name in ("num_classes", "feature_dim"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer or null, got {getattr(self, name)}")
        if not 0.0 <= self.min_gt_coverage < 1.0:
            raise ValueError(f"min_gt_coverage: expected a value in [0, 1), got {self.min_gt_coverage}")
        for name in ("length_tolerance", "segment_slack"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)}")

    @property
    def feature_spec(self) -> FeatureSpec:
        """The feature sampling (the one seconds <-> feature-index mapping)."""
        return FeatureSpec(stride_frames=self.stride_frames, clip_frames=self.clip_frames)


@dataclass
class TrainConfig:
    """Optimisation (A2Net paper: Adam, lr 1e-4, batch 32, 40 epochs, lr x 0.1 at epoch 30)."""

    epochs: int = 40
    batch_size: int = 32
    lr: float = 1.0e-4
    weight_decay: float = 0.0
    # Beyond the paper: an exponential moving average of the weights (torch.optim.swa_utils), updated
    # after every optimizer step with this decay, is what evaluation, test and detect use; 0 = off
    # (the raw weights, as in the paper). 0.999 averages over about the last 1,000 steps.
    ema_decay: float = 0.0
    lr_milestones: tuple[int, ...] = (30,)  # epochs after which lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    # Beyond the paper (whose schedule is "step"): "cosine" decays lr to 0 over train.epochs along a
    # half cosine, step by step (lr_milestones and lr_gamma unused); warmup_epochs > 0 ramps lr up
    # linearly over the first optimizer steps of that many epochs (either schedule).
    lr_schedule: Literal["step", "cosine"] = "step"
    warmup_epochs: float = 0.0
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
    amp: bool = False  # automatic mixed precision: autocast to amp_dtype (training and inference)
    amp_dtype: Literal["float16", "bfloat16"] = "float16"  # float16 (+ grad scaling): CUDA only;
                                                           # bfloat16: CUDA and the CPU
    eval_every: int = 0  # evaluate every N epochs and keep the best checkpoint; 0 = never
    num_workers: int = 0  # DataLoader worker processes
    num_threads: int | None = None  # torch CPU threads; None leaves torch's default
    # CPU training and inference read and write denormal floats (below 1.2e-38) as 0: weight decay
    # leaves many weights there, and x86 CPUs handle them 7-8x slower (engine.inference.
    # denormals_flushed; on the calling thread only). False keeps IEEE arithmetic.
    flush_denormal: bool = True
    optimizer: Literal["adam", "sgd"] = "adam"  # A2Net: Adam; R-C3D.pytorch: SGD with momentum
    momentum: float = 0.9  # SGD only
    log_every: int = 50  # a train.log line every N optimizer steps (besides the per-epoch line); 0 = none
    tensorboard: bool = False  # also log to <run dir>/tensorboard (needs the tensorboard package)

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr: expected a positive finite number, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay: expected >= 0, got {self.weight_decay}")
        if not (0.0 <= self.warmup_epochs <= self.epochs and math.isfinite(self.warmup_epochs)):
            raise ValueError(
                f"warmup_epochs: expected a value in [0, epochs = {self.epochs}], got {self.warmup_epochs}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: expected a value in [0, 1) (0 = off), got {self.ema_decay}")
        if not 0.0 < self.lr_gamma <= 1.0:
            raise ValueError(f"lr_gamma: expected a value in (0, 1], got {self.lr_gamma}")
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(
            m <= 0 for m in self.lr_milestones
        ):
            raise ValueError(f"lr_milestones: expected increasing positive epochs, got {self.lr_milestones}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum}")
        if self.eval_every < 0 or self.num_workers < 0 or self.log_every < 0:
            raise ValueError("eval_every, num_workers and log_every: expected >= 0")
        if self.num_threads is not None and self.num_threads <= 0:
            raise ValueError(f"num_threads: expected a positive integer or null, got {self.num_threads}")
        if not (self.device in ("auto", "cpu", "cuda") or _is_cuda_index(self.device)):
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass
class TestConfig:
    """Inference and evaluation (the evaluation layer's protocols)."""

    protocol: Literal["activitynet", "thumos14"] = "activitynet"
    tiou_thresholds: tuple[float, ...] = THUMOS14_TIOU
    by_duration: bool = True  # the paper's Table I duration buckets
    batch_size: int = 32  # windows per forward pass at inference
    select_tiou: float = 0.5  # mAP at this tIoU chooses the best checkpoint (must be in the list)

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size")
        if not self.tiou_thresholds or any(not 0.0 < t <= 1.0 for t in self.tiou_thresholds):
            raise ValueError(f"tiou_thresholds: expected values in (0, 1], got {self.tiou_thresholds}")
        if not any(math.isclose(self.select_tiou, t) for t in self.tiou_thresholds):
            raise ValueError(f"select_tiou: {self.select_tiou} is not one of tiou_thresholds")


ModelSection = ModelConfig | RC3DConfig  # one per detector, chosen by model.arch


@dataclass
class Config:
    """A whole run: data, model, training and test settings."""

    data: DataConfig
    model: ModelSection = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def __post_init__(self) -> None:
        # The model's strides must divide the window exactly (A2Net: 2**num_levels; R-C3D: its
        # backbone stride, times 2 per extra anchor-free level).
        multiple = self.model.window_multiple
        if self.data.window_size % multiple:
            what = "2**model.num_levels" if isinstance(self.model, ModelConfig) else "the model's stride"
            raise ValueError(
                f"data.window_size: {self.data.window_size} must be a multiple of {what} = {multiple}"
            )


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value}")


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass conversion, with the key path in every error


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> Config:
    """Build a validated :class:`Config` from a nested mapping (``source`` names it in errors)."""
    return _build_dataclass(Config, data, source, prefix="")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The nested plain-data form of a config (tuples become lists), as written to YAML."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    return {
        name: (
            section.to_dict() if isinstance(section, ModelConfig) else _to_plain(dataclasses.asdict(section))
        )
        for name, section in sections.items()
    }


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent numbers without a dot (``1e-4``) as floats."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # a SafeLoader: no arbitrary objects


def packaged_config_dir() -> Path:
    """The folder of the packaged configs: the copy inside an installed package
    (``rc3d_af/resources/configs``, written by ``setup.py``), else the source tree's ``configs/``."""
    installed = Path(__file__).parent / "resources" / "configs"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "configs"


def config_path(name: str | Path) -> Path:
    """The config file ``name`` names: an existing path, else a packaged config (``a2net_synthetic``
    or ``a2net_synthetic.yaml``) from :func:`packaged_config_dir`."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = packaged_config_dir() / f"{path.stem}.yaml"
    if len(path.parts) == 1 and path.suffix in ("", ".yaml") and packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))) or "none found"
    raise InputError(f"{name}: no such config file, nor a packaged config name (packaged: {names})")


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (a file or a packaged config's name), apply ``a.b=value`` overrides,
    validate and return it."""
    path = config_path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        data = _read_yaml(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with sections data/model/train/test at the top")
    data = apply_overrides(data, overrides, source=str(path))
    return config_from_dict(data, source=str(path))


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML; :func:`load_config` reads it back equal."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def apply_overrides(data: dict[str, Any], overrides: Iterable[str], source: str = "config") -> dict[str, Any]:
    """Return a copy of ``data`` with each ``a.b.c=value`` override set (value parsed as YAML).

    Only the structure is touched here; unknown keys and bad values are caught by validation.
    """
    result = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise InputError(f"--set {item!r}: expected KEY.PATH=VALUE, for example train.lr=0.001")
        try:
            value = _read_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise InputError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise InputError(f"--set {item!r}: {source}: {where} is a value, not a section")
            node = child
        is_section = isinstance(node.get(parts[-1]), dict) or (len(parts) == 1 and key in _SECTIONS)
        if is_section and not isinstance(value, dict):
            raise InputError(
                f"--set {item!r}: {key} is a section of the config, not a value; set one of its keys, "
                f"for example {key}.<key>={raw}"
            )
        node[parts[-1]] = value
    return result


_SECTIONS = frozenset(f.name for f in dataclasses.fields(Config))


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _build_dataclass(cls: type, data: Any, source: str, prefix: str) -> Any:
    where = prefix.rstrip(".") or "top level"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise InputError(f"{source}: {where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(
            f"{source}: unknown key {prefix}{unknown[0]!s}; valid keys of {where}: {', '.join(fields)}"
        )
    kwargs = {}
    for name, fld in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], source, f"{prefix}{name}")
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise InputError(f"{source}: missing required key {prefix}{name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # The dataclasses' own checks name the field; add the section path and the file.
        raise InputError(f"{source}: {prefix}{exc}") from exc


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert YAML data to it (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp == ModelSection:
        return _model_config(value, source)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, source, f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, source, key)
            except InputError:
                continue
        raise InputError(f"{source}: {key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise InputError(f"{source}: {key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise InputError(f"{source}: {key}: expected a list of {_describe(args[0])}, got {value!r}")
        items = [_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    return _convert_scalar(tp, value, source, key)


def _model_config(data: Any, source: str) -> ModelConfig | RC3DConfig:
    """The ``model`` section, by its ``arch`` (default ``a2net``): A2Net's flat config validates
    itself (its messages name "model.<field>"); R-C3D's blocks are built like every other section."""
    if data is not None and not isinstance(data, Mapping):
        raise InputError(f"{source}: model: expected a mapping, got {type(data).__name__}")
    arch = (data or {}).get("arch", "a2net")
    if arch in RC3D_ARCHS:
        return _build_dataclass(RC3DConfig, data, source, "model.")
    if arch != "a2net":
        choices = ", ".join(("a2net", *RC3D_ARCHS))
        raise InputError(f"{source}: model.arch: expected one of {choices}, got {arch!r}")
    try:
        return ModelConfig.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{source}: {exc}") from exc


def _convert_scalar(tp: Any, value: Any, source: str, key: str) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        # A string is refused even when numeric (lr: "3e-3" is a typo); 1e-4 unquoted is a float.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"config field {key}: unsupported type hint {tp!r}")
    raise InputError(f"{source}: {key}: expected {_describe(tp)}, got {value!r}")


def _describe(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    return getattr(tp, "__name__", repr(tp))

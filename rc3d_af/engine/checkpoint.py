"""Checkpoints: atomic writes, safe (``weights_only``) reads, and the RNG states for exact resume.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python data, so it loads
with ``torch.load(..., weights_only=True)`` (no pickled classes). Layout::

    {"format": 1, "epoch": int (epochs completed), "config": dict (resolved Config),
     "class_names": [str], "in_channels": int, "model": state_dict,
     "optimizer": state_dict | None, "scheduler": state_dict | None, "scaler": state_dict | None,
     "rng": {...} | None, "best": {"epoch": int, "score": float} | None, "history": [dict],
     "averaged_model": state_dict, "averaged_steps": int}   (the last two with train.ema_decay > 0)
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rc3d_af.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config
from rc3d_af.engine.state_dicts import describe_mismatch
from rc3d_af.errors import InputError
from rc3d_af.models import build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "capture_rng_state",
    "checkpoint_config",
    "load_checkpoint",
    "model_from_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = 1
_REQUIRED_KEYS = ("format", "epoch", "config", "class_names", "in_channels", "model")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``) and check its keys."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise InputError(f"{path}: not a readable rc3d_af checkpoint ({exc})") from exc
    if not isinstance(state, dict) or any(key not in state for key in _REQUIRED_KEYS):
        raise InputError(f"{path}: not an rc3d_af checkpoint (expected keys {', '.join(_REQUIRED_KEYS)})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path}: checkpoint format {state['format']}, this version reads format {CHECKPOINT_FORMAT}"
        )
    return state


def capture_rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a training step can draw from, as tensors and plain data (weights_only-safe)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(_plain, np_state[2:])],
        "python": _plain(random.getstate()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars (recursively through tuples/lists)."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def checkpoint_config(
    state: dict[str, Any], config_path: str | Path | None = None, overrides: Iterable[str] = ()
) -> Config:
    """The config to run a trained checkpoint with.

    The checkpoint's own resolved config is the base (its ``model`` section matches the weights);
    a config file, when given, replaces the ``data`` and ``test`` sections (run the model on other
    data or with another protocol); ``overrides`` (``a.b=value``) come last, so inference settings
    such as ``model.nms_iou`` can be changed.
    """
    data = dict(state["config"])
    if config_path is not None:
        other = config_to_dict(load_config(config_path))
        trained, given = data["model"].get("arch", "a2net"), other["model"]["arch"]
        if given != trained:
            raise InputError(
                f"{config_path}: model.arch is {given!r} but the checkpoint holds a {trained!r} model; "
                f"give a config of arch {trained!r} (only its data and test sections are used)"
            )
        data["data"], data["test"] = other["data"], other["test"]
    return config_from_dict(
        apply_overrides(data, overrides, source="checkpoint config"), source="checkpoint config"
    )


def model_from_checkpoint(state: dict[str, Any], cfg: Config, device: torch.device) -> torch.nn.Module:
    """Rebuild the model of a checkpoint (its class count and input width) and load its weights: the
    moving average (``averaged_model``, trained with ``train.ema_decay``) when it holds one."""
    model = build_model(cfg.model, len(state["class_names"]), int(state["in_channels"]))
    weights = state.get("averaged_model", state["model"])
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputError(
            f"the checkpoint's weights do not fit the model of its config (an architecture setting was "
            f"overridden?): {describe_mismatch(model.state_dict(), weights)}"
        ) from exc
    return model.to(device).eval()

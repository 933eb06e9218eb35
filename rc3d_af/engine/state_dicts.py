"""What differs between a checkpoint's weights and a model: the message of a failed load."""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["describe_mismatch"]


def _names(keys: list[str], limit: int) -> str:
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def describe_mismatch(
    model: Mapping[str, torch.Tensor], checkpoint: Mapping[str, torch.Tensor], limit: int = 3
) -> str:
    """The first ``limit`` missing keys, unexpected keys and shape mismatches, ``; ``-separated.

    Args:
        model: the state dict the model expects (``model.state_dict()``).
        checkpoint: the state dict found in the checkpoint.
    """
    missing = [key for key in model if key not in checkpoint]
    unexpected = [key for key in checkpoint if key not in model]
    shapes = [
        f"{key} is {list(checkpoint[key].shape)} in the checkpoint, {list(model[key].shape)} in the model"
        for key in model
        if key in checkpoint and tuple(checkpoint[key].shape) != tuple(model[key].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the checkpoint: {_names(missing, limit)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) in it: {_names(unexpected, limit)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {_names(shapes, limit)}")
    return "; ".join(parts) or "no key or shape differs"

"""tIoU threshold lists: parsing ``start:stop:step`` and ``a,b,c`` without float accumulation.

``np.arange(0.1, 0.8, 0.1)`` gives 0.7000000000000001 as its last value, and a prediction whose
IoU is exactly 0.7 is then no longer a match. Every value here is the float nearest to the
decimal written (as ``float("0.7")``), computed from exact decimals.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from rc3d_af.errors import InputError

__all__ = [
    "ACTIVITYNET_TIOU",
    "PROPOSAL_TIOU",
    "THUMOS14_PROPOSAL_TIOU",
    "THUMOS14_TIOU",
    "format_thresholds",
    "parse_int_list",
    "parse_thresholds",
]

THUMOS14_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOU = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
PROPOSAL_TIOU = ACTIVITYNET_TIOU
THUMOS14_PROPOSAL_TIOU = (*ACTIVITYNET_TIOU, 1.0)  # "0.5:1.0:0.05", THUMOS14 proposal practice


def parse_thresholds(text: str | Sequence[float], name: str = "--tiou") -> tuple[float, ...]:
    """``"0.1:0.7:0.1"`` (start:stop:step, stop included) or ``"0.3,0.5"`` -> floats in (0, 1]."""
    if not isinstance(text, str):
        values = tuple(float(v) for v in text)
    elif ":" in text:
        values = _parse_range(text, name)
    else:
        values = tuple(float(_decimal(part, name, text)) for part in text.split(","))
    if not values or any(not 0.0 < v <= 1.0 for v in values):
        raise InputError(f"{name}: thresholds must lie in (0, 1], got {text!r}")
    if len(set(values)) != len(values):
        raise InputError(f"{name}: a threshold is listed twice in {text!r}")
    return values


def _parse_range(text: str, name: str) -> tuple[float, ...]:
    parts = text.split(":")
    if len(parts) != 3:
        raise InputError(f"{name}: expected start:stop:step, got {text!r}")
    start, stop, step = (_decimal(part, name, text) for part in parts)
    if step <= 0 or stop < start:
        hint = f" (did you mean {parts[0]}:{parts[2]}:{parts[1]}?)" if stop < start <= step else ""
        raise InputError(f"{name}: expected start:stop:step with start <= stop and step > 0 (stop "
                         f"included), got {text!r}{hint}")
    count = int((stop - start) / step) + 1  # exact decimal arithmetic, stop included
    return tuple(float(start + k * step) for k in range(count))


def _decimal(part: str, name: str, text: str) -> Decimal:
    try:
        value = Decimal(part.strip())
    except InvalidOperation:
        raise InputError(f"{name}: {part!r} in {text!r} is not a number") from None
    if not value.is_finite():
        raise InputError(f"{name}: {part!r} in {text!r} is not a finite number")
    return value


def parse_int_list(text: str, name: str) -> tuple[int, ...]:
    """``"50,100,200"`` -> (50, 100, 200), all positive."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"{name}: expected comma-separated integers, got {text!r}") from None
    if not values or min(values) <= 0:
        raise InputError(f"{name}: expected positive integers, got {text!r}")
    return values


def format_thresholds(values: Sequence[float]) -> str:
    """The thresholds as ``parse_thresholds`` reads them: ``"start:stop:step"`` when evenly spaced
    (as exact decimals, three or more values), else ``"a,b,c"``."""
    decimals = [Decimal(repr(float(v))) for v in values]
    steps = {b - a for a, b in itertools.pairwise(decimals)}
    if len(decimals) >= 3 and len(steps) == 1 and min(steps) > 0:
        return f"{decimals[0]}:{decimals[-1]}:{steps.pop()}"
    return ",".join(str(d) for d in decimals)

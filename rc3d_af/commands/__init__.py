"""Sub-commands of ``rc3d-af``; see :mod:`rc3d_af.cli`."""

import argparse
import math


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """Repeated ``--set key.path=value`` config overrides, collected in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (frame rates, durations)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value

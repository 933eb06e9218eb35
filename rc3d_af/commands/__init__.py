"""Sub-commands of ``rc3d-af``; see :mod:`rc3d_af.cli`."""

import argparse


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """Repeated ``--set key.path=value`` config overrides, collected in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )

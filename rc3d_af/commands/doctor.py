"""Report torch and CUDA versions and whether the compiled kernels loaded, and for which devices."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    from rc3d_af.ops._extension import report

    print(report())
    return 0

"""Report the rc3d_af version and configs, torch and CUDA versions, and which compiled kernels loaded.

Prints the package version and folder, the folder of the packaged configs (those a config name such
as ``a2net_synthetic`` refers to), then the torch and CUDA versions and whether the compiled kernels
loaded, and for which devices.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    del args
    from pathlib import Path

    import rc3d_af
    from rc3d_af.config import packaged_config_dir
    from rc3d_af.ops._extension import report

    configs = packaged_config_dir()
    names = ", ".join(sorted(p.stem for p in configs.glob("*.yaml"))) or "none found"
    print(f"rc3d_af:           {rc3d_af.__version__} ({Path(rc3d_af.__file__).parent})")
    print(f"packaged configs:  {configs} ({names})")
    print(report())
    return 0

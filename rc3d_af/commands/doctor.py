"""Report the rc3d_af version and configs, torch and CUDA versions, compiled kernels, distributed backends.

Prints the package version and folder, the folder of the packaged configs (those a config name such
as ``a2net_synthetic`` refers to), the torch.distributed backends this torch offers (gloo: CPU
training under torchrun; nccl: GPUs), then the torch and CUDA versions and whether the compiled
kernels loaded, and for which devices.
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
    from rc3d_af.engine.distributed import available_backends
    from rc3d_af.ops._extension import report

    configs = packaged_config_dir()
    names = ", ".join(sorted(p.stem for p in configs.glob("*.yaml"))) or "none found"
    print(f"rc3d_af:           {rc3d_af.__version__} ({Path(rc3d_af.__file__).parent})")
    print(f"packaged configs:  {configs} ({names})")
    backends = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in available_backends().items())
    print(f"distributed:       {backends} (torchrun --nproc_per_node=N -m rc3d_af train ...)")
    print(report())
    return 0

"""Build script for rc3d_af and its compiled operators (``rc3d_af._C``).

Install in the environment that already holds the torch you will run with::

    pip install --no-build-isolation -e .

The YAML files of the top-level ``configs/`` folder are copied into the package
(``rc3d_af/resources/configs/``) by ``build_py``, so that an installed (non-editable) package resolves
config names such as ``a2net_synthetic``; an editable install reads them from ``configs/`` itself.

Environment switches:
    FORCE_CUDA=1 / FORCE_CUDA=0   build the CUDA kernels / never build them
                                  (default: when torch is a CUDA build and a toolkit is found).
    CUDA_HOME                     toolkit root; guessed from common locations when unset.
    TORCH_CUDA_ARCH_LIST          e.g. "9.0"; defaults to "7.5;8.0;8.6;8.9;9.0" when no GPU is visible.
    MAX_JOBS                      parallel compile jobs (default 2: one nvcc may take 3 GB).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    import torch
    from torch.utils import cpp_extension
except ImportError:  # pragma: no cover - exercised only on a machine without torch
    sys.exit(
        "rc3d_af: torch is not installed in this environment. The kernels are compiled against the "
        "torch you run with, so install torch first (for example `pip install torch==2.13.0`), then "
        "build without isolation: `pip install --no-build-isolation -e .`"
    )

ROOT = Path(__file__).parent
CSRC = ROOT / "csrc"


def _cuda_home() -> str | None:
    """Return the CUDA toolkit root, preferring CUDA_HOME and the conventional locations.

    torch guesses the root from the nvcc on PATH, which on some machines is a wrapper script
    outside the toolkit (linking then fails with ``cannot find -lcudart``).
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "bin" / "nvcc").exists():
            return candidate
    return None


def _want_cuda() -> bool:
    force = os.environ.get("FORCE_CUDA")
    torch_has_cuda = torch.version.cuda is not None
    if force == "0":
        return False
    if force == "1":
        if not torch_has_cuda:
            sys.exit(
                f"rc3d_af: FORCE_CUDA=1 but torch {torch.__version__} is a CPU-only build; install a "
                "CUDA build of torch or build with FORCE_CUDA=0."
            )
        if _cuda_home() is None:
            sys.exit("rc3d_af: FORCE_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME.")
        return True
    return torch_has_cuda and _cuda_home() is not None


def _nvidia_wheel_includes() -> list[str]:
    """Headers (cusparse.h, cublas...) shipped by the nvidia-* wheels that a CUDA torch pulls in.

    ATen/cuda/CUDAContext.h includes cusparse.h, which a bare system toolkit may lack.
    """
    found = []
    for site in sys.path:
        found += glob.glob(os.path.join(site, "nvidia", "cu*", "include"))
        found += glob.glob(os.path.join(site, "nvidia", "*", "include"))
    return sorted(set(found))


def _extension():
    sources = sorted(str(p.relative_to(ROOT)) for p in CSRC.glob("*.cpp"))
    sources += sorted(str(p.relative_to(ROOT)) for p in (CSRC / "cpu").glob("*.cpp"))
    openmp = ["-fopenmp"] if _openmp_works() else []
    cxx_flags = ["-O3", *openmp]
    extra_link = openmp
    if not _want_cuda():
        print("rc3d_af: building the CPU kernels only (FORCE_CUDA=1 adds the CUDA kernels).")
        return cpp_extension.CppExtension(
            "rc3d_af._C",
            sources,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=extra_link,
        )
    cuda_home = _cuda_home()
    os.environ["CUDA_HOME"] = cuda_home
    cpp_extension.CUDA_HOME = cuda_home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # Without a visible GPU torch cannot pick the architectures itself.
        os.environ["TORCH_CUDA_ARCH_LIST"] = "7.5;8.0;8.6;8.9;9.0"
    sources += sorted(str(p.relative_to(ROOT)) for p in (CSRC / "cuda").glob("*.cu"))
    print(f"rc3d_af: building CPU and CUDA kernels with the toolkit at {cuda_home}.")
    return cpp_extension.CUDAExtension(
        "rc3d_af._C",
        sources,
        include_dirs=_nvidia_wheel_includes(),
        define_macros=[("WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
        extra_link_args=extra_link,
    )


def _openmp_works() -> bool:
    """gcc ships libgomp; other compilers may not. Probe instead of passing -fopenmp blindly."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        result = subprocess.run(
            [compiler, "-fopenmp", str(src), "-o", str(Path(tmp) / "probe")],
            capture_output=True,
        )
    return result.returncode == 0


class BuildPyWithConfigs(build_py):
    """``build_py`` that also ships every ``configs/*.yaml`` as ``rc3d_af/resources/configs/*.yaml``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # editable installs read configs/ in place
            return
        target = Path(self.build_lib) / "rc3d_af" / "resources" / "configs"
        self.mkpath(str(target))
        for config in sorted((ROOT / "configs").glob("*.yaml")):
            self.copy_file(str(config), str(target / config.name))


os.environ.setdefault("MAX_JOBS", "2")

setup(
    ext_modules=[_extension()],
    cmdclass={
        "build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True),
        "build_py": BuildPyWithConfigs,
    },
)

"""Loading of the compiled kernels (``rc3d_af._C``) and a report of what loaded.

Importing ``rc3d_af._C`` runs the C++ ``TORCH_LIBRARY`` registrations, after which the kernels are
reachable as ``torch.ops.rc3d_af.<name>``. When the module is missing or was built against another
torch, the public ops in :mod:`rc3d_af.ops` fall back to their pure-PyTorch references and one
warning says how to build the kernels.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

import torch

BUILD_HINT = (
    "build them in this environment with `pip install --no-build-isolation -e .` "
    "from the rc3d_af source tree (see README)"
)


@dataclass(frozen=True)
class ExtensionStatus:
    """What :func:`load_extension` found. ``error`` is a one-line reason when nothing loaded."""

    loaded: bool
    cuda_kernels: bool
    error: str | None


def _explain(exc: BaseException) -> str:
    text = str(exc)
    if "undefined symbol" in text or "symbol not found" in text.lower():
        return (
            f"rc3d_af._C was built against a different torch than the installed torch "
            f"{torch.__version__} (undefined symbol); rebuild it: {BUILD_HINT}"
        )
    if isinstance(exc, ModuleNotFoundError):
        return f"rc3d_af._C is not built; {BUILD_HINT}"
    return f"rc3d_af._C failed to load ({type(exc).__name__}: {text}); {BUILD_HINT}"


def load_extension() -> ExtensionStatus:
    try:
        importlib.import_module("rc3d_af._C")
    except (ImportError, OSError) as exc:
        return ExtensionStatus(loaded=False, cuda_kernels=False, error=_explain(exc))
    cuda = torch._C._dispatch_has_kernel_for_dispatch_key("rc3d_af::nms_1d", "CUDA")
    return ExtensionStatus(loaded=True, cuda_kernels=cuda, error=None)


STATUS = load_extension()
if not STATUS.loaded:
    warnings.warn(
        f"rc3d_af: compiled kernels unavailable, using the slower pure-PyTorch ops. {STATUS.error}",
        RuntimeWarning,
        stacklevel=2,
    )


def use_compiled(*tensors: torch.Tensor) -> bool:
    """True when the compiled kernels exist for the device of ``tensors``."""
    if not STATUS.loaded:
        return False
    device = tensors[0].device.type
    return device == "cpu" or (device == "cuda" and STATUS.cuda_kernels)


def report() -> str:
    """A human-readable environment report (``python -m rc3d_af.ops`` / ``rc3d-af doctor``)."""
    lines = [
        f"torch:             {torch.__version__}",
        f"torch CUDA build:  {torch.version.cuda or 'no (CPU-only torch)'}",
        f"CUDA available:    {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
        f"compiled kernels:  {'loaded' if STATUS.loaded else 'NOT loaded'}",
    ]
    if STATUS.loaded:
        devices = ["cpu"] + (["cuda"] if STATUS.cuda_kernels else [])
        lines.append(f"kernel devices:    {', '.join(devices)}")
    else:
        lines.append(f"reason:            {STATUS.error}")
        lines.append("fallback:          pure-PyTorch reference ops (same results, slower)")
    return "\n".join(lines)

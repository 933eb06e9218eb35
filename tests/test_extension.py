"""The compiled-extension loader: clear reasons when it cannot load, and the doctor report."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rc3d_af.ops import _extension


def test_missing_module_says_how_to_build() -> None:
    reason = _extension._explain(ModuleNotFoundError("No module named 'rc3d_af._C'"))
    assert "not built" in reason
    assert "pip install --no-build-isolation -e ." in reason


def test_torch_mismatch_is_named_not_a_symbol_trace() -> None:
    exc = ImportError("/x/_C.so: undefined symbol: _ZN3c1017RegisterOperators")
    reason = _extension._explain(exc)
    assert "different torch" in reason
    assert "rebuild" in reason


def test_other_load_failure_keeps_the_original_message() -> None:
    reason = _extension._explain(OSError("libcudart.so.13: cannot open shared object file"))
    assert "libcudart.so.13" in reason


def test_fallback_warns_once_with_build_hint() -> None:
    # A fresh interpreter in which the compiled module cannot be imported.
    code = (
        "import sys, warnings\n"
        "sys.modules['rc3d_af._C'] = None\n"  # makes `import rc3d_af._C` raise ImportError
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import rc3d_af.ops as ops\n"
        "messages = [str(w.message) for w in caught if 'rc3d_af' in str(w.message)]\n"
        "assert len(messages) == 1, messages\n"
        "assert 'pip install --no-build-isolation -e .' in messages[0], messages[0]\n"
        "assert not ops.EXTENSION_STATUS.loaded\n"
        "import torch\n"
        "keep = ops.nms_1d(torch.tensor([[0.0, 1.0], [0.1, 1.0]]), torch.tensor([0.9, 0.8]), 0.5)\n"
        "assert keep.tolist() == [0], keep\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_doctor_reports_versions_and_kernels() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rc3d_af", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "torch:" in result.stdout
    assert "compiled kernels:" in result.stdout
    expected = "loaded" if _extension.STATUS.loaded else "NOT loaded"
    assert f"compiled kernels:  {expected}" in result.stdout


REQUIRE_COMPILED = os.environ.get("RC3D_AF_REQUIRE_COMPILED") == "1"  # set by `make test`


@pytest.mark.skipif(
    not (REQUIRE_COMPILED or _extension.STATUS.loaded),
    reason="compiled extension not built (make test requires it)",
)
def test_compiled_kernels_loaded_and_registered_for_cpu() -> None:
    import torch

    assert _extension.STATUS.loaded, _extension.STATUS.error
    for op in ("segment_iou", "nms_1d", "batched_nms_1d", "soft_nms_1d", "roi_align_1d", "roi_pool_1d"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"rc3d_af::{op}", "CPU"), op

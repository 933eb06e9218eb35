"""``python -m rc3d_af.ops``: print torch/CUDA versions and which compiled kernels loaded."""

from rc3d_af.ops._extension import report

print(report())

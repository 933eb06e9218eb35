"""rc3d_af: temporal action localization over pre-extracted video features.

Sub-packages: ``ops`` (compiled 1D NMS and RoI operators), ``data`` (annotations, features,
windows, synthetic benchmark), ``evaluation`` (mAP, AR@AN, duration diagnostics), ``models``
(A2Net), ``engine`` (training loop, checkpoints) and the ``rc3d-af`` command line (``cli``).
"""

__version__ = "0.1.0"

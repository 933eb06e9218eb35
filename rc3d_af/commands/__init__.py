"""Sub-commands of ``rc3d-af``; see :mod:`rc3d_af.cli`."""

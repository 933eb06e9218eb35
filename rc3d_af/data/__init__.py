"""Data: annotations (``annotations``), features and the time <-> index mapping (``features``),
windows and datasets (``windows``, ``dataset``), the synthetic benchmark (``synthetic``).

Import from the modules themselves; this package imports nothing so that it stays light.
"""

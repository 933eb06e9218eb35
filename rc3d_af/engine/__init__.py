"""Training and inference loops: :mod:`.trainer` (Trainer), :mod:`.checkpoint` (atomic save,
``weights_only`` load), :mod:`.inference` (windows -> per-video detections in seconds) and
:mod:`.datasets` (config -> annotations, feature store, window datasets).

Import from the modules themselves; this package imports nothing so that it stays light.
"""

"""Small made-up datasets in the user's formats (annotation JSON + one .npy per video), for the CLI tests.

Each video gets exactly ``FeatureSpec().num_features(duration, fps)`` feature rows (stride 4, clip
16 frames) unless ``lengths`` says otherwise, and a class signal inside its instances so that a
tiny model has something to learn.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from rc3d_af.data.features import FeatureSpec

SPEC = FeatureSpec()
# A tiny model and one epoch: what the CLI tests append to `rc3d-af train`.
TINY = [
    "--set", "data.window_size=64", "--set", "data.train_stride=32", "--set", "data.test_stride=32",
    "--set", "model.num_levels=3", "--set", "model.width_multiplier=0.03125",
    "--set", "model.af_head_channels=256", "--set", "train.epochs=1", "--set", "train.batch_size=8",
    "--set", "train.lr=1e-3", "--set", "train.device=cpu", "--set", "train.lr_milestones=[]",
]  # fmt: skip

# (video_id, subset, duration s, fps, [(label, start s, end s)])
VIDEOS = [
    ("video_0001", "training", 62.4, 30.0, [("jump", 3.2, 5.9), ("run", 20.0, 31.5)]),
    ("video_0003", "training", 40.0, 25.0, [("run", 2.0, 9.0), ("jump", 15.0, 17.5)]),
    ("video_0004", "training", 55.0, 29.97, [("jump", 30.0, 33.0), ("run", 40.0, 50.0)]),
    ("video_0002", "validation", 48.0, 25.0, [("jump", 4.0, 6.5), ("run", 30.0, 41.0)]),
    ("video_0005", "validation", 36.0, 30.0, [("run", 5.0, 12.0), ("jump", 20.0, 22.0)]),
]


def write_dataset(
    root: Path,
    videos: list[tuple] = VIDEOS,
    *,
    dim: int = 8,
    lengths: Mapping[str, int] | Callable[[int], int] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``root/annotations.json`` and ``root/features/<video>.npy``; returns ``root``.

    ``lengths`` replaces the feature count of videos (a mapping) or of all (a function of the
    expected count), to make misaligned features.
    """
    rng = np.random.default_rng(seed)
    classes = sorted({label for *_, instances in videos for label, _, _ in instances})
    database = {}
    (root / "features").mkdir(parents=True, exist_ok=True)
    for video_id, subset, duration, fps, instances in videos:
        database[video_id] = {
            "subset": subset, "duration": duration, "fps": fps,
            "annotations": [{"label": label, "segment": [s, e]} for label, s, e in instances],
        }  # fmt: skip
        expected = SPEC.num_features(duration, fps)
        features = rng.standard_normal((expected, dim)).astype(np.float32)
        for label, start, end in instances:
            lo, hi = (max(0, int(SPEC.seconds_to_index(t, fps))) for t in (start, end))
            features[lo : hi + 1, classes.index(label)] += 4.0
        found = expected
        if callable(lengths):
            found = lengths(expected)
        elif lengths is not None and video_id in lengths:
            found = lengths[video_id]
        rows = np.resize(features, (found, dim)) if found > expected else features[:found]
        np.save(root / "features" / f"{video_id}.npy", rows)
    (root / "annotations.json").write_text(json.dumps({"classes": classes, "database": database}, indent=1))
    return root


def write_config(path: Path, data_dir: Path, **data: object) -> Path:
    """A config over ``data_dir`` (training / validation subsets), extra ``data`` fields as given."""
    import yaml

    config = {
        "data": {"annotations": str(data_dir / "annotations.json"), "features": str(data_dir / "features"),
                 "train_subset": "training", "test_subset": "validation", **data},
        "test": {"tiou_thresholds": [0.3, 0.5, 0.7]},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path

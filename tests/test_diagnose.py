"""benchmarks/diagnose.py: the confusion count and the training statistics on hand-made cases."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rc3d_af.commands.ablation import mean_std, mean_std_cell
from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.evaluation.results import Results

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_diagnose", ROOT / "benchmarks/diagnose.py")
diagnose = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(diagnose)


def _annotations() -> AnnotationSet:
    test = VideoAnnotation("t", "test", 100.0, 30.0, [
        Instance("Diving", 10.0, 20.0),
        Instance("CliffDiving", 10.0, 20.0),  # the same place, two labels (THUMOS14 does this)
        Instance("Diving", 40.0, 50.0),
        Instance("Billiards", 70.0, 72.0),
        Instance("Billiards", 90.0, 95.0),  # no detection overlaps it: not localized
    ])  # fmt: skip
    train = VideoAnnotation("v", "validation", 100.0, 30.0, [
        Instance("Diving", 0.0, 2.0), Instance("Diving", 10.0, 30.0), Instance("Billiards", 5.0, 6.0),
    ])  # fmt: skip
    return AnnotationSet({"t": test, "v": train}, ["Billiards", "CliffDiving", "Diving"])


def test_confusion_counts_the_best_detection_of_each_localized_instance() -> None:
    results = Results()
    segments = [[10.0, 20.0], [10.5, 19.5], [40.0, 50.0], [41.0, 49.0], [70.0, 72.0]]
    labels = ["CliffDiving", "Diving", "Diving", "Billiards", "Billiards"]
    results.add("t", segments, [0.9, 0.5, 0.3, 0.8, 0.6], labels)
    counts = diagnose.confusion(_annotations(), results, "test", 0.5)
    # 10-20: best detection CliffDiving, right for the CliffDiving instance and co-labelled for the
    # Diving one; 40-50: best is the Billiards detection (0.8): confused; 70-72: right.
    assert counts == {
        ("Diving", "Diving"): 1,
        ("CliffDiving", "CliffDiving"): 1,
        ("Diving", "Billiards"): 1,
        ("Billiards", "Billiards"): 1,
    }
    assert sum(counts.values()) == 4  # the instance at 90-95 is not localized


def test_training_statistics_per_class() -> None:
    stats = diagnose.training_statistics(_annotations(), "validation", window_seconds=15.0)
    assert stats["Diving"] == (2, pytest.approx(11.0), pytest.approx(0.5))
    assert stats["Billiards"] == (1, pytest.approx(1.0), 0.0)
    assert stats["CliffDiving"] == (0, 0.0, 0.0)


def test_mean_std_over_seeds() -> None:
    """The one seed statistic of ablation, diagnose, demo_seeds and peers: sample std (ddof 1)."""
    two = mean_std(np.array([0.5, 0.7]))
    assert two["mean"] == pytest.approx(0.6) and two["std"] == pytest.approx(0.1 * np.sqrt(2))
    assert mean_std_cell(two) == "60.0+-14.1"
    assert mean_std([0.25]) == {"mean": 0.25, "std": 0.0}  # one seed: std 0, not NaN
    columns = mean_std([[0.2, None], [0.4, 0.5]])  # an undefined entry leaves its column undefined
    assert columns["mean"][0] == pytest.approx(0.3) and columns["mean"][1] is None
    assert mean_std_cell(columns, 1) == "-"
    assert mean_std_cell(mean_std([12.0, 14.0]), scale=1.0) == "13.0+-1.4"

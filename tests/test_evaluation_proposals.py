"""Proposal evaluation: AR@AN and AUC in both conventions, against hand cases and a loop version."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation
from rc3d_af.errors import InputError
from rc3d_af.evaluation import Results
from rc3d_af.evaluation.proposals import evaluate_proposals


def make_gt(videos: dict[str, list[tuple[float, float]]]) -> AnnotationSet:
    return AnnotationSet(
        videos={vid: VideoAnnotation(vid, "test", 100.0, 30.0, [Instance("A", s, e) for s, e in rows])
                for vid, rows in videos.items()},
        class_names=["A"],
    )


def make_proposals(videos: dict[str, list[tuple[float, float, float]]]) -> Results:
    results = Results(source="proposals")
    for vid, rows in videos.items():
        results.add(vid, [r[:2] for r in rows], [r[2] for r in rows], [""] * len(rows))
    return results


def _iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (b[1] - b[0]) + (a[1] - a[0]) - inter
    return inter / union if union > 0 else 0.0


def loop_activitynet_ar(gt: AnnotationSet, props: Results, thresholds, max_avg: int):
    """Direct transcription of the documented official procedure: (AR curve, x values)."""
    videos = [vid for vid, v in gt.videos.items() if v.instances]
    ratio = max_avg * float(len(videos)) / props.num_predictions
    per_video, total_kept = [], 0
    for vid in videos:
        det = props.videos.get(vid)
        order = [] if det is None else np.argsort(-det.scores, kind="stable")
        ranked = [tuple(det.segments[i]) for i in order]
        kept = min(int(len(ranked) * ratio), len(ranked))
        total_kept += kept
        per_video.append((gt.videos[vid].instances, ranked[:kept]))
    fractions = [k / 100.0 * (max_avg * float(len(videos)) / total_kept) for k in range(1, 101)]
    curve = []
    for fraction in fractions:
        recalls = []
        for threshold in thresholds:
            found = positives = 0
            for instances, ranked in per_video:
                n = min(int(len(ranked) * fraction), len(ranked))
                positives += len(instances)
                for inst in instances:
                    found += any(_iou(p, (inst.start, inst.end)) >= threshold for p in ranked[:n])
            recalls.append(found / positives)
        curve.append(np.mean(recalls))
    return np.array(curve), np.array(fractions) * (total_kept / len(videos))


def test_per_video_top_n_by_hand() -> None:
    gt = make_gt({"v": [(0.0, 10.0), (20.0, 30.0)], "w": [(0.0, 4.0)]})
    props = make_proposals({
        "v": [(0.0, 10.0, 0.9), (50.0, 60.0, 0.8), (20.0, 29.0, 0.7)],  # GT2 at rank 2, IoU 0.9
        "w": [(0.0, 2.0, 0.5)],  # IoU 0.5
    })
    report = evaluate_proposals(gt, props, None, [0.5, 0.95], an=(1, 2, 3), convention="per_video")
    # tIoU 0.5: top-1 finds v/GT1 and w -> 2/3; top-3 also v/GT2 -> 3/3. tIoU 0.95: only v/GT1.
    np.testing.assert_allclose(report["ar"], [(2 / 3 + 1 / 3) / 2, (2 / 3 + 1 / 3) / 2, (1 + 1 / 3) / 2])
    # AUC: trapezoid of AR(N) over N = 1..3, divided by 3, in percent.
    ar = report["ar"]
    assert report["auc"] == pytest.approx(100 * ((ar[0] + ar[1]) / 2 + (ar[1] + ar[2]) / 2) / 3)
    assert (report["videos"], report["ground_truths"], report["proposals"]) == (2, 3, 4)


def test_activitynet_convention_shares_the_budget() -> None:
    gt = make_gt({"v": [(0.0, 10.0)], "w": [(0.0, 10.0)]})
    # v has 3 proposals, w 1: at AN = 1 the budget (2 in all) is shared 3:1 -> int(1.5) = 1 and int(0.5) = 0.
    props = make_proposals({"v": [(0.0, 10.0, 0.9), (30, 40, 0.8), (50, 60, 0.7)], "w": [(0.0, 10.0, 0.9)]})
    report = evaluate_proposals(gt, props, None, [0.5], an=(1, 2), convention="activitynet")
    assert report["ar"] == [0.5, 1.0]
    assert report["conventions"]["per_video"]["ar"] == [1.0, 1.0]


def test_missing_proposals_and_unknown_videos() -> None:
    gt = make_gt({"v": [(0.0, 10.0)], "w": [(0.0, 10.0)], "empty": []})
    props = make_proposals({"v": [(0.0, 10.0, 0.9)], "x": [(0.0, 10.0, 0.9)]})
    report = evaluate_proposals(gt, props, None, [0.5], an=(1,))
    assert report["videos"] == 2  # a video without ground truth is not evaluated (official)
    assert report["unknown_videos"] == {"videos": 1, "predictions": 1, "examples": ["x"]}
    assert report["conventions"]["per_video"]["ar"] == [0.5]
    empty = evaluate_proposals(gt, Results(), None, [0.5], an=(1, 10))
    assert empty["ar"] == [0.0, 0.0] and empty["auc"] == 0.0
    with pytest.raises(InputError, match="--an"):
        evaluate_proposals(gt, props, None, [0.5], an=(0,))


proposal_rows = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 10), st.floats(0, 1, allow_nan=False)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from("uvw"), proposal_rows, min_size=1), st.sampled_from([1, 3, 8]))
def test_activitynet_convention_equals_loop_transcription(rows, max_avg) -> None:
    gt = make_gt({"u": [(2.0, 6.0), (10.0, 14.0)], "v": [(0.0, 3.0)], "w": [(5.0, 20.0), (5.0, 20.0)]})
    props = make_proposals({vid: [(s / 2, s / 2 + d, score) for s, d, score in r] for vid, r in rows.items()})
    thresholds = (0.5, 0.7, 0.9)
    report = evaluate_proposals(gt, props, None, thresholds, an=(max_avg,), convention="activitynet")
    curve, x = loop_activitynet_ar(gt, props, thresholds, max_avg)
    assert report["ar"][0] == pytest.approx(curve[-1], abs=1e-12)
    np.testing.assert_allclose(report["curves"]["activitynet"]["ar"], curve, atol=1e-12)
    np.testing.assert_allclose(report["curves"]["activitynet"]["an"], x, rtol=1e-12)

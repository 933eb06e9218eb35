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


def loop_activitynet_ar(gt: AnnotationSet, props: Results, thresholds, max_avg: int, tie_rule: str):
    """Direct transcription of the documented official procedure: (AR curve, x values)."""
    videos = [vid for vid, v in gt.videos.items() if v.instances]
    ratio = max_avg * float(len(videos)) / props.num_predictions
    per_video, total_kept = [], 0
    for vid in videos:
        det = props.videos.get(vid)
        if det is None:
            order = []
        elif tie_rule == "official":
            order = np.argsort(det.scores)[::-1]
        else:
            order = sorted(range(len(det)), key=lambda k: -det.scores[k])  # Python's sort is stable
        ranked = [tuple(det.segments[i]) for i in order]
        kept = min(int(len(ranked) * ratio), len(ranked))
        total_kept += kept
        per_video.append((gt.videos[vid].instances, ranked[:kept]))
    if total_kept == 0:  # the official code divides by zero here; this project reports AR 0
        return np.zeros(100), np.arange(1, 101) / 100.0 * max_avg
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


def test_ar_at_an_is_read_on_the_curve_of_the_largest_an() -> None:
    gt = make_gt({"v": [(0.0, 10.0)], "w": [(0.0, 10.0)]})
    # v: miss, hit; w: hit, miss. On the AN = 2 curve (V = 2, N = 4: every proposal kept), grid
    # point 50 (x = 1) keeps int(2 x 0.5) = 1 proposal per video: w's hit only -> AR@1 = 0.5.
    props = make_proposals({"v": [(50.0, 60.0, 0.9), (0.0, 10.0, 0.8)],
                            "w": [(0.0, 10.0, 0.9), (70.0, 80.0, 0.1)]})
    report = evaluate_proposals(gt, props, None, [0.5], an=(1, 2))
    assert report["ar"] == [0.5, 1.0]
    assert report["curves"]["activitynet"]["an"][49] == pytest.approx(1.0)
    with pytest.raises(InputError, match=r"--an: \[3\] not on the official AR-AN curve of max AN 7"):
        evaluate_proposals(gt, props, None, [0.5], an=(3, 7))
    # The per-video convention has no grid: off-grid AN values are fine there.
    per_video = evaluate_proposals(gt, props, None, [0.5], an=(3, 7), convention="per_video")
    assert per_video["ar"] == [1.0, 1.0] and per_video["conventions"]["activitynet"]["ar"] is None


def test_budget_counts_proposals_of_videos_without_ground_truth() -> None:
    gt = make_gt({"v": [(0.0, 10.0)], "empty": []})
    # v: a miss ranked above the hit. With AN = 2 and V = 1 video, ratio = 2 / N: the 4 proposals
    # on "x" (unknown) and "empty" (no ground truth) make N = 6, so v keeps int(2 x 2/6) = 0.
    props = make_proposals({"v": [(50.0, 60.0, 0.9), (0.0, 10.0, 0.8)], "x": [(0.0, 1.0, 0.5)] * 2,
                            "empty": [(0.0, 1.0, 0.5)] * 2})
    assert evaluate_proposals(gt, props, None, [0.5], an=(2,))["ar"] == [0.0]
    alone = make_proposals({"v": [(50.0, 60.0, 0.9), (0.0, 10.0, 0.8)]})  # N = 2: v keeps both
    assert evaluate_proposals(gt, alone, None, [0.5], an=(2,))["ar"] == [1.0]


def test_tie_rules_within_a_video() -> None:
    gt = make_gt({"v": [(0.0, 10.0)]})
    props = make_proposals({"v": [(50.0, 60.0, 0.5), (0.0, 10.0, 0.5)]})  # tied: miss listed first
    stable = evaluate_proposals(gt, props, None, [0.5], an=(1, 2), convention="per_video", tie_rule="stable")
    official = evaluate_proposals(gt, props, None, [0.5], an=(1, 2), convention="per_video")
    assert stable["ar"] == [0.0, 1.0] and stable["tie_rule"] == "stable"
    assert official["ar"] == [1.0, 1.0]  # np.argsort of two equal scores is [0, 1], reversed
    with pytest.raises(InputError, match="tie rule"):
        evaluate_proposals(gt, props, None, [0.5], an=(1,), tie_rule="first")


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
    st.tuples(st.integers(0, 30), st.integers(1, 10), st.integers(0, 4)),  # coarse scores: ties
    min_size=1,
    max_size=24,
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(st.dictionaries(st.sampled_from("uvwx"), proposal_rows, min_size=1), st.sampled_from([4, 10, 20]),
       st.sampled_from(["official", "stable"]))
def test_activitynet_convention_equals_loop_transcription(rows, max_avg, tie_rule) -> None:
    gt = make_gt({"u": [(2.0, 6.0), (10.0, 14.0)], "v": [(0.0, 3.0)], "w": [(5.0, 20.0), (5.0, 20.0)]})
    props = make_proposals({vid: [(s / 2, s / 2 + d, score / 4) for s, d, score in r]
                            for vid, r in rows.items()})
    thresholds = (0.5, 0.7, 0.9)
    an = (max_avg // 4, max_avg // 2, max_avg)  # grid points 25, 50, 100
    report = evaluate_proposals(gt, props, None, thresholds, an=an, tie_rule=tie_rule)
    curve, x = loop_activitynet_ar(gt, props, thresholds, max_avg, tie_rule)
    assert report["ar"] == [curve[24], curve[49], curve[99]]
    np.testing.assert_array_equal(report["curves"]["activitynet"]["ar"], curve)
    np.testing.assert_array_equal(report["curves"]["activitynet"]["an"], x)

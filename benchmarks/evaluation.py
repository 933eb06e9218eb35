"""Detection-evaluation benchmark: the vectorized evaluators against straightforward loop versions.

The loop versions below are the baseline: per class, per prediction (or ground truth), per
threshold, written directly from the protocols' descriptions (ActivityNet ``eval_detection.py``
under both tie rules, and the THUMOS14 kit) and sharing no code with ``rc3d_af.evaluation``
beyond the input types. They are also the second method the tests check the vectorized
evaluators against.

Usage (THUMOS14 test ground truth + af38 detections and synthetic 10k/50k prediction sets; numpy
runs these element-wise operations on one core)::

    python benchmarks/evaluation.py [--repeat 3] [--skip-loop]
    python benchmarks/evaluation.py --traps     # how much each evaluator trap moves mAP on af38
    python benchmarks/evaluation.py --versus-official PORT_DIR --official-python PY [--predictions N]

``--versus-official`` times whole processes (``rc3d-af evaluate`` against the official
``eval_detection.py``) on N synthetic predictions with 4-decimal scores. The official code is not
part of this project: fetch activitynet/ActivityNet, port ``Evaluation/`` to Python 3 in a folder
of your own (PORT_DIR) and give an interpreter with pandas and joblib (PY).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rc3d_af.data.annotations import AnnotationSet, load_annotations, save_annotations_json
from rc3d_af.evaluation import Results, evaluate_detections, load_results, save_results_json
from rc3d_af.evaluation.thresholds import THUMOS14_TIOU

THUMOS = Path("/work/shared/data/thumos14")
AF38 = THUMOS / "reference_results/a2net_table1_example/action_detection_af38.txt"


# ----------------------------------------------------------------------------------------------
# Baseline: loops
# ----------------------------------------------------------------------------------------------


def _iou_activitynet(ps: float, pe: float, gs: float, ge: float) -> float:
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = (ge - gs) + (pe - ps) - inter
    return inter / union if union > 0 else 0.0


def _iou_kit(s1: float, e1: float, s2: float, e2: float) -> float:
    s1, e1 = min(s1, e1), max(s1, e1)
    s2, e2 = min(s2, e2), max(s2, e2)
    inter = min(e1, e2) - max(s1, s2)
    return inter / (max(e1, e2) - min(s1, s2)) if inter > 0 else 0.0


def _gathered(ground_truth: AnnotationSet, results: Results, label: str) -> tuple[list, list]:
    """GT rows (video, start, end) and prediction rows (video, start, end, score, input order)."""
    gts = [
        (vid, inst.start, inst.end)
        for vid, video in ground_truth.videos.items()
        for inst in video.instances
        if inst.label == label
    ]
    preds, position = [], 0
    for vid, video in results.videos.items():
        for (start, end), score, lab in zip(video.segments, video.scores, video.labels, strict=True):
            if lab == label:
                preds.append((vid, float(start), float(end), float(score), position))
            position += 1
    return gts, preds


def _visiting_order(values: list[float], tie_rule: str) -> list[int]:
    """Indices of ``values`` from highest to lowest: numpy's default argsort reversed, as the
    official code ranks ("official"), or ties in list order ("stable")."""
    if tie_rule == "official":
        return np.argsort(np.array(values, dtype=np.float64))[::-1].tolist()
    return sorted(range(len(values)), key=lambda k: -values[k])


def loop_activitynet(
    ground_truth: AnnotationSet, results: Results, thresholds: Sequence[float], tie_rule: str = "official"
) -> np.ndarray:
    """(T, C) interpolated AP, NaN for classes without ground truth."""
    ap = np.full((len(thresholds), len(ground_truth.class_names)), np.nan)
    for c, label in enumerate(ground_truth.class_names):
        gts, preds = _gathered(ground_truth, results, label)
        if not gts:
            continue
        preds = [preds[k] for k in _visiting_order([p[3] for p in preds], tie_rule)]
        by_video: dict[str, list[int]] = {}
        for g, row in enumerate(gts):
            by_video.setdefault(row[0], []).append(g)
        for t, thr in enumerate(thresholds):
            locked = [False] * len(gts)
            hits = []
            for vid, start, end, _, _ in preds:
                candidates = by_video.get(vid, [])
                ious = [_iou_activitynet(start, end, gts[g][1], gts[g][2]) for g in candidates]
                hit = False
                for k in _visiting_order(ious, tie_rule):
                    if ious[k] < thr:
                        break
                    if not locked[candidates[k]]:
                        locked[candidates[k]] = hit = True
                        break
                hits.append(hit)
            ap[t, c] = _interpolated_ap(hits, len(gts))
    return ap


def _interpolated_ap(hits: list[bool], num_positives: int) -> float:
    precision, recall, tp = [], [], 0
    for n, hit in enumerate(hits, start=1):
        tp += hit
        precision.append(tp / n)
        recall.append(tp / num_positives)
    mprec, mrec = [0.0, *precision, 0.0], [0.0, *recall, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def loop_thumos14(ground_truth: AnnotationSet, results: Results, thresholds: Sequence[float]) -> np.ndarray:
    """(T, C) AP under the THUMOS14 kit's rules, NaN for classes without ground truth."""
    ap = np.full((len(thresholds), len(ground_truth.class_names)), np.nan)
    for c, label in enumerate(ground_truth.class_names):
        gts, preds = _gathered(ground_truth, results, label)
        if not gts:
            continue
        for t, thr in enumerate(thresholds):
            matched = [False] * len(preds)
            for vid in {row[0] for row in gts}:
                dets = sorted((p for p in range(len(preds)) if preds[p][0] == vid),
                              key=lambda p: (-preds[p][3], preds[p][4]))
                for _, gs, ge in (row for row in gts if row[0] == vid):  # file order
                    best, best_iou = None, 0.0
                    for p in dets:
                        iou = _iou_kit(gs, ge, preds[p][1], preds[p][2])
                        if not matched[p] and iou > best_iou:
                            best, best_iou = p, iou
                    if best is not None and best_iou > thr:
                        matched[best] = True
            ranking = sorted(range(len(preds)), key=lambda p: (-preds[p][3], preds[p][0], preds[p][4]))
            tp = n = 0
            total = 0.0
            for p in ranking:
                vid, start, end = preds[p][:3]
                if not matched[p] and _overlaps_ambiguous(ground_truth, vid, start, end):
                    continue
                n += 1
                if matched[p]:
                    tp += 1
                    total += tp / n
            ap[t, c] = total / len(gts)
    return ap


def _overlaps_ambiguous(ground_truth: AnnotationSet, vid: str, start: float, end: float) -> bool:
    video = ground_truth.videos.get(vid)
    return video is not None and any(_iou_kit(start, end, s, e) > 0 for s, e in video.ambiguous)


LOOPS = {"activitynet": loop_activitynet, "thumos14": loop_thumos14}


def loop_map(
    ground_truth: AnnotationSet, results: Results, thresholds: Sequence[float], protocol: str, **options
) -> np.ndarray:
    """(T,) mAP over classes with ground truth, by the loop baseline (``options``: ``tie_rule``)."""
    ap = LOOPS[protocol](ground_truth, results, thresholds, **options)
    return np.nanmean(ap, axis=1)


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------


def synthetic_results(
    ground_truth: AnnotationSet, num_predictions: int, seed: int = 0, decimals: int | None = None
) -> Results:
    """Predictions around the ground truth (jittered, 20% with a wrong class) plus random background;
    scores rounded to ``decimals`` (None: not rounded), as real files with tied scores have."""
    rng = np.random.default_rng(seed)
    instances = [(vid, i) for vid, v in ground_truth.videos.items() for i in v.instances]
    videos, names = list(ground_truth.videos), ground_truth.class_names
    rows: dict[str, list] = {}
    for k in rng.integers(0, len(instances), size=num_predictions // 2):
        vid, inst = instances[k]
        length = inst.end - inst.start
        start = inst.start + rng.normal(0, 0.2) * length
        end = max(start, inst.end + rng.normal(0, 0.2) * length)
        label = inst.label if rng.random() < 0.8 else names[rng.integers(len(names))]
        rows.setdefault(vid, []).append((start, end, rng.random(), label))
    for _ in range(num_predictions - num_predictions // 2):
        vid = videos[rng.integers(len(videos))]
        start = rng.uniform(0, ground_truth.videos[vid].duration)
        rows.setdefault(vid, []).append((start, start + rng.exponential(4.0), rng.random() * 0.7,
                                         names[rng.integers(len(names))]))
    results = Results(source="synthetic")
    for vid, video_rows in rows.items():
        starts, ends, scores, labels = zip(*video_rows, strict=True)
        scores = np.array(scores) if decimals is None else np.round(scores, decimals)
        results.add(vid, np.stack([starts, ends], axis=1), scores, labels)
    return results


def traps(ground_truth: AnnotationSet, results: Results) -> None:
    """Measure how much each evaluator disagreement moves mAP (ActivityNet protocol) on ``results``."""
    def run(gt: AnnotationSet = ground_truth, res: Results = results, thresholds=THUMOS14_TIOU, **kw):
        return np.array(evaluate_detections(gt, res, "test", thresholds, "activitynet", **kw)["mAP"])

    base = run()
    print("ActivityNet protocol, mAP (%) at tIoU " + " ".join(f"{t:g}" for t in THUMOS14_TIOU))
    print(f"  {'reference (this evaluator)':<58}" + " ".join(f"{100 * v:6.2f}" for v in base))

    def show(name: str, values: np.ndarray) -> None:
        print(f"  {name:<58}" + " ".join(f"{100 * (v - b):+6.2f}" for v, b in zip(values, base, strict=True)))

    show("thresholds from np.arange(0.1, 0.8, 0.1)", run(thresholds=list(np.arange(0.1, 0.8, 0.1))))
    show("clip predictions to the video duration", run(clip_to_duration=True))
    trimmed = AnnotationSet({k: v for k, v in ground_truth.videos.items() if k != "video_test_0000270"},
                            ground_truth.class_names, ground_truth.class_ids)
    show("GT without video_test_0000270, its predictions = FP", run(trimmed))
    show("GT without video_test_0000270, its predictions ignored", run(trimmed, unknown_videos="ignore"))
    reversed_order = Results(source="reversed")
    for vid in reversed(list(results.videos)):
        video = results.videos[vid]
        reversed_order.add(vid, video.segments[::-1], video.scores[::-1], video.labels[::-1])
    show("tied scores in reversed input order", run(res=reversed_order))
    show("tie rule 'stable' (ties in input order)", run(tie_rule="stable"))
    noisy = Results(source="noisy", videos=dict(results.videos))
    noisy.add(next(iter(results.videos)), [[0.0, 5.0]] * 100, [2.0] * 100, ["NotAClass"] * 100)
    show("100 top-scored predictions with an unknown label", run(res=noisy))
    float32_flips(ground_truth, results)


def float32_flips(ground_truth: AnnotationSet, results: Results) -> None:
    """Count (prediction, ground truth) pairs whose match decision changes with float32 IoU."""
    from rc3d_af.evaluation.inputs import build_inputs, candidate_pairs

    inputs = build_inputs(ground_truth.subset("test"), results)
    pred, gt, iou64 = candidate_pairs(inputs, "activitynet")
    a = inputs.pred_segments[pred].astype(np.float32)
    b = inputs.gt_segments[gt].astype(np.float32)
    inter = np.clip(np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iou32 = inter / ((b[:, 1] - b[:, 0]) + (a[:, 1] - a[:, 0]) - inter)
    flips = [int(np.sum((iou32 >= t) != (iou64 >= t))) for t in THUMOS14_TIOU]
    print(f"  {'float32 IoU: pair decisions flipped per threshold':<58}" + " ".join(f"{n:6d}" for n in flips)
          + f"   (of {len(pred)} overlapping pairs)")


def _time(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls, and the last value."""
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), value


def in_process(ground_truth: AnnotationSet, repeat: int, skip_loop: bool) -> float:
    """Vectorized evaluators against the loops, both tie rules; returns the largest mAP difference."""
    inputs = {
        "af38 (real)": load_results(AF38, ground_truth.class_names, class_ids=ground_truth.class_ids),
        "synthetic 10k": synthetic_results(ground_truth, 10_000, seed=1),
        "synth 10k 2dec": synthetic_results(ground_truth, 10_000, seed=1, decimals=2),
        "synthetic 50k": synthetic_results(ground_truth, 50_000, seed=2),
    }
    cases = [("activitynet", "official"), ("activitynet", "stable"), ("thumos14", "kit")]
    print(f"{'input':<15} {'protocol':<12} {'ties':<9} {'preds':>6} {'vectorized s':>12} {'loop s':>8} "
          f"{'speed-up':>8}  max |diff|  mAP@0.5")
    worst = 0.0
    for name, results in inputs.items():
        for protocol, rule in cases:
            options = {} if rule == "kit" else {"tie_rule": rule}
            fast_s, report = _time(lambda r=results, p=protocol, o=options: evaluate_detections(
                ground_truth, r, "test", THUMOS14_TIOU, p, **o), repeat)
            fast = np.array(report["mAP"])
            if skip_loop:
                loop_s, diff = float("nan"), float("nan")
            else:
                loop_s, slow = _time(lambda r=results, p=protocol, o=options: loop_map(
                    ground_truth.subset("test"), r, THUMOS14_TIOU, p, **o), 1)
                diff = float(np.max(np.abs(fast - slow)))
                worst = max(worst, diff)
            print(f"{name:<15} {protocol:<12} {rule:<9} {results.num_predictions:>6} {fast_s:>12.3f} "
                  f"{loop_s:>8.2f} {loop_s / fast_s:>7.1f}x  {diff:.1e}    {fast[4]:.4f}")
    return worst


OFFICIAL_DRIVER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from eval_detection import ANETdetection
evaluation = ANETdetection(sys.argv[2], sys.argv[3], tiou_thresholds=np.array(json.loads(sys.argv[4])),
                           subset="test", check_status=False)
evaluation.evaluate()
print(json.dumps(evaluation.mAP.tolist()))
"""


def versus_official(
    ground_truth: AnnotationSet, port: Path, python: str, num_predictions: int, repeat: int
) -> float:
    """Whole-process wall time of ``rc3d-af evaluate`` and of the official ``eval_detection.py``
    (a Python 3 port in ``port``, run by ``python``; not part of this project) on the same files.

    Returns the largest mAP difference between the two.
    """
    results = synthetic_results(ground_truth, num_predictions, seed=3, decimals=4)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path, out = Path(tmp, "gt.json"), Path(tmp, "results.json"), Path(tmp, "report.json")
        save_annotations_json(ground_truth, gt_path)
        document = json.loads(gt_path.read_text())  # the official reader also wants these fields
        gt_path.write_text(json.dumps({**document, "version": "VERSION 1.3", "taxonomy": []}))
        save_results_json(results, res_path)
        ours_cmd = [sys.executable, "-m", "rc3d_af", "evaluate", "--ground-truth", str(gt_path), "--results",
                    str(res_path), "--subset", "test", "--tiou", "0.1:0.7:0.1", "--json", str(out)]
        official_cmd = [python, "-c", OFFICIAL_DRIVER, str(port), str(gt_path), str(res_path),
                        json.dumps(list(THUMOS14_TIOU))]
        ours_s, _ = _time(lambda: subprocess.run(ours_cmd, check=True, capture_output=True), repeat)
        ours = np.array(json.loads(out.read_text())["mAP"])
        official_s, done = _time(lambda: subprocess.run(official_cmd, check=True, capture_output=True,
                                                        text=True), repeat)
        official = np.array(json.loads(done.stdout.splitlines()[-1]))
    diff = float(np.max(np.abs(ours - official)))
    print(f"{num_predictions} predictions (THUMOS14 test, 4-decimal scores), whole process, "
          f"median of {repeat}:")
    print(f"  rc3d-af evaluate {ours_s:8.2f} s   official eval_detection.py {official_s:8.2f} s   "
          f"{official_s / ours_s:5.1f}x   max |mAP diff| {diff:.1e}")
    return diff


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-loop", action="store_true", help="time only the vectorized evaluator")
    parser.add_argument("--traps", action="store_true", help="measure evaluator traps on af38 instead")
    parser.add_argument("--versus-official", metavar="PORT_DIR", type=Path,
                        help="instead, time whole processes against a Python 3 port of the official "
                        "eval_detection.py in PORT_DIR")
    parser.add_argument("--official-python", default=sys.executable,
                        help="interpreter with pandas and joblib for --versus-official")
    parser.add_argument("--predictions", type=int, default=396_000,
                        help="prediction count for --versus-official")
    args = parser.parse_args(argv)
    ground_truth = load_annotations(THUMOS / "annotation_test")
    if args.traps:
        traps(ground_truth, load_results(AF38, ground_truth.class_names, class_ids=ground_truth.class_ids))
        return 0
    if args.versus_official:
        worst = versus_official(ground_truth, args.versus_official, args.official_python, args.predictions,
                                args.repeat)
        return 0 if worst <= 1e-9 else 1
    return 0 if in_process(ground_truth, args.repeat, args.skip_loop) <= 1e-12 else 1


if __name__ == "__main__":
    sys.exit(main())

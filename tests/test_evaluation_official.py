"""The ActivityNet-protocol evaluators against the official ActivityNet code's own numbers.

How the expected numbers were obtained (none of the official code is in this repository):

- Code: activitynet/ActivityNet @ 82304fa9f4a7219421df13dae6347a445c4cf5bc, ``Evaluation/``
  ``eval_detection.py``, ``eval_proposal.py``, ``utils.py``, ported to Python 3 outside the
  repository, touching only what Python 3 and current numpy need: ``print`` calls, ``iteritems``
  -> ``items``, ``xrange`` -> ``range``, ``urllib2`` -> ``urllib.request`` (never called:
  ``check_status=False``), ``np.float``/``np.int`` -> ``float``/``int``, ``np.trapz`` ->
  ``np.trapezoid``. Run with Python 3.11.7, numpy 2.4.6, pandas 3.1.1, joblib, on an AMD EPYC
  with AVX-512; the AVX2 and no-SIMD numbers with ``NPY_DISABLE_CPU_FEATURES="AVX512_ICL X86_V4"``
  and ``"AVX512_ICL X86_V4 X86_V3"`` (numpy's tie order differs between the three, and so do the
  official numbers: see ``rc3d_af/evaluation/ranking.py``).
- Inputs: ``python tests/test_evaluation_official.py --write-inputs DIR`` writes the cases below
  as the official JSON layouts (ground truth with ``version``/``taxonomy``/``database``, results
  with ``version``/``results``/``external_data``), videos and detections in the order the
  evaluators here read them. af38: ground truth = the 20 classes of ``annotation_test/`` (no
  Ambiguous), results = the file's lines in file order, classes mapped through detclasslist.txt.
- Detection: ``ANETdetection(gt, res, tiou_thresholds=np.array(T), subset="test",
  check_status=False).evaluate()``; ``mAP`` is compared. T are the exact decimals below.
- Proposals: ``ANETproposal(gt, res, tiou_thresholds=np.array(T), max_avg_nr_proposals=M,
  subset="test", check_status=False, verbose=True).evaluate()``; with M = max(AN) = 1000, AR@AN
  = ``avg_recall[AN / 10 - 1]``; the AUC is the one ``evaluate()`` prints for M = 100.

Each machine kind (numpy's argsort tie order, recognised by ``argsort_signature``) has its own
official numbers; a kind none of the recorded ones matches is skipped, visibly.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rc3d_af.data.annotations import AnnotationSet, Instance, VideoAnnotation, load_annotations
from rc3d_af.evaluation import Results, evaluate_detections, evaluate_proposals, load_results
from shared_data import THUMOS14

AF38 = THUMOS14 / "reference_results/a2net_table1_example/action_detection_af38.txt"
DETECTION_TIOU = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PROPOSAL_AN = (50, 100, 200, 500, 1000)


# ---------------------------------------------------------------------------------------------
# The cases (deterministic, numpy's random streams not involved)
# ---------------------------------------------------------------------------------------------


def _lcg(seed: int):
    """Integers in [0, 2**31) from a fixed linear congruential generator."""
    state = seed
    while True:
        state = (1103515245 * state + 12345) % 2**31
        yield state


def coarse_detection_case() -> tuple[AnnotationSet, Results]:
    """12 videos, 3 classes, ground truths on a 1 s grid (some duplicated, some side by side) and
    about 50 predictions per video with one-decimal scores: jittered copies of the ground truths,
    predictions straddling two neighbours (equal tIoU 1/3 with both) and background. Ties decide
    both the ranking and which ground truth a prediction takes."""
    rand = _lcg(7)
    videos: dict[str, VideoAnnotation] = {}
    results = Results(source="coarse")
    for v in range(13):  # video_12 has no ground truth: its predictions are false positives
        vid = f"video_{v:02d}"
        instances, rows = [], []
        for label in "ABC" if v < 12 else "":
            for k in range(3):
                start = float((next(rand) % 20) * 4 + k)
                length = float(2 + next(rand) % 4)
                instances.append(Instance(label, start, start + length))
                if next(rand) % 3 == 0:  # a duplicate, or a neighbour of the same length
                    shift = 0.0 if next(rand) % 2 else length
                    instances.append(Instance(label, start + shift, start + shift + length))
                    if shift:
                        straddling = [start + length / 2, start + 1.5 * length]  # tIoU 1/3 with both
                        rows.append((straddling, 0.5 + next(rand) % 5 / 10, label))
        for inst in instances:
            for _ in range(1 + next(rand) % 2):
                jitter = [((next(rand) % 5) - 2) / 2, ((next(rand) % 5) - 2) / 2]
                segment = [inst.start + jitter[0], max(inst.start + jitter[0], inst.end + jitter[1])]
                label = inst.label if next(rand) % 5 else "ABC"[next(rand) % 3]
                rows.append((segment, (4 + next(rand) % 6) / 10, label))
        for _ in range(12):
            start = (next(rand) % 170) / 2
            segment = [start, start + 1 + (next(rand) % 10) / 2]
            rows.append((segment, (next(rand) % 6) / 10, "ABC"[next(rand) % 3]))
        if instances:
            videos[vid] = VideoAnnotation(vid, "test", 100.0, 30.0, instances)
        segments, scores, labels = zip(*rows, strict=True)
        results.add(vid, segments, scores, labels)
    return AnnotationSet(videos, ["A", "B", "C"]), results


def proposal_case(ties: bool) -> tuple[AnnotationSet, Results]:
    """THUMOS14 test ground truth (the kit folder) and about 200 proposals per video with labels
    100 (as R-C3D.pytorch writes them), scores with one decimal (``ties``) or all distinct; plus
    proposals on a video without ground truth and on video_test_0001292 (Ambiguous only): both
    count in the official budget's total."""
    ground_truth = load_annotations(THUMOS14 / "annotation_test")
    rand = _lcg(11 if ties else 13)
    results = Results(source="proposals")
    extra = {"video_test_0001292": 300, "video_test_9999999": 500}
    count = 0
    for vid in dict.fromkeys([*ground_truth.videos, *extra]):
        video = ground_truth.videos.get(vid)
        duration = video.duration if video else 200.0
        rows = []
        for inst in video.instances if video else []:
            for _ in range(3):
                length = inst.end - inst.start
                start = inst.start + ((next(rand) % 41) - 20) / 100 * length
                rows.append([start, start + length * (0.7 + (next(rand) % 61) / 100)])
        while len(rows) < extra.get(vid, 200):
            start = (next(rand) % 10_000) / 10_000 * duration
            rows.append([start, start + 0.5 + (next(rand) % 200) / 10])
        if ties:
            scores = [(next(rand) % 10) / 10 for _ in rows]
        else:
            scores = [1.0 - (count + k * 7919 % len(rows)) / 1e6 for k in range(len(rows))]
            count += len(rows)
        results.add(vid, rows, scores, [""] * len(rows))
    return ground_truth, results


def af38_case() -> tuple[AnnotationSet, Results]:
    ground_truth = load_annotations(THUMOS14 / "annotation_test")
    return ground_truth, load_results(AF38, ground_truth.class_names, class_ids=ground_truth.class_ids)


def argsort_signature() -> str:
    """Which tie order numpy's default argsort produces here (numpy version and CPU dispatch)."""
    digest = hashlib.sha256()
    for size in (8, 16, 17, 100, 300, 5000, 40_000):
        values = (np.arange(size) * 7919 % 11).astype(np.float64) / 10
        digest.update(np.argsort(values).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def measure(tie_rule: str = "official") -> dict[str, Any]:
    """Every number the official code was run for, computed by the evaluators here."""
    out: dict[str, Any] = {"signature": argsort_signature()}
    for name, case in (("af38", af38_case), ("coarse", coarse_detection_case)):
        gt, results = case()
        out[name] = evaluate_detections(gt, results, "test", DETECTION_TIOU, "activitynet",
                                        tie_rule=tie_rule)["mAP"]
    for name, ties in (("proposals_ties", True), ("proposals_distinct", False)):
        gt, results = proposal_case(ties)
        for label, tiou in (("1.0", "0.5:1.0:0.05"), ("0.95", "0.5:0.95:0.05")):
            report = evaluate_proposals(gt, results, "test", tiou, PROPOSAL_AN, tie_rule=tie_rule)
            out[f"{name}_{label}"] = {"ar": report["ar"], "auc": report["auc"]}
    return out


# ---------------------------------------------------------------------------------------------
# The official numbers
# ---------------------------------------------------------------------------------------------

OFFICIAL: dict[str, dict[str, Any]] = {  # argsort_signature() -> the official code's numbers
    "7b40b9192ce57c35": {
        "machine": "x86-64 AVX-512, numpy 2.4.6",
        "af38": [
            0.5740509278157917, 0.5480393165183461, 0.5115524007709367, 0.44509352905966376,
            0.36694785280563086, 0.26313065073318187, 0.15335608889141078,
        ],
        "coarse": [
            0.7646244347177161, 0.7462899734936101, 0.7340949278922677, 0.669685518539607,
            0.669685518539607, 0.5127547481043093, 0.26928005502742264,
        ],
        "proposals_ties_1.0": {"auc": 32.331893984514586, "ar": [
            0.34771779739022146, 0.5560939953435486, 0.6934593101954626, 0.7002815528723807,
            0.7002815528723807,
        ]},
        "proposals_ties_0.95": {"auc": 35.56508338296605, "ar": [
            0.3824895771292436, 0.6117033948779035, 0.7627754615842763, 0.7702799285288863,
            0.7702799285288863,
        ]},
    },
    "f4a65f7e0c657356": {
        "machine": "x86-64 AVX2, numpy 2.4.6",
        "af38": [
            0.5742109782372087, 0.5482751505994593, 0.5115813744486984, 0.4448265334283599,
            0.3671614670063701, 0.2633607232173764, 0.15356728781961662,
        ],
        "coarse": [
            0.7646244347177161, 0.7462899734936101, 0.7340949278922677, 0.669685518539607,
            0.669685518539607, 0.5127547481043093, 0.26928005502742264,
        ],
        "proposals_ties_1.0": {"auc": 32.33131192809572, "ar": [
            0.34769072499864634, 0.5565812983919, 0.6934051654123126, 0.7002815528723807,
            0.7002815528723807,
        ]},
        "proposals_ties_0.95": {"auc": 35.564443120905295, "ar": [
            0.382459797498511, 0.61223942823109, 0.7627159023228113, 0.7702799285288863,
            0.7702799285288863,
        ]},
    },
    "33aee340e2e37fe4": {
        "machine": "x86-64 no SIMD, numpy 2.4.6",
        "af38": [
            0.5734449433433624, 0.5476536265608092, 0.5113013401357093, 0.44459827334553764,
            0.36672365771436083, 0.2628832754679993, 0.1534714231999874,
        ],
        "coarse": [
            0.7898702036471329, 0.780523722750301, 0.7584033935477441, 0.7012683942605444,
            0.7007870078677332, 0.5354392755660796, 0.291736402847572,
        ],
        "proposals_ties_1.0": {"auc": 33.12617088093562, "ar": [
            0.36233688884076015, 0.5553088959878716, 0.6981428339379501, 0.7002815528723807,
            0.7002815528723807,
        ]},
        "proposals_ties_0.95": {"auc": 36.43878796902918, "ar": [
            0.3985705777248362, 0.6108397855866587, 0.7679273377010125, 0.7702799285288863,
            0.7702799285288863,
        ]},
    },
}
# Distinct scores: the same numbers on all three machine kinds above.
OFFICIAL_DISTINCT: dict[str, dict[str, Any]] = {
    "proposals_distinct_1.0": {"auc": 36.08854025664627, "ar": [
        0.39531106177919767, 0.5816503329904165, 0.6976555308895988, 0.6995235259082788,
        0.6995235259082788,
    ]},
    "proposals_distinct_0.95": {"auc": 39.690946992257295, "ar": [
        0.4347528290649197, 0.6396664681357953, 0.7672126265634306, 0.7692674210839787, 0.7692674210839787,
    ]},
}


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

# numpy's dispatch levels on x86-64 (numpy 2.4 names; unknown names are ignored by numpy, and the
# signature then tells which level ran).
DISPATCH = {"as is": "", "without AVX-512": "AVX512_ICL X86_V4", "without SIMD": "AVX512_ICL X86_V4 X86_V3"}


def _measured_at(level: str) -> dict[str, Any]:
    """``measure()`` in a fresh interpreter with numpy's SIMD levels above ``level`` disabled."""
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": DISPATCH[level]}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assert_matches(ours: dict[str, Any], official: dict[str, Any], keys: list[str]) -> None:
    for key in keys:
        if key in ("af38", "coarse"):
            np.testing.assert_allclose(ours[key], official[key], rtol=0, atol=1e-9, err_msg=key)
        else:
            np.testing.assert_allclose(ours[key]["ar"], official[key]["ar"], rtol=0, atol=1e-9, err_msg=key)
            assert ours[key]["auc"] == pytest.approx(official[key]["auc"], rel=0, abs=1e-7), key


@pytest.mark.parametrize("level", list(DISPATCH))
def test_official_tie_rule_equals_the_official_code(level: str) -> None:
    """af38 and the coarse-score case (mAP, 1e-9), proposals with ties (AR@AN 1e-9, AUC 1e-7), both
    tIoU ranges, on each numpy dispatch level this machine has."""
    ours = _measured_at(level)
    official = OFFICIAL.get(ours["signature"])
    if official is None:
        recorded = ", ".join(o["machine"] for o in OFFICIAL.values())
        pytest.skip(f"numpy's argsort ({level}) orders ties unlike every recorded machine kind "
                    f"({recorded}): its official numbers are unknown")
    _assert_matches(ours, official, ["af38", "coarse", "proposals_ties_1.0", "proposals_ties_0.95"])
    _assert_matches(ours, OFFICIAL_DISTINCT, list(OFFICIAL_DISTINCT))


def test_distinct_scores_equal_the_official_code_under_both_rules() -> None:
    """Without ties the rules agree and the numbers are the same on every machine."""
    gt, results = proposal_case(ties=False)
    for rule in ("official", "stable"):
        for tiou in ("1.0", "0.95"):
            report = evaluate_proposals(gt, results, "test", f"0.5:{tiou}:0.05", PROPOSAL_AN, tie_rule=rule)
            _assert_matches({f"proposals_distinct_{tiou}": report}, OFFICIAL_DISTINCT,
                            [f"proposals_distinct_{tiou}"])


def test_ties_decide_the_coarse_case() -> None:
    """The case is one where the tie rule matters (else it would test nothing about ties)."""
    gt, results = coarse_detection_case()
    official = evaluate_detections(gt, results, "test", DETECTION_TIOU, tie_rule="official")["mAP"]
    stable = evaluate_detections(gt, results, "test", DETECTION_TIOU, tie_rule="stable")["mAP"]
    assert max(abs(a - b) for a, b in zip(official, stable, strict=True)) > 0.01
    pairs = [(vid, inst.start, inst.end, inst.label) for vid, v in gt.videos.items() for inst in v.instances]
    assert len(pairs) > len(set(pairs))  # duplicated ground truths: tIoU ties on the ground-truth side


# ---------------------------------------------------------------------------------------------
# Inputs for the official code
# ---------------------------------------------------------------------------------------------


def write_inputs(folder: Path) -> None:
    """The cases as official-layout JSON files in ``folder``."""
    from rc3d_af.data.annotations import save_annotations_json
    from rc3d_af.evaluation import save_results_json

    folder.mkdir(parents=True, exist_ok=True)
    cases = {"af38": af38_case(), "coarse": coarse_detection_case(),
             "proposals_ties": proposal_case(True), "proposals_distinct": proposal_case(False)}
    for name, (gt, results) in cases.items():
        save_annotations_json(gt, folder / f"{name}_gt.json")
        document = json.loads((folder / f"{name}_gt.json").read_text())
        for entry in document["database"].values():
            entry.pop("ambiguous", None)
        (folder / f"{name}_gt.json").write_text(json.dumps({**document, "version": "1.3", "taxonomy": []}))
        save_results_json(results, folder / f"{name}_results.json")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write-inputs"]:
        write_inputs(Path(sys.argv[2]))
    else:
        print(json.dumps(measure(*sys.argv[1:])))

"""Write a synthetic benchmark (annotations.json + features/<video>.npy) in the real formats.

With --like the videos, durations, fps, instances, classes and subsets come from a real
annotation file (`--like thumos14` uses the THUMOS14 val + test timings shipped with rc3d_af) and
only the features are synthesized; without it THUMOS14-like timings are drawn. Features follow the
default I3D sampling (one feature every 4 frames, 16-frame clips, the video's own fps). Difficulty
knobs are in units of the per-dimension noise standard deviation; see rc3d_af.data.synthetic.
"""

from __future__ import annotations

import argparse

from rc3d_af.data.synthetic import SynthParams

_DEFAULTS = SynthParams()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created; files overwritten)")
    parser.add_argument(
        "--like",
        default=None,
        help="timing source: an annotation JSON/THUMOS14 folder, or 'thumos14' (packaged)",
    )
    parser.add_argument(
        "--videos", type=int, default=None, help="number of videos (default: all of --like, else 200)"
    )
    parser.add_argument("--dim", type=int, default=256, help="feature width D (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    knobs = parser.add_argument_group("difficulty (amplitudes in noise standard deviations)")
    knobs.add_argument(
        "--signal",
        type=float,
        default=_DEFAULTS.signal,
        help="class signal norm inside instances (default: %(default)s)",
    )
    knobs.add_argument(
        "--boundary", type=float, default=_DEFAULTS.boundary, help="start/end cue norm (default: %(default)s)"
    )
    knobs.add_argument(
        "--noise-corr",
        type=float,
        default=_DEFAULTS.noise_corr,
        help="AR(1) correlation of the noise in time (default: %(default)s)",
    )
    knobs.add_argument(
        "--scene",
        type=float,
        default=_DEFAULTS.scene,
        help="std of per-shot scene offsets (default: %(default)s)",
    )
    knobs.add_argument(
        "--distractors",
        type=float,
        default=_DEFAULTS.distractors,
        help="distractor segments per instance (default: %(default)s)",
    )
    knobs.add_argument(
        "--distractor-signal",
        type=float,
        default=_DEFAULTS.distractor_signal,
        help="distractor pattern norm relative to --signal (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    from rc3d_af.data.annotations import load_annotations
    from rc3d_af.data.checks import classes_missing_by_subset
    from rc3d_af.data.synthetic import generate_synthetic

    params = SynthParams(
        signal=args.signal,
        boundary=args.boundary,
        noise_corr=args.noise_corr,
        scene=args.scene,
        distractors=args.distractors,
        distractor_signal=args.distractor_signal,
    )
    began = time.perf_counter()
    path = generate_synthetic(
        args.out, like=args.like, videos=args.videos, dim=args.dim, seed=args.seed, params=params
    )
    elapsed = time.perf_counter() - began
    annotations = load_annotations(path)
    subsets: dict[str, int] = {}
    for video in annotations.videos.values():
        subsets[video.subset] = subsets.get(video.subset, 0) + 1
    print(
        f"wrote {path} and {len(annotations.videos)} feature files (D={args.dim}) in {elapsed:.1f} s: "
        f"{annotations.num_instances} instances, {len(annotations.class_names)} classes, subsets {subsets}"
    )
    for subset, missing in classes_missing_by_subset(annotations).items():
        print(
            f"warning: subset '{subset}' holds no instance of {len(missing)} class(es) that other subsets "
            f"have ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); more --videos would "
            "cover them",
            file=sys.stderr,
        )
    return 0

"""Chance baselines for a results set: what the same predictions score once shuffled.

They answer "does the detector really localize and classify, or would any predictions of this
shape score as well on this benchmark?":

* :func:`shuffle_labels` keeps every segment and score and permutes the class labels across all
  predictions (same label frequencies): localization kept, classification destroyed.
* :func:`shuffle_videos` moves each video's whole prediction list to another video (a random
  permutation without fixed points), clipped to that video's duration: labels, scores and the
  segments' timing statistics kept, localization destroyed.
"""

from __future__ import annotations

import numpy as np

from rc3d_af.data.annotations import AnnotationSet
from rc3d_af.evaluation.results import Results

__all__ = ["shuffle_labels", "shuffle_videos"]


def shuffle_labels(results: Results, seed: int = 0) -> Results:
    """The same predictions with their labels randomly permuted across all videos."""
    rng = np.random.default_rng(seed)
    video_ids = list(results.videos)
    labels = [label for vid in video_ids for label in results.videos[vid].labels]
    permuted = [labels[i] for i in rng.permutation(len(labels))]
    shuffled = Results(source="shuffled labels")
    offset = 0
    for vid in video_ids:
        video = results.videos[vid]
        shuffled.add(vid, video.segments, video.scores, permuted[offset : offset + len(video)])
        offset += len(video)
    return shuffled


def shuffle_videos(results: Results, annotations: AnnotationSet, seed: int = 0) -> Results:
    """Each video's predictions given to another video (a derangement), clipped to its duration.

    Predictions that end up entirely beyond the new video's end are dropped; the returned object's
    ``source`` says how many.
    """
    rng = np.random.default_rng(seed)
    video_ids = list(results.videos)
    if len(video_ids) < 2:
        raise ValueError("shuffle_videos needs predictions on at least two videos")
    # A random cyclic shift of a random order is a permutation without fixed points.
    order = rng.permutation(len(video_ids))
    target = {video_ids[order[i]]: video_ids[order[(i + 1) % len(order)]] for i in range(len(order))}
    shuffled = Results(source="shuffled videos")
    dropped = 0
    for vid in video_ids:
        video, new_vid = results.videos[vid], target[vid]
        segments = np.clip(video.segments, 0.0, annotations.videos[new_vid].duration)
        keep = segments[:, 1] > segments[:, 0]
        dropped += int((~keep).sum())
        labels = [label for label, kept in zip(video.labels, keep, strict=True) if kept]
        shuffled.add(new_vid, segments[keep], video.scores[keep], labels)
    shuffled.source = f"shuffled videos ({dropped} predictions beyond the new video's end dropped)"
    return shuffled

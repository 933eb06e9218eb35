"""From a :class:`~rc3d_af.config.DataConfig` to annotations, a feature store and window datasets.

Training, testing and single-video detection all cut videos into windows here, so that they can
never disagree on the feature sampling, the window size or the windowing style. Here, too, every
command meets the dataset checks (:mod:`rc3d_af.data.checks`) before any work: :func:`load_data`
stops on videos without features, feature counts that do not match the annotated durations and
ground truth outside its video, in the config's training and test subsets; :func:`make_windows`
repeats the check for the videos it cuts (any subset, or one video given to ``detect``) and issues
the summary warnings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from rc3d_af.config import DataConfig
from rc3d_af.data.annotations import AnnotationSet, load_annotations
from rc3d_af.data.checks import DataWarning, read_lengths, untrained_classes, untrained_message, verify_videos
from rc3d_af.data.dataset import WindowDataset
from rc3d_af.data.features import FeatureStore
from rc3d_af.data.windows import Window, rescaled_windows, sliding_windows
from rc3d_af.errors import InputError

__all__ = ["check_declared_shape", "load_data", "make_dataset", "make_windows"]


def load_data(cfg: DataConfig) -> tuple[AnnotationSet, FeatureStore]:
    """The annotations (all subsets) and a lazy store over the feature files, checked.

    Raises InputError (one message) when videos of the training or test subset have no features,
    feature counts that do not match their durations, or ground truth outside the video; warns
    when a class of the test subset never occurs in the training subset.
    """
    annotations = load_annotations(cfg.annotations, video_info=cfg.video_info)
    store = FeatureStore(cfg.features, cfg.streams)
    subsets = {cfg.train_subset, cfg.test_subset}
    videos = [video for video in annotations.videos.values() if video.subset in subsets]
    lengths = read_lengths(store, [video.video_id for video in videos], _where(cfg, subsets))
    verify_videos(videos, lengths, cfg.feature_spec, **_check_settings(cfg), where=_where(cfg, subsets),
                  warn=False)
    untrained = untrained_classes(annotations, cfg.train_subset, cfg.test_subset)
    if untrained:
        warnings.warn(untrained_message(untrained, cfg.train_subset, cfg.test_subset), DataWarning,
                      stacklevel=2)
    return annotations, store


def _check_settings(cfg: DataConfig) -> dict:
    return {"length_tolerance": cfg.length_tolerance, "segment_slack": cfg.segment_slack,
            "segments_beyond": cfg.segments_beyond}


def _where(cfg: DataConfig, subsets: set[str]) -> str:
    names = " and ".join(repr(name) for name in sorted(subsets))
    return f"subset {names} of {cfg.annotations}"


def check_declared_shape(cfg: DataConfig, num_classes: int, feature_dim: int) -> None:
    """The dataset's class count and feature width agree with ``data.num_classes`` /
    ``data.feature_dim`` where the config declares them (InputError naming the field otherwise)."""
    for name, declared, found, what in (
        ("num_classes", cfg.num_classes, num_classes, f"classes in {cfg.annotations}"),
        ("feature_dim", cfg.feature_dim, feature_dim, f"feature dimensions in {cfg.features}"),
    ):
        if declared is not None and declared != found:
            raise InputError(f"data.{name} is {declared} but the dataset has {found} {what}")


def make_windows(
    cfg: DataConfig,
    annotations: AnnotationSet,
    num_features: Mapping[str, int],
    subset: str,
    *,
    training: bool,
    where: str | None = None,
) -> list[Window]:
    """Windows of every video of ``subset`` in the config's style (training: only those holding
    ground truth, at ``train_stride``; otherwise all, at ``test_stride``). ``where`` names the data
    in messages (default: the subset and the annotation file).

    Raises InputError when the subset yields no window at all, or when its videos fail the
    dataset checks (:func:`rc3d_af.data.checks.verify_videos`, which also issues the warnings).
    """
    videos = [v for v in annotations.videos.values() if v.subset == subset and v.video_id in num_features]
    verify_videos(videos, num_features, cfg.feature_spec, **_check_settings(cfg),
                  where=where or _where(cfg, {subset}))
    if cfg.windowing == "sliding":
        windows = sliding_windows(
            annotations,
            subset,
            num_features,
            cfg.feature_spec,
            window_size=cfg.window_size,
            stride=cfg.train_stride if training else cfg.test_stride,
            training=training,
            min_gt_coverage=cfg.min_gt_coverage,
        )
    else:
        windows = rescaled_windows(
            annotations,
            subset,
            num_features,
            cfg.feature_spec,
            window_size=cfg.window_size,
            min_gt_coverage=cfg.min_gt_coverage,
        )
    if not windows:
        raise InputError(
            f"data: subset '{subset}' of {cfg.annotations} gives no {'training ' if training else ''}window "
            f"({len(num_features)} videos)"
        )
    return windows


def make_dataset(
    cfg: DataConfig, annotations: AnnotationSet, store: FeatureStore, subset: str, *, training: bool
) -> WindowDataset:
    """:func:`make_windows` over the videos of ``subset``, read from ``store``."""
    videos = [v.video_id for v in annotations.videos.values() if v.subset == subset]
    lengths = read_lengths(store, videos, _where(cfg, {subset}))
    windows = make_windows(cfg, annotations, lengths, subset, training=training)
    return WindowDataset(windows, store, cfg.window_size)

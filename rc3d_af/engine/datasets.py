"""From a :class:`~rc3d_af.config.DataConfig` to annotations, a feature store and window datasets.

Training, testing and single-video detection all cut videos into windows here, so that they can
never disagree on the feature sampling, the window size or the windowing style.
"""

from __future__ import annotations

from collections.abc import Mapping

from rc3d_af.config import DataConfig
from rc3d_af.data.annotations import AnnotationSet, load_annotations
from rc3d_af.data.dataset import WindowDataset
from rc3d_af.data.features import FeatureStore
from rc3d_af.data.windows import Window, rescaled_windows, sliding_windows
from rc3d_af.errors import InputError

__all__ = ["check_declared_shape", "load_data", "make_dataset", "make_windows"]


def load_data(cfg: DataConfig) -> tuple[AnnotationSet, FeatureStore]:
    """The annotations (all subsets) and a lazy store over the feature files."""
    annotations = load_annotations(cfg.annotations, video_info=cfg.video_info)
    return annotations, FeatureStore(cfg.features, cfg.streams)


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
) -> list[Window]:
    """Windows of every video of ``subset`` in the config's style (training: only those holding
    ground truth, at ``train_stride``; otherwise all, at ``test_stride``).

    Raises InputError when the subset yields no window at all.
    """
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
    windows = make_windows(cfg, annotations, store.lengths(videos), subset, training=training)
    return WindowDataset(windows, store, cfg.window_size)

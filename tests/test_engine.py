"""Engine: atomic checkpoints, exact resume, best-checkpoint selection, inference and baselines."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rc3d_af.config import config_from_dict, load_config
from rc3d_af.data.annotations import load_annotations
from rc3d_af.data.synthetic import generate_synthetic
from rc3d_af.engine import checkpoint as checkpoint_module
from rc3d_af.engine.baselines import shuffle_labels, shuffle_videos
from rc3d_af.engine.checkpoint import load_checkpoint, save_checkpoint
from rc3d_af.engine.inference import denormals_flushed, infer_split
from rc3d_af.engine.trainer import EpochStats, Trainer
from rc3d_af.errors import InputError
from rc3d_af.evaluation.results import Results


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 THUMOS14-timed videos (2 validation, 2 test), 16-d features."""
    return generate_synthetic(tmp_path_factory.mktemp("synth"), like="thumos14", videos=4, dim=16, seed=0)


def tiny_config(annotations: Path, **train):
    """A model of a few thousand parameters on 64-feature windows: fast enough for unit tests."""
    return config_from_dict(
        {
            "data": {
                "annotations": str(annotations),
                "features": str(annotations.parent / "features"),
                "window_size": 64,
                "train_stride": 64,
                "test_stride": 64,
            },
            "model": {"num_levels": 3, "width_multiplier": 0.03125, "af_head_channels": 256},
            "train": {
                "epochs": 2,
                "batch_size": 8,
                "lr": 1e-3,
                "lr_milestones": [1],
                "device": "cpu",
                **train,
            },
            "test": {"batch_size": 16, "tiou_thresholds": [0.3, 0.5, 0.7]},
        }
    )


def _fit(cfg, run_dir: Path, **kwargs) -> Trainer:
    with Trainer(cfg, run_dir, progress=False, **kwargs) as trainer:
        trainer.fit()
    return trainer


# -- checkpoints -------------------------------------------------------------------------------


def _state(value: float) -> dict:
    return {
        "epoch": 1,
        "config": {},
        "class_names": ["a"],
        "in_channels": 4,
        "model": {"w": torch.full((3,), value)},
    }


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(1.0), path)
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(3))
    assert state["format"] == checkpoint_module.CHECKPOINT_FORMAT


def test_interrupted_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(_state(1.0), path)

    def crash(obj, handle) -> None:
        handle.write(b"partial")  # a crash in the middle of writing
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_state(2.0), path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_load_checkpoint_rejects_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a readable rc3d_af checkpoint"):
        load_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an rc3d_af checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


# -- training ----------------------------------------------------------------------------------


def test_resume_continues_exactly(tiny_data: Path, tmp_path: Path) -> None:
    straight = _fit(tiny_config(tiny_data), tmp_path / "straight")
    _fit(tiny_config(tiny_data, epochs=1), tmp_path / "split")
    resumed = _fit(tiny_config(tiny_data), tmp_path / "split", resume=True)

    assert resumed.epoch == straight.epoch == 2
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"] == 1e-4
    first_moment = [s["exp_avg"] for s in straight.optimizer.state_dict()["state"].values()]
    resumed_moment = [s["exp_avg"] for s in resumed.optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(first_moment, resumed_moment, strict=True))
    assert [h["losses"] for h in resumed.history] == [h["losses"] for h in straight.history]
    # The run directory: resolved config, log lines of both sessions, the last checkpoint.
    assert load_config(tmp_path / "split" / "config.yaml") == tiny_config(tiny_data)
    log = (tmp_path / "split" / "train.log").read_text()
    assert "epoch 1/1" in log and "resumed from" in log and "epoch 2/2" in log
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 2


def test_moving_average_is_the_ema_of_every_steps_weights(tiny_data: Path, tmp_path: Path) -> None:
    decay = 0.9
    cfg = tiny_config(tiny_data, ema_decay=decay)
    with Trainer(cfg, tmp_path / "run", progress=False) as trainer:
        steps = []  # the raw weights each update of the average is given
        update = trainer.averaged.update_parameters

        def record_and_update(model):
            steps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            update(model)

        trainer.averaged.update_parameters = record_and_update
        trainer.fit()
    # One update per optimizer step, with the weights that step produced.
    assert len(steps) == trainer.averaged.n_averaged == 2 * len(trainer.loader) > 2
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in steps[-1].items())
    # By hand: the first update copies the weights, each later one moves decay of the way back.
    expected = dict(steps[0])
    for weights in steps[1:]:
        expected = {k: decay * expected[k] + (1 - decay) * w for k, w in weights.items()}
    averaged = trainer.inference_model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(averaged[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert not all(torch.equal(averaged[k], steps[-1][k]) for k in expected)  # not the raw weights
    # The checkpoint holds both; inference rebuilds the averaged model.
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["averaged_steps"] == len(steps)
    assert all(torch.equal(state["model"][k], steps[-1][k]) for k in expected)
    rebuilt = checkpoint_module.model_from_checkpoint(state, cfg, torch.device("cpu")).state_dict()
    assert all(torch.equal(rebuilt[k], averaged[k]) for k in expected)


def test_resume_continues_the_moving_average_exactly(tiny_data: Path, tmp_path: Path) -> None:
    straight = _fit(tiny_config(tiny_data, ema_decay=0.9), tmp_path / "straight")
    _fit(tiny_config(tiny_data, ema_decay=0.9, epochs=1), tmp_path / "split")
    resumed = _fit(tiny_config(tiny_data, ema_decay=0.9), tmp_path / "split", resume=True)
    assert int(resumed.averaged.n_averaged) == int(straight.averaged.n_averaged)
    for name, value in straight.inference_model.state_dict().items():
        assert torch.equal(value, resumed.inference_model.state_dict()[name]), name


def test_lr_factor_step_cosine_and_warmup_by_hand() -> None:
    from rc3d_af.config import TrainConfig
    from rc3d_af.engine.trainer import lr_factor

    # Step: 3 steps an epoch, milestones after epochs 1 and 2 (the per-epoch MultiStepLR's values).
    step = lr_factor(TrainConfig(epochs=4, lr_milestones=(1, 2), lr_gamma=0.5), 3)
    assert [step(i) for i in range(12)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
    # Cosine over 4 steps: (1 + cos(pi * i / 4)) / 2; with a warm-up of 1 epoch = 2 steps.
    cosine = lr_factor(TrainConfig(epochs=2, lr_schedule="cosine"), 2)
    assert [cosine(i) for i in range(4)] == pytest.approx([1.0, (1 + 2**-0.5) / 2, 0.5, (1 - 2**-0.5) / 2])
    warm = lr_factor(TrainConfig(epochs=2, lr_schedule="cosine", warmup_epochs=1.0), 2)
    assert [warm(i) for i in range(4)] == pytest.approx([0.5, (1 + 2**-0.5) / 2, 0.5, (1 - 2**-0.5) / 2])


def test_a_cosine_run_steps_lr_every_batch_and_resumes_exactly(tiny_data: Path, tmp_path: Path) -> None:
    from rc3d_af.engine.trainer import lr_factor

    schedule = {"lr_schedule": "cosine", "warmup_epochs": 0.5}
    straight = _fit(tiny_config(tiny_data, **schedule, log_every=1), tmp_path / "straight")
    steps = 2 * len(straight.loader)
    assert straight.scheduler.last_epoch == steps
    assert straight.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # the end of the curve
    # Every step's log line shows the lr that step was taken with.
    log = (tmp_path / "straight" / "train.log").read_text()
    logged = re.findall(r" step (\d+) \(batch \d+/\d+\) lr (\S+) ", log)
    factor = lr_factor(straight.cfg.train, len(straight.loader))
    assert [lr for _, lr in logged] == [f"{1e-3 * factor(int(n) - 1):.3g}" for n, _ in logged]
    assert len(logged) == steps and len({lr for _, lr in logged}) > 2
    _fit(tiny_config(tiny_data, **schedule, epochs=1), tmp_path / "split")  # another curve: refused
    with pytest.raises(InputError, match="a cosine run resumes only with its own epochs"):
        Trainer(tiny_config(tiny_data, **schedule), tmp_path / "split", resume=True, progress=False)
    shutil.rmtree(tmp_path / "split")
    with Trainer(tiny_config(tiny_data, **schedule), tmp_path / "split", progress=False) as first:
        first.train_one_epoch()
        first._save_checkpoints(EpochStats(1, 0.0, {}, 0, 0.0, 1))
    resumed = _fit(tiny_config(tiny_data, **schedule), tmp_path / "split", resume=True)
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_resume_refuses_a_changed_config(tiny_data: Path, tmp_path: Path) -> None:
    _fit(tiny_config(tiny_data, epochs=1), tmp_path / "run")
    with pytest.raises(InputError, match=r"train\.lr is 0\.01 but .*last\.pt was trained with 0\.001"):
        Trainer(tiny_config(tiny_data, lr=1e-2), tmp_path / "run", resume=True, progress=False)


def test_best_checkpoint_follows_the_selection_metric(tiny_data: Path, tmp_path: Path) -> None:
    scores = iter([0.2, 0.5, 0.3])

    def scripted_evaluation(trainer: Trainer) -> dict:
        value = next(scores)
        return {
            "subset": "test",
            "tiou_thresholds": [0.3, 0.5, 0.7],
            "mAP": [0.9, value, 0.1],
            "average_mAP": 0.4,
        }

    trainer = _fit(
        tiny_config(tiny_data, epochs=3, eval_every=1), tmp_path / "run", evaluate=scripted_evaluation
    )
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 2 and best["best"] == {"epoch": 2, "score": 0.5}
    assert trainer.best == {"epoch": 2, "score": 0.5}
    assert [h["evaluation"]["mAP"][1] for h in trainer.history] == [0.2, 0.5, 0.3]


def test_inference_gives_every_test_video_detections_in_seconds(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, epochs=1)
    trainer = _fit(cfg, tmp_path / "run")
    results = infer_split(trainer.model, cfg, trainer.annotations, trainer.test_set, trainer.device)
    test_videos = {v for v, video in trainer.annotations.videos.items() if video.subset == "test"}
    assert set(results.videos) == test_videos
    for video_id, found in results.videos.items():
        duration = trainer.annotations.videos[video_id].duration
        assert 0 < len(found) <= cfg.model.top_k
        assert (found.segments[:, 0] >= 0).all() and (found.segments[:, 1] <= duration).all()
        assert (found.segments[:, 1] > found.segments[:, 0]).all()
        assert (np.diff(found.scores) <= 0).all()  # sorted by score
        assert set(found.labels) <= set(trainer.annotations.class_names)


# -- chance baselines --------------------------------------------------------------------------


def _results() -> Results:
    results = Results()
    results.add("a", [[1.0, 2.0], [3.0, 9.0]], [0.9, 0.5], ["x", "y"])
    results.add("b", [[0.0, 1.0]], [0.7], ["z"])
    results.add("c", [[50.0, 60.0]], [0.6], ["x"])
    return results


def test_shuffle_labels_keeps_segments_scores_and_label_counts() -> None:
    original = _results()
    shuffled = shuffle_labels(original, seed=3)
    labels = sorted(label for v in shuffled.videos.values() for label in v.labels)
    assert labels == ["x", "x", "y", "z"]
    for video_id, video in original.videos.items():
        assert np.array_equal(shuffled.videos[video_id].segments, video.segments)
        assert np.array_equal(shuffled.videos[video_id].scores, video.scores)


def test_shuffle_videos_moves_every_list_and_clips(tiny_data: Path) -> None:
    annotations = load_annotations(tiny_data)
    ids = sorted(annotations.videos)[:3]
    original = Results()
    for i, video_id in enumerate(ids):
        original.add(video_id, [[0.0, 1e6]], [0.5], [f"label{i}"])  # beyond every video's end
    shuffled = shuffle_videos(original, annotations, seed=0)
    assert sorted(shuffled.videos) == ids
    for video_id, video in shuffled.videos.items():
        assert video.labels != original.videos[video_id].labels  # no video keeps its own predictions
        assert video.segments[0, 1] == annotations.videos[video_id].duration  # clipped to the new video


# -- denormal floats ----------------------------------------------------------------------------

DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def _denormal_survives() -> bool:
    return bool(torch.tensor([DENORMAL]) * 1.0 != 0)


needs_flush_mode = pytest.mark.skipif(
    not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals"
)


@needs_flush_mode
def test_denormals_flushed_inside_the_block_and_put_back_after() -> None:
    assert _denormal_survives()
    with denormals_flushed():
        assert not _denormal_survives()
        with denormals_flushed(False):  # nested: IEEE inside, the outer mode back after
            assert _denormal_survives()
        assert not _denormal_survives()
    assert _denormal_survives()
    with pytest.raises(RuntimeError), denormals_flushed():
        raise RuntimeError("the mode is put back on errors too")
    assert _denormal_survives()


@needs_flush_mode
@pytest.mark.parametrize("flush", [True, False])
def test_training_steps_and_inference_follow_train_flush_denormal(
    tiny_data: Path, tmp_path: Path, flush: bool
) -> None:
    cfg = tiny_config(tiny_data, epochs=1, flush_denormal=flush)
    seen: list[bool] = []  # per forward: did a denormal survive?
    with Trainer(cfg, tmp_path / "run", progress=False) as trainer:
        trainer.model.register_forward_pre_hook(lambda module, args: seen.append(_denormal_survives()))
        trainer.train_one_epoch()
        trained = len(seen)
        infer_split(trainer.model, cfg, trainer.annotations, trainer.test_set, trainer.device)
    assert trained > 0 and len(seen) > trained
    assert seen == [not flush] * len(seen)
    assert _denormal_survives()  # the mode does not leak out of training or inference

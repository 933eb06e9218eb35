"""What makes training independent of the process layout, in one process: the global batches and
their shares, the per-window generators, the global loss normalisers; and the device path on the
CPU: bfloat16 autocast for both detectors (training, inference, RoI pooling in float32), data
loading workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_cli_rc3d import TINY_RC3D
from test_engine import tiny_config as engine_config

from rc3d_af.config import config_from_dict, config_to_dict
from rc3d_af.data.synthetic import generate_synthetic
from rc3d_af.engine.batching import GlobalBatchSampler, window_generators
from rc3d_af.engine.inference import predict_windows
from rc3d_af.engine.trainer import Trainer
from rc3d_af.models.layers.poolers import RoIPooler
from rc3d_af.models.losses import anchor_free_losses, global_counts, mean_over
from rc3d_af.models.targets import PointTargets
from rc3d_af.ops import roi_align_1d, roi_pool_1d


# -- global batches and generators -----------------------------------------------------------------
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_the_shares_of_the_processes_make_up_each_global_batch(world_size: int) -> None:
    shares = [GlobalBatchSampler(21, 8, seed=3, rank=r, world_size=world_size) for r in range(world_size)]
    for sampler in shares:
        sampler.set_epoch(2)
    batches = shares[0].global_batches()
    assert [len(b) for b in batches] == [8, 8, 5] and sorted(torch.cat(batches).tolist()) == list(range(21))
    for k, parts in enumerate(zip(*shares, strict=True)):
        assert [i for part in parts for i in part] == batches[k].tolist()  # rank order, contiguous
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert len(shares[0]) == 3


def test_each_epoch_has_its_permutation_and_a_seed_gives_the_same_ones() -> None:
    sampler = GlobalBatchSampler(50, 50, seed=0)
    first = sampler.global_batches()[0]
    sampler.set_epoch(2)
    second = sampler.global_batches()[0]
    assert not torch.equal(first, second)
    again = GlobalBatchSampler(50, 50, seed=0)
    assert torch.equal(again.global_batches()[0], first)
    assert not torch.equal(GlobalBatchSampler(50, 50, seed=1).global_batches()[0], first)
    with pytest.raises(ValueError, match="not a multiple of world_size"):
        GlobalBatchSampler(50, 7, seed=0, world_size=2)


def test_a_windows_generator_depends_on_seed_epoch_and_window_only() -> None:
    def draws(seed: int, epoch: int, indices: list[int]) -> list[float]:
        return [
            float(torch.rand(1, generator=g))
            for g in window_generators(seed, epoch, indices, torch.device("cpu"))
        ]

    together = draws(0, 1, [4, 9, 2])
    assert draws(0, 1, [9]) == together[1:2] and draws(0, 1, [2, 4]) == [together[2], together[0]]
    assert len({*together, *draws(0, 2, [4, 9, 2]), *draws(1, 1, [4, 9, 2])}) == 9


# -- global loss normalisers -------------------------------------------------------------------------
def test_af_cls_through_mean_over_is_the_mean_cross_entropy_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    logits, distances = torch.randn(3, 200, 21, generator=g), torch.rand(3, 200, 2, generator=g)
    labels = torch.randint(0, 21, (3, 200), generator=g)
    terms = anchor_free_losses(logits, distances, PointTargets(labels, torch.rand(3, 200, 2), 0))
    assert torch.equal(terms["af_cls"], F.cross_entropy(logits.flatten(0, 1), labels.flatten()))


def test_global_counts_divide_by_the_count_of_every_process() -> None:
    summed, source = torch.tensor(12.0), torch.ones(3, requires_grad=True)
    assert float(mean_over(summed, 4, source)) == 3.0
    with global_counts(lambda count: count + 8):  # another process holds 8 more
        assert float(mean_over(summed, 4, source)) == 1.0
        zero = mean_over(torch.tensor(0.0), 0, source)  # nothing here, something elsewhere
        assert float(zero) == 0.0
    with global_counts(lambda count: 0):  # nothing anywhere: a 0 attached to the graph
        empty = mean_over(summed, 0, source)
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.equal(source.grad, torch.zeros(3))
    assert float(mean_over(summed, 4, source)) == 3.0  # the hook ends with its block


# -- the device path on the CPU ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthetic(tmp_path_factory.mktemp("synth"), like="thumos14", videos=4, dim=16, seed=0)


def tiny_config(annotations: Path, model: str, **train):
    """test_engine's tiny A2Net config (1 epoch, batches of 4, 1 thread), or R-C3D + AF's in it."""
    cfg = config_to_dict(engine_config(annotations, epochs=1, batch_size=4, num_threads=1, **train))
    cfg["data"]["segments_beyond"] = "keep"
    if model == "rc3d_af":
        cfg["model"] = TINY_RC3D
    return config_from_dict(cfg)


def _fit(cfg, run_dir: Path) -> Trainer:
    threads = torch.get_num_threads()
    try:
        with Trainer(cfg, run_dir, progress=False) as trainer:
            trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return trainer


@pytest.mark.parametrize("model", ["a2net", "rc3d_af"])
def test_bfloat16_autocast_trains_and_infers_on_the_cpu(tiny_data: Path, tmp_path: Path, model: str) -> None:
    cfg = tiny_config(tiny_data, model, amp=True, amp_dtype="bfloat16")
    dtypes: list[torch.dtype] = []
    with Trainer(cfg, tmp_path / "run", progress=False) as trainer:
        assert trainer.amp == torch.bfloat16
        first_conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv1d))
        first_conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        history = trainer.fit()
        assert dtypes and set(dtypes) == {torch.bfloat16}  # the convolutions ran in bfloat16
        assert all(torch.isfinite(torch.tensor(v)) for v in history[0]["losses"].values())
        dtypes.clear()
        kwargs = {"batch_size": 4, "device": trainer.device}
        half = predict_windows(trainer.model, trainer.test_set, amp=torch.bfloat16, **kwargs)
        assert set(dtypes) == {torch.bfloat16}
        full = predict_windows(trainer.model, trainer.test_set, **kwargs)
    assert len(half) == len(full) == len(trainer.test_set)
    assert all(d.scores.dtype == torch.float32 and d.segments.dtype == torch.float32 for d in half)
    assert sum(len(d) for d in half) > 0


def test_float16_amp_on_the_cpu_falls_back_to_float32(tiny_data: Path, tmp_path: Path, caplog) -> None:
    with Trainer(tiny_config(tiny_data, "a2net", amp=True), tmp_path / "run", progress=False) as trainer:
        assert trainer.amp is None and not trainer.scaler.is_enabled()
    assert (tmp_path / "run" / "train.log").read_text().count("train.amp with float16 is a CUDA option") == 1


@pytest.mark.parametrize("kind", ["pool", "align"])
def test_rois_pool_in_float32_from_bfloat16_features(kind: str) -> None:
    features = torch.randn(2, 3, 40, generator=torch.Generator().manual_seed(0)).bfloat16()
    segments = [torch.tensor([[10.3, 57.9]]), torch.tensor([[0.6, 31.1], [20.2, 20.9]])]
    pooled = RoIPooler(kind, 4, stride=2)(features, segments)
    rois = torch.tensor([[0, 10.3, 57.9], [1, 0.6, 31.1], [1, 20.2, 20.9]])  # float32 boundaries
    op = roi_pool_1d if kind == "pool" else roi_align_1d
    expected = op(features.float(), rois, 4, 0.5)
    assert pooled.dtype == torch.bfloat16 and torch.equal(pooled, expected.bfloat16())


def test_data_loading_workers_change_nothing(tiny_data: Path, tmp_path: Path) -> None:
    inline = _fit(tiny_config(tiny_data, "rc3d_af"), tmp_path / "inline")
    workers = _fit(tiny_config(tiny_data, "rc3d_af", num_workers=1), tmp_path / "workers")
    for name, value in inline.model.state_dict().items():
        assert torch.equal(value, workers.model.state_dict()[name]), name
    kwargs = {"batch_size": 4, "device": torch.device("cpu")}
    a = predict_windows(inline.model, inline.test_set, **kwargs)
    b = predict_windows(inline.model, inline.test_set, num_workers=1, **kwargs)
    assert all(
        torch.equal(x.segments, y.segments) and torch.equal(x.scores, y.scores)
        for x, y in zip(a, b, strict=True)
    )

"""A2Net model: configuration, the paper configuration's counts, encode/decode, forward and training."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

import pytest
import torch

from rc3d_af.errors import InputError
from rc3d_af.models import ModelConfig, anchor_based, anchor_free, build_model, model_summary

TINY = ModelConfig(width_multiplier=1 / 64)  # 8..64 channels, same geometry as the paper


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny convolutions run ~50x slower with two threads on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- configuration -----------------------------------------------------------------------------------
def test_config_round_trip_and_defaults_are_the_paper() -> None:
    cfg = ModelConfig()
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    custom = ModelConfig(
        variant="anchor_free", num_levels=4, af_length_ranges=((0, 2), (2, 8), (8, 20), (20, 200))
    )
    assert ModelConfig.from_dict(custom.to_dict()) == custom
    assert (cfg.loss_gamma, cfg.loss_gamma_af, cfg.loss_gamma1, cfg.loss_gamma2) == (1.0, 30.0, 10.0, 10.0)
    assert cfg.branch_weight == 0.5 and cfg.level_channels[:6] == (512, 1024, 1024, 2048, 2048, 4096)
    assert ModelConfig.from_dict(None) == cfg


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variant": "fcos"}, r"model\.variant: expected one of a2net, anchor_free, anchor_based"),
        ({"num_levels": 8}, r"model\.num_levels: expected an integer in \[3, 7\]"),
        ({"num_levels": 2}, r"model\.num_levels"),
        ({"width_multiplier": 0}, r"model\.width_multiplier: expected a finite number > 0"),
        ({"base_kernel_size": 4}, r"model\.base_kernel_size: expected an odd size"),
        ({"anchor_scales": ()}, r"model\.anchor_scales: expected at least one scale"),
        ({"branch_weight": 1.5}, r"model\.branch_weight: expected a finite number >= 0.0 and <= 1.0"),
        ({"nms_iou": float("nan")}, r"model\.nms_iou"),
        ({"top_k": 0}, r"model\.top_k: expected an integer >= 1"),
        ({"af_length_ranges": ((0, 4),)}, r"model\.af_length_ranges: expected 6 \[low, high\) pairs"),
        ({"af_length_ranges": ((0, 4),) * 5 + ((9, 3),)}, r"model\.af_length_ranges\[5\]"),
        ({"soft_nms_method": "hard"}, r"model\.soft_nms_method"),
        ({"level_channels": (8, 8)}, r"model\.level_channels: expected at least num_levels=6"),
    ],
)
def test_bad_config_values_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ModelConfig(**changes)


def test_unknown_and_malformed_sections_are_rejected() -> None:
    with pytest.raises(InputError, match=r"model: unknown keys \['gamma_af'\]"):
        ModelConfig.from_dict({"gamma_af": 30})
    with pytest.raises(InputError, match="model: expected a mapping"):
        ModelConfig.from_dict([1, 2])  # type: ignore[arg-type]


# -- the paper configuration (Table II, Table VI, section IV) ----------------------------------------
def conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k + c_out


def test_paper_configuration_counts() -> None:
    # THUMOS14: 20 classes, 2048-d two-stream I3D features, 128-feature windows.
    summary = model_summary(ModelConfig(), num_classes=20, in_channels=2048)
    levels = [512, 1024, 1024, 2048, 2048, 4096]
    lengths = [64, 32, 16, 8, 4, 2]
    backbone = conv(2048, 512, 1) + conv(512, 512, 9) + conv(512, 512, 3)
    backbone += sum(conv(a, b, 3) for a, b in itertools.pairwise(levels))
    anchor_based_head = sum(conv(c, 5 * (20 + 4), 3) for c in levels)
    anchor_free_head = sum(conv(c, 512, 1) for c in levels) + 4 * conv(512, 512, 3)
    anchor_free_head += conv(512, 21, 3) + conv(512, 2, 3) + 6  # predictors + per-level scales
    expected = backbone + anchor_based_head + anchor_free_head
    assert summary["parameters"] == expected
    assert round(expected / 1e6, 1) == 65.5  # the reference code's own count
    assert summary["anchors_per_window"] == 630 and summary["points_per_window"] == 126
    assert [lv["length"] for lv in summary["levels"]] == lengths
    assert [lv["channels"] for lv in summary["levels"]] == levels
    assert [lv["stride"] for lv in summary["levels"]] == [2, 4, 8, 16, 32, 64]
    macs = 128 * 2048 * 512 + 128 * 512 * 512 * 9 + 64 * 512 * 512 * 3
    macs += sum(n * a * b * 3 for n, a, b in zip(lengths[1:], levels[:-1], levels[1:], strict=True))
    macs += sum(n * c * 120 * 3 + n * c * 512 for n, c in zip(lengths, levels, strict=True))
    macs += 126 * (4 * 512 * 512 * 3 + 512 * 23 * 3)
    assert summary["macs_per_window"] == macs
    assert round(macs / 1e9, 2) == 1.24  # Table VI / XI "FLOPs"


def test_fewer_levels_and_single_branch_counts() -> None:
    three = model_summary(ModelConfig(num_levels=3, variant="anchor_free"), 20, 2048)
    assert three["anchors_per_window"] == 0 and three["points_per_window"] == 64 + 32 + 16
    seven = model_summary(ModelConfig(num_levels=7, variant="anchor_based"), 20, 2048)
    assert seven["points_per_window"] == 0 and seven["anchors_per_window"] == 5 * 127


# -- equations (1) and (3) ---------------------------------------------------------------------------
def random_segments(n: int, generator: torch.Generator) -> torch.Tensor:
    start = torch.rand(n, generator=generator) * 100
    return torch.stack([start, start + 0.5 + torch.rand(n, generator=generator) * 60], dim=-1)


def test_anchor_based_decode_inverts_encode() -> None:
    g = torch.Generator().manual_seed(0)
    segments = random_segments(200, g).double()
    anchors = torch.stack(
        [torch.rand(200, generator=g) * 128, 1 + torch.rand(200, generator=g) * 64], -1
    ).double()
    for alpha, beta in ((0.1, 0.1), (1.0, 0.5)):
        deltas = anchor_based.encode(segments, anchors, alpha, beta)
        torch.testing.assert_close(anchor_based.decode(deltas, anchors, alpha, beta), segments)
    # Equation (1) by hand: anchor (centre 10, width 4), deltas (2, ln 2 / 0.1) -> centre 10.8, width 8.
    out = anchor_based.decode(torch.tensor([[2.0, 6.931471805599453]]), torch.tensor([[10.0, 4.0]]), 0.1, 0.1)
    torch.testing.assert_close(out, torch.tensor([[6.8, 14.8]]))


def test_anchor_free_decode_inverts_encode() -> None:
    g = torch.Generator().manual_seed(1)
    segments = random_segments(200, g).double()
    points = segments[:, 0] + torch.rand(200, generator=g).double() * (segments[:, 1] - segments[:, 0])
    units = torch.tensor([2.0, 8.0]).double().repeat(100)
    distances = anchor_free.encode(points, segments, units)
    assert bool((distances >= 0).all())
    torch.testing.assert_close(anchor_free.decode(points, distances, units), segments)


# -- forward, losses, predict --------------------------------------------------------------------------
def test_forward_shapes_for_every_variant() -> None:
    x = torch.randn(2, 16, 128)
    for variant, keys in (
        ("a2net", {"af_cls", "af_reg", "points", "ab_cls", "ab_overlap", "ab_reg", "anchors"}),
        ("anchor_free", {"af_cls", "af_reg", "points"}),
        ("anchor_based", {"ab_cls", "ab_overlap", "ab_reg", "anchors"}),
    ):
        model = build_model(dataclasses.replace(TINY, variant=variant), num_classes=3, in_channels=16)
        out = model.head_outputs(x)
        assert set(out) == keys | {"window_size"} and int(out["window_size"]) == 128
        if "af_cls" in out:
            assert out["af_cls"].shape == (2, 126, 4) and out["af_reg"].shape == (2, 126, 2)
        if "ab_cls" in out:
            assert out["ab_cls"].shape == (2, 630, 4) and out["ab_reg"].shape == (2, 630, 2)
            assert out["ab_overlap"].shape == (2, 630)
        terms = model.losses(out, [torch.tensor([[10.0, 40.0]])] * 2, [torch.tensor([2])] * 2)
        branch_terms = {k for k in terms if k.startswith(("af_", "ab_"))}
        expected_terms = {k for k in ("af_cls", "af_reg") if "af_cls" in out}
        expected_terms |= {k for k in ("ab_cls", "ab_overlap", "ab_reg") if "ab_cls" in out}
        assert branch_terms == expected_terms
        detections = model.predict(out)
        assert len(detections) == 2 and all(len(d) <= TINY.pre_nms_top_k for d in detections)


def test_reference_code_matching_switches_through_the_model() -> None:
    cfg = dataclasses.replace(TINY, ab_negative_mining="hard", ab_match_on="predictions")
    model = build_model(cfg, num_classes=2, in_channels=4)
    terms = model.losses(
        model.head_outputs(torch.randn(2, 4, 128)), [torch.tensor([[8.0, 40.0]])] * 2, [torch.tensor([1])] * 2
    )
    assert terms["num_ab_neg"].item() == terms["num_ab_pos"].item() > 0
    terms["total"].backward()


def test_a_longer_window_gives_proportionally_more_points() -> None:
    model = build_model(TINY, num_classes=2, in_channels=4)
    out = model.head_outputs(torch.randn(1, 4, 256))
    assert out["points"].size(0) == 252 and out["anchors"].size(0) == 1260
    assert float(out["points"][-1, 0]) == 256 - 32  # last point of the top level (stride 64)


def test_bad_inputs_are_named() -> None:
    model = build_model(TINY, num_classes=2, in_channels=4)
    with pytest.raises(InputError, match="features: expected D = 4 channels"):
        model(torch.randn(1, 5, 128))
    with pytest.raises(
        InputError, match=r"window length T = 100 must be a positive multiple of 2\*\*num_levels = 64"
    ):
        model(torch.randn(1, 4, 100))
    with pytest.raises(InputError, match=r"features: expected a tensor \[B, D, T\]"):
        model(torch.randn(4, 128))
    out = model.head_outputs(torch.randn(2, 4, 128))
    with pytest.raises(InputError, match="expected 2 entries"):
        model.losses(out, [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.int64)])
    with pytest.raises(InputError, match="num_classes: expected a positive integer"):
        build_model(TINY, num_classes=0, in_channels=4)


def test_one_batch_overfit() -> None:
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY, width_multiplier=1 / 16), num_classes=2, in_channels=8)
    features = torch.randn(4, 8, 128)
    gt_segments = [
        torch.tensor([[10.0, 30.0], [60.0, 64.0]]),
        torch.tensor([[0.0, 100.0]]),
        torch.tensor([[40.0, 56.0]]),
        torch.tensor([[90.0, 126.0], [3.0, 7.0]]),
    ]
    gt_labels = [torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([0]), torch.tensor([1, 0])]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(150):
        terms = model.losses(model.head_outputs(features), gt_segments, gt_labels)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        history.append(terms["total"].item())
    assert history[-1] < history[0] / 20, history[::15]
    # Every ground truth found a point and an anchor of its own.
    assert terms["num_gt_unassigned_af"].item() == 0 and terms["num_gt_unmatched_ab"].item() == 0


def test_the_detector_contract_weighted_terms_in_training_detections_in_eval() -> None:
    torch.manual_seed(0)
    model = build_model(TINY, num_classes=2, in_channels=4)
    features = torch.randn(2, 4, 128)
    gt_segments, gt_labels = [torch.tensor([[8.0, 40.0]])] * 2, [torch.tensor([1])] * 2
    diagnostics: dict[str, float] = {}
    torch.manual_seed(1)
    weighted = model(features, gt_segments, gt_labels, diagnostics=diagnostics)
    # The paper's coefficients (eq. 4-5) on the unweighted terms the model reported.
    assert set(weighted) == {"af_cls", "af_reg", "ab_cls", "ab_overlap", "ab_reg"}
    assert weighted["af_cls"].item() == pytest.approx(30 * diagnostics["af_cls"])
    assert weighted["ab_reg"].item() == pytest.approx(10 * diagnostics["ab_reg"])
    assert sum(weighted.values()).item() == pytest.approx(diagnostics["total"])
    assert diagnostics["num_ab_pos"] > 0
    with pytest.raises(InputError, match="required in training mode"):
        model(features)
    model.eval()
    detections = model(features)
    assert len(detections) == 2 and all(len(d) <= TINY.pre_nms_top_k for d in detections)

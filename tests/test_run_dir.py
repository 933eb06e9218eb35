"""Run folders of `rc3d-af train`: no silent overwrite, --resume/--force, what Ctrl-C says, step
lines in train.log, metrics.jsonl, the loss terms the model returns, TensorBoard."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from own_data import TINY, write_config, write_dataset
from rc3d_af.cli import main
from rc3d_af.engine.trainer import Trainer


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    return write_config(root / "config.yaml", write_dataset(root / "data"))


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", str(config), "--out", str(out), "--no-progress", *TINY, *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_run_folder_with_a_checkpoint_is_refused_then_resumed_or_forced(
    config: Path, tmp_path: Path, capsys
):
    out = tmp_path / "run"
    assert _train(config, out) == 0
    before = _snapshot(out)
    assert _train(config, out) == 2
    err = capsys.readouterr().err
    assert "already holds a run (last.pt)" in err and "--resume" in err and "--force" in err
    assert _snapshot(out) == before  # nothing written: last.pt, train.log, metrics.jsonl untouched
    # --resume continues it (one more epoch), --force deletes it and starts over.
    assert _train(config, out, "--resume", "--set", "train.epochs=2") == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert _train(config, out, "--force") == 0
    assert "--force: deleted last.pt, train.log, metrics.jsonl, config.yaml" in capsys.readouterr().err
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    assert (out / "train.log").read_text().count("training a2net") == 1  # a fresh log
    assert _train(config, tmp_path / "nothing_there", "--resume") == 2
    assert "--resume: no checkpoint" in capsys.readouterr().err


def test_ctrl_c_says_what_was_saved_and_how_to_resume(config: Path, tmp_path: Path, monkeypatch, capsys):
    original = Trainer.train_one_epoch

    def interrupted_in_epoch_2(self: Trainer):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted_in_epoch_2)
    out = tmp_path / "run"
    assert _train(config, out, "--set", "train.epochs=2") == 130
    err = capsys.readouterr().err
    assert f"saved {out / 'last.pt'} (after epoch 1 of 2), train.log, metrics.jsonl" in err
    command = err.split("Resume with:\n", 1)[1].strip()
    argv = shlex.split(command)
    assert (
        argv[:2] == ["rc3d-af", "train"] and "--resume" in argv and argv[argv.index("--out") + 1] == str(out)
    )
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    assert main(argv[1:]) == 0  # the printed command, as printed
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_ctrl_c_before_the_first_checkpoint(config: Path, tmp_path: Path, monkeypatch, capsys):
    def interrupted(self: Trainer):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted)
    assert _train(config, tmp_path / "run") == 130
    assert "no checkpoint was saved" in capsys.readouterr().err


def test_step_lines_and_metrics_jsonl(config: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert _train(config, out, "--set", "train.log_every=1", "--set", "train.epochs=2") == 0
    log = (out / "train.log").read_text()
    steps = [line for line in log.splitlines() if " step " in line]
    batches = int(steps[0].split("(batch 1/")[1].split(")")[0])
    assert len(steps) == 2 * batches  # one line per optimizer step, numbered across epochs
    assert f"epoch 2/2 step {batches + 1} (batch 1/{batches})" in log and "total " in steps[0]
    assert " step " not in capsys.readouterr().err  # the console shows the progress bar instead
    entries = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in entries] == [1, 2]
    assert {"total", "af_cls", "ab_reg", "num_af_fg"} <= set(entries[0]["losses"])
    assert entries[0]["windows"] > 0 and entries[0]["seconds"] > 0 and entries[0]["lr"] == pytest.approx(1e-3)


def test_loss_terms_are_whatever_the_model_returns(config: Path, tmp_path: Path, monkeypatch):
    def two_stage_step(self: Trainer, batch):
        return {"rpn_cls": 0.5, "total": 1.5, "det_reg": 1.0, "num_proposals": 64.0}

    monkeypatch.setattr(Trainer, "train_step", two_stage_step)
    out = tmp_path / "run"
    assert _train(config, out) == 0
    epoch_line = next(line for line in (out / "train.log").read_text().splitlines() if "epoch 1/1 lr" in line)
    assert "total 1.5000 rpn_cls 0.5000 det_reg 1.0000 |" in epoch_line  # total first, counts left out
    losses = json.loads((out / "metrics.jsonl").read_text())["losses"]
    assert losses == {"rpn_cls": 0.5, "total": 1.5, "det_reg": 1.0, "num_proposals": 64.0}


def test_tensorboard_missing_is_a_clear_error(config: Path, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as without the package
    out = tmp_path / "run"
    assert _train(config, out, "--set", "train.tensorboard=true") == 2
    assert "train.tensorboard: true needs the tensorboard package" in capsys.readouterr().err
    assert not out.exists()


def test_tensorboard_scalars(config: Path, tmp_path: Path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert _train(config, out, "--set", "train.tensorboard=true") == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"epoch/total", "epoch/lr", "train_step/total", "train_step/af_cls"} <= tags
    total = json.loads((out / "metrics.jsonl").read_text())["losses"]["total"]
    assert events.Scalars("epoch/total")[0].value == pytest.approx(total, rel=1e-6)

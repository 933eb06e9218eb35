"""Data parallel on torch.distributed (gloo, CPU): two processes train the weights of one, shard
inference to the same files, resume bit-exactly (and with another number of processes), write from
rank 0 only, refuse a global batch they cannot split, stop when one of them fails, and two torchrun
launchers (one process each, "two nodes" on 127.0.0.1) form one job.

Cost: the two-process commands run in ONE pair of processes (tests/distributed_worker.py, started
with torchrun's variables) plus two real torchrun launches; interpreter start-up dominates.

Tolerance of "the same weights" (two processes vs one): ``rtol=1e-5, atol=1e-6`` after 4 steps.
The two runs compute the same sums in other orders (each process's partial sums, gloo's
all-reduce, convolutions on batches of 7 instead of 14), each rounding at float32 precision
(about 1e-7 relative); measured on these runs: at most 7e-7 of a tensor's largest value. With the
local counts instead of the global ones the difference was 6-25%, with RoI draws that depended on
the batch 0.2%: far beyond the tolerance. Inference
shards whole batches, so with the same thread count its files are byte-identical.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_cli_rc3d import TINY_RC3D

from rc3d_af.cli import main
from rc3d_af.config import load_config
from rc3d_af.engine.batching import GlobalBatchSampler
from rc3d_af.engine.checkpoint import load_checkpoint
from rc3d_af.engine.datasets import load_data, make_dataset

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
TIMEOUT = 300  # seconds for one launch; nothing may hang the suite
BATCH = 14  # global batch: 15 training windows -> batches of 14 and 1, so one process's share is empty
TINY_A2NET = {"num_levels": 3, "width_multiplier": 0.03125, "af_head_channels": 32}


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def environment() -> dict[str, str]:
    """The child environment: this interpreter's packages, one thread per process (as torchrun)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def launch(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the command lines together (one job's processes); kill them all after TIMEOUT."""
    processes = [
        subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c, e in commands
    ]
    deadline = time.monotonic() + TIMEOUT
    outputs = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=max(deadline - time.monotonic(), 1))
            outputs.append(subprocess.CompletedProcess(process.args, process.returncode, out))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail(f"a distributed launch did not finish in {TIMEOUT} s: {commands}")
    return outputs


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 THUMOS14-timed videos (15 training windows of 64), configs of both detectors; A2Net with
    SGD (whose step is proportional to the gradient: a wrong gradient scale shows) and an
    evaluation after epoch 2 (sharded inference inside training), R-C3D + AF with Adam; 2 epochs of
    2 global batches of 14 and 1."""
    root = tmp_path_factory.mktemp("ddp")
    assert (
        main(["synth", "--like", "thumos14", "--videos", "4", "--dim", "16", "--out", str(root / "data")])
        == 0
    )
    folder = root / "data"
    data = {"annotations": str(folder / "annotations.json"), "features": str(folder / "features"),
            "window_size": 64, "train_stride": 32, "test_stride": 64, "segments_beyond": "keep"}  # fmt: skip
    train = {"epochs": 2, "batch_size": BATCH, "lr": 1e-3, "lr_milestones": [1], "device": "cpu",
             "num_threads": 1, "log_every": 1}  # fmt: skip
    test = {"tiou_thresholds": [0.3, 0.5, 0.7], "by_duration": False, "batch_size": 8}
    configs = {
        "a2net": {"model": TINY_A2NET, "train": {**train, "optimizer": "sgd", "eval_every": 2}},
        "rc3d_af": {"model": TINY_RC3D, "train": train},
    }
    for name, sections in configs.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump({"data": data, **sections, "test": test}))
    return root


def _train_args(workspace: Path, name: str, out: Path, *extra: str) -> list[str]:
    return ["train", str(workspace / f"{name}.yaml"), "--out", str(out), "--no-progress", *extra]


def _test_videos(workspace: Path) -> list[str]:
    annotations = json.loads((workspace / "data" / "annotations.json").read_text())["database"]
    return sorted(str(workspace / "data" / "features" / f"{v}.npy") for v, a in annotations.items()
                  if a["subset"] == "test")  # fmt: skip


@pytest.fixture(scope="module")
def multinode(workspace: Path) -> tuple[Path, str]:
    """One epoch of A2Net by two torchrun launchers of one process each ("nodes" 0 and 1, c10d
    rendezvous on 127.0.0.1); a copy of its checkpoint is kept for a one-process resume."""
    out = workspace / "runs" / "multinode"
    (port,) = free_ports(1)
    launcher = torchrun(
        "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
        "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "rc3d_af_test", "-m", "rc3d_af",
        *_train_args(workspace, "a2net", out, "--set", "train.epochs=1"),
    )  # fmt: skip
    runs = launch([(launcher, environment()), (launcher, environment())])
    log = "\n".join(r.stdout for r in runs)
    assert [r.returncode for r in runs] == [0, 0], log
    shutil.copytree(out, workspace / "runs" / "multinode_then_one")
    return out, log


@pytest.fixture(scope="module")
def parallel(workspace: Path, multinode) -> tuple[Path, list[int], list[int], str]:
    """The two-process commands, in one pair of processes: train, test, proposals and detect for both
    detectors, the resume of the multi-node run to epoch 2, and a batch the world size does not
    divide. Returns the runs folder, each rank's exit statuses and the output."""
    runs = workspace / "runs"
    checkpoint = {name: str(runs / name / "last.pt") for name in ("a2net", "rc3d_af")}
    jobs = [
        _train_args(workspace, "a2net", runs / "a2net"),
        _train_args(workspace, "rc3d_af", runs / "rc3d_af"),
        ["test", "--checkpoint", checkpoint["a2net"], "--out", str(runs / "a2net_test"), "--no-plots"],
        ["test", "--checkpoint", checkpoint["rc3d_af"], "--out", str(runs / "rc3d_af_test"), "--no-plots"],
        ["proposals", "--checkpoint", checkpoint["rc3d_af"], "--out", str(runs / "rc3d_af_proposals"),
         "--no-plots"],
        ["detect", *_test_videos(workspace), "--checkpoint", checkpoint["a2net"], "--fps", "30",
         "--out", str(runs / "a2net_detect")],
        _train_args(workspace, "a2net", runs / "multinode", "--resume"),
        _train_args(workspace, "a2net", runs / "indivisible", "--set", "train.batch_size=7"),
    ]  # fmt: skip
    ports = free_ports(len(jobs))
    (workspace / "jobs.json").write_text(
        json.dumps([{"argv": a, "port": p} for a, p in zip(jobs, ports, strict=True)])
    )
    statuses = workspace / "statuses"
    worker = [sys.executable, str(REPO / "tests" / "distributed_worker.py"), str(workspace / "jobs.json"),
              str(statuses)]  # fmt: skip
    ranks = []
    for rank in range(WORLD):
        env = environment()
        env.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1")
        ranks.append((worker, env))
    outputs = launch(ranks)
    log = "\n".join(o.stdout for o in outputs)
    assert [o.returncode for o in outputs] == [0] * WORLD, log
    codes = [json.loads(Path(f"{statuses}.rank{r}.json").read_text()) for r in range(WORLD)]
    return runs, codes[0], codes[1], log


@pytest.fixture(scope="module")
def single(workspace: Path) -> Path:
    """One process: both detectors trained as in ``parallel`` (train.num_threads 1, as each of the
    two processes)."""
    runs = workspace / "single"
    threads = torch.get_num_threads()
    try:
        for name in ("a2net", "rc3d_af"):
            assert main(_train_args(workspace, name, runs / name)) == 0
    finally:
        torch.set_num_threads(threads)
    return runs


def _models(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_the_last_global_batch_leaves_a_process_without_windows(workspace: Path) -> None:
    # The premise of the tests below: a process runs the stand-in of an empty share.
    cfg = load_config(workspace / "a2net.yaml")
    annotations, store = load_data(cfg.data)
    windows = len(make_dataset(cfg.data, annotations, store, "validation", training=True))
    sampler = GlobalBatchSampler(windows, BATCH, seed=0, rank=1, world_size=WORLD)
    assert windows == 15 and [len(share) for share in sampler] == [7, 0]


@pytest.mark.parametrize("name", ["a2net", "rc3d_af"])
def test_two_processes_train_the_weights_of_one(parallel, single: Path, name: str) -> None:
    runs, codes, _, _ = parallel
    assert codes[:2] == [0, 0]
    two, one = load_checkpoint(runs / name / "last.pt"), load_checkpoint(single / name / "last.pt")
    assert two["model"].keys() == one["model"].keys()
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert not all(torch.equal(two["model"][k], v) for k, v in one["model"].items())  # two real runs
    for a, b in zip(two["history"], one["history"], strict=True):
        assert a["losses"]["total"] == pytest.approx(b["losses"]["total"], rel=1e-6)
        assert a["windows"] == b["windows"] == 15
    assert [h["world_size"] for h in two["history"]] == [2, 2]
    assert [h["world_size"] for h in one["history"]] == [1, 1]
    if name == "a2net":  # evaluated inside training, the test windows shared out over the processes
        maps = [h["evaluation"]["mAP"] for h in (two["history"][-1], one["history"][-1])]
        assert maps[0] == pytest.approx(maps[1], abs=1e-2) and two["best"]["epoch"] == 2


def test_rank_zero_alone_writes_the_run(parallel) -> None:
    runs, _, _, log = parallel
    run = runs / "a2net"
    files = ["best.pt", "config.yaml", "last.pt", "metrics.jsonl", "train.log"]
    assert sorted(p.name for p in run.iterdir()) == files
    text = (run / "train.log").read_text()
    assert text.count("INFO epoch 1/2 lr") == 1 and text.count("INFO epoch 2/2 lr") == 1
    assert text.count("(batch 1/2)") == 2  # one step line per step, from one process
    assert "2 processes of 7 windows per batch" in text
    assert [json.loads(line)["world_size"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [
        2,
        2,
    ]
    assert not any(key.startswith("module.") for key in _models(run / "last.pt"))  # the unwrapped model
    assert log.count(f"checkpoints in {run}\n") == 1
    warning = "never occur in the training split"
    assert log.count(warning) == 6  # once per command that loads the data (rank 0 says it)


@pytest.mark.parametrize("name", ["a2net", "rc3d_af"])
def test_sharded_test_writes_the_files_of_one_process(parallel, tmp_path: Path, name: str) -> None:
    runs, codes, _, _ = parallel
    assert codes[2:4] == [0, 0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes: the same kernels, the same bits
    try:
        args = ["test", "--checkpoint", str(runs / name / "last.pt"), "--out", str(tmp_path), "--no-plots"]
        assert main(args) == 0
    finally:
        torch.set_num_threads(threads)
    sharded = runs / f"{name}_test"
    assert (sharded / "results.json").read_bytes() == (tmp_path / "results.json").read_bytes()
    two, one = (json.loads((p / "metrics.json").read_text()) for p in (sharded, tmp_path))
    assert (two.pop("world_size"), one.pop("world_size")) == (2, 1)
    assert two == one and two["predictions"] > 0


def test_sharded_proposals_and_detect_write_the_files_of_one_process(
    parallel, workspace: Path, tmp_path: Path
) -> None:
    runs, codes, _, _ = parallel
    assert codes[4:6] == [0, 0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        checkpoint = str(runs / "rc3d_af" / "last.pt")
        assert (
            main(["proposals", "--checkpoint", checkpoint, "--out", str(tmp_path / "p"), "--no-plots"]) == 0
        )
        videos = _test_videos(workspace)
        args = ["detect", *videos, "--checkpoint", str(runs / "a2net" / "last.pt"), "--fps", "30"]
        assert main([*args, "--out", str(tmp_path / "d")]) == 0
    finally:
        torch.set_num_threads(threads)
    sharded = runs / "rc3d_af_proposals"
    assert (sharded / "proposals.json").read_bytes() == (tmp_path / "p" / "proposals.json").read_bytes()
    two, one = (json.loads((p / "proposals_metrics.json").read_text()) for p in (sharded, tmp_path / "p"))
    assert (two.pop("world_size"), one.pop("world_size")) == (2, 1) and two == one
    names = sorted(p.name for p in (runs / "a2net_detect").iterdir())
    assert names == sorted(f"{Path(v).stem}.json" for v in videos) and len(names) == 2
    for file in names:
        assert (runs / "a2net_detect" / file).read_bytes() == (tmp_path / "d" / file).read_bytes()


def test_two_launchers_then_a_two_process_resume_equal_one_two_process_run(parallel, multinode) -> None:
    runs, codes, _, _ = parallel
    _, log = multinode
    assert "2 processes of 7 windows per batch" in log
    assert codes[6] == 0
    resumed, straight = (
        load_checkpoint(runs / "multinode" / "last.pt"),
        load_checkpoint(runs / "a2net" / "last.pt"),
    )
    assert resumed["epoch"] == straight["epoch"] == 2
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key  # bit-exact: the same two-process sums
    momentum = [s["momentum_buffer"] for s in straight["optimizer"]["state"].values()]
    assert all(torch.equal(a["momentum_buffer"], b) for a, b in zip(resumed["optimizer"]["state"].values(),
                                                                     momentum, strict=True))  # fmt: skip
    assert [h["losses"] for h in resumed["history"]] == [h["losses"] for h in straight["history"]]


def test_a_two_process_run_resumes_with_one(parallel, workspace: Path) -> None:
    runs, _, _, _ = parallel
    out = runs / "multinode_then_one"
    threads = torch.get_num_threads()
    try:
        assert main(_train_args(workspace, "a2net", out, "--resume")) == 0
    finally:
        torch.set_num_threads(threads)
    resumed = load_checkpoint(out / "last.pt")
    assert [h["world_size"] for h in resumed["history"]] == [2, 1]
    for key, value in _models(runs / "a2net" / "last.pt").items():
        torch.testing.assert_close(resumed["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_a_batch_the_processes_cannot_split_is_refused_once(parallel) -> None:
    runs, codes0, codes1, log = parallel
    assert (codes0[7], codes1[7]) == (2, 2)
    message = "train.batch_size: 7 is the global batch, split evenly across the 2 processes"
    assert log.count(message) == 1 and "must be a multiple of 2 (e.g. 6 or 8)" in log
    assert not (runs / "indivisible").exists()


def test_a_failing_process_stops_the_job_with_its_message(workspace: Path) -> None:
    # NaN in a feature row that only rank 1 reads in the first step: rank 1 stops with the error,
    # rank 0 (waiting for rank 1 in a collective) is stopped by torchrun or by gloo; no hang.
    cfg = load_config(workspace / "a2net.yaml")
    annotations, store = load_data(cfg.data)
    dataset = make_dataset(cfg.data, annotations, store, "validation", training=True)
    sampler = GlobalBatchSampler(len(dataset), BATCH, seed=0, world_size=WORLD)
    first = sampler.global_batches()[0].tensor_split(WORLD)
    read_by_rank0 = {(w.video_id, r) for i in first[0].tolist() for w in [dataset.windows[i]]
                     for r in range(w.start_index, w.start_index + w.length)}  # fmt: skip
    window = dataset.windows[first[1][0]]
    row = next(r for r in range(window.start_index, window.start_index + window.length)
               if (window.video_id, r) not in read_by_rank0)  # fmt: skip
    features = workspace / "nan_features"
    shutil.copytree(workspace / "data" / "features", features)
    values = np.load(features / f"{window.video_id}.npy")
    values[row] = np.nan
    np.save(features / f"{window.video_id}.npy", values)
    out = workspace / "runs" / "failing"
    train = _train_args(workspace, "a2net", out, "--set", f"data.features={features}")
    command = torchrun("--standalone", "--nproc-per-node", str(WORLD), "-m", "rc3d_af", *train)
    (result,) = launch([(command, environment())])
    assert result.returncode != 0
    assert f"rc3d-af train: error: features of video '{window.video_id}'" in result.stdout
    assert f"non-finite value (NaN or inf) in feature row {row}" in result.stdout
    assert not (out / "last.pt").exists()

"""rc3d_af.commands.workers: a worker pool that ends with its owner, subprocesses of tasks included.

Each test runs a small owner script in a process of its own (it is the one the signal is sent to)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="process states are read from /proc")

OWNER = '''
import os, subprocess, sys
from pathlib import Path
from rc3d_af.commands.workers import worker_pool

def long_task(folder, name):
    """Like a peers run: a subprocess (the training) the worker waits for."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    partial = Path(folder, name + ".partial")
    partial.write_text(f"{os.getpid()} {child.pid}")
    partial.rename(Path(folder, name + ".pids"))  # whole or absent: the test must not read half a pid
    child.wait()
    return name

def double(x):
    return 2 * x

def fail():
    raise ValueError("this task failed")

if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a test runner may pass SIGINT on ignored
    mode, folder = sys.argv[1], sys.argv[2]
    with worker_pool(1) as pool:
        if mode == "long":
            futures = [pool.submit(long_task, folder, name) for name in ("first", "second")]
            print([future.result() for future in futures])
        else:
            bad, good = pool.submit(fail), pool.submit(double, 21)
            try:
                bad.result()
            except ValueError as exc:
                print("error:", exc)
            print("result:", good.result())
'''


def alive(pid: int) -> bool:
    """Running, or stopped: neither gone nor a zombie (an orphan's zombie may wait for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def start_owner(tmp_path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    return subprocess.Popen(
        [sys.executable, str(script), mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_owner_ends_the_workers_their_subprocesses_and_the_queue(tmp_path, signum):
    owner = start_owner(tmp_path, "long")
    try:
        first = tmp_path / "first.pids"
        wait_for(first.is_file, 60, "the first task")
        worker, training = (int(pid) for pid in first.read_text().split())
        assert alive(worker) and alive(training)
        owner.send_signal(signum)  # to the owner alone, as `kill PID` does
        _, stderr = owner.communicate(timeout=60)
    finally:
        owner.kill()
    assert owner.returncode != 0
    assert "interrupted: ending 1 worker process(es)" in stderr
    wait_for(lambda: not alive(worker) and not alive(training), 15, "the worker and its subprocess to end")
    time.sleep(2.0)  # a worker left behind would have started the queued task by now
    assert not (tmp_path / "second.pids").exists()


def test_a_failed_task_reaches_its_future_and_the_others_go_on(tmp_path):
    owner = start_owner(tmp_path, "errors")
    stdout, stderr = owner.communicate(timeout=120)
    assert owner.returncode == 0, stderr
    assert stdout.splitlines() == ["error: this task failed", "result: 42"]

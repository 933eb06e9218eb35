"""torch.distributed in one place: joining torchrun's process group, rank and world size, and the
few collectives the engine needs (sum of counts and values, gather of objects, barrier, work done
on rank 0 only).

``torchrun`` (``--standalone --nproc_per_node=N``, or ``--nnodes ... --rdzv-endpoint ...`` across
machines) starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`session` joins the process group when they are set
(gloo for CPU tensors, and nccl for CUDA tensors when CUDA is present) and leaves it at the end.
Without them (plain ``rc3d-af``) nothing here communicates: one process is rank 0 of a world of 1
and every function below is the identity of that case.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from rc3d_af.errors import InputError

__all__ = [
    "all_gather",
    "available_backends",
    "barrier",
    "check_divisible",
    "is_main",
    "launched",
    "local_rank",
    "on_main",
    "rank",
    "session",
    "shard",
    "sum_count",
    "sum_values",
    "world_size",
]

T = TypeVar("T")
# Long enough for rank 0's checkpoint writes and evaluations, short enough not to hang a job for
# hours when a peer vanished without torchrun noticing (torchrun stops the others when one fails).
TIMEOUT = timedelta(minutes=30)


def launched() -> bool:
    """Whether this process was started by torchrun (its environment variables are set)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def available_backends() -> dict[str, bool]:
    """The torch.distributed backends this torch build offers (``rc3d-af doctor``)."""
    if not dist.is_available():
        return {"gloo": False, "nccl": False, "mpi": False}
    return {
        "gloo": dist.is_gloo_available(),
        "nccl": dist.is_nccl_available(),
        "mpi": dist.is_mpi_available(),
    }


def _backend() -> str:
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"  # nccl for CUDA tensors (gradients), gloo for host objects
    return "gloo"


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Join torchrun's process group for the duration of a command (a no-op without torchrun, or
    when a group is already joined). Warnings (and logged warnings) are left to rank 0."""
    if not launched() or dist.is_initialized():
        yield
        return
    if not dist.is_available():
        raise InputError("torchrun: this torch build has no torch.distributed support")
    dist.init_process_group(_backend(), timeout=TIMEOUT)
    quiet = not is_main()  # every process checks the same data: rank 0 says it once
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore")
                logging.disable(logging.WARNING)
            yield
    finally:
        if quiet:
            logging.disable(logging.NOTSET)
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 .. world_size - 1 (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 without torchrun): the
    CUDA device it uses."""
    return int(os.environ.get("LOCAL_RANK", 0)) if world_size() > 1 else 0


def is_main() -> bool:
    """Rank 0: the process that writes files, logs and the progress bar."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        dist.barrier()


def sum_count(count: int) -> int:
    """``count`` summed over every process (the global batch's count of a loss normaliser)."""
    if world_size() == 1:
        return count
    value = torch.tensor([count], dtype=torch.int64)
    dist.all_reduce(value)
    return int(value)


def sum_values(values: dict[str, float]) -> dict[str, float]:
    """Each value summed over every process (float64); every process must pass the same keys."""
    if world_size() == 1:
        return dict(values)
    names = sorted(values)
    summed = torch.tensor([values[name] for name in names], dtype=torch.float64)
    dist.all_reduce(summed)
    reduced = dict(zip(names, summed.tolist(), strict=True))
    return {name: reduced[name] for name in values}


def all_gather(obj: T) -> list[T]:
    """Every process's ``obj`` (picklable; tensors on the CPU), in rank order, on every process."""
    if world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def shard(count: int) -> range:
    """This process's contiguous share of ``count`` items (shares differ by at most one item)."""
    size, index = world_size(), rank()
    return range(count * index // size, count * (index + 1) // size)


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run on rank 0 only, its result sent to every process.

    When ``fn`` raises :class:`InputError`, rank 0 raises it (its message is printed once) and the
    other processes exit with status 2 without a message of their own.
    """
    if world_size() == 1:
        return fn(*args, **kwargs)
    payload: list[Any] = [None]
    error: InputError | None = None
    if is_main():
        try:
            payload = [("ok", fn(*args, **kwargs))]
        except InputError as exc:
            error = exc
            payload = [("error", str(exc))]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "ok":
        return value
    if error is not None:
        raise error
    raise SystemExit(2)


def check_divisible(batch_size: int, source: str = "train.batch_size") -> int:
    """The per-process share of a global batch of ``batch_size``; InputError when the world size
    does not divide it."""
    size = world_size()
    if batch_size % size:
        raise InputError(
            f"{source}: {batch_size} is the global batch, split evenly across the {size} processes; "
            f"it must be a multiple of {size} (e.g. {batch_size - batch_size % size or size} or "
            f"{batch_size - batch_size % size + size}); the learning rate is not rescaled for you"
        )
    return batch_size // size

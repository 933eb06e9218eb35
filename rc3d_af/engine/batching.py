"""Training batches that do not depend on the process layout.

Each epoch draws one permutation of the whole training set from (``train.seed``, epoch) and cuts it
into global batches of ``train.batch_size``; under torchrun each process takes its contiguous share
of every global batch (:class:`GlobalBatchSampler`). Every random draw of a window's training step
comes from its own generator seeded from (``train.seed``, epoch, the window's index in the dataset)
(:func:`window_generators`). So a window sees the same batch-mates, the same negative / RoI sampling
and the same dropout whether one process trains or many, and a run resumes with any number of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from rc3d_af.data.dataset import collate_windows

__all__ = ["GlobalBatchSampler", "IndexedDataset", "collate_indexed", "derived_seed", "window_generators"]


def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence): nearby inputs give unrelated seeds."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def window_generators(
    seed: int, epoch: int, indices: Sequence[int], device: torch.device
) -> list[torch.Generator]:
    """One generator on ``device`` per window of a batch, seeded from (seed, epoch, window index).
    ``epoch`` is 1-based."""
    return [torch.Generator(device=device).manual_seed(derived_seed(seed, epoch, i)) for i in indices]


class GlobalBatchSampler(Sampler[list[int]]):
    """This process's share of every global batch of one epoch (call :meth:`set_epoch` first).

    Args:
        size: windows in the training set.
        batch_size: the global batch.
        seed: ``train.seed``.
        rank, world_size: this process and the number of processes.

    Global batch ``k`` is ``permutation[k * batch_size : (k + 1) * batch_size]`` of the epoch's
    permutation; process ``r`` takes its ``r``-th contiguous part (``batch_size / world_size`` windows;
    the parts of the last, shorter batch differ by at most one and may be empty).
    """

    def __init__(self, size: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not a multiple of world_size {world_size}")
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """The epoch (1-based) whose permutation :meth:`__iter__` yields."""
        self.epoch = epoch

    def global_batches(self) -> list[torch.Tensor]:
        """The epoch's global batches (window indices)."""
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator)
        return list(order.split(self.batch_size))

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield batch.tensor_split(self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)


class IndexedDataset(Dataset):
    """A dataset whose items also carry their ``index`` (the window generators' seed)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "index": index}


def collate_indexed(items: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """:func:`~rc3d_af.data.dataset.collate_windows` plus ``index`` (int64 ``[B]``); None for an empty
    share of a global batch."""
    if not items:
        return None
    batch = collate_windows(items)
    batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.int64)
    return batch

"""Packing (`--packing true`): several training examples share one row of up to `max_seq_length` tokens, so a step
spends (almost) no compute on padding.

Each global batch (the examples of one optimizer step, as `lit_gpt.train.dataset.epoch_batches` plans them for
every --order) is packed on its own, best-fit decreasing: the order decides which examples come together, packing
only fills rows with them. So a step trains on the same examples with or without packing; the loss (summed over
target tokens, divided by the batch's target count) and the gradients are the same, only the padding goes. Inside
a row the model keeps the examples apart: `GPT.forward(segments=...)` restarts positions at 0 with each example and
keeps attention inside it. Each example is shifted for next-token prediction before packing, so no target crosses
into the next example.

With packing, `micro_batch_size` counts rows: a forward pass takes up to micro_batch_size rows of up to
max_seq_length tokens (the memory ceiling of micro_batch_size examples of the longest length, as without packing),
and a step runs as many passes as its rows need, ceil(rows / (micro_batch_size x devices)) per device, instead of
batch_size / (micro_batch_size x devices). The plan depends only on the batch and the lengths: a resumed run packs
the same rows.
"""

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

from lit_gpt.train.dataset import TrainingSet


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins (lists of positions into `lengths`) whose lengths sum to at most `capacity`: longest item first (ties in
    the given order), each into the fullest bin it still fits, else a new bin. Inside a bin the positions keep the
    given order; bins come in the order they were opened."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin number), sorted: the first with room >= n is the best fit
    for position in sorted(range(len(lengths)), key=lambda p: -lengths[p]):
        n = lengths[position]
        if n > capacity:
            raise ValueError(f"an item of {n} tokens does not fit a row of {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k == len(free):
            bins.append([position])
            room, number = capacity - n, len(bins) - 1
        else:
            room, number = free.pop(k)
            bins[number].append(position)
            room -= n
        bisect.insort(free, (room, number))
    return [sorted(b) for b in bins]


def pack_batch(lengths: Sequence[int], batch: list[int], capacity: int) -> list[list[int]]:
    """The rows (lists of example indices) of one global batch: best-fit decreasing into rows of `capacity` tokens,
    the fullest rows first (so consecutive rows, which share a micro-batch, are of similar length)."""
    rows = [[batch[p] for p in b] for b in best_fit_decreasing([lengths[i] for i in batch], capacity)]
    tokens = [sum(lengths[i] for i in row) for row in rows]
    return [rows[r] for r in sorted(range(len(rows)), key=lambda r: -tokens[r])]  # stable: ties keep BFD's order


def lay_out_rows(rows: list[list[int]], sequence, fills: Sequence[tuple]) -> tuple[torch.Tensor, ...]:
    """Packed rows as tensors. rows[r] lists the keys (ints) of row r's sequences, in order; sequence(key) gives that
    sequence's equally long 1-D tensors (ids, targets, ...) and `fills` a (padding value, dtype) for each. Returns one
    (rows, T) tensor per fill (T the longest row), then `segments` (0, 1, ... per sequence in its row) and `key`
    (each position's key), both -1 on the right padding."""
    sequences = [[sequence(key) for key in row] for row in rows]
    T = max(1, max(sum(len(parts[0]) for parts in row) for row in sequences))
    out = [torch.full((len(rows), T), fill, dtype=dtype) for fill, dtype in fills]
    segments, keys = (torch.full((len(rows), T), -1, dtype=torch.long) for _ in range(2))
    for r, (row, row_keys) in enumerate(zip(sequences, rows)):
        start = 0
        for segment, (parts, key) in enumerate(zip(row, row_keys)):
            end = start + len(parts[0])
            for tensor, part in zip(out, parts):
                tensor[r, start:end] = part
            segments[r, start:end], keys[r, start:end] = segment, key
            start = end
    return (*out, segments, keys)


@dataclass(frozen=True)
class Packing:
    """How a step packs: rows of `capacity` tokens (the run's max_seq_length), `rows_per_micro_batch` rows per
    forward pass (--micro_batch_size)."""

    capacity: int
    rows_per_micro_batch: int

    def micro_batches(self, lengths: Sequence[int], batch: list[int], world: int) -> list[list[list[int]]]:
        """The step's micro-batches (lists of rows), as many as a multiple of `world`: rank r takes every world-th
        from the r-th, and every rank runs as many passes (the last ones may be empty: one padding token)."""
        rows = pack_batch(lengths, batch, self.capacity)
        parts = [rows[s: s + self.rows_per_micro_batch] for s in range(0, len(rows), self.rows_per_micro_batch)]
        return parts + [[]] * (-len(parts) % world)

    @staticmethod
    def collate(data: TrainingSet, rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
        """(input_ids, targets, segments), (rows, T) with T the longest row: each row's examples one after the other,
        segments 0, 1, ... per example and -1 on the right padding (targets -100 there)."""
        if not rows:
            rows = [[]]  # one padding token, no target: the pass a rank without rows still runs for its peers
        input_ids, targets, segments, _ = lay_out_rows(rows, lambda i: (data.inputs[i], data.targets[i]),
                                                       ((0, torch.long), (-100, torch.long)))
        return input_ids.to(device), targets.to(device), segments.to(device)

    @staticmethod
    def padding_stats(data: TrainingSet, micro_batches: list[list[list[int]]]) -> tuple[int, int]:
        """(real tokens, tokens processed) of packed micro-batches: each pads its rows to its longest row."""
        real = sum(data.lengths[i] for mb in micro_batches for row in mb for i in row)
        padded = sum(len(mb) * max(sum(data.lengths[i] for i in row) for row in mb) for mb in micro_batches if mb)
        return real, padded

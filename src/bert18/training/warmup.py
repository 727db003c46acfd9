"""Warm-ups over the first optimizer steps: short sequences first, small batches first.

**Sequence length.** Li, Zhang and He (2022, "The Stability-Efficiency Dilemma: Investigating Sequence
Length Warmup for Training GPT Models") start pretraining on truncated sequences and let the length grow
linearly to the full one; DeepSpeed's curriculum learning ships it as ``seqlen`` with a ``fixed_linear``
schedule and applies it to BERT pretraining too. The length at optimizer step ``t`` of a warmup over
``T`` steps is

    start + (full - start) * t / T, rounded down to a multiple of ``multiple_of`` (8: tensor-core
    friendly), never below ``start`` and, from step ``T`` on, the full length

as DeepSpeed's ``fixed_linear`` difficulty computes it. Each batch is truncated to that many positions
after collation, in the main process, before the Trainer counts the targets of the accumulation step:
the loss is normalised by the targets that remain, dynamic masks keep their rate over the positions
that remain, and the length is a pure function of the Trainer's ``global_step``, so every process
agrees and a resumed run truncates as the uninterrupted one did. Truncation cuts the end of a row, so
a sentence-level label could refer to a segment that is no longer there: only token-level tasks whose
labels sit on the positions themselves (MLM, capitalization, token-document relation) are accepted.

**Batch size.** ModernBERT (Warner et al., 2024) warms the batch size up from a small one to the full
one over its first tokens, as GPT-3 did. Here the rows per device of the micro-batches of step ``t``
grow by the same linear rule, from ``start`` to ``per_device_train_batch_size`` over ``steps``
optimizer steps (rounded down to a multiple of ``multiple_of``). Nothing is dropped or repeated: the
data is one endless sequence of passes, each a fresh permutation of the whole dataset (seeded), cut
into the batches of the schedule, so every example is seen once per pass, and an optimizer step that
straddles two passes never holds one twice (each pass's first examples avoid the previous pass's last). A
Trainer epoch is a fixed number of batches (those of a pass at the full batch size), and its boundary
falls where it falls inside a pass. The batch of a step is a pure function of the step, so every
rank takes its own slice of the same global batch, and a resumed run reads the batches the
uninterrupted one would have.
Map-style datasets only: a stream's order is the stream's (a streamed run refuses the key).
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from ..configuration_bert18 import tasks_where

# The batch entries that are not [batch, length, ...] tensors of the input positions.
_NOT_POSITIONAL = frozenset({"plm_target_positions", "plm_labels"})


# Tasks whose labels sit on the positions themselves (token level, a label per position): truncation keeps
# or cuts each label with its token. XLNet's permutation LM lists its targets by position and is excluded.
TRUNCATABLE_TASKS = frozenset(task for task in tasks_where(level="token") if task != "plm")


def linear_warmup(step: int, start: int, full: int, steps: int, multiple_of: int) -> int:
    """DeepSpeed's ``fixed_linear`` value at optimizer step ``step``: ``start`` growing linearly to ``full``
    over ``steps`` steps, rounded down to a multiple of ``multiple_of``, within ``[start, full]``."""
    if step >= steps:
        return full
    grown = start + (full - start) * step / steps
    return min(full, max(start, int(grown) - int(grown) % multiple_of))


def _read_recipe(name: str, value: Any, **fixed: int) -> dict[str, int]:
    """``{start, steps[, multiple_of]}`` from a recipe mapping, with ``fixed`` added, or a one-line error."""
    if not isinstance(value, Mapping) or not {"start", "steps"} <= set(value):
        raise ValueError(
            f"{name} must be a mapping with 'start' and 'steps' (and optionally 'multiple_of'), got {value!r}"
        )
    unknown = set(value) - {"start", "steps", "multiple_of"}
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}; known: start, steps, multiple_of")
    return {**{key: int(number) for key, number in value.items()}, **fixed}


def _check_warmup(name: str, start: int, steps: int, full: int, multiple_of: int, full_name: str) -> None:
    if multiple_of < 1:
        raise ValueError(f"{name}: multiple_of must be positive, got {multiple_of}")
    if start < 1 or start % multiple_of:
        raise ValueError(f"{name}: start must be a positive multiple of {multiple_of}, got {start}")
    if steps < 1:
        raise ValueError(f"{name}: steps must be a positive number of optimizer steps, got {steps}")
    if start >= full:
        raise ValueError(
            f"{name}: start ({start}) must be below the full value ({full_name}, {full}), or there "
            "is nothing to warm up"
        )


@dataclass(frozen=True)
class SequenceLengthWarmup:
    """Truncate training batches to a length growing linearly from ``start`` to the full length.

    Args:
        start: the length at step 0, in tokens (special tokens included); a positive multiple of
            ``multiple_of``.
        steps: optimizer steps until the full length is reached.
        full: the full length (the recipe's ``max_length``): rows are never cut from step ``steps`` on.
        multiple_of: lengths are rounded down to a multiple of it (1 for exact lengths).
    """

    start: int
    steps: int
    full: int
    multiple_of: int = 8

    def __post_init__(self):
        _check_warmup("sequence_length_warmup", self.start, self.steps, self.full, self.multiple_of, "max_length")

    @classmethod
    def from_recipe(cls, value: Mapping[str, Any], full: int) -> "SequenceLengthWarmup":
        """From a recipe mapping such as ``{start: 64, steps: 1000}`` (``multiple_of`` optional) and the
        recipe's ``max_length``."""
        return cls(**_read_recipe("sequence_length_warmup", value, full=full))

    def length(self, step: int) -> int:
        """The length batches are cut to at optimizer step ``step`` (0-based: the steps already taken)."""
        return linear_warmup(step, self.start, self.full, self.steps, self.multiple_of)

    def check_tasks(self, tasks: list[str], token_tasks: frozenset[str]) -> None:
        """Refuse tasks whose labels do not sit on the positions truncation keeps or cuts."""
        refused = [task for task in tasks if task not in token_tasks]
        if refused:
            raise ValueError(
                f"sequence_length_warmup truncates rows, which would cut the segments that the labels "
                f"of {refused} describe; use it with token-level tasks only "
                f"({', '.join(sorted(token_tasks))})"
            )

    def truncate(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        """``batch`` with every [batch, length, ...] entry cut to at most ``length(step)`` positions."""
        ids = batch.get("input_ids")
        if ids is None or ids.dim() != 2:
            raise ValueError("sequence_length_warmup needs padded [batch, length] input_ids in every batch")
        width = ids.shape[1]
        keep = self.length(step)
        if keep >= width:
            return batch
        return {key: _cut(key, value, width, keep) for key, value in batch.items()}


def _cut(key: str, value: Any, width: int, keep: int) -> Any:
    if key in _NOT_POSITIONAL or not isinstance(value, torch.Tensor) or value.dim() < 2 or value.shape[1] != width:
        return value
    return value[:, :keep].contiguous()


@dataclass(frozen=True)
class BatchSizeWarmup:
    """Rows per device growing linearly from ``start`` to ``full`` over the first ``steps`` optimizer steps.

    Args:
        start: rows per device in the micro-batches of step 0; a positive multiple of ``multiple_of``.
        steps: optimizer steps until the full batch is reached.
        full: rows per device at full size (the recipe's ``per_device_train_batch_size``).
        multiple_of: row counts are rounded down to a multiple of it.
    """

    start: int
    steps: int
    full: int
    multiple_of: int = 1

    def __post_init__(self):
        _check_warmup(
            "batch_size_warmup", self.start, self.steps, self.full, self.multiple_of, "per_device_train_batch_size"
        )

    @classmethod
    def from_recipe(cls, value: Mapping[str, Any], full: int) -> "BatchSizeWarmup":
        """From a recipe mapping such as ``{start: 4, steps: 1000}`` and ``per_device_train_batch_size``."""
        return cls(**_read_recipe("batch_size_warmup", value, full=full))

    def rows(self, step: int) -> int:
        """Rows per device in each micro-batch of optimizer step ``step``."""
        return linear_warmup(step, self.start, self.full, self.steps, self.multiple_of)


class WarmupBatchSampler(Sampler[list[int]]):
    """This rank's batches of a batch-size warmup: an endless sequence of shuffled passes over
    ``num_examples`` examples, cut into the warmup's global batches (``module docstring``).

    Batch ``i`` (counted over the whole run) belongs to optimizer step ``i // accumulation`` and holds
    ``warmup.rows(step)`` examples on every rank; the ranks' slices of it are consecutive. A Trainer
    epoch is ``len(self)`` batches, the number a pass takes at the full batch size; ``set_epoch`` says
    which (the Trainer's ``SetEpochCallback`` calls it before each epoch's iterator starts).
    """

    def __init__(
        self,
        num_examples: int,
        warmup: BatchSizeWarmup,
        accumulation: int,
        seed: int,
        num_processes: int = 1,
        process_index: int = 0,
    ):
        if num_examples < 1:
            raise ValueError("batch_size_warmup needs a non-empty training set")
        self.num_examples, self.warmup, self.accumulation = num_examples, warmup, accumulation
        self.seed, self.num_processes, self.process_index = seed, num_processes, process_index
        self.epoch = 0
        # rows per device taken by the steps before step t, for t <= warmup.steps (after it: full batches)
        per_step = [warmup.rows(step) for step in range(warmup.steps)]
        self._rows_before_step = np.concatenate([[0], np.cumsum(per_step)]).astype(np.int64)
        full_batches = -(-num_examples // (warmup.full * num_processes))  # a pass at the full batch size
        self._length = -(-full_batches // accumulation) * accumulation  # whole optimizer steps per epoch
        self._pass, self._order = -1, np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _device_rows_before(self, batch: int) -> int:
        """Rows per device in all batches before batch ``batch`` of the run."""
        step, micro = divmod(batch, self.accumulation)
        done = min(step, self.warmup.steps)
        before = int(self._rows_before_step[done]) + (step - done) * self.warmup.full
        return before * self.accumulation + micro * self.warmup.rows(step)

    def _permutation(self, number: int) -> np.ndarray:
        return np.random.default_rng([self.seed, number]).permutation(self.num_examples)

    def _pass_order(self, number: int) -> np.ndarray:
        """Pass ``number``'s order: its seeded permutation, with every example among its first ``W`` (the
        examples of the largest optimizer step, all ranks and micro-batches) that is also among the previous
        permutation's last ``W`` swapped with the first free example after them. An optimizer step straddling
        the two passes then never holds an example twice, and each pass's tail stays as drawn (what the next
        pass avoids). Needs ``4 W`` examples (a swap partner always exists); a smaller dataset keeps its
        permutations as drawn."""
        order = self._permutation(number)
        width = self.warmup.full * self.num_processes * self.accumulation  # the largest optimizer step
        if number == 0 or self.num_examples < 4 * width:
            return order
        tail = set(self._permutation(number - 1)[-width:].tolist())
        free = (j for j in range(width, self.num_examples - width) if int(order[j]) not in tail)
        for i in range(width):
            if int(order[i]) in tail:
                j = next(free)
                order[i], order[j] = order[j], order[i]
        return order

    def _example(self, position: int) -> int:
        """The example at ``position`` of the endless sequence of shuffled passes."""
        number, offset = divmod(position, self.num_examples)
        if number != self._pass:
            self._pass, self._order = number, self._pass_order(number)
        return int(self._order[offset])

    def __iter__(self) -> Iterator[list[int]]:
        first = self.epoch * self._length
        for batch in range(first, first + self._length):
            rows = self.warmup.rows(batch // self.accumulation)
            start = self._device_rows_before(batch) * self.num_processes + self.process_index * rows
            yield [self._example(position) for position in range(start, start + rows)]


__all__ = ["TRUNCATABLE_TASKS", "BatchSizeWarmup", "SequenceLengthWarmup", "WarmupBatchSampler", "linear_warmup"]

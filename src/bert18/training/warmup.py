"""Sequence-length warmup: short sequences for the first optimizer steps, growing to the full length.

Li, Zhang and He (2022, "The Stability-Efficiency Dilemma: Investigating Sequence Length Warmup for
Training GPT Models") start pretraining on truncated sequences and let the length grow linearly to the
full one; DeepSpeed's curriculum learning ships it as ``seqlen`` with a ``fixed_linear`` schedule and
applies it to BERT pretraining too. The length at optimizer step ``t`` of a warmup over ``T`` steps is

    start + (full - start) * t / T, rounded down to a multiple of ``multiple_of`` (8: tensor-core
    friendly), never below ``start`` and, from step ``T`` on, the full length

as DeepSpeed's ``fixed_linear`` difficulty computes it. Each batch is truncated to that many positions
after collation, in the main process, before the Trainer counts the targets of the accumulation step:
the loss is normalised by the targets that remain, dynamic masks keep their rate over the positions
that remain, and the length is a pure function of the Trainer's ``global_step``, so every process
agrees and a resumed run truncates as the uninterrupted one did.

Truncation cuts the end of a row, so a sentence-level label could refer to a segment that is no longer
there: only token-level tasks whose labels sit on the positions themselves (MLM, capitalization,
token-document relation) are accepted; a recipe asking for more is refused.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..configuration_bert18 import PRETRAINING_TASKS

# The batch entries that are not [batch, length, ...] tensors of the input positions.
_NOT_POSITIONAL = frozenset({"plm_target_positions", "plm_labels"})


# Tasks whose labels sit on the positions themselves (token level, a label per position): truncation keeps
# or cuts each label with its token. XLNet's permutation LM lists its targets by position and is excluded.
TRUNCATABLE_TASKS = frozenset(task for task, (_, _, level) in PRETRAINING_TASKS.items()
                              if level == "token" and task != "plm")


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
        if self.multiple_of < 1:
            raise ValueError(f"sequence_length_warmup: multiple_of must be positive, got {self.multiple_of}")
        if self.start < 1 or self.start % self.multiple_of:
            raise ValueError(f"sequence_length_warmup: start must be a positive multiple of {self.multiple_of}, "
                             f"got {self.start}")
        if self.steps < 1:
            raise ValueError(f"sequence_length_warmup: steps must be a positive number of optimizer steps, "
                             f"got {self.steps}")
        if self.start >= self.full:
            raise ValueError(f"sequence_length_warmup: start ({self.start}) must be below the full length "
                             f"(max_length, {self.full}), or there is nothing to warm up")

    @classmethod
    def from_recipe(cls, value: Mapping[str, Any], full: int) -> "SequenceLengthWarmup":
        """From a recipe mapping such as ``{start: 64, steps: 1000}`` (``multiple_of`` optional) and the
        recipe's ``max_length``."""
        if not isinstance(value, Mapping) or not {"start", "steps"} <= set(value):
            raise ValueError(f"sequence_length_warmup must be a mapping with 'start' and 'steps' (and optionally "
                             f"'multiple_of'), got {value!r}")
        unknown = set(value) - {"start", "steps", "multiple_of"}
        if unknown:
            raise ValueError(f"sequence_length_warmup: unknown key(s) {sorted(unknown)}; known: start, steps, "
                             "multiple_of")
        return cls(**{key: int(number) for key, number in value.items()}, full=full)

    def length(self, step: int) -> int:
        """The length batches are cut to at optimizer step ``step`` (0-based: the steps already taken)."""
        if step >= self.steps:
            return self.full
        grown = self.start + (self.full - self.start) * step / self.steps
        return min(self.full, max(self.start, int(grown) - int(grown) % self.multiple_of))

    def check_tasks(self, tasks: list[str], token_tasks: frozenset[str]) -> None:
        """Refuse tasks whose labels do not sit on the positions truncation keeps or cuts."""
        refused = [task for task in tasks if task not in token_tasks]
        if refused:
            raise ValueError(f"sequence_length_warmup truncates rows, which would cut the segments that the labels "
                             f"of {refused} describe; use it with token-level tasks only "
                             f"({', '.join(sorted(token_tasks))})")

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


__all__ = ["TRUNCATABLE_TASKS", "SequenceLengthWarmup"]

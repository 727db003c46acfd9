"""What every bert18 collator shares: reproducible dynamic randomness, epochs, and padding.

Dynamic yet reproducible: each example's random numbers are a pure function of ``(seed, epoch,
example_index)`` and of what they decide (the position, the kind of draw), so they change from
epoch to epoch (RoBERTa's dynamic masking) while a resumed run, or any data-parallel rank, draws
exactly what an uninterrupted single-process run would. They come from a counter-based generator
(SplitMix64 over a key and a counter, as in Philox-style parallel RNGs): no generator state to
create per example, and a whole batch's numbers in a few array operations.
``prepare_pretraining_dataset`` and ``SentencePairDataset`` put ``example_index`` on every example;
the epoch comes from ``set_epoch``, which ``SetEpochCallback`` calls at the start of every Trainer
epoch (also on resume).
"""

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback

from ..configuration_bert18 import PRETRAINING_TASKS

# Per-example fields the model takes as labels, from the task registry: sequence-level (one int)
# and token-level (padded with -100). Vocabulary tasks (0 classes) get theirs from a collator:
# "labels" (MLM) from the masking collators, "plm_labels" from PermutationLMCollator.
SEQUENCE_LABELS = tuple(name for name, _, level in PRETRAINING_TASKS.values() if level == "sequence")
TOKEN_LABELS = tuple(name for name, classes, level in PRETRAINING_TASKS.values() if level == "token" and classes)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection of uint64 whose outputs pass BigCrush on counters."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def example_keys(seed: int, epoch: int, indices: np.ndarray) -> np.ndarray:
    """Keys of examples ``indices`` at (seed, epoch): the roots of all their random numbers."""
    with np.errstate(over="ignore"):
        root = _splitmix64(np.uint64(seed % 2**64) * _GOLDEN + np.uint64(epoch % 2**64))
        return _splitmix64(root ^ (indices.astype(np.uint64) * _GOLDEN))


def uniform(keys: np.ndarray, count: int, stream: int) -> np.ndarray:
    """[len(keys), count] uniform floats in [0, 1): draw j of ``stream`` for each key."""
    counters = np.arange(count, dtype=np.uint64) * np.uint64(64) + np.uint64(stream)
    with np.errstate(over="ignore"):
        bits = _splitmix64(np.asarray(keys, dtype=np.uint64)[..., None] + counters * _GOLDEN)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


class DynamicCollator:
    """Base class: ``seed``, ``epoch``, per-example random keys and padding to tensors."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, seed: int = 0, pad_to_multiple_of: int | None = None):
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer with a pad token to pad batches")
        self.tokenizer = tokenizer
        self.seed = seed
        self.epoch = 0
        self.pad_to_multiple_of = pad_to_multiple_of
        self.special_ids = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        self.special_table = np.zeros(max(len(tokenizer), int(self.special_ids.max()) + 1), dtype=bool)
        self.special_table[self.special_ids] = True
        self._fallback_index = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the masks of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def keys(self, examples: Sequence[dict[str, Any]]) -> np.ndarray:
        """One 64-bit key per example, mixing (seed, epoch, example_index)."""
        indices = []
        for example in examples:
            index = example.get("example_index")
            if index is None:
                if self._fallback_index == 0:
                    warnings.warn(
                        f"{type(self).__name__}: examples carry no 'example_index', so masks are drawn from a "
                        "running counter and a resumed or multi-process run will not reproduce them; prepare the "
                        "data with bert18.data.prepare_pretraining_dataset (or add the column) and keep it "
                        "(TrainingArguments(remove_unused_columns=False))",
                        stacklevel=3,
                    )
                index = self._fallback_index
                self._fallback_index += 1
            indices.append(int(index))
        return example_keys(self.seed, self.epoch, np.asarray(indices, dtype=np.uint64))

    def special_mask(self, example: dict[str, Any], ids: np.ndarray) -> np.ndarray:
        """Tokens never masked: the example's ``special_tokens_mask`` and every special id of the
        tokenizer ([UNK] included: there is nothing to learn from predicting it)."""
        special = self.special_table[ids]
        given = example.get("special_tokens_mask")
        if given is not None:
            special |= np.asarray(given, dtype=bool)
        return special

    def padded_length(self, lengths: Iterable[int]) -> int:
        longest = max(lengths)
        multiple = self.pad_to_multiple_of
        return math.ceil(longest / multiple) * multiple if multiple else longest

    @staticmethod
    def pad(rows: Sequence[Sequence[int]], value: int, length: int, dtype: Any = np.int64) -> np.ndarray:
        """Stack variable-length rows into a [batch, length] array filled with ``value``."""
        out = np.full((len(rows), length), value, dtype=dtype)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out

    def batch_arrays(self, examples: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded ids, the lengths, and which tokens may be masked (real, not special), [batch, length]."""
        lengths = np.array([len(e["input_ids"]) for e in examples])
        width = self.padded_length(lengths)
        ids = self.pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, width)
        eligible = np.arange(width)[None, :] < lengths[:, None]
        eligible &= ~self.special_table[ids]
        for row, example in enumerate(examples):
            given = example.get("special_tokens_mask")
            if given is not None:
                eligible[row, : len(given)] &= ~np.asarray(given, dtype=bool)
        return ids, lengths, eligible

    def model_inputs(self, examples: Sequence[dict[str, Any]], input_ids: np.ndarray, lengths: np.ndarray,
                     labels: np.ndarray | None) -> dict[str, torch.Tensor]:
        """The batch the model takes from padded [batch, length] ids (and MLM labels): attention
        mask, segments and every task label present on the examples. Packed rows (``sequence_ids``)
        get an attention mask that numbers their sequences (0 padding, 1, 2, ...)."""
        width = input_ids.shape[1]
        if any("sequence_ids" in e for e in examples):  # packed rows: number each sequence in the mask
            attention_mask = self.pad([_require(e, "sequence_ids") for e in examples], 0, width)
        else:
            attention_mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "token_type_ids": torch.from_numpy(
                self.pad([_or_empty(e.get("token_type_ids")) for e in examples], 0, width)),
        }
        if labels is not None:
            batch["labels"] = torch.from_numpy(labels)
        for name in TOKEN_LABELS:  # an empty list is no labels (prepared data keeps the column for its schema)
            if any(len(e.get(name, ())) for e in examples):
                batch[name] = torch.from_numpy(self.pad([_require(e, name) for e in examples], -100, width))
        for name in SEQUENCE_LABELS:
            if any(name in e for e in examples):
                batch[name] = torch.tensor([_require(e, name) for e in examples], dtype=torch.long)
        return batch


def _or_empty(values: Any) -> Any:
    """``values``, or ``()`` when absent (numpy rows, e.g. ``with_format("numpy")``, have no truth value)."""
    return () if values is None else values


def _require(example: dict[str, Any], name: str) -> Any:
    if name not in example:
        index = example.get("example_index", "?")
        raise ValueError(f"example {index} lacks {name!r}, which other examples of the batch have")
    return example[name]


class SetEpochCallback(TrainerCallback):
    """Tell collators and datasets the epoch at the start of each Trainer epoch (resume included)."""

    def __init__(self, *targets: Any):
        self.targets = [t for t in targets if hasattr(t, "set_epoch")]

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = math.floor((state.epoch or 0) + 1e-6)
        for target in self.targets:
            target.set_epoch(epoch)


__all__ = ["DynamicCollator", "SetEpochCallback", "SEQUENCE_LABELS", "TOKEN_LABELS", "example_keys", "uniform"]

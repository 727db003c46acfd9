"""What every bert18 collator shares: reproducible dynamic randomness, epochs, and padding.

Dynamic yet reproducible: each example's random draws (masks, replacements, pairings) come from a
generator seeded with ``(seed, epoch, example_index, stream)``, so they change from epoch to epoch
(RoBERTa's dynamic masking) while a resumed run, or any data-parallel rank, draws exactly what an
uninterrupted single-process run would. ``prepare_pretraining_dataset`` and ``SentencePairDataset``
put ``example_index`` on every example; the epoch comes from ``set_epoch``, which
``SetEpochCallback`` calls at the start of every Trainer epoch (also on resume).
"""

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, TrainerCallback

# Per-example fields the model takes as labels: sequence-level (one int) and token-level (padded -100).
SEQUENCE_LABELS = ("next_sentence_label", "sentence_order_label", "sentence_distance_label")
TOKEN_LABELS = ("capitalization_labels", "token_document_labels")


class DynamicCollator:
    """Base class: ``seed``, ``epoch``, per-example generators and padding to tensors."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, seed: int = 0, pad_to_multiple_of: int | None = None):
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer with a pad token to pad batches")
        self.tokenizer = tokenizer
        self.seed = seed
        self.epoch = 0
        self.pad_to_multiple_of = pad_to_multiple_of
        self.special_ids = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        self._fallback_index = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the masks of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def generator(self, example: dict[str, Any], stream: int) -> np.random.Generator:
        """The generator of one example's ``stream`` of draws, a pure function of (seed, epoch, index)."""
        index = example.get("example_index")
        if index is None:
            if self._fallback_index == 0:
                warnings.warn(
                    f"{type(self).__name__}: examples carry no 'example_index', so masks are drawn from a running "
                    "counter and a resumed or multi-process run will not reproduce them; prepare the data with "
                    "bert18.data.prepare_pretraining_dataset (or add the column) and keep it "
                    "(TrainingArguments(remove_unused_columns=False))",
                    stacklevel=3,
                )
            index = self._fallback_index
            self._fallback_index += 1
        return np.random.default_rng([self.seed, self.epoch, int(index), stream])

    def special_mask(self, example: dict[str, Any], ids: np.ndarray) -> np.ndarray:
        """Tokens never masked: the example's ``special_tokens_mask`` and every special id of the
        tokenizer ([UNK] included: there is nothing to learn from predicting it)."""
        special = np.isin(ids, self.special_ids)
        given = example.get("special_tokens_mask")
        if given is not None:
            special |= np.asarray(given, dtype=bool)
        return special

    def padded_length(self, lengths: Iterable[int]) -> int:
        longest = max(lengths)
        multiple = self.pad_to_multiple_of
        return math.ceil(longest / multiple) * multiple if multiple else longest

    def pad(self, rows: Sequence[np.ndarray], value: int, length: int) -> torch.Tensor:
        """Stack variable-length rows into a [batch, length] long tensor filled with ``value``."""
        out = np.full((len(rows), length), value, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return torch.from_numpy(out)

    def model_inputs(self, examples: Sequence[dict[str, Any]], input_ids: Sequence[np.ndarray],
                     labels: Sequence[np.ndarray] | None) -> dict[str, torch.Tensor]:
        """The batch the model takes: padded ids, attention mask, segments, MLM labels, task labels."""
        length = self.padded_length(len(ids) for ids in input_ids)
        batch = {
            "input_ids": self.pad(input_ids, self.tokenizer.pad_token_id, length),
            "attention_mask": self.pad([np.ones(len(ids), dtype=np.int64) for ids in input_ids], 0, length),
            "token_type_ids": self.pad([np.asarray(e.get("token_type_ids") or [0] * len(ids))
                                        for e, ids in zip(examples, input_ids)], 0, length),
        }
        if labels is not None:
            batch["labels"] = self.pad(labels, -100, length)
        for name in TOKEN_LABELS:
            if any(name in e for e in examples):
                batch[name] = self.pad([np.asarray(_require(e, name), dtype=np.int64) for e in examples], -100, length)
        for name in SEQUENCE_LABELS:
            if any(name in e for e in examples):
                batch[name] = torch.tensor([_require(e, name) for e in examples], dtype=torch.long)
        return batch


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


__all__ = ["DynamicCollator", "SetEpochCallback", "SEQUENCE_LABELS", "TOKEN_LABELS"]

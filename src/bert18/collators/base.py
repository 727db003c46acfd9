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

The epoch is shared with every ``DataLoader`` worker (``SharedEpoch``): ``set_epoch`` runs in the
main process, the draws happen in the workers, and persistent workers live across epochs, so a
plain attribute would freeze at the epoch the workers were started with and dynamic masking would
silently turn static.
"""

import math
import operator
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
SEQUENCE_LABELS = tuple(task.label for task in PRETRAINING_TASKS.values() if task.level == "sequence")
TOKEN_LABELS = tuple(
    task.label for task in PRETRAINING_TASKS.values() if task.level == "token" and not task.predicts_vocabulary
)


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


class SharedEpoch:
    """Mixin: an ``epoch`` that every ``DataLoader`` worker reads live, persistent workers included.

    The epoch is one int64 in shared memory (as ``datasets.IterableDataset`` keeps its own epoch):
    worker processes hold a copy of the collator or dataset made when they start (forked or
    pickled), but that copy reads the same memory, so ``set_epoch`` in the main process reaches
    every draw made after it, in any process, however many workers and whether they persist or
    not. Nothing is sent per example, and a draw stays a pure function of (seed, epoch, example).

    Order: call ``set_epoch`` *before* iterating the ``DataLoader`` for that epoch (``for batch in
    loader`` after it, as the Trainer does through ``SetEpochCallback``): workers start collating
    the first batches of an epoch as soon as its iterator is created.

    Anything that draws per epoch can use it, a streaming pipeline too: subclass ``SharedEpoch``
    (an ``IterableDataset`` that builds examples, or a transform) and read ``self.epoch`` where the
    random numbers are drawn, in ``__iter__`` or ``__call__``, never cache it in ``__init__``.
    A plain ``pickle`` (or ``copy.deepcopy``) makes an independent copy with its own shared epoch.
    """

    def _epoch_tensor(self) -> torch.Tensor:
        shared = self.__dict__.get("_shared_epoch")
        if shared is None:  # created by the first set_epoch/epoch access, normally in __init__
            shared = self.__dict__["_shared_epoch"] = torch.zeros(1, dtype=torch.int64, device="cpu").share_memory_()
        return shared

    @property
    def epoch(self) -> int:
        """The epoch whose draws are made now (0 until ``set_epoch``)."""
        return int(self._epoch_tensor().item())  # .item(): a tenth of the cost of indexing (read per draw)

    @epoch.setter
    def epoch(self, value: int) -> None:
        try:
            epoch = operator.index(value)  # int, numpy or 0-d tensor integers; not 1.5, not "1"
        except TypeError:
            epoch = -1
        if isinstance(value, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {value!r}")
        self._epoch_tensor()[0] = epoch

    def set_epoch(self, epoch: int) -> None:
        """Draw the masks (pairs, orders) of epoch ``epoch`` from now on, in this process and every worker."""
        self.epoch = epoch

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A plain pickle restores the epoch as private memory: share it again, so that workers
        # forked from the restored object still follow its set_epoch.
        self.__dict__.update(state)
        shared = self.__dict__.get("_shared_epoch")
        if shared is not None and not shared.is_shared():
            shared.share_memory_()


class DynamicCollator(SharedEpoch):
    """Base class: ``seed``, ``epoch`` (shared with DataLoader workers), per-example random keys and
    padding to tensors."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, seed: int = 0, pad_to_multiple_of: int | None = None):
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{type(self).__name__} needs a tokenizer with a pad token to pad batches")
        self.tokenizer = tokenizer
        self.seed = seed
        self.epoch = 0  # shared memory, created here in the main process (see SharedEpoch)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.special_ids = np.array(sorted(set(tokenizer.all_special_ids)), dtype=np.int64)
        self.special_table = np.zeros(max(len(tokenizer), int(self.special_ids.max()) + 1), dtype=bool)
        self.special_table[self.special_ids] = True
        self._fallback_index = 0

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
            try:
                value = -1 if isinstance(index, bool) else operator.index(index)  # ints, numpy and torch scalars
            except TypeError:
                value = -1
            if value < 0:
                raise ValueError(
                    f"column 'example_index' must hold non-negative integers (an example's position "
                    f"in its dataset), got {index!r}: keep the column prepare_pretraining_dataset wrote"
                )
            indices.append(value)
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
        for example in examples:
            check_token_columns(example)
        lengths = np.array([len(e["input_ids"]) for e in examples])
        width = self.padded_length(lengths)
        ids = self.pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id, width)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.special_table)):  # before any table is indexed
            row = int(np.flatnonzero(((ids < 0) | (ids >= len(self.special_table))).any(axis=1))[0])
            bad = next(i for i in examples[row]["input_ids"] if not 0 <= i < len(self.special_table))
            raise ValueError(
                f"example {examples[row].get('example_index', row)}, column 'input_ids': id {bad} is outside the "
                f"tokenizer's vocabulary of {len(self.special_table)} ids; the rows were tokenized with another "
                "tokenizer: prepare them with this one"
            )
        eligible = np.arange(width)[None, :] < lengths[:, None]
        eligible &= ~self.special_table[ids]
        for row, example in enumerate(examples):
            given = example.get("special_tokens_mask")
            if given is not None:
                eligible[row, : len(given)] &= ~np.asarray(given, dtype=bool)
        return ids, lengths, eligible

    def model_inputs(
        self, examples: Sequence[dict[str, Any]], input_ids: np.ndarray, lengths: np.ndarray, labels: np.ndarray | None
    ) -> dict[str, torch.Tensor]:
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
                self.pad([_or_empty(e.get("token_type_ids")) for e in examples], 0, width)
            ),
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


def check_token_columns(example: dict[str, Any]) -> None:
    """Per-token columns must hold one entry per token of ``input_ids``: a shorter or longer one
    would be broadcast into made-up words or special tokens."""
    length = len(example["input_ids"])
    for name in ("special_tokens_mask", "word_ids"):
        values = example.get(name)
        if values is not None and len(values) != length:
            raise ValueError(
                f"example {example.get('example_index', '?')}: column {name!r} has {len(values)} entries for "
                f"{length} tokens; it needs one per token of input_ids (prepare the rows again, or drop the column)"
            )


def _or_empty(values: Any) -> Any:
    """``values``, or ``()`` when absent (numpy rows, e.g. ``with_format("numpy")``, have no truth value)."""
    return () if values is None else values


def _require(example: dict[str, Any], name: str) -> Any:
    if name not in example:
        index = example.get("example_index", "?")
        raise ValueError(f"example {index} lacks {name!r}, which other examples of the batch have")
    return example[name]


def own_generator(loader: Any, seed: int) -> None:
    """Give a ``DataLoader`` without one its own ``generator``, so that starting an iterator over it
    never draws from the global torch RNG that dropout uses.

    Each new iterator draws a worker base seed from ``loader.generator``, the global RNG when it is
    None; persistent workers keep one iterator for the whole run, a resumed run starts a new one.
    The global RNG then advances differently with 0 workers, with persistent workers, and after a
    resume, and the dropout masks of a resumed run part from those of an uninterrupted one.
    """
    loader = getattr(loader, "base_dataloader", loader)  # accelerate's DataLoaderShard wraps the DataLoader
    if loader is not None and getattr(loader, "generator", False) is None:
        # on the default device, as the DataLoader draws its seed with torch.empty(()) (accelerate does the same)
        loader.generator = torch.Generator(device=torch.get_default_device()).manual_seed(seed)


class SetEpochCallback(TrainerCallback):
    """Tell collators and datasets the epoch at the start of each Trainer epoch (resume included).

    The targets share the epoch with the DataLoader workers (``SharedEpoch``), and the Trainer calls
    ``on_epoch_begin`` before it starts the epoch's iterator, so the workers draw every batch of an
    epoch, the first ones included, for that epoch. At the start of training the callback also gives
    the training DataLoader its own generator (``own_generator``): the run's dropout then does not
    depend on the number of workers, on whether they persist, or on a resume.
    """

    def __init__(self, *targets: Any):
        self.targets = [t for t in targets if hasattr(t, "set_epoch")]
        self.epoch: int | None = None

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        own_generator(train_dataloader, args.seed)
        self.epoch = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        # The Trainer's own epoch counter: the whole epochs done at the first epoch of a run (a resumed
        # run starts inside one), then one more per epoch. state.epoch alone would not do for a stream:
        # its unit is max_steps, so a pass that ends early leaves it fractional (0.33 at the second pass).
        self.epoch = math.floor((state.epoch or 0) + 1e-6) if self.epoch is None else self.epoch + 1
        for target in self.targets:
            target.set_epoch(self.epoch)


__all__ = [
    "DynamicCollator",
    "SetEpochCallback",
    "SharedEpoch",
    "SEQUENCE_LABELS",
    "TOKEN_LABELS",
    "check_token_columns",
    "example_keys",
    "own_generator",
    "uniform",
]

"""Streaming preparation: windows of a ``datasets.IterableDataset``, drawn reproducibly and resumed exactly.

A streamed corpus never sits in memory whole, so everything that needs more than one row at a time
(sentence pairs with negatives from other documents, shuffling) works on a bounded **window**: the
next ``window`` rows of the stream. ``windowed`` turns a function of a window into a stream of its
outputs, and stays a real ``datasets.IterableDataset``:

- **Reproducible.** Each window's random numbers come from one 64-bit key, a hash of ``(seed,
  epoch, pass, shard lineage, window index)``: the same corpus and settings give the same examples
  in any process; another epoch (``set_epoch``) or pass draws other pairs and another order.
  ``example_index`` (from which the collators seed each example's masks) is derived from the same
  key and the position in the window, so it is unique across windows, passes, ranks and workers.
- **Resumable exactly.** The state (``state_dict()``, which torchdata's ``StatefulDataLoader`` and
  accelerate's ``use_stateful_dataloader`` read) is the source's state at the start of the current
  window, the window's number and how many of its outputs were yielded: a resumed stream re-reads
  that window, rebuilds the same outputs and skips those already yielded.
- **Sharded.** ``split_dataset_by_node``, ``IterableDataset.shard`` (what accelerate calls for each
  rank) and dataloader workers split the source's shards below the window, so each rank or worker
  reads only its shards; the shard split is part of the window key.
- **Repeating.** With ``repeat=True`` the stream starts a new pass (shards reshuffled from the pass
  number) when the source ends, the pass being part of the state: a Trainer run with ``max_steps``
  sees one endless epoch, and a run resumed in its third pass continues in its third pass.

This builds on ``datasets``' examples-iterable protocol (``shuffle_data_sources``,
``shard_data_sources``, ``shift_rngs``, ``_init_state_dict``), which ``datasets`` 5 uses for its own
``map`` and ``shuffle``; the tests check the resume and the sharding against plain iteration.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from copy import deepcopy
from itertools import islice
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.iterable_dataset import _BaseExamplesIterable, shift_ex_examples_rngs
from datasets.table import InMemoryTable
from transformers import PreTrainedTokenizerBase

from ..configuration_bert18 import PRETRAINING_TASKS, Bert18Config
from .pairs import SentencePairDataset

logger = logging.getLogger(__name__)

_GOLDEN = 0x9E3779B97F4A7C15
_MASK63 = (1 << 63) - 1

WindowTransform = Callable[[list[dict[str, Any]], int], list[dict[str, Any]]]


def window_key(seed: int, epoch: int, pass_: int, lineage: Sequence[tuple[int, int]], window_index: int) -> int:
    """The 64-bit root of a window's random numbers (a ``SeedSequence`` hash of everything that names it)."""
    entropy = [seed, epoch, pass_, len(lineage), *(n for pair in lineage for n in pair), window_index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


def example_index(key: int, position: int) -> int:
    """A non-negative 63-bit ``example_index`` for output ``position`` of the window with ``key``:
    distinct positions of a window never collide (odd multiplier), windows differ by their key."""
    return (key ^ (position * _GOLDEN)) & _MASK63


class WindowedExamplesIterable(_BaseExamplesIterable):
    """``datasets`` examples iterable: ``transform`` applied to consecutive windows of ``window`` rows."""

    def __init__(
        self,
        ex_iterable: _BaseExamplesIterable,
        transform: WindowTransform,
        window: int,
        seed: int,
        features: datasets.Features,
        repeat: bool = False,
        epoch: int = 0,
        lineage: tuple[tuple[int, int], ...] = (),
    ):
        super().__init__()
        self.ex_iterable = ex_iterable
        self.transform, self.window, self.seed, self.repeat = transform, window, seed, repeat
        self._features, self.epoch, self.lineage = features, epoch, lineage

    def _copy(self, ex_iterable: _BaseExamplesIterable | None = None, **changes: Any) -> "WindowedExamplesIterable":
        values = dict(
            transform=self.transform,
            window=self.window,
            seed=self.seed,
            features=self._features,
            repeat=self.repeat,
            epoch=self.epoch,
            lineage=self.lineage,
        )
        return WindowedExamplesIterable(ex_iterable or self.ex_iterable, **{**values, **changes})

    # --- the protocol datasets uses to shuffle, shard and seed a pipeline
    @property
    def is_typed(self) -> bool:
        return True  # the transforms build their fields with the declared types

    @property
    def features(self) -> datasets.Features:
        return self._features

    @property
    def num_shards(self) -> int:
        return self.ex_iterable.num_shards

    def shift_rngs(self, value: int) -> "WindowedExamplesIterable":
        """Called by ``datasets`` with the epoch (``set_epoch``) when it is not 0: new draws per epoch."""
        return self._copy(epoch=int(value))

    def shuffle_data_sources(self, generator: np.random.Generator) -> "WindowedExamplesIterable":
        return self._copy(self.ex_iterable.shuffle_data_sources(generator))

    def shard_data_sources(self, num_shards: int, index: int, contiguous: bool = True) -> "WindowedExamplesIterable":
        return self._copy(
            self.ex_iterable.shard_data_sources(num_shards, index, contiguous=contiguous),
            lineage=(*self.lineage, (int(index), int(num_shards))),
        )

    def reshard_data_sources(self) -> "WindowedExamplesIterable":
        return self._copy(self.ex_iterable.reshard_data_sources())

    def _init_state_dict(self) -> dict:
        self._inner_state = self.ex_iterable._init_state_dict()
        self._state_dict = {
            "pass": 0,
            "window_index": 0,
            "previous_state": None,
            "yielded_in_window": 0,
            "type": type(self).__name__,
        }
        return self._state_dict

    # --- iteration
    def _source_for_pass(self, pass_: int) -> _BaseExamplesIterable:
        """Pass 0 reads the source as given; pass p > 0 a copy with its shards reshuffled from (epoch, p)."""
        if pass_ == 0:
            return self.ex_iterable
        source = self.ex_iterable.shuffle_data_sources(np.random.default_rng([self.epoch, pass_]))
        return shift_ex_examples_rngs(source, pass_)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        state = self._state_dict
        pass_ = state["pass"] if state else 0
        window_index = state["window_index"] if state else 0
        resume_from = state["previous_state"] if state else None
        skip = state["yielded_in_window"] if state and resume_from is not None else 0
        while True:
            source = self._source_for_pass(pass_)
            if state is not None:
                source._init_state_dict()
                if resume_from is not None:
                    source.load_state_dict(resume_from)
            rows_iterator = iter(source)
            produced = False
            while True:
                before = source.state_dict() if state is not None else None
                rows = [example for _, example in islice(rows_iterator, self.window)]
                if not rows:
                    break
                produced = True
                key = window_key(self.seed, self.epoch, pass_, self.lineage, window_index)
                outputs = self.transform(rows, key)
                for position in range(skip, len(outputs)):
                    if state is not None:
                        state.update(
                            {
                                "pass": pass_,
                                "window_index": window_index,
                                "previous_state": before,
                                "yielded_in_window": position + 1,
                            }
                        )
                    yield f"{pass_}_{window_index}_{position}", outputs[position]
                skip = 0
                window_index += 1
            if not self.repeat:
                return
            if not produced and resume_from is None:
                raise ValueError("the stream is empty: no row to repeat")
            pass_, window_index, resume_from = pass_ + 1, 0, None
            logger.info("stream exhausted: starting pass %d", pass_)


def windowed(
    dataset: datasets.IterableDataset,
    transform: WindowTransform,
    window: int,
    seed: int,
    features: datasets.Features,
    repeat: bool = False,
) -> datasets.IterableDataset:
    """``dataset`` read ``window`` rows at a time, each window replaced by ``transform(rows, key)``
    (see the module docstring): an ``IterableDataset`` with ``features``."""
    if not isinstance(dataset, datasets.IterableDataset):
        raise TypeError(f"windowed takes a datasets.IterableDataset, got {type(dataset).__name__}")
    if window < 1:
        raise ValueError(f"window must be at least 1 row, got {window}")
    ex_iterable = WindowedExamplesIterable(dataset._ex_iterable, transform, window, int(seed), features, repeat)
    return datasets.IterableDataset(
        ex_iterable=ex_iterable,
        info=datasets.DatasetInfo(features=features),
        split=dataset._split,
        formatting=dataset._formatting,
        distributed=deepcopy(dataset._distributed),
        token_per_repo_id=dataset._token_per_repo_id,
    )


# ------------------------------------------------------------------ the two windows bert18 prepares


class ShuffledRows:
    """Window transform for packed rows: the window's rows in a random order, each given its ``example_index``."""

    def __call__(self, rows: list[dict[str, Any]], key: int) -> list[dict[str, Any]]:
        order = np.random.default_rng(key).permutation(len(rows))
        return [{**rows[i], "example_index": example_index(key, position)} for position, i in enumerate(order)]


@contextlib.contextmanager
def _quiet(name: str):
    """Silence a logger's per-window info (SentencePairDataset announces its counts at every window)."""
    target = logging.getLogger(name)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


class WindowPairs:
    """Window transform for grouped documents: ``SentencePairDataset`` over the window's documents,
    its items in a random order. Negatives (NSP label 1, sentence-distance class 2) come from other
    documents of the window; the chunks and every draw are seeded by the window key."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Sequence[str] | Bert18Config,
        max_length: int,
        short_seq_prob: float,
        document_features: datasets.Features,
    ):
        self.tokenizer, self.tasks, self.max_length = tokenizer, tasks, max_length
        self.short_seq_prob, self.document_features = short_seq_prob, document_features
        self.schema = document_features.arrow_schema
        self.windows_without_pairs = 0

    def __call__(self, rows: list[dict[str, Any]], key: int) -> list[dict[str, Any]]:
        table = InMemoryTable(pa.Table.from_pylist(rows, schema=self.schema))
        try:
            with _quiet("bert18.data.pairs"):
                pairs = SentencePairDataset(
                    datasets.Dataset(table),
                    self.tokenizer,
                    self.tasks,
                    self.max_length,
                    seed=key & _MASK63,
                    short_seq_prob=self.short_seq_prob,
                )
        except ValueError as error:
            if not str(error).startswith("no chunk of these documents"):
                raise
            self.windows_without_pairs += 1  # e.g. a last window of one one-sentence document
            logger.warning(
                "a window of %d documents makes no pair: skipped (%d such windows in this process)",
                len(rows),
                self.windows_without_pairs,
            )
            return []
        order = np.random.default_rng(key).permutation(len(pairs))
        items = []
        for position, i in enumerate(order.tolist()):
            item = pairs[i]
            item["example_index"] = example_index(key, position)
            items.append(item)
        return items


def pair_features(tokenizer: PreTrainedTokenizerBase, tasks: Sequence[str] | Bert18Config) -> datasets.Features:
    """The fields ``SentencePairDataset`` items carry for ``tasks``."""
    names = list(tasks.pretraining_tasks if isinstance(tasks, Bert18Config) else tasks)
    int32, int64 = datasets.Value("int32"), datasets.Value("int64")
    fields = {
        name: datasets.List(int32)
        for name in ("input_ids", "token_type_ids", "special_tokens_mask", "word_ids", "span_starts", "span_ends")
    }
    fields["span_kinds"] = datasets.List(datasets.Value("string"))
    for task in PRETRAINING_TASKS.values():  # per-token labels the items carry (the vocabulary tasks' come later)
        if task.name in names and task.level == "token" and not task.predicts_vocabulary:
            fields[task.label] = datasets.List(int32)
    fields["example_index"] = int64
    for task in names:
        if PRETRAINING_TASKS[task].arrangement is not None:  # the example's sentence label
            fields[PRETRAINING_TASKS[task].label] = int64
    return datasets.Features(fields)


def stream_sentence_pairs(
    documents: datasets.IterableDataset,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Sequence[str] | Bert18Config,
    max_length: int = 512,
    seed: int = 0,
    short_seq_prob: float = 0.1,
    window: int = 256,
    repeat: bool = False,
) -> datasets.IterableDataset:
    """Sentence pairs from a stream of grouped documents (``prepare_pretraining_dataset`` on an
    ``IterableDataset`` with a sentence-level task): the streaming counterpart of ``SentencePairDataset``.

    The stream is read ``window`` documents at a time; each window is one ``SentencePairDataset``
    (same chunks, pair rules, labels and truncation), seeded by the window's key (module docstring),
    so negatives come from the other documents of the window, and a different epoch or pass draws
    other pairs. Memory is bounded by the window. A larger window gives more varied negatives and a
    better mixed order, a smaller one less memory.
    """
    if not isinstance(documents, datasets.IterableDataset):
        raise TypeError(
            "stream_sentence_pairs takes a datasets.IterableDataset of grouped documents; for a "
            "datasets.Dataset use SentencePairDataset"
        )
    if documents.features is None or "input_ids" not in documents.features:
        raise ValueError(
            "documents must be grouped documents from prepare_pretraining_dataset (a stream with "
            f"declared features and an 'input_ids' column), got features {documents.features}"
        )
    SentencePairDataset._check_tasks(tasks)
    transform = WindowPairs(tokenizer, tasks, max_length, short_seq_prob, documents.features)
    return windowed(documents, transform, window, seed, pair_features(tokenizer, tasks), repeat=repeat)


__all__ = [
    "ShuffledRows",
    "WindowPairs",
    "WindowedExamplesIterable",
    "example_index",
    "pair_features",
    "stream_sentence_pairs",
    "window_key",
    "windowed",
]

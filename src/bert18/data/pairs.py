"""Sentence-pair examples: BERT's NSP, ALBERT's SOP, ERNIE 2.0's sentence distance, sentence reordering
and token tasks.

``SentencePairDataset`` reads grouped documents (``prepare_pretraining_dataset`` with a sentence-level
task: one row per document, every field a list per sentence) and serves model-ready pairs
``[CLS] A [SEP] B [SEP]`` (or whatever the tokenizer's pair template is, e.g. RoBERTa's
``<s> A </s></s> B </s>``), before masking and padding: the masking collator consumes them.

How an item is made:

1. **Chunks** (fixed in ``__init__``, seeded by ``seed`` only, so ``len`` never changes). Each document
   is cut greedily into runs of consecutive whole sentences: a chunk takes sentences while they fit its
   target length, and always takes a second sentence if the two fit the pair budget
   (``max_length`` minus the tokenizer's special tokens). The target is the budget, or, with
   probability ``short_seq_prob``, a random length in ``[2, budget]`` (BERT's create_pretraining_data).
   A chunk is one item.
2. **Pairs** (drawn in ``__getitem__`` from ``numpy.random.default_rng([seed, epoch, i])``: the same
   (seed, epoch, i) gives the same example in any process, another epoch another pairing). A is the
   first k sentences of the chunk, k uniform in ``[1, n - 1]``; B depends on the task:

   - ``nsp`` (BERT): label 0 (B continues A, as ``BertForPreTraining``) = the rest of the chunk; label 1
     = whole sentences of a random other document, from a random sentence, as many as fit the
     remaining budget (at least one).
   - ``sop`` (ALBERT): A and the rest of the chunk; label 0 in order, label 1 swapped (B, A).
   - ``sentence_distance`` (ERNIE 2.0), 1/3 each: 0 = the rest of the chunk (adjacent); 1 = a segment
     of the same document with at least one sentence between it and A, on either side; 2 = a segment
     of another document (as NSP's label 1).
   - no pair task, ``token_document_relation`` on: A and the rest of the chunk, no sentence label.

   A pair longer than the budget (only possible when B comes from elsewhere) is truncated as BERT
   does: one token at a time from the longer segment, front or back at random.
3. **Token labels**: ``capitalization_labels`` on the first token of each word in the pair (-100 on
   continuation pieces and special tokens); ``token_document_labels`` = 1 where the token id occurs
   in the segment's document outside the tokens this pair shows (A and B), else 0.

**Sentence reordering** (ERNIE 2.0) uses the same chunks as paragraphs, each holding at least m
sentences (``max_segments``, the config's ``sentence_reordering_max_segments``; a chunk takes up to m
sentences if they fit, and chunks with fewer are skipped): the class c is drawn uniformly among the
sum over k <= m of k! classes (``reordering_orders``: k = 1, 2, ..., each k's orders in lexicographic
order), the chunk is cut at k - 1 of its n - 1 sentence boundaries (uniform among the C(n - 1, k - 1)
choices) and its segments shown in the class's order, ``prefix S_a middle S_b middle S_c suffix``,
with ``sentence_reordering_label`` = c. Every class is equally likely, whatever the chunk.

The rules for material too short for a task (counted in ``SentencePairDataset.stats``, logged) are in
the class docstring.
"""

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from transformers import PreTrainedTokenizerBase

from ..collators.base import SharedEpoch
from ..collators.mlm import labels_on_word_starts, word_boundaries
from ..configuration_bert18 import (
    DEFAULT_REORDERING_SEGMENTS,
    MAX_REORDERING_SEGMENTS,
    PRETRAINING_TASKS,
    Bert18Config,
    check_pretraining_tasks,
    sentence_reordering_classes,
    tasks_where,
)

logger = logging.getLogger(__name__)

PAIR_TASKS = tasks_where(arrangement="pair")  # nsp, sop, sentence_distance: a label for the pair A, B
ARRANGED_TASKS = tasks_where(arrangement="pair") + tasks_where(arrangement="shuffled_segments")


def reordering_orders(max_segments: int) -> list[tuple[int, ...]]:
    """Sentence reordering's classes in label order: for k = 1, ..., ``max_segments``, the k! orders of
    k segments in lexicographic order (``itertools.permutations``). Label c shows, at position i, the
    original segment ``reordering_orders(m)[c][i]``; label 0 is the paragraph whole, 1 and 2 are two
    segments in order and swapped, 3 to 8 the six orders of three segments (m = 3)."""
    return [order for k in range(1, max_segments + 1) for order in itertools.permutations(range(k))]


def reordering_label(order: Sequence[int]) -> int:
    """The class of ``order`` (a permutation of 0..k-1): the classes of fewer segments, sum over j < k
    of j!, plus the lexicographic rank of ``order`` among the k! permutations."""
    k = len(order)
    if sorted(order) != list(range(k)):
        raise ValueError(f"order must be a permutation of 0..{k - 1}, got {list(order)}")
    rank, remaining = 0, list(range(k))
    for position, value in enumerate(order):
        rank += remaining.index(value) * math.factorial(k - 1 - position)
        remaining.remove(value)
    return sentence_reordering_classes(k - 1) + rank


_SPAN_COLUMNS = ("span_starts", "span_ends", "span_kinds")


@dataclass(frozen=True)
class PairTemplate:
    """Where a tokenizer puts its special tokens around a pair: ``prefix A middle B suffix``.

    Read once from the tokenizer itself (``build_inputs_with_special_tokens`` and
    ``create_token_type_ids_from_sequences`` where it has them, otherwise the ``sequence_ids`` of a
    fast tokenizer's own pair encoding), so BERT, RoBERTa and ALBERT layouts all come out right.
    """

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    prefix_types: tuple[int, ...]
    middle_types: tuple[int, ...]
    suffix_types: tuple[int, ...]
    type_a: int
    type_b: int

    @property
    def num_special_tokens(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> "PairTemplate":
        if getattr(tokenizer, "is_fast", False):
            encoding = tokenizer("a", "b", add_special_tokens=True, return_token_type_ids=True)
            ids, types, sequences = encoding["input_ids"], encoding["token_type_ids"], encoding.sequence_ids()
        elif hasattr(tokenizer, "build_inputs_with_special_tokens"):
            ids = tokenizer.build_inputs_with_special_tokens([-1], [-2])
            types = tokenizer.create_token_type_ids_from_sequences([-1], [-2])
            sequences = [{-1: 0, -2: 1}.get(token) for token in ids]
        else:
            raise ValueError(
                f"cannot read the pair layout of {type(tokenizer).__name__}: it is neither a fast "
                "tokenizer nor has build_inputs_with_special_tokens"
            )
        runs: list[tuple[Any, list[int], list[int]]] = []  # (sequence id, token ids, type ids)
        for token, type_id, sequence in zip(ids, types, sequences):
            if not runs or runs[-1][0] != sequence:
                runs.append((sequence, [], []))
            runs[-1][1].append(token)
            runs[-1][2].append(type_id)
        if runs[0][0] is not None:  # no special token before A, after B or between them: an empty run
            runs.insert(0, (None, [], []))
        if runs[-1][0] is not None:
            runs.append((None, [], []))
        if [run[0] for run in runs] == [None, 0, 1, None]:
            runs.insert(2, (None, [], []))
        if [run[0] for run in runs] != [None, 0, None, 1, None]:
            raise ValueError(f"unexpected pair layout from {type(tokenizer).__name__}: sequence ids {sequences}")
        (_, pre, pre_t), (_, _, a_t), (_, mid, mid_t), (_, _, b_t), (_, suf, suf_t) = runs
        return cls(tuple(pre), tuple(mid), tuple(suf), tuple(pre_t), tuple(mid_t), tuple(suf_t), a_t[0], b_t[0])


class _Segment(NamedTuple):
    """Consecutive sentences ``[s0, s1)`` (global indices) of document ``doc``, shown as tokens ``[lo, hi)``."""

    doc: int
    s0: int
    s1: int
    lo: int
    hi: int


def _nested_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Sentences per document, items per sentence and the flat values of a list-per-sentence column."""
    column = table.column(name).combine_chunks()
    is_list = pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
    inner = column.type.value_type if is_list else None
    if not is_list or not (pa.types.is_list(inner) or pa.types.is_large_list(inner)):
        raise ValueError(
            f"column {name!r} has type {column.type}, expected a list per sentence (list of lists): pairs need "
            "the grouped documents layout, which prepare_pretraining_dataset produces when its tasks include "
            "a sentence-level task (a flat list per row is the packed layout)"
        )
    sentences = column.flatten()
    if column.null_count or sentences.null_count:
        raise ValueError(f"column {name!r} has missing values")
    sentences_per_doc = pc.list_value_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
    items_per_sentence = pc.list_value_length(sentences).to_numpy(zero_copy_only=False).astype(np.int64)
    return sentences_per_doc, items_per_sentence, sentences.flatten()


def _pointers(lengths: np.ndarray) -> np.ndarray:
    """``[0, l0, l0 + l1, ...]``: where each run starts in the flat array, plus the end."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


class SentencePairDataset(SharedEpoch, torch.utils.data.Dataset):
    """Pairs of segments for the sentence-level pretraining tasks, one item per chunk (see the module docstring).

    Args:
        documents: grouped documents (``prepare_pretraining_dataset`` with a sentence-level task):
            ``input_ids`` and ``word_ids`` per sentence are required; ``capitalization_labels`` when
            ``capitalization`` is on; ``span_starts`` / ``span_ends`` / ``span_kinds`` are optional.
        tokenizer: the tokenizer the documents were prepared with (its pair template is used).
        tasks: task names, or a ``Bert18Config`` (its ``pretraining_tasks``). At most one of ``nsp``,
            ``sop``, ``sentence_distance``; ``token_document_relation`` and ``capitalization`` add token
            labels; ``mlm`` and ``plm`` are left to the collators.
        max_length: the longest item, special tokens included.
        seed: fixes the chunks (with ``short_seq_prob``) and, with the epoch and the index, every draw.
        short_seq_prob: the share of chunks with a short random target length.

    Rules for material too short for the task, counted in ``stats`` and logged:

    - **one-sentence chunks** (one-sentence documents, a document's last sentence left alone, or a
      sentence too long to share the budget): not items, skipped in ``__init__``
      (``skipped_one_sentence_chunks``). Their sentences still serve as B from elsewhere and count as
      document text for ``token_document_labels``.
    - **no distant segment** (``sentence_distance`` class 1 needs a segment of A's document with a
      sentence between it and A): for a chunk with sentences outside it, k is drawn among the values
      that leave room (class 1 only); a chunk whose document cannot host any such pair (in practice a
      two-sentence document, or a three-sentence one whose first sentence is alone) is skipped in
      ``__init__`` (``skipped_no_distant_segment``).
    - **one document in the corpus** (no "other document" for NSP label 1 or distance class 2): for
      ``nsp``, label 1 takes B from A's own document, not adjacent to A (the distance class-1 draw;
      chunks that cannot host it are skipped as above); for ``sentence_distance``, the label is drawn
      from {0, 1} only, 50/50. Counted per draw, in the process that draws
      (``fallback_no_other_document``), and announced once at init.

    ``stats`` also holds ``documents``, ``chunks`` (before skipping), ``items``, ``short_target_chunks``,
    ``sentences_over_budget`` (sentences longer than the pair budget, usable only as B, truncated) and,
    per process and per draw, ``truncated_pairs``. ``chunks_index`` holds each item's
    ``(document row, first sentence, end sentence)``, sentences counted within the document.

    With a ``DataLoader``, call ``set_epoch`` before iterating each epoch: the epoch is shared with the
    workers (``bert18.collators.SharedEpoch``), so any number of workers, persistent or not, draw the
    pairs of the epoch set.
    """

    def __init__(
        self,
        documents: datasets.Dataset,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Sequence[str] | Bert18Config,
        max_length: int = 512,
        seed: int = 0,
        short_seq_prob: float = 0.1,
        max_segments: int | None = None,
    ):
        self.tasks = self._check_tasks(tasks)
        pair_tasks = [task for task in PAIR_TASKS if task in self.tasks]
        self.pair_task = pair_tasks[0] if pair_tasks else None
        self.reordering = "sentence_reordering" in self.tasks
        arranged = self.pair_task or ("sentence_reordering" if self.reordering else None)
        self.label_name = PRETRAINING_TASKS[arranged].label if arranged else None
        self.max_segments = self._check_max_segments(tasks, max_segments)
        self.orders = reordering_orders(self.max_segments) if self.reordering else []
        self.capitalization = "capitalization" in self.tasks
        self.token_document_relation = "token_document_relation" in self.tasks
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not 0.0 <= short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {short_seq_prob}")
        self.template = PairTemplate.from_tokenizer(tokenizer)
        if isinstance(tasks, Bert18Config):
            if max_length > tasks.max_position_embeddings:
                raise ValueError(
                    f"max_length {max_length} exceeds the model's max_position_embeddings "
                    f"({tasks.max_position_embeddings})"
                )
            type_ids = {self.template.type_a, self.template.type_b, *self.template.middle_types}
            if max(type_ids) >= tasks.type_vocab_size:
                raise ValueError(
                    f"the tokenizer's pair uses token type {max(type_ids)}, but the config has "
                    f"type_vocab_size={tasks.type_vocab_size}"
                )
        self.max_length = max_length
        # A pair has two segments; a reordered paragraph up to max_segments, each closed by the separator.
        segments = self.max_segments if self.reordering else 2
        self.min_sentences = segments  # a chunk needs a sentence per segment
        specials = self.template.num_special_tokens + (segments - 2) * len(self.template.middle)
        self.budget = max_length - specials
        if self.budget < segments:
            raise ValueError(
                f"max_length {max_length} leaves {self.budget} tokens after the tokenizer's "
                f"{specials} special tokens: each of the {segments} segments needs at least one token"
            )
        self.seed, self.short_seq_prob, self.epoch = int(seed), float(short_seq_prob), 0

        self._read_documents(documents)
        self.stats: dict[str, int] = {
            "documents": self.num_documents,
            "chunks": 0,
            "items": 0,
            "short_target_chunks": 0,
            "skipped_one_sentence_chunks": 0,
            "skipped_no_distant_segment": 0,
            "skipped_short_paragraphs": 0,
            "sentences_over_budget": int((np.diff(self._sentence_ptr) > self.budget).sum()),
            "fallback_no_other_document": 0,
            "truncated_pairs": 0,
        }
        self._other_documents = np.flatnonzero(np.diff(self._doc_ptr) > 0)  # documents B may come from
        self.single_document = len(self._other_documents) < 2
        self._make_chunks()
        self._log_rules()

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _check_tasks(tasks: Sequence[str] | Bert18Config) -> tuple[str, ...]:
        names = check_pretraining_tasks(tasks.pretraining_tasks if isinstance(tasks, Bert18Config) else tasks, "tasks")
        arranged = [name for name in ARRANGED_TASKS if name in names]
        if len(arranged) > 1:
            raise ValueError(
                f"tasks {arranged} cannot share examples: each would label the same pair differently "
                "(NSP: is B the next segment; SOP: are A and B in order; sentence distance: adjacent / "
                "same document / other document), and sentence reordering shows a paragraph's segments "
                "shuffled, not a pair; pick one of them"
            )
        documents = tasks_where(needs_documents=True)
        if not any(name in documents for name in names):
            raise ValueError(
                f"none of the tasks {names} needs sentence pairs or paragraphs ({', '.join(documents)}); "
                "pack sentences instead (prepare_pretraining_dataset)"
            )
        return tuple(names)

    @staticmethod
    def _check_max_segments(tasks: Sequence[str] | Bert18Config, max_segments: int | None) -> int:
        """Sentence reordering's m: the argument, else the config's ``sentence_reordering_max_segments``."""
        configured = tasks.sentence_reordering_max_segments if isinstance(tasks, Bert18Config) else None
        if max_segments is None:
            return configured or DEFAULT_REORDERING_SEGMENTS
        if configured is not None and max_segments != configured:
            raise ValueError(
                f"max_segments={max_segments} disagrees with the config's "
                f"sentence_reordering_max_segments={configured}, which sizes the model's head; "
                "set one of them"
            )
        if not isinstance(max_segments, int | np.integer) or not 1 <= max_segments <= MAX_REORDERING_SEGMENTS:
            raise ValueError(f"max_segments must be an integer in 1..{MAX_REORDERING_SEGMENTS}, got {max_segments!r}")
        return int(max_segments)

    def _read_documents(self, documents: datasets.Dataset) -> None:
        """Flatten the columns into numpy arrays once: tokens, word ids, labels and spans, with pointers."""
        if isinstance(documents, datasets.IterableDataset):
            raise TypeError(
                "documents is a streaming IterableDataset: draw its pairs with "
                "bert18.data.stream_sentence_pairs (pairs from a bounded window of documents)"
            )
        if not isinstance(documents, datasets.Dataset):
            raise TypeError(f"documents must be a datasets.Dataset, got {type(documents).__name__}")
        for name in ("input_ids", "word_ids"):
            if (
                name == "word_ids"
                and isinstance(documents.features.get("input_ids"), datasets.List)
                and not isinstance(documents.features["input_ids"].feature, datasets.List)
            ):
                _nested_column(documents.with_format("arrow")[:1], "input_ids")  # packed rows: say so
            if name not in documents.column_names:
                raise ValueError(
                    f"documents have no column {name!r} (columns: {documents.column_names}); "
                    "expected grouped documents from prepare_pretraining_dataset"
                )
        if len(documents) == 0:
            raise ValueError("documents is empty")
        table = documents.with_format("arrow")[:]
        sentences_per_doc, tokens_per_sentence, tokens = _nested_column(table, "input_ids")
        if (tokens_per_sentence == 0).any():
            doc = int(np.searchsorted(_pointers(sentences_per_doc), np.argmax(tokens_per_sentence == 0), "right")) - 1
            raise ValueError(f"column 'input_ids': document {doc} has a sentence without tokens")
        self.num_documents = len(sentences_per_doc)
        self._doc_ptr = _pointers(sentences_per_doc)  # document -> its sentences (global indices)
        self._sentence_ptr = _pointers(tokens_per_sentence)  # sentence -> its tokens (flat positions)
        self._tokens = tokens.to_numpy(zero_copy_only=False).astype(np.int64)

        def same_shape(name: str) -> pa.Array:
            per_doc, per_sentence, values = _nested_column(table, name)
            if not (np.array_equal(per_doc, sentences_per_doc) and np.array_equal(per_sentence, tokens_per_sentence)):
                raise ValueError(f"column {name!r} does not have one value per token of 'input_ids'")
            return values

        # Word ids made unique across the corpus, from where they change: prepared word ids are stored
        # modulo 256 (bert18.data.prepare), so neighbours, not values, say where a word starts.
        words = same_shape("word_ids").to_numpy(zero_copy_only=False).astype(np.int64)
        starts = word_boundaries(words)
        starts[self._sentence_ptr[:-1]] = True  # every sentence starts a word (sentences are non-empty)
        self._words = np.cumsum(starts) - 1

        self._capitals = None
        if self.capitalization:
            if "capitalization_labels" not in table.column_names:
                raise ValueError("capitalization is on but documents have no column 'capitalization_labels'")
            try:
                self._capitals = same_shape("capitalization_labels").to_numpy(zero_copy_only=False).astype(np.int64)
            except ValueError as error:
                raise ValueError(f"{error}: prepare the documents with 'capitalization' in the tasks") from None

        present = [name for name in _SPAN_COLUMNS if name in table.column_names]
        if present and len(present) < 3:
            raise ValueError(f"documents have {present} but not all of {list(_SPAN_COLUMNS)}")
        self._read_spans(table if present else None, sentences_per_doc, tokens_per_sentence)

        if self.token_document_relation:  # token-id counts per document, as sorted keys doc * vocab + token
            self._vocab = int(self._tokens.max()) + 1
            keys = np.repeat(np.arange(self.num_documents), np.diff(self._sentence_ptr[self._doc_ptr]))
            self._doc_keys, self._doc_counts = np.unique(keys * self._vocab + self._tokens, return_counts=True)

    def _read_spans(
        self, table: pa.Table | None, sentences_per_doc: np.ndarray, tokens_per_sentence: np.ndarray
    ) -> None:
        """Knowledge spans as flat arrays in corpus token positions, with a pointer per sentence."""
        if table is None:
            self._span_ptr = np.zeros(len(tokens_per_sentence) + 1, dtype=np.int64)
            self._span_starts = self._span_ends = np.zeros(0, dtype=np.int64)
            self._span_kinds: list[str] = []
            return
        columns = {}
        for name in _SPAN_COLUMNS:
            per_doc, per_sentence, values = _nested_column(table, name)
            if not np.array_equal(per_doc, sentences_per_doc):
                raise ValueError(f"column {name!r} does not have one list per sentence of 'input_ids'")
            columns[name] = (per_sentence, values)
        counts = columns["span_starts"][0]
        if any(not np.array_equal(columns[name][0], counts) for name in _SPAN_COLUMNS):
            raise ValueError(f"columns {list(_SPAN_COLUMNS)} disagree on the number of spans per sentence")
        sentence = np.repeat(np.arange(len(counts)), counts)
        starts = columns["span_starts"][1].to_numpy(zero_copy_only=False).astype(np.int64)
        ends = columns["span_ends"][1].to_numpy(zero_copy_only=False).astype(np.int64)
        if ((starts < 0) | (starts >= ends) | (ends > tokens_per_sentence[sentence])).any():
            raise ValueError("columns 'span_starts'/'span_ends': a span is not 0 <= start < end <= sentence length")
        self._span_ptr = _pointers(counts)
        self._span_starts = starts + self._sentence_ptr[sentence]
        self._span_ends = ends + self._sentence_ptr[sentence]
        self._span_kinds = columns["span_kinds"][1].to_pylist()

    def _make_chunks(self) -> None:
        """Cut every document into chunks (module docstring, step 1) and keep those that make items."""
        rng = np.random.default_rng(self.seed)
        lengths = np.diff(self._sentence_ptr).tolist()
        needs_distance = self.pair_task == "sentence_distance" or (self.pair_task == "nsp" and self.single_document)
        items = []
        for doc in range(self.num_documents):
            first, end = int(self._doc_ptr[doc]), int(self._doc_ptr[doc + 1])
            start = first
            while start < end:
                short = rng.random() < self.short_seq_prob
                target = int(rng.integers(2, self.budget + 1)) if short else self.budget
                stop, total = start + 1, lengths[start]
                while stop < end and (
                    total + lengths[stop] <= target
                    or (stop - start < self.min_sentences and total + lengths[stop] <= self.budget)
                ):
                    total += lengths[stop]
                    stop += 1
                self.stats["chunks"] += 1
                self.stats["short_target_chunks"] += int(short)
                if self.reordering and (stop - start < self.min_sentences or total > self.budget):
                    self.stats["skipped_short_paragraphs"] += 1
                elif stop - start < 2 and not self.reordering:
                    self.stats["skipped_one_sentence_chunks"] += 1
                elif needs_distance and self._max_distant_k(first, end, start, stop) < 1:
                    self.stats["skipped_no_distant_segment"] += 1
                else:
                    items.append((doc, start, stop))
                start = stop
        self._chunks = np.array(items, dtype=np.int64).reshape(-1, 3)
        self.chunks_index = self._chunks.copy()  # sentences counted within the document, for users
        self.chunks_index[:, 1:] -= self._doc_ptr[self._chunks[:, :1]]
        self.stats["items"] = len(items)
        if not items:
            if self.reordering:
                raise ValueError(
                    f"no chunk of these documents has {self.min_sentences} sentences within "
                    f"{self.budget} tokens for sentence_reordering (max_segments={self.max_segments}): "
                    f"{self.stats}"
                )
            task = self.pair_task or "sentence"
            raise ValueError(f"no chunk of these documents can make a {task} pair: {self.stats}")

    @staticmethod
    def _max_distant_k(first: int, end: int, start: int, stop: int) -> int:
        """The largest k for which A = chunk[:k] leaves a same-document segment with a sentence between it and A."""
        if start - first >= 2:  # a sentence before the gap sentence preceding A: any k works
            return stop - start - 1
        return min(stop - start - 1, end - start - 2)  # needs A's end + 1 < end

    def _log_rules(self) -> None:
        stats = self.stats
        logger.info(
            "%d pair items from %d chunks of %d documents (max_length %d, %d short targets); skipped: "
            "%d one-sentence chunks, %d chunks with no distant segment",
            stats["items"],
            stats["chunks"],
            stats["documents"],
            self.max_length,
            stats["short_target_chunks"],
            stats["skipped_one_sentence_chunks"],
            stats["skipped_no_distant_segment"],
        )
        if self.reordering:
            logger.info(
                "sentence reordering: %d chunks skipped with fewer than %d sentences (max_segments) within %d tokens",
                stats["skipped_short_paragraphs"],
                self.min_sentences,
                self.budget,
            )
        if stats["sentences_over_budget"]:
            use = "are skipped (a paragraph fits whole)" if self.reordering else "only serve as truncated B segments"
            logger.warning(
                "%d sentences are longer than the budget of %d tokens: they %s (prepare with the same "
                "max_length and tokenizer)",
                stats["sentences_over_budget"],
                self.budget,
                use,
            )
        if self.single_document and self.pair_task in ("nsp", "sentence_distance"):
            fallback = (
                "label 1 takes B from the same document, not adjacent to A"
                if self.pair_task == "nsp"
                else "labels are drawn from {0, 1} only"
            )
            logger.warning("only one document: no other document for %s, so %s", self.pair_task, fallback)

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._chunks)

    def __getitem__(self, index: int) -> dict[str, list]:
        i = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        rng = np.random.default_rng([self.seed, self.epoch, i])
        doc, start, stop = (int(x) for x in self._chunks[i])
        if self.reordering:
            label, segments = self._draw_reordering(rng, doc, start, stop)
            example = self._assemble(segments)
        else:
            first_a, second_b, label = self._draw_pair(rng, doc, start, stop)
            first, second = self._truncate(rng, first_a, second_b)
            if self.pair_task == "sop" and label == 1:
                first, second = second, first
            example = self._assemble([first, second])
        example["example_index"] = i
        if self.label_name is not None:
            example[self.label_name] = label
        return example

    # ------------------------------------------------------------------ drawing

    def _draw_pair(self, rng: np.random.Generator, doc: int, start: int, stop: int) -> tuple[_Segment, _Segment, int]:
        """A and B before truncation, and the sentence label (-1 when no pair task is on)."""
        n = stop - start
        label, source = -1, "next"  # source of B: "next" (rest of the chunk), "distant" or "other"
        if self.pair_task == "sentence_distance":
            label = int(rng.integers(2 if self.single_document else 3))  # class 2 needs another document
            source = ("next", "distant", "other")[label]
            self.stats["fallback_no_other_document"] += int(self.single_document)
        elif self.pair_task in ("nsp", "sop"):
            label = int(rng.integers(2))
            if self.pair_task == "nsp" and label == 1:
                source = "distant" if self.single_document else "other"  # alone: a same-document negative
                self.stats["fallback_no_other_document"] += int(self.single_document)
        doc_first, doc_end = int(self._doc_ptr[doc]), int(self._doc_ptr[doc + 1])
        max_k = self._max_distant_k(doc_first, doc_end, start, stop) if source == "distant" else n - 1
        k = int(rng.integers(1, max_k + 1))
        a = self._segment(doc, start, start + k)
        remaining = self.budget - (a.hi - a.lo)
        if source == "next":
            b = self._segment(doc, start + k, stop)
        elif source == "other":
            b = self._other_document_segment(rng, doc, remaining)
        else:
            b = self._distant_segment(rng, doc, start, start + k, remaining)
        return a, b, label

    def _draw_reordering(self, rng: np.random.Generator, doc: int, start: int, stop: int) -> tuple[int, list[_Segment]]:
        """ERNIE 2.0's sentence reordering: the class, then the chunk's sentences cut into that class's
        k segments (the k - 1 cuts uniform among the C(n - 1, k - 1) choices of sentence boundaries)
        and shown in its order. The class is uniform over all ``len(self.orders)`` classes, so every
        class is equally likely (k segments with probability k! / sum_j j!), whatever the chunk."""
        label = int(rng.integers(len(self.orders)))
        order = self.orders[label]
        k, n = len(order), stop - start
        cuts = (np.sort(rng.choice(n - 1, k - 1, replace=False)) + 1 + start).tolist() if k > 1 else []
        bounds = [start, *cuts, stop]
        segments = [self._segment(doc, bounds[j], bounds[j + 1]) for j in range(k)]
        return label, [segments[j] for j in order]

    def _segment(self, doc: int, s0: int, s1: int) -> _Segment:
        return _Segment(doc, s0, s1, int(self._sentence_ptr[s0]), int(self._sentence_ptr[s1]))

    def _fill(self, doc: int, s0: int, limit: int, remaining: int) -> _Segment:
        """Whole sentences from ``s0`` (before ``limit``) while they fit ``remaining`` tokens; at least one."""
        ends = self._sentence_ptr[s0 + 1 : limit + 1] - self._sentence_ptr[s0]
        s1 = s0 + max(1, int(np.searchsorted(ends, remaining, side="right")))
        return self._segment(doc, s0, s1)

    def _other_document_segment(self, rng: np.random.Generator, doc: int, remaining: int) -> _Segment:
        """B from a random other document, from a random sentence (NSP label 1, distance class 2)."""
        position = int(np.searchsorted(self._other_documents, doc))
        pick = int(rng.integers(len(self._other_documents) - 1))
        other = int(self._other_documents[pick + (pick >= position)])
        first, end = int(self._doc_ptr[other]), int(self._doc_ptr[other + 1])
        return self._fill(other, int(rng.integers(first, end)), end, remaining)

    def _distant_segment(self, rng: np.random.Generator, doc: int, a0: int, a1: int, remaining: int) -> _Segment:
        """B from A's document with at least one sentence between it and A (distance class 1)."""
        first, end = int(self._doc_ptr[doc]), int(self._doc_ptr[doc + 1])
        before, after = max(0, a0 - 1 - first), max(0, end - a1 - 1)  # possible first sentences of B
        pick = int(rng.integers(before + after))
        if pick < before:
            return self._fill(doc, first + pick, a0 - 1, remaining)
        return self._fill(doc, a1 + 1 + pick - before, end, remaining)

    def _truncate(self, rng: np.random.Generator, a: _Segment, b: _Segment) -> tuple[_Segment, _Segment]:
        """BERT's truncate_seq_pair: drop a token from the longer segment, front or back at random."""
        excess = (a.hi - a.lo) + (b.hi - b.lo) - self.budget
        if excess <= 0:
            return a, b
        self.stats["truncated_pairs"] += 1
        bounds = [a.lo, a.hi, b.lo, b.hi]
        for front in rng.random(excess) < 0.5:
            longer = 0 if bounds[1] - bounds[0] > bounds[3] - bounds[2] else 2
            if front:
                bounds[longer] += 1
            else:
                bounds[longer + 1] -= 1
        return a._replace(lo=bounds[0], hi=bounds[1]), b._replace(lo=bounds[2], hi=bounds[3])

    # ------------------------------------------------------------------ assembling

    def _layout(self, values: list[np.ndarray], fill: int) -> list[int]:
        """Per-token values of each segment placed in the example, ``fill`` on the special tokens."""
        t = self.template
        out = np.full(self._num_special_tokens(len(values)) + sum(map(len, values)), fill, dtype=np.int64)
        start = len(t.prefix)
        for part in values:
            out[start : start + len(part)] = part
            start += len(part) + len(t.middle)
        return out.tolist()

    def _num_special_tokens(self, segments: int) -> int:
        """The tokenizer's pair template stretched to ``segments``: prefix, a middle between two segments, suffix."""
        return len(self.template.prefix) + (segments - 1) * len(self.template.middle) + len(self.template.suffix)

    def _assemble(self, parts: list[_Segment]) -> dict[str, list]:
        """The output fields of the segments ``parts`` in this order, no padding.

        Two segments are the tokenizer's pair ``prefix A middle B suffix``; more (sentence reordering)
        repeat the middle between every two, and one is ``prefix A suffix``. Segments alternate the
        pair's token types A, B, A, ...; a separator takes the type of the segment it closes (BERT:
        ``[CLS] A [SEP] B [SEP] A [SEP]`` typed ``0 0 0 1 1 0 0``), as the pair template does."""
        t = self.template
        ids = [self._tokens[s.lo : s.hi] for s in parts]
        words, offset = [], 0
        for s in parts:
            words.append(self._words[s.lo : s.hi] - self._words[s.lo] + offset)
            offset = int(words[-1].max()) + 1
        kinds = [t.type_a if j % 2 == 0 else t.type_b for j in range(len(parts))]
        input_ids, types = [*t.prefix], [*t.prefix_types]
        for j, (segment, kind) in enumerate(zip(ids, kinds)):
            closing = len(parts) - 1 == j
            separator = t.suffix if closing else t.middle
            separator_types = (
                (t.suffix_types if kind == t.type_b else (t.type_a,) * len(t.suffix))
                if closing
                else (t.middle_types if kind == t.type_a else (t.type_b,) * len(t.middle))
            )
            input_ids += [*segment.tolist(), *separator]
            types += [*[kind] * len(segment), *separator_types]
        example: dict[str, Any] = {
            "input_ids": input_ids,
            "token_type_ids": types,
            "special_tokens_mask": self._layout([np.zeros(len(part)) for part in ids], 1),
            "word_ids": self._layout(words, -1),
        }
        spans, start = [], len(t.prefix)
        for segment, part in zip(parts, ids):
            spans.append(self._spans(segment, start))
            start += len(part) + len(t.middle)
        example["span_starts"] = [x for span in spans for x in span[0]]
        example["span_ends"] = [x for span in spans for x in span[1]]
        example["span_kinds"] = [x for span in spans for x in span[2]]
        if self._capitals is not None:
            example["capitalization_labels"] = self._layout(
                [self._word_start_labels(self._capitals[s.lo : s.hi], w) for s, w in zip(parts, words)], -100
            )
        if self.token_document_relation:
            labels: list[np.ndarray] = [np.zeros(0)] * len(parts)
            for doc in dict.fromkeys(s.doc for s in parts):  # the segments of one document together
                mine = [j for j, s in enumerate(parts) if s.doc == doc]
                both = self._token_document_labels(doc, [parts[j] for j in mine])
                for j, piece in zip(mine, np.split(both, np.cumsum([len(ids[j]) for j in mine])[:-1])):
                    labels[j] = piece
            example["token_document_labels"] = self._layout(labels, -100)
        return example

    @staticmethod
    def _word_start_labels(labels: np.ndarray, words: np.ndarray) -> np.ndarray:
        """Keep a label on the first token of each word in the pair, -100 on the other pieces."""
        return labels_on_word_starts(labels, word_boundaries(words))

    def _token_document_labels(self, doc: int, shown: list[_Segment]) -> np.ndarray:
        """For the tokens ``shown`` (segments of document ``doc``): 1 where the token id occurs elsewhere in it."""
        tokens = np.concatenate([self._tokens[s.lo : s.hi] for s in shown])
        in_document = self._doc_counts[np.searchsorted(self._doc_keys, doc * self._vocab + tokens)]
        shown_ids, shown_counts = np.unique(tokens, return_counts=True)
        in_pair = shown_counts[np.searchsorted(shown_ids, tokens)]
        return (in_document > in_pair).astype(np.int64)

    def _spans(self, segment: _Segment, offset: int) -> tuple[list[int], list[int], list[str]]:
        """The segment's knowledge spans in pair positions, clipped to what truncation left."""
        first, last = int(self._span_ptr[segment.s0]), int(self._span_ptr[segment.s1])
        if first == last:
            return [], [], []
        starts = np.maximum(self._span_starts[first:last], segment.lo)
        ends = np.minimum(self._span_ends[first:last], segment.hi)
        keep = np.flatnonzero(starts < ends)
        shift = offset - segment.lo
        return (
            (starts[keep] + shift).tolist(),
            (ends[keep] + shift).tolist(),
            [self._span_kinds[first + k] for k in keep.tolist()],
        )


__all__ = ["PAIR_TASKS", "PairTemplate", "SentencePairDataset"]

"""Pretraining dataset preparation: documents -> tokenized sentences -> grouped documents or packed rows.

``prepare_pretraining_dataset`` runs once per corpus (``datasets.map``: batched, cached, ``num_proc``)
and keeps everything the collators need to draw masks and pairs afresh each epoch:

- ``input_ids``: token ids, no special tokens in the grouped layout;
- ``word_ids``: the word each token belongs to (whole-word and n-gram masking);
- ``offsets``: each token's ``[start, end)`` characters in its document (grouped layout only: a
  packed row mixes documents);
- ``capitalization_labels``: 1 where the token's word starts with an upper-case letter in the
  original text (ERNIE 2.0; the uncased tokenizer has lost it), else 0;
- ``span_starts`` / ``span_ends`` / ``span_kinds``: knowledge units (entities, phrases) as token
  ranges ``[start, end)``, masked all-or-none by the knowledge-masking collator;
- ``sequence_ids`` (``packed_documents`` rows only): the number, 1, 2, ..., of the sequence each
  token belongs to in its row, which the collators pass on as the attention mask.

The layout follows the tasks. With a sentence-level task (``nsp``, ``sop``, ``sentence_distance``)
or ``token_document_relation`` a row is a whole **document**, every field a list per sentence, so
pairs are drawn fresh at collation. Otherwise sentences are **packed** into rows of ``max_length``
tokens (RoBERTa's FULL-SENTENCES, or DOC-SENTENCES within one document, or ``packed_documents``:
several documents per row, each its own ``[CLS] ... [SEP]`` sequence that attends only to itself,
with positions from 0: no compute on padding and no attention across documents), ``[CLS] ... [SEP]``
included, fields flat per row with -1 / -100 on the special tokens, plus ``special_tokens_mask``
and ``example_index`` (the row number, from which the collators seed each row's masks).
"""

import functools
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerFast

from ..configuration_bert18 import Bert18Config
from . import sentences as _sentences
from . import spans as _spans
from .sentences import sentence_spans
from .spans import LexiconMatcher, capitalized_entity_spans, char_spans_to_token_spans

logger = logging.getLogger(__name__)

DOCUMENT_TASKS = frozenset({"nsp", "sop", "sentence_distance", "token_document_relation"})
PACKING_MODES = ("full_sentences", "doc_sentences", "packed_documents")
_SENTENCE_FIELDS = ("input_ids", "word_ids", "capitalization_labels", "span_starts", "span_ends", "span_kinds")


def _document_spans(text: str, row: int, user_spans: list[dict] | None, span_column: str | None,
                    lexicon: LexiconMatcher | None, entities: bool) -> list[tuple[int, int, str]]:
    """Character spans of one document from every configured source, validated."""
    spans = []
    for span in user_spans or []:
        start, end, kind = span.get("start"), span.get("end"), span.get("kind") or "entity"
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)):
            raise ValueError(
                f"row {row}, column {span_column!r}: span {span} is not 0 <= start < end <= {len(text)} "
                "(character offsets into the text)"
            )
        spans.append((start, end, kind))
    if lexicon is not None:
        spans.extend(lexicon.find(text))
    if entities:
        spans.extend(capitalized_entity_spans(text))
    return sorted(spans)


def _word_capitalization(text: str, offsets: list[tuple[int, int]], word_ids: list[int]) -> list[int]:
    """1 for every token of a word whose first visible character is upper case, else 0.

    The first visible character, not the first offset: SentencePiece (``▁``) and untrimmed
    byte-level tokens start at the space before their word.
    """
    capital: dict[int, bool] = {}
    for (start, end), word in zip(offsets, word_ids):
        if word not in capital and (visible := text[start:end].lstrip()):
            capital[word] = visible[0].isupper()
    return [int(capital.get(word, False)) for word in word_ids]


def _clip_spans(spans: Any, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """Token spans ``(start, end, kind)`` that overlap tokens ``[lo, hi)``, clipped and shifted to them."""
    return [(max(s, lo) - lo, min(e, hi) - lo, kind) for s, e, kind in spans if s < hi and e > lo]


def _pieces(text: str, offsets: list[tuple[int, int]], max_tokens: int) -> list[tuple[int, int]]:
    """Token ranges of the document's sentences, each cut into pieces of at most ``max_tokens``.

    A token belongs to the sentence holding its last character (a byte-level or SentencePiece
    token may start on the space before its sentence).
    """
    starts = np.array([s for s, _ in sentence_spans(text)], dtype=np.int64)
    if not len(offsets) or not len(starts):
        return []
    last_chars = np.array([max(end - 1, start) for start, end in offsets], dtype=np.int64)
    sentence = np.maximum(np.searchsorted(starts, last_chars, side="right") - 1, 0)
    edges = np.flatnonzero(np.diff(sentence)) + 1
    bounds = zip(np.r_[0, edges].tolist(), np.r_[edges, len(offsets)].tolist())
    return [(i, min(i + max_tokens, hi)) for lo, hi in bounds for i in range(lo, hi, max_tokens)]


def _tokenize_batch(batch: dict[str, list], indices: list[int], tokenizer: PreTrainedTokenizerFast,
                    max_sentence_tokens: int, text_column: str, span_column: str | None,
                    lexicon: LexiconMatcher | None, entities: bool, capitalization: bool,
                    code_version: str) -> dict[str, list]:
    del code_version  # only part of the datasets cache key: new bert18 code, new cache
    texts = batch[text_column]
    for text, row in zip(texts, indices):
        if not isinstance(text, str):
            raise ValueError(f"row {row}, column {text_column!r}: expected text, got {type(text).__name__}")
    # Whole documents, so that every token is what the tokenizer gives the running text (a
    # byte-level BPE tokenizes a sentence's first word differently alone); literal "[SEP]" or
    # "<mask>" in the text stays text.
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    out: dict[str, list] = {field: [] for field in (*_SENTENCE_FIELDS, "offsets", "num_tokens", "dropped_spans")}
    for doc, (text, row) in enumerate(zip(texts, indices)):
        ids, offsets, words = encoded["input_ids"][doc], encoded["offset_mapping"][doc], encoded.word_ids(doc)
        user = batch[span_column][doc] if span_column else None
        spans = _document_spans(text, row, user, span_column, lexicon, entities)
        token_spans, dropped = char_spans_to_token_spans(spans, offsets, return_dropped=True)
        capitals = _word_capitalization(text, offsets, words) if capitalization else None
        doc_fields: dict[str, list] = {field: [] for field in (*_SENTENCE_FIELDS, "offsets")}
        for lo, hi in _pieces(text, offsets, max_sentence_tokens):
            doc_fields["input_ids"].append(ids[lo:hi])
            doc_fields["offsets"].append([list(pair) for pair in offsets[lo:hi]])
            doc_fields["word_ids"].append([w - words[lo] for w in words[lo:hi]])
            doc_fields["capitalization_labels"].append(capitals[lo:hi] if capitals else [])
            inside = _clip_spans(token_spans, lo, hi)
            doc_fields["span_starts"].append([s for s, _, _ in inside])
            doc_fields["span_ends"].append([e for _, e, _ in inside])
            doc_fields["span_kinds"].append([kind for _, _, kind in inside])
        for field, values in doc_fields.items():
            out[field].append(values)
        out["num_tokens"].append(len(ids))
        out["dropped_spans"].append(dropped)
    return out


@functools.cache
def _code_version() -> str:
    """A digest of the code behind a prepared dataset, part of every cache key here: ``datasets``
    fingerprints a module-level function by its name only, so without it a cache written by older
    bert18 code would be read back after an upgrade."""
    sources = [Path(module.__file__).read_bytes() for module in (sys.modules[__name__], _sentences, _spans)]
    return hashlib.sha256(b"".join(sources)).hexdigest()[:16]


def _features(grouped: bool, kept: dict[str, Any], sequence_ids: bool = False) -> datasets.Features:
    """Declared output types: a first batch without any span must not type the span columns as null."""
    def nested(value: datasets.Value) -> Any:
        return datasets.List(datasets.List(value)) if grouped else datasets.List(value)

    integer = datasets.Value("int32")
    fields = {name: nested(datasets.Value("string") if name == "span_kinds" else integer)
              for name in _SENTENCE_FIELDS}
    if grouped:
        fields.update(offsets=datasets.List(datasets.List(datasets.List(integer))),
                      num_tokens=datasets.Value("int64"), dropped_spans=datasets.Value("int64"))
    else:
        fields["special_tokens_mask"] = datasets.List(datasets.Value("int8"))
        if sequence_ids:
            fields["sequence_ids"] = datasets.List(datasets.Value("int16"))
    return datasets.Features({**kept, **fields})


def _map(dataset: Any, function: Any, **kwargs: Any) -> Any:
    """``dataset.map``; an ``IterableDataset`` (streaming) maps lazily, without processes or progress bar."""
    if isinstance(dataset, datasets.IterableDataset):
        kwargs.pop("num_proc", None)
        kwargs.pop("desc", None)
    return dataset.map(function, **kwargs)


def tokenize_documents(
    dataset: datasets.Dataset | datasets.IterableDataset,
    tokenizer: PreTrainedTokenizerFast,
    max_sentence_tokens: int = 509,
    text_column: str = "text",
    span_column: str | None = None,
    lexicon: LexiconMatcher | None = None,
    capitalized_entities: bool = False,
    capitalization: bool = True,
    num_proc: int | None = None,
    batch_size: int = 64,
) -> datasets.Dataset | datasets.IterableDataset:
    """One row per document with every field a list per sentence (see the module docstring).

    Each document is tokenized whole and its tokens cut at sentence boundaries, so the tokens are
    exactly the tokenizer's on the running text. Empty documents are dropped (the count is
    logged); sentences longer than ``max_sentence_tokens`` are cut into several. Knowledge spans
    come from ``span_column`` (a list of ``{"start", "end", "kind"}`` character spans per
    document), a ``lexicon`` and/or ``capitalized_entities``; a span crossing a sentence edge is
    clipped to each side. A streaming ``IterableDataset`` is prepared lazily, as it is iterated.
    """
    if not tokenizer.is_fast:
        raise ValueError("preparation needs a fast tokenizer (offsets and word ids); load it with use_fast=True")
    if max_sentence_tokens < 1:
        raise ValueError(f"max_sentence_tokens must be at least 1, got {max_sentence_tokens}")
    columns = dataset.column_names
    if columns is None:
        raise ValueError("this streaming dataset does not declare its columns; give it features first, e.g. "
                         "dataset.cast(datasets.Features({'text': datasets.Value('string')}))")
    for column in (text_column, span_column):
        if column is not None and column not in columns:
            raise ValueError(f"dataset has no column {column!r}; its columns: {columns}")
    removed = [c for c in (text_column, span_column) if c is not None]
    kept = {name: feature for name, feature in dataset.features.items() if name not in removed}
    tokenized = _map(
        dataset,
        _tokenize_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=removed,
        features=_features(grouped=True, kept=kept),
        fn_kwargs=dict(tokenizer=tokenizer, max_sentence_tokens=max_sentence_tokens, text_column=text_column,
                       span_column=span_column, lexicon=lexicon, entities=capitalized_entities,
                       capitalization=capitalization, code_version=_code_version()),
        desc="Tokenizing sentences",
    )
    filter_kwargs = {} if isinstance(dataset, datasets.IterableDataset) else {
        "num_proc": num_proc, "desc": "Dropping empty documents"}
    kept_rows = tokenized.filter(lambda counts: [n > 0 for n in counts], input_columns="num_tokens", batched=True,
                                 **filter_kwargs)
    if isinstance(kept_rows, datasets.Dataset):
        if len(kept_rows) < len(tokenized):
            logger.info("dropped %d of %d documents with no tokens", len(tokenized) - len(kept_rows), len(tokenized))
        dropped_spans = sum(kept_rows["dropped_spans"])
        if dropped_spans:
            logger.info("dropped %d knowledge spans (overlapping another, or covering no token)", dropped_spans)
    return kept_rows.remove_columns(["num_tokens", "dropped_spans"])


class _RowPacker:
    """Fills ``[CLS] sentence sentence ... [SEP]`` rows; ``add`` takes one tokenized sentence.

    Where a document ends and the next one shares the row, ``boundary`` says what goes between
    them: ``"sep"`` an extra separator (RoBERTa), ``"sequence"`` a new ``[SEP] [CLS]`` sequence with
    its own number in ``sequence_ids``, ``None`` nothing (each document starts a row of its own).
    """

    def __init__(self, max_length: int, cls_id: int, sep_id: int, boundary: str | None):
        self.max_length, self.cls_id, self.sep_id, self.boundary = max_length, cls_id, sep_id, boundary
        fields = (*_SENTENCE_FIELDS, "special_tokens_mask", *(("sequence_ids",) if boundary == "sequence" else ()))
        self.rows: dict[str, list] = {field: [] for field in fields}
        self.document_ended = False
        self._start_row()

    def _start_row(self) -> None:
        self.row: dict[str, list] = {field: [] for field in self.rows}
        self.next_word = 0
        self.sequence = 1
        self._special(self.cls_id)

    def _special(self, token_id: int) -> None:
        for field, value in (("input_ids", token_id), ("word_ids", -1), ("capitalization_labels", -100),
                             ("special_tokens_mask", 1)):
            self.row[field].append(value)
        if "sequence_ids" in self.row:
            self.row["sequence_ids"].append(self.sequence)

    def close_row(self) -> None:
        if len(self.row["input_ids"]) > 1:
            self._special(self.sep_id)
            for field, values in self.row.items():
                self.rows[field].append(values)
        self._start_row()
        self.document_ended = False

    def add(self, ids: list[int], words: list[int], capitals: list[int], spans: tuple[list, list, list]) -> None:
        room = self.max_length - 2
        if len(ids) > room:  # longer than a row: cut, as tokenize_documents would have for this length
            for lo in range(0, len(ids), room):
                hi = min(lo + room, len(ids))
                inside = _clip_spans(zip(*spans), lo, hi)
                self.add(ids[lo:hi], [w - words[lo] for w in words[lo:hi]], capitals[lo:hi] if capitals else [],
                         ([s for s, _, _ in inside], [e for _, e, _ in inside], [k for _, _, k in inside]))
            return
        new_document = self.document_ended and len(self.row["input_ids"]) > 1
        between = {"sep": 1, "sequence": 2}.get(self.boundary, 0) if new_document else 0
        if len(self.row["input_ids"]) + between + len(ids) + 1 > self.max_length:
            self.close_row()
            between = 0
        if between:  # RoBERTa FULL-SENTENCES: an extra separator; packed documents: [SEP] [CLS]
            self._special(self.sep_id)
            if self.boundary == "sequence":
                self.sequence += 1
                self._special(self.cls_id)
        self.document_ended = False
        offset = len(self.row["input_ids"])
        self.row["input_ids"].extend(ids)
        self.row["word_ids"].extend(self.next_word + w for w in words)
        self.row["capitalization_labels"].extend(capitals or [0] * len(ids))
        self.row["special_tokens_mask"].extend([0] * len(ids))
        if "sequence_ids" in self.row:
            self.row["sequence_ids"].extend([self.sequence] * len(ids))
        self.next_word += max(words) + 1 if words else 0
        for field, values in zip(("span_starts", "span_ends"), spans[:2]):
            self.row[field].extend(offset + x for x in values)
        self.row["span_kinds"].extend(spans[2])


# What separates two documents in a row, by packing mode (None: a new row for every document).
_BOUNDARIES = {"full_sentences": "sep", "doc_sentences": None, "packed_documents": "sequence"}


def _pack_batch(batch: dict[str, list], max_length: int, cls_id: int, sep_id: int, boundary: str | None,
                capitalization: bool, code_version: str) -> dict[str, list]:
    del code_version  # only part of the datasets cache key
    packer = _RowPacker(max_length, cls_id, sep_id, boundary)
    for doc, sentences in enumerate(batch["input_ids"]):
        for s, ids in enumerate(sentences):
            spans = tuple(batch[field][doc][s] for field in ("span_starts", "span_ends", "span_kinds"))
            packer.add(ids, batch["word_ids"][doc][s], batch["capitalization_labels"][doc][s], spans)
        if boundary is not None:
            packer.document_ended = True
        else:
            packer.close_row()
    packer.close_row()
    if not capitalization:
        packer.rows["capitalization_labels"] = [[] for _ in packer.rows["input_ids"]]
    return packer.rows


def pack_sentences(
    documents: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    max_length: int = 512,
    mode: str = "full_sentences",
    capitalization: bool = True,
    num_proc: int | None = None,
    batch_size: int = 1000,
) -> datasets.Dataset:
    """Pack whole sentences of ``tokenize_documents`` output into rows of at most ``max_length``.

    ``full_sentences`` (RoBERTa) fills rows across document boundaries, with an extra separator
    where a document ends; ``doc_sentences`` starts a new row with every document;
    ``packed_documents`` fills rows with several documents, each a ``[CLS] ... [SEP]`` sequence of
    its own numbered in ``sequence_ids``, so the model keeps them apart (attention and positions). A sentence is
    split only when it is longer than a row. Rows are filled within each ``datasets.map`` batch
    (``batch_size`` documents, per process with ``num_proc``): the last row of a batch may be short,
    so the rows, though never their tokens or order, depend on those two settings.
    """
    if max_length < 3:
        raise ValueError(f"max_length must leave room for [CLS], a token and [SEP]: at least 3, got {max_length}")
    if mode not in PACKING_MODES:
        raise ValueError(f"packing mode must be one of {PACKING_MODES}, got {mode!r}")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("packing needs a tokenizer with cls and sep tokens (BERT [CLS]/[SEP], RoBERTa <s>/</s>)")
    return _map(
        documents,
        _pack_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=list(documents.features),
        features=_features(grouped=False, kept={}, sequence_ids=mode == "packed_documents"),
        fn_kwargs=dict(max_length=max_length, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id,
                       boundary=_BOUNDARIES[mode], capitalization=capitalization,
                       code_version=_code_version()),
        desc="Packing sentences",
    )


def prepare_pretraining_dataset(
    dataset: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    tasks: Sequence[str] | Bert18Config = ("mlm",),
    max_length: int = 512,
    text_column: str = "text",
    span_column: str | None = None,
    lexicon: LexiconMatcher | None = None,
    capitalized_entities: bool = False,
    packing: str = "full_sentences",
    num_proc: int | None = None,
    seed: int = 0,
    window: int = 256,
    repeat: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """Prepare a corpus for the tasks of ``tasks`` (a list of task names or a ``Bert18Config``).

    Documents are grouped (one row per document) when a task needs sentences of the same document
    (``DOCUMENT_TASKS``), otherwise packed into rows of ``max_length`` with ``packing``. Results
    are cached by ``datasets``: preparing the same corpus the same way again reads the cache.

    A streaming ``IterableDataset`` gives an ``IterableDataset``, prepared lazily as it is read, in
    memory independent of the corpus size: grouped documents (draw pairs from them with
    ``bert18.data.stream_sentence_pairs``), or packed rows served ``window`` rows at a time in an
    order shuffled from ``seed`` and the epoch, each with a unique ``example_index``
    (``bert18.data.streaming``); ``repeat`` makes the packed stream endless (a new pass, reshuffled,
    when the corpus ends), as a Trainer run with ``max_steps`` wants it.
    """
    task_list = list(tasks.pretraining_tasks if isinstance(tasks, Bert18Config) else tasks)
    if max_length < 4:
        raise ValueError(f"max_length must leave room for special tokens and text: at least 4, got {max_length}")
    if isinstance(tasks, Bert18Config) and max_length > tasks.max_position_embeddings:
        raise ValueError(f"max_length {max_length} exceeds the model's max_position_embeddings "
                         f"({tasks.max_position_embeddings})")
    grouped = bool(DOCUMENT_TASKS & set(task_list))
    capitalization = "capitalization" in task_list
    documents = tokenize_documents(
        dataset, tokenizer,
        # room for the special tokens of a pair ([CLS] A [SEP] B [SEP]; RoBERTa <s> A </s></s> B </s>) or a row
        max_sentence_tokens=max_length - (tokenizer.num_special_tokens_to_add(pair=True) if grouped else 2),
        text_column=text_column, span_column=span_column, lexicon=lexicon,
        capitalized_entities=capitalized_entities, capitalization=capitalization, num_proc=num_proc,
    )
    if grouped:
        return documents
    packed = pack_sentences(documents, tokenizer, max_length, packing, capitalization, num_proc)
    # Each row's masks are drawn from (seed, epoch, example_index): see bert18.collators.
    if isinstance(packed, datasets.IterableDataset):
        from .streaming import ShuffledRows, windowed

        features = datasets.Features({**packed.features, "example_index": datasets.Value("int64")})
        return windowed(packed, ShuffledRows(), window, seed, features, repeat=repeat)
    return packed.add_column("example_index", np.arange(len(packed)))


__all__ = ["DOCUMENT_TASKS", "PACKING_MODES", "tokenize_documents", "pack_sentences", "prepare_pretraining_dataset"]


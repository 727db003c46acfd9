"""Pretraining dataset preparation: documents -> tokenized sentences -> grouped documents or packed rows.

``prepare_pretraining_dataset`` runs once per corpus (``datasets.map``: batched, cached, ``num_proc``)
and keeps what the collators need to draw masks and pairs afresh each epoch, and nothing else, in
the smallest types that hold it (about 3 bytes per token packed for MLM, under 4 for ERNIE):

- ``input_ids``: token ids (``uint16`` when the vocabulary has at most 65,536 ids, else ``int32``),
  no special tokens in the grouped layout;
- ``word_ids``: the word each token belongs to, counted from 0 in each sentence (grouped) or row
  (packed), stored modulo 256 as ``uint8`` (255 on special tokens): neighbouring tokens share a
  value exactly when they share a word, which is all whole-word and n-gram masking read; exact
  below 256 words per sentence or row;
- ``capitalization_labels`` (only with the ``capitalization`` task, ``int8``): 1 where the token's
  word starts with an upper-case letter in the original text (ERNIE 2.0; the uncased tokenizer has
  lost it), else 0 (-100 on special tokens);
- ``span_starts`` / ``span_ends`` / ``span_kinds`` (only with a span source): knowledge units
  (entities, phrases) as token ranges ``[start, end)``, masked all-or-none by the knowledge-masking
  collator;
- ``sequence_ids`` (``packed_documents`` rows only, ``uint8``): the number, 1, 2, ..., of the
  sequence each token belongs to in its row, which the collators pass on as the attention mask;
- ``offsets`` (``tokenize_documents(offsets=True)`` only): each token's ``[start, end)`` characters in
  its document, for inspection.

The layout follows the tasks. With a sentence-level task (``nsp``, ``sop``, ``sentence_distance``)
or ``token_document_relation`` a row is a whole **document**, every field a list per sentence, so
pairs are drawn fresh at collation. Otherwise sentences are **packed** into rows of ``max_length``
tokens (RoBERTa's FULL-SENTENCES, or DOC-SENTENCES within one document, or ``packed_documents``:
several documents per row, each its own ``[CLS] ... [SEP]`` sequence that attends only to itself,
with positions from 0: no compute on padding and no attention across documents), ``[CLS] ... [SEP]``
included, fields flat per row, plus ``example_index`` (the row number, from which the collators seed
each row's masks). The special tokens are the tokenizer's special ids (text that spells ``[SEP]`` is
tokenized as text), so the collators find them without a mask column.
"""

import functools
import hashlib
import itertools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from ..configuration_bert18 import Bert18Config, tasks_where
from . import sentences as _sentences
from . import spans as _spans
from .sentences import cut_at_words, sentence_spans
from .spans import SPAN_COLUMNS, LexiconMatcher, capitalized_entity_spans, char_spans_to_token_spans

logger = logging.getLogger(__name__)

DOCUMENT_TASKS = frozenset(tasks_where(needs_documents=True))
PACKING_MODES = ("full_sentences", "doc_sentences", "packed_documents")
_SPECIAL_WORD = 255  # word_ids on special tokens (uint8)


def token_id_type(tokenizer: PreTrainedTokenizerBase) -> str:
    """The smallest integer type that holds every id of the tokenizer (prepared rows, static masks)."""
    return "uint16" if len(tokenizer) <= 1 << 16 else "int32"


def _fields(capitalization: bool, spans: bool, words: bool = True) -> tuple[str, ...]:
    """The per-token fields stored: what the collators read for these tasks and span sources."""
    return (
        "input_ids",
        *(("word_ids",) if words else ()),
        *(("capitalization_labels",) if capitalization else ()),
        *(SPAN_COLUMNS if spans else ()),
    )


def marks_word_starts(tokenizer: PreTrainedTokenizerFast) -> bool:
    """Whether the vocabulary alone tells where words start: WordPiece, whose continuation pieces
    (``##``) are exactly the tokens that share a word with the one before (its word ids are the
    pre-tokens). The collators then find word starts from the ids, and packed rows need no word ids."""
    try:
        model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    except (AttributeError, KeyError, ValueError):
        return False
    return model.get("type") == "WordPiece" and model.get("continuing_subword_prefix") == "##"


def _document_spans(
    text: str,
    row: int,
    user_spans: list[dict] | None,
    span_column: str | None,
    lexicon: LexiconMatcher | None,
    entities: bool,
) -> list[tuple[int, int, str]]:
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


def _on_word_boundaries(
    spans: list[tuple[int, int, str]], words: Sequence[Sequence[int]], text_length: int
) -> list[tuple[int, int, str]]:
    """The character spans that neither start nor end strictly inside a word of ``word_column``: a lexicon
    or mined phrase matched in running Chinese text may begin or end mid-word (国政 in 中国/政府). Text
    outside every listed word (a gap the segmenter left) may hold a span's edge."""
    inside = np.zeros(text_length + 1, dtype=bool)
    for start, end in words:
        inside[start + 1 : end] = True
    return [span for span in spans if not inside[span[0]] and not inside[span[1]]]


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


def _pieces(
    text: str,
    offsets: list[tuple[int, int]],
    max_tokens: int,
    words: Sequence[int | None] | Callable[[], Sequence[int | None]] | None = None,
) -> list[tuple[int, int]]:
    """Token ranges of the document's sentences, each cut into pieces of at most ``max_tokens``,
    at word boundaries when ``words`` (the tokens' word ids, or a function returning them, called
    only when a sentence is too long) are given (``cut_at_words``).

    A token belongs to the sentence holding its last character (a byte-level or SentencePiece
    token may start on the space before its sentence).
    """
    starts = np.array([s for s, _ in sentence_spans(text)], dtype=np.int64)
    if not len(offsets) or not len(starts):
        return []
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # one conversion in C, not a loop per token
    last_chars = np.maximum(spans[:, 1] - 1, spans[:, 0])
    sentence = np.maximum(np.searchsorted(starts, last_chars, side="right") - 1, 0)
    edges = np.flatnonzero(np.diff(sentence)) + 1
    bounds = list(zip(np.r_[0, edges].tolist(), np.r_[edges, len(offsets)].tolist()))
    if words is not None and any(hi - lo > max_tokens for lo, hi in bounds):
        words = words() if callable(words) else words
        return [piece for lo, hi in bounds for piece in cut_at_words(words, max_tokens, lo, hi)]
    return [(i, min(i + max_tokens, hi)) for lo, hi in bounds for i in range(lo, hi, max_tokens)]


def _words_from_spans(
    spans: Sequence[Sequence[int]], offsets: Sequence[tuple[int, int]], row: int, column: str, length: int
) -> list[int]:
    """Each token's word: the index of the ``[start, end)`` character span (``column``) holding its first
    character; a token outside every span is a word of its own. So Chinese characters, one token each,
    share the id of the word a segmenter (or the corpus's gold segmentation) put them in."""
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2) if len(spans) else np.zeros((0, 2), dtype=np.int64)
    if len(bounds) and (
        (bounds[:, 0] >= bounds[:, 1]).any()
        or (bounds[1:, 0] < bounds[:-1, 1]).any()
        or bounds[0, 0] < 0
        or bounds[-1, 1] > length
    ):
        raise ValueError(
            f"row {row}, column {column!r}: word spans must be [start, end) character pairs, "
            f"in order, disjoint, within the text's {length} characters"
        )
    starts = np.asarray([start for start, _ in offsets], dtype=np.int64)
    word = np.searchsorted(bounds[:, 0], starts, side="right") - 1
    inside = (word >= 0) & (starts < bounds[np.maximum(word, 0), 1]) if len(bounds) else np.zeros(len(starts), bool)
    # outside every span: a word of its own, numbered after the spans so no id is shared by accident
    return np.where(inside, word, len(bounds) + np.arange(len(starts))).tolist()


def _tokenize_batch(
    batch: dict[str, list],
    indices: list[int],
    tokenizer: PreTrainedTokenizerFast,
    max_sentence_tokens: int,
    text_column: str,
    span_column: str | None,
    lexicon: LexiconMatcher | None,
    entities: bool,
    capitalization: bool,
    offsets_kept: bool,
    code_version: str,
    words_kept: bool = True,
    word_column: str | None = None,
) -> dict[str, list]:
    del code_version  # only part of the datasets cache key: new bert18 code, new cache
    texts = batch[text_column]
    for text, row in zip(texts, indices):
        if not isinstance(text, str):
            raise ValueError(f"row {row}, column {text_column!r}: expected text, got {type(text).__name__}")
    # Whole documents, so that every token is what the tokenizer gives the running text (a
    # byte-level BPE tokenizes a sentence's first word differently alone); literal "[SEP]" or
    # "<mask>" in the text stays text.
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    with_spans = bool(span_column or lexicon is not None or entities)
    fields = (*_fields(capitalization, with_spans, words_kept), *(("offsets",) if offsets_kept else ()))
    out: dict[str, list] = {field: [] for field in (*fields, "num_tokens", "dropped_spans")}
    for doc, (text, row) in enumerate(zip(texts, indices)):
        ids, offsets = encoded["input_ids"][doc], encoded["offset_mapping"][doc]
        if word_column is not None:  # words from a segmenter or gold annotation (Chinese): their tokens share an id
            words = _words_from_spans(batch[word_column][doc], offsets, row, word_column, len(text))
        else:
            words = encoded.word_ids(doc) if words_kept or capitalization else None
        dropped = 0
        if with_spans:
            user = batch[span_column][doc] if span_column else None
            spans = _document_spans(text, row, user, span_column, lexicon, entities)
            if word_column is not None:  # a unit never cuts a word: whole-word and knowledge masking agree
                aligned = _on_word_boundaries(spans, batch[word_column][doc], len(text))
                dropped += len(spans) - len(aligned)
                spans = aligned
            token_spans, cut = char_spans_to_token_spans(spans, offsets, return_dropped=True)
            dropped += cut
        capitals = _word_capitalization(text, offsets, words) if capitalization else None
        doc_fields: dict[str, list] = {field: [] for field in fields}
        # word ids to cut over-long sentences at word boundaries, read only for a document that needs it
        cut_words = words if words is not None else (lambda doc=doc: encoded.word_ids(doc))
        for lo, hi in _pieces(text, offsets, max_sentence_tokens, cut_words):
            doc_fields["input_ids"].append(ids[lo:hi])
            if words_kept:
                first = words[lo]
                doc_fields["word_ids"].append([(w - first) & 255 for w in words[lo:hi]])  # uint8, modulo 256
            if offsets_kept:
                doc_fields["offsets"].append([list(pair) for pair in offsets[lo:hi]])
            if capitalization:
                doc_fields["capitalization_labels"].append(capitals[lo:hi])
            if with_spans:
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


def _features(
    grouped: bool,
    kept: dict[str, Any],
    id_type: str,
    capitalization: bool,
    spans: bool,
    offsets: bool = False,
    sequence_ids: bool = False,
    max_length: int = 512,
    words: bool = True,
) -> datasets.Features:
    """Declared output types, the smallest that hold the values (a first batch without any span
    must not type the span columns as null either)."""

    def nested(value: str) -> Any:
        value = datasets.Value(value)
        return datasets.List(datasets.List(value)) if grouped else datasets.List(value)

    types = {
        "input_ids": id_type,
        "word_ids": "uint8",
        "capitalization_labels": "int8",
        "span_starts": "uint16",
        "span_ends": "uint16",
        "span_kinds": "string",
    }
    fields = {name: nested(types[name]) for name in _fields(capitalization, spans, words)}
    if grouped:
        if offsets:
            fields["offsets"] = datasets.List(datasets.List(datasets.List(datasets.Value("int32"))))
        fields.update(num_tokens=datasets.Value("int64"), dropped_spans=datasets.Value("int64"))
    elif sequence_ids:  # a sequence takes at least 3 tokens ([CLS] x [SEP])
        fields["sequence_ids"] = nested("uint8" if max_length < 3 * 256 else "uint16")
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
    offsets: bool = False,
    word_ids: bool = True,
    word_column: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """One row per document with every field a list per sentence (see the module docstring).

    Each document is tokenized whole and its tokens cut at sentence boundaries, so the tokens are
    exactly the tokenizer's on the running text. Empty documents are dropped (the count is
    logged); sentences longer than ``max_sentence_tokens`` are cut into several. Knowledge spans
    come from ``span_column`` (a list of ``{"start", "end", "kind"}`` character spans per
    document), a ``lexicon`` and/or ``capitalized_entities``; a span crossing a sentence edge is
    clipped to each side. A streaming ``IterableDataset`` is prepared lazily, as it is iterated.
    Span columns are stored only with a span source, ``capitalization_labels`` only with
    ``capitalization``, ``offsets`` (characters of each token) only with ``offsets=True``;
    ``word_ids=False`` leaves word ids out (rows to be packed for a vocabulary that marks word starts).
    ``word_column`` names a column of word character spans (``[[start, end], ...]`` per document:
    a Chinese segmenter's words, ``bert18.data.chinese``): the tokens of one span then share a word id,
    for whole-word masking of text the tokenizer splits into characters.
    """
    if not tokenizer.is_fast:
        raise ValueError("preparation needs a fast tokenizer (offsets and word ids); load it with use_fast=True")
    if max_sentence_tokens < 1:
        raise ValueError(f"max_sentence_tokens must be at least 1, got {max_sentence_tokens}")
    columns = dataset.column_names
    if columns is None:
        raise ValueError(
            "this streaming dataset does not declare its columns; give it features first, e.g. "
            "dataset.cast(datasets.Features({'text': datasets.Value('string')}))"
        )
    for column in (text_column, span_column, word_column):
        if column is not None and column not in columns:
            raise ValueError(f"dataset has no column {column!r}; its columns: {columns}")
    if word_column is not None and not word_ids:
        raise ValueError(f"word_column {word_column!r} gives word ids, and word_ids=False drops them")
    removed = [c for c in (text_column, span_column, word_column) if c is not None]
    kept = {name: feature for name, feature in dataset.features.items() if name not in removed}
    tokenized = _map(
        dataset,
        _tokenize_batch,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc,
        remove_columns=removed,
        features=_features(
            grouped=True,
            kept=kept,
            id_type=token_id_type(tokenizer),
            capitalization=capitalization,
            spans=bool(span_column or lexicon is not None or capitalized_entities),
            offsets=offsets,
            words=word_ids,
        ),
        fn_kwargs=dict(
            tokenizer=tokenizer,
            max_sentence_tokens=max_sentence_tokens,
            text_column=text_column,
            span_column=span_column,
            lexicon=lexicon,
            entities=capitalized_entities,
            capitalization=capitalization,
            offsets_kept=offsets,
            code_version=_code_version(),
            words_kept=word_ids,
            word_column=word_column,
        ),
        desc="Tokenizing sentences",
    )
    filter_kwargs = (
        {}
        if isinstance(dataset, datasets.IterableDataset)
        else {"num_proc": num_proc, "desc": "Dropping empty documents"}
    )
    kept_rows = tokenized.filter(
        lambda counts: [n > 0 for n in counts], input_columns="num_tokens", batched=True, **filter_kwargs
    )
    if isinstance(kept_rows, datasets.Dataset):
        if len(kept_rows) < len(tokenized):
            logger.info("dropped %d of %d documents with no tokens", len(tokenized) - len(kept_rows), len(tokenized))
        dropped_spans = sum(kept_rows["dropped_spans"])
        if dropped_spans:
            logger.info(
                "dropped %d knowledge spans (overlapping another, cutting a word of word_column, or covering no token)",
                dropped_spans,
            )
    return kept_rows.remove_columns(["num_tokens", "dropped_spans"])


class _RowPacker:
    """Fills ``[CLS] sentence sentence ... [SEP]`` rows; ``add`` takes one tokenized sentence.

    Where a document ends and the next one shares the row, ``boundary`` says what goes between
    them: ``"sep"`` an extra separator (RoBERTa), ``"sequence"`` a new ``[SEP] [CLS]`` sequence with
    its own number in ``sequence_ids``, ``None`` nothing (each document starts a row of its own).
    ``fields`` are the per-token fields kept (``_fields``).
    """

    def __init__(self, max_length: int, cls_id: int, sep_id: int, boundary: str | None, fields: tuple[str, ...]):
        self.max_length, self.cls_id, self.sep_id, self.boundary = max_length, cls_id, sep_id, boundary
        self.capitalization = "capitalization_labels" in fields
        self.spans = "span_starts" in fields
        self.words = "word_ids" in fields
        fields = (*fields, *(("sequence_ids",) if boundary == "sequence" else ()))
        self.rows: dict[str, list] = {field: [] for field in fields}
        self.document_ended = False
        self._start_row()

    def _start_row(self) -> None:
        self.row: dict[str, list] = {field: [] for field in self.rows}
        self.next_word = 0
        self.sequence = 1
        self._special(self.cls_id)

    def _special(self, token_id: int) -> None:
        self.row["input_ids"].append(token_id)
        if self.words:
            self.row["word_ids"].append(_SPECIAL_WORD)
        if self.capitalization:
            self.row["capitalization_labels"].append(-100)
        if "sequence_ids" in self.row:
            self.row["sequence_ids"].append(self.sequence)

    def close_row(self) -> None:
        if len(self.row["input_ids"]) > 1:
            self._special(self.sep_id)
            for field, values in self.row.items():
                self.rows[field].append(values)
        self._start_row()
        self.document_ended = False

    def add(
        self, ids: list[int], words: list[int], capitals: list[int] | None, spans: tuple[list, list, list] | None
    ) -> None:
        """One sentence: its ids, word ids (from 0, modulo 256), capitalization labels and spans, if kept."""
        room = self.max_length - 2
        if len(ids) > room:  # longer than a row: cut, as tokenize_documents would have for this length
            # at word boundaries when the word ids are kept (no row starts with "##ing"), else every room tokens
            pieces = (
                cut_at_words(words, room)
                if len(words) == len(ids)
                else [(lo, min(lo + room, len(ids))) for lo in range(0, len(ids), room)]
            )
            for lo, hi in pieces:
                inside = _clip_spans(zip(*spans), lo, hi) if spans is not None else None
                self.add(
                    ids[lo:hi],
                    [(w - words[lo]) & 255 for w in words[lo:hi]],
                    capitals[lo:hi] if capitals is not None else None,
                    None
                    if inside is None
                    else ([s for s, _, _ in inside], [e for _, e, _ in inside], [k for _, _, k in inside]),
                )
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
        if self.words:
            first = self.next_word
            self.row["word_ids"].extend([(first + w) & 255 for w in words])
            # words count up by one per new word (modulo 256): the sentence holds 1 + its changes (a Python
            # count: per sentence, faster than bert18.collators.mlm.word_boundaries' arrays, measured)
            self.next_word += 1 + sum(a != b for a, b in itertools.pairwise(words)) if words else 0
        if self.capitalization:
            self.row["capitalization_labels"].extend(capitals if capitals is not None else [0] * len(ids))
        if "sequence_ids" in self.row:
            self.row["sequence_ids"].extend([self.sequence] * len(ids))
        if self.spans:
            for field, values in zip(("span_starts", "span_ends"), spans[:2]):
                self.row[field].extend([offset + x for x in values])
            self.row["span_kinds"].extend(spans[2])


# What separates two documents in a row, by packing mode (None: a new row for every document).
_BOUNDARIES = {"full_sentences": "sep", "doc_sentences": None, "packed_documents": "sequence"}


def _pack_batch(
    batch: dict[str, list],
    max_length: int,
    cls_id: int,
    sep_id: int,
    boundary: str | None,
    fields: tuple[str, ...],
    code_version: str,
) -> dict[str, list]:
    del code_version  # only part of the datasets cache key
    packer = _RowPacker(max_length, cls_id, sep_id, boundary, fields)
    capitals = batch.get("capitalization_labels") if packer.capitalization else None
    with_spans = packer.spans
    for doc, sentences in enumerate(batch["input_ids"]):
        for s, ids in enumerate(sentences):
            spans = tuple(batch[field][doc][s] for field in SPAN_COLUMNS) if with_spans else None
            words = batch["word_ids"][doc][s] if packer.words else ()
            packer.add(ids, words, capitals[doc][s] if capitals is not None else None, spans)
        if boundary is not None:
            packer.document_ended = True
        else:
            packer.close_row()
    packer.close_row()
    return packer.rows


def pack_sentences(
    documents: datasets.Dataset,
    tokenizer: PreTrainedTokenizerFast,
    max_length: int = 512,
    mode: str = "full_sentences",
    capitalization: bool = True,
    num_proc: int | None = None,
    batch_size: int = 1000,
    word_ids: bool = True,
) -> datasets.Dataset:
    """Pack whole sentences of ``tokenize_documents`` output into rows of at most ``max_length``.

    ``full_sentences`` (RoBERTa) fills rows across document boundaries, with an extra separator
    where a document ends; ``doc_sentences`` starts a new row with every document;
    ``packed_documents`` fills rows with several documents, each a ``[CLS] ... [SEP]`` sequence of
    its own numbered in ``sequence_ids``, so the model keeps them apart (attention and positions). A sentence is
    split only when it is longer than a row. ``word_ids=False`` leaves the word ids out (for a
    vocabulary that marks word starts itself, ``marks_word_starts``). Rows are filled within each
    ``datasets.map`` batch
    (``batch_size`` documents, per process with ``num_proc``): the last row of a batch may be short,
    so the rows, though never their tokens or order, depend on those two settings.
    """
    if max_length < 3:
        raise ValueError(f"max_length must leave room for [CLS], a token and [SEP]: at least 3, got {max_length}")
    if mode not in PACKING_MODES:
        raise ValueError(f"packing mode must be one of {PACKING_MODES}, got {mode!r}")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise ValueError("packing needs a tokenizer with cls and sep tokens (BERT [CLS]/[SEP], RoBERTa <s>/</s>)")
    columns = documents.features
    capitalization = capitalization and "capitalization_labels" in columns
    spans = "span_starts" in columns
    id_type = columns["input_ids"].feature.feature.dtype if "input_ids" in columns else token_id_type(tokenizer)
    words = word_ids and "word_ids" in columns
    return _map(
        documents,
        _pack_batch,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=list(documents.features),
        features=_features(
            grouped=False,
            kept={},
            id_type=id_type,
            capitalization=capitalization,
            spans=spans,
            sequence_ids=mode == "packed_documents",
            max_length=max_length,
            words=words,
        ),
        fn_kwargs=dict(
            max_length=max_length,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            boundary=_BOUNDARIES[mode],
            fields=_fields(capitalization, spans, words),
            code_version=_code_version(),
        ),
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
    word_ids: bool | None = None,
    word_column: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Prepare a corpus for the tasks of ``tasks`` (a list of task names or a ``Bert18Config``).

    Documents are grouped (one row per document) when a task needs sentences of the same document
    (``DOCUMENT_TASKS``), otherwise packed into rows of ``max_length`` with ``packing``. Results
    are cached by ``datasets``: preparing the same corpus the same way again reads the cache.
    Packed rows keep ``word_ids`` unless the vocabulary marks word starts itself (WordPiece's ``##``:
    the collators then read them off the ids, to the same words); ``word_ids=True`` or ``False``
    decides it explicitly. ``word_column`` (word character spans per document, e.g. from a Chinese
    segmenter: ``bert18.data.chinese``) gives the words instead of the tokenizer, and keeps them.

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
        raise ValueError(
            f"max_length {max_length} exceeds the model's max_position_embeddings ({tasks.max_position_embeddings})"
        )
    grouped = bool(DOCUMENT_TASKS & set(task_list))
    capitalization = "capitalization" in task_list
    keep_words = (
        grouped or word_column is not None or (not marks_word_starts(tokenizer) if word_ids is None else word_ids)
    )
    documents = tokenize_documents(
        dataset,
        tokenizer,
        # room for the special tokens of a pair ([CLS] A [SEP] B [SEP]; RoBERTa <s> A </s></s> B </s>) or a row
        max_sentence_tokens=max_length - (tokenizer.num_special_tokens_to_add(pair=True) if grouped else 2),
        text_column=text_column,
        span_column=span_column,
        lexicon=lexicon,
        capitalized_entities=capitalized_entities,
        capitalization=capitalization,
        num_proc=num_proc,
        word_ids=keep_words,
        word_column=word_column,
    )
    if grouped:
        return documents
    packed = pack_sentences(documents, tokenizer, max_length, packing, capitalization, num_proc, word_ids=keep_words)
    # Each row's masks are drawn from (seed, epoch, example_index): see bert18.collators.
    if isinstance(packed, datasets.IterableDataset):
        from .streaming import ShuffledRows, windowed  # here: streaming imports pairs, which imports this module

        features = datasets.Features({**packed.features, "example_index": datasets.Value("int64")})
        return windowed(packed, ShuffledRows(), window, seed, features, repeat=repeat)
    return packed.add_column("example_index", np.arange(len(packed)))


__all__ = [
    "DOCUMENT_TASKS",
    "PACKING_MODES",
    "marks_word_starts",
    "token_id_type",
    "tokenize_documents",
    "pack_sentences",
    "prepare_pretraining_dataset",
]

"""Documents longer than the encoder's ``max_position_embeddings`` (seed question 9).

BERT reads at most 512 positions. Three ways past that, all here:

(a) **Truncation** (``truncate_ids``, ``encode_truncated``): keep the ``head``, the ``tail`` or
    ``head+tail`` of the tokens. Sun et al. 2019 ("How to Fine-Tune BERT for Text
    Classification") found head+tail best on IMDb: the first 128 and the last 382 tokens of 510,
    which is what ``head_tokens=None`` gives at 512 (a quarter of the budget from the head).
(b) **Key sentences** (``key_sentences``): score sentences by centrality (TextRank / LexRank:
    PageRank over the cosine similarity of their TF-IDF vectors, numpy only, no model), then keep
    the best ones that fit the token budget, in their original order.
(c) **Chunks** (``chunk_document``): overlapping windows covering every token, each with [CLS] and
    [SEP]; ``Bert18ForLongSequenceClassification`` encodes every chunk and combines the chunk
    vectors of a document (concatenation, mean, max, attention or an LSTM), trained end to end.

``LongDocumentCollator`` applies any of them to a batch of raw texts for the Trainer.

The 512 defaults are BERT's limit. A model that reads more (the rotary ``modernbert-*`` presets: 8,192)
is served by ``model_max_length(model)`` and ``LongDocumentCollator.for_model(tokenizer, model)``, which
chunk and truncate at the model's real limit (many documents then fit in one chunk).
"""

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .data.sentences import sentence_spans

__all__ = [
    "model_max_length",
    "STRATEGIES",
    "LongDocumentCollator",
    "chunk_document",
    "chunk_spans",
    "chunks_needed",
    "encode_truncated",
    "key_sentences",
    "sentence_centrality",
    "special_tokens",
    "truncate_ids",
]

TRUNCATIONS = ("head", "tail", "head+tail")
STRATEGIES = (*TRUNCATIONS, "key_sentences", "chunk")


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single sequence: ([CLS], [SEP]) for BERT,
    (<s>, </s>) for RoBERTa. Read from the tokenizer's own post-processing of a probe text."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise ValueError(f"cannot find how {type(tokenizer).__name__} adds special tokens")


def _tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids without special tokens, as many as the text has (no truncation, no length warning)."""
    if not texts:
        return []
    return tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


def _budget(tokenizer: Any, max_length: int) -> tuple[list[int], list[int], int]:
    prefix, suffix = special_tokens(tokenizer)
    budget = max_length - len(prefix) - len(suffix)
    if budget < 1:
        specials = len(prefix) + len(suffix)
        raise ValueError(f"max_length={max_length} leaves no room for tokens besides the {specials} special ones")
    return prefix, suffix, budget


# --- (a) truncation ---------------------------------------------------------------------------


def truncate_ids(
    ids: Sequence[int], budget: int, strategy: str = "head+tail", head_tokens: int | None = None
) -> list[int]:
    """At most ``budget`` of ``ids``: the first (``head``), the last (``tail``), or the first
    ``head_tokens`` and the last ``budget - head_tokens`` (``head+tail``; ``head_tokens=None`` takes
    a quarter of the budget, Sun et al.'s 128 of 510). Shorter inputs come back whole."""
    if strategy not in TRUNCATIONS:
        raise ValueError(f"strategy must be one of {TRUNCATIONS}, got {strategy!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    head = round(budget / 4) if head_tokens is None else head_tokens
    if strategy == "head+tail" and not 0 <= head <= budget:
        raise ValueError(f"head_tokens={head_tokens} must lie in 0..{budget} (the tokens left besides the specials)")
    ids = list(ids)
    if len(ids) <= budget:
        return ids
    if strategy == "head":
        return ids[:budget]
    if strategy == "tail":
        return ids[-budget:]
    return ids[:head] + ids[len(ids) - (budget - head) :]


def encode_truncated(
    tokenizer: Any, text: str, max_length: int = 512, strategy: str = "head+tail", head_tokens: int | None = None
) -> list[int]:
    """``text`` as one model input of at most ``max_length`` ids, special tokens included, by
    ``head``, ``tail`` or ``head+tail`` truncation or by ``key_sentences``. An empty text gives the
    special tokens alone (as the tokenizer would)."""
    prefix, suffix, budget = _budget(tokenizer, max_length)
    if strategy == "key_sentences":
        text = key_sentences(text, tokenizer, budget)
        strategy = "head"  # a single sentence longer than the budget is cut
    elif strategy not in TRUNCATIONS:
        raise ValueError(f"strategy must be one of {(*TRUNCATIONS, 'key_sentences')}, got {strategy!r}")
    return prefix + truncate_ids(_tokenize(tokenizer, [text])[0], budget, strategy, head_tokens) + suffix


# --- (b) key sentences ------------------------------------------------------------------------

_WORD = re.compile(r"\w+")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# English function words: without them, "is" and "the" would link every sentence to every other.
_STOPWORDS = frozenset(
    "a an and are as at be been but by can for from has have if in into is it its may not of on or so such "
    "than that the their then there these they this to was were which will with".split()
)


def _terms(sentence: str) -> list[str]:
    """Lowercased words without stopwords; Chinese / Japanese / Korean runs (no spaces between words)
    as overlapping character pairs, the usual unit of CJK retrieval."""
    terms = []
    for word in _WORD.findall(sentence.lower()):
        if _CJK_CHAR.search(word):
            terms += [word[i : i + 2] for i in range(max(len(word) - 1, 1))]
        elif word not in _STOPWORDS:
            terms.append(word)
    return terms


def sentence_centrality(
    sentences: Sequence[str], damping: float = 0.85, tolerance: float = 1e-10, max_iterations: int = 200
) -> np.ndarray:
    """TextRank / LexRank centrality of each sentence (scores sum to 1).

    Sentences are TF-IDF vectors over their words (``_terms``), with the inverse document frequency
    taken over the sentences of this text (log(n / df): a word in every sentence weighs nothing);
    edges are their cosine similarities; the score is PageRank on that graph with ``damping``. A
    sentence sharing no word with any other gets only the teleport share.
    """
    n = len(sentences)
    if n == 0:
        return np.zeros(0)
    vocabulary: dict[str, int] = {}
    rows = [[vocabulary.setdefault(term, len(vocabulary)) for term in _terms(s)] for s in sentences]
    counts = np.zeros((n, max(len(vocabulary), 1)))
    for i, row in enumerate(rows):
        np.add.at(counts[i], row, 1.0)
    document_frequency = (counts > 0).sum(axis=0)
    vectors = counts * np.log(n / np.maximum(document_frequency, 1))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    out_weight = similarity.sum(axis=1, keepdims=True)
    # A sentence with no edges spreads its score evenly (the usual fix for dangling nodes).
    transition = np.where(out_weight > 0, similarity / np.where(out_weight > 0, out_weight, 1.0), 1.0 / n)
    scores = np.full(n, 1.0 / n)
    for _ in range(max_iterations):
        updated = (1 - damping) / n + damping * transition.T @ scores
        if np.abs(updated - scores).sum() < tolerance:
            return updated
        scores = updated
    return scores


def key_sentences(text: str, tokenizer: Any, max_tokens: int, damping: float = 0.85) -> str:
    """The most central sentences of ``text`` (``sentence_centrality``) that fit in ``max_tokens``
    tokens together, in their original order, joined by spaces. Greedy: from the best score down,
    each sentence that still fits is taken. A text that fits comes back unchanged; when not even
    the best sentence fits, it alone is returned (to be cut by the caller)."""
    spans = sentence_spans(text)
    sentences = [text[start:end] for start, end in spans]
    lengths = [len(ids) for ids in _tokenize(tokenizer, sentences)]
    if sum(lengths) <= max_tokens:
        return text
    scores = sentence_centrality(sentences, damping)
    chosen, used = [], 0
    for i in np.argsort(-scores, kind="stable"):
        if used + lengths[i] <= max_tokens:
            chosen.append(int(i))
            used += lengths[i]
    if not chosen:
        chosen = [int(np.argmax(scores))]
    return " ".join(sentences[i] for i in sorted(chosen))


# --- (c) chunks -------------------------------------------------------------------------------


def chunk_spans(num_tokens: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) of windows of ``window`` tokens, consecutive ones sharing
    ``stride`` tokens (transformers' tokenizer ``stride``), from the first token until one reaches
    the last: every token lies in at least one window. The last window may be shorter. No tokens:
    one empty window."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0 <= stride < window:
        raise ValueError(f"stride (the overlap) must lie in 0..{window - 1}, got {stride}")
    spans, start = [], 0
    while True:
        spans.append((start, min(start + window, num_tokens)))
        if start + window >= num_tokens:
            return spans
        start += window - stride


def _limit_chunks(spans: list[tuple[int, int]], max_chunks: int | None, on_overflow: str) -> list[tuple[int, int]]:
    if max_chunks is None or len(spans) <= max_chunks:
        return spans
    if on_overflow == "error":
        raise ValueError(
            f"the document needs {len(spans)} chunks, more than max_chunks={max_chunks}: raise max_chunks, pass "
            "on_overflow='truncate' (keeps the first max_chunks - 1 chunks and the last), or truncate the text"
        )
    if on_overflow != "truncate":
        raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
    # Head and tail at chunk level (after Sun et al.): the opening and the ending both survive.
    return spans[: max_chunks - 1] + spans[-1:] if max_chunks > 1 else spans[:1]


def model_max_length(model_or_config: Any) -> int:
    """The longest input ``model_or_config`` reads: its ``max_position_embeddings`` (512 for BERT, 8,192
    for the rotary ModernBERT presets)."""
    config = getattr(model_or_config, "config", model_or_config)
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{type(model_or_config).__name__} has no max_position_embeddings to take the limit from")
    return limit


def chunk_document(
    tokenizer: Any,
    text: str | Sequence[int],
    max_length: int = 512,
    stride: int | None = None,
    max_chunks: int | None = None,
    on_overflow: str = "error",
) -> list[list[int]]:
    """Overlapping chunks of a document, each ``[CLS] tokens [SEP]`` of at most ``max_length`` ids.

    Args:
        text: the document, or its token ids without special tokens.
        stride: tokens shared by consecutive chunks (default: a quarter of a chunk), so no
            passage is only ever seen cut at a chunk edge.
        max_chunks: limit on the number of chunks (``None``: none).
        on_overflow: past ``max_chunks``, ``error`` raises a ``ValueError``; ``truncate`` keeps the
            first ``max_chunks - 1`` chunks and the last one, dropping the middle.

    An empty text gives one chunk of the special tokens alone.
    """
    prefix, suffix, window = _budget(tokenizer, max_length)
    ids = _tokenize(tokenizer, [text])[0] if isinstance(text, str) else list(text)
    return _chunks(ids, prefix, suffix, window, stride, max_chunks, on_overflow)


def _chunks(
    ids: list[int],
    prefix: list[int],
    suffix: list[int],
    window: int,
    stride: int | None,
    max_chunks: int | None,
    on_overflow: str,
) -> list[list[int]]:
    spans = chunk_spans(len(ids), window, window // 4 if stride is None else stride)
    return [prefix + ids[start:end] + suffix for start, end in _limit_chunks(spans, max_chunks, on_overflow)]


# --- batching ---------------------------------------------------------------------------------


class LongDocumentCollator:
    """Batches raw long documents for classification, by any strategy of this module.

    - ``chunk``: every document becomes its chunks (``chunk_document``); the batch holds all chunks
      of all documents, document after document, ``input_ids`` / ``attention_mask`` of shape
      [total chunks, longest chunk], with ``num_chunks`` [documents] telling how many belong to each:
      the input of ``Bert18ForLongSequenceClassification``.
    - ``head``, ``tail``, ``head+tail``, ``key_sentences``: one window per document
      (``encode_truncated``), [documents, longest]: the input of any sequence classifier.

    Each feature is a mapping with the text under ``text_column`` or, for every strategy but
    ``key_sentences``, its token ids under ``input_ids`` (a dataset tokenized once, not again each
    epoch; special tokens at its two ends are dropped, since the chunks get their own), and
    optionally a label under ``label_column`` or ``labels`` (ints: classes; floats: regression;
    lists: multi-label). With the Trainer, set ``remove_unused_columns=False`` so that the text
    column reaches the collator.
    """

    def __init__(
        self,
        tokenizer: Any,
        strategy: str = "chunk",
        max_length: int = 512,
        stride: int | None = None,
        head_tokens: int | None = None,
        max_chunks: int | None = None,
        on_overflow: str = "error",
        text_column: str = "text",
        label_column: str = "label",
    ):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if on_overflow not in ("error", "truncate"):
            raise ValueError(f"on_overflow must be 'error' or 'truncate', got {on_overflow!r}")
        self.tokenizer, self.strategy, self.max_length = tokenizer, strategy, max_length
        self.stride, self.head_tokens = stride, head_tokens
        self.max_chunks, self.on_overflow = max_chunks, on_overflow
        self.text_column, self.label_column = text_column, label_column
        self.prefix, self.suffix, self.budget = _budget(tokenizer, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        if strategy in TRUNCATIONS:
            truncate_ids([], self.budget, strategy, head_tokens)  # a bad head_tokens fails now, not mid-epoch

    @classmethod
    def for_model(cls, tokenizer: Any, model_or_config: Any, **kwargs: Any) -> "LongDocumentCollator":
        """A collator whose chunks and truncations are as long as ``model_or_config`` reads
        (``model_max_length``), not BERT's 512."""
        return cls(tokenizer, max_length=model_max_length(model_or_config), **kwargs)

    def _without_specials(self, ids: Sequence[int]) -> list[int]:
        ids = list(ids)
        if self.prefix and ids[: len(self.prefix)] == self.prefix:
            ids = ids[len(self.prefix) :]
        if self.suffix and ids[-len(self.suffix) :] == self.suffix:
            ids = ids[: -len(self.suffix)]
        return ids

    def _token_ids(self, features: Sequence[dict]) -> list[list[int]]:
        pretokenized = all("input_ids" in f for f in features)
        if self.strategy != "key_sentences" and pretokenized and not all(self.text_column in f for f in features):
            return [self._without_specials(f["input_ids"]) for f in features]
        missing = [i for i, f in enumerate(features) if not isinstance(f.get(self.text_column), str)]
        if missing:
            raise ValueError(f"features {missing[:5]} have no text under {self.text_column!r}")
        texts = [f[self.text_column] for f in features]
        if self.strategy == "key_sentences":
            texts = [key_sentences(text, self.tokenizer, self.budget) for text in texts]
        return _tokenize(self.tokenizer, texts)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("no documents to collate")
        token_ids = self._token_ids(features)
        batch: dict[str, torch.Tensor] = {}
        if self.strategy == "chunk":
            rows, counts = [], []
            for document, ids in enumerate(token_ids):
                try:
                    chunks = _chunks(
                        ids, self.prefix, self.suffix, self.budget, self.stride, self.max_chunks, self.on_overflow
                    )
                except ValueError as error:
                    raise ValueError(f"document {document} of the batch: {error}") from error
                rows += chunks
                counts.append(len(chunks))
            # First key: the Trainer takes a batch's size from its first tensor, here the documents.
            batch["num_chunks"] = torch.tensor(counts)
        else:
            truncation = "head" if self.strategy == "key_sentences" else self.strategy
            rows = [
                self.prefix + truncate_ids(ids, self.budget, truncation, self.head_tokens) + self.suffix
                for ids in token_ids
            ]
        batch.update(self._pad(rows))
        labels = [f.get(self.label_column, f.get("labels")) for f in features]
        if any(label is not None for label in labels):
            if any(label is None for label in labels):
                raise ValueError("some features have a label and some do not")
            batch["labels"] = torch.tensor(labels)
        return batch

    def _pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        longest = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def chunks_needed(num_tokens: int, max_length: int = 512, stride: int | None = None, specials: int = 2) -> int:
    """How many chunks ``chunk_document`` makes of ``num_tokens`` tokens (for sizing ``max_chunks``)."""
    window = max_length - specials
    stride = window // 4 if stride is None else stride
    return 1 if num_tokens <= window else 1 + math.ceil((num_tokens - window) / (window - stride))

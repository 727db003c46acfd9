"""The built-in corpus's downstream task: which standard-library module does a passage document?

Every document of the built-in corpus is one module's documentation, so its passages carry a real
label. ``module_classification`` cuts the documents into passages of a few consecutive sentences,
keeps the modules with the most passages (the same number for each, so chance is 1 / labels) and
splits them by position: every ``test_every``-th passage of a module is a test passage, so the test
set spreads over the whole document. Each passage keeps its document row and character span, and
``remove_passages`` cuts given passages out of the corpus: pretrain on the result and the pretrained
model has never seen the test text (only unlabeled training text, as in domain-adaptive pretraining).
"""

from collections import defaultdict
from collections.abc import Iterable

import datasets

from .corpus import builtin_corpus
from .sentences import sentence_spans


def _passages(text: str, sentences_per_passage: int, min_words: int) -> list[tuple[int, int]]:
    spans = sentence_spans(text)
    passages = []
    for first in range(0, len(spans) - sentences_per_passage + 1, sentences_per_passage):
        start, end = spans[first][0], spans[first + sentences_per_passage - 1][1]
        if len(text[start:end].split()) >= min_words:
            passages.append((start, end))
    return passages


def module_classification(
    corpus: datasets.Dataset | None = None,
    num_labels: int = 8,
    sentences_per_passage: int = 3,
    passages_per_label: int = 40,
    test_every: int = 4,
    min_words: int = 12,
) -> datasets.DatasetDict:
    """Passages labelled with their module: ``train`` and ``test`` splits.

    Args:
        corpus: documents with ``text`` and ``module`` columns (default: ``builtin_corpus()``).
        num_labels: how many modules (classes); those with the most passages are kept.
        sentences_per_passage: consecutive sentences per passage.
        passages_per_label: passages taken from each kept module (its first ones, in order), so the
            classes are balanced; modules with fewer passages are left out.
        test_every: every n-th passage of a module goes to ``test``.
        min_words: shorter passages (headings, lone signatures) are skipped.

    Columns: ``text``, ``label`` (a ``ClassLabel`` naming the modules), ``document`` (row in the
    corpus), ``start``/``end`` (character span in the document).
    """
    corpus = builtin_corpus() if corpus is None else corpus
    if test_every < 2:
        raise ValueError(f"test_every must be at least 2 (1 would leave no training passage), got {test_every}")
    found = {row: _passages(text, sentences_per_passage, min_words) for row, text in enumerate(corpus["text"])}
    eligible = sorted(
        (row for row, spans in found.items() if len(spans) >= passages_per_label),
        key=lambda row: (-len(found[row]), corpus[row]["module"]),
    )
    if len(eligible) < num_labels:
        raise ValueError(
            f"only {len(eligible)} documents have {passages_per_label} passages of "
            f"{sentences_per_passage} sentences; lower num_labels or passages_per_label"
        )
    chosen = sorted(eligible[:num_labels], key=lambda row: corpus[row]["module"])
    names = [corpus[row]["module"] for row in chosen]
    splits: dict[str, dict[str, list]] = {"train": defaultdict(list), "test": defaultdict(list)}
    for label, row in enumerate(chosen):
        text = corpus[row]["text"]
        for index, (start, end) in enumerate(found[row][:passages_per_label]):
            split = splits["test" if index % test_every == test_every - 1 else "train"]
            for column, value in (
                ("text", text[start:end]),
                ("label", label),
                ("document", row),
                ("start", start),
                ("end", end),
            ):
                split[column].append(value)
    features = datasets.Features(
        {
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=names),
            "document": datasets.Value("int64"),
            "start": datasets.Value("int64"),
            "end": datasets.Value("int64"),
        }
    )
    return datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(dict(columns), features=features) for name, columns in splits.items()}
    )


def remove_passages(corpus: datasets.Dataset, passages: Iterable[dict]) -> datasets.Dataset:
    """The corpus with the character spans of ``passages`` (rows with ``document``, ``start``,
    ``end``) cut out of their documents; a blank line takes each passage's place."""
    cuts: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for passage in passages:
        cuts[passage["document"]].append((passage["start"], passage["end"]))

    def cut(example: dict, row: int) -> dict:
        text = example["text"]
        for start, end in sorted(cuts.get(row, []), reverse=True):
            text = text[:start] + "\n\n" + text[end:]
        return {"text": text}

    return corpus.map(cut, with_indices=True, desc="Removing held-out passages")


__all__ = ["module_classification", "remove_passages"]

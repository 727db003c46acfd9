"""The four fine-tuning tasks: from checked rows to model inputs, a collator, and the metrics.

Each ``prepare_*`` returns a ``TaskData``: the encoded train/eval datasets, the collator, the label
space, and ``compute_metrics`` for the Trainer (question answering evaluates itself instead: its
predictions need the windows' character offsets, see ``evaluate_question_answering``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import torch
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, EvalPrediction

from .. import metrics as bert18_metrics
from ..long_text import LongDocumentCollator, chunks_needed
from .finetune_arguments import FinetuneDataArguments
from .finetune_data import (
    Labels,
    check_same_classes,
    check_texts,
    default_text_columns,
    label_ids,
    read_labels,
    require_columns,
)

SEQUENCE_TEXT_DEFAULTS = (("sentence1", "sentence2"), ("question", "sentence"), ("sentence",), ("text",))


@dataclass
class AnswerWindows:
    """What question answering's evaluation needs besides the encoded windows (``TaskData.eval``):
    the raw evaluation rows, and for each window its example and its tokens' character offsets in
    the context (``None`` outside the context), so answers are cut from the context's own text."""

    examples: datasets.Dataset
    offsets: list[list[tuple[int, int] | None]]
    window_example: list[int]
    context_column: str
    answers_column: str


@dataclass
class TaskData:
    """A task ready for the Trainer."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    collator: Callable
    labels: Labels | None = None
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None
    answer_windows: AnswerWindows | None = None  # question answering with an eval split


def _metric(name: str, predictions: Any, references: Any, **kwargs: Any) -> dict[str, float]:
    return bert18_metrics.load(name).compute(predictions=predictions, references=references, **kwargs)


def classification_metrics(names: list[str], regression: bool) -> Callable[[EvalPrediction], dict[str, float]]:
    """Accuracy / macro F1 / Matthews of argmax predictions, or Pearson / Spearman of regression outputs."""

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        references = prediction.label_ids
        predictions = logits.reshape(-1) if regression else np.argmax(logits, axis=-1)
        results: dict[str, float] = {}
        for name in names:
            averaged = name in ("f1", "precision", "recall")  # macro: every class counts alike
            values = _metric(
                name, predictions.tolist(), references.tolist(), **({"average": "macro"} if averaged else {})
            )
            results.update({f"macro_{k}" if averaged else k: float(v) for k, v in values.items()})
        return results

    return compute


# --- sequence classification --------------------------------------------------------------------


def first_rows_of_each_class(train: datasets.Dataset, column: str, labels: Labels, count: int) -> datasets.Dataset:
    """The first ``count`` rows of each class of ``train``, in the split's order (``train_samples_per_label``):
    a balanced few-label subset that the same ``count`` draws alike on every run. A class with fewer rows
    raises rather than leaving the subset unbalanced."""
    if labels.regression:
        raise ValueError(f"train_samples_per_label needs class labels; column {column!r} holds numbers (regression)")
    rows_of: dict[int, list[int]] = {index: [] for index in range(labels.num_labels)}
    for row, index in enumerate(label_ids(train, column, labels, "train")):
        if len(rows_of[index]) < count:
            rows_of[index].append(row)
    short = {(labels.names or [])[index]: len(rows) for index, rows in rows_of.items() if len(rows) < count}
    if short:
        found = ", ".join(f"{name!r}: {n}" for name, n in short.items())
        raise ValueError(
            f"train_samples_per_label={count}, but the training split has fewer rows of some classes ({found}); "
            "lower it (or raise max_train_samples, which cuts the split first)"
        )
    return train.select(sorted(row for rows in rows_of.values() for row in rows))


def prepare_sequence_classification(
    train: datasets.Dataset,
    eval_: datasets.Dataset | None,
    tokenizer: Any,
    data: FinetuneDataArguments,
    max_chunks: int,
) -> TaskData:
    columns = data.text_columns or default_text_columns(train, SEQUENCE_TEXT_DEFAULTS, "sequence-classification")
    if len(columns) not in (1, 2):
        raise ValueError(f"sequence classification reads one text or a pair, got text_columns {columns}")
    label_column = data.label_column or "label"
    strategy = data.long_text_strategy.removeprefix("truncate-")
    if len(columns) == 2 and strategy != "head":
        raise ValueError(
            f"long_text_strategy={data.long_text_strategy} applies to one text column; "
            f"a pair ({', '.join(columns)}) is truncated from the head only"
        )
    for split, dataset in (("train", train), ("eval", eval_)):
        if dataset is not None:
            require_columns(dataset, [*columns, label_column], split, "text/label")
            check_texts(dataset, columns, split)
    labels = read_labels(train, label_column)
    if eval_ is not None:
        check_same_classes(train, eval_, label_column, "eval")
    if data.train_samples_per_label is not None:
        train = first_rows_of_each_class(train, label_column, labels, data.train_samples_per_label)

    def encode(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        ids = label_ids(dataset, label_column, labels, split)
        texts = [list(dataset[c]) for c in columns]  # a Column is not a list
        # head truncation is the tokenizer's own; the other strategies see every token, the collator cuts
        truncate = strategy == "head"
        encoded = dict(tokenizer(*texts, truncation=truncate, max_length=data.max_length if truncate else None))
        if strategy == "key_sentences":
            encoded = {"text": texts[0]}  # key-sentence selection needs the sentences themselves
        if strategy == "chunk" and data.chunk_overflow == "error":
            for row, input_ids in enumerate(encoded["input_ids"]):
                needed = chunks_needed(len(input_ids) - 2, data.max_length)
                if needed > max_chunks:
                    raise ValueError(
                        f"{split} row {row}: the text in column {columns[0]!r} has {len(input_ids) - 2} tokens, "
                        f"{needed} chunks of max_length={data.max_length}, more than max_chunks={max_chunks}; raise "
                        "max_chunks, set chunk_overflow=truncate, or use a truncate-* strategy"
                    )
        return datasets.Dataset.from_dict({**encoded, "labels": ids})

    if strategy == "head":
        collator: Callable = DataCollatorWithPadding(tokenizer)
    else:
        collator = LongDocumentCollator(
            tokenizer,
            strategy=strategy,
            max_length=data.max_length,
            max_chunks=max_chunks,
            on_overflow=data.chunk_overflow,
        )
    names = data.metrics or (["pearsonr", "spearmanr"] if labels.regression else ["accuracy", "f1"])
    return TaskData(
        encode(train, "train"),
        encode(eval_, "eval") if eval_ is not None else None,
        collator,
        labels,
        classification_metrics(names, labels.regression),
    )


# --- token classification ---------------------------------------------------------------------


def prepare_token_classification(
    train: datasets.Dataset, eval_: datasets.Dataset | None, tokenizer: Any, data: FinetuneDataArguments
) -> TaskData:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("token classification needs a fast tokenizer (word_ids align labels to words)")
    (words_column,) = data.text_columns or ["tokens"]
    label_column = data.label_column or "ner_tags"
    for split, dataset in (("train", train), ("eval", eval_)):
        if dataset is None:
            continue
        require_columns(dataset, [words_column, label_column], split, "words/tags")
        for row, (words, tags) in enumerate(zip(dataset[words_column], dataset[label_column])):
            if not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise ValueError(
                    f"{split} row {row}: column {words_column!r} must be a non-empty list of "
                    f"non-empty words, got {words!r}"
                )
            if not isinstance(tags, list) or len(tags) != len(words):
                raise ValueError(
                    f"{split} row {row}: {len(words)} words in {words_column!r} but "
                    f"{len(tags) if isinstance(tags, list) else tags!r} tags in {label_column!r}"
                )
    labels = read_labels(train, label_column, per_token=True)
    if eval_ is not None:
        check_same_classes(train, eval_, label_column, "eval", per_token=True)

    def encode(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        tags = label_ids(dataset, label_column, labels, split, per_token=True)
        encoded = tokenizer(
            list(dataset[words_column]), is_split_into_words=True, truncation=True, max_length=data.max_length
        )
        aligned = []
        for row, row_tags in enumerate(tags):
            previous, row_labels = None, []
            for word in encoded.word_ids(row):
                # the first sub-token of a word carries its tag; the rest and the specials are ignored (-100)
                row_labels.append(-100 if word is None or word == previous else row_tags[word])
                previous = word
            aligned.append(row_labels)
        return datasets.Dataset.from_dict({**dict(encoded), "labels": aligned})

    names = labels.names or []

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        predicted = np.argmax(prediction.predictions, axis=-1)
        gold, guess = [], []
        for row_pred, row_gold in zip(predicted, prediction.label_ids):
            keep = row_gold != -100
            gold.append([names[i] for i in row_gold[keep]])
            guess.append([names[i] for i in row_pred[keep]])
        results: dict[str, float] = {}
        for name in data.metrics or ["seqeval"]:
            values = _metric(name, guess, gold)
            results.update({k: float(v) for k, v in values.items() if not isinstance(v, dict)})  # overall_* only
        return results

    return TaskData(
        encode(train, "train"),
        encode(eval_, "eval") if eval_ is not None else None,
        DataCollatorForTokenClassification(tokenizer),
        labels,
        compute,
    )


# --- multiple choice --------------------------------------------------------------------------


class MultipleChoiceCollator:
    """Pads [examples, choices, tokens]: every choice of every example to the batch's longest."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        choices = len(features[0]["input_ids"])
        keys = [k for k in features[0] if k != "labels"]
        flat = [{k: f[k][c] for k in keys} for f in features for c in range(choices)]
        batch = self.tokenizer.pad(flat, return_tensors="pt")
        batch = {k: v.view(len(features), choices, -1) for k, v in batch.items()}
        batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def prepare_multiple_choice(
    train: datasets.Dataset, eval_: datasets.Dataset | None, tokenizer: Any, data: FinetuneDataArguments
) -> TaskData:
    columns = data.text_columns or [
        "context",
        *sorted(c for c in train.column_names if c.startswith(("choice", "ending"))),
    ]
    if len(columns) < 3:
        raise ValueError(f"multiple choice needs text_columns [context, choice, choice, ...], got {columns}")
    context, choices = columns[0], columns[1:]
    label_column = data.label_column or "label"

    def encode(dataset: datasets.Dataset, split: str) -> datasets.Dataset:
        require_columns(dataset, [*columns, label_column], split, "text/label")
        check_texts(dataset, columns, split)
        answers = list(dataset[label_column])
        for row, answer in enumerate(answers):
            if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
                raise ValueError(
                    f"{split} row {row}: label column {label_column!r} must be the index of the right "
                    f"choice, 0..{len(choices) - 1}, got {answer!r}"
                )
        rows, columns_ = [], {c: list(dataset[c]) for c in columns}
        for row in range(len(dataset)):
            pairs = tokenizer(
                [columns_[context][row]] * len(choices),
                [columns_[c][row] for c in choices],
                truncation=True,
                max_length=data.max_length,
            )
            rows.append(dict(pairs))
        return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]} | {"labels": answers})

    names = data.metrics or ["accuracy"]
    return TaskData(
        encode(train, "train"),
        encode(eval_, "eval") if eval_ is not None else None,
        MultipleChoiceCollator(tokenizer),
        None,
        classification_metrics(names, regression=False),
    )


__all__ = [
    "AnswerWindows",
    "MultipleChoiceCollator",
    "TaskData",
    "classification_metrics",
    "prepare_multiple_choice",
    "prepare_sequence_classification",
    "prepare_token_classification",
]

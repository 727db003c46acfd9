"""Loading and checking the labelled data of a fine-tuning recipe.

Bad data fails here, before any model loads, with the split, row and column named: a missing label
column, a missing (None) label, a label of the wrong type, an evaluation label the training split
never shows (the classifier would have no output for it), an empty text. Later steps
(``finetune_tasks``) can then assume clean columns.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from .finetune_arguments import BUILTIN_DATASETS, FinetuneDataArguments

FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


def _load_local(path: Path) -> datasets.DatasetDict:
    """A single file is the train split; a folder holds one ``<split>.<ext>`` file per split."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in FILE_BUILDERS)
    if not files:
        raise FileNotFoundError(f"dataset {path}: no {'/'.join(FILE_BUILDERS)} files")
    builders = {FILE_BUILDERS.get(p.suffix) for p in files}
    if None in builders or len(builders) > 1:
        raise ValueError(
            f"dataset {path}: files must all be one of {', '.join(FILE_BUILDERS)}, got "
            f"{', '.join(p.name for p in files)}"
        )
    data_files = {"train": str(path)} if path.is_file() else {p.stem: str(p) for p in files}
    return datasets.load_dataset(builders.pop(), data_files=data_files)


def load_splits(data: FinetuneDataArguments) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The training split and the evaluation split (``None`` when ``eval_split`` is None)."""
    if data.dataset in BUILTIN_DATASETS:
        loaded = BUILTIN_DATASETS[data.dataset]()
    elif Path(data.dataset).exists():
        loaded = _load_local(Path(data.dataset))
    else:  # a Hub dataset: needs a network, as in transformers' own examples
        loaded = datasets.load_dataset(data.dataset, data.dataset_config_name)
    splits = []
    for name, limit in ((data.train_split, data.max_train_samples), (data.eval_split, data.max_eval_samples)):
        if name is None:
            splits.append(None)
            continue
        if name not in loaded:
            raise ValueError(
                f"dataset {data.dataset} has no split {name!r} (it has {', '.join(loaded)}); "
                "set train_split / eval_split"
            )
        split = loaded[name]
        splits.append(split.select(range(min(limit, len(split)))) if limit is not None else split)
    return splits[0], splits[1]


def require_columns(dataset: datasets.Dataset, columns: Sequence[str], split: str, what: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{split} split: no {what} column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(dataset.column_names)}); set text_columns / label_column"
        )


def default_text_columns(dataset: datasets.Dataset, candidates: Sequence[Sequence[str]], task: str) -> list[str]:
    """The first candidate (GLUE-style names) whose columns all exist."""
    for columns in candidates:
        if all(c in dataset.column_names for c in columns):
            return list(columns)
    names = " / ".join("+".join(c) for c in candidates)
    raise ValueError(
        f"{task}: none of the default text columns ({names}) is in the data "
        f"(columns: {', '.join(dataset.column_names)}); set text_columns"
    )


def check_texts(dataset: datasets.Dataset, columns: Sequence[str], split: str) -> None:
    """Every text is a non-empty string: an empty one would train on [CLS] [SEP] alone."""
    for column in columns:
        for row, text in enumerate(dataset[column]):
            if not isinstance(text, str):
                raise ValueError(
                    f"{split} row {row}: column {column!r} holds {type(text).__name__} {text!r}, not a text"
                )
            if not text.strip():
                raise ValueError(f"{split} row {row}: column {column!r} is empty")


@dataclass
class Labels:
    """The label space of a task, read from the training split.

    ``names`` for classes (``None`` with ``regression``); ``to_id`` maps a raw label (a class id,
    a string or an int of a non-ClassLabel column) to its output index.
    """

    names: list[str] | None
    regression: bool
    to_id: dict[Any, int]

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.names or [])


def _feature_of(feature: Any) -> Any:
    """The per-item feature of a sequence column (token tags), else the feature itself."""
    if isinstance(feature, datasets.Sequence):
        return feature.feature
    if isinstance(feature, datasets.List | datasets.LargeList):
        return feature.feature
    return feature


def read_labels(train: datasets.Dataset, column: str, per_token: bool = False) -> Labels:
    """The label space: a ``ClassLabel`` keeps its names; strings or ints become sorted classes; floats
    (sequence classification only) mean regression. Missing and wrongly typed labels raise, naming the row."""
    feature = _feature_of(train.features[column]) if per_token else train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        values = _flatten(train[column], column, "train", per_token)
        _check_types(values, int, column)
        return Labels(list(feature.names), False, {i: i for i in range(feature.num_classes)})
    values = _flatten(train[column], column, "train", per_token)
    if values and all(isinstance(v, float) for _, v in values) and not per_token:
        return Labels(None, True, {})
    kind = str if any(isinstance(v, str) for _, v in values) else int
    _check_types(values, kind, column)
    classes = sorted({v for _, v in values})
    return Labels([str(c) for c in classes], False, {c: i for i, c in enumerate(classes)})


def _flatten(column_values: list, column: str, split: str, per_token: bool) -> list[tuple[int, Any]]:
    """(row, label) pairs, a row's every tag for per-token labels; ``None`` raises."""
    pairs = []
    for row, value in enumerate(column_values):
        items = value if per_token else [value]
        if per_token and not isinstance(value, list):
            raise ValueError(f"{split} row {row}: column {column!r} must hold a list of tags, got {value!r}")
        for item in items:
            if item is None:
                raise ValueError(f"{split} row {row}: label column {column!r} is missing (None)")
            pairs.append((row, item))
    return pairs


def _check_types(values: list[tuple[int, Any]], kind: type, column: str) -> None:
    for row, value in values:
        ok = (isinstance(value, kind) and not isinstance(value, bool)) or (
            kind is int and isinstance(value, float) and value.is_integer()
        )
        if not ok:
            raise ValueError(
                f"train row {row}: label column {column!r} holds {type(value).__name__} {value!r}; "
                f"the labels of this column are {kind.__name__}s"
            )


def label_ids(dataset: datasets.Dataset, column: str, labels: Labels, split: str, per_token: bool = False) -> list:
    """The labels of ``dataset`` as output indices (floats for regression); a label the training split
    does not have raises, naming the row."""
    rows = dataset[column]
    if labels.regression:
        for row, value in _flatten(rows, column, split, per_token):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"{split} row {row}: label column {column!r} holds {value!r}, not a number")
        return [float(v) for v in rows]
    known = ", ".join(map(str, list(labels.to_id)[:10]))
    out = []
    for row, value in enumerate(rows):
        if per_token and not isinstance(value, list):
            raise ValueError(f"{split} row {row}: column {column!r} must hold a list of tags, got {value!r}")
        ids = []
        for item in value if per_token else [value]:
            if item is None:
                raise ValueError(f"{split} row {row}: label column {column!r} is missing (None)")
            key = int(item) if isinstance(item, float) and item.is_integer() else item
            if key not in labels.to_id:
                raise ValueError(
                    f"{split} row {row}: label {key!r} in column {column!r} is not among the training "
                    f"labels ({known}{', ...' if len(labels.to_id) > 10 else ''}): the model would "
                    "have no output for it"
                )
            ids.append(labels.to_id[key])
        out.append(ids if per_token else ids[0])
    return out


def check_same_classes(
    train: datasets.Dataset, other: datasets.Dataset, column: str, split: str, per_token: bool = False
) -> None:
    """ClassLabel columns of two splits must name the same classes in the same order."""
    mine, theirs = (_feature_of(d.features[column]) if per_token else d.features[column] for d in (train, other))
    if isinstance(mine, datasets.ClassLabel) and isinstance(theirs, datasets.ClassLabel) and mine.names != theirs.names:
        raise ValueError(
            f"{split} split: label column {column!r} has classes {theirs.names}, the training split {mine.names}"
        )


__all__ = [
    "Labels",
    "check_same_classes",
    "check_texts",
    "default_text_columns",
    "label_ids",
    "load_splits",
    "read_labels",
    "require_columns",
]

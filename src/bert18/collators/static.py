"""Static masking as the original BERT did it: masks drawn once at preparation, ``dupe_factor`` copies.

Google's ``create_pretraining_data.py`` masks every example ``dupe_factor`` times (10) when it writes
the training files; training then reads those fixed copies for all its epochs, so each mask is seen
epochs / dupe_factor times. RoBERTa (seed question 17a) compared that with dynamic masking, a fresh
mask each time an example is seen. bert18 masks dynamically by default; ``static_masking`` builds the
static data, so both sides of the comparison run on the same code:

- copy ``d`` of an example holds exactly the masks the dynamic collator draws for it at epoch ``d``
  (same seed, units, 80/10/10): the two regimes differ only in whether masks are redrawn;
- the copies are stored compactly: the corrupted ids (16-bit when the vocabulary fits) and the
  masked positions and their original ids, about 15% of the tokens;
- ``StaticMasks`` stands in for the masking collator in ``PretrainingCollator``: it reads the stored
  masks and draws nothing, whatever the epoch.
"""

from typing import Any

import datasets
import numpy as np

from ..data.prepare import token_id_type
from .base import DynamicCollator

STATIC_COLUMNS = ("mask_positions", "mask_targets", "static_copy")


def _draw_copy(batch: dict[str, list], masking: Any, copy: int) -> dict[str, list]:
    examples = [dict(zip(batch, values)) for values in zip(*batch.values())]
    epoch = masking.epoch
    masking.set_epoch(copy)  # copy d = the dynamic draw of epoch d
    try:
        corrupted, labels, lengths = masking.mask(examples)
    finally:
        masking.set_epoch(epoch)
    rows = range(len(examples))
    return {
        "input_ids": [corrupted[row, : lengths[row]] for row in rows],
        "mask_positions": [np.flatnonzero(labels[row] != -100) for row in rows],
        "mask_targets": [labels[row][labels[row] != -100] for row in rows],
        "static_copy": [copy] * len(examples),
    }


def static_masking(
    dataset: datasets.Dataset, masking: Any, dupe_factor: int = 10, batch_size: int = 1000, num_proc: int | None = None
) -> datasets.Dataset:
    """``dupe_factor`` copies of every example of ``dataset`` with masks drawn once, by ``masking`` (an
    ``MLMCollator`` of any granularity or a ``KnowledgeMaskingCollator``) at epochs 0, 1, ... .

    The copies follow each other (copy 0 of every example, then copy 1, ...); the Trainer shuffles
    them. Other columns (word ids, labels of other tasks, ``example_index``) are kept as they are.
    Collate with ``PretrainingCollator(..., masking=StaticMasks(tokenizer))``.
    """
    if not isinstance(dupe_factor, int) or isinstance(dupe_factor, bool) or dupe_factor < 1:
        raise ValueError(f"dupe_factor must be a positive integer, got {dupe_factor!r}")
    if isinstance(dataset, datasets.IterableDataset) or not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            "static masking stores every copy: it needs a map-style datasets.Dataset of packed rows, "
            f"got {type(dataset).__name__} (stream with dynamic masking instead)"
        )
    missing = [c for c in ("input_ids", "example_index") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"static masking needs the columns {missing} of prepare_pretraining_dataset's packed rows")
    taken = [c for c in STATIC_COLUMNS if c in dataset.column_names]
    if taken:
        raise ValueError(f"the dataset already holds static masks ({taken}): mask the prepared rows, once")
    id_type = token_id_type(masking.tokenizer)
    features = dataset.features.copy()
    features["input_ids"] = datasets.Sequence(datasets.Value(id_type))
    features["mask_positions"] = datasets.Sequence(datasets.Value("uint16"))
    features["mask_targets"] = datasets.Sequence(datasets.Value(id_type))
    features["static_copy"] = datasets.Value("uint8" if dupe_factor <= 256 else "uint16")
    copies = [
        dataset.map(
            _draw_copy,
            batched=True,
            batch_size=batch_size,
            num_proc=num_proc,
            features=features,
            fn_kwargs={"masking": masking, "copy": copy},
            desc=f"static masks, copy {copy + 1}/{dupe_factor}",
        )
        for copy in range(dupe_factor)
    ]
    return datasets.concatenate_datasets(copies)


class StaticMasks(DynamicCollator):
    """The masking step of ``PretrainingCollator`` for data from ``static_masking``: the stored
    corrupted ids and labels, the same at every epoch."""

    def mask(self, examples: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded corrupted ids, MLM labels and lengths, as ``MLMCollator.mask`` returns them."""
        missing = [c for c in ("mask_positions", "mask_targets") if c not in examples[0]]
        if missing:
            raise ValueError(
                f"StaticMasks reads stored masks, and the examples have no {missing}: prepare the data "
                "with bert18.collators.static_masking"
            )
        ids, lengths, _ = self.batch_arrays(examples)
        labels = np.full(ids.shape, -100, dtype=np.int64)
        for row, example in enumerate(examples):
            labels[row, np.asarray(example["mask_positions"], dtype=np.int64)] = example["mask_targets"]
        return ids, labels, lengths


__all__ = ["STATIC_COLUMNS", "StaticMasks", "static_masking"]

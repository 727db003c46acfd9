"""``PretrainingCollator``: every task of ``config.pretraining_tasks`` in one batch.

The examples come from ``bert18.data``: packed rows (``prepare_pretraining_dataset`` for MLM-only
recipes) or sentence pairs (``SentencePairDataset``, which draws NSP / SOP / sentence-distance
pairs and the token-document labels afresh each epoch). This collator masks them (plain, whole-word,
n-gram, span or knowledge masking) for ``mlm``, or draws their factorization orders for ``plm``
(``PermutationLMCollator``; one of the two, since [MASK] inputs and a permutation of the same tokens
conflict), checks every configured task has its labels, keeps the capitalization label on
word-start tokens only (ERNIE 2.0 predicts it per word), and pads.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from ..configuration_bert18 import PRETRAINING_TASKS, Bert18Config, check_pretraining_tasks
from .base import DynamicCollator, check_token_columns
from .mlm import MLMCollator, labels_on_word_starts, word_start_table, word_starts
from .permutation import PLM_INPUTS, PermutationLMCollator


class PretrainingCollator(DynamicCollator):
    """Compose the pretraining tasks of ``tasks`` (a ``Bert18Config`` or a list of task names).

    Args:
        tokenizer: the tokenizer the data was prepared with.
        tasks: the config whose ``pretraining_tasks`` the batch must serve, or the task names.
        masking: the collator that masks for ``mlm`` (an ``MLMCollator`` of any granularity or a
            ``KnowledgeMaskingCollator``); by default ``MLMCollator(tokenizer, seed=seed, **mlm_options)``.
        seed, pad_to_multiple_of: as for the other collators (a given ``masking`` or ``permutation``
            collator keeps its own seed and padding).
        permutation: the collator that orders tokens for ``plm``; by default
            ``PermutationLMCollator(tokenizer, seed=seed)``.
        mlm_options: passed to the default ``MLMCollator`` (``granularity="whole_word"``, ...).

    The batch holds ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels`` (MLM) or the
    ``PLM_INPUTS`` (PLM), and one tensor per other task under the name ``Bert18ForPreTraining.forward``
    takes.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Bert18Config | Sequence[str],
        masking: MLMCollator | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
        permutation: PermutationLMCollator | None = None,
        **mlm_options: Any,
    ):
        super().__init__(tokenizer, seed, pad_to_multiple_of)
        self.word_table = word_start_table(tokenizer)
        self.tasks = check_pretraining_tasks(
            tasks.pretraining_tasks if isinstance(tasks, Bert18Config) else tasks, "tasks"
        )
        self.max_length = tasks.max_position_embeddings if isinstance(tasks, Bert18Config) else None
        if masking is not None and mlm_options:
            raise ValueError(f"pass either a masking collator or MLM options, not both ({sorted(mlm_options)})")
        if "mlm" in self.tasks:
            self.masking = masking or MLMCollator(
                tokenizer, seed=seed, pad_to_multiple_of=pad_to_multiple_of, **mlm_options
            )
        elif masking is not None or mlm_options:
            raise ValueError("masking options given, but 'mlm' is not among the pretraining tasks")
        else:
            self.masking = None
        if "plm" in self.tasks:
            self.permutation = permutation or PermutationLMCollator(
                tokenizer, seed=seed, pad_to_multiple_of=pad_to_multiple_of
            )
        elif permutation is not None:
            raise ValueError("a permutation collator given, but 'plm' is not among the pretraining tasks")
        else:
            self.permutation = None

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for collator in (self.masking, self.permutation):
            if collator is not None:
                collator.set_epoch(epoch)

    def _check_labels(self, examples: Sequence[dict[str, Any]]) -> None:
        for task in map(PRETRAINING_TASKS.get, self.tasks):
            if task.predicts_vocabulary or task.label in examples[0]:  # mlm, plm: labels made here
                continue
            raise ValueError(
                f"task {task.name!r} needs {task.label!r} on every example, and example "
                f"{examples[0].get('example_index', 0)} has none: build the examples with {task.made_by}"
            )

    def _word_start_capitalization(self, example: dict[str, Any]) -> np.ndarray:
        ids = np.asarray(example["input_ids"], dtype=np.int64)
        if "mask_positions" in example:  # statically masked: word starts are read off the original ids
            ids = ids.copy()
            ids[np.asarray(example["mask_positions"], dtype=np.int64)] = example["mask_targets"]
        labels = np.asarray(example["capitalization_labels"], dtype=np.int64)
        name = f"example {example.get('example_index', '?')}"
        if len(labels) == 0 and len(ids):
            raise ValueError(
                f"{name}: column 'capitalization_labels' is empty: the rows were prepared without "
                "capitalization; prepare them again with 'capitalization' in the tasks "
                "(prepare_pretraining_dataset(..., config) with it in config.pretraining_tasks)"
            )
        if len(labels) != len(ids):
            raise ValueError(
                f"{name}: column 'capitalization_labels' has {len(labels)} labels for {len(ids)} tokens; "
                "it needs one per token: prepare the rows again"
            )
        check_token_columns(example)
        starts = word_starts(ids, self.special_mask(example, ids), example.get("word_ids"), self.word_table)
        return labels_on_word_starts(labels, starts)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        self._check_labels(examples)
        if self.max_length is not None:
            for example in examples:
                if len(example["input_ids"]) > self.max_length:
                    raise ValueError(
                        f"example {example.get('example_index', '?')} has {len(example['input_ids'])} "
                        f"tokens, more than the model's max_position_embeddings ({self.max_length}); "
                        "prepare the data with max_length <= that"
                    )
        if "capitalization" in self.tasks:
            examples = [{**e, "capitalization_labels": self._word_start_capitalization(e)} for e in examples]
        permutation = {}
        if self.masking is not None:
            input_ids, labels, lengths = self.masking.mask(examples)
        elif self.permutation is not None:
            input_ids, lengths, permutation = self.permutation.permute(examples)
            labels = None
        else:
            input_ids, lengths, _ = self.batch_arrays(examples)
            labels = None
        batch = self.model_inputs(examples, input_ids, lengths, labels)
        batch.update({name: torch.from_numpy(value) for name, value in permutation.items()})
        return {k: v for k, v in batch.items() if k in _MODEL_INPUTS or _task_of(k) in self.tasks}


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _task_of(label: str) -> str | None:
    if label in PLM_INPUTS:
        return "plm"
    return next((task.name for task in PRETRAINING_TASKS.values() if task.label == label), None)


__all__ = ["PretrainingCollator"]

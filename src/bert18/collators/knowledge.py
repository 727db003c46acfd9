"""ERNIE 1.0 knowledge masking: phrases and named entities masked as whole units (seed question 14).

Three levels, as in ERNIE: ``basic`` masks words (BERT's whole-word masking); ``phrase`` and
``entity`` take the example's phrase or entity spans first, filling any budget they leave with
other units, and at these two levels every span is a unit, masked all-or-none. Every example draws
its level from ``levels`` (probabilities), so a mix is one dict, and ERNIE's staged schedule
(basic, then phrase, then entity) is a list of ``(first_epoch, levels)``.

Spans come with the examples as token ranges (``span_starts``, ``span_ends``, ``span_kinds``),
produced by ``bert18.data.prepare_pretraining_dataset`` from user spans, a lexicon, mined phrases
or capitalized names. The budget (``mlm_probability``) and the 80/10/10 replacement are the
``MLMCollator``'s.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from .base import uniform
from .mlm import LEVEL, PRIORITY, MLMCollator, word_starts

LEVELS = ("basic", "phrase", "entity")
LevelSchedule = Mapping[str, float] | Sequence[tuple[int, Mapping[str, float]]]


def _normalised(levels: Mapping[str, float]) -> np.ndarray:
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown masking level(s) {sorted(unknown)}; levels are {LEVELS}")
    weights = np.array([float(levels.get(level, 0.0)) for level in LEVELS])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"level probabilities must be non-negative and not all zero, got {dict(levels)}")
    return weights / weights.sum()


class KnowledgeMaskingCollator(MLMCollator):
    """Masked LM where phrases and entities are masked as units (ERNIE 1.0).

    Args:
        tokenizer: as for ``MLMCollator``.
        levels: probabilities of ``basic`` / ``phrase`` / ``entity`` per example (default: equal),
            or a schedule ``[(0, {"basic": 1}), (2, {"phrase": 1}), (4, {"entity": 1})]`` whose
            entry with the largest first epoch <= the current epoch applies.
        mlm_probability, mask_replace_prob, random_replace_prob, seed, pad_to_multiple_of,
        mask_count_per_batch: as for ``MLMCollator``.

    An example without spans of the drawn level falls back to words, as ERNIE does with sentences
    that hold no entity; ``level_counts`` counts the levels drawn and these fallbacks.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        levels: LevelSchedule | None = None,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        mask_count_per_batch: int | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
    ):
        super().__init__(tokenizer, mlm_probability, mask_replace_prob, random_replace_prob, granularity="whole_word",
                         mask_count_per_batch=mask_count_per_batch, seed=seed, pad_to_multiple_of=pad_to_multiple_of)
        levels = dict.fromkeys(LEVELS, 1.0) if levels is None else levels
        if isinstance(levels, Mapping):
            self.schedule = [(0, _normalised(levels))]
        else:
            self.schedule = sorted((int(epoch), _normalised(probs)) for epoch, probs in levels)
            if not self.schedule or self.schedule[0][0] != 0:
                raise ValueError("a level schedule must start at epoch 0")
        self.level_counts = dict.fromkeys((*LEVELS, "no_span_fallback"), 0)

    def level_probabilities(self) -> np.ndarray:
        """Probabilities of basic / phrase / entity at the current epoch."""
        return [probs for first_epoch, probs in self.schedule if first_epoch <= self.epoch][-1]

    def unit_plan(self, example: dict[str, Any], ids: np.ndarray, eligible: np.ndarray,
                  key: np.uint64) -> tuple[np.ndarray, np.ndarray]:
        """Words as units, except spans: at the phrase and entity levels every span is one unit
        (never masked in part), and the spans of the drawn level are taken before anything else."""
        cumulative = np.cumsum(self.level_probabilities())
        level = LEVELS[min(int(np.searchsorted(cumulative, uniform(key, 1, LEVEL)[0], side="right")), len(LEVELS) - 1)]
        self.level_counts[level] += 1
        starts = word_starts(ids, ~eligible, example.get("word_ids"), self.word_table)
        spans = [] if level == "basic" else self._spans(example, len(ids))
        preferred = np.zeros(len(ids), dtype=bool)
        for start, end, kind in spans:  # one Python step per span, not per token
            starts[start + 1:end] = False
            starts[start] = True
            if end < len(ids):
                starts[end] = bool(eligible[end])
            preferred[start:end] = kind == level
        if level != "basic" and not preferred.any():
            self.level_counts["no_span_fallback"] += 1
        starts &= eligible
        for start, end, _ in spans:  # a span opening on a special token opens at its first maskable one
            inside = np.flatnonzero(eligible[start:end])
            if len(inside):
                starts[start + inside[0]] = True
        starts[np.flatnonzero(eligible)[:1]] = True  # the first maskable token always opens a unit
        units = np.cumsum(starts) - 1
        priority = uniform(key, int(units[-1]) + 1 if len(units) else 0, PRIORITY)
        priority[np.unique(units[preferred & eligible])] -= 1.0  # the level's spans before any other unit
        return units, priority

    @staticmethod
    def _spans(example: dict[str, Any], length: int) -> list[tuple[int, int, str]]:
        """The example's knowledge spans, checked: inside the sequence and disjoint."""
        starts, ends, kinds = (() if example.get(f) is None else example[f] for f in ("span_starts", "span_ends",
                                                                                      "span_kinds"))
        name = f"example {example.get('example_index', '?')}"
        if not len(starts) == len(ends) == len(kinds):
            raise ValueError(f"{name}: span_starts, span_ends and span_kinds differ in length "
                             f"({len(starts)}, {len(ends)}, {len(kinds)})")
        spans = sorted((int(s), int(e), k) for s, e, k in zip(starts, ends, kinds))
        previous_end = 0
        for s, e, kind in spans:
            if not 0 <= s < e <= length:
                raise ValueError(f"{name}: {kind} span [{s}, {e}) lies outside its {length} tokens")
            if s < previous_end:
                raise ValueError(f"{name}: spans overlap at token {s}; a unit is masked all-or-none, so units "
                                 "must be disjoint")
            previous_end = e
        return spans

__all__ = ["LEVELS", "KnowledgeMaskingCollator"]

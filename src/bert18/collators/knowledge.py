"""ERNIE 1.0 knowledge masking: phrases and named entities masked as whole units (seed question 14).

The reference is ERNIE 1.0's ``mask`` (Baidu, ``ernie/batching.py``): a row is cut into units
(words, and the phrase or entity spans, each one unit) and **every unit is selected on its own with
the same probability** ``mlm_probability`` (a Bernoulli draw per unit), so every kind of unit,
phrases, entities and plain words alike, has the target share of its tokens predicted, and a span
is predicted whole or not at all. Each selected token then becomes [MASK] (80%), a random token
(10%) or stays (10%), drawn per token as ERNIE does (``replace_per_unit=True``: once per unit).

Three levels, as in ERNIE's stages and its ablation (word, + phrase, + entity):

- ``basic``: every word is a unit (BERT's whole-word masking); spans play no part.
- ``phrase``: phrase spans are units; entity spans are masked word by word, like other words.
- ``entity``: phrase and entity spans are units.

A span never cuts a word: a span starting or ending inside a word takes the whole word into its
unit. Span kinds are ``phrase``, ``entity`` or a usual NER label (``PER``, ``ORG``, ``LOC``,
``GPE``, ``nr``, ... : ``bert18.data.spans.ENTITY_KINDS``), which are entities; any other kind is an
error naming it. Levels combine two ways: drawn per row from ``levels`` (probabilities), or
ERNIE's staged schedule (basic, then phrase, then entity) as a list of ``(first, levels)``, by
epoch or, with ``schedule_unit="step"``, by optimizer step.

**Steps.** The collator counts the batches it masks: batch i of an epoch belongs to optimizer step
``epoch_start_step + i // gradient_accumulation_steps`` (in a ``DataLoader`` worker, i is rebuilt
from the worker's id, as ``DataLoader`` deals batches to its workers in turn).
``LevelScheduleCallback`` gives it the global step at each epoch start (so a resumed run, whose
skipped batches are never collated, counts from its checkpoint) and keeps evaluation batches out
of the count. That start lives in shared memory, as the epoch does (``SharedEpoch``), so persistent
workers, which outlive the epoch, see each new start and count again from it. The level of a batch
is then a function of the data order alone, never of timing: reproducible, and the same after a
resume.

Spans come with the examples as token ranges (``span_starts``, ``span_ends``, ``span_kinds``),
produced by ``bert18.data.prepare_pretraining_dataset`` from user spans, a lexicon, mined phrases
or capitalized names.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch.utils.data
from transformers import PreTrainedTokenizerBase, TrainerCallback

from ..data.spans import span_level
from .base import uniform
from .mlm import LEVEL, PRIORITY, MLMCollator, numbered_units, word_starts

LEVELS = ("basic", "phrase", "entity")
# The span levels masked as whole units at each level (ERNIE's stages are cumulative).
UNIT_KINDS = {"basic": (), "phrase": ("phrase",), "entity": ("phrase", "entity")}
LevelSchedule = Mapping[str, float] | Sequence[tuple[int, Mapping[str, float]]] | Mapping[int, Mapping[str, float]]


def normalised_levels(levels: Mapping[str, float]) -> np.ndarray:
    """Level probabilities ``{basic, phrase, entity: weight}`` as an array in ``LEVELS`` order summing to 1;
    unknown levels, negative weights or all zeros raise (a recipe's ``knowledge_levels`` is checked with it)."""
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown masking level(s) {sorted(unknown)}; levels are {LEVELS}")
    weights = np.array([float(levels.get(level, 0.0)) for level in LEVELS])
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"level probabilities must be non-negative and not all zero, got {dict(levels)}")
    return weights / weights.sum()


def level_schedule(levels: LevelSchedule | None, unit: str = "epoch") -> list[tuple[int, np.ndarray]]:
    """``levels`` as a sorted list of ``(first epoch or step, probabilities)``; a mapping is one
    entry from 0, and a schedule given as a mapping ``{first: levels}`` is read as its items."""
    levels = dict.fromkeys(LEVELS, 1.0) if levels is None else levels
    if isinstance(levels, Mapping) and all(isinstance(v, Mapping) for v in levels.values()) and levels:
        levels = list(levels.items())  # {0: {basic: 1}, 1000: {phrase: 1}}, as a recipe writes it
    if isinstance(levels, Mapping):
        return [(0, normalised_levels(levels))]
    try:
        schedule = sorted((int(first), normalised_levels(probs)) for first, probs in levels)
    except (TypeError, ValueError, AttributeError) as error:
        raise ValueError(
            f"a level schedule is a list of ({unit}, levels) pairs or a mapping {{{unit}: levels}}, "
            f"got {levels!r} ({error})"
        ) from None
    if not schedule or schedule[0][0] != 0:
        raise ValueError(f"a level schedule must start at {unit} 0")
    if len({first for first, _ in schedule}) != len(schedule):
        raise ValueError(f"a level schedule names {unit} {[f for f, _ in schedule]} with a repeat")
    return schedule


class LevelScheduleCallback(TrainerCallback):
    """Tells a ``KnowledgeMaskingCollator`` with a step schedule where it stands: the global step
    at every epoch start (resume included), and no count for the batches of an evaluation."""

    def __init__(self, collator: "KnowledgeMaskingCollator"):
        self.collator = collator
        self._saved: tuple[int, int, int] | None = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.set_step(state.global_step, args.gradient_accumulation_steps)

    def on_step_end(self, args, state, control, **kwargs):  # an evaluation may follow: remember the count
        c = self.collator
        self._saved = (c.epoch_start_step, c.batches_masked, c.step)

    def on_evaluate(self, args, state, control, **kwargs):  # evaluation batches went through the same collator
        if self._saved is not None:
            self.collator.epoch_start_step, self.collator.batches_masked, self.collator.step = self._saved


class KnowledgeMaskingCollator(MLMCollator):
    """Masked LM where phrases and entities are masked as units (ERNIE 1.0, see the module docstring).

    Args:
        tokenizer: as for ``MLMCollator``.
        levels: probabilities of ``basic`` / ``phrase`` / ``entity`` per row (default: equal),
            or a schedule ``[(0, {"basic": 1}), (2, {"phrase": 1}), (4, {"entity": 1})]`` whose
            entry with the largest first epoch (step) <= the current one applies.
        schedule_unit: ``"epoch"`` or ``"step"`` (optimizer steps; train with
            ``LevelScheduleCallback(collator)``, which ``bert18 pretrain`` adds).
        mlm_probability: the probability with which each unit is selected (ERNIE: 0.15).
        replace_per_unit: one 80/10/10 draw per unit instead of per token (ERNIE draws per token).
        mask_replace_prob, random_replace_prob, seed, pad_to_multiple_of, mask_count_per_batch: as
            for ``MLMCollator``.

    Every unit is drawn on its own, so a row may have no target; when a whole batch would have
    none, its unit of lowest draw is taken, so the loss is always defined. An example without
    spans of the drawn level is masked by words, as ERNIE does with sentences that hold no entity;
    ``level_counts`` counts the levels drawn and these fallbacks.
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
        replace_per_unit: bool = False,
        schedule_unit: str = "epoch",
    ):
        super().__init__(
            tokenizer,
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            granularity="whole_word",
            replace_per_unit=replace_per_unit,
            mask_count_per_batch=mask_count_per_batch,
            seed=seed,
            pad_to_multiple_of=pad_to_multiple_of,
        )
        if schedule_unit not in ("epoch", "step"):
            raise ValueError(f"schedule_unit must be 'epoch' or 'step', got {schedule_unit!r}")
        self.schedule_unit = schedule_unit
        self.schedule = level_schedule(levels, schedule_unit)
        self.level_counts = dict.fromkeys((*LEVELS, "no_span_fallback"), 0)
        # Step counting (schedule_unit="step"): how many starts were set, the global step at the last epoch
        # start and the accumulation, shared with every DataLoader worker (persistent ones included); each
        # process counts the batches it masked since the start it last saw, and the optimizer step of the
        # batch being masked.
        self._step_state = torch.tensor([0, 0, 1], dtype=torch.int64).share_memory_()
        self._start_seen = 0
        self.batches_masked = 0
        self.step = 0

    @property
    def epoch_start_step(self) -> int:
        return int(self._step_state[1].item())

    @epoch_start_step.setter
    def epoch_start_step(self, step: int) -> None:
        self._step_state[1] = int(step)

    @property
    def accumulation_steps(self) -> int:
        return int(self._step_state[2].item())

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # a plain pickle restores private memory: share it again (see SharedEpoch)
        if not self._step_state.is_shared():
            self._step_state.share_memory_()

    def set_step(self, step: int, accumulation_steps: int = 1) -> None:
        """The next batch masked is the first of optimizer step ``step`` (``LevelScheduleCallback``
        calls this at every epoch start, resumed epochs included)."""
        if accumulation_steps < 1:
            raise ValueError(f"accumulation_steps must be a positive integer, got {accumulation_steps}")
        state = self._step_state
        state[0], state[1], state[2] = state[0] + 1, int(step), int(accumulation_steps)
        self._start_seen, self.batches_masked, self.step = int(state[0].item()), 0, int(step)

    def _count_batch(self) -> None:
        """The optimizer step of the batch now masked, from the count of batches masked since the epoch began."""
        start = int(self._step_state[0].item())
        if start != self._start_seen:  # an epoch began since this process last masked (a persistent worker)
            self._start_seen, self.batches_masked = start, 0
        worker = torch.utils.data.get_worker_info()
        index = self.batches_masked if worker is None else self.batches_masked * worker.num_workers + worker.id
        self.step = self.epoch_start_step + index // self.accumulation_steps
        self.batches_masked += 1

    def level_probabilities(self) -> np.ndarray:
        """Probabilities of basic / phrase / entity at the current epoch (or step)."""
        now = self.step if self.schedule_unit == "step" else self.epoch
        return [probs for first, probs in self.schedule if first <= now][-1]

    def draw_level(self, key: np.uint64) -> str:
        """The row's level, from its own random stream (reproducible per example and epoch)."""
        cumulative = np.cumsum(self.level_probabilities())
        return LEVELS[min(int(np.searchsorted(cumulative, uniform(key, 1, LEVEL)[0], side="right")), len(LEVELS) - 1)]

    def unit_plan(
        self, example: dict[str, Any], ids: np.ndarray, eligible: np.ndarray, key: np.uint64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unit of every token and one uniform draw per unit: words, and at the phrase (entity)
        level each phrase (phrase and entity) span one unit, widened to whole words."""
        level = self.draw_level(key)
        self.level_counts[level] += 1
        starts = word_starts(ids, ~eligible, example.get("word_ids"), self.word_table)
        spans = self._spans(example, len(ids))  # checked at every level, so a bad kind never passes unseen
        whole = [(s, e) for s, e, kind in spans if span_level(kind) in UNIT_KINDS[level]]
        if level != "basic" and not whole:
            self.level_counts["no_span_fallback"] += 1
        for start, end in whole:  # one Python step per span, not per token
            # Inside the span no unit starts; its own start and the token after it keep their word
            # boundaries, so a span opening or closing inside a word joins that word's unit.
            starts[start + 1 : end] = False
        starts &= eligible
        for start, end in whole:  # a span opening on a special token opens at its first maskable one
            inside = np.flatnonzero(eligible[start:end])
            if len(inside):
                starts[start + inside[0]] = True
        starts[np.flatnonzero(eligible)[:1]] = True  # the first maskable token always opens a unit
        return numbered_units(starts, key, PRIORITY)

    def _select_units(
        self, examples: list[dict[str, Any]], keys: np.ndarray, ids: np.ndarray, eligible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ERNIE's selection: each unit on its own with probability ``mlm_probability``."""
        self._count_batch()
        priority = np.full(eligible.shape, np.inf)
        units = np.zeros(eligible.shape, dtype=np.int64)
        for row, length, row_units, row_priority in self._row_plans(examples, keys, ids, eligible):
            priority[row, :length] = np.where(eligible[row, :length], row_priority[row_units], np.inf)
            units[row, :length] = row_units
        selected = eligible & (priority < self.mlm_probability)
        if not selected.any() and eligible.any():  # no target in the whole batch: its first unit in line
            row, position = np.unravel_index(int(np.argmin(priority)), priority.shape)
            selected[row] = eligible[row] & (units[row] == units[row, position])
        return selected, priority, units

    @staticmethod
    def _spans(example: dict[str, Any], length: int) -> list[tuple[int, int, str]]:
        """The example's knowledge spans, checked: inside the sequence, disjoint, of a known kind."""
        starts, ends, kinds = (
            () if example.get(f) is None else example[f] for f in ("span_starts", "span_ends", "span_kinds")
        )
        name = f"example {example.get('example_index', '?')}"
        if not len(starts) == len(ends) == len(kinds):
            raise ValueError(
                f"{name}: span_starts, span_ends and span_kinds differ in length "
                f"({len(starts)}, {len(ends)}, {len(kinds)})"
            )
        spans = sorted((int(s), int(e), k) for s, e, k in zip(starts, ends, kinds))
        previous_end = 0
        for s, e, kind in spans:
            try:
                span_level(kind)
            except ValueError as error:
                raise ValueError(f"{name}, column span_kinds: {error}") from None
            if not 0 <= s < e <= length:
                raise ValueError(f"{name}: {kind} span [{s}, {e}) lies outside its {length} tokens")
            if s < previous_end:
                raise ValueError(
                    f"{name}: spans overlap at token {s}; a unit is masked all-or-none, so units must be disjoint"
                )
            previous_end = e
        return spans


__all__ = [
    "LEVELS",
    "UNIT_KINDS",
    "KnowledgeMaskingCollator",
    "LevelScheduleCallback",
    "level_schedule",
    "normalised_levels",
]

"""Masked language modelling: BERT's 80/10/10 policy at token, whole-word, n-gram or span granularity.

One algorithm serves every granularity (seed question 12). For each example:

1. **Words.** A token starts a word when its ``word_ids`` entry changes (from the data preparation)
   or, without word ids, when the vocabulary says so: WordPiece continuations start with ``##``,
   byte-level BPE word starts with ``Ġ``, SentencePiece word starts with ``▁``. A special token
   always ends a word. Pre-segmented CJK text keeps its segmentation through ``word_ids``.
2. **Units.** ``token``: every token. ``whole_word``: every word. ``ngram`` (ALBERT): consecutive
   words tiled into n-grams, n in 1..3 drawn with p(n) proportional to 1/n. ``span`` (SpanBERT):
   words tiled into spans of geometric length (p = 0.2, at most 10 words). Tiling a random
   partition keeps units disjoint by construction and never lets one cross a special token.
3. **Selection.** Units are taken in random order while their tokens fit the budget
   ``mlm_probability x eligible tokens``, at least one token (BERT's ``max(1, round(n p))``): a
   unit is taken when at least half of it fits, so the expected masked share is the target, exactly
   round(budget) tokens at ``token`` granularity (a first unit over twice the budget is skipped).
4. **Replacement.** Each selected token becomes [MASK] (80%), a random non-special token (10%) or
   stays (10%); with ``replace_per_unit`` (SpanBERT's choice, the default for ``span``) the draw is
   made once per unit.

Everything is numpy over whole arrays: token masking and the 80/10/10 replacement run on the
padded batch at once; word, n-gram, span and knowledge units loop over the examples of a batch,
never over tokens.
"""

from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .base import DynamicCollator, uniform

# Masking granularities (units of MLM); PermutationLMCollator has its own (bert18.collators.permutation).
MLM_GRANULARITIES = ("token", "whole_word", "ngram", "span")
# Streams of random numbers, one per kind of decision (see bert18.collators.base.uniform).
PRIORITY, REPLACE, RANDOM_TOKEN, TILING, LEVEL = range(5)


def word_start_table(tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
    """For every id of the vocabulary: does a token with this id begin a word?

    The convention is read off the vocabulary itself: WordPiece marks continuations (``##``),
    byte-level BPE (``Ġ``) and SentencePiece (``▁``) mark word starts.
    """
    vocab = tokenizer.get_vocab()
    tokens = [""] * (max(vocab.values()) + 1)
    for token, index in vocab.items():
        tokens[index] = token
    counts = {marker: sum(t.startswith(marker) for t in tokens) for marker in ("##", "Ġ", "▁")}
    marker = max(counts, key=counts.get)
    if counts[marker] == 0:  # a character- or word-level vocabulary: every token is a word
        return np.ones(len(tokens), dtype=bool)
    starts = np.array([not t.startswith("##") if marker == "##" else t.startswith(marker) for t in tokens])
    starts[list(tokenizer.all_special_ids)] = True
    return starts


def word_boundaries(word_ids: Any) -> np.ndarray:
    """Boolean per token: does a word begin here, by its word id? The first token does, and every
    token whose word id differs from the one before. Neighbours, not values, decide: prepared word
    ids are stored modulo 256 (``bert18.data.prepare``), so equal values far apart are other words."""
    words = np.asarray(word_ids)
    starts = np.ones(len(words), dtype=bool)
    starts[1:] = words[1:] != words[:-1]
    return starts


def word_starts(ids: np.ndarray, special: np.ndarray, word_ids: Any, table: np.ndarray) -> np.ndarray:
    """Boolean per token: an eligible token that begins a word (the first after a special token does)."""
    starts = word_boundaries(word_ids) if word_ids is not None else table[ids].copy()
    starts[1:] |= special[:-1]
    starts[:1] = True
    return starts & ~special


def labels_on_word_starts(labels: Any, starts: np.ndarray) -> np.ndarray:
    """``labels`` kept on the tokens that begin a word, -100 (ignored by the loss) on the others:
    ERNIE 2.0 predicts capitalization once per word, on its first piece."""
    return np.where(starts, labels, -100)


def tile_words(draws: np.ndarray, lengths: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Boolean per word: does a unit start here? Words are cut into consecutive units whose lengths
    are drawn from ``lengths`` with ``probabilities`` (one uniform draw per word in ``draws``)."""
    num_words = len(draws)
    drawn = lengths[np.minimum(np.searchsorted(np.cumsum(probabilities), draws, side="right"), len(lengths) - 1)]
    boundaries = np.cumsum(drawn)
    starts = np.zeros(num_words, dtype=bool)
    starts[np.concatenate(([0], boundaries[boundaries < num_words]))] = True
    return starts


def length_distribution(longest: int, span_p: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Unit lengths 1..``longest`` (in words) and their probabilities for ``tile_words``: p(n)
    proportional to 1/n (ALBERT's n-grams, XLNet's spans), or with ``span_p`` SpanBERT's geometric
    p(1 - p)^(n - 1), truncated at ``longest`` and renormalised."""
    lengths = np.arange(1, longest + 1)
    weights = 1.0 / lengths if span_p is None else span_p * (1 - span_p) ** (lengths - 1)
    return lengths, weights / weights.sum()


def tile_units(
    starts: np.ndarray, eligible: np.ndarray, draws: np.ndarray, lengths: np.ndarray, probabilities: np.ndarray
) -> np.ndarray:
    """Boolean per token: does a unit of consecutive whole words begin here? The words (``starts``,
    from ``word_starts``) are tiled by ``tile_words`` (``draws``: one uniform number per word), and a
    unit also begins at the first word after a special token, so that no unit crosses one. N-gram
    and span masking (MLM) and span orders (PLM) cut their units this way."""
    word_of_token = np.maximum(np.cumsum(starts) - 1, 0)
    tile = tile_words(draws, lengths, probabilities)
    segment_start = starts & np.r_[True, ~eligible[:-1]]  # never tile across a special token
    return starts & (tile[word_of_token] | segment_start)


def numbered_units(starts: np.ndarray, key: np.uint64, stream: int) -> tuple[np.ndarray, np.ndarray]:
    """The unit index of every token (-1 before the first unit start) and one uniform draw per unit
    from ``stream`` of ``key``: the order in which units are taken (MLM, ERNIE) or predicted (PLM)."""
    units = np.cumsum(starts) - 1
    return units, uniform(key, int(units[-1]) + 1 if len(units) else 0, stream)


def select_units(
    unit_of_token: np.ndarray,
    eligible: np.ndarray,
    priority: np.ndarray,
    budget: float,
) -> np.ndarray:
    """Mask of the tokens of the units taken in ``priority`` order while at least half of each fits
    the budget: the expected number of tokens is the budget. When the very first unit is over
    twice the budget (a long entity first in line), it is skipped and whole units that fit are
    taken instead, so such a row is not left without targets."""
    sizes = np.bincount(unit_of_token[eligible], minlength=len(priority))
    order = np.argsort(priority, kind="stable")
    ordered = sizes[order]
    before = np.cumsum(ordered) - ordered
    fits = before + ordered / 2 < budget
    stop = len(order) if fits.all() else int(np.argmin(fits))  # the leading run that fits, in one pass
    taken = list(order[:stop])
    if stop == 0 and len(order):  # the first unit alone is over twice the budget (a long entity): skip it
        used = 0
        for unit, size in zip(order[1:].tolist(), ordered[1:].tolist()):
            if budget - used < 1:
                break
            if size and used + size <= budget:
                taken.append(unit)
                used += size
    if not taken and budget > 0:  # every unit is too big: still one target, as BERT's max(1, ...)
        taken = [order[int(np.argmax(ordered > 0))]]
    chosen = np.zeros(len(priority), dtype=bool)
    chosen[taken] = True
    return chosen[unit_of_token] & eligible


def row_budget(probability: float, maskable: np.ndarray) -> np.ndarray:
    """Tokens to predict per row: ``probability`` of its maskable tokens, at least one (as BERT's
    ``max(1, round(n * p))``), none in a row with nothing maskable."""
    return np.where(maskable > 0, np.maximum(probability * maskable, 1.0), 0.0)


class MLMCollator(DynamicCollator):
    """Dynamic masked-LM collator for the HF Trainer or a ``DataLoader``.

    Args:
        tokenizer: supplies [MASK], padding and the special tokens (never masked, never drawn as
            random replacements).
        mlm_probability: share of eligible (non-special) tokens to predict.
        mask_replace_prob / random_replace_prob: of the selected tokens, the share replaced by
            [MASK] and by a random token; the rest stay unchanged (BERT: 0.8 / 0.1 / 0.1).
        granularity: ``token``, ``whole_word``, ``ngram`` or ``span`` (see the module docstring).
        max_ngram: largest n for ``ngram``; ``span_p`` / ``max_span``: SpanBERT's geometric lengths.
        replace_per_unit: one 80/10/10 draw per unit instead of per token (default: ``span`` only).
        mask_count_per_batch: mask exactly this many tokens in every batch (fixed shapes for compiled
            or sparse MLM heads): units are taken in their random order across the whole batch and
            the last one may be cut. Masks then depend on which examples share a batch.
        seed: with the epoch and each example's ``example_index``, fixes every draw.
        pad_to_multiple_of: pad lengths up to a multiple (tensor cores, fewer compiled shapes).

    Examples are dicts with ``input_ids`` (special tokens included) and optionally
    ``special_tokens_mask``, ``token_type_ids``, ``word_ids``, ``example_index`` and task labels
    (passed through, padded with -100). The batch holds ``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``labels`` (original ids at masked positions, -100 elsewhere) and the labels.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        mlm_probability: float = 0.15,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        granularity: str = "token",
        max_ngram: int = 3,
        span_p: float = 0.2,
        max_span: int = 10,
        replace_per_unit: bool | None = None,
        mask_count_per_batch: int | None = None,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
    ):
        super().__init__(tokenizer, seed, pad_to_multiple_of)
        if tokenizer.mask_token_id is None:
            raise ValueError("masked language modelling needs a tokenizer with a mask token")
        if not 0 < mlm_probability < 1:
            raise ValueError(f"mlm_probability must lie in (0, 1), got {mlm_probability}")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1:
            raise ValueError(
                f"mask_replace_prob ({mask_replace_prob}) + random_replace_prob ({random_replace_prob}) must be "
                "non-negative and at most 1"
            )
        if granularity not in MLM_GRANULARITIES:
            raise ValueError(f"granularity must be one of {MLM_GRANULARITIES}, got {granularity!r}")
        for name, value in (("max_ngram", max_ngram), ("max_span", max_span)):  # lengths in words
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer (words), got {value!r}")
        if not 0 < span_p <= 1:
            raise ValueError(f"span_p must lie in (0, 1] (the geometric parameter of span lengths), got {span_p}")
        if mask_count_per_batch is not None and mask_count_per_batch < 1:
            raise ValueError(f"mask_count_per_batch must be a positive integer or None, got {mask_count_per_batch}")
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.granularity = granularity
        self.replace_per_unit = granularity == "span" if replace_per_unit is None else replace_per_unit
        self.mask_count_per_batch = mask_count_per_batch
        self.word_table = word_start_table(tokenizer)
        vocabulary = np.arange(len(tokenizer), dtype=np.int64)
        self.random_pool = vocabulary[~np.isin(vocabulary, self.special_ids)]
        self.unit_lengths, self.unit_probabilities = (
            length_distribution(max_ngram) if granularity == "ngram" else length_distribution(max_span, span_p)
        )

    # -- units -----------------------------------------------------------------------------------
    def unit_plan(
        self, example: dict[str, Any], ids: np.ndarray, eligible: np.ndarray, key: np.uint64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unit index of every token (meaningful where ``eligible``) and each unit's priority
        (units are taken lowest first): here uniformly random."""
        if self.granularity == "token":
            starts = eligible.copy()
        else:
            starts = word_starts(ids, ~eligible, example.get("word_ids"), self.word_table)
            if self.granularity in ("ngram", "span"):
                starts = tile_units(
                    starts,
                    eligible,
                    uniform(key, int(starts.sum()), TILING),
                    self.unit_lengths,
                    self.unit_probabilities,
                )
        return numbered_units(starts, key, PRIORITY)

    # -- masking ---------------------------------------------------------------------------------
    def _select_tokens(self, keys: np.ndarray, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token granularity for the whole batch at once: each row takes the round(budget) eligible
        tokens of lowest priority. Returns the selection, the per-token priorities and the units."""
        width = eligible.shape[1]
        priority = np.where(eligible, uniform(keys, width, PRIORITY), np.inf)
        rank = np.empty_like(priority, dtype=np.int64)
        np.put_along_axis(rank, np.argsort(priority, axis=1, kind="stable"), np.arange(width)[None, :], axis=1)
        budget = row_budget(self.mlm_probability, eligible.sum(axis=1, keepdims=True))
        units = np.broadcast_to(np.arange(width), eligible.shape)
        return eligible & (rank + 0.5 < budget), priority, units

    def _row_plans(
        self, examples: list[dict[str, Any]], keys: np.ndarray, ids: np.ndarray, eligible: np.ndarray
    ) -> Any:
        """``(row, length, units, priority per unit)`` from ``unit_plan`` for every row with something to
        predict (a row of special tokens or [UNK] only has nothing)."""
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            if eligible[row, :length].any():
                row_units, row_priority = self.unit_plan(example, ids[row, :length], eligible[row, :length], keys[row])
                yield row, length, np.maximum(row_units, 0), row_priority

    def _select_units(
        self, examples: list[dict[str, Any]], keys: np.ndarray, ids: np.ndarray, eligible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Word, n-gram, span or knowledge units, example by example (each vectorized)."""
        selected = np.zeros_like(eligible)
        priority = np.full(eligible.shape, np.inf)
        units = np.zeros(eligible.shape, dtype=np.int64)
        for row, length, row_units, row_priority in self._row_plans(examples, keys, ids, eligible):
            budget = row_budget(self.mlm_probability, eligible[row].sum())
            selected[row, :length] = select_units(row_units, eligible[row, :length], row_priority, budget)
            priority[row, :length] = np.where(eligible[row, :length], row_priority[row_units], np.inf)
            units[row, :length] = row_units
        return selected, priority, units

    def _exact_count(self, eligible: np.ndarray, priority: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Re-select across the batch so exactly ``mask_count_per_batch`` tokens are masked: units
        in priority order over the whole batch, the last one cut if it does not fit."""
        rows, positions = np.nonzero(eligible)
        if self.mask_count_per_batch > len(rows):
            raise ValueError(
                f"mask_count_per_batch={self.mask_count_per_batch} exceeds the batch's {len(rows)} maskable tokens"
            )
        order = np.lexsort((positions, units[rows, positions], rows, priority[rows, positions]))
        chosen = order[: self.mask_count_per_batch]
        selected = np.zeros_like(eligible)
        selected[rows[chosen], positions[chosen]] = True
        return selected

    def mask(self, examples: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded corrupted ids, MLM labels and lengths of the batch ([batch, length] arrays)."""
        ids, lengths, eligible = self.batch_arrays(examples)
        keys = self.keys(examples)
        if self.granularity == "token" and type(self).unit_plan is MLMCollator.unit_plan:
            selected, priority, units = self._select_tokens(keys, eligible)
        else:
            selected, priority, units = self._select_units(examples, keys, ids, eligible)
        if self.mask_count_per_batch is not None:
            selected = self._exact_count(eligible, priority, units)
        width = ids.shape[1]
        draw = uniform(keys, width, REPLACE)
        if self.replace_per_unit:  # one draw per unit (units are numbered below the row length)
            draw = np.take_along_axis(draw, units, axis=1)
        to_mask = selected & (draw < self.mask_replace_prob)
        to_random = selected & ~to_mask & (draw < self.mask_replace_prob + self.random_replace_prob)
        random_ids = self.random_pool[(uniform(keys, width, RANDOM_TOKEN) * len(self.random_pool)).astype(np.int64)]
        corrupted = np.where(to_mask, self.tokenizer.mask_token_id, np.where(to_random, random_ids, ids))
        return corrupted, np.where(selected, ids, -100), lengths

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, labels, lengths = self.mask(examples)
        return self.model_inputs(examples, input_ids, lengths, labels)


__all__ = ["MLM_GRANULARITIES", "MLMCollator", "word_start_table"]

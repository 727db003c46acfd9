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
   ``mlm_probability x eligible tokens`` (a unit is taken when at least half of it fits, so the
   expected masked share is exactly the target, and exactly round(budget) tokens at ``token``
   granularity, as in BERT's own data generator).
4. **Replacement.** Each selected token becomes [MASK] (80%), a random non-special token (10%) or
   stays (10%); with ``replace_per_unit`` (SpanBERT's choice, the default for ``span``) the draw is
   made once per unit.

Everything is numpy over whole arrays; the only Python loop is over the examples of a batch.
"""

from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .base import DynamicCollator

GRANULARITIES = ("token", "whole_word", "ngram", "span")
_MASK_STREAM, _REPLACE_STREAM, _TILING_STREAM = 1, 2, 3


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


def word_starts(ids: np.ndarray, special: np.ndarray, word_ids: Any, table: np.ndarray) -> np.ndarray:
    """Boolean per token: an eligible token that begins a word (the first after a special token does)."""
    if word_ids is not None:
        words = np.asarray(word_ids)
        starts = np.ones(len(ids), dtype=bool)
        starts[1:] = words[1:] != words[:-1]
    else:
        starts = table[ids].copy()
    starts[1:] |= special[:-1]
    starts[:1] = True
    return starts & ~special


def tile_words(num_words: int, lengths: np.ndarray, probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Boolean per word: does a unit start here? Words are cut into consecutive units of random length."""
    drawn = rng.choice(lengths, size=max(num_words, 1), p=probabilities)
    boundaries = np.cumsum(drawn)
    starts = np.zeros(num_words, dtype=bool)
    starts[np.concatenate(([0], boundaries[boundaries < num_words]))] = True
    return starts


def select_units(unit_of_token: np.ndarray, eligible: np.ndarray, priority: np.ndarray, budget: float,
                 ) -> np.ndarray:
    """Mask of tokens in the units taken in ``priority`` order while at least half of each fits the budget."""
    sizes = np.bincount(unit_of_token[eligible], minlength=len(priority))
    order = np.argsort(priority, kind="stable")
    before = np.cumsum(sizes[order]) - sizes[order]
    taken = order[before + sizes[order] / 2 < budget]
    chosen = np.zeros(len(priority), dtype=bool)
    chosen[taken] = True
    return chosen[unit_of_token] & eligible


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
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        self.mlm_probability = mlm_probability
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.granularity = granularity
        self.replace_per_unit = granularity == "span" if replace_per_unit is None else replace_per_unit
        self.mask_count_per_batch = mask_count_per_batch
        self.word_table = word_start_table(tokenizer)
        vocabulary = np.arange(len(tokenizer), dtype=np.int64)
        self.random_pool = vocabulary[~np.isin(vocabulary, self.special_ids)]
        if granularity == "ngram":
            self.unit_lengths = np.arange(1, max_ngram + 1)
            weights = 1.0 / self.unit_lengths
        else:  # geometric span lengths, truncated at max_span and renormalised (SpanBERT)
            self.unit_lengths = np.arange(1, max_span + 1)
            weights = span_p * (1 - span_p) ** (self.unit_lengths - 1)
        self.unit_probabilities = weights / weights.sum()

    # -- units -----------------------------------------------------------------------------------
    def unit_plan(self, example: dict[str, Any], ids: np.ndarray, eligible: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Unit index of every token (meaningful where ``eligible``) and each unit's priority
        (units are taken lowest first): here uniformly random."""
        if self.granularity == "token":
            starts = eligible.copy()
        else:
            starts = word_starts(ids, ~eligible, example.get("word_ids"), self.word_table)
            if self.granularity in ("ngram", "span"):
                word_of_token = np.cumsum(starts) - 1
                tile = tile_words(int(starts.sum()), self.unit_lengths, self.unit_probabilities, rng)
                segment_start = starts & np.r_[True, ~eligible[:-1]]  # never tile across a special token
                starts = starts & (tile[np.maximum(word_of_token, 0)] | segment_start)
        units = np.cumsum(starts) - 1
        return units, rng.random(int(units[-1]) + 1 if len(units) else 0)

    # -- masking ---------------------------------------------------------------------------------
    def draw(self, example: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Selected-token mask, unit index per token, unit priorities and the token ids of one example."""
        ids = np.asarray(example["input_ids"], dtype=np.int64)
        eligible = ~self.special_mask(example, ids)
        units, priority = self.unit_plan(example, ids, eligible, self.generator(example, _MASK_STREAM))
        budget = self.mlm_probability * eligible.sum()
        return select_units(np.maximum(units, 0), eligible, priority, budget), units, priority, ids

    def replace(self, example: dict[str, Any], ids: np.ndarray, selected: np.ndarray,
                units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Apply 80/10/10 to the selected tokens; returns the corrupted ids and the labels."""
        rng = self.generator(example, _REPLACE_STREAM)
        if self.replace_per_unit:
            draw = rng.random(int(units[-1]) + 1 if len(units) else 0)[np.maximum(units, 0)]
        else:
            draw = rng.random(len(ids))
        corrupted = ids.copy()
        to_mask = selected & (draw < self.mask_replace_prob)
        to_random = selected & (draw >= self.mask_replace_prob) & (
            draw < self.mask_replace_prob + self.random_replace_prob)
        corrupted[to_mask] = self.tokenizer.mask_token_id
        corrupted[to_random] = self.random_pool[rng.integers(len(self.random_pool), size=int(to_random.sum()))]
        return corrupted, np.where(selected, ids, -100)

    def _exact_count(self, draws: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                     examples: list[dict[str, Any]]) -> list[np.ndarray]:
        """Re-select across the batch so exactly ``mask_count_per_batch`` tokens are masked."""
        rows, keys = [], []
        for row, (_, units, priority, ids) in enumerate(draws):
            eligible = ~self.special_mask(examples[row], ids)
            positions = np.flatnonzero(eligible)
            rows.append(np.full(len(positions), row))
            keys.append(np.stack([priority[units[positions]], units[positions], positions]))
        rows_all, keys_all = np.concatenate(rows), np.concatenate(keys, axis=1)
        order = np.lexsort((keys_all[2], keys_all[1], keys_all[0]))  # by unit priority, unit, position
        if self.mask_count_per_batch > len(order):
            raise ValueError(f"mask_count_per_batch={self.mask_count_per_batch} exceeds the batch's "
                             f"{len(order)} maskable tokens")
        chosen = order[: self.mask_count_per_batch]
        chosen_rows, chosen_positions = rows_all[chosen], keys_all[2][chosen].astype(np.int64)
        selected = [np.zeros(len(ids), dtype=bool) for *_, ids in draws]
        for row, mask in enumerate(selected):
            mask[chosen_positions[chosen_rows == row]] = True
        return selected

    def mask(self, examples: list[dict[str, Any]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Corrupted ids and MLM labels of every example."""
        draws = [self.draw(example) for example in examples]
        selected = [d[0] for d in draws]
        if self.mask_count_per_batch is not None:
            selected = self._exact_count(draws, examples)
        out = [self.replace(e, d[3], s, d[1]) for e, d, s in zip(examples, draws, selected)]
        return [o[0] for o in out], [o[1] for o in out]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, labels = self.mask(examples)
        return self.model_inputs(examples, input_ids, labels)


__all__ = ["GRANULARITIES", "MLMCollator", "word_start_table"]

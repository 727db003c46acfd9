"""Permutation language modelling (XLNet, seed questions 15-16): a factorization order as attention masks.

XLNet predicts tokens autoregressively in a random factorization order, yet never reorders the
input: the order lives only in the attention masks. Each token gets its *rank*, its step in the
order, and

- content stream: token i sees token j iff ``rank[j] <= rank[i]`` (itself and everything earlier);
- query stream: the prediction at i sees token j iff ``rank[j] < rank[i]`` (strictly earlier: not
  its own content, which it has to predict).

The seed's example: input [x1, x2, x3, x4], order [x3, x2, x4, x1], ranks [3, 1, 0, 2]. In the
content stream x3 sees only itself, x2 sees x3 (and itself), x4 sees x3 and x2, x1 sees all four;
the query stream is the same without the diagonal. ``permutation_masks`` is that rule.

How ``PermutationLMCollator`` ranks a sequence:

1. **Kinds of token.** Special tokens ([CLS], [SEP], the example's ``special_tokens_mask``, and
   [UNK], as for MLM) are context for every token and never targets. Padding is never visible
   and never a target. Every other token is predictable.
2. **Order.** A random order over the predictable tokens, token by token (``token``) or span by
   span (``span``, XLNet's span-based prediction: runs of 1..``max_span`` whole words, p(n)
   proportional to 1/n, never crossing a special token, kept left to right inside a span).
3. **Targets.** Only the last 1/K of the order is predicted (XLNet's partial prediction: early
   in the order a token has too little context to learn from): ``round(n / k)`` of the row's n
   predictable tokens, at least one (as BERT's ``max(1, round(n p))``), so with K larger than
   the row still one token is predicted. A row with no special token keeps at least one context
   token, so that the first target sees something.
4. **Ranks.** The targets take ranks 1..T in order. The context (the first n - T tokens of the
   order) and the special tokens share rank 0: their order predicts nothing, so, as in XLNet's
   implementation, they attend to each other both ways, and [CLS] summarises the whole context
   for sentence tasks (SOP, NSP) without seeing a target. ``ordered_context=True`` keeps the
   strict order in the context instead (then special tokens see only each other).

Every random number is a function of (seed, epoch, example_index), as in the other collators.
"""

from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from .base import DynamicCollator, uniform
from .mlm import length_distribution, numbered_units, tile_units, word_start_table, word_starts

# Orders over tokens or over spans of whole words; not the MLM granularities (bert18.collators.mlm).
PLM_GRANULARITIES = ("token", "span")
# Streams of random numbers (see bert18.collators.base.uniform).
ORDER, TILING = range(2)
# What the collator adds to a batch, besides input_ids, attention_mask and token_type_ids; the
# arguments Bert18ForPreTraining takes for the "plm" task.
PLM_INPUTS = ("plm_content_mask", "plm_query_mask", "plm_target_positions", "plm_labels")


def ranks_of_order(order: np.ndarray) -> np.ndarray:
    """Rank (step in the order) of every position, from the order as a list of positions."""
    order = np.asarray(order, dtype=np.int64)
    if not np.array_equal(np.sort(order), np.arange(len(order))):
        raise ValueError(f"an order lists every position 0..{len(order) - 1} once, got {order.tolist()}")
    ranks = np.empty_like(order)
    ranks[order] = np.arange(len(order))
    return ranks


def permutation_masks(ranks: np.ndarray, real: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Content and query masks ``[..., L, L]`` (``mask[i, j]``: may position i attend to j) from ranks ``[..., L]``.

    ``real`` marks the tokens (False: padding, never visible). A padding row sees every real token
    in both streams: its output is never used, and no attention row may be empty (SDPA returns
    NaN for one). The query rows of the lowest rank are empty (the first token of the order; in
    the collator, the context and special tokens): those tokens are never targets.
    """
    ranks = np.asarray(ranks)
    real = np.ones(ranks.shape, dtype=bool) if real is None else np.asarray(real, dtype=bool)
    visible = real[..., None, :]
    content = (ranks[..., None, :] <= ranks[..., :, None]) & visible
    query = (ranks[..., None, :] < ranks[..., :, None]) & visible
    padding_row = ~real[..., :, None]
    return np.where(padding_row, visible, content), np.where(padding_row, visible, query)


class PermutationLMCollator(DynamicCollator):
    """Dynamic permutation-LM collator for the HF Trainer or a ``DataLoader`` (see the module docstring).

    Args:
        tokenizer: supplies padding and the special tokens.
        k: predict the last 1/k of each order (XLNet's K; the paper uses 6 and 7). At least 1.
        granularity: ``token`` (order over tokens) or ``span`` (order over spans of whole words).
        max_span: longest span in words for ``span`` (XLNet: 5).
        ordered_context: rank the context tokens by the order too, instead of letting them
            attend both ways.
        seed, pad_to_multiple_of: as for the other collators.

    The batch holds ``input_ids`` (never corrupted: PLM has no [MASK]), ``attention_mask``,
    ``token_type_ids``, any task labels of the examples, and:

    - ``plm_content_mask`` / ``plm_query_mask``: [batch, length, length] booleans;
    - ``plm_target_positions``: [batch, T] positions of the targets, ascending, -1 past a row's own;
    - ``plm_labels``: [batch, T] their token ids, -100 where the position is -1.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        k: float = 6,
        granularity: str = "token",
        max_span: int = 5,
        ordered_context: bool = False,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
    ):
        super().__init__(tokenizer, seed, pad_to_multiple_of)
        if not k >= 1:
            raise ValueError(f"k must be at least 1 (the last 1/k of the order is predicted), got {k}")
        if granularity not in PLM_GRANULARITIES:
            raise ValueError(f"granularity must be one of {PLM_GRANULARITIES}, got {granularity!r}")
        if max_span < 1:
            raise ValueError(f"max_span must be a positive number of words, got {max_span}")
        self.k = k
        self.granularity = granularity
        self.ordered_context = ordered_context
        self.word_table = word_start_table(tokenizer)
        self.span_lengths, self.span_probabilities = length_distribution(max_span)

    def num_targets(self, predictable: np.ndarray, specials: np.ndarray) -> np.ndarray:
        """Targets per row: round(n / k), at least one, leaving one context token in a row without
        special tokens (the first target's query must see something)."""
        wanted = np.maximum(np.floor(predictable / self.k + 0.5), 1).astype(np.int64)
        return np.minimum(wanted, np.where(specials > 0, predictable, np.maximum(predictable - 1, 0)))

    def _span_priority(
        self, examples: list[dict[str, Any]], ids: np.ndarray, eligible: np.ndarray, keys: np.ndarray
    ) -> np.ndarray:
        """One random priority per span, shared by its tokens (a stable sort keeps them left to right)."""
        priority = np.full(eligible.shape, np.inf)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            row_eligible = eligible[row, :length]
            if not row_eligible.any():
                continue
            starts = word_starts(ids[row, :length], ~row_eligible, example.get("word_ids"), self.word_table)
            spans, span_priority = numbered_units(
                tile_units(
                    starts,
                    row_eligible,
                    uniform(keys[row], int(starts.sum()), TILING),
                    self.span_lengths,
                    self.span_probabilities,
                ),
                keys[row],
                ORDER,
            )
            priority[row, :length] = np.where(row_eligible, span_priority[np.maximum(spans, 0)], np.inf)
        return priority

    def permute(self, examples: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Padded ids, lengths and the ``PLM_INPUTS`` arrays of the batch."""
        if any("sequence_ids" in e for e in examples):  # one order per row would mix the documents
            raise ValueError(
                "PermutationLMCollator orders one sequence per row, and these rows pack several "
                "(sequence_ids): prepare the data with packing 'full_sentences' or 'doc_sentences'"
            )
        ids, lengths, eligible = self.batch_arrays(examples)
        width = ids.shape[1]
        real = np.arange(width)[None, :] < lengths[:, None]
        empty = (~real | (ids == self.tokenizer.pad_token_id)).all(axis=1)
        if empty.any():
            index = examples[int(np.argmax(empty))].get("example_index", "?")
            raise ValueError(
                f"example {index} is empty or all padding: there is nothing to order or predict; "
                "drop such rows before collating"
            )
        keys = self.keys(examples)
        if self.granularity == "token":
            priority = np.where(eligible, uniform(keys, width, ORDER), np.inf)
        else:
            priority = self._span_priority(examples, ids, eligible, keys)
        step = np.empty((len(examples), width), dtype=np.int64)  # each token's place in the order
        np.put_along_axis(step, np.argsort(priority, axis=1, kind="stable"), np.arange(width)[None, :], axis=1)
        predictable = eligible.sum(axis=1)
        context = (predictable - self.num_targets(predictable, (real & ~eligible).sum(axis=1)))[:, None]
        is_target = eligible & (step >= context)
        # Specials rank 0; the context too unless ordered_context; targets 1..T in the order.
        ranks = np.where(eligible, step + 1, 0) if self.ordered_context else np.where(is_target, step - context + 1, 0)
        content, query = permutation_masks(ranks, real)
        # Targets listed by position; rows with fewer targets are padded with position -1.
        columns = np.argsort(~is_target, axis=1, kind="stable")[:, : int(is_target.sum(axis=1).max())]
        listed = np.take_along_axis(is_target, columns, axis=1)
        fields = {
            "plm_content_mask": content,
            "plm_query_mask": query,
            "plm_target_positions": np.where(listed, columns, -1),
            "plm_labels": np.where(listed, np.take_along_axis(ids, columns, axis=1), -100),
        }
        return ids, lengths, fields

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        input_ids, lengths, fields = self.permute(examples)
        batch = self.model_inputs(examples, input_ids, lengths, None)
        return {**batch, **{name: torch.from_numpy(value) for name, value in fields.items()}}


__all__ = ["PLM_GRANULARITIES", "PLM_INPUTS", "PermutationLMCollator", "permutation_masks", "ranks_of_order"]

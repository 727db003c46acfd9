"""Unpadded encoding: the encoder runs on real tokens only, with variable-length attention.

A padded batch spends the projections and the feed-forward blocks, most of an encoder's work, on
padding. ``unpad`` lists the real tokens of a ``[batch, length]`` attention mask once per forward:
the flat ``indices`` of real tokens, and ``cu_seqlens``, the cumulative lengths of the sequences
they form (FlashAttention's convention). The layers then run on a ``[tokens, hidden]`` matrix and
attention works sequence by sequence through ``varlen_attention``:

- FlashAttention's ``flash_attn_varlen_func`` when the ``flash_attn`` package is installed and the
  tensors are on CUDA in half precision (bf16 autocast included);
- PyTorch's own ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention inside PyTorch) there
  too when no attention dropout is asked (it has none);
- otherwise ``scaled_dot_product_attention`` over the sequences re-batched as ``[sequences,
  longest, ...]``: the projections stay unpadded and only attention sees a (smaller) padding.

An attention mask may also number the sequences of a packed row: 0 is padding, 1, 2, ... the
sequence (document) each token belongs to. The tokens of one sequence are contiguous, and a
sequence attends only to itself, so packing several documents in a row never mixes them.

This file imports only torch (and flash_attn when installed): ``save_pretrained`` ships it with
``modeling_bert18.py`` for ``trust_remote_code`` loading.
"""

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch.nn import functional as F


@dataclass
class UnpaddedBatch:
    """Where the real tokens of a padded ``[batch, length]`` layout are, and the sequences they form.

    Attributes:
        indices: [tokens] flat index of each real token in ``batch * length``.
        cu_seqlens: [sequences + 1] int32, sequence ``s`` is tokens ``cu_seqlens[s]:cu_seqlens[s+1]``.
        max_seqlen: length of the longest sequence.
        positions: [tokens] each token's position within its sequence.
        slots: [tokens] each token's place in a ``[sequences * max_seqlen]`` re-batched layout.
        key_mask: [sequences, 1, 1, max_seqlen] True at the real slots of that layout.
        batch, length: the padded shape.
    """

    indices: torch.Tensor
    cu_seqlens: torch.Tensor
    max_seqlen: int
    positions: torch.Tensor
    slots: torch.Tensor
    key_mask: torch.Tensor
    batch: int
    length: int

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    def gather(self, padded: torch.Tensor) -> torch.Tensor:
        """[batch, length, ...] -> [tokens, ...]: the real tokens, in order."""
        return padded.reshape(self.batch * self.length, *padded.shape[2:]).index_select(0, self.indices)

    def scatter(self, tokens: torch.Tensor) -> torch.Tensor:
        """[tokens, ...] -> [batch, length, ...], zeros at padding."""
        flat = tokens.new_zeros(self.batch * self.length, *tokens.shape[1:])
        return flat.index_copy(0, self.indices, tokens).view(self.batch, self.length, *tokens.shape[1:])


# The batch's layout is read from the mask's values (data-dependent shapes): torch.compile runs these
# eagerly and compiles around them, instead of breaking its graph with a warning in the middle.
@torch.compiler.disable
def is_packed(attention_mask: torch.Tensor | None) -> bool:
    """Whether a mask numbers several sequences per row (values above 1)."""
    return attention_mask is not None and attention_mask.dtype != torch.bool and bool(attention_mask.max() > 1)


def sequence_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[batch, length] position of each token within its sequence (0 at padding), for numbered masks."""
    length = attention_mask.shape[1]
    index = torch.arange(length, device=attention_mask.device).expand_as(attention_mask)
    # A sequence starts where the number changes (roll, not a slice of length - 1: exported graphs
    # with a dynamic length would otherwise be specialised away from length 2).
    starts = (attention_mask.ne(attention_mask.roll(1, dims=1)) | index.eq(0)) & attention_mask.ne(0)
    first = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=1).values
    return (index - first) * attention_mask.ne(0)


def sequence_positions_dense(attention_mask: torch.Tensor) -> torch.Tensor:
    """``sequence_positions`` from comparisons only (no ``cummax``, which ONNX lacks), for exported graphs:
    a token's position is the number of earlier tokens of its row carrying its sequence number. Quadratic
    in the length, as the attention mask beside it."""
    length = attention_mask.shape[1]
    index = torch.arange(length, device=attention_mask.device)
    earlier = index[None, :] < index[:, None]  # [i, j]: j before i
    same = attention_mask[:, :, None] == attention_mask[:, None, :]
    return (same & earlier).sum(-1) * attention_mask.ne(0)


@torch.compiler.disable
def unpad(attention_mask: torch.Tensor) -> UnpaddedBatch:
    """The real tokens and sequences of ``attention_mask`` ([batch, length]: 0 padding, else the
    number of the token's sequence in its row, 1 when a row holds one sequence)."""
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, length], got {list(attention_mask.shape)}")
    batch, length = attention_mask.shape
    flat = attention_mask.reshape(-1).long()
    indices = flat.nonzero().squeeze(1)
    if indices.numel() == 0:
        raise ValueError("attention_mask has no real token: every row is padding")
    row, value = indices // length, flat[indices]
    starts = torch.ones_like(indices, dtype=torch.bool)
    starts[1:] = (row[1:] != row[:-1]) | (value[1:] != value[:-1])
    start_index = starts.nonzero().squeeze(1)
    sequence = starts.cumsum(0) - 1
    distinct = torch.unique(row * (int(value.max()) + 1) + value).numel()
    if distinct != start_index.numel():
        raise ValueError(
            "attention_mask: the tokens of each numbered sequence must be contiguous in their row "
            "(a number came back after another one)"
        )
    lengths = torch.diff(start_index, append=torch.tensor([indices.numel()], device=indices.device))
    cu_seqlens = F.pad(lengths.cumsum(0), (1, 0)).to(torch.int32)
    max_seqlen = int(lengths.max())
    positions = torch.arange(indices.numel(), device=indices.device) - start_index[sequence]
    slots = sequence * max_seqlen + positions
    key_mask = torch.zeros(lengths.numel() * max_seqlen, dtype=torch.bool, device=indices.device)
    key_mask[slots] = True
    return UnpaddedBatch(
        indices, cu_seqlens, max_seqlen, positions, slots, key_mask.view(-1, 1, 1, max_seqlen), batch, length
    )


@lru_cache(maxsize=1)
def _flash_varlen():
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


@lru_cache(maxsize=1)
def _torch_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's head slopes (Press et al. 2022): 2^(-8i/n) for i = 1..n when n is a power of two, else those of
    the power of two below n and every other slope of the one above (their reference implementation)."""

    def powers(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    lower = 2 ** (num_heads.bit_length() - 1)
    slopes = powers(lower) if lower == num_heads else powers(lower) + powers(2 * lower)[0::2][: num_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
    """The symmetric (bidirectional, MosaicBERT) ALiBi bias -slope_h * |p_i - p_j|: positions [..., Lq] and
    [..., Lk] give [..., heads, Lq, Lk] in float32."""
    distance = (query_positions[..., :, None] - key_positions[..., None, :]).abs().float()
    return -slopes.to(distance.device)[:, None, None] * distance.unsqueeze(-3)


def varlen_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    batch: UnpaddedBatch,
    scaling: float,
    dropout: float = 0.0,
    window: int | None = None,
    alibi: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Bidirectional attention within each sequence of ``batch``: ``query``, ``key``, ``value`` [tokens,
    heads, dim], the result [tokens, heads, dim]. ``window``: local attention, token i attends to the
    tokens j of its sequence with |i - j| <= window. ``alibi``: (slopes [heads], positions [tokens]), the
    ALiBi bias of each pair (PyTorch's varlen kernel has none: the SDPA fallback runs then).

    Memory: FlashAttention's kernels hold no [length, length] scores (linear in the length, and with a
    window they also skip the work outside it). The SDPA fallback (CPU, fp32) attends in blocks of
    ``QUERY_BLOCK`` queries past that length: linear in the length on local layers (each block sees its
    window's keys only), [block, length] scores at a time on global layers."""
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):  # FlashAttention's precisions
        flash = _flash_varlen()
        if flash is not None:
            # FlashAttention's ALiBi is -slope * |i - j| within each sequence: bert18's with contiguous positions.
            return flash(
                query,
                key,
                value,
                batch.cu_seqlens,
                batch.cu_seqlens,
                batch.max_seqlen,
                batch.max_seqlen,
                dropout_p=dropout,
                softmax_scale=scaling,
                causal=False,
                window_size=(window, window) if window is not None else (-1, -1),
                alibi_slopes=alibi[0].to(query.device) if alibi is not None else None,
            )
        torch_varlen = _torch_varlen()
        if torch_varlen is not None and dropout == 0.0 and alibi is None:
            return torch_varlen(
                query,
                key,
                value,
                batch.cu_seqlens,
                batch.cu_seqlens,
                batch.max_seqlen,
                batch.max_seqlen,
                scale=scaling,
                window_size=(window, window) if window is not None else (-1, -1),
            )
    return _rebatched_sdpa(query, key, value, batch, scaling, dropout, window, alibi)


# Longer sequences than this attend in blocks of queries: the scores held at once are [block, keys] per
# head (keys: the window's span on local layers, linear in the length; the whole sequence on global ones).
QUERY_BLOCK = 512


def _rebatched_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    batch: UnpaddedBatch,
    scaling: float,
    dropout: float,
    window: int | None = None,
    alibi: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """SDPA over the sequences laid out as [sequences, heads, longest, dim], padding keys masked (and,
    on a local layer, keys outside the window). Without padding in that layout and without a window no
    mask is passed, so PyTorch's fused (memory-efficient) kernels run."""
    tokens, heads, dim = query.shape
    slots = batch.num_sequences * batch.max_seqlen

    def layout(t: torch.Tensor) -> torch.Tensor:
        flat = t.new_zeros(slots, heads * dim).index_copy(0, batch.slots, t.reshape(tokens, -1))
        return flat.view(batch.num_sequences, batch.max_seqlen, heads, dim).transpose(1, 2)

    query, key, value = layout(query), layout(key), layout(value)
    length = batch.max_seqlen
    key_mask = None if tokens == slots else batch.key_mask  # every slot real: nothing to mask
    if window is not None and window + 1 >= length:
        window = None  # the window spans every sequence: a global layer
    positions = None
    if alibi is not None:  # each slot's position, [sequences, longest]
        positions = alibi[1].new_zeros(slots).index_copy(0, batch.slots, alibi[1]).view(batch.num_sequences, length)

    def block_mask(start: int, end: int, low: int, high: int) -> torch.Tensor | None:
        mask = key_mask[..., low:high] if key_mask is not None else None
        if window is not None:
            rows = torch.arange(start, end, device=query.device)
            cols = torch.arange(low, high, device=query.device)
            band = (rows[:, None] - cols[None, :]).abs() <= window
            mask = band if mask is None else mask & band
        if positions is None:
            return mask
        bias = alibi_bias(alibi[0], positions[:, start:end], positions[:, low:high]).to(query.dtype)
        return bias if mask is None else bias.masked_fill(~mask, torch.finfo(query.dtype).min)

    if length <= QUERY_BLOCK or (window is None and key_mask is None and positions is None):
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=block_mask(0, length, 0, length), dropout_p=dropout, scale=scaling
        )
    else:
        blocks = []
        for start in range(0, length, QUERY_BLOCK):
            end = min(start + QUERY_BLOCK, length)
            low, high = (0, length) if window is None else (max(0, start - window), min(length, end + window))
            mask = block_mask(start, end, low, high)
            blocks.append(
                F.scaled_dot_product_attention(
                    query[:, :, start:end],
                    key[:, :, low:high],
                    value[:, :, low:high],
                    attn_mask=mask,
                    dropout_p=dropout,
                    scale=scaling,
                )
            )
        context = torch.cat(blocks, dim=2)
    return context.transpose(1, 2).reshape(slots, heads, dim).index_select(0, batch.slots)


__all__ = [
    "QUERY_BLOCK",
    "UnpaddedBatch",
    "alibi_bias",
    "alibi_slopes",
    "is_packed",
    "sequence_positions",
    "sequence_positions_dense",
    "unpad",
    "varlen_attention",
]

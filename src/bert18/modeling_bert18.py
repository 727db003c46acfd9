"""Bert18: one BERT-family encoder with the options of BERT, RoBERTa, ALBERT, ERNIE and ModernBERT, and its heads.

The whole model reads top to bottom in this file, in transformers' order: building blocks (norms,
positions, embeddings, attention, feed-forward, encoder, pooler, LM head), the loss helpers and output
records, the pretrained base class (weights, conversion of released checkpoints), the base model, then
the heads and ``__all__``. Every choice is a ``Bert18Config`` field:

- Embeddings (seed questions 3-5): token + segment (+ ERNIE's task-type) + position embeddings of width
  E, summed, then a norm and dropout. Positions are a ``learned`` table (BERT), the fixed ``sinusoidal``
  code of the Transformer, or none in the embeddings (``rotary`` rotates queries and keys, ``alibi``
  biases the scores); ``pad_aware_positions`` numbers real tokens only (RoBERTa). With
  ``embedding_size`` set, one linear map lifts E to the hidden width H (ALBERT's factorization).
- Encoder: ``num_hidden_layers`` residual steps, post-norm as BERT (``x = LN(x + Attention(x))``, then
  the feed-forward likewise) or pre-norm with a final norm (ModernBERT), LayerNorm or RMSNorm, a plain
  or gated (GeGLU, SwiGLU) feed-forward, and full or local (sliding-window) attention per layer.
  Attention is multi-head scaled dot-product (question 11), run by transformers' attention interface
  (eager, sdpa, flash_attention_2 where installed). Q, K and V are BERT's three projections
  ``query``, ``key``, ``value`` (peft's LoRA can adapt any of them). ``layer_sharing`` keeps a single
  attention block, a single feed-forward block, or one of each, and applies it at every layer (ALBERT).
- Pooler (question 8): dense + activation over the final state of the first token, [CLS].
- Heads: the MLM head (dense H -> E, activation, norm, decoder E -> V tied to the token embeddings),
  one linear head per other pretraining task (``PRETRAINING_TASKS``), and the usual downstream heads.
- The fast path: with ``sdpa`` or ``flash_attention_2``, a batch with padding (or rows packing
  several sequences, numbered in the attention mask) runs the embeddings and every layer on its
  real tokens only, with variable-length attention (``attention_bert18``); with MLM labels and
  ``sparse_prediction`` the head scores the labelled positions only, and when nothing else reads the
  final states the last layer computes them there alone, after its attention. All give the padded,
  dense computation's results (without dropout, bit for bit up to float rounding; with it, the same
  computation under other dropout draws). ``torch.export`` / ONNX trace the padded path with tensor ops only (no
  branch on the mask's values) and zero padding as the unpadded path does: the same outputs.
- Two-stream attention (XLNet's permutation LM, seed questions 15-16): per-example [B, L, L] masks
  for the content stream, and a query stream appended after the content rows: it starts from a
  learned vector plus the target's position (no content of its own), runs through the very same
  attention and feed-forward blocks, and is never attended to. One attention call serves both.

This file imports torch, transformers (and safetensors, which transformers requires) and its two sibling
modules, relatively, so ``save_pretrained`` can ship the three with the weights for
``trust_remote_code=True`` loading. The one import of the rest of bert18, ``bert18.convert`` for
released checkpoints of other model types, is made when such a checkpoint is loaded and only where
bert18 is installed.
"""

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import Chunk, WeightConverter
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput, logging
from transformers.utils.generic import can_return_tuple

from .attention_bert18 import (
    QUERY_BLOCK,
    UnpaddedBatch,
    alibi_bias,
    alibi_slopes,
    is_packed,
    sequence_positions,
    sequence_positions_dense,
    unpad,
    varlen_attention,
)
from .configuration_bert18 import PRETRAINING_TASKS, SEQUENCE_TASKS, Bert18Config

logger = logging.get_logger(__name__)


# bert18 checkpoints written before Q, K and V became three modules hold one fused `qkv` projection
# ([3H, H], rows Q then K then V): transformers splits it on load, exactly, through its weight-conversion
# registry. Registered for model_type "bert18" (also by the copy of this file that ships with checkpoints).
FUSED_QKV_CONVERSION = [
    WeightConverter(
        source_patterns=".qkv.", target_patterns=[".query.", ".key.", ".value."], operations=[Chunk(dim=0)]
    ),
]


register_checkpoint_conversion_mapping(Bert18Config.model_type, FUSED_QKV_CONVERSION, overwrite=True)


# Model types whose original checkpoints Bert18 classes load directly (converted on the fly).
CONVERTIBLE_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "albert", "ernie", "modernbert")


# Attention implementations that take an arbitrary per-example mask (flash attention takes padding only).
PER_EXAMPLE_MASK_ATTENTION = ("eager", "sdpa", "flex_attention")


_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


class Bert18RMSNorm(nn.Module):
    """RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight (+ bias), computed in float32."""

    def __init__(self, dim: int, eps: float, bias: bool = False):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        x = x.to(hidden_states.dtype) * self.weight
        return x if self.bias is None else x + self.bias


def make_norm(config: Bert18Config, dim: int | None = None) -> nn.Module:
    """The norm ``config`` asks for (``norm_type``, ``norm_bias``, ``layer_norm_eps``), over ``dim`` (default H)."""
    dim = config.hidden_size if dim is None else dim
    if config.norm_type == "rms_norm":
        return Bert18RMSNorm(dim, eps=config.layer_norm_eps, bias=config.norm_bias)
    return nn.LayerNorm(dim, eps=config.layer_norm_eps, bias=config.norm_bias)


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE's cos and sin for ``positions`` (any shape), [..., head_dim], in ``dtype``.

    Frequencies theta^(-2i/d) for the d/2 pairs, laid out as two halves (GPT-NeoX / transformers'
    ``rotate_half`` convention, which ModernBERT checkpoints use)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
    freqs = positions[..., None].float() * inv_freq.to(positions.device)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(
    query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``query`` and ``key`` ([batch, heads, length, dim] with cos/sin [batch, length, dim], or
    [tokens, heads, dim] with cos/sin [tokens, dim]) by their positions, in float32."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    q, k = query.float(), key.float()
    return ((q * cos + _rotate_half(q) * sin).to(query.dtype), (k * cos + _rotate_half(k) * sin).to(key.dtype))


def sinusoidal_positions(num_positions: int, dim: int) -> torch.Tensor:
    """The Transformer's fixed code: PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(same)."""
    position = torch.arange(num_positions, dtype=torch.float32)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(num_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : dim // 2]
    return table


class Bert18Embeddings(nn.Module):
    """Token + segment + position embeddings, summed, LayerNorm, dropout, then E -> H if factorized."""

    def __init__(self, config: Bert18Config):
        super().__init__()
        dim = config.effective_embedding_size
        self.word_embeddings = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        # type_vocab_size=0: no segment embeddings (ModernBERT); token_type_ids are then ignored.
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, dim) if config.type_vocab_size else None
        # ERNIE 2.0's task ids (transformers' ErnieModel use_task_id): one more embedding in the sum
        self.task_type_embeddings = nn.Embedding(config.task_type_vocab_size, dim) if config.use_task_id else None
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, dim)
        elif config.position_embedding_type == "sinusoidal":  # fixed: not a parameter, rebuilt from the config
            self.register_buffer(
                "sinusoidal_table", sinusoidal_positions(config.max_position_embeddings, dim), persistent=False
            )
        # rotary: no position vector here; the attention layers rotate queries and keys by position_ids.
        self.layer_norm = make_norm(config, dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.projection = nn.Linear(dim, config.hidden_size) if config.embedding_size is not None else None
        self.pad_token_id = config.pad_token_id
        self.pad_aware_positions = config.pad_aware_positions
        self.max_positions = config.max_position_embeddings

    def position_ids_for(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        shape: torch.Size,
        device: torch.device,
    ) -> torch.Tensor:
        if self.pad_aware_positions and (input_ids is not None or attention_mask is not None):
            # RoBERTa: real tokens are numbered 0, 1, 2, ... whatever padding precedes them (from
            # the ids, or from the attention mask when only embeddings are given).
            is_token = input_ids.ne(self.pad_token_id) if input_ids is not None else attention_mask.bool()
            return (torch.cumsum(is_token, dim=1) - 1).clamp(min=0) * is_token
        return torch.arange(shape[1], device=device).expand(shape)

    def check_length(self, length: int) -> None:
        if length > self.max_positions:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings ({self.max_positions}): "
                "truncate the input, or see bert18.long_text for longer documents"
            )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        task_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        shape, device = inputs_embeds.shape[:2], inputs_embeds.device
        self.check_length(shape[1])
        if token_type_ids is None:
            token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
        if position_ids is None:
            position_ids = self.position_ids_for(input_ids, attention_mask, shape, device)
        embeddings = inputs_embeds
        if self.token_type_embeddings is not None:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if hasattr(self, "position_embeddings"):
            embeddings = embeddings + self.position_embeddings(position_ids)
        elif hasattr(self, "sinusoidal_table"):
            embeddings = embeddings + F.embedding(position_ids, self.sinusoidal_table.to(inputs_embeds.dtype))
        if self.task_type_embeddings is not None:
            if task_type_ids is None:
                task_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
            embeddings = embeddings + self.task_type_embeddings(task_type_ids)
        embeddings = self.dropout(self.layer_norm(embeddings))
        return embeddings if self.projection is None else self.projection(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scaling + mask) V, in [batch, heads, length, head_dim]; returns [B, L, heads, D]."""
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = F.dropout(F.softmax(weights, dim=-1), p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


class Bert18Attention(GradientCheckpointingLayer):
    """Multi-head self-attention with its output projection, residual and norm (after the residual in
    post-norm, on the input in pre-norm). ``with_norm=False``: a pre-norm block used by the first layer
    only, whose input (the normalized embeddings) is not normalized again (ModernBERT)."""

    def __init__(self, config: Bert18Config, with_norm: bool = True):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_probs_dropout_prob
        # An encoder attends both ways. SDPA turns causal when a module says so and the batch has
        # no padding (no mask), so say it explicitly.
        self.is_causal = False
        # BERT's names, so tools that address them (peft's target_modules=["query", "value"]) find Q, K and V
        # apart; older checkpoints with one fused `qkv` projection are split on load (FUSED_QKV_CONVERSION).
        bias = config.attention_bias
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.output = nn.Linear(config.hidden_size, config.hidden_size, bias=bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.norm_position == "pre"
        self.layer_norm = make_norm(config) if with_norm else None

    def _residual(
        self, hidden_states: torch.Tensor, update: torch.Tensor, output_rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        if output_rows is not None:  # only these rows go on: the output projection and residual skip the rest
            hidden_states = hidden_states.flatten(0, -2).index_select(0, output_rows)
            update = update.flatten(0, -2).index_select(0, output_rows)
        update = self.dropout(self.output(update))
        return hidden_states + update if self.pre_norm else self.layer_norm(hidden_states + update)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_keys: int | None = None,
        unpadded: UnpaddedBatch | None = None,
        rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
        window: int | None = None,
        skip_norm: bool = False,
        alibi: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_rows: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``num_keys``: only the first ``num_keys`` rows give keys and values; the rows after them
        are queries only (the query stream of two-stream attention), so nothing ever attends to them.
        ``unpadded``: ``hidden_states`` are the [tokens, hidden] real tokens of that batch.
        ``rotary``: the (cos, sin) of every row's position (rotary positions). ``window``: a local layer,
        tokens attend within ``window`` positions either side (the padded paths' masks already say so;
        the variable-length kernels and FlashAttention take it as an argument). ``skip_norm``: pre-norm's
        first layer, whose input is already normalized. ``alibi``: unpadded ALiBi, (slopes, positions); the padded
        paths carry it in their additive masks. ``output_rows``: the indices, among the rows flattened to
        [rows, hidden], of the only rows to return (every row still gives keys and values): the final layer of
        a sparse MLM step, whose output projection, residual and feed-forward then run on the targets alone."""
        inputs = hidden_states
        if self.pre_norm and not skip_norm and self.layer_norm is not None:
            inputs = self.layer_norm(hidden_states)
        if unpadded is not None:
            tokens = inputs.shape[0]
            query, key, value = (
                proj(inputs).view(tokens, self.num_heads, self.head_dim) for proj in (self.query, self.key, self.value)
            )
            if rotary is not None:
                query, key = apply_rotary(query, key, *rotary)
            dropout = self.attention_dropout if self.training else 0.0
            context = varlen_attention(
                query, key, value, unpadded, self.scaling, dropout, window=window, alibi=alibi
            ).reshape(tokens, -1)
            return self._residual(hidden_states, context, output_rows), None
        batch, length, _ = inputs.shape
        query, key, value = (
            proj(inputs).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        if rotary is not None:
            query, key = apply_rotary(query, key, *rotary)
        if window is not None:  # FlashAttention's padded path: inclusive bounds of window either side
            kwargs["sliding_window"] = window + 1
        if num_keys is not None:
            key, value = key[:, :, :num_keys], value[:, :, :num_keys]
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        context, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        context = context.reshape(batch, length, -1)
        if self.config._attn_implementation != "eager":
            weights = None  # fused kernels build no weights (flex returns its log-sum-exp in that slot)
        return self._residual(hidden_states, context, output_rows), weights


class Bert18FeedForward(GradientCheckpointingLayer):
    """Position-wise feed-forward H -> I -> H with residual and norm (post- or pre-norm).

    ``plain``: ``act(x W1) W2``. ``geglu`` / ``swiglu``: one projection to 2I whose halves are the value and
    the gate, ``(act(x V) * x G) W2`` (ModernBERT's ``Wi`` layout: value first, gate second)."""

    def __init__(self, config: Bert18Config):
        super().__init__()
        self.gated = config.feed_forward_type != "plain"
        width = config.intermediate_size * (2 if self.gated else 1)
        self.intermediate = nn.Linear(config.hidden_size, width, bias=config.mlp_bias)
        self.activation = ACT2FN[config.hidden_act]
        self.output = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.pre_norm = config.norm_position == "pre"
        self.layer_norm = make_norm(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        inner = self.intermediate(self.layer_norm(hidden_states) if self.pre_norm else hidden_states)
        if self.gated:
            value, gate = inner.chunk(2, dim=-1)
            inner = self.activation(value) * gate
        else:
            inner = self.activation(inner)
        update = self.dropout(self.output(inner))
        return hidden_states + update if self.pre_norm else self.layer_norm(hidden_states + update)


class Bert18Encoder(nn.Module):
    """``num_hidden_layers`` attention + feed-forward steps over one or many blocks.

    ``attention`` and ``feed_forward`` hold one block per layer, or a single block when that kind
    is shared; layer i uses block ``i % len(blocks)``, so a shared block is stored (and counted)
    once and applied at every layer.
    """

    def __init__(self, config: Bert18Config):
        super().__init__()
        layers = config.num_hidden_layers
        attention_blocks = 1 if config.layer_sharing in ("all", "attention") else layers
        ffn_blocks = 1 if config.layer_sharing in ("all", "ffn") else layers
        self.num_layers = layers
        self.pre_norm = config.norm_position == "pre"
        # Pre-norm: the first layer's attention reads the normalized embeddings as they are, so a block
        # used by that layer alone holds no norm (ModernBERT); a shared block keeps its norm for the others.
        self.attention = nn.ModuleList(
            Bert18Attention(config, with_norm=not (self.pre_norm and i == 0 and attention_blocks > 1))
            for i in range(attention_blocks)
        )
        self.feed_forward = nn.ModuleList(Bert18FeedForward(config) for _ in range(ffn_blocks))
        self.final_layer_norm = make_norm(config) if self.pre_norm else None
        self.layer_types = [config.layer_type(i) for i in range(layers)]
        self.rotary = config.position_embedding_type == "rotary"
        self.alibi = config.position_embedding_type == "alibi"
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.rope_theta = {
            "full_attention": float(config.rope_theta),
            "sliding_attention": float(config.local_rope_theta or config.rope_theta),
        }
        self.half_window = config.local_attention_window // 2 if config.has_local_attention else None

    def rotary_tables(
        self, position_ids: torch.Tensor | None, dtype: torch.dtype
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(cos, sin) of ``position_ids`` per layer type, each computed once per forward."""
        if not self.rotary:
            return {}
        if position_ids is None:
            raise ValueError("rotary positions need position_ids in the encoder")
        return {
            kind: rotary_cos_sin(position_ids, self.head_dim, self.rope_theta[kind], dtype)
            for kind in sorted(set(self.layer_types))
        }

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        num_keys: int | None = None,
        unpadded: UnpaddedBatch | None = None,
        output_rows: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """``num_keys``: with two streams, the content rows; ``unpadded``: the hidden states are the
        real tokens of that batch (see ``Bert18Attention``). ``attention_mask`` may map each layer type
        (``full_attention``, ``sliding_attention``) to its mask. ``position_ids``: every row's position
        ([batch, rows], or [tokens] unpadded), read by rotary positions. ``output_rows``: return the final
        states of these rows only ([rows], indices into the rows flattened to [rows, hidden]), which the last
        layer alone computes after its attention (see ``Bert18Model.forward``'s ``states_at``)."""
        if output_rows is not None and output_hidden_states:
            raise ValueError("output_rows returns the final states of some rows: it cannot output every layer's")
        position_ids = kwargs.pop("position_ids", None)
        rotary = self.rotary_tables(position_ids, hidden_states.dtype)
        alibi = None
        if self.alibi:
            if position_ids is None:
                raise ValueError("ALiBi needs position_ids in the encoder")
            slopes = alibi_slopes(self.num_heads)
            if unpadded is not None:
                alibi = (slopes, position_ids)
            else:
                attention_mask = self._with_alibi(attention_mask, slopes, position_ids, num_keys, hidden_states)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for i in range(self.num_layers):
            kind = self.layer_types[i]
            attention = self.attention[i % len(self.attention)]
            mask = attention_mask[kind] if isinstance(attention_mask, dict) else attention_mask
            hidden_states, weights = attention(
                hidden_states,
                mask,
                num_keys=num_keys,
                unpadded=unpadded,
                rotary=rotary.get(kind),
                window=self.half_window if kind == "sliding_attention" else None,
                skip_norm=self.pre_norm and i == 0,
                alibi=alibi,
                output_rows=output_rows if i == self.num_layers - 1 else None,
                **kwargs,
            )
            hidden_states = self.feed_forward[i % len(self.feed_forward)](hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions and weights is not None:  # fused kernels (sdpa, flash) return none
                all_attentions += (weights,)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
            if output_hidden_states:  # the last entry is the model's output, as in post-norm
                all_hidden_states = (*all_hidden_states[:-1], hidden_states)
        return hidden_states, all_hidden_states, all_attentions

    def _with_alibi(
        self,
        attention_mask: Any,
        slopes: torch.Tensor,
        position_ids: torch.Tensor,
        num_keys: int | None,
        hidden_states: torch.Tensor,
    ) -> Any:
        """The padded path's masks with the ALiBi bias added: additive float masks [batch, heads, rows, keys]
        (the bias of every row against the key rows, -inf-like where the mask forbids)."""
        implementation = getattr(self.attention[0].config, "_attn_implementation", "eager")
        if implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"ALiBi positions take an additive mask: use attn_implementation 'eager' or 'sdpa' (the "
                f"unpadded path runs FlashAttention with ALiBi on its own), not {implementation!r}"
            )
        keys = position_ids if num_keys is None else position_ids[:, :num_keys]
        dtype = hidden_states.dtype
        bias = alibi_bias(slopes, position_ids, keys).to(dtype)

        def combine(mask: Any) -> torch.Tensor:
            if mask is None:
                return bias
            if mask.dtype == torch.bool:
                return bias.masked_fill(~mask, torch.finfo(dtype).min)
            return bias + mask  # eager's additive mask: 0 or the dtype's minimum

        if isinstance(attention_mask, dict):
            return {kind: combine(mask) for kind, mask in attention_mask.items()}
        return combine(attention_mask)


class Bert18Pooler(nn.Module):
    """dense + tanh over the final hidden state of [CLS] (BERT); with ``pooler_activation``, ``pooler_norm``
    and ``classifier_pooling="mean"``, ModernBERT's classifier head: dense + GELU + norm over [CLS] or
    over the mean of the real tokens."""

    def __init__(self, config: Bert18Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size, bias=config.head_bias)
        self.activation = ACT2FN[config.pooler_activation]
        self.layer_norm = make_norm(config) if config.pooler_norm else None
        self.mean = config.classifier_pooling == "mean"

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.mean:
            if attention_mask is None:
                pooled = hidden_states.mean(1)
            else:  # real tokens only (a numbered mask counts every sequence of the row)
                real = attention_mask.ne(0).unsqueeze(-1).to(hidden_states.dtype)
                pooled = (hidden_states * real).sum(1) / real.sum(1)
        else:
            pooled = hidden_states[:, 0]
        pooled = self.activation(self.dense(pooled))
        return pooled if self.layer_norm is None else self.layer_norm(pooled)


class Bert18LMHead(nn.Module):
    """MLM head: dense H -> E, activation, norm, then the decoder E -> V (tied to the embeddings)."""

    def __init__(self, config: Bert18Config):
        super().__init__()
        dim = config.effective_embedding_size
        self.dense = nn.Linear(config.hidden_size, dim, bias=config.head_bias)
        self.activation = ACT2FN[config.head_activation or config.hidden_act]
        self.layer_norm = make_norm(config, dim)
        self.decoder = nn.Linear(dim, config.vocab_size, bias=config.decoder_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))


def sparse_final_positions(
    config: Bert18Config, labels: torch.Tensor | None, output_hidden_states: bool | None
) -> torch.Tensor | None:
    """The labelled positions ([batch, length] booleans) when only their final states are needed, so the
    encoder may compute those alone (``Bert18Model.forward``'s ``states_at``): ``config.sparse_prediction``
    with labels, no hidden states asked for, and not while exporting (the positions' count is data)."""
    if labels is None or not config.sparse_prediction or torch.compiler.is_exporting():
        return None
    wants_hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
    return None if wants_hidden else labels.ne(-100)


def mlm_logits(
    lm_head: nn.Module,
    config: Bert18Config,
    sequence: torch.Tensor,
    labels: torch.Tensor | None,
    states_at: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The MLM scores and their targets: at every position, or (``config.sparse_prediction`` with
    labels) at the labelled positions only, [targets, vocab] against ``labels[labels != -100]``.
    ``states_at``: ``sequence`` holds the final states at these positions only (``sparse_final_positions``).

    The vocabulary projection is most of a small model's step and ~85% of positions carry no
    label: gathering first skips that work and the memory of [batch, length, vocab] logits."""
    if states_at is not None:
        return lm_head(sequence), labels[states_at]
    if labels is None or not config.sparse_prediction:
        return lm_head(sequence), labels
    selected = labels.ne(-100)
    return lm_head(sequence[selected]), labels[selected]


def summed_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the cross-entropy over the targets that are not -100, and their count."""
    flat = target.reshape(-1)
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), flat, reduction="sum")
    return total, flat.ne(-100).sum()


def normalise_task_losses(
    sums: dict[str, tuple[torch.Tensor, torch.Tensor]],
    num_items_in_batch: torch.Tensor | int | Mapping[str, torch.Tensor | int] | None,
) -> dict[str, torch.Tensor]:
    """Each task's loss, normalised so that gradients accumulate to the loss of the whole step.

    - No ``num_items_in_batch``: this batch's mean per task (the Trainer then divides by the
      accumulation steps).
    - A mapping ``{task: count}``: each task's summed loss over its targets in the whole
      accumulation step (and all processes), exact for every task.
    - A number (the Trainer's count of MLM targets, ``labels != -100``): MLM is summed over it,
      exact; each other task's mean is weighted by this batch's share of those targets, which is
      exact when micro-batches hold equal MLM counts and otherwise follows their share of the step.
    """
    if num_items_in_batch is None:
        return {task: total / count.clamp(min=1) for task, (total, count) in sums.items()}
    if isinstance(num_items_in_batch, Mapping):
        return {task: total / _at_least_one(num_items_in_batch[task]) for task, (total, _) in sums.items()}
    if "mlm" not in sums:
        raise ValueError("num_items_in_batch counts MLM targets, but no MLM labels were given")
    items = _at_least_one(num_items_in_batch)
    share = sums["mlm"][1] / items
    return {
        task: total / items if task == "mlm" else total / count.clamp(min=1) * share
        for task, (total, count) in sums.items()
    }


def _at_least_one(count: torch.Tensor | int) -> torch.Tensor | int:
    return count.clamp(min=1) if torch.is_tensor(count) else max(count, 1)


def _classifier_dropout(config: Bert18Config) -> nn.Dropout:
    p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
    return nn.Dropout(p)


def sequence_classification_loss(config: Bert18Config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Regression (MSE), single-label (cross-entropy) or multi-label (BCE), as ``config.problem_type``
    says, or inferred from ``num_labels`` and the label dtype the way transformers does."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


@dataclass
class Bert18ModelOutput(BaseModelOutputWithPooling):
    """``BaseModelOutputWithPooling``, plus the final query-stream states when ``query_embeds`` were given.

    Attributes:
        query_last_hidden_state: [batch, queries, hidden], the final state of each query row.
    """

    query_last_hidden_state: torch.Tensor | None = None


@dataclass
class Bert18ForPreTrainingOutput(ModelOutput):
    """Output of ``Bert18ForPreTraining``.

    Attributes:
        loss: weighted sum of the task losses (when labels are given).
        task_losses: each task's loss by task name (``mlm``, ``nsp``, ...), for logging.
        prediction_logits: MLM scores over the vocabulary, [batch, length, vocab]; with labels and
            ``config.sparse_prediction`` (off by default; the pretraining recipes turn it on), [targets,
            vocab] at the labelled positions only, in the order of ``labels != -100``.
        task_logits: scores of every other task by name: [batch, classes] for sentence tasks,
            [batch, length, classes] for token tasks, [batch, targets, vocab] for ``plm`` (one row per
            entry of ``plm_target_positions``, aligned with ``plm_labels``).
    """

    loss: torch.Tensor | None = None
    task_losses: dict[str, torch.Tensor] | None = None
    prediction_logits: torch.Tensor | None = None
    task_logits: dict[str, torch.Tensor] | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


def _hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in _HUB_KWARGS if k in kwargs}


def _checkpoint_model_type(path: Any, kwargs: dict[str, Any]) -> str | None:
    """``model_type`` in the config of ``path``, or None when there is no config to read."""
    if path is None or kwargs.get("config") is not None:
        return None
    try:
        config_dict, _ = Bert18Config.get_config_dict(path, **_hub_kwargs(kwargs))
    except (OSError, ValueError):
        return None  # let from_pretrained report the missing checkpoint in its own words
    return config_dict.get("model_type")


class Bert18PreTrainedModel(PreTrainedModel):
    """Weight initialisation, Auto-class plumbing and direct loading of BERT/RoBERTa/ALBERT checkpoints."""

    config_class = Bert18Config
    config: Bert18Config
    base_model_prefix = "bert18"
    supports_gradient_checkpointing = True
    # The FSDP wrap units (accelerate's TRANSFORMER_BASED_WRAP reads this list) and the blocks device_map never
    # splits. Not Bert18Embeddings: its word embeddings are tied to the MLM decoder, and a tied parameter must sit
    # in one FSDP group, which accelerate builds from the input and output embeddings themselves. A shared ALBERT
    # block is one module, so one unit, however many layers apply it.
    _no_split_modules = ["Bert18Attention", "Bert18FeedForward"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # Downstream heads return plain means: the Trainer divides them by the accumulation steps.
    # The MLM and pretraining heads override this to take num_items_in_batch instead.
    accepts_loss_kwargs = False
    # A model is built with only what its tasks read (no pooler without a sentence-level head, so
    # DDP never waits for a gradient that cannot come); checkpoints that have one still load, quietly.
    _keys_to_ignore_on_load_unexpected = [r"(^|\.)pooler\.(dense|layer_norm)\.(weight|bias)$"]

    def __init__(self, config: Bert18Config, *args: Any, **kwargs: Any):
        config.check()
        super().__init__(config, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Bert18RMSNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, Bert18Embeddings) and hasattr(module, "sinusoidal_table"):
            table = sinusoidal_positions(*module.sinusoidal_table.shape)
            init.copy_(module.sinusoidal_table, table)
        if isinstance(getattr(module, "plm_query", None), nn.Parameter):  # PLM's query-stream input
            init.normal_(module.plm_query, mean=0.0, std=self.config.initializer_range)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """``PreTrainedModel.from_pretrained``, also accepting an original BERT, RoBERTa or ALBERT
        checkpoint (folder or Hub id), converted on the fly by ``bert18.convert``.

        Config attributes among ``kwargs`` (``num_labels=3``, ``hidden_dropout_prob=0.2``) apply to
        the converted config, as they would to a bert18 one.
        """
        source_type = _checkpoint_model_type(pretrained_model_name_or_path, kwargs)
        if source_type in (None, Bert18Config.model_type):
            try:
                return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
            except SafetensorError as error:  # its message names neither the checkpoint nor the cause
                raise OSError(
                    f"cannot read the weights of {pretrained_model_name_or_path}: {error}. The safetensors file "
                    "is truncated or corrupt; save or download it again"
                ) from error
        if source_type not in CONVERTIBLE_MODEL_TYPES:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds a {source_type!r} checkpoint; {cls.__name__} loads bert18 "
                f"checkpoints and converts {', '.join(CONVERTIBLE_MODEL_TYPES)}"
            )
        try:
            from bert18.convert import load_transformers_checkpoint
        except ImportError as error:  # remote-code copy of this file, bert18 not installed
            raise ImportError(
                f"{pretrained_model_name_or_path} is a {source_type} checkpoint; converting it needs the "
                "bert18 package (pip install bert18)"
            ) from error
        config, state_dict = load_transformers_checkpoint(pretrained_model_name_or_path, **_hub_kwargs(kwargs))
        for name in [k for k in kwargs if hasattr(config, k) and k not in ("dtype", "torch_dtype")]:
            setattr(config, name, kwargs.pop(name))
        loaded = super().from_pretrained(None, *args, config=config, state_dict=state_dict, **kwargs)
        # Where the weights came from, not the string "None" (peft records it as the adapter's base model).
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model.name_or_path = model.config._name_or_path = str(pretrained_model_name_or_path)
        return loaded

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> None:
        # Name every bert18 head in auto_map, not only this one, so that a checkpoint of any head
        # loads into any other through the Auto classes with trust_remote_code=True.
        if self._auto_class is not None:
            self.config.auto_map = {
                "AutoConfig": "configuration_bert18.Bert18Config",
                **{auto: f"modeling_bert18.{name}" for auto, name in AUTO_CLASSES.items()},
            }
        # Write the modules' own names (query / key / value), not the fused `qkv` of older checkpoints that
        # transformers would restore by reverting FUSED_QKV_CONVERSION: the Trainer resumes from a
        # checkpoint with a plain load_state_dict, and peft and other tools read these names.
        kwargs.setdefault("save_original_format", False)
        super().save_pretrained(save_directory, *args, **kwargs)

    def _output_flags(self, output_attentions: bool | None, output_hidden_states: bool | None) -> tuple[bool, bool]:
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        implementation = self.config._attn_implementation
        if output_attentions and implementation != "eager":
            # As transformers' own models (BertModel under SDPA): warn and return no weights, `attentions`
            # an empty tuple; fused kernels never build the weights. Code written for BERT runs unchanged.
            logger.warning_once(
                f"`{implementation}` attention does not support `output_attentions=True`. Please set your attention "
                "to `eager` if you want any of these features."
            )
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return bool(output_attentions), bool(hidden)


class Bert18Model(Bert18PreTrainedModel):
    """The bare encoder: embeddings, encoder, and (optionally) the [CLS] pooler."""

    def __init__(self, config: Bert18Config, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = Bert18Embeddings(config)
        self.encoder = Bert18Encoder(config)
        self.pooler = Bert18Pooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        content_mask: torch.Tensor | None = None,
        query_embeds: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        task_type_ids: torch.Tensor | None = None,
        query_position_ids: torch.Tensor | None = None,
        states_at: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Bert18ModelOutput:
        """Encode a batch. ``attention_mask`` is 1 for tokens and 0 for padding ([batch, length]).

        Two-stream attention (permutation LM; ``Bert18ForPreTraining`` builds these for ``plm``):

        - ``content_mask``: [batch, length, length] booleans, ``[b, i, j]`` True where token i may
          attend to token j, applied on top of ``attention_mask``;
        - ``query_embeds``: [batch, queries, hidden] extra rows that run through the same layers,
          attend to the tokens under ``query_mask`` ([batch, queries, length]) and are attended to
          by nothing. Their final states are ``query_last_hidden_state``;
        - ``query_position_ids``: [batch, queries] the position of each query row (rotary positions
          rotate the query rows by it; learned and sinusoidal ones are in ``query_embeds`` already).

        ``hidden_states`` hold the token rows only; eager ``attentions`` have the query rows after them.

        ``task_type_ids`` ([batch, length], with ``config.use_task_id``): ERNIE 2.0's task ids, 0 when
        not given.

        Packed rows: ``attention_mask`` may number the sequences of a row (0 padding, then 1, 2, ...
        for consecutive sequences); each attends only to itself and counts its positions from 0.
        With ``sdpa`` or ``flash_attention_2`` attention and ``config.unpad_inputs``, a batch with
        padding or packing runs the encoder on its real tokens only (see ``attention_bert18``).

        ``states_at`` ([batch, length] booleans): ``last_hidden_state`` is then the final state at these
        positions only, [positions, hidden] in the order of ``states_at.nonzero()`` (``sequence[states_at]``),
        and there is no pooled output. Every token still gives keys and values at every layer, but the last
        layer runs its output projection, residual and feed-forward on those positions alone: the MLM heads'
        sparse prediction needs no other final state (with 30% masking that skips about half of the last
        layer's work). Not with two streams or ``output_hidden_states``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        output_attentions, output_hidden_states = self._output_flags(output_attentions, output_hidden_states)
        uses_two_streams = content_mask is not None or query_embeds is not None  # PLM's content + query streams
        exporting = torch.compiler.is_exporting()
        if states_at is not None and (uses_two_streams or output_hidden_states or exporting):
            raise ValueError(
                "states_at (final states at some positions only) works without two-stream attention, "
                "output_hidden_states and export"
            )
        if exporting:  # torch.export, ONNX (dynamo): no Python branch may read the mask's values
            packed = self._packed_flag(attention_mask)
            if packed is not False and position_ids is None:
                reference = input_ids if input_ids is not None else inputs_embeds
                plain = self.embeddings.position_ids_for(
                    input_ids, attention_mask, reference.shape[:2], reference.device
                )
                position_ids = torch.where(packed, sequence_positions_dense(attention_mask), plain)
        else:
            packed = is_packed(attention_mask)  # read once: every path below depends on it
            if packed and uses_two_streams:
                raise ValueError(
                    "two-stream attention (PLM) orders one sequence per row; this attention_mask packs "
                    "several (values above 1)"
                )
            if packed and position_ids is None:  # several sequences per row: each counts from 0
                position_ids = sequence_positions(attention_mask)
            reference = input_ids if input_ids is not None else inputs_embeds
            if not uses_two_streams and self._unpads(attention_mask, packed, reference.shape[1]):  # never with eager
                if attention_mask is None:
                    attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
                return self._unpadded_forward(
                    input_ids,
                    attention_mask,
                    token_type_ids,
                    position_ids,
                    inputs_embeds,
                    output_hidden_states,
                    output_attentions,
                    task_type_ids,
                    states_at,
                    **kwargs,
                )
        embeddings = self.embeddings(
            input_ids, token_type_ids, position_ids, inputs_embeds, attention_mask, task_type_ids=task_type_ids
        )
        num_keys, rotary_positions = None, None
        if self.config.position_embedding_type in ("rotary", "alibi"):
            if position_ids is None:
                position_ids = self.embeddings.position_ids_for(
                    input_ids, attention_mask, embeddings.shape[:2], embeddings.device
                )
            rotary_positions = position_ids.expand(embeddings.shape[:2])
        if not uses_two_streams:
            hidden, mask = embeddings, self._padded_mask(embeddings, attention_mask, packed)
            if self.config.has_local_attention:
                local = self._padded_mask(embeddings, attention_mask, packed, window=self.encoder.half_window)
                mask = {"full_attention": mask, "sliding_attention": local}
        else:
            if self.config.has_local_attention:
                raise ValueError(
                    "two-stream attention (PLM) with local attention layers is not supported: the "
                    "query rows have no place in a window; use layer_types=None for PLM"
                )
            hidden, mask = self._two_stream_inputs(embeddings, attention_mask, content_mask, query_embeds, query_mask)
            num_keys = embeddings.shape[1]
            if rotary_positions is not None and query_embeds is not None:
                if query_position_ids is None:
                    raise ValueError(
                        "rotary and ALiBi positions with query_embeds need query_position_ids [batch, queries]"
                    )
                rotary_positions = torch.cat([rotary_positions, query_position_ids.to(rotary_positions)], dim=1)
        sequence, hidden_states, attentions = self.encoder(
            hidden,
            mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            num_keys=num_keys,
            position_ids=rotary_positions,
            output_rows=states_at.reshape(-1).nonzero().squeeze(1) if states_at is not None else None,
            **kwargs,
        )
        query = None
        if num_keys is not None:  # split the query rows off the token rows
            sequence, query = sequence[:, :num_keys], (sequence[:, num_keys:] if query_embeds is not None else None)
            hidden_states = tuple(h[:, :num_keys] for h in hidden_states) if hidden_states is not None else None
        if exporting and attention_mask is not None and not uses_two_streams and self._unpads_when_padded():
            # The exported graph runs padded; eager runs this batch unpadded, which leaves zeros at padding.
            # Zero them here too, so the exported program equals the eager model everywhere.
            real = attention_mask.ne(0).unsqueeze(-1).to(sequence.dtype)
            sequence = sequence * real
            hidden_states = tuple(h * real for h in hidden_states) if hidden_states is not None else None
        pooled = self.pooler(sequence, attention_mask) if self.pooler is not None and states_at is None else None
        return Bert18ModelOutput(
            last_hidden_state=sequence,
            pooler_output=pooled,
            hidden_states=hidden_states,
            attentions=attentions,
            query_last_hidden_state=query,
        )

    @torch.compiler.disable
    def _unpads(self, attention_mask: torch.Tensor | None, packed: bool, length: int = 0) -> bool:
        """Whether this batch runs unpadded: it has padding or packed sequences, and the attention
        takes variable lengths (eager stays the padded reference; flash attention needs it for packing).
        Long sequences of a model with local layers run there too, padding or not: its kernels keep the
        local layers' memory linear in the length (a padded SDPA mask would be [length, length])."""
        implementation = self.config._attn_implementation
        if implementation not in ("sdpa", "flash_attention_2"):
            return False
        if self.config.has_local_attention and self.config.unpad_inputs and length > QUERY_BLOCK:
            return True
        if attention_mask is None:
            return False
        if packed and implementation == "flash_attention_2":
            return True  # its padded path knows padding only, not sequences within a row
        return self.config.unpad_inputs and (packed or not bool(attention_mask.bool().all()))

    def _unpads_when_padded(self) -> bool:
        """Whether eager runs a batch with padding unpadded (``_unpads`` without reading the mask)."""
        return self.config._attn_implementation in ("sdpa", "flash_attention_2") and self.config.unpad_inputs

    @staticmethod
    def _packed_flag(attention_mask: torch.Tensor | None) -> torch.Tensor | bool:
        """``is_packed`` for a traced forward: a 0-d boolean tensor (no Python branch on its value), or
        ``False`` when the mask cannot number sequences (none, or booleans)."""
        if attention_mask is None or attention_mask.dtype == torch.bool:
            return False
        return attention_mask.max() > 1

    def _padded_mask(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None,
        packed: bool | torch.Tensor,
        window: int | None = None,
    ) -> Any:
        """The attention implementation's mask for a padded batch; packed rows keep sequences apart.

        ``packed`` is a bool, or (in an exported graph) a 0-d tensor: token i may then attend to token j
        iff j is real and, when the mask is packed, both carry the same sequence number, which is the
        padding mask for a binary mask and the packed one for a numbered mask, from the same ops.
        ``window``: a local layer's mask, also |i - j| <= window (the tokens of a sequence are contiguous,
        so index distance is position distance, packed or left-padded). A padding row keeps every real
        key, as without a window: never an empty row (NaN under SDPA)."""
        if window is not None and attention_mask is None:  # no padding, but the band still masks
            attention_mask = torch.ones(embeddings.shape[:2], dtype=torch.bool, device=embeddings.device)
        padding = attention_mask.eq(0) if window is not None else None

        def in_window(b, h, q, kv):
            return ((q - kv).abs() <= window) | padding[b, q]

        if packed is False:
            return create_bidirectional_mask(
                config=self.config,
                inputs_embeds=embeddings,
                attention_mask=attention_mask,
                and_mask_function=in_window if window is not None else None,
            )
        sequence = attention_mask
        if packed is True:

            def same_sequence(b, h, q, kv):
                return sequence[b, q] == sequence[b, kv]
        else:

            def same_sequence(b, h, q, kv):
                return (sequence[b, q] == sequence[b, kv]) | ~packed

        if window is not None:

            def allowed(b, h, q, kv):
                return same_sequence(b, h, q, kv) & in_window(b, h, q, kv)
        else:
            allowed = same_sequence
        return create_bidirectional_mask(
            config=self.config,
            inputs_embeds=embeddings,
            attention_mask=sequence.ne(0),
            and_mask_function=allowed,
        )

    def _unpadded_forward(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        output_hidden_states: bool,
        output_attentions: bool = False,
        task_type_ids: torch.Tensor | None = None,
        states_at: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Bert18ModelOutput:
        """Embed and encode the real tokens only, as a [tokens, hidden] matrix; pad the results back.
        Variable-length kernels build no attention weights: ``attentions`` is then empty, as under SDPA.
        ``states_at``: see ``forward``."""
        reference = input_ids if input_ids is not None else inputs_embeds
        shape, device = reference.shape[:2], reference.device
        self.embeddings.check_length(shape[1])
        batch = unpad(attention_mask)
        if position_ids is None:
            position_ids = self.embeddings.position_ids_for(input_ids, attention_mask, shape, device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
        # Each real token as a row of length 1: the embedding layers see [tokens, 1].
        embeddings = self.embeddings(
            input_ids=batch.gather(input_ids)[:, None] if input_ids is not None else None,
            token_type_ids=batch.gather(token_type_ids.expand(shape))[:, None],
            position_ids=batch.gather(position_ids.expand(shape))[:, None],
            inputs_embeds=batch.gather(inputs_embeds)[:, None] if inputs_embeds is not None else None,
            task_type_ids=batch.gather(task_type_ids.expand(shape))[:, None] if task_type_ids is not None else None,
        ).squeeze(1)
        in_attention = self.config.position_embedding_type in ("rotary", "alibi")  # positions read by attention
        positions = batch.gather(position_ids.expand(shape)) if in_attention else None
        rows = None
        if states_at is not None:
            rows = batch.gather(states_at).nonzero().squeeze(1)
            if rows.numel() != int(states_at.sum()):  # some at padding: every final state, picked after the scatter
                rows = None
        sequence, hidden_states, _ = self.encoder(
            embeddings,
            None,
            output_hidden_states=output_hidden_states,
            unpadded=batch,
            position_ids=positions,
            output_rows=rows,
            **kwargs,
        )
        if rows is None:
            sequence = batch.scatter(sequence)
            if states_at is not None:
                sequence = sequence[states_at]
        pooled = self.pooler(sequence, attention_mask) if self.pooler is not None and states_at is None else None
        return Bert18ModelOutput(
            last_hidden_state=sequence,
            pooler_output=pooled,
            hidden_states=tuple(batch.scatter(h) for h in hidden_states) if hidden_states is not None else None,
            attentions=() if output_attentions else None,
        )

    def _two_stream_inputs(
        self,
        embeddings: torch.Tensor,
        attention_mask: torch.Tensor | None,
        content_mask: torch.Tensor | None,
        query_embeds: torch.Tensor | None,
        query_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Any]:
        """The token rows with the query rows appended, and the mask of all rows over the token rows
        in the form the attention implementation takes (additive for eager, boolean for SDPA)."""
        implementation = self.config._attn_implementation
        if implementation not in PER_EXAMPLE_MASK_ATTENTION:
            raise ValueError(
                f"per-example attention masks (content_mask, query_mask) need one of "
                f"{PER_EXAMPLE_MASK_ATTENTION} attention, not {implementation!r}: load the model with "
                "attn_implementation='sdpa'"
            )
        batch, length = embeddings.shape[:2]
        if content_mask is None:
            content_mask = torch.ones(batch, length, length, dtype=torch.bool, device=embeddings.device)
        if content_mask.shape != (batch, length, length):
            raise ValueError(
                f"content_mask must be [batch, length, length] = {[batch, length, length]}, "
                f"got {list(content_mask.shape)}"
            )
        rows, hidden = [content_mask.bool()], embeddings
        if query_embeds is not None:
            queries = query_embeds.shape[1]
            if query_mask is None or query_mask.shape != (batch, queries, length):
                got = None if query_mask is None else list(query_mask.shape)
                raise ValueError(
                    f"query_embeds need a query_mask of [batch, queries, length] = "
                    f"{[batch, queries, length]}, got {got}"
                )
            rows.append(query_mask.bool())
            hidden = torch.cat([embeddings, query_embeds.to(embeddings.dtype)], dim=1)
        allowed = torch.cat(rows, dim=1)
        # transformers builds the implementation's mask (and the padding) from this index function.
        mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden,
            attention_mask=attention_mask,
            encoder_hidden_states=embeddings,
            and_mask_function=lambda b, h, q, kv: allowed[b, q, kv],
        )
        return hidden, mask


class Bert18ForPreTraining(Bert18PreTrainedModel):
    """The encoder with one head per task of ``config.pretraining_tasks``; losses summed with weights.

    ``mlm`` uses the tied MLM head; ``nsp``, ``sop``, ``sentence_distance`` and ``sentence_reordering``
    classify the pooled [CLS] state; ``capitalization`` and ``token_document_relation`` classify every
    token. A task's loss is computed when its labels are passed (``PRETRAINING_TASKS`` names the
    argument), -100 marking positions or examples to ignore.

    ``plm`` (XLNet's permutation LM) runs two streams when the ``PermutationLMCollator`` inputs are
    given: the content stream is the encoder under ``plm_content_mask`` (what every other head then
    reads, as in XLNet's pretraining), and one query row per target starts from the learned
    ``plm_query`` vector plus the target's position and segment embeddings (never its token), attends
    under its row of ``plm_query_mask``, shares every layer with the content stream, and is scored
    by the same tied LM head as MLM. Without those inputs the encoder runs as usual.
    """

    _tied_weights_keys = {"lm_head.decoder.weight": "bert18.embeddings.word_embeddings.weight"}
    accepts_loss_kwargs = True

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        tasks = config.pretraining_tasks
        # The pooler only when a sentence-level task reads it (not for RoBERTa's MLM, nor PLM): a
        # parameter without a gradient stops DDP with find_unused_parameters=False.
        self.bert18 = Bert18Model(config, add_pooling_layer=any(t in SEQUENCE_TASKS for t in tasks))
        # Tasks of 0 classes (mlm, plm) score the vocabulary through the tied LM head.
        self.lm_head = Bert18LMHead(config) if any(PRETRAINING_TASKS[t].predicts_vocabulary for t in tasks) else None
        if self.lm_head is None:  # nothing to tie without an LM head
            self._tied_weights_keys = {}
        self.heads = nn.ModuleDict(
            {
                task: nn.Linear(config.hidden_size, PRETRAINING_TASKS[task].classes(config))
                for task in tasks
                if not PRETRAINING_TASKS[task].predicts_vocabulary
            }
        )
        # The query stream's own input: what a target knows besides its position (XLNet's w).
        self.plm_query = nn.Parameter(torch.empty(config.effective_embedding_size)) if "plm" in tasks else None
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear | None:
        return self.lm_head.decoder if self.lm_head is not None else None

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        next_sentence_label: torch.Tensor | None = None,
        sentence_order_label: torch.Tensor | None = None,
        sentence_distance_label: torch.Tensor | None = None,
        capitalization_labels: torch.Tensor | None = None,
        token_document_labels: torch.Tensor | None = None,
        plm_labels: torch.Tensor | None = None,
        plm_content_mask: torch.Tensor | None = None,
        plm_query_mask: torch.Tensor | None = None,
        plm_target_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        num_items_in_batch: torch.Tensor | int | Mapping[str, torch.Tensor | int] | None = None,
        task_type_ids: torch.Tensor | None = None,
        sentence_reordering_label: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Bert18ForPreTrainingOutput:
        """``labels`` are the MLM targets ([batch, length], -100 where not masked); the other label
        arguments belong to the task of the same name in ``PRETRAINING_TASKS``. ``num_items_in_batch``
        (passed by the Trainer) normalises the loss over all micro-batches of a gradient-accumulation
        step: see ``normalise_task_losses``. ``task_losses`` are always this batch's plain means.

        PLM (from ``PermutationLMCollator``): ``plm_content_mask`` / ``plm_query_mask`` [batch, length,
        length] booleans, ``plm_target_positions`` [batch, targets] (-1 for none) and ``plm_labels``
        [batch, targets] (-100 for none). With eager attention, ``attentions`` hold the content rows,
        then one row per target."""
        arguments = locals()  # the explicit label arguments, read by the names the registry gives them
        given = {task.label: arguments[task.label] for task in PRETRAINING_TASKS.values()}
        tasks = self.config.pretraining_tasks
        for task in PRETRAINING_TASKS.values():
            if given[task.label] is not None and task.name not in tasks:
                raise ValueError(
                    f"{task.label} given, but task {task.name!r} is not in config.pretraining_tasks {tasks}"
                )
        two_stream_arguments = self._plm_streams(
            input_ids,
            inputs_embeds,
            attention_mask,
            token_type_ids,
            position_ids,
            plm_labels,
            plm_content_mask,
            plm_query_mask,
            plm_target_positions,
            task_type_ids,
        )
        # MLM alone reads no final state but the targets': the last layer computes those only.
        states_at = sparse_final_positions(self.config, labels, output_hidden_states) if tasks == ["mlm"] else None
        outputs = self.bert18(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=task_type_ids,
            states_at=states_at,
            **two_stream_arguments,
            **kwargs,
        )
        sequence, pooled = outputs.last_hidden_state, outputs.pooler_output
        if any(given[PRETRAINING_TASKS[t].label] is not None for t in SEQUENCE_TASKS) and is_packed(attention_mask):
            raise ValueError(
                "sentence-level labels with packed rows: a packed row holds several sequences but one "
                f"pooled [CLS]; prepare one example per row for {', '.join(SEQUENCE_TASKS)}"
            )
        prediction_logits = None
        if "mlm" in tasks:
            prediction_logits, given["labels"] = mlm_logits(self.lm_head, self.config, sequence, labels, states_at)
        task_logits = {
            task: head(pooled if PRETRAINING_TASKS[task].level == "sequence" else sequence)
            for task, head in self.heads.items()
        }
        if outputs.query_last_hidden_state is not None:
            task_logits["plm"] = self.lm_head(outputs.query_last_hidden_state)
        all_logits = {"mlm": prediction_logits, **task_logits}
        targets = {task: given[PRETRAINING_TASKS[task].label] for task in tasks}
        sums = {
            task: summed_cross_entropy(all_logits[task], target)
            for task, target in targets.items()
            if target is not None
        }
        task_losses = {task: total / count.clamp(min=1) for task, (total, count) in sums.items()}
        loss = None
        if sums:
            normalised = normalise_task_losses(sums, num_items_in_batch)
            loss = sum(self.config.task_loss_weight(task) * value for task, value in normalised.items())
        return Bert18ForPreTrainingOutput(
            loss=loss,
            task_losses=task_losses or None,
            prediction_logits=prediction_logits,
            task_logits=task_logits or None,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    def _plm_streams(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        labels: torch.Tensor | None,
        content_mask: torch.Tensor | None,
        query_mask: torch.Tensor | None,
        targets: torch.Tensor | None,
        task_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``Bert18Model``'s two-stream arguments for the PLM inputs (empty without them): the content
        mask, one query row per target (learned vector + the target's position and segment
        embeddings) and each query's row of the query mask."""
        inputs = {"plm_content_mask": content_mask, "plm_query_mask": query_mask, "plm_target_positions": targets}
        missing = [name for name, value in inputs.items() if value is None]
        if len(missing) == len(inputs):
            if labels is not None:
                raise ValueError(
                    "plm_labels need plm_content_mask, plm_query_mask and plm_target_positions: "
                    "collate with bert18.collators.PermutationLMCollator"
                )
            return {}
        if missing:
            raise ValueError(f"the PLM inputs come together; missing {missing} (PermutationLMCollator makes all)")
        if self.plm_query is None:
            tasks = self.config.pretraining_tasks
            raise ValueError(f"PLM inputs given, but 'plm' is not in config.pretraining_tasks {tasks}")
        if labels is not None and labels.shape != targets.shape:
            raise ValueError(f"plm_labels {list(labels.shape)} must match plm_target_positions {list(targets.shape)}")
        reference = input_ids if input_ids is not None else inputs_embeds
        shape, device = reference.shape[:2], reference.device
        embeddings = self.bert18.embeddings
        if position_ids is None:  # the positions the content stream gets (pad-aware ones included)
            position_ids = embeddings.position_ids_for(input_ids, attention_mask, shape, device)
        if token_type_ids is None:
            token_type_ids = torch.zeros(shape, dtype=torch.long, device=device)
        index = targets.clamp(min=0)
        queries = embeddings(
            token_type_ids=token_type_ids.expand(shape).gather(1, index),
            position_ids=position_ids.expand(shape).gather(1, index),
            inputs_embeds=self.plm_query.expand(*targets.shape, -1),
            task_type_ids=task_type_ids.expand(shape).gather(1, index) if task_type_ids is not None else None,
        )
        rows = query_mask.bool().gather(1, index[..., None].expand(-1, -1, shape[1]))
        # A padding slot (-1) sees every token: never an empty row (SDPA would give NaN), never used.
        rows = rows | targets.lt(0)[..., None]
        return {
            "content_mask": content_mask,
            "query_embeds": queries,
            "query_mask": rows,
            "query_position_ids": position_ids.expand(shape).gather(1, index),
        }


# Every registered task's labels are an explicit argument of the forward: the Trainer drops the batch
# columns its signature lacks, and ``given`` reads them by the registry's names.
_LABELS_NOT_IN_FORWARD = sorted(
    {task.label for task in PRETRAINING_TASKS.values()}
    - set(inspect.signature(Bert18ForPreTraining.forward).parameters)
)


if _LABELS_NOT_IN_FORWARD:
    raise TypeError(
        f"Bert18ForPreTraining.forward lacks the label argument(s) {_LABELS_NOT_IN_FORWARD} of "
        "registered pretraining tasks: add each as a keyword argument defaulting to None"
    )


class Bert18ForMaskedLM(Bert18PreTrainedModel):
    """The encoder (no pooler) with the tied MLM head; ``pipeline("fill-mask")`` uses it."""

    _tied_weights_keys = {"lm_head.decoder.weight": "bert18.embeddings.word_embeddings.weight"}
    accepts_loss_kwargs = True

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.bert18 = Bert18Model(config, add_pooling_layer=False)
        self.lm_head = Bert18LMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        num_items_in_batch: torch.Tensor | int | None = None,
        task_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MaskedLMOutput:
        """``labels``: target ids at masked positions, -100 elsewhere. ``num_items_in_batch`` (from the
        Trainer): the masked tokens of the whole accumulation step, to divide the summed loss by."""
        states_at = sparse_final_positions(self.config, labels, output_hidden_states)
        outputs = self.bert18(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=task_type_ids,
            states_at=states_at,
            **kwargs,
        )
        logits, targets = mlm_logits(self.lm_head, self.config, outputs.last_hidden_state, labels, states_at)
        loss = None
        if labels is not None:
            loss = normalise_task_losses({"mlm": summed_cross_entropy(logits, targets)}, num_items_in_batch)["mlm"]
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Bert18ForSequenceClassification(Bert18PreTrainedModel):
    """Pooled [CLS] -> dropout -> linear; classification or regression over whole sequences."""

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert18 = Bert18Model(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        task_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """``labels``: class ids [batch], floats [batch] for regression, or multi-hot [batch, labels]."""
        outputs = self.bert18(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=task_type_ids,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Bert18ForTokenClassification(Bert18PreTrainedModel):
    """Every token's final state -> dropout -> linear (tagging: NER, BIO chunks)."""

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert18 = Bert18Model(config, add_pooling_layer=False)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        task_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> TokenClassifierOutput:
        """``labels``: a tag id per token [batch, length], -100 on tokens to ignore."""
        outputs = self.bert18(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=task_type_ids,
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Bert18ForQuestionAnswering(Bert18PreTrainedModel):
    """Extractive QA: a start and an end score per token (SQuAD)."""

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.bert18 = Bert18Model(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        task_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> QuestionAnsweringModelOutput:
        """``start_positions``/``end_positions``: token index of the answer span [batch]; indices
        outside the sequence (answers cut off by truncation) are ignored in the loss. Logits at
        padding (``attention_mask`` 0) are the dtype's minimum, so the softmax of the loss and any
        argmax run over real tokens only."""
        outputs = self.bert18(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=task_type_ids,
            **kwargs,
        )
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(-1)
        if attention_mask is not None and attention_mask.dim() == 2:
            # Padding never wins an argmax nor takes probability: the dtype's minimum, as transformers
            # masks attention scores (finite, unlike -inf: a softmax or a difference never gives NaN).
            padding = attention_mask.eq(0)
            start_logits = start_logits.masked_fill(padding, torch.finfo(start_logits.dtype).min)
            end_logits = end_logits.masked_fill(padding, torch.finfo(end_logits.dtype).min)
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.size(1)
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (
                F.cross_entropy(start_logits, start, ignore_index=ignored)
                + F.cross_entropy(end_logits, end, ignore_index=ignored)
            ) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits.contiguous(),
            end_logits=end_logits.contiguous(),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class Bert18ForMultipleChoice(Bert18PreTrainedModel):
    """Inputs [batch, choices, length]; each choice's pooled [CLS] scored by one linear unit."""

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.bert18 = Bert18Model(config)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        task_type_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> MultipleChoiceModelOutput:
        """``labels``: index of the right choice [batch]."""
        reference = input_ids if input_ids is not None else inputs_embeds
        num_choices = reference.shape[1]

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(-1, *t.shape[2:])

        outputs = self.bert18(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            task_type_ids=flat(task_type_ids),
            **kwargs,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class Bert18ForLongSequenceClassification(Bert18PreTrainedModel):
    """Classification of documents longer than ``max_position_embeddings`` (seed question 9c).

    A document arrives as overlapping chunks, each ``[CLS] ... [SEP]`` (``bert18.long_text``
    makes them). The encoder reads every chunk; each chunk's pooled [CLS] state is its vector; the
    vectors of one document are combined by ``config.long_pooling`` and classified, and the whole
    is trained end to end:

    - ``concat``: the vectors side by side in ``config.max_chunks`` slots (missing chunks are zeros),
      so the classifier sees where in the document each chunk sits;
    - ``mean`` / ``max``: element-wise over the document's chunks;
    - ``attention``: a weighted sum, the weights a softmax over a learned score of each chunk
      (w . tanh(W h), Yang et al. 2016's attention pooling);
    - ``lstm``: a bidirectional LSTM (H/2 per direction) reads the chunk vectors in order; its two
      final states, concatenated, are the document.

    Inputs: ``input_ids`` / ``attention_mask`` [total chunks, chunk length] and either
    ``num_chunks`` [documents] (chunks of a document are consecutive, documents in order) or
    ``chunk_document_ids`` [total chunks] (the document of each chunk, 0..D-1, in any order; a
    document's chunks keep their relative order). A document with more than ``config.max_chunks``
    chunks is an error. ``config.chunk_batch_size`` encodes chunks in passes of that many; in
    training each pass is recomputed in the backward pass, so activation memory stays that of one
    pass whatever the documents' lengths.

    Not registered with an Auto class: ``AutoModelForSequenceClassification`` maps bert18 to
    ``Bert18ForSequenceClassification``. Load it with
    ``Bert18ForLongSequenceClassification.from_pretrained``; its checkpoints name it for
    ``AutoModelForSequenceClassification`` in ``auto_map``, so ``trust_remote_code=True`` loads it
    where bert18 is not installed. Its encoder loads from any bert18, BERT, RoBERTa or ALBERT
    checkpoint, and with ``mean``, ``max`` or ``attention`` pooling the classifier of a
    ``Bert18ForSequenceClassification`` checkpoint fits too.
    """

    def __init__(self, config: Bert18Config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert18 = Bert18Model(config)
        hidden, pooling = config.hidden_size, config.long_pooling
        self.chunk_attention = (
            nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
            if pooling == "attention"
            else None
        )
        self.chunk_lstm = (
            nn.LSTM(hidden, hidden // 2, batch_first=True, bidirectional=True) if pooling == "lstm" else None
        )
        width = {"concat": config.max_chunks * hidden, "lstm": 2 * (hidden // 2)}.get(pooling, hidden)
        self.dropout = _classifier_dropout(config)
        self.classifier = nn.Linear(width, config.num_labels)
        self.post_init()

    def _chunk_vectors(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self.bert18(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).pooler_output

    def encode_chunks(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The pooled [CLS] vector of every chunk, [total chunks, H], ``config.chunk_batch_size`` at a time."""
        total = input_ids.size(0)
        size = self.config.chunk_batch_size or total
        vectors = []
        for start in range(0, total, size):
            piece = [t if t is None else t[start : start + size] for t in (input_ids, attention_mask, token_type_ids)]
            if size < total and self.training and torch.is_grad_enabled():
                # Keep only this pass's chunk vectors; recompute its activations in the backward pass.
                vectors.append(checkpoint(self._chunk_vectors, *piece, use_reentrant=False))
            else:
                vectors.append(self._chunk_vectors(*piece))
        return torch.cat(vectors)

    def _group_by_document(
        self, vectors: torch.Tensor, num_chunks: torch.Tensor | None, chunk_document_ids: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[total chunks, H] -> [documents, most chunks, H] (zero-padded) and its chunk mask."""
        total = vectors.size(0)
        if (num_chunks is None) == (chunk_document_ids is None):
            raise ValueError("pass exactly one of num_chunks ([documents]) and chunk_document_ids ([total chunks])")
        if num_chunks is not None:
            num_chunks = num_chunks.to(vectors.device).long()
            if int(num_chunks.sum()) != total or bool((num_chunks < 1).any()):
                raise ValueError(f"num_chunks {num_chunks.tolist()} must be >= 1 each and sum to the {total} chunks")
            document = torch.repeat_interleave(torch.arange(len(num_chunks), device=vectors.device), num_chunks)
        else:
            document = chunk_document_ids.to(vectors.device).long().view(-1)
            if document.numel() != total:
                raise ValueError(f"chunk_document_ids has {document.numel()} entries for {total} chunks")
        counts = torch.bincount(document)
        if bool((counts == 0).any()):
            raise ValueError(f"chunk_document_ids must number documents 0..D-1, each with chunks: {counts.tolist()}")
        if int(counts.max()) > self.config.max_chunks:
            raise ValueError(
                f"document {int(counts.argmax())} has {int(counts.max())} chunks, more than config.max_chunks="
                f"{self.config.max_chunks}: raise max_chunks, or chunk with max_chunks and on_overflow='truncate' "
                "(bert18.long_text)"
            )
        order = torch.argsort(document, stable=True)
        ordered = document[order]
        slot = torch.arange(total, device=vectors.device) - (torch.cumsum(counts, 0) - counts)[ordered]
        grouped = vectors.new_zeros(len(counts), int(counts.max()), vectors.size(-1))
        grouped = grouped.index_put((ordered, slot), vectors[order])
        mask = torch.zeros(grouped.shape[:2], dtype=torch.bool, device=vectors.device)
        mask[ordered, slot] = True
        return grouped, mask

    def pool_chunks(self, grouped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One vector per document from its chunk vectors [documents, chunks, H], by ``config.long_pooling``."""
        pooling, weights = self.config.long_pooling, mask.unsqueeze(-1).to(grouped.dtype)
        if pooling == "mean":
            return (grouped * weights).sum(1) / weights.sum(1)
        if pooling == "max":
            return grouped.masked_fill(~mask.unsqueeze(-1), torch.finfo(grouped.dtype).min).max(1).values
        if pooling == "attention":
            scores = self.chunk_attention(grouped).squeeze(-1).masked_fill(~mask, float("-inf"))
            return (scores.softmax(-1).unsqueeze(-1) * grouped).sum(1)
        if pooling == "lstm":
            lengths = mask.sum(1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(grouped, lengths, batch_first=True, enforce_sorted=False)
            _, (final, _) = self.chunk_lstm(packed)
            return torch.cat([final[-2], final[-1]], dim=-1)  # last layer's forward and backward states
        return F.pad(grouped, (0, 0, 0, self.config.max_chunks - grouped.size(1))).flatten(1)  # concat

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        num_chunks: torch.Tensor | None = None,
        chunk_document_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> SequenceClassifierOutput:
        """``input_ids`` [total chunks, chunk length]; ``num_chunks`` or ``chunk_document_ids`` map chunks
        to documents; ``labels`` per document: class ids [documents], floats for regression, or
        multi-hot [documents, labels]. Logits are per document."""
        if input_ids is None or input_ids.dim() != 2:
            raise ValueError("input_ids must be [total chunks, chunk length]: see long_text.LongDocumentCollator")
        vectors = self.encode_chunks(input_ids, attention_mask, token_type_ids)
        grouped, mask = self._group_by_document(vectors, num_chunks, chunk_document_ids)
        logits = self.classifier(self.dropout(self.pool_chunks(grouped, mask)))
        loss = sequence_classification_loss(self.config, logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


# The transformers Auto class of each bert18 model, used for registration and for auto_map.
AUTO_CLASSES = {
    "AutoModel": "Bert18Model",
    "AutoModelForPreTraining": "Bert18ForPreTraining",
    "AutoModelForMaskedLM": "Bert18ForMaskedLM",
    "AutoModelForSequenceClassification": "Bert18ForSequenceClassification",
    "AutoModelForTokenClassification": "Bert18ForTokenClassification",
    "AutoModelForQuestionAnswering": "Bert18ForQuestionAnswering",
    "AutoModelForMultipleChoice": "Bert18ForMultipleChoice",
}


__all__ = [
    "Bert18PreTrainedModel",
    "Bert18Model",
    "Bert18ForPreTraining",
    "Bert18ForPreTrainingOutput",
    "Bert18ForMaskedLM",
    "Bert18ForSequenceClassification",
    "Bert18ForTokenClassification",
    "Bert18ForQuestionAnswering",
    "Bert18ForMultipleChoice",
    "Bert18ForLongSequenceClassification",
]

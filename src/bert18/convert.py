"""Original BERT, RoBERTa, ALBERT and ERNIE checkpoints -> bert18, with exact numerical parity.

Conversion is renaming, plus two rewrites that keep the function identical:

- RoBERTa numbers positions from ``pad_token_id + 1`` (row 2 of its 514-row table is position 0);
  bert18 drops those leading rows and counts positions over real tokens (``pad_aware_positions``).
- ALBERT's single shared layer group becomes bert18's ``layer_sharing="all"`` blocks, its
  ``embedding_hidden_mapping_in`` the factorized embedding projection.
- ModernBERT's fused ``Wqkv`` splits into query / key / value; its prediction head (dense + act + norm)
  becomes the MLM head's transform, or the pooler (``pooler_norm``, ``classifier_pooling``) under a
  sequence classifier; its layer types, window, rotary bases, norms and biases map onto the fields of the
  modern encoder (``config_from_modernbert``).

Entry points: ``from_transformers`` (a model object or checkpoint -> a bert18 model),
``convert_checkpoint`` (folder or Hub id -> a bert18 folder, written atomically, tokenizer included;
CLI ``bert18 convert SRC DST``), and ``load_transformers_checkpoint``, which
``Bert18*.from_pretrained`` calls when handed an original checkpoint.
"""

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedModel
from transformers.utils import cached_file

from .configuration_bert18 import GATED_ACTIVATIONS, Bert18Config
from .files import folder_written_whole
from .modeling_bert18 import (
    CONVERTIBLE_MODEL_TYPES,
    Bert18ForMaskedLM,
    Bert18ForMultipleChoice,
    Bert18ForPreTraining,
    Bert18ForQuestionAnswering,
    Bert18ForSequenceClassification,
    Bert18ForTokenClassification,
    Bert18Model,
    Bert18PreTrainedModel,
)

logger = logging.getLogger(__name__)

_SHARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "pad_token_id",
    "layer_norm_eps",
    "initializer_range",
    "classifier_dropout",
    "id2label",
    "label2id",
    "problem_type",
    "tie_word_embeddings",
)


class ConversionError(ValueError):
    """A checkpoint bert18 cannot convert faithfully; the message names the problem."""


def config_from_modernbert(src: dict[str, Any]) -> Bert18Config:
    """The ``Bert18Config`` computing exactly what a ModernBERT config describes (legacy keys such as
    ``global_rope_theta`` / ``global_attn_every_n_layers`` are read through transformers' own config)."""
    from transformers import ModernBertConfig

    cfg = ModernBertConfig.from_dict({k: v for k, v in src.items() if k != "transformers_version"})
    activation = cfg.hidden_activation
    gated = next((kind for kind, acts in GATED_ACTIVATIONS.items() if activation in acts), None)
    if gated is None:
        raise ConversionError(
            f"ModernBERT with hidden_activation={activation!r}: bert18's gated feed-forward "
            f"takes {GATED_ACTIVATIONS} activations"
        )
    thetas = {}
    for kind in ("full_attention", "sliding_attention"):
        params = (cfg.rope_parameters or {}).get(kind) or {}
        if params.get("rope_type", "default") != "default":
            raise ConversionError(
                f"ModernBERT with rope_type={params['rope_type']!r} on {kind} layers: bert18 "
                "implements the default rotary embedding only"
            )
        thetas[kind] = params.get("rope_theta")
    fields: dict[str, Any] = dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act=activation,
        feed_forward_type=gated,
        # ModernBERT drops out embeddings, attention (probabilities and output) and the gated inner width;
        # bert18 drops out embeddings and block outputs: equal in evaluation, close in training.
        hidden_dropout_prob=cfg.embedding_dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        classifier_dropout=cfg.classifier_dropout,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=0,
        pad_token_id=cfg.pad_token_id,
        layer_norm_eps=cfg.norm_eps,
        initializer_range=cfg.initializer_range,
        tie_word_embeddings=cfg.tie_word_embeddings,
        position_embedding_type="rotary",
        rope_theta=thetas["full_attention"],
        local_rope_theta=thetas["sliding_attention"],
        norm_position="pre",
        norm_type="layer_norm",
        norm_bias=cfg.norm_bias,
        attention_bias=cfg.attention_bias,
        mlp_bias=cfg.mlp_bias,
        layer_types=list(cfg.layer_types),
        local_attention_window=cfg.local_attention,
        pooler_activation=cfg.classifier_activation,
        pooler_norm=True,
        classifier_pooling=cfg.classifier_pooling,
        head_activation=cfg.classifier_activation,
        head_bias=cfg.classifier_bias,
        decoder_bias=cfg.decoder_bias,
        sparse_prediction=cfg.sparse_prediction,
        pretraining_tasks=["mlm"],
        architectures=src.get("architectures"),
        id2label=cfg.id2label,
        label2id=cfg.label2id,
        problem_type=cfg.problem_type,
    )
    if "sliding_attention" not in fields["layer_types"]:
        fields["local_attention_window"] = None
    return Bert18Config(**{k: v for k, v in fields.items() if v is not None})


def config_from_transformers(source: PretrainedConfig | dict[str, Any]) -> Bert18Config:
    """The ``Bert18Config`` computing exactly what a BERT/RoBERTa/ALBERT/ModernBERT config describes."""
    src = source.to_dict() if isinstance(source, PretrainedConfig) else dict(source)
    model_type = src.get("model_type")
    if model_type not in CONVERTIBLE_MODEL_TYPES:
        raise ConversionError(
            f"cannot convert a checkpoint of model_type {model_type!r}; bert18 converts: "
            f"{', '.join(CONVERTIBLE_MODEL_TYPES)}"
        )
    if model_type == "modernbert":
        return config_from_modernbert(src)
    if src.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(
            f"position_embedding_type={src['position_embedding_type']!r} (relative positions) has no bert18 "
            "equivalent; only 'absolute' (learned) positions convert"
        )
    if src.get("is_decoder") or src.get("add_cross_attention"):
        raise ConversionError("decoder / cross-attention checkpoints are not encoders; bert18 converts encoders")
    fields = {k: src[k] for k in _SHARED_FIELDS if src.get(k) is not None}
    fields["architectures"] = src.get("architectures")  # which head the weights belong to
    if src.get("num_labels") is not None and "id2label" not in fields:
        fields["num_labels"] = src["num_labels"]
    if model_type in ("roberta", "xlm-roberta"):
        offset = src["pad_token_id"] + 1
        fields.update(
            max_position_embeddings=src["max_position_embeddings"] - offset,
            pad_aware_positions=True,
            pretraining_tasks=["mlm"],
        )
    elif model_type == "albert":
        if src.get("num_hidden_groups", 1) != 1 or src.get("inner_group_num", 1) != 1:
            raise ConversionError(
                f"ALBERT with num_hidden_groups={src.get('num_hidden_groups')} and inner_group_num="
                f"{src.get('inner_group_num')}: bert18 shares one layer across all layers (the published "
                "ALBERT models), so only num_hidden_groups=1, inner_group_num=1 convert"
            )
        fields.update(embedding_size=src["embedding_size"], layer_sharing="all", pretraining_tasks=["mlm", "sop"])
        fields["classifier_dropout"] = src.get("classifier_dropout_prob")
    else:  # BERT, and ERNIE (BERT with task-type embeddings when use_task_id)
        fields["pretraining_tasks"] = ["mlm", "nsp"]
        if model_type == "ernie" and src.get("use_task_id"):
            fields.update(use_task_id=True, task_type_vocab_size=src["task_type_vocab_size"])
    fields = {k: v for k, v in fields.items() if v is not None}
    return Bert18Config(**fields)


# Names of the base encoder's weights: (source pattern, bert18 name). Layer blocks are handled
# separately because Q, K and V merge. `\d+` groups carry the layer index.
_EMBEDDINGS = [
    (r"embeddings\.word_embeddings\.weight", "embeddings.word_embeddings.weight"),
    (r"embeddings\.position_embeddings\.weight", "embeddings.position_embeddings.weight"),
    (r"embeddings\.token_type_embeddings\.weight", "embeddings.token_type_embeddings.weight"),
    (r"embeddings\.task_type_embeddings\.weight", "embeddings.task_type_embeddings.weight"),  # ERNIE
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.layer_norm.\1"),
    (r"encoder\.embedding_hidden_mapping_in\.(weight|bias)", r"embeddings.projection.\1"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
    (r"pooler\.(weight|bias)", r"pooler.dense.\1"),  # ALBERT's pooler is a bare Linear
]
_BERT_LAYER = [  # BERT and RoBERTa: encoder.layer.{i}.…
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)", r"attention.\1.\2.\3"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", r"encoder.attention.\1.output.\2"),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.(weight|bias)", r"encoder.attention.\1.layer_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"encoder.feed_forward.\1.intermediate.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"encoder.feed_forward.\1.output.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", r"encoder.feed_forward.\1.layer_norm.\2"),
]
_ALBERT_LAYER = [  # ALBERT: one group holding one shared layer
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.attention\.(query|key|value)\.(weight|bias)",
        r"attention.0.\1.\2",
    ),
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.attention\.dense\.(weight|bias)",
        r"encoder.attention.0.output.\1",
    ),
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.attention\.LayerNorm\.(weight|bias)",
        r"encoder.attention.0.layer_norm.\1",
    ),
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.ffn\.(weight|bias)",
        r"encoder.feed_forward.0.intermediate.\1",
    ),
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.ffn_output\.(weight|bias)",
        r"encoder.feed_forward.0.output.\1",
    ),
    (
        r"encoder\.albert_layer_groups\.0\.albert_layers\.0\.full_layer_layer_norm\.(weight|bias)",
        r"encoder.feed_forward.0.layer_norm.\1",
    ),
]
# Heads that exist with the same function in bert18 (names outside the base model).
_HEADS = [
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"lm_head.dense.\1"),  # BERT MLM
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"cls\.predictions\.decoder\.weight", "lm_head.decoder.weight"),
    (r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    (r"cls\.seq_relationship\.(weight|bias)", r"heads.nsp.\1"),  # BERT NSP
    (r"lm_head\.dense\.(weight|bias)", r"lm_head.dense.\1"),  # RoBERTa MLM
    (r"lm_head\.layer_norm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"lm_head\.decoder\.weight", "lm_head.decoder.weight"),
    (r"lm_head\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    (r"predictions\.dense\.(weight|bias)", r"lm_head.dense.\1"),  # ALBERT MLM
    (r"predictions\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"predictions\.decoder\.weight", "lm_head.decoder.weight"),
    (r"predictions\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    (r"sop_classifier\.classifier\.(weight|bias)", r"heads.sop.\1"),  # ALBERT SOP
    # RoBERTa sequence classification: dense + tanh over <s>, then out_proj. That is bert18's pooler
    # (dense + tanh over the first token) and classifier: the same function (in eval mode; in training
    # RoBERTa also drops out the <s> state before its dense layer).
    (r"classifier\.dense\.(weight|bias)", r"bert18.pooler.dense.\1"),
    (r"classifier\.out_proj\.(weight|bias)", r"classifier.\1"),
    (r"(classifier|qa_outputs)\.(weight|bias)", r"\1.\2"),  # BERT/ALBERT downstream heads
]
_BASE_PREFIXES = ("bert.", "roberta.", "albert.", "ernie.")

# ModernBERT (base model under "model."): pre-norm layers, fused Wqkv (split below), GeGLU Wi.
_MODERNBERT_BASE = [
    (r"embeddings\.tok_embeddings\.weight", "embeddings.word_embeddings.weight"),
    (r"embeddings\.norm\.(weight|bias)", r"embeddings.layer_norm.\1"),
    (r"layers\.(\d+)\.attn_norm\.(weight|bias)", r"encoder.attention.\1.layer_norm.\2"),
    (r"layers\.(\d+)\.attn\.Wo\.(weight|bias)", r"encoder.attention.\1.output.\2"),
    (r"layers\.(\d+)\.mlp_norm\.(weight|bias)", r"encoder.feed_forward.\1.layer_norm.\2"),
    (r"layers\.(\d+)\.mlp\.Wi\.(weight|bias)", r"encoder.feed_forward.\1.intermediate.\2"),
    (r"layers\.(\d+)\.mlp\.Wo\.(weight|bias)", r"encoder.feed_forward.\1.output.\2"),
    (r"final_norm\.(weight|bias)", r"encoder.final_layer_norm.\1"),
]


def _convert_modernbert(state_dict: dict[str, torch.Tensor], config: Bert18Config) -> tuple[dict, list[str]]:
    """ModernBERT's names -> bert18's. Its prediction head is the MLM transform when a decoder is present,
    else (sequence classification, multiple choice) the pooler."""
    has_decoder = any(k.startswith("decoder.") for k in state_dict)
    for architecture in config.architectures or []:
        if architecture.endswith(("ForTokenClassification", "ForQuestionAnswering")):
            raise ConversionError(
                f"{architecture}: ModernBERT applies its prediction head (dense + act + norm) to every token before "
                "the classifier, which bert18's token classification and QA heads do not; convert the base model "
                "(its *Model or *ForMaskedLM checkpoint) and fine-tune a bert18 head instead"
            )
    head_target = "lm_head" if has_decoder else "bert18.pooler"
    converted: dict[str, torch.Tensor] = {}
    skipped = []
    for name, tensor in state_dict.items():
        base = name[len("model.") :] if name.startswith("model.") else name
        if (target := _rename(base, _MODERNBERT_BASE)) is not None:
            converted[f"bert18.{target}"] = tensor
        elif match := re.fullmatch(r"layers\.(\d+)\.attn\.Wqkv\.(weight|bias)", base):
            layer, kind = match.groups()
            for part, chunk in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                converted[f"bert18.encoder.attention.{layer}.{part}.{kind}"] = chunk.clone()
        elif match := re.fullmatch(r"head\.(dense|norm)\.(weight|bias)", name):
            module = "dense" if match.group(1) == "dense" else "layer_norm"
            converted[f"{head_target}.{module}.{match.group(2)}"] = tensor
        elif match := re.fullmatch(r"decoder\.(weight|bias)", name):
            converted[f"lm_head.decoder.{match.group(1)}"] = tensor
        elif re.fullmatch(r"classifier\.(weight|bias)", name):
            converted[name] = tensor
        else:
            skipped.append(name)
    if has_decoder and "lm_head.decoder.weight" not in converted:
        converted["lm_head.decoder.weight"] = converted["bert18.embeddings.word_embeddings.weight"]
    return converted, skipped


def _rename(name: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, target in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return match.expand(target)
    return None


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], config: Bert18Config, model_type: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers state dict into bert18's names (base weights under ``bert18.``).

    Returns the converted dict and the source names that have no bert18 counterpart. Converted
    tensors may share memory with ``state_dict`` (``from_transformers`` copies them).
    """
    if model_type == "modernbert":
        return _convert_modernbert(state_dict, config)
    # Checkpoints converted from TensorFlow may still call the LayerNorm parameters gamma and beta.
    state_dict = {
        re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
        for k, v in state_dict.items()
    }
    layer_rules = _ALBERT_LAYER if model_type == "albert" else _BERT_LAYER
    converted: dict[str, torch.Tensor] = {}
    qkv_parts: dict[str, torch.Tensor] = {}
    skipped = []
    for name, tensor in state_dict.items():
        if name.endswith(("position_ids", "token_type_ids")):  # buffers, not weights
            continue
        base = next((name[len(p) :] for p in _BASE_PREFIXES if name.startswith(p)), name)
        if (target := _rename(base, _EMBEDDINGS)) is not None:
            converted[f"bert18.{target}"] = tensor
        elif (target := _rename(base, layer_rules)) is not None:
            if target.startswith("attention."):  # query / key / value, checked complete below
                qkv_parts[target] = tensor
            else:
                converted[f"bert18.{target}"] = tensor
        elif (target := _rename(name, _HEADS)) is not None:
            converted[target] = tensor
        else:
            skipped.append(name)
    blocks = sorted({int(k.split(".")[1]) for k in qkv_parts})
    for i in blocks:
        for kind in ("weight", "bias"):
            parts = [qkv_parts.get(f"attention.{i}.{p}.{kind}") for p in ("query", "key", "value")]
            if any(p is None for p in parts):
                raise ConversionError(f"attention layer {i} lacks one of query/key/value {kind}")
            for part, tensor in zip(("query", "key", "value"), parts):
                converted[f"bert18.encoder.attention.{i}.{part}.{kind}"] = tensor
    if model_type in ("roberta", "xlm-roberta"):
        if config.hidden_act != "gelu" and any(k.startswith("lm_head.") for k in converted):
            # RoBERTa's MLM head always applies exact gelu; bert18's applies config.hidden_act.
            raise ConversionError(
                f"{model_type} MLM head with hidden_act={config.hidden_act!r}: transformers' RoBERTa head "
                "always uses 'gelu', bert18's uses hidden_act, so only hidden_act='gelu' converts faithfully"
            )
        key = "bert18.embeddings.position_embeddings.weight"
        offset = config.pad_token_id + 1
        converted[key] = converted[key][offset:].clone()
    if "lm_head.decoder.weight" not in converted and "lm_head.decoder.bias" in converted:
        converted["lm_head.decoder.weight"] = converted["bert18.embeddings.word_embeddings.weight"]
    return converted, skipped


def _read_weights(folder: str, hub_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The full state dict of a checkpoint: safetensors (single or sharded), else pytorch_model.bin."""
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        index_file = cached_file(folder, index, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
        if index_file is not None:
            shards = sorted(set(json.loads(Path(index_file).read_text())["weight_map"].values()))
            files = [cached_file(folder, shard, **hub_kwargs) for shard in shards]
        else:
            file = cached_file(folder, single, _raise_exceptions_for_missing_entries=False, **hub_kwargs)
            files = [file] if file is not None else []
        if files:
            state_dict: dict[str, torch.Tensor] = {}
            for file in files:
                state_dict.update(_load_weights_file(file))
            return state_dict
    raise ConversionError(f"no weights in {folder}: expected model.safetensors or pytorch_model.bin (or sharded)")


def _load_weights_file(file: str) -> dict[str, torch.Tensor]:
    try:
        if file.endswith(".safetensors"):
            return load_file(file)
        return torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError) as error:
        raise ConversionError(f"cannot read weights file {file} (truncated or corrupt?): {error}") from error


def load_transformers_checkpoint(
    path: str | os.PathLike, **hub_kwargs: Any
) -> tuple[Bert18Config, dict[str, torch.Tensor]]:
    """Read an original checkpoint (folder or Hub id): the bert18 config and converted state dict."""
    path = str(path)
    config_dict, _ = PretrainedConfig.get_config_dict(path, **hub_kwargs)
    config = config_from_transformers(config_dict)
    state_dict, skipped = convert_state_dict(_read_weights(path, hub_kwargs), config, config_dict["model_type"])
    if skipped:
        logger.warning("weights of %s with no bert18 counterpart, not converted: %s", path, ", ".join(skipped))
    return config, state_dict


# Downstream heads that convert (the same layers in bert18), by the source architecture's suffix.
_TASK_CLASSES = {
    "ForSequenceClassification": Bert18ForSequenceClassification,
    "ForTokenClassification": Bert18ForTokenClassification,
    "ForQuestionAnswering": Bert18ForQuestionAnswering,
    "ForMultipleChoice": Bert18ForMultipleChoice,
}


def _bert18_class_for(state_dict: dict[str, torch.Tensor], config: Bert18Config) -> type[Bert18PreTrainedModel]:
    """The bert18 class the converted weights fill: the source's fine-tuned task head when it has
    one (``classifier`` / ``qa_outputs``), else pretraining, masked LM, or the bare encoder."""
    task_head = any(k.split(".")[0] in ("classifier", "qa_outputs") for k in state_dict)
    for architecture in config.architectures or []:
        for suffix, model_class in _TASK_CLASSES.items():
            if task_head and architecture.endswith(suffix):
                return model_class
    if any(k.startswith("lm_head.") for k in state_dict):
        return Bert18ForPreTraining if any(k.startswith("heads.") for k in state_dict) else Bert18ForMaskedLM
    return Bert18Model


def from_transformers(
    model_or_path: PreTrainedModel | str | os.PathLike,
    model_class: type[Bert18PreTrainedModel] | None = None,
    **hub_kwargs: Any,
) -> Bert18PreTrainedModel:
    """A bert18 model computing what a transformers BERT/RoBERTa/ALBERT model (or checkpoint) does.

    ``model_class`` defaults to the class the weights fill: the fine-tuned task head of a
    ``*ForSequenceClassification`` (token classification, question answering, multiple choice)
    source, else ``Bert18ForPreTraining`` when MLM and sentence heads are present,
    ``Bert18ForMaskedLM``, or ``Bert18Model``.
    """
    if isinstance(model_or_path, PreTrainedModel):
        config = config_from_transformers(model_or_path.config)
        # the object's own class first: a model never saved has no architectures in its config
        config.architectures = [type(model_or_path).__name__, *(config.architectures or [])]
        source = model_or_path.state_dict()
        state_dict, skipped = convert_state_dict(source, config, model_or_path.config.model_type)
        state_dict = _unshared(state_dict, source)
        if skipped:
            logger.warning("weights with no bert18 counterpart, not converted: %s", ", ".join(skipped))
    else:
        config, state_dict = load_transformers_checkpoint(model_or_path, **hub_kwargs)
    model_class = model_class or _bert18_class_for(state_dict, config)
    config.architectures = [model_class.__name__]
    if model_class is Bert18Model:
        dropped = [k for k in state_dict if not k.startswith("bert18.")]
        if dropped:
            logger.warning("converting into Bert18Model leaves out the heads: %s", ", ".join(dropped))
        state_dict = {k.removeprefix("bert18."): v for k, v in state_dict.items() if k.startswith("bert18.")}
    extra = {}
    if model_class is Bert18Model and not any(k.startswith("pooler.") for k in state_dict):
        extra["add_pooling_layer"] = False  # a source without a pooler (ModernBertModel): none made up
    model = model_class.from_pretrained(None, config=config, state_dict=state_dict, **extra)
    source = model_or_path.name_or_path if isinstance(model_or_path, PreTrainedModel) else str(model_or_path)
    model.name_or_path = model.config._name_or_path = source  # the origin, not the string "None"
    return model


def _unshared(converted: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``converted`` with a copy of every tensor that shares memory with ``source``, so that training
    the converted model never changes the source model (nor the reverse). Tensors that were one
    (tied weights) stay one; tensors conversion already made anew (fused q/k/v) are not copied twice."""
    source_memory = {t.untyped_storage().data_ptr() for t in source.values() if t.device.type != "meta"}
    copies: dict[int, torch.Tensor] = {}
    out = {}
    for name, tensor in converted.items():
        if tensor.device.type != "meta" and tensor.untyped_storage().data_ptr() in source_memory:
            if id(tensor) not in copies:
                copies[id(tensor)] = tensor.detach().clone()
            tensor = copies[id(tensor)]
        out[name] = tensor
    return out


def convert_checkpoint(
    source: str | os.PathLike, destination: str | os.PathLike, overwrite: bool = False, **hub_kwargs: Any
) -> Path:
    """Convert ``source`` (a folder or Hub id) into a bert18 checkpoint folder ``destination``.

    The model and, when the source has one, its tokenizer are written to a temporary folder beside
    ``destination`` and moved into place only once complete: a failure leaves nothing behind.
    """
    destination = Path(destination)
    if isinstance(source, (str, os.PathLike)) and _is_local_path(os.fspath(source)) and not Path(source).is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {os.fspath(source)} (neither a folder nor a Hub id)")
    if destination.exists() and not destination.is_dir():
        raise FileExistsError(f"destination {destination} is a file: choose a folder")
    if destination.exists() and any(destination.iterdir()) and not overwrite:
        raise FileExistsError(f"{destination} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    model = from_transformers(source, **hub_kwargs)
    with folder_written_whole(destination) as staging:
        model.save_pretrained(staging)
        _copy_tokenizer(str(source), staging, hub_kwargs)
    return destination


def _is_local_path(source: str) -> bool:
    """Whether ``source`` can only be a local path: absolute, relative with ./ ../ ~, or with more parts
    than a Hub id's ``owner/name``."""
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def _copy_tokenizer(source: str, folder: Path, hub_kwargs: dict[str, Any]) -> None:
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError) as error:
        logger.warning("no tokenizer saved with the conversion of %s: %s", source, error)
        return
    tokenizer.save_pretrained(folder)


__all__ = [
    "ConversionError",
    "config_from_transformers",
    "convert_state_dict",
    "load_transformers_checkpoint",
    "from_transformers",
    "convert_checkpoint",
]

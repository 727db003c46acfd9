"""Bert18Config: one configuration for the BERT family (BERT, RoBERTa, ALBERT, ERNIE, ModernBERT).

Every architecture choice is a field, so a preset is nothing but a set of values:

- ``embedding_size``: size E of the token/segment/position embeddings. ``None`` means E = H and
  no projection (BERT); a number adds one E -> H linear map after the embedding LayerNorm (ALBERT's
  factorized embeddings: V x E + E x H parameters instead of V x H, seed question 18).
- ``layer_sharing``: ``none`` (BERT), ``all`` (ALBERT: one attention block and one feed-forward
  block reused by every layer), ``attention`` or ``ffn`` (share only that block).
- ``position_embedding_type``: ``learned`` table (BERT), fixed ``sinusoidal`` (Transformer,
  seed question 5), ``rotary`` (RoPE, rotating queries and keys in every attention layer: RoFormer,
  ModernBERT) or ``alibi`` (a distance penalty on the attention scores: MosaicBERT).
  ``pad_aware_positions`` counts positions over real tokens only (RoBERTa), so a left-padded sequence
  gets the positions it would have unpadded.
- The modern encoder (ModernBERT, MosaicBERT, cramming): ``norm_position`` (``post`` BERT / ``pre`` with
  a final norm), ``norm_type`` (``layer_norm`` / ``rms_norm``), ``norm_bias``, ``feed_forward_type``
  (``plain`` / ``geglu`` / ``swiglu``), ``attention_bias`` / ``mlp_bias``, local attention on the
  layers ``layer_types`` names ``sliding_attention`` (``local_attention_window`` tokens wide), a
  rotary base per layer type (``rope_theta``, ``local_rope_theta``) and ModernBERT's heads
  (``pooler_activation``, ``pooler_norm``, ``classifier_pooling``, ``head_activation``, ``head_bias``,
  ``decoder_bias``). Every default reproduces BERT.
- ``pretraining_tasks``: the objectives ``Bert18ForPreTraining`` trains, one head and one loss each,
  summed with ``task_loss_weights``.

This file imports only the standard library, transformers and huggingface_hub (a requirement of
transformers): ``save_pretrained`` ships it next to the weights so that a checkpoint loads with
``trust_remote_code=True`` where bert18 is not installed.
"""

import contextvars
import dataclasses
import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

LAYER_SHARING_MODES = ("none", "all", "attention", "ffn")
POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal", "rotary", "alibi")
NORM_POSITIONS = ("post", "pre")
NORM_TYPES = ("layer_norm", "rms_norm")
FEED_FORWARD_TYPES = ("plain", "geglu", "swiglu")
LAYER_TYPES = ("full_attention", "sliding_attention")  # ModernBERT's names: global and local attention
CLASSIFIER_POOLING_MODES = ("cls", "mean")
# The activations a gated feed-forward type names (the gate is act(x W) * (x V), Shazeer 2020).
GATED_ACTIVATIONS = {
    "geglu": ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_accurate"),
    "swiglu": ("silu", "swish"),
}
# How Bert18ForLongSequenceClassification combines the chunk vectors of one long document.
LONG_POOLING_MODES = ("concat", "mean", "max", "attention", "lstm")


@dataclasses.dataclass(frozen=True)
class PretrainingTask:
    """One pretraining objective: what the model, the collators, the data and the logs need to know of it.

    Attributes:
        name: the task's name in ``Bert18Config.pretraining_tasks``.
        label: the ``Bert18ForPreTraining.forward`` argument its labels come in, which is also their
            column on the examples and in the batch.
        level: ``"sequence"``: one label per example, classified from the pooled [CLS] state;
            ``"token"``: one label per token (-100 where none), classified from every token.
        num_classes: the classes of its head. 0 means the task predicts the vocabulary through the
            (tied) LM head and a collator makes its labels (``mlm``, ``plm``). A function of the config
            when a config field sets it (sentence reordering's ``sentence_reordering_max_segments``);
            read it with ``classes(config)``.
        title: the task in words, for the model card and logs.
        made_by: what builds its labels, named in the error when an example lacks them.
        needs_documents: its examples are drawn from whole documents (grouped sentences, then
            ``SentencePairDataset``), not from packed rows.
        arrangement: how the task arranges the segments of its example, and so how its label is
            drawn: ``"pair"`` (A and B: NSP, SOP, sentence distance) or ``"shuffled_segments"`` (a
            paragraph cut into segments and permuted: sentence reordering); ``None`` for a task that
            labels whatever example it is given. An example has one arrangement, so at most one such
            task is trained on the same examples.
    """

    name: str
    label: str
    level: Literal["token", "sequence"]
    num_classes: int | Callable[["Bert18Config"], int]
    title: str
    made_by: str
    needs_documents: bool = False
    arrangement: Literal["pair", "shuffled_segments"] | None = None

    @property
    def predicts_vocabulary(self) -> bool:
        """Scored over the vocabulary by the LM head (no head of its own)."""
        return self.num_classes == 0

    def classes(self, config: "Bert18Config") -> int:
        """The number of classes of its head under ``config`` (0: the vocabulary, through the LM head)."""
        return self.num_classes(config) if callable(self.num_classes) else self.num_classes


def sentence_reordering_classes(max_segments: int) -> int:
    """ERNIE 2.0's sentence reordering: a paragraph cut into k segments, 1 <= k <= m, shown in one of
    their k! orders, has the sum over k of k! outcomes, one class each (m = 3: 1 + 2 + 6 = 9)."""
    return sum(math.factorial(k) for k in range(1, max_segments + 1))


DEFAULT_REORDERING_SEGMENTS = 3  # ERNIE 2.0's m
MAX_REORDERING_SEGMENTS = 7  # 5,913 classes; 8 would be 46,233
_PAIRS = "bert18.data.SentencePairDataset"

# Every pretraining task bert18 knows, by name. Every set of tasks elsewhere (sequence tasks, pair
# tasks, tasks that need documents, label columns, the model card's titles) is derived from here.
PRETRAINING_TASKS: dict[str, PretrainingTask] = {
    task.name: task
    for task in (
        # BERT: predict the masked tokens (labels from the masking collators).
        PretrainingTask("mlm", "labels", "token", 0, "masked language modelling", "bert18.collators.MLMCollator"),
        # XLNet: permutation LM, targets listed by plm_target_positions.
        PretrainingTask(
            "plm", "plm_labels", "token", 0, "permutation language modelling", "bert18.collators.PermutationLMCollator"
        ),
        # BERT: is B the real next segment?
        PretrainingTask(
            "nsp",
            "next_sentence_label",
            "sequence",
            2,
            "next sentence prediction",
            _PAIRS,
            needs_documents=True,
            arrangement="pair",
        ),
        # ALBERT: are A and B in order or swapped?
        PretrainingTask(
            "sop",
            "sentence_order_label",
            "sequence",
            2,
            "sentence order prediction",
            _PAIRS,
            needs_documents=True,
            arrangement="pair",
        ),
        # ERNIE 2.0: adjacent / same document / other document.
        PretrainingTask(
            "sentence_distance",
            "sentence_distance_label",
            "sequence",
            3,
            "sentence distance (ERNIE 2.0)",
            _PAIRS,
            needs_documents=True,
            arrangement="pair",
        ),
        # ERNIE 2.0: is the word capitalized?
        PretrainingTask(
            "capitalization",
            "capitalization_labels",
            "token",
            2,
            "capitalization prediction (ERNIE 2.0)",
            "the packed rows of bert18.data.prepare_pretraining_dataset",
        ),
        # ERNIE 2.0: does the token occur elsewhere in its document?
        PretrainingTask(
            "token_document_relation",
            "token_document_labels",
            "token",
            2,
            "token-document relation (ERNIE 2.0)",
            _PAIRS,
            needs_documents=True,
        ),
        # ERNIE 2.0: which order of a paragraph's 1..m segments is shown? (sum of k! classes)
        PretrainingTask(
            "sentence_reordering",
            "sentence_reordering_label",
            "sequence",
            lambda config: sentence_reordering_classes(config.sentence_reordering_max_segments),
            "sentence reordering (ERNIE 2.0)",
            _PAIRS,
            needs_documents=True,
            arrangement="shuffled_segments",
        ),
    )
}


def check_pretraining_tasks(tasks: Iterable[str], what: str = "pretraining_tasks") -> list[str]:
    """The task names of ``tasks`` as a list, or a ``ValueError`` naming ``what`` and the fix: every
    name known (``PRETRAINING_TASKS``), none twice, not both ``mlm`` and ``plm``. The one check the
    config, the collators, the data builders and the recipe arguments all run."""
    names = [tasks] if isinstance(tasks, str) else list(tasks)
    unknown = [name for name in names if name not in PRETRAINING_TASKS]
    if unknown:
        hints = [difflib.get_close_matches(str(name), PRETRAINING_TASKS, n=1) for name in unknown]
        hint = "".join(f" ({name!r}: did you mean {match[0]!r}?)" for name, match in zip(unknown, hints) if match)
        raise ValueError(
            f"{what} names unknown task(s) {unknown}{hint}; the known pretraining tasks are "
            f"{', '.join(PRETRAINING_TASKS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"{what} lists a task twice: {names}")
    if {"mlm", "plm"} <= set(names):
        # MLM corrupts inputs with [MASK] that the permutation would then order and attend to,
        # and PLM's masks would hide MLM's context: one objective per model.
        raise ValueError(
            f"{what} cannot hold both 'mlm' and 'plm': masked inputs and a permutation of the same "
            "tokens conflict; pretrain with one of them"
        )
    return names


def tasks_where(**fields: Any) -> tuple[str, ...]:
    """The names of the registered tasks whose record has every given field value, in registry order:
    ``tasks_where(level="sequence")``, ``tasks_where(needs_documents=True)``."""
    return tuple(
        name
        for name, task in PRETRAINING_TASKS.items()
        if all(getattr(task, key) == value for key, value in fields.items())
    )


SEQUENCE_TASKS = tasks_where(level="sequence")  # read the pooled [CLS] state


_BERT_BASE: dict[str, Any] = dict(
    vocab_size=30522,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=2,
    pad_token_id=0,
    layer_norm_eps=1e-12,
    pretraining_tasks=["mlm", "nsp"],
)
_ALBERT: dict[str, Any] = dict(
    _BERT_BASE,
    vocab_size=30000,
    embedding_size=128,
    hidden_act="gelu_new",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    layer_sharing="all",
    pretraining_tasks=["mlm", "sop"],
)

# ModernBERT (Warner et al. 2024, answerdotai/ModernBERT-base config): pre-norm without norm biases, no
# linear biases, GeGLU (intermediate_size is the width of each branch), rotary positions with a base of
# 160,000 on global and 10,000 on local layers, a 128-token window on local layers and global attention
# every third layer, 8,192 positions, no segment embeddings, its head (dense + GELU + norm) under the
# MLM decoder and the classifiers. 30% masking, no NSP.
_MODERNBERT_BASE: dict[str, Any] = dict(
    vocab_size=50368,
    hidden_size=768,
    num_hidden_layers=22,
    num_attention_heads=12,
    intermediate_size=1152,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    classifier_dropout=0.0,
    max_position_embeddings=8192,
    type_vocab_size=0,
    pad_token_id=50283,
    layer_norm_eps=1e-5,
    position_embedding_type="rotary",
    rope_theta=160_000.0,
    local_rope_theta=10_000.0,
    norm_position="pre",
    norm_bias=False,
    feed_forward_type="geglu",
    attention_bias=False,
    mlp_bias=False,
    local_attention_window=128,
    global_attention_every_n_layers=3,
    pooler_activation="gelu",
    pooler_norm=True,
    head_bias=False,
    pretraining_tasks=["mlm"],
)

# The published hyper-parameters of each model (the papers and their released configs).
PRESETS: dict[str, dict[str, Any]] = {
    # Small enough for tests and CPU demos; BERT's uncased vocabulary so real tokenizers fit.
    "tiny": dict(_BERT_BASE, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
    "bert-base": _BERT_BASE,  # Devlin et al. 2019: L=12, H=768, A=12, 110M
    "bert-large": dict(
        _BERT_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    # Liu et al. 2019: BERT-base shape, byte-level BPE of 50,265, one segment, no NSP. The 514
    # positions of the released checkpoint include an offset of pad_token_id + 1 = 2 rows that
    # bert18 drops (see pad_aware_positions), leaving 512.
    "roberta-base": dict(
        _BERT_BASE,
        vocab_size=50265,
        type_vocab_size=1,
        pad_token_id=1,
        layer_norm_eps=1e-5,
        pad_aware_positions=True,
        pretraining_tasks=["mlm"],
    ),
    # Lan et al. 2020 (ALBERT v2 configs): E=128, all layers shared, SOP, no dropout.
    "albert-base": _ALBERT,
    "albert-large": dict(
        _ALBERT, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096
    ),
    "albert-xlarge": dict(
        _ALBERT, hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192
    ),
    "albert-xxlarge": dict(
        _ALBERT, hidden_size=4096, num_hidden_layers=12, num_attention_heads=64, intermediate_size=16384
    ),
    # Sun et al. 2020, ERNIE 2.0 base (English): BERT-base shape with 4 segment types (its tasks
    # mark more than two kinds of segment) and task-type embeddings, trained on knowledge masking,
    # sentence distance, capitalization and token-document relation.
    "ernie-base": dict(
        _BERT_BASE,
        type_vocab_size=4,
        use_task_id=True,  # the released ERNIE 2.0 base: task-type embeddings over 3 task ids
        task_type_vocab_size=3,
        pretraining_tasks=["mlm", "sentence_distance", "capitalization", "token_document_relation"],
    ),
    "modernbert-base": _MODERNBERT_BASE,  # 22 layers, H=768, 149M (ModernBertModel: 149,014,272)
    # answerdotai/ModernBERT-large: 28 layers, H=1024, 16 heads, GeGLU 2,624 per branch, 395M.
    "modernbert-large": dict(
        _MODERNBERT_BASE, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, intermediate_size=2624
    ),
}


# Keyword arguments PreTrainedConfig reads besides its fields, what its to_dict() writes (so
# Bert18Config(**config.to_dict()) works), and token ids many configs carry: accepted when a user
# builds a Bert18Config. Anything else is refused, except while loading a saved config
# (from_dict / from_pretrained), which may come from another bert18 version.
_BASE_KWARGS = frozenset(
    {
        "num_labels",
        "torch_dtype",
        "name_or_path",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "per_layer_config",
        "bos_token_id",
        "eos_token_id",
        "sep_token_id",
        "cls_token_id",
        "mask_token_id",
        "unk_token_id",
        "model_type",
        "_name_or_path",
        "_commit_hash",
        "_attn_implementation_internal",
        "_experts_implementation_internal",
    }
)
_LOADING = contextvars.ContextVar("bert18_config_loading", default=False)


@strict(accept_kwargs=True)
class Bert18Config(PreTrainedConfig):
    r"""Configuration of a bert18 encoder. Defaults are BERT-base; see ``Bert18Config.from_preset``.

    Args:
        vocab_size: number of token ids.
        hidden_size: width H of the encoder.
        num_hidden_layers: number of encoder layers (applications of a block when shared).
        num_attention_heads: heads per attention block; must divide ``hidden_size``.
        intermediate_size: inner width of the feed-forward block.
        hidden_act: activation of the feed-forward block and the MLM transform (any name of
            ``transformers.activations.ACT2FN``: ``gelu`` for BERT, ``gelu_new`` for ALBERT).
        hidden_dropout_prob: dropout on embeddings and block outputs.
        attention_probs_dropout_prob: dropout on the attention probabilities.
        classifier_dropout: dropout before downstream classifiers (``None``: ``hidden_dropout_prob``).
        max_position_embeddings: longest sequence the position embeddings cover.
        type_vocab_size: number of segment ids (2 in BERT, 1 in RoBERTa).
        use_task_id: add a task-type embedding to the input embeddings (ERNIE 2.0's task ids;
            transformers' ``ErnieConfig`` field of the same name); the models then take ``task_type_ids``.
        task_type_vocab_size: number of task ids (ERNIE's 3) when ``use_task_id``.
        pad_token_id: id of the padding token.
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: standard deviation of the normal initialisation.
        tie_word_embeddings: share the MLM decoder weight with the token embeddings.
        embedding_size: embedding width E; ``None`` = H, no projection (ALBERT sets 128).
        layer_sharing: ``none``, ``all``, ``attention`` or ``ffn`` (cross-layer sharing).
        position_embedding_type: ``learned`` or ``sinusoidal``.
        pad_aware_positions: count positions over non-padding tokens only (RoBERTa).
        position_embedding_type: ``learned``, ``sinusoidal``, ``rotary`` (no table: queries and keys are
            rotated by their positions in every attention layer, RoPE as in ModernBERT) or ``alibi`` (no table:
            each head's scores get -slope * |i - j|, symmetric as in MosaicBERT; Press et al. 2022's slopes).
        rope_theta: rotary base of the global (``full_attention``) layers (10,000 in RoFormer, 160,000 in
            ModernBERT).
        local_rope_theta: rotary base of the local (``sliding_attention``) layers (``None``: ``rope_theta``).
        norm_position: ``post`` (BERT: ``x = norm(x + f(x))``) or ``pre`` (``x = x + f(norm(x))``, a final norm
            after the last layer; the first layer's attention reads the normalized embeddings directly).
        norm_type: ``layer_norm`` or ``rms_norm`` (every norm of the model).
        norm_bias: whether the norms have a bias (ModernBERT: none).
        feed_forward_type: ``plain`` (``act(x W1) W2``), ``geglu`` or ``swiglu`` (``(act(x W) * x V) W2``, with
            ``hidden_act`` a GELU or SiLU; ``intermediate_size`` is the width of each branch).
        attention_bias / mlp_bias: biases of the Q, K, V, O projections / of the feed-forward layers.
        layer_types: per layer ``full_attention`` (global) or ``sliding_attention`` (local: a token attends to the
            tokens within ``local_attention_window // 2`` positions of it). ``None``: every layer global, unless
            ``global_attention_every_n_layers`` is set.
        local_attention_window: width of the local window (ModernBERT's ``local_attention``, 128: 64 each side).
        global_attention_every_n_layers: when ``layer_types`` is ``None``, layer i is global when
            ``i % n == 0`` and local otherwise (ModernBERT: 3).
        pooler_activation: activation of the pooler (``tanh`` in BERT; ModernBERT's classifier head: ``gelu``).
        pooler_norm: a norm after the pooler's activation (ModernBERT's head).
        classifier_pooling: the pooler reads the first token (``cls``) or the mean of the real tokens (``mean``).
        head_activation: activation of the MLM head's transform (``None``: ``hidden_act``).
        head_bias: bias of the dense layer of the MLM head and the pooler.
        decoder_bias: bias of the MLM decoder (the vocabulary projection).
        pretraining_tasks: objectives of ``Bert18ForPreTraining``, from ``PRETRAINING_TASKS`` (at most one
            of ``mlm`` and ``plm``).
        task_loss_weights: weight of each task's loss in the sum (missing tasks weigh 1.0).
        sentence_reordering_max_segments: m of ERNIE 2.0's sentence reordering: a paragraph is cut into 1
            to m segments and shuffled, and the head classifies the order among the sum over k <= m of
            k! classes (m = 3: 9). Read only when ``sentence_reordering`` is a task.
        long_pooling: how ``Bert18ForLongSequenceClassification`` combines a document's chunk vectors:
            ``concat`` (``max_chunks`` slots, empty ones zero), ``mean``, ``max``, ``attention``
            (learned weights over the chunks) or ``lstm`` (a bidirectional LSTM over them, in order).
        max_chunks: hard limit on the chunks of one document in that model (memory, and the
            ``concat`` width); a document with more is an error.
        chunk_batch_size: encode at most this many chunks per pass of the encoder (``None``: all of a
            batch at once); in training each pass is recomputed in the backward pass, so activation
            memory is bounded by one pass.
        unpad_inputs: with ``sdpa`` or ``flash_attention_2`` attention, run the encoder on the real
            tokens of a batch only (no work on padding; packed rows kept apart by variable-length
            attention). Outputs are padded back, equal to the padded computation's.
        sparse_prediction: when MLM labels are given, project only the labelled positions onto the
            vocabulary (the loss is the same; ``prediction_logits`` / ``logits`` are then [targets, vocab],
            in the order of ``labels != -100``). Without labels every position is scored. Off by default,
            as in transformers (ModernBERT's ``sparse_prediction``): tools that index the logits with the
            ``[batch, length]`` label mask (``run_mlm.py``'s metrics, ``Trainer.predict``) need the full
            ``[batch, length, vocab]`` logits. bert18's pretraining recipes turn it on for speed.
    """

    model_type = "bert18"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    use_task_id: bool = False
    task_type_vocab_size: int = 3
    pad_token_id: int | None = 0
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    embedding_size: int | None = None
    layer_sharing: str = "none"
    position_embedding_type: str = "learned"
    pad_aware_positions: bool = False
    pretraining_tasks: list[str] | tuple[str, ...] = ("mlm", "nsp")
    task_loss_weights: dict[str, float | int] | None = None
    sentence_reordering_max_segments: int = DEFAULT_REORDERING_SEGMENTS
    long_pooling: str = "mean"
    max_chunks: int = 16
    chunk_batch_size: int | None = None
    unpad_inputs: bool = True
    sparse_prediction: bool = False
    rope_theta: float | int = 10_000.0
    local_rope_theta: float | int | None = None
    norm_position: str = "post"
    norm_type: str = "layer_norm"
    norm_bias: bool = True
    feed_forward_type: str = "plain"
    attention_bias: bool = True
    mlp_bias: bool = True
    layer_types: list[str] | tuple[str, ...] | None = None
    local_attention_window: int | None = None
    global_attention_every_n_layers: int | None = None
    pooler_activation: str = "tanh"
    pooler_norm: bool = False
    classifier_pooling: str = "cls"
    head_activation: str | None = None
    head_bias: bool = True
    decoder_bias: bool = True

    def __post_init__(self, **kwargs):
        if not _LOADING.get():  # a user's typo (hiden_size=64) would otherwise be saved silently
            self.check_keys(kwargs, "Bert18Config")
        super().__post_init__(**kwargs)
        self.pretraining_tasks = list(self.pretraining_tasks)
        n = self.global_attention_every_n_layers
        if self.layer_types is None and n is not None and n >= 1:
            self.layer_types = [
                "full_attention" if i % n == 0 else "sliding_attention" for i in range(self.num_hidden_layers)
            ]
        if self.layer_types is not None:
            self.layer_types = list(self.layer_types)
        self.check()

    def layer_type(self, layer: int) -> str:
        """``full_attention`` or ``sliding_attention``: the attention of layer ``layer``."""
        return "full_attention" if self.layer_types is None else self.layer_types[layer]

    @property
    def has_local_attention(self) -> bool:
        """Whether some layer attends within a local window."""
        return self.layer_types is not None and "sliding_attention" in self.layer_types

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> "Bert18Config":
        """As ``PreTrainedConfig.from_dict``; keys this version does not know (a config written by
        another bert18 version) are kept as attributes, as transformers does, not refused."""
        token = _LOADING.set(True)
        try:
            return super().from_dict(config_dict, **kwargs)
        finally:
            _LOADING.reset(token)

    @classmethod
    def valid_keys(cls) -> list[str]:
        """Every keyword a Bert18Config takes: its fields, PreTrainedConfig's, and a few token ids."""
        return sorted({f.name for f in dataclasses.fields(cls) if f.init} | _BASE_KWARGS)

    @classmethod
    def check_keys(cls, keys: Any, source: str) -> None:
        """Raise a ``ValueError`` for the first key that is no ``Bert18Config`` keyword, naming the closest."""
        valid = cls.valid_keys()
        for key in keys:
            if key not in valid:
                close = difflib.get_close_matches(str(key), valid, n=1) or [k for k in valid if str(key) in k][:1]
                hint = f"; did you mean {close[0]!r}?" if close else "; see help(bert18.Bert18Config)"
                raise ValueError(f"{source}: unknown config key {key!r}{hint}")

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "Bert18Config":
        """The published configuration ``name`` (see ``PRESETS``), with ``overrides`` on top."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def effective_embedding_size(self) -> int:
        """Width E of the embedding tables (``hidden_size`` when not factorized)."""
        return self.hidden_size if self.embedding_size is None else self.embedding_size

    def check(self) -> None:
        """Raise a ``ValueError`` naming the field and the fix for any inconsistent combination.

        Runs when the config is built and again when a model is built from it, so a field changed
        after construction is caught too.
        """
        positive = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "task_type_vocab_size",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.type_vocab_size < 0:
            raise ValueError(f"type_vocab_size must be >= 0 (0: no segment embeddings), got {self.type_vocab_size}")
        self._check_modern_options()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}); head counts that divide it: "
                f"{[n for n in range(1, 65) if self.hidden_size % n == 0]}"
            )
        if self.embedding_size is not None and not 0 < self.embedding_size <= self.hidden_size:
            raise ValueError(
                f"embedding_size ({self.embedding_size}) must lie in 1..hidden_size ({self.hidden_size}); "
                "use None for unfactorized embeddings"
            )
        if self.layer_sharing not in LAYER_SHARING_MODES:
            raise ValueError(f"layer_sharing must be one of {LAYER_SHARING_MODES}, got {self.layer_sharing!r}")
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"position_embedding_type must be one of {POSITION_EMBEDDING_TYPES}, got "
                f"{self.position_embedding_type!r} (transformers' 'absolute' is bert18's 'learned')"
            )
        if self.hidden_act not in ACT2FN:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not an activation of transformers.activations.ACT2FN")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
            p = getattr(self, name)
            if p is not None and not 0 <= p < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {p}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id ({self.pad_token_id}) must be an id below vocab_size ({self.vocab_size})")
        if self.pad_aware_positions and self.pad_token_id is None:
            raise ValueError("pad_aware_positions needs pad_token_id to tell padding from tokens")
        check_pretraining_tasks(self.pretraining_tasks)
        if not 1 <= self.sentence_reordering_max_segments <= MAX_REORDERING_SEGMENTS:
            raise ValueError(
                f"sentence_reordering_max_segments must lie in 1..{MAX_REORDERING_SEGMENTS} (ERNIE 2.0: "
                f"3), got {self.sentence_reordering_max_segments}"
            )
        for task, weight in (self.task_loss_weights or {}).items():
            if task not in self.pretraining_tasks:
                raise ValueError(
                    f"task_loss_weights names {task!r}, which is not in pretraining_tasks {self.pretraining_tasks}"
                )
            if weight < 0:
                raise ValueError(f"task_loss_weights[{task!r}] must be >= 0, got {weight}")
        if self.long_pooling not in LONG_POOLING_MODES:
            raise ValueError(f"long_pooling must be one of {LONG_POOLING_MODES}, got {self.long_pooling!r}")
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be a positive integer, got {self.max_chunks}")
        if self.chunk_batch_size is not None and self.chunk_batch_size < 1:
            raise ValueError(f"chunk_batch_size must be a positive integer or None, got {self.chunk_batch_size}")

    def _check_modern_options(self) -> None:
        """The fields of the modern encoder (positions, norms, feed-forward, local attention, heads)."""
        for name, allowed in (
            ("norm_position", NORM_POSITIONS),
            ("norm_type", NORM_TYPES),
            ("feed_forward_type", FEED_FORWARD_TYPES),
            ("classifier_pooling", CLASSIFIER_POOLING_MODES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.feed_forward_type != "plain" and self.hidden_act not in GATED_ACTIVATIONS[self.feed_forward_type]:
            raise ValueError(
                f"feed_forward_type={self.feed_forward_type!r} gates with hidden_act, which must be one of "
                f"{GATED_ACTIVATIONS[self.feed_forward_type]}, got {self.hidden_act!r}"
            )
        if self.position_embedding_type == "rotary":
            head_dim = self.hidden_size // self.num_attention_heads
            if head_dim % 2:
                raise ValueError(
                    f"rotary positions rotate pairs of dimensions: the head size hidden_size / "
                    f"num_attention_heads = {head_dim} must be even"
                )
        for name in ("rope_theta", "local_rope_theta"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive rotary base, got {value}")
        if self.global_attention_every_n_layers is not None and self.global_attention_every_n_layers < 1:
            raise ValueError(
                f"global_attention_every_n_layers must be >= 1 or None, got {self.global_attention_every_n_layers}"
            )
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_hidden_layers:
                raise ValueError(
                    f"layer_types lists {len(self.layer_types)} layers, num_hidden_layers is "
                    f"{self.num_hidden_layers}: give one entry per layer"
                )
            unknown = sorted(set(self.layer_types) - set(LAYER_TYPES))
            if unknown:
                raise ValueError(f"layer_types holds {unknown}; each entry must be one of {LAYER_TYPES}")
        if self.has_local_attention and (self.local_attention_window is None or self.local_attention_window < 2):
            raise ValueError(
                f"layer_types has sliding_attention layers: set local_attention_window to the window "
                f"width (>= 2, ModernBERT: 128), got {self.local_attention_window}"
            )
        for name in ("pooler_activation", "head_activation"):
            value = getattr(self, name)
            if value is not None and value not in ACT2FN:
                raise ValueError(f"{name} {value!r} is not an activation of transformers.activations.ACT2FN")

    def task_loss_weight(self, task: str) -> float:
        """Weight of ``task``'s loss in the pretraining sum (1.0 unless set)."""
        return float((self.task_loss_weights or {}).get(task, 1.0))


__all__ = [
    "Bert18Config",
    "PRESETS",
    "PRETRAINING_TASKS",
    "PretrainingTask",
    "SEQUENCE_TASKS",
    "check_pretraining_tasks",
    "sentence_reordering_classes",
    "tasks_where",
    "LAYER_SHARING_MODES",
    "POSITION_EMBEDDING_TYPES",
    "LONG_POOLING_MODES",
    "NORM_POSITIONS",
    "NORM_TYPES",
    "FEED_FORWARD_TYPES",
    "LAYER_TYPES",
    "CLASSIFIER_POOLING_MODES",
]

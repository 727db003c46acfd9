"""Parameter accounting by component (seed question 13), shared layers counted once.

``count_parameters("bert-base")`` reproduces the seed's arithmetic for BERT-base:

- embedding tables: (30522 + 512 + 2) x 768 = 23,835,648
- attention per layer: 768 x 64 x 3 x 12 + 768 x 768 = 2,359,296 (Q, K, V, O weights)
- feed-forward per layer: 768 x 3072 x 2 = 4,718,592
- weight matrices: 23,835,648 + 12 x (2,359,296 + 4,718,592) = 108,770,304

and the full count of transformers' ``BertModel`` (109,482,240) once biases, LayerNorms and the
pooler are added; ``count_parameters("modernbert-base")`` equals transformers' ``ModernBertModel``
(149,014,272: no segment or position tables, bias-free GeGLU layers, pre-norm). Counting walks the
real modules of a bert18 model (built on the ``meta`` device
when given a config: no memory is allocated), so it cannot drift from what the model holds.
"""

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from .configuration_bert18 import Bert18Config
from .modeling_bert18 import Bert18Model

# (pattern on the parameter name without the "bert18." prefix, component). First match wins; a
# tuple of components splits one fused matrix evenly. The table keeps this order.
_COMPONENTS = [
    (r"embeddings\.word_embeddings\.weight", "token embeddings"),
    (r"embeddings\.token_type_embeddings\.weight", "segment embeddings"),
    (r"embeddings\.task_type_embeddings\.weight", "task-type embeddings"),
    (r"embeddings\.position_embeddings\.weight", "position embeddings"),
    (r"embeddings\.projection\.weight", "factorized projection E->H"),
    (r"encoder\.attention\.\d+\.query\.weight", "attention Q"),
    (r"encoder\.attention\.\d+\.key\.weight", "attention K"),
    (r"encoder\.attention\.\d+\.value\.weight", "attention V"),
    (r"encoder\.attention\.\d+\.output\.weight", "attention output O"),
    (r"encoder\.feed_forward\.\d+\.intermediate\.weight", "feed-forward H->I"),
    (r"encoder\.feed_forward\.\d+\.output\.weight", "feed-forward I->H"),
    (r"(embeddings|encoder)\..*layer_norm\.(weight|bias)", "LayerNorms"),
    (r"(embeddings|encoder)\..*\.bias", "biases"),
    (r"pooler\..*", "pooler"),
]
_EMBEDDING_TABLES = ("token embeddings", "segment embeddings", "task-type embeddings", "position embeddings")
_ATTENTION = ("attention Q", "attention K", "attention V", "attention output O")
_FEED_FORWARD = ("feed-forward H->I", "feed-forward I->H")
_WEIGHT_MATRICES = (*_EMBEDDING_TABLES, "factorized projection E->H", *_ATTENTION, *_FEED_FORWARD)


@dataclass
class ParameterReport:
    """Parameter counts of one model by component; ``str(report)`` prints the table.

    Attributes:
        components: count per component, in model order (heads as ``head: <name>``).
        total: every distinct parameter (a shared block or tied weight counted once).
        attention_blocks / feed_forward_blocks: distinct blocks (1 when shared across layers).
        num_layers: layers the blocks are applied over.
    """

    components: dict[str, int]
    total: int
    attention_blocks: int
    feed_forward_blocks: int
    num_layers: int
    name: str = ""
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, component: str) -> int:
        return self.components[component]

    @property
    def embedding_tables(self) -> int:
        """Token + segment + position tables (the seed's "embedding layer")."""
        return sum(self.components.get(c, 0) for c in _EMBEDDING_TABLES)

    @property
    def attention_weights_per_layer(self) -> int:
        """Q, K, V and O weight matrices of one attention block."""
        return sum(self.components.get(c, 0) for c in _ATTENTION) // self.attention_blocks

    @property
    def feed_forward_weights_per_layer(self) -> int:
        """The two weight matrices of one feed-forward block."""
        return sum(self.components.get(c, 0) for c in _FEED_FORWARD) // self.feed_forward_blocks

    @property
    def weight_matrices(self) -> int:
        """Embedding tables and weight matrices, no biases, LayerNorms, pooler or heads (seed Q13)."""
        return sum(self.components.get(c, 0) for c in _WEIGHT_MATRICES)

    def __str__(self) -> str:
        width = max(len(c) for c in [*self.components, "weight matrices (seed Q13)"]) + 2
        title = f"parameters of {self.name}" if self.name else "parameters"
        lines = [title, f"{'component':<{width}}{'parameters':>14}{'share':>9}"]
        for component, count in self.components.items():
            lines.append(f"{component:<{width}}{count:>14,}{count / self.total:>9.1%}")
        lines.append(f"{'total':<{width}}{self.total:>14,}")
        lines.append("")
        lines.append(f"{'embedding tables':<{width}}{self.embedding_tables:>14,}")
        lines.append(f"{'attention per layer':<{width}}{self.attention_weights_per_layer:>14,}")
        lines.append(f"{'feed-forward per layer':<{width}}{self.feed_forward_weights_per_layer:>14,}")
        lines.append(f"{'weight matrices (seed Q13)':<{width}}{self.weight_matrices:>14,}")
        lines.extend(self.notes)
        return "\n".join(lines)


def count_parameters(
    config_or_model: Bert18Config | nn.Module | str, add_pooling_layer: bool | None = None
) -> ParameterReport:
    """Count the parameters of a bert18 model, a config (its ``Bert18Model``) or a preset name, by
    component. Heads of a task model appear as ``head: <module name>``.

    ``add_pooling_layer`` (configs and presets): whether the counted ``Bert18Model`` has its pooler. ``None``
    counts what transformers' bare model of that family holds: BERT's dense + tanh pooler is part of
    ``BertModel``; ModernBERT's head (``pooler_norm``) belongs to its task models, not ``ModernBertModel``."""
    name = ""
    if isinstance(config_or_model, str):
        name = config_or_model
        config_or_model = Bert18Config.from_preset(config_or_model)
    if isinstance(config_or_model, Bert18Config):
        if add_pooling_layer is None:
            add_pooling_layer = not config_or_model.pooler_norm
        with torch.device("meta"):
            model = Bert18Model(config_or_model, add_pooling_layer=add_pooling_layer)
    elif isinstance(config_or_model, nn.Module) and isinstance(getattr(config_or_model, "config", None), Bert18Config):
        model = config_or_model
    else:
        raise TypeError(f"expected a Bert18Config, a bert18 model or a preset name, got {type(config_or_model)}")
    name = name or type(model).__name__
    components = {
        c if isinstance(c, str) else part: 0 for _, c in _COMPONENTS for part in ((c,) if isinstance(c, str) else c)
    }
    for param_name, param in model.named_parameters():  # yields shared and tied tensors once
        local = param_name.removeprefix("bert18.")
        component = next((c for pattern, c in _COMPONENTS if re.fullmatch(pattern, local)), None)
        if component is None:  # a head: "lm_head.dense.weight" -> "lm_head", "heads.nsp.weight" -> "nsp"
            parts = local.split(".")
            component = f"head: {parts[1] if parts[0] == 'heads' else parts[0]}"
        parts = (component,) if isinstance(component, str) else component
        for part in parts:
            components[part] = components.get(part, 0) + param.numel() // len(parts)
    components = {c: n for c, n in components.items() if n}
    encoder = model.get_submodule("bert18.encoder" if hasattr(model, "bert18") else "encoder")
    report = ParameterReport(
        components=components,
        total=sum(components.values()),
        attention_blocks=len(encoder.attention),
        feed_forward_blocks=len(encoder.feed_forward),
        num_layers=encoder.num_layers,
        name=name,
    )
    if report.attention_blocks < report.num_layers or report.feed_forward_blocks < report.num_layers:
        report.notes.append(
            f"shared layers: {report.attention_blocks} attention and {report.feed_forward_blocks} feed-forward "
            f"block(s) applied over {report.num_layers} layers, each counted once"
        )
    if getattr(model.config, "tie_word_embeddings", False) and model.get_output_embeddings() is not None:
        report.notes.append("MLM decoder weight tied to the token embeddings: counted once, under token embeddings")
    return report


__all__ = ["ParameterReport", "count_parameters"]

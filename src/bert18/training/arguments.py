"""The arguments of a pretraining recipe, and the parser both recipe families read YAML plus overrides with.

The two recipe families are parallel: a recipe is one flat YAML mapping whose keys are the fields of

- pretraining (``bert18 pretrain``, ``PretrainRecipe``): ``PretrainModelArguments``,
  ``PretrainDataArguments``, ``MaskingArguments``, ``PretrainRunArguments`` and
  ``transformers.TrainingArguments``;
- fine-tuning (``bert18 finetune``, ``FinetuneRecipe`` in ``finetune_arguments``):
  ``FinetuneModelArguments``, ``FinetuneDataArguments``, ``RunArguments`` and
  ``transformers.TrainingArguments``,

so every Trainer option works as it does in transformers' own examples. ``RunArguments`` (the
output folder, the model card's language and license, the optimizer) is shared; pretraining adds
``plot`` and ``phases``, which fine-tuning refuses by name. ``--key=value`` overrides on the command
line win over the YAML. Parsing goes through transformers' ``HfArgumentParser``: the YAML values
become the parser's defaults, so they get the same type conversion as command-line values
(``learning_rate: 1e-4``, which YAML reads as a string, becomes a float) and ``--help`` lists every
field with its help text. Choice fields are typed ``Literal[...]``: the parser offers and checks
their choices on the command line, and ``check_literals`` checks values from YAML or Python, both
failing with ``<key> must be one of ...; got ...``.

The former names (``ModelArguments``, ``DataArguments``, ``Recipe``, ``parse_recipe``, ...) remain
as aliases of the pretraining ones.
"""

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from transformers import HfArgumentParser, TrainingArguments

from ..collators.knowledge import level_schedule, normalised_levels
from ..collators.mlm import MLM_GRANULARITIES as GRANULARITIES
from ..configuration_bert18 import PRESETS, PRETRAINING_TASKS, Bert18Config, check_pretraining_tasks
from ..data.prepare import PACKING_MODES
from .optim import OPTIMIZERS

MASKING_MODES = (*GRANULARITIES, "knowledge")
# Choice fields' types; the tuples above stay the names other modules (and the help texts) read.
Preset = Literal[tuple(PRESETS)]
MaskingMode = Literal[MASKING_MODES]
PackingMode = Literal[PACKING_MODES]
Optimizer = Literal[OPTIMIZERS]
TokenizerAlgorithm = Literal["wordpiece", "bpe", "unigram"]
TokenizerStyle = Literal["bert", "roberta"]


def json_value(value: Any, name: str, expected: type[dict] | type[list]) -> Any:
    """A mapping or list given in YAML, or as a JSON string on the command line."""
    kind = "a mapping" if expected is dict else "a list"
    if value is None or isinstance(value, expected):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} must be {kind} (in YAML) or a JSON string of one, got {value!r}") from error
    if not isinstance(parsed, expected):
        raise ValueError(f"{name} must be {kind}, got {parsed!r}")
    return parsed


def _check_range(name: str, value: float, low: float, high: float, what: str, closed: bool = False) -> None:
    """``value`` in (low, high), or [low, high] when ``closed``; else a ValueError naming ``name`` and its range."""
    inside = low <= value <= high if closed else low < value < high
    if not inside:
        bounds = f"[{low}, {high}]" if closed else f"({low}, {high})"
        raise ValueError(f"{name} must lie in {bounds} ({what}), got {value}")


def _check_positive(name: str, value: int, what: str) -> None:
    if value < 1:
        raise ValueError(f"{name} must be a positive integer ({what}), got {value}")


def check_training_arguments(training: TrainingArguments) -> None:
    """What TrainingArguments accepts but cannot mean: checked when a recipe is read, before anything is written."""
    if training.max_steps == 0 or training.max_steps < -1:
        raise ValueError(
            f"max_steps must be a positive number of optimizer steps, or -1 to train num_train_epochs; "
            f"got {training.max_steps}"
        )
    if training.max_steps == -1 and not training.num_train_epochs > 0:
        raise ValueError(f"num_train_epochs must be positive (or set max_steps), got {training.num_train_epochs}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        _check_positive(name, getattr(training, name), "at least 1")


def json_mapping(value: dict | str | None, name: str) -> dict | None:
    """A mapping given in YAML, or as a JSON string of one on the command line (``None`` stays ``None``)."""
    return json_value(value, name, dict)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """``value`` among ``choices``, or a ValueError naming ``name``, the choices and the value."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def check_literals(arguments: Any) -> None:
    """Every ``Literal[...]`` field of the dataclass ``arguments`` holds one of its choices.

    The parser checks choices given on the command line; values from a YAML recipe (the parser's
    defaults, which argparse does not check) and from Python arrive here, in ``__post_init__``."""
    for item in fields(arguments):
        if get_origin(item.type) is Literal:
            check_choice(item.name, getattr(arguments, item.name), get_args(item.type))


@dataclass
class PretrainModelArguments:
    """Which model to pretrain, and with which vocabulary."""

    preset: Preset = field(default="tiny", metadata={"help": f"architecture preset: {', '.join(PRESETS)}"})
    config_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Bert18Config fields over the preset, e.g. {hidden_size: 128, num_hidden_layers: 4} "
            "(a JSON object on the command line)"
        },
    )
    pretraining_tasks: list[str] | None = field(
        default=None, metadata={"help": f"tasks to train (default: the preset's); from {', '.join(PRETRAINING_TASKS)}"}
    )
    task_loss_weights: dict | str | None = field(
        default=None, metadata={"help": "weight of each task's loss, e.g. {mlm: 1.0, sop: 0.5} (default 1 each)"}
    )
    task_schedule: list | str | None = field(
        default=None,
        metadata={
            "help": "ERNIE 2.0 continual multi-task learning: stages [{step: 0, tasks: [mlm]}, {step: 2000, "
            "tasks: [mlm, sop], weights: {sop: 0.5}}, ...]; tasks outside the stage weigh 0 "
            "(bert18.training.schedules; a JSON list on the command line)"
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "continue pretraining this checkpoint (bert18, or BERT/RoBERTa/ALBERT converted on the fly) "
            "instead of starting from random weights"
        },
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "tokenizer folder or Hub id; default: model_name_or_path's, else one trained on the corpus"},
    )
    tokenizer_algorithm: TokenizerAlgorithm = field(
        default="wordpiece", metadata={"help": "wordpiece, bpe or unigram (when trained)"}
    )
    tokenizer_vocab_size: int = field(default=30522, metadata={"help": "vocabulary size to train, specials included"})
    tokenizer_style: TokenizerStyle = field(
        default="bert", metadata={"help": "special tokens: bert ([CLS]) or roberta (<s>)"}
    )
    tokenizer_lowercase: bool = field(default=True, metadata={"help": "lowercase when training the vocabulary"})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "eager, sdpa or flash_attention_2 (default: transformers' choice)"}
    )

    def __post_init__(self):
        check_literals(self)
        self.config_overrides = json_mapping(self.config_overrides, "config_overrides") or {}
        Bert18Config.check_keys(self.config_overrides, "config_overrides")  # before anything is written
        self.task_loss_weights = json_mapping(self.task_loss_weights, "task_loss_weights")
        self.task_schedule = json_value(self.task_schedule, "task_schedule", list)
        if self.pretraining_tasks is not None:  # one name ("mlm") is a list of one task, not of its letters
            self.pretraining_tasks = check_pretraining_tasks(self.pretraining_tasks)


@dataclass
class PretrainDataArguments:
    """The corpus and how it becomes pretraining examples."""

    corpus: str = field(
        default="builtin",
        metadata={"help": "'builtin' (standard-library documentation), a file, folder or Hub dataset name"},
    )
    corpus_config_name: str | None = field(default=None, metadata={"help": "configuration of a Hub dataset"})
    text_column: str = field(default="text", metadata={"help": "the column holding the text"})
    max_documents: int | None = field(default=None, metadata={"help": "use only the first N documents (quick runs)"})
    validation_fraction: float = field(
        default=0.02, metadata={"help": "share of documents held out for evaluation (0: no evaluation set)"}
    )
    max_length: int = field(default=128, metadata={"help": "longest example in tokens, special tokens included"})
    packing: PackingMode = field(
        default="full_sentences",
        metadata={
            "help": "rows without sentence tasks: full_sentences (RoBERTa, across documents), doc_sentences, "
            "or packed_documents (several documents per row, kept apart by the attention)"
        },
    )
    short_seq_prob: float = field(default=0.1, metadata={"help": "share of sentence pairs with a short target length"})
    mine_phrases: bool = field(default=False, metadata={"help": "mine phrases (NPMI) for knowledge masking"})
    phrase_min_count: int = field(default=5, metadata={"help": "minimum count of a mined phrase"})
    phrase_mining_documents: int | None = field(
        default=100_000, metadata={"help": "mine phrases on the first N training documents (counts live in memory)"}
    )
    capitalized_entities: bool = field(
        default=False, metadata={"help": "treat runs of capitalized words as entities for knowledge masking"}
    )
    entity_lexicon: str | None = field(
        default=None, metadata={"help": "a text file of entities, one per line, masked as units"}
    )
    span_column: str | None = field(
        default=None,
        metadata={
            "help": "a corpus column of knowledge spans per document ([{start, end, kind}], characters; "
            "e.g. gold entities: bert18.data.chinese)"
        },
    )
    word_column: str | None = field(
        default=None,
        metadata={
            "help": "a corpus column of word spans per document ([[start, end], ...]): words for whole-word "
            "and knowledge masking when the tokenizer splits text into characters (Chinese)"
        },
    )
    num_proc: int | None = field(default=None, metadata={"help": "processes for data preparation"})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "stream the corpus (files read incrementally, or a Hub dataset with streaming=True) and "
            "prepare it as it is read: memory independent of the corpus size; needs max_steps"
        },
    )
    stream_window: int = field(
        default=256,
        metadata={
            "help": "streaming: documents (sentence tasks) or packed rows read at a time, shuffled together; "
            "sentence-pair negatives come from the same window"
        },
    )

    def __post_init__(self):
        check_literals(self)
        if self.stream_window < 1:
            raise ValueError(f"stream_window must be at least 1, got {self.stream_window}")
        if self.max_length < 4:
            raise ValueError(
                f"max_length must leave room for special tokens and text: at least 4, got {self.max_length}"
            )
        if not 0 <= self.short_seq_prob <= 1:
            raise ValueError(f"short_seq_prob must lie in [0, 1], got {self.short_seq_prob}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.max_documents is not None and self.max_documents < 2:
            raise ValueError(f"max_documents must be at least 2, got {self.max_documents}")


@dataclass
class MaskingArguments:
    """How the MLM collator picks and replaces tokens (ignored without the mlm task)."""

    masking: MaskingMode = field(
        default="token", metadata={"help": f"unit of masking: {', '.join(MASKING_MODES)} (ERNIE phrases/entities)"}
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "share of tokens to predict"})
    mask_replace_prob: float = field(default=0.8, metadata={"help": "share of predicted tokens replaced by [MASK]"})
    random_replace_prob: float = field(default=0.1, metadata={"help": "share replaced by a random token"})
    max_ngram: int = field(default=3, metadata={"help": "largest n of ngram masking"})
    span_p: float = field(default=0.2, metadata={"help": "geometric parameter of span lengths (SpanBERT)"})
    max_span: int = field(default=10, metadata={"help": "longest masked span"})
    knowledge_levels: dict | str | None = field(
        default=None,
        metadata={
            "help": "probabilities of basic/phrase/entity masking, drawn per row, e.g. "
            "{basic: 1, entity: 1} (default: equal)"
        },
    )
    knowledge_schedule: dict | str | None = field(
        default=None,
        metadata={
            "help": "ERNIE's stages by optimizer step instead: {first step: levels}, e.g. "
            "{0: {basic: 1}, 2000: {phrase: 1}, 4000: {entity: 1}}"
        },
    )
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "pad batch lengths to a multiple"})
    dupe_factor: int | None = field(
        default=None,
        metadata={
            "help": "static masking as the original BERT: masks drawn once at preparation, this many copies "
            "of each row (BERT: 10); default none: dynamic masking, fresh masks every epoch"
        },
    )

    def __post_init__(self):
        check_literals(self)
        if self.dupe_factor is not None and self.dupe_factor < 1:
            raise ValueError(
                f"dupe_factor must be a positive integer (or unset for dynamic masking), got {self.dupe_factor}"
            )
        self.knowledge_levels = json_mapping(self.knowledge_levels, "knowledge_levels")
        # Checked here, when the recipe is read, not at the first batch after the output folder is written.
        _check_range("mlm_probability", self.mlm_probability, 0, 1, "the share of tokens to predict")
        _check_range("mask_replace_prob", self.mask_replace_prob, 0, 1, "a share", closed=True)
        _check_range("random_replace_prob", self.random_replace_prob, 0, 1, "a share", closed=True)
        if self.mask_replace_prob + self.random_replace_prob > 1:
            raise ValueError(
                f"mask_replace_prob + random_replace_prob must be at most 1, got "
                f"{self.mask_replace_prob} + {self.random_replace_prob}"
            )
        _check_positive("max_ngram", self.max_ngram, "the longest n-gram, in words (ALBERT: 3)")
        _check_positive("max_span", self.max_span, "the longest span, in words (SpanBERT: 10)")
        if not 0 < self.span_p <= 1:
            raise ValueError(f"span_p must lie in (0, 1] (the geometric parameter; SpanBERT: 0.2), got {self.span_p}")
        if self.pad_to_multiple_of is not None:
            _check_positive("pad_to_multiple_of", self.pad_to_multiple_of, "a length multiple such as 8")
        if self.knowledge_levels is not None:
            try:
                normalised_levels(self.knowledge_levels)
            except ValueError as error:
                raise ValueError(f"knowledge_levels: {error}") from None
        self.knowledge_schedule = json_mapping(self.knowledge_schedule, "knowledge_schedule")
        if self.knowledge_schedule is not None:
            if self.knowledge_levels is not None:
                raise ValueError(
                    "knowledge_levels (a level per row) and knowledge_schedule (a level per step) "
                    "exclude each other: set one"
                )
            try:
                level_schedule(self.knowledge_schedule, "step")
                # integer steps, whether from YAML or a JSON string, so a resumed run compares equal
                self.knowledge_schedule = {int(k): dict(v) for k, v in self.knowledge_schedule.items()}
            except (ValueError, TypeError) as error:
                raise ValueError(f"knowledge_schedule: {error}") from None


@dataclass
class RunArguments:
    """What happens around training, in both recipe families: an existing output folder, the model
    card's language and license, the optimizer."""

    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "replace what output_dir holds (a different or finished run)"}
    )
    language: str | None = field(default=None, metadata={"help": "language of the data, for the model card"})
    license: str | None = field(default=None, metadata={"help": "license of the model, for the model card"})
    optimizer: Optimizer = field(
        default="trainer",
        metadata={
            "help": f"{' or '.join(OPTIMIZERS)}: the Trainer's own (TrainingArguments.optim, AdamW by default) "
            "or LAMB as ALBERT and NVIDIA's BERT use it (bert18.training.optim)"
        },
    )

    def __post_init__(self):
        check_literals(self)


@dataclass
class PretrainRunArguments(RunArguments):
    """``RunArguments`` and what only pretraining does around training: the per-task plot, phases, warm-ups."""

    plot: bool = field(default=True, metadata={"help": "write task_curves.png (per-task loss and accuracy)"})
    phases: list | str | None = field(
        default=None,
        metadata={
            "help": "train in phases, each a mapping of the keys that change, e.g. [{max_length: 128, "
            "max_steps: 900000}, {max_length: 512, max_steps: 100000}] (BERT's two sequence "
            "lengths); later phases carry the optimizer state (bert18.training.phases)"
        },
    )
    sequence_length_warmup: dict | str | None = field(
        default=None,
        metadata={
            "help": "train on rows cut to a length growing linearly over the first steps, e.g. {start: 64, "
            "steps: 1000} (Li et al. 2022; DeepSpeed's seqlen curriculum; bert18.training.warmup)"
        },
    )
    batch_size_warmup: dict | str | None = field(
        default=None,
        metadata={
            "help": "micro-batches of rows per device growing linearly over the first steps, e.g. {start: 4, "
            "steps: 1000}, to per_device_train_batch_size (ModernBERT; bert18.training.warmup)"
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.phases = json_value(self.phases, "phases", list)
        self.sequence_length_warmup = json_value(self.sequence_length_warmup, "sequence_length_warmup", dict)
        self.batch_size_warmup = json_value(self.batch_size_warmup, "batch_size_warmup", dict)
        warmups = [key for key in ("sequence_length_warmup", "batch_size_warmup") if getattr(self, key) is not None]
        if self.phases and warmups:
            raise ValueError(
                f"{' and '.join(warmups)} with phases: each phase is a new run from step 0, so the warm-up would "
                "start again in every phase; warm up a run without phases (phases are a length schedule already)"
            )


PRETRAIN_DATACLASSES = (
    PretrainModelArguments,
    PretrainDataArguments,
    MaskingArguments,
    PretrainRunArguments,
    TrainingArguments,
)


@dataclass
class PretrainRecipe:
    """A parsed pretraining recipe: one instance of each argument dataclass."""

    model: PretrainModelArguments
    data: PretrainDataArguments
    masking: MaskingArguments
    run: PretrainRunArguments
    training: TrainingArguments

    def identity(self) -> dict[str, Any]:
        """The settings that define the run (model, data, masking, the warm-ups whose schedule decides
        each step's batch), as plain values."""
        warmups = {
            "sequence_length_warmup": self.run.sequence_length_warmup,
            "batch_size_warmup": self.run.batch_size_warmup,
        }
        return {**asdict(self.model), **asdict(self.data), **asdict(self.masking), **warmups}


PRETRAIN_COMMAND = "bert18 pretrain"
# Each recipe family's command and dataclasses (the fine-tuning family registers itself in
# finetune_arguments): a key of the other family is refused by name, not as a misspelling.
RECIPE_FAMILIES: dict[str, tuple[type, ...]] = {PRETRAIN_COMMAND: PRETRAIN_DATACLASSES}


def recipe_keys() -> list[str]:
    """The keys a pretraining recipe accepts."""
    return dataclass_keys(PRETRAIN_DATACLASSES)


def dataclass_keys(dataclass_types: Sequence[type]) -> list[str]:
    """The keys a recipe made of ``dataclass_types`` accepts: every init field of each."""
    return [f.name for dataclass_type in dataclass_types for f in fields(dataclass_type) if f.init]


def _check_keys(
    keys: Sequence[str],
    source: str,
    dataclass_types: Sequence[type] = PRETRAIN_DATACLASSES,
    command: str = PRETRAIN_COMMAND,
) -> None:
    valid = dataclass_keys(dataclass_types)
    for key in keys:
        if key not in valid:
            other = next(
                (name for name, family in RECIPE_FAMILIES.items() if name != command and key in dataclass_keys(family)),
                None,
            )
            if other is not None:  # e.g. plot or masking in a fine-tuning recipe
                raise ValueError(
                    f"{source}: {key!r} is a `{other}` key, which `{command}` does not read: remove it "
                    f"(see `{command} --help`)"
                )
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown recipe key {key!r}{hint} (see `{command} --help`)")


PACKAGED_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped with bert18 (``recipes/configs`` in the repository)."""
    return sorted(path.stem for path in PACKAGED_RECIPES.glob("*.yaml"))


def find_recipe(path_or_name: str | Path) -> Path:
    """A recipe file: the path itself, or the packaged recipe of that name (``tiny-demo``)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    if path.suffix == "" and (packaged := PACKAGED_RECIPES / f"{path.name}.yaml").is_file():
        return packaged
    known = ", ".join(packaged_recipes())
    raise FileNotFoundError(f"recipe not found: {path_or_name} (a YAML file, or one of {known})")


def load_recipe_yaml(
    path_or_name: str | Path, dataclass_types: Sequence[type] = PRETRAIN_DATACLASSES, command: str = PRETRAIN_COMMAND
) -> dict[str, Any]:
    """The mapping of a recipe (a YAML file or a packaged recipe's name), its keys checked against
    ``dataclass_types`` (the pretraining recipe's by default)."""
    path = find_recipe(path_or_name)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:  # the file and the line, not a parser traceback
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}{where}: not valid YAML ({problem})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a recipe is a mapping of keys to values, got {type(values).__name__}")
    _check_keys(list(values), str(path), dataclass_types, command)
    return values


def recipe_parser(
    dataclass_types: Sequence[type] = PRETRAIN_DATACLASSES, command: str = PRETRAIN_COMMAND
) -> HfArgumentParser:
    """The ``HfArgumentParser`` of a recipe family (pretraining by default); errors raise instead of exiting."""
    return HfArgumentParser(dataclass_types, prog=command, exit_on_error=False)


def pretrain_parser() -> HfArgumentParser:
    """The parser of ``bert18 pretrain`` (``--help`` lists every key)."""
    return recipe_parser(PRETRAIN_DATACLASSES, PRETRAIN_COMMAND)


_INVALID_CHOICE = re.compile(r"invalid choice: (?P<value>.*) \(choose from (?P<choices>.*)\)$")


def _parse_error(error: argparse.ArgumentError) -> ValueError:
    """argparse's error for a command-line value, in the recipe's words (``mode must be one of ...``)."""
    name = (error.argument_name or "").split("/")[0].lstrip("-")
    if name and (match := _INVALID_CHOICE.search(error.message)):
        choices = match["choices"].replace("'", "")
        return ValueError(f"command line: {name} must be one of {choices}; got {match['value']}")
    return ValueError(f"command line: {f'--{name}: ' if name else ''}{error.message}")


def parse_dataclasses(
    dataclass_types: Sequence[type],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: dict[str, Any] | None = None,
    command: str = PRETRAIN_COMMAND,
) -> list[Any]:
    """One instance of each of ``dataclass_types`` from a recipe: the YAML at ``path`` or a packaged
    recipe's name (optional), then ``values``, then ``--key=value`` ``overrides``.

    The parser behind ``parse_recipe`` and the fine-tuning recipe's ``parse_finetune_recipe``.
    Unknown keys raise a ``ValueError`` naming the closest valid key.
    """
    defaults = load_recipe_yaml(path, dataclass_types, command) if path is not None else {}
    _check_keys(list(values or {}), "arguments", dataclass_types, command)
    defaults.update(values or {})
    overrides = _merge_mapping_overrides(defaults, overrides)
    parser = recipe_parser(dataclass_types, command)
    parser.set_defaults(**defaults)
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(args=list(overrides), return_remaining_strings=True)
    except argparse.ArgumentError as error:
        raise _parse_error(error) from None
    if remaining:
        _check_keys(
            [item.split("=", 1)[0].lstrip("-") for item in remaining if item.startswith("--")],
            "command line",
            dataclass_types,
            command,
        )
        raise ValueError(f"command line: cannot parse {' '.join(remaining)} (overrides are --key=value)")
    for arguments in parsed:
        if isinstance(arguments, TrainingArguments):
            check_training_arguments(arguments)
    return parsed


# Mappings whose command-line value is merged key by key into the recipe's (an override of some
# keys), instead of replacing it: `--config_overrides='{"num_hidden_layers": 1}'` on tiny-demo keeps
# its hidden_size. Other mappings (knowledge_levels, a probability table) are replaced whole.
MERGED_MAPPINGS = ("config_overrides", "task_loss_weights")


def _merge_mapping_overrides(defaults: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """Fold ``--key=JSON`` / ``--key JSON`` overrides of ``MERGED_MAPPINGS`` into ``defaults``
    (merged over the recipe's mapping); the other overrides are returned for the parser."""
    remaining, items, i = [], list(overrides), 0
    while i < len(items):
        item = items[i]
        name, equals, value = item.lstrip("-").partition("=")
        if item.startswith("--") and name in MERGED_MAPPINGS:
            if not equals:
                if i + 1 >= len(items):
                    raise ValueError(f"command line: --{name} needs a value (a JSON object)")
                i, value = i + 1, items[i + 1]
            given = json_mapping(value, name) or {}
            recipe = json_mapping(defaults.get(name), name) or {}
            defaults[name] = {**recipe, **given}
        else:
            remaining.append(item)
        i += 1
    return remaining


def run_recipe_command(
    argv: Sequence[str] | None,
    command: str,
    parser: Callable[[], HfArgumentParser],
    run: Callable[[str | None, list[str]], int],
) -> int:
    """The body of ``bert18 pretrain`` / ``bert18 finetune``: ``[RECIPE] [--key=value ...]`` handed
    to ``run(path, overrides)``, ``--help`` listing every key, bad recipes an error and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        parser().print_help()
        return 0
    path = argv.pop(0) if argv and not argv[0].startswith("-") else None
    try:
        return run(path, argv)
    except (ValueError, OSError) as error:  # bad input (files, folders, permissions, no network): one line
        print(f"{command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started (the Trainer saves a checkpoint once it has)
        print(
            f"{command}: interrupted; rerun the same command to start again (with --resume_from_checkpoint=true "
            "once a checkpoint was saved)",
            file=sys.stderr,
        )
        return 130


def parse_pretrain_recipe(
    path: str | Path | None = None, overrides: Sequence[str] = (), **values: Any
) -> PretrainRecipe:
    """Parse a pretraining recipe: the YAML at ``path`` or a packaged recipe's name (optional), then
    ``values``, then ``--key=value`` ``overrides``.

    Unknown keys raise a ``ValueError`` naming the closest valid key.
    """
    return PretrainRecipe(*parse_dataclasses(PRETRAIN_DATACLASSES, path, overrides, values, PRETRAIN_COMMAND))


# The names the pretraining family had before fine-tuning became its peer (public API: README, scripts).
ModelArguments = PretrainModelArguments
DataArguments = PretrainDataArguments
Recipe = PretrainRecipe
RECIPE_DATACLASSES = PRETRAIN_DATACLASSES
parse_recipe = parse_pretrain_recipe


__all__ = [
    "DataArguments",
    "MaskingArguments",
    "ModelArguments",
    "PRETRAIN_DATACLASSES",
    "PretrainDataArguments",
    "PretrainModelArguments",
    "PretrainRecipe",
    "PretrainRunArguments",
    "RECIPE_DATACLASSES",
    "Recipe",
    "RunArguments",
    "check_choice",
    "check_literals",
    "dataclass_keys",
    "find_recipe",
    "load_recipe_yaml",
    "packaged_recipes",
    "json_mapping",
    "json_value",
    "parse_dataclasses",
    "parse_pretrain_recipe",
    "parse_recipe",
    "pretrain_parser",
    "recipe_keys",
    "recipe_parser",
    "run_recipe_command",
]

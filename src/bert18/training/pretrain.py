"""The pretraining recipe: a recipe YAML (plus ``--key=value`` overrides) in, a Hub-ready checkpoint out.

``bert18 pretrain recipe.yaml`` and ``recipes/pretrain.py recipe.yaml`` (the form ``accelerate
launch`` runs) both end here. One run:

1. checks the output folder: a folder that already holds a run is refused unless the recipe says
   ``resume_from_checkpoint`` (``true`` for the last checkpoint, or a path) or
   ``overwrite_output_dir``; a resumed run must agree with the saved one on the model, data and
   masking settings (``bert18_recipe.yaml``);
2. loads the corpus and holds out ``validation_fraction`` of its documents;
3. takes the tokenizer given, or trains one on the training documents (the main process trains and
   saves it under ``tokenizer/``, the others and any resumed run load that copy);
4. builds ``Bert18Config`` from the preset, the overrides and the tokenizer, and
   ``Bert18ForPreTraining`` (random or ``model_name_or_path``);
5. prepares the examples (``prepare_pretraining_dataset``; ``SentencePairDataset`` when a task needs
   sentence pairs or documents) on the main process first, so the others read the cache;
6. trains with ``Bert18Trainer`` and the ``PretrainingCollator``, logging each task's loss and
   accuracy; Ctrl-C saves a checkpoint and stops;
7. saves the model (safetensors, code with ``auto_map``), the tokenizer, the model card, the metrics
   and ``task_curves.png`` into the output folder, and pushes to the Hub when ``push_to_hub``.
"""

import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import datasets
import torch
import transformers
import yaml
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainingArguments
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from ..collators import (
    KnowledgeMaskingCollator,
    LevelScheduleCallback,
    PretrainingCollator,
    StaticMasks,
    static_masking,
)
from ..configuration_bert18 import Bert18Config
from ..data import (
    DOCUMENT_TASKS,
    LexiconMatcher,
    PhraseMiner,
    SentencePairDataset,
    load_corpus,
    prepare_pretraining_dataset,
    stream_sentence_pairs,
)
from ..files import folder_written_whole
from ..modeling_bert18 import Bert18ForPreTraining
from ..tokenization import train_tokenizer
from .arguments import Recipe, parse_recipe, recipe_parser, run_recipe_command
from .callbacks import InterruptCallback, TaskProgressCallback, format_metrics, plot_task_curves
from .optim import trainer_optimizer
from .phases import FINAL_OPTIMIZER, run_phases
from .schedules import TaskSchedule, TaskScheduleCallback
from .streaming import configure_streaming
from .trainer import Bert18Trainer
from .warmup import TRUNCATABLE_TASKS, BatchSizeWarmup, SequenceLengthWarmup

logger = logging.getLogger(__name__)

RECIPE_FILE = "bert18_recipe.yaml"
TOKENIZER_FOLDER = "tokenizer"


@dataclass
class PretrainingRun:
    """Everything a recipe builds, ready for ``trainer.train``."""

    recipe: Recipe
    trainer: Bert18Trainer
    tokenizer: PreTrainedTokenizerBase
    config: Bert18Config
    train_dataset: Any
    eval_dataset: Any | None
    resume_from_checkpoint: str | None


def _say(training: TrainingArguments, message: str) -> None:
    if training.process_index == 0:
        print(message, flush=True)


# What a start that failed before its first checkpoint leaves in output_dir: the resolved recipe,
# the trained tokenizer (saved whole or not at all) and TensorBoard's folder. A folder holding
# nothing else never blocks a rerun of the same recipe.
LEFTOVERS = frozenset({RECIPE_FILE, TOKENIZER_FOLDER, "runs"})


def _resume_checkpoint(training: TrainingArguments) -> str | None:
    """``resume_from_checkpoint`` resolved: ``true``/``last`` to the last checkpoint of output_dir."""
    value = training.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "no", "none", ""):
        return None
    if str(value).lower() in ("true", "last", "yes"):
        last = get_last_checkpoint(training.output_dir) if Path(training.output_dir).is_dir() else None
        if last is None:
            raise ValueError(f"resume_from_checkpoint={value}, but {training.output_dir} holds no checkpoint-N folder "
                             "to resume from: run without resume_from_checkpoint to start (again) from the beginning")
        return last
    if not Path(value).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint folder at {value}")
    return str(value)


class RunRecipe(Protocol):
    """What ``check_output_dir`` and ``write_recipe`` read: the pretraining ``Recipe`` and the
    fine-tuning ``FinetuneRecipe`` both have it."""

    training: TrainingArguments
    run: Any  # has overwrite_output_dir

    def identity(self) -> dict[str, Any]: ...


def clear_output_dir(training: TrainingArguments) -> None:
    """Empty ``output_dir`` (``overwrite_output_dir``): the main process removes it, the others wait."""
    with training.main_process_first(desc="clearing output_dir"):
        if training.process_index == 0 and Path(training.output_dir).is_dir():
            shutil.rmtree(training.output_dir)


def check_output_dir(recipe: RunRecipe) -> str | None:
    """Refuse to write into a folder holding another run; return the checkpoint to resume from, if any.

    Shared by the pretraining and fine-tuning recipes (any ``RunRecipe``). Runs on every process
    (reads only); with ``overwrite_output_dir`` the main process empties the
    folder and the others wait for it.
    """
    training = recipe.training
    output = Path(training.output_dir)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"output_dir {output} is a file, not a folder: choose another output_dir")
    if output.is_dir() and not os.access(output, os.W_OK | os.X_OK):
        raise PermissionError(f"output_dir {output} is not writable: choose another output_dir")
    if not output.exists() and not os.access(_existing_parent(output), os.W_OK | os.X_OK):
        raise PermissionError(f"output_dir {output} cannot be created in {_existing_parent(output)} (not writable): "
                              "choose another output_dir")
    if recipe.run.overwrite_output_dir:
        clear_output_dir(training)
        return _resume_checkpoint(training) if output.is_dir() else None
    resume = _resume_checkpoint(training)
    held = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    saved = output / RECIPE_FILE
    differences = _recipe_differences(recipe, saved)
    if held and resume is None:
        listing = f"{', '.join(held[:5])}{', ...' if len(held) > 5 else ''}"
        if set(held) <= LEFTOVERS:  # a start that failed before its first checkpoint
            if differences:
                raise FileExistsError(
                    f"output_dir {output} holds the start of another run that failed before its first checkpoint "
                    f"({differences}): pass --overwrite_output_dir=true to replace it, or choose another output_dir")
            logger.info("output_dir %s holds what a failed start of this recipe left (%s): starting again", output,
                        listing)
            return None
        has_checkpoint = get_last_checkpoint(str(output)) is not None
        raise FileExistsError(
            f"output_dir {output} already holds a run ({listing}): "
            + ("pass --resume_from_checkpoint=true to continue it, " if has_checkpoint else "")
            + "pass --overwrite_output_dir=true to replace it, or choose another output_dir"
        )
    if resume is not None and differences:
        raise ValueError(f"output_dir {output} holds a different run: {differences}; "
                         "resume with the same settings, or pass --overwrite_output_dir=true")
    return resume


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _recipe_differences(recipe: RunRecipe, saved: Path) -> str:
    """How the recipe saved at ``saved`` differs from ``recipe`` on what defines a run ("" when it does not)."""
    if not saved.is_file():
        return ""
    try:
        before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        return f"{saved.name} is unreadable"
    now = recipe.identity()
    changed = sorted(key for key in now if key in before and before[key] != now[key])
    return ", ".join(f"{key} was {before[key]!r}, now {now[key]!r}" for key in changed)


def finished_checkpoint(checkpoint: str | None, training: TrainingArguments) -> int | None:
    """The step of ``checkpoint`` when it already reached the end of training (``max_steps``, or
    ``num_train_epochs`` when there is no step limit), else None. The Trainer, resumed from such a
    checkpoint, would train one step more."""
    state_file = Path(checkpoint or "") / "trainer_state.json"
    if checkpoint is None or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text(encoding="utf-8"))
    step, epoch = int(state.get("global_step", 0)), float(state.get("epoch") or 0.0)
    if training.max_steps > 0:
        return step if step >= training.max_steps else None
    return step if epoch >= training.num_train_epochs - 1e-6 else None


def check_hub(training: TrainingArguments) -> None:
    """With ``push_to_hub``, the Hub must answer and know the user before anything is trained or written."""
    if not training.push_to_hub:
        return
    from huggingface_hub import HfApi

    try:
        HfApi(token=training.hub_token).whoami()
    except Exception as error:  # offline, no token, a bad token: all say the same to the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"push_to_hub: cannot reach the Hugging Face Hub as a logged-in user ({reason}); "
                         "log in with `hf auth login`, or set push_to_hub=false and push the saved folder later"
                         ) from None


def write_recipe(recipe: RunRecipe) -> Path:
    """The resolved recipe, reusable as one (``bert18 pretrain output_dir/bert18_recipe.yaml``)."""
    values = {**recipe.identity(), **asdict(recipe.run), **recipe.training.to_dict()}
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    path = Path(recipe.training.output_dir) / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def _held_out(text: str, fraction: float) -> bool:
    """Whether a streamed document is held out: a stable hash of its text below ``fraction``."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def _keep(text: str, fraction: float, held: bool) -> bool:
    return _held_out(text, fraction) == held


def stream_documents(recipe: Recipe) -> tuple[datasets.IterableDataset, datasets.IterableDataset | None]:
    """The streamed corpus (``streaming: true``), split into training and held-out documents.

    A stream cannot be counted or split by position, so a document is held out when a hash of its
    text falls below ``validation_fraction``: the same documents on every rank, pass and resume.
    Evaluating reads the corpus through to find them."""
    data = recipe.data
    kwargs = {"name": data.corpus_config_name} if data.corpus_config_name else {}
    corpus = _open_corpus(data, streaming=True, shard_seed=recipe.training.seed, **kwargs)
    if data.max_documents is not None:
        corpus = corpus.take(data.max_documents)
    if data.validation_fraction == 0:
        return corpus, None
    split = [corpus.filter(functools.partial(_keep, fraction=data.validation_fraction, held=held),
                           input_columns="text") for held in (False, True)]
    return split[0], split[1]


def _open_corpus(data: Any, **kwargs: Any) -> Any:
    """``load_corpus`` for the recipe's corpus; a Hub name without a network is one line, not a traceback."""
    try:
        return load_corpus(data.corpus, text_column=data.text_column, **kwargs)
    except ConnectionError as error:
        raise ValueError(f"corpus {data.corpus!r} is no local file or folder, and the Hub cannot be reached "
                         f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): give a local "
                         "path, or load the dataset once where there is a network (it is then cached)") from None


def load_documents(recipe: Recipe) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The corpus, split into training and held-out documents (streamed: ``stream_documents``)."""
    data = recipe.data
    if data.streaming:
        return stream_documents(recipe)
    kwargs = {"name": data.corpus_config_name} if data.corpus_config_name else {}
    corpus = _open_corpus(data, **kwargs)
    if data.max_documents is not None:
        corpus = corpus.select(range(min(data.max_documents, len(corpus))))
    if data.validation_fraction == 0:
        return corpus, None
    held_out = max(1, round(data.validation_fraction * len(corpus)))
    if held_out >= len(corpus):
        raise ValueError(f"validation_fraction {data.validation_fraction} leaves no training document "
                         f"out of {len(corpus)}")
    split = corpus.train_test_split(test_size=held_out, seed=recipe.training.seed)
    return split["train"], split["test"]


def load_or_train_tokenizer(recipe: Recipe, documents: datasets.Dataset) -> PreTrainedTokenizerBase:
    """The tokenizer named in the recipe, or the run's own, trained once and shared by every process."""
    model = recipe.model
    source = model.tokenizer_name_or_path or model.model_name_or_path
    if source is not None:
        return AutoTokenizer.from_pretrained(source)
    training = recipe.training
    folder = Path(training.output_dir) / TOKENIZER_FOLDER
    with training.main_process_first(desc="training the tokenizer"):
        if not folder.is_dir():  # the main process trains; a resumed run keeps its vocabulary
            count = "a stream of" if isinstance(documents, datasets.IterableDataset) else len(documents)
            _say(training, f"training a {model.tokenizer_algorithm} vocabulary of {model.tokenizer_vocab_size} "
                           f"on {count} documents -> {folder}")
            tokenizer = train_tokenizer(documents, algorithm=model.tokenizer_algorithm,
                                        vocab_size=model.tokenizer_vocab_size, lowercase=model.tokenizer_lowercase,
                                        special_tokens_style=model.tokenizer_style,
                                        model_max_length=recipe.data.max_length, show_progress=False)
            build_config(recipe, tokenizer)  # what the vocabulary decides, checked before anything is written
            with folder_written_whole(folder) as staging:  # an interrupted save never leaves half a tokenizer
                tokenizer.save_pretrained(staging)
        return AutoTokenizer.from_pretrained(folder)


def _config_overrides(recipe: Recipe) -> dict[str, Any]:
    model = recipe.model
    # Pretraining scores only the masked positions (Bert18Trainer's metrics read either shape); a
    # recipe can still set sparse_prediction: false in config_overrides.
    overrides = {"sparse_prediction": True, **model.config_overrides}
    if model.pretraining_tasks is not None:
        overrides["pretraining_tasks"] = list(model.pretraining_tasks)
    if model.task_loss_weights is not None:
        overrides["task_loss_weights"] = dict(model.task_loss_weights)
    return overrides


def build_config(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> Bert18Config:
    """The model's config: preset, overrides and tasks, with the vocabulary checked against the tokenizer."""
    overrides = _config_overrides(recipe)
    if recipe.model.model_name_or_path is not None:
        config = transformers.AutoConfig.from_pretrained(recipe.model.model_name_or_path)
        if config.model_type != Bert18Config.model_type:
            from ..convert import config_from_transformers

            config = config_from_transformers(config.to_dict())
        for key, value in overrides.items():
            setattr(config, key, value)
        config.check()
    else:
        # A model trained from scratch gets the tokenizer's vocabulary unless the recipe fixes vocab_size.
        overrides.setdefault("vocab_size", len(tokenizer))
        overrides.setdefault("pad_token_id", tokenizer.pad_token_id)
        config = Bert18Config.from_preset(recipe.model.preset, **overrides)
    if config.vocab_size < len(tokenizer):
        raise ValueError(
            f"the model's vocab_size is {config.vocab_size} but the tokenizer has {len(tokenizer)} tokens: ids "
            f"past {config.vocab_size - 1} would index outside the embeddings; use the tokenizer the model was "
            "trained with, or leave vocab_size out of config_overrides so it follows the tokenizer"
        )
    if recipe.data.max_length > config.max_position_embeddings:
        raise ValueError(f"max_length {recipe.data.max_length} exceeds max_position_embeddings "
                         f"{config.max_position_embeddings} of the model")
    return config


def _knowledge_lexicon(recipe: Recipe, documents: datasets.Dataset) -> LexiconMatcher | None:
    data = recipe.data
    lexicon = None
    if data.mine_phrases:
        sample = documents
        if isinstance(documents, datasets.IterableDataset):  # the first documents of the stream
            sample = documents.take(data.phrase_mining_documents) if data.phrase_mining_documents else documents
            texts = (row["text"] for row in sample)
        else:
            if data.phrase_mining_documents is not None and len(documents) > data.phrase_mining_documents:
                sample = documents.select(range(data.phrase_mining_documents))
            texts = sample["text"]
        words = sample[data.word_column] if data.word_column else None  # Chinese: phrases of words, not characters
        lexicon = PhraseMiner(min_count=data.phrase_min_count).fit(texts, words).matcher()
    if data.entity_lexicon is not None:
        entries = [line.strip() for line in Path(data.entity_lexicon).read_text(encoding="utf-8").splitlines()]
        lexicon = lexicon or LexiconMatcher([])
        for entry in filter(None, entries):
            lexicon.add(entry, "entity")
    return lexicon


def build_examples(recipe: Recipe, documents: datasets.Dataset | None, tokenizer: PreTrainedTokenizerBase,
                   config: Bert18Config, lexicon: LexiconMatcher | None, seed: int, repeat: bool = False) -> Any:
    """Packed rows, or sentence pairs when a task needs documents (``DOCUMENT_TASKS``); from a
    stream, a stream of them (endless with ``repeat``, for training with ``max_steps``)."""
    if documents is None:
        return None
    data = recipe.data
    if isinstance(documents, datasets.IterableDataset):
        grouped = bool(DOCUMENT_TASKS & set(config.pretraining_tasks))
        prepared = prepare_pretraining_dataset(
            documents, tokenizer, config, max_length=data.max_length, lexicon=lexicon,
            capitalized_entities=data.capitalized_entities, packing=data.packing, seed=seed,
            window=data.stream_window, repeat=repeat and not grouped, span_column=data.span_column,
            word_column=data.word_column,
        )
        if grouped:
            return stream_sentence_pairs(prepared, tokenizer, config, max_length=data.max_length, seed=seed,
                                         short_seq_prob=data.short_seq_prob, window=data.stream_window, repeat=repeat)
        return prepared
    prepared = prepare_pretraining_dataset(
        documents, tokenizer, config, max_length=data.max_length, lexicon=lexicon,
        capitalized_entities=data.capitalized_entities, packing=data.packing, num_proc=data.num_proc,
        span_column=data.span_column, word_column=data.word_column,
    )
    if DOCUMENT_TASKS & set(config.pretraining_tasks):
        return SentencePairDataset(prepared, tokenizer, config, max_length=data.max_length, seed=seed,
                                   short_seq_prob=data.short_seq_prob)
    return prepared


def build_collator(recipe: Recipe, tokenizer: PreTrainedTokenizerBase, config: Bert18Config,
                   seed: int) -> PretrainingCollator:
    masking = recipe.masking
    if "mlm" not in config.pretraining_tasks:
        return PretrainingCollator(tokenizer, config, seed=seed, pad_to_multiple_of=masking.pad_to_multiple_of)
    shared = dict(mlm_probability=masking.mlm_probability, mask_replace_prob=masking.mask_replace_prob,
                  random_replace_prob=masking.random_replace_prob, seed=seed,
                  pad_to_multiple_of=masking.pad_to_multiple_of)
    if masking.masking == "knowledge":
        if masking.knowledge_schedule is not None:  # ERNIE's stages by step (LevelScheduleCallback keeps count)
            knowledge = KnowledgeMaskingCollator(tokenizer, levels=masking.knowledge_schedule, schedule_unit="step",
                                                 **shared)
        else:
            knowledge = KnowledgeMaskingCollator(tokenizer, levels=masking.knowledge_levels, **shared)
        return PretrainingCollator(tokenizer, config, masking=knowledge, seed=seed,
                                   pad_to_multiple_of=masking.pad_to_multiple_of)
    return PretrainingCollator(tokenizer, config, granularity=masking.masking, max_ngram=masking.max_ngram,
                               span_p=masking.span_p, max_span=masking.max_span, **shared)


def _check_static_masking(recipe: Recipe, config: Bert18Config) -> None:
    """Static masking (``dupe_factor``) stores masked copies of packed MLM rows: refuse what it cannot."""
    if recipe.masking.dupe_factor is None:
        return
    if recipe.data.streaming:
        raise ValueError("dupe_factor (static masking) stores every masked copy: it needs a prepared map-style "
                         "dataset, not streaming: true (a stream is masked dynamically)")
    if "mlm" not in config.pretraining_tasks:
        raise ValueError("dupe_factor (static masking) draws MLM masks, and 'mlm' is not among the pretraining tasks")
    if DOCUMENT_TASKS & set(config.pretraining_tasks):
        raise ValueError(f"dupe_factor (static masking) stores packed MLM rows; the tasks "
                         f"{sorted(DOCUMENT_TASKS & set(config.pretraining_tasks))} draw sentence pairs per epoch: "
                         "use dynamic masking (unset dupe_factor) or MLM-only tasks")


def _sequence_length_warmup(recipe: Recipe, config: Bert18Config) -> SequenceLengthWarmup | None:
    """The recipe's ``sequence_length_warmup``, checked against the tasks and the row length."""
    if recipe.run.sequence_length_warmup is None:
        return None
    warmup = SequenceLengthWarmup.from_recipe(recipe.run.sequence_length_warmup, recipe.data.max_length)
    warmup.check_tasks(list(config.pretraining_tasks), TRUNCATABLE_TASKS)
    return warmup


def _batch_size_warmup(recipe: Recipe) -> BatchSizeWarmup | None:
    """The recipe's ``batch_size_warmup``, for a prepared (map-style) training set."""
    if recipe.run.batch_size_warmup is None:
        return None
    if recipe.data.streaming:
        raise ValueError("batch_size_warmup orders a prepared dataset's examples itself; a stream keeps its own "
                         "order: unset batch_size_warmup or set streaming=false")
    return BatchSizeWarmup.from_recipe(recipe.run.batch_size_warmup, recipe.training.per_device_train_batch_size)


def build_model(recipe: Recipe, config: Bert18Config) -> Bert18ForPreTraining:
    """Random weights from ``config``, or ``model_name_or_path``'s with the recipe's overrides (new
    task heads start random)."""
    model_args = recipe.model
    transformers.set_seed(recipe.training.seed)
    if model_args.model_name_or_path is not None:
        model = Bert18ForPreTraining.from_pretrained(model_args.model_name_or_path, **_config_overrides(recipe))
    else:
        model = Bert18ForPreTraining(config)
    if model_args.attn_implementation is not None:
        model.set_attn_implementation(model_args.attn_implementation)
    return model


def build_pretraining(recipe: Recipe) -> PretrainingRun:
    """Steps 1-5 of the module docstring: a ``PretrainingRun`` whose trainer is ready to train."""
    training = recipe.training
    check_hub(training)
    if recipe.data.streaming and training.max_steps <= 0:
        raise ValueError("streaming: a stream has no length to count epochs in; set max_steps (e.g. --max_steps=1000)")
    if recipe.data.streaming and (recipe.data.span_column or recipe.data.word_column):
        raise ValueError("span_column and word_column are read from a map-style corpus; the streamed corpus carries "
                         "its text only: set streaming=false, or leave those keys unset")
    resume = check_output_dir(recipe)
    train_documents, eval_documents = load_documents(recipe)
    tokenizer = load_or_train_tokenizer(recipe, train_documents)
    config = build_config(recipe, tokenizer)
    seed = training.data_seed if training.data_seed is not None else training.seed
    collator = build_collator(recipe, tokenizer, config, seed)  # checks the masking settings before any write
    if recipe.masking.knowledge_schedule is not None and training.dataloader_persistent_workers:
        raise ValueError("knowledge_schedule counts batches per epoch in the data loader's workers, which "
                         "persistent workers never restart: set dataloader_persistent_workers=false")
    schedule = TaskSchedule(recipe.model.task_schedule, config) if recipe.model.task_schedule else None
    length_warmup = _sequence_length_warmup(recipe, config)
    batch_warmup = _batch_size_warmup(recipe)
    _check_static_masking(recipe, config)
    if training.process_index == 0:
        write_recipe(recipe)
    if recipe.masking.masking == "knowledge" and not (recipe.data.mine_phrases or recipe.data.entity_lexicon
                                                      or recipe.data.capitalized_entities or recipe.data.span_column):
        logger.warning("knowledge masking without mine_phrases, entity_lexicon, capitalized_entities or "
                       "span_column has no spans: it masks whole words only")
    with training.main_process_first(desc="data preparation"):
        lexicon = _knowledge_lexicon(recipe, train_documents)
        train_dataset = build_examples(recipe, train_documents, tokenizer, config, lexicon, seed, repeat=True)
        eval_dataset = build_examples(recipe, eval_documents, tokenizer, config, lexicon, seed)
    if recipe.masking.dupe_factor is not None:  # BERT's static masks: drawn once, dupe_factor copies
        with training.main_process_first(desc="static masks"):
            train_dataset = static_masking(train_dataset, collator.masking, recipe.masking.dupe_factor,
                                           num_proc=recipe.data.num_proc)
            if eval_dataset is not None:
                eval_dataset = static_masking(eval_dataset, collator.masking, 1)
        collator = PretrainingCollator(tokenizer, config, masking=StaticMasks(tokenizer), seed=seed,
                                       pad_to_multiple_of=recipe.masking.pad_to_multiple_of)
    model = build_model(recipe, config)
    training.remove_unused_columns = False  # the collator reads word ids, spans and example indices
    progress = TaskProgressCallback(list(config.pretraining_tasks), plot=False)  # the recipe plots after evaluation
    callbacks = [progress, InterruptCallback(), *([TaskScheduleCallback(schedule)] if schedule else [])]
    if isinstance(collator.masking, KnowledgeMaskingCollator) and collator.masking.schedule_unit == "step":
        callbacks.append(LevelScheduleCallback(collator.masking))
    trainer = Bert18Trainer(
        model=model, args=training, train_dataset=train_dataset, eval_dataset=eval_dataset,
        data_collator=collator, processing_class=tokenizer, callbacks=callbacks,
        card_info={"corpus": recipe.data.corpus, "language": recipe.run.language, "license": recipe.run.license},
        optimizer_cls_and_kwargs=trainer_optimizer(recipe.run.optimizer, training),
    )
    trainer.sequence_length_warmup = length_warmup
    trainer.batch_size_warmup = batch_warmup
    progress.progress = next((c for c in trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)), None)
    if recipe.data.streaming:
        configure_streaming(trainer, resume)
    return PretrainingRun(recipe, trainer, tokenizer, config, train_dataset, eval_dataset, resume)


def run_pretraining(recipe: Recipe, initial_optimizer_state: str | Path | None = None,
                    save_optimizer_state: bool = False) -> dict[str, Any]:
    """Build, train, evaluate and save (steps 1-7); returns the final metrics and where things went.

    A recipe with ``phases`` runs each phase in turn (``bert18.training.phases``), which passes the
    previous phase's optimizer state as ``initial_optimizer_state`` and asks each phase to save its
    own at the end (``save_optimizer_state``)."""
    if recipe.run.phases:
        return run_phases(recipe)
    run = build_pretraining(recipe)
    trainer, training = run.trainer, recipe.training
    if (done := finished_checkpoint(run.resume_from_checkpoint, training)) is not None:
        _say(training, f"{run.resume_from_checkpoint} already reached the end of training (step {done}): nothing to "
                       "resume; raise max_steps or num_train_epochs to train further")
        return {"finished_at": done, "checkpoint": run.resume_from_checkpoint}
    trainer.initial_optimizer_state = initial_optimizer_state
    tasks = list(run.config.pretraining_tasks)
    examples = "a stream of" if isinstance(run.train_dataset, datasets.IterableDataset) else len(run.train_dataset)
    _say(training, f"pretraining {run.config.num_hidden_layers}-layer bert18 ({', '.join(tasks)}) on "
                   f"{examples} examples -> {training.output_dir}"
                   + (f", resuming from {run.resume_from_checkpoint}" if run.resume_from_checkpoint else ""))
    result = trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    interrupt = next(c for c in trainer.callback_handler.callbacks if isinstance(c, InterruptCallback))
    if interrupt.interrupted_at is not None:
        checkpoint = Path(training.output_dir) / f"checkpoint-{interrupt.interrupted_at}"
        _say(training, f"interrupted: checkpoint saved at {checkpoint}; continue with --resume_from_checkpoint=true")
        return {"interrupted_at": interrupt.interrupted_at, "checkpoint": str(checkpoint)}
    metrics = dict(result.metrics)
    if run.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    trainer.save_model()
    if save_optimizer_state and trainer.is_world_process_zero():
        torch.save(trainer.optimizer.state_dict(), Path(training.output_dir) / FINAL_OPTIMIZER)
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    trainer.create_model_card()
    outputs = {"model": training.output_dir}
    if trainer.is_world_process_zero():
        if recipe.run.plot and (plot := plot_task_curves(trainer.state.log_history, tasks,
                                                         Path(training.output_dir) / "task_curves.png")):
            outputs["plot"] = str(plot)
        prefix = "eval_" if run.eval_dataset is not None else ""
        _say(training, f"per-task metrics ({'held-out documents' if prefix else 'last training steps'}):\n"
                       + format_metrics(metrics if prefix else _last_train_metrics(trainer), tasks, prefix))
        _say(training, f"saved model, tokenizer, model card and metrics to {training.output_dir}"
                       + (f"; curves in {outputs['plot']}" if "plot" in outputs else ""))
    if training.push_to_hub:
        trainer.push_to_hub()
    return {"metrics": metrics, **outputs}


def _last_train_metrics(trainer: Bert18Trainer) -> dict[str, float]:
    latest: dict[str, float] = {}
    for entry in trainer.state.log_history:
        latest.update({k: v for k, v in entry.items() if k.endswith(("_loss", "_accuracy"))})
    return latest


def main(argv: Sequence[str] | None = None) -> int:
    """``bert18 pretrain [RECIPE.yaml] [--key=value ...]``; ``--help`` lists every key. Exit code 130
    when Ctrl-C stopped the run (its checkpoint saved)."""
    def run(path: str | None, overrides: list[str]) -> int:
        return 130 if "interrupted_at" in run_pretraining(parse_recipe(path, overrides)) else 0

    return run_recipe_command(argv, "bert18 pretrain", recipe_parser, run)


__all__ = ["PretrainingRun", "RunRecipe", "build_pretraining", "check_hub", "check_output_dir", "finished_checkpoint",
           "main", "run_pretraining", "write_recipe"]

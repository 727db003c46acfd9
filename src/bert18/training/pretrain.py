"""The pretraining recipe: a recipe YAML (plus ``--key=value`` overrides) in, a Hub-ready checkpoint out.

``bert18 pretrain recipe.yaml`` and ``recipes/pretrain.py recipe.yaml`` (the form ``accelerate
launch`` runs) both end here. One run:

1. checks the Hub (with ``push_to_hub``) and the output folder (``bert18.training.run``, shared with
   the fine-tuning recipe): a folder that already holds a run is refused unless the recipe says
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

import dataclasses
import functools
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback

from ..collators import (
    KnowledgeMaskingCollator,
    LevelScheduleCallback,
    PretrainingCollator,
    StaticMasks,
    static_masking,
)
from ..configuration_bert18 import Bert18Config
from ..convert import config_from_transformers
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
from .arguments import PretrainRecipe, parse_pretrain_recipe, pretrain_parser, run_recipe_command
from .callbacks import PLOT_FILE, TaskProgressCallback, final_task_metrics, format_metrics, plot_task_curves
from .optim import trainer_optimizer
from .phases import FINAL_OPTIMIZER, run_phases
from .run import (
    RECIPE_FILE,
    TOKENIZER_FOLDER,
    RunCallbacks,
    check_encoder_loaded,
    check_hub,
    check_output_dir,
    interrupted,
    nothing_to_resume,
    push_run,
    save_run,
    say,
    shapes_fit,
    write_recipe,
)
from .schedules import TaskSchedule, TaskScheduleCallback
from .streaming import configure_streaming
from .trainer import Bert18Trainer
from .warmup import TRUNCATABLE_TASKS, BatchSizeWarmup, SequenceLengthWarmup

logger = logging.getLogger(__name__)


@dataclass
class PretrainingRun:
    """Everything a pretraining recipe builds, ready for ``trainer.train`` (``FinetuningRun``'s peer)."""

    recipe: PretrainRecipe
    trainer: Bert18Trainer
    tokenizer: PreTrainedTokenizerBase
    config: Bert18Config
    train_dataset: Any
    eval_dataset: Any | None
    resume_from_checkpoint: str | None
    callbacks: RunCallbacks


def _held_out(text: str, fraction: float) -> bool:
    """Whether a streamed document is held out: a stable hash of its text below ``fraction``."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") < fraction * 2**64


def _keep(text: str, fraction: float, held: bool) -> bool:
    return _held_out(text, fraction) == held


def stream_documents(recipe: PretrainRecipe) -> tuple[datasets.IterableDataset, datasets.IterableDataset | None]:
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
    split = [
        corpus.filter(functools.partial(_keep, fraction=data.validation_fraction, held=held), input_columns="text")
        for held in (False, True)
    ]
    return split[0], split[1]


def _open_corpus(data: Any, **kwargs: Any) -> Any:
    """``load_corpus`` for the recipe's corpus; a Hub name without a network is one line, not a traceback."""
    try:
        return load_corpus(data.corpus, text_column=data.text_column, **kwargs)
    except ConnectionError as error:
        raise ValueError(
            f"corpus {data.corpus!r} is no local file or folder, and the Hub cannot be reached "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): give a local "
            "path, or load the dataset once where there is a network (it is then cached)"
        ) from None


def load_documents(recipe: PretrainRecipe) -> tuple[datasets.Dataset, datasets.Dataset | None]:
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
        raise ValueError(
            f"validation_fraction {data.validation_fraction} leaves no training document out of {len(corpus)}"
        )
    split = corpus.train_test_split(test_size=held_out, seed=recipe.training.seed)
    return split["train"], split["test"]


def load_or_train_tokenizer(recipe: PretrainRecipe, documents: datasets.Dataset) -> PreTrainedTokenizerBase:
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
            say(
                training,
                f"training a {model.tokenizer_algorithm} vocabulary of {model.tokenizer_vocab_size} "
                f"on {count} documents -> {folder}",
            )
            tokenizer = train_tokenizer(
                documents,
                algorithm=model.tokenizer_algorithm,
                vocab_size=model.tokenizer_vocab_size,
                lowercase=model.tokenizer_lowercase,
                special_tokens_style=model.tokenizer_style,
                model_max_length=recipe.data.max_length,
                show_progress=False,
            )
            build_config(recipe, tokenizer)  # what the vocabulary decides, checked before anything is written
            with folder_written_whole(folder) as staging:  # an interrupted save never leaves half a tokenizer
                tokenizer.save_pretrained(staging)
        return AutoTokenizer.from_pretrained(folder)


def _config_overrides(recipe: PretrainRecipe) -> dict[str, Any]:
    model = recipe.model
    # Pretraining scores only the masked positions (Bert18Trainer's metrics read either shape); a
    # recipe can still set sparse_prediction: false in config_overrides.
    overrides = {"sparse_prediction": True, **model.config_overrides}
    if model.pretraining_tasks is not None:
        overrides["pretraining_tasks"] = list(model.pretraining_tasks)
    if model.task_loss_weights is not None:
        overrides["task_loss_weights"] = dict(model.task_loss_weights)
    return overrides


# config keys that change the shape of a checkpoint's weights whatever the rest of the config
_WEIGHT_SIZES = ("hidden_size", "intermediate_size", "embedding_size")


def _check_sizes_fit(config: Bert18Config, overrides: dict[str, Any], source: str) -> None:
    """Refuse, before anything is written or prepared, overrides that resize a checkpoint's weights (a
    recipe written for training from scratch, such as tiny-demo, sets them); ``shapes_fit`` catches the
    rarer cases at loading."""
    old = {key: getattr(config, key, None) for key in _WEIGHT_SIZES}
    new = {**old, **{key: value for key, value in overrides.items() if key in _WEIGHT_SIZES}}
    for sizes in (old, new):  # embedding_size None means hidden_size (no factorization)
        sizes["embedding_size"] = sizes["embedding_size"] or sizes["hidden_size"]
    changed = {key: (old[key], new[key]) for key in _WEIGHT_SIZES if key in overrides and new[key] != old[key]}
    if changed:
        found = ", ".join(f"{key}={new} (the checkpoint has {old})" for key, (old, new) in changed.items())
        raise ValueError(
            f"config_overrides resize {source}'s weights: {found}; leave the size keys out of config_overrides "
            "when continuing from a checkpoint, or start from a recipe that does not set them"
        )


def build_config(recipe: PretrainRecipe, tokenizer: PreTrainedTokenizerBase) -> Bert18Config:
    """The model's config: preset, overrides and tasks, with the vocabulary checked against the tokenizer."""
    overrides = _config_overrides(recipe)
    if recipe.model.model_name_or_path is not None:
        config = transformers.AutoConfig.from_pretrained(recipe.model.model_name_or_path)
        if config.model_type != Bert18Config.model_type:
            config = config_from_transformers(config.to_dict())
        _check_sizes_fit(config, overrides, recipe.model.model_name_or_path)
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
        raise ValueError(
            f"max_length {recipe.data.max_length} exceeds max_position_embeddings "
            f"{config.max_position_embeddings} of the model"
        )
    return config


def _knowledge_lexicon(recipe: PretrainRecipe, documents: datasets.Dataset) -> LexiconMatcher | None:
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


def build_examples(
    recipe: PretrainRecipe,
    documents: datasets.Dataset | None,
    tokenizer: PreTrainedTokenizerBase,
    config: Bert18Config,
    lexicon: LexiconMatcher | None,
    seed: int,
    repeat: bool = False,
) -> Any:
    """Packed rows, or sentence pairs when a task needs documents (``DOCUMENT_TASKS``); from a
    stream, a stream of them (endless with ``repeat``, for training with ``max_steps``)."""
    if documents is None:
        return None
    data = recipe.data
    grouped = bool(DOCUMENT_TASKS & set(config.pretraining_tasks))
    streamed = isinstance(documents, datasets.IterableDataset)
    if streamed:  # read in shuffled windows; endless for training (pairs repeat their own stream)
        source = dict(seed=seed, window=data.stream_window, repeat=repeat and not grouped)
    else:  # prepared whole, with num_proc processes
        source = dict(num_proc=data.num_proc)
    prepared = prepare_pretraining_dataset(
        documents,
        tokenizer,
        config,
        max_length=data.max_length,
        lexicon=lexicon,
        capitalized_entities=data.capitalized_entities,
        packing=data.packing,
        span_column=data.span_column,
        word_column=data.word_column,
        **source,
    )
    if not grouped:
        return prepared
    if streamed:
        return stream_sentence_pairs(
            prepared,
            tokenizer,
            config,
            max_length=data.max_length,
            seed=seed,
            short_seq_prob=data.short_seq_prob,
            window=data.stream_window,
            repeat=repeat,
        )
    return SentencePairDataset(
        prepared, tokenizer, config, max_length=data.max_length, seed=seed, short_seq_prob=data.short_seq_prob
    )


def build_collator(
    recipe: PretrainRecipe, tokenizer: PreTrainedTokenizerBase, config: Bert18Config, seed: int
) -> PretrainingCollator:
    masking = recipe.masking
    if "mlm" not in config.pretraining_tasks:
        return PretrainingCollator(tokenizer, config, seed=seed, pad_to_multiple_of=masking.pad_to_multiple_of)
    shared = dict(
        mlm_probability=masking.mlm_probability,
        mask_replace_prob=masking.mask_replace_prob,
        random_replace_prob=masking.random_replace_prob,
        seed=seed,
        pad_to_multiple_of=masking.pad_to_multiple_of,
    )
    if masking.masking == "knowledge":
        if masking.knowledge_schedule is not None:  # ERNIE's stages by step (LevelScheduleCallback keeps count)
            knowledge = KnowledgeMaskingCollator(
                tokenizer, levels=masking.knowledge_schedule, schedule_unit="step", **shared
            )
        else:
            knowledge = KnowledgeMaskingCollator(tokenizer, levels=masking.knowledge_levels, **shared)
        return PretrainingCollator(
            tokenizer, config, masking=knowledge, seed=seed, pad_to_multiple_of=masking.pad_to_multiple_of
        )
    return PretrainingCollator(
        tokenizer,
        config,
        granularity=masking.masking,
        max_ngram=masking.max_ngram,
        span_p=masking.span_p,
        max_span=masking.max_span,
        **shared,
    )


def _check_static_masking(recipe: PretrainRecipe, config: Bert18Config) -> None:
    """Static masking (``dupe_factor``) stores masked copies of packed MLM rows: refuse what it cannot."""
    if recipe.masking.dupe_factor is None:
        return
    if recipe.data.streaming:
        raise ValueError(
            "dupe_factor (static masking) stores every masked copy: it needs a prepared map-style "
            "dataset, not streaming: true (a stream is masked dynamically)"
        )
    if "mlm" not in config.pretraining_tasks:
        raise ValueError("dupe_factor (static masking) draws MLM masks, and 'mlm' is not among the pretraining tasks")
    if DOCUMENT_TASKS & set(config.pretraining_tasks):
        raise ValueError(
            f"dupe_factor (static masking) stores packed MLM rows; the tasks "
            f"{sorted(DOCUMENT_TASKS & set(config.pretraining_tasks))} draw sentence pairs per epoch: "
            "use dynamic masking (unset dupe_factor) or MLM-only tasks"
        )


def _sequence_length_warmup(recipe: PretrainRecipe, config: Bert18Config) -> SequenceLengthWarmup | None:
    """The recipe's ``sequence_length_warmup``, checked against the tasks and the row length."""
    if recipe.run.sequence_length_warmup is None:
        return None
    warmup = SequenceLengthWarmup.from_recipe(recipe.run.sequence_length_warmup, recipe.data.max_length)
    warmup.check_tasks(list(config.pretraining_tasks), TRUNCATABLE_TASKS)
    return warmup


def _batch_size_warmup(recipe: PretrainRecipe) -> BatchSizeWarmup | None:
    """The recipe's ``batch_size_warmup``, for a prepared (map-style) training set."""
    if recipe.run.batch_size_warmup is None:
        return None
    if recipe.data.streaming:
        raise ValueError(
            "batch_size_warmup orders a prepared dataset's examples itself; a stream keeps its own "
            "order: unset batch_size_warmup or set streaming=false"
        )
    if getattr(recipe.training.accelerator_config, "split_batches", False):
        raise ValueError(
            "batch_size_warmup gives every process its own rows per step; accelerator_config's "
            "split_batches=true cuts one batch across the processes instead: unset one of the two"
        )
    return BatchSizeWarmup.from_recipe(recipe.run.batch_size_warmup, recipe.training.per_device_train_batch_size)


def build_model(recipe: PretrainRecipe, config: Bert18Config) -> Bert18ForPreTraining:
    """Random weights from ``config``, or ``model_name_or_path``'s with the recipe's overrides (new
    task heads start random)."""
    model_args = recipe.model
    transformers.set_seed(recipe.training.seed)
    if model_args.model_name_or_path is not None:
        with shapes_fit(model_args.model_name_or_path, model_args.config_overrides):
            model, loading = Bert18ForPreTraining.from_pretrained(
                model_args.model_name_or_path, output_loading_info=True, **_config_overrides(recipe)
            )
        check_encoder_loaded(loading, model.config, model_args.model_name_or_path, model_args.config_overrides)
    else:
        model = Bert18ForPreTraining(config)
    if model_args.attn_implementation is not None:
        model.set_attn_implementation(model_args.attn_implementation)
    return model


def build_pretraining(recipe: PretrainRecipe, callbacks: Sequence[TrainerCallback] = ()) -> PretrainingRun:
    """Steps 1-5 of the module docstring: a ``PretrainingRun`` whose trainer is ready to train (with
    ``callbacks`` added). The trainer gets a copy of ``recipe.training`` (``remove_unused_columns``
    off): the recipe's own arguments are left as the caller gave them."""
    training = recipe.training
    check_hub(training)
    if recipe.data.streaming and training.max_steps <= 0:
        raise ValueError("streaming: a stream has no length to count epochs in; set max_steps (e.g. --max_steps=1000)")
    if recipe.data.streaming and (recipe.data.span_column or recipe.data.word_column):
        raise ValueError(
            "span_column and word_column are read from a map-style corpus; the streamed corpus carries "
            "its text only: set streaming=false, or leave those keys unset"
        )
    resume = check_output_dir(recipe)
    train_documents, eval_documents = load_documents(recipe)
    tokenizer = load_or_train_tokenizer(recipe, train_documents)
    config = build_config(recipe, tokenizer)
    seed = training.data_seed if training.data_seed is not None else training.seed
    collator = build_collator(recipe, tokenizer, config, seed)  # checks the masking settings before any write
    schedule = TaskSchedule(recipe.model.task_schedule, config) if recipe.model.task_schedule else None
    length_warmup = _sequence_length_warmup(recipe, config)
    batch_warmup = _batch_size_warmup(recipe)
    _check_static_masking(recipe, config)
    if training.process_index == 0:
        write_recipe(recipe)
    if recipe.masking.masking == "knowledge" and not (
        recipe.data.mine_phrases
        or recipe.data.entity_lexicon
        or recipe.data.capitalized_entities
        or recipe.data.span_column
    ):
        logger.warning(
            "knowledge masking without mine_phrases, entity_lexicon, capitalized_entities or "
            "span_column has no spans: it masks whole words only"
        )
    with training.main_process_first(desc="data preparation"):
        lexicon = _knowledge_lexicon(recipe, train_documents)
        train_dataset = build_examples(recipe, train_documents, tokenizer, config, lexicon, seed, repeat=True)
        eval_dataset = build_examples(recipe, eval_documents, tokenizer, config, lexicon, seed)
    if recipe.masking.dupe_factor is not None:  # BERT's static masks: drawn once, dupe_factor copies
        with training.main_process_first(desc="static masks"):
            train_dataset = static_masking(
                train_dataset, collator.masking, recipe.masking.dupe_factor, num_proc=recipe.data.num_proc
            )
            if eval_dataset is not None:
                eval_dataset = static_masking(eval_dataset, collator.masking, 1)
        collator = PretrainingCollator(
            tokenizer,
            config,
            masking=StaticMasks(tokenizer),
            seed=seed,
            pad_to_multiple_of=recipe.masking.pad_to_multiple_of,
        )
    model = build_model(recipe, config)
    # the collator reads word ids, spans and example indices
    args = dataclasses.replace(training, remove_unused_columns=False)
    others = [*([TaskScheduleCallback(schedule)] if schedule else []), *callbacks]
    if isinstance(collator.masking, KnowledgeMaskingCollator) and collator.masking.schedule_unit == "step":
        others.append(LevelScheduleCallback(collator.masking))
    run_callbacks = RunCallbacks(progress=TaskProgressCallback(list(config.pretraining_tasks)), others=others)
    trainer = Bert18Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=run_callbacks.for_trainer(),
        card_info={"corpus": recipe.data.corpus, "language": recipe.run.language, "license": recipe.run.license},
        optimizer_cls_and_kwargs=trainer_optimizer(recipe.run.optimizer, args),
    )
    trainer.sequence_length_warmup = length_warmup
    trainer.batch_size_warmup = batch_warmup
    run_callbacks.install(trainer)
    if recipe.data.streaming:
        configure_streaming(trainer, resume)
    return PretrainingRun(recipe, trainer, tokenizer, config, train_dataset, eval_dataset, resume, run_callbacks)


def run_pretraining(
    recipe: PretrainRecipe,
    initial_optimizer_state: str | Path | None = None,
    save_optimizer_state: bool = False,
    callbacks: Sequence[TrainerCallback] = (),
) -> dict[str, Any]:
    """Build, train, evaluate and save (steps 1-7), with ``callbacks`` added to the trainer's; returns
    the final ``metrics`` and where things went (``model``, ``plot``); after Ctrl-C, ``interrupted_at``
    and the ``checkpoint`` to resume from instead.

    A recipe with ``phases`` runs each phase in turn (``bert18.training.phases``), which passes the
    previous phase's optimizer state as ``initial_optimizer_state`` and asks each phase to save its
    own at the end (``save_optimizer_state``)."""
    if recipe.run.phases:
        return run_phases(recipe, callbacks)
    run = build_pretraining(recipe, callbacks)
    trainer, training = run.trainer, recipe.training
    if (finished := nothing_to_resume(run.resume_from_checkpoint, training)) is not None:
        return finished
    trainer.initial_optimizer_state = initial_optimizer_state
    tasks = list(run.config.pretraining_tasks)
    examples = "a stream of" if isinstance(run.train_dataset, datasets.IterableDataset) else len(run.train_dataset)
    say(
        training,
        f"pretraining {run.config.num_hidden_layers}-layer bert18 ({', '.join(tasks)}) on "
        f"{examples} examples -> {training.output_dir}"
        + (f", resuming from {run.resume_from_checkpoint}" if run.resume_from_checkpoint else ""),
    )
    result = trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    if (stopped := interrupted(run.callbacks, training)) is not None:
        return stopped
    metrics = dict(result.metrics)
    if run.eval_dataset is not None:
        metrics.update(trainer.evaluate())
    if save_optimizer_state and trainer.is_world_process_zero():
        Path(training.output_dir).mkdir(parents=True, exist_ok=True)
        torch.save(trainer.optimizer.state_dict(), Path(training.output_dir) / FINAL_OPTIMIZER)
    save_run(trainer, metrics)
    outputs = {"model": training.output_dir}
    if trainer.is_world_process_zero():
        if recipe.run.plot and (
            plot := plot_task_curves(trainer.state.log_history, tasks, Path(training.output_dir) / PLOT_FILE)
        ):
            outputs["plot"] = str(plot)
        prefix = "eval_" if run.eval_dataset is not None else ""
        shown = metrics if prefix else final_task_metrics(trainer.state.log_history, tasks)["train"]
        say(
            training,
            f"per-task metrics ({'held-out documents' if prefix else 'last training steps'}):\n"
            + format_metrics(shown, tasks, prefix),
        )
        say(
            training,
            f"saved model, tokenizer, model card and metrics to {training.output_dir}"
            + (f"; curves in {outputs['plot']}" if "plot" in outputs else ""),
        )
    push_run(trainer)
    return {"metrics": metrics, **outputs}


def main(argv: Sequence[str] | None = None) -> int:
    """``bert18 pretrain [RECIPE.yaml] [--key=value ...]``; ``--help`` lists every key. Exit code 130
    when Ctrl-C stopped the run (its checkpoint saved)."""

    def run(path: str | None, overrides: list[str]) -> int:
        return 130 if "interrupted_at" in run_pretraining(parse_pretrain_recipe(path, overrides)) else 0

    return run_recipe_command(argv, "bert18 pretrain", pretrain_parser, run)


__all__ = ["PretrainingRun", "RECIPE_FILE", "TOKENIZER_FOLDER", "build_pretraining", "main", "run_pretraining"]

"""The fine-tuning recipe: a checkpoint and labelled data in, a fine-tuned model and its metrics out.

``bert18 finetune recipe.yaml`` and ``recipes/finetune.py recipe.yaml`` both end here. One run:

1. checks the Hub (with ``push_to_hub``) and the output folder (``run.check_output_dir``: a folder
   holding another run is refused unless ``overwrite_output_dir`` or ``resume_from_checkpoint``);
2. loads the train / eval splits (the built-in module task, local files or a Hub dataset) and
   checks them (``finetune_data``: missing or mistyped labels, unseen eval labels and empty texts
   fail with the row and column named);
3. encodes them for the task (``finetune_tasks`` / ``finetune_qa``);
4. loads ``Bert18For<Task>`` from ``model_name_or_path`` (bert18, or BERT/RoBERTa/ALBERT converted on
   the fly; ``Bert18ForLongSequenceClassification`` for the chunk strategy), or with ``from_scratch``
   the same architecture with fresh random weights (a baseline), freezes what ``mode`` says, and
   builds layer-wise decayed learning rates when asked;
5. trains with ``FinetuneTrainer`` (the transformers ``Trainer`` writing bert18's fine-tuning model
   card) and evaluates (SQuAD post-processing for QA); Ctrl-C saves a checkpoint and stops;
6. saves model, tokenizer, ``all_results.json``, the model card and the resolved recipe, prints the
   metrics, and pushes to the Hub when ``push_to_hub``.

Steps 1, 6 and Ctrl-C are the pretraining recipe's own code (``bert18.training.run``).
"""

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer, TrainerCallback

from ..configuration_bert18 import Bert18Config
from ..features import freeze, freeze_encoder, layerwise_lr_decay_groups
from ..modeling_bert18 import (
    Bert18ForLongSequenceClassification,
    Bert18ForMultipleChoice,
    Bert18ForQuestionAnswering,
    Bert18ForSequenceClassification,
    Bert18ForTokenClassification,
)
from .arguments import run_recipe_command
from .finetune_arguments import BUILTIN_DATASETS, FinetuneRecipe, finetune_parser, parse_finetune_recipe
from .finetune_data import load_splits
from .finetune_qa import evaluate_question_answering, prepare_question_answering
from .finetune_tasks import (
    TaskData,
    prepare_multiple_choice,
    prepare_sequence_classification,
    prepare_token_classification,
)
from .model_card import write_finetune_model_card
from .optim import create_lamb, trainer_optimizer
from .run import (
    RECIPE_FILE,
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

# With LoRA on a converted (non-bert18) checkpoint: the bert18 base the adapter applies to.
LORA_BASE_FOLDER = "base_model"

MODEL_CLASSES = {
    "sequence-classification": Bert18ForSequenceClassification,
    "token-classification": Bert18ForTokenClassification,
    "question-answering": Bert18ForQuestionAnswering,
    "multiple-choice": Bert18ForMultipleChoice,
}


def prepare_task(recipe: FinetuneRecipe, tokenizer: Any) -> TaskData:
    """Steps 2-3: the checked, encoded splits of the recipe's task."""
    data, task = recipe.data, recipe.model.task
    try:
        train, eval_ = load_splits(data)
    except ConnectionError as error:  # a Hub dataset without a network: one line, not datasets' traceback
        raise ValueError(
            f"dataset {data.dataset!r} is no local file or folder, and the Hub cannot be reached "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): give a local "
            "path, or load the dataset once where there is a network (it is then cached)"
        ) from None
    if task == "sequence-classification":
        return prepare_sequence_classification(train, eval_, tokenizer, data, recipe.model.max_chunks)
    if task == "token-classification":
        return prepare_token_classification(train, eval_, tokenizer, data)
    if task == "question-answering":
        return prepare_question_answering(train, eval_, tokenizer, data)
    return prepare_multiple_choice(train, eval_, tokenizer, data)


def build_model(recipe: FinetuneRecipe, task: TaskData) -> torch.nn.Module:
    """Step 4: the task model from the checkpoint, its label names set and ``mode`` applied."""
    args, data = recipe.model, recipe.data
    kwargs: dict[str, Any] = {}
    if task.labels is not None:
        kwargs["num_labels"] = task.labels.num_labels
        if task.labels.regression:
            kwargs["problem_type"] = "regression"
        else:
            kwargs["id2label"] = dict(enumerate(task.labels.names or []))
            kwargs["label2id"] = {name: i for i, name in enumerate(task.labels.names or [])}
    model_class = MODEL_CLASSES[args.task]
    if args.task == "sequence-classification" and data.long_text_strategy == "chunk":
        model_class = Bert18ForLongSequenceClassification
        kwargs.update(long_pooling=args.long_pooling, max_chunks=args.max_chunks)
    transformers.set_seed(recipe.training.seed)  # the new head's initial weights follow the recipe's seed
    asked = {**args.config_overrides, **{key: kwargs[key] for key in ("num_labels",) if key in kwargs}}
    with shapes_fit(args.model_name_or_path, asked):
        model, loading = model_class.from_pretrained(  # from_scratch: its weights are replaced, any shapes do
            args.model_name_or_path,
            output_loading_info=True,
            ignore_mismatched_sizes=args.from_scratch,
            **{**args.config_overrides, **kwargs},
        )
    if args.from_scratch:  # the same architecture (checkpoints of other libraries converted), fresh weights
        transformers.set_seed(recipe.training.seed)
        model = model_class(model.config)
    else:  # weights kept: the checkpoint's encoder must fit the overrides
        check_encoder_loaded(loading, model.config, args.model_name_or_path, args.config_overrides)
    if data.max_length > model.config.max_position_embeddings:
        raise ValueError(
            f"max_length {data.max_length} exceeds max_position_embeddings "
            f"{model.config.max_position_embeddings} of {args.model_name_or_path}"
        )
    if args.attn_implementation is not None:
        model.set_attn_implementation(args.attn_implementation)
    if args.mode == "frozen":
        freeze_encoder(model)
    elif args.mode == "partial":
        freeze(model, embeddings=True, layers=args.freeze_layers)
    if args.lora_r is not None:
        model = _with_lora(recipe, model)
    return model


def _with_lora(recipe: FinetuneRecipe, model: torch.nn.Module) -> torch.nn.Module:
    """LoRA adapters through peft. The adapter records ``model.name_or_path`` as its base, which
    ``AutoPeftModelFor<Task>.from_pretrained(output_dir)`` rebuilds: when the checkpoint cannot rebuild this
    model by itself (a BERT/RoBERTa/ALBERT one converted on the fly, or one without this task's labels), the
    bert18 base is saved in the output folder first and the adapter points there, so it reloads offline."""
    from ..lora import apply_lora

    args, training = recipe.model, recipe.training
    if not _rebuilds(args.model_name_or_path, model.config):
        base = Path(training.output_dir).resolve() / LORA_BASE_FOLDER
        with training.main_process_first(desc="saving the LoRA base model"):
            if training.process_index == 0:
                model.save_pretrained(base)
        model.name_or_path = model.config._name_or_path = str(base)
    return apply_lora(model, args.lora_r, args.lora_alpha, args.lora_dropout, args.lora_target_modules)


def _rebuilds(path: str, config: Bert18Config) -> bool:
    """Whether the checkpoint at ``path`` is a bert18 one whose config gives this task model's head."""
    try:
        saved, _ = Bert18Config.get_config_dict(path)
    except (OSError, ValueError):
        return False
    labels = len(saved["id2label"]) if saved.get("id2label") else saved.get("num_labels", 2)
    return (
        saved.get("model_type") == config.model_type
        and labels == config.num_labels
        and saved.get("problem_type") == config.problem_type
    )


def build_optimizer(recipe: FinetuneRecipe, model: torch.nn.Module) -> torch.optim.Optimizer | None:
    """The optimizer over layer-wise decayed rates when ``layerwise_lr_decay`` is set (AdamW, or LAMB
    with ``optimizer: lamb``); else ``None``, and the Trainer builds its own (``trainer_optimizer``)."""
    decay, training = recipe.model.layerwise_lr_decay, recipe.training
    if decay is None:
        return None
    groups = layerwise_lr_decay_groups(model, training.learning_rate, decay, training.weight_decay)
    betas = (training.adam_beta1, training.adam_beta2)
    if recipe.run.optimizer == "lamb":
        for group in groups:  # biases and norm gains: no trust ratio, as in ALBERT's code
            group["adam"] = group["name"].endswith("/no_decay")
        return create_lamb(groups, training.learning_rate, betas, training.adam_epsilon, training.weight_decay)
    return torch.optim.AdamW(groups, lr=training.learning_rate, betas=betas, eps=training.adam_epsilon)


# The create_model_card keywords (push_to_hub passes them on) the fine-tuning card reads.
_CARD_KEYS = ("language", "license", "tags", "model_name")


class FinetuneTrainer(Trainer):
    """The transformers ``Trainer``, writing bert18's fine-tuning model card (``create_model_card``, which
    ``push_to_hub`` calls too) from the run's final metrics (``all_results.json`` once saved, else the
    last evaluation logged).

    Args:
        card_info: facts about the run for ``model_card.write_finetune_model_card`` (``task``,
            ``base_model``, ``dataset``, ``language``, ``license``, ...).
    """

    def __init__(self, *args: Any, card_info: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.card_info = dict(card_info or {})

    def create_model_card(self, **kwargs: Any) -> None:
        if not self.is_world_process_zero():
            return
        saved = Path(self.args.output_dir) / "all_results.json"
        if saved.is_file():
            metrics = json.loads(saved.read_text(encoding="utf-8"))
        else:
            metrics = next((entry for entry in reversed(self.state.log_history) if "eval_loss" in entry), {})
        values = {**self.card_info, **{k: v for k, v in kwargs.items() if v is not None and k in _CARD_KEYS}}
        write_finetune_model_card(self.args.output_dir, self.state, metrics, **values)


@dataclass
class FinetuningRun:
    """Everything a fine-tuning recipe builds, ready for ``trainer.train`` (``PretrainingRun``'s peer)."""

    recipe: FinetuneRecipe
    trainer: FinetuneTrainer
    tokenizer: PreTrainedTokenizerBase
    task: TaskData
    resume_from_checkpoint: str | None
    callbacks: RunCallbacks


def build_finetuning(recipe: FinetuneRecipe, callbacks: Sequence[TrainerCallback] = ()) -> FinetuningRun:
    """Steps 1-4: a ``FinetuningRun`` whose trainer is ready to train (with ``callbacks`` added).

    The trainer gets a copy of ``recipe.training`` with what fine-tuning needs set
    (``remove_unused_columns``, and no evaluation during training for question answering): the
    recipe's own arguments are left as the caller gave them."""
    args = recipe.training
    check_hub(args)
    resume = check_output_dir(recipe)
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.tokenizer_name_or_path or recipe.model.model_name_or_path)
    task = prepare_task(recipe, tokenizer)
    model = build_model(recipe, task)
    # the long-document collator reads raw columns (text, input_ids) the model's forward does not take
    changes: dict[str, Any] = {"remove_unused_columns": False}
    if recipe.model.task == "question-answering" and args.eval_strategy != "no":
        # answers need the windows' offsets: QA evaluates once, after training (evaluate_question_answering)
        say(args, f"question answering evaluates after training: eval_strategy={args.eval_strategy.value} is not used")
        changes["eval_strategy"] = transformers.IntervalStrategy.NO
    training = dataclasses.replace(args, **changes)
    optimizer = build_optimizer(recipe, model)
    run_callbacks = RunCallbacks(others=list(callbacks))
    data = recipe.data
    trainer = FinetuneTrainer(
        model=model,
        args=training,
        train_dataset=task.train,
        eval_dataset=task.eval if recipe.model.task != "question-answering" else None,
        data_collator=task.collator,
        processing_class=tokenizer,
        compute_metrics=task.compute_metrics,
        optimizers=(optimizer, None),
        callbacks=run_callbacks.for_trainer(),
        optimizer_cls_and_kwargs=None if optimizer is not None else trainer_optimizer(recipe.run.optimizer, training),
        card_info={
            "task": recipe.model.task,
            "base_model": recipe.model.model_name_or_path,
            "dataset": data.dataset,
            "mode": "from scratch" if recipe.model.from_scratch else recipe.model.mode,
            "dataset_on_hub": data.dataset not in BUILTIN_DATASETS and not Path(data.dataset).exists(),
            "recipe": RECIPE_FILE,
            "language": recipe.run.language,
            "license": recipe.run.license,
        },
    )
    run_callbacks.install(trainer)
    return FinetuningRun(recipe, trainer, tokenizer, task, resume, run_callbacks)


def run_finetuning(recipe: FinetuneRecipe, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Build, train, evaluate and save (steps 1-6), with ``callbacks`` added to the trainer's.

    Returns ``metrics``, the trainer's ``log_history``, the ``model`` folder, QA's ``answers`` (None for
    the other tasks) and the ``trainer``; after Ctrl-C, ``interrupted_at`` and the ``checkpoint`` to
    resume from instead."""
    run = build_finetuning(recipe, callbacks)
    trainer, training, task = run.trainer, recipe.training, run.task
    if (finished := nothing_to_resume(run.resume_from_checkpoint, training)) is not None:
        return {**finished, "trainer": trainer}
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    start = "random weights shaped as " if recipe.model.from_scratch else ""
    say(
        training,
        f"fine-tuning {start}{recipe.model.model_name_or_path} for {recipe.model.task} ({recipe.model.mode}, "
        f"{trainable:,} trainable parameters) on {len(task.train)} examples -> {training.output_dir}",
    )
    if training.process_index == 0:
        write_recipe(recipe)
    result = trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    if (stopped := interrupted(run.callbacks, training)) is not None:
        return {**stopped, "trainer": trainer}
    metrics: dict[str, Any] = dict(result.metrics)
    answers = None
    if task.eval is not None:
        if recipe.model.task == "question-answering":
            evaluation = evaluate_question_answering(trainer, task, recipe.data)
            answers = evaluation.answers
            metrics.update(evaluation.metrics)
        else:
            metrics.update(trainer.evaluate())
    save_run(trainer, metrics)
    push_run(trainer)
    say(
        training,
        "metrics:\n"
        + "\n".join(
            f"  {key:<28}{value:.4f}" if isinstance(value, float) else f"  {key:<28}{value}"
            for key, value in sorted(metrics.items())
        ),
    )
    say(training, f"saved model, tokenizer, model card and all_results.json to {training.output_dir}")
    return {
        "metrics": metrics,
        "log_history": trainer.state.log_history,
        "model": training.output_dir,
        "answers": answers,
        "trainer": trainer,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``bert18 finetune [RECIPE.yaml] [--key=value ...]``; ``--help`` lists every key. Exit code 130
    when Ctrl-C stopped the run (its checkpoint saved)."""

    def run(path: str | None, overrides: list[str]) -> int:
        return 130 if "interrupted_at" in run_finetuning(parse_finetune_recipe(path, overrides)) else 0

    return run_recipe_command(argv, "bert18 finetune", finetune_parser, run)


__all__ = [
    "FinetuneTrainer",
    "FinetuningRun",
    "MODEL_CLASSES",
    "build_finetuning",
    "build_model",
    "main",
    "prepare_task",
    "run_finetuning",
]

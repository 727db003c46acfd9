"""The fine-tuning recipe: a checkpoint and labelled data in, a fine-tuned model and its metrics out.

``bert18 finetune recipe.yaml`` and ``recipes/finetune.py recipe.yaml`` both end here. One run:

1. checks the output folder (``pretrain.check_output_dir``: a folder holding another run is
   refused unless ``overwrite_output_dir`` or ``resume_from_checkpoint``);
2. loads the train / eval splits (the built-in module task, local files or a Hub dataset) and
   checks them (``finetune_data``: missing or mistyped labels, unseen eval labels and empty texts
   fail with the row and column named);
3. encodes them for the task (``finetune_tasks`` / ``finetune_qa``);
4. loads ``Bert18For<Task>`` from ``model_name_or_path`` (bert18, or BERT/RoBERTa/ALBERT converted on
   the fly; ``Bert18ForLongSequenceClassification`` for the chunk strategy), freezes what ``mode``
   says, and builds layer-wise decayed learning rates when asked;
5. trains with the plain transformers ``Trainer`` and evaluates (SQuAD post-processing for QA);
6. saves model, tokenizer, ``all_results.json`` and the resolved recipe, and prints the metrics.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer, Trainer

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
from .finetune_arguments import FinetuneRecipe, finetune_parser, parse_finetune_recipe
from .finetune_data import load_splits
from .finetune_qa import evaluate_question_answering, prepare_question_answering
from .finetune_tasks import (
    TaskData,
    prepare_multiple_choice,
    prepare_sequence_classification,
    prepare_token_classification,
)
from .optim import create_lamb, trainer_optimizer
from .pretrain import _say, check_hub, check_output_dir, finished_checkpoint, write_recipe

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
        raise ValueError(f"dataset {data.dataset!r} is no local file or folder, and the Hub cannot be reached "
                         f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): give a local "
                         "path, or load the dataset once where there is a network (it is then cached)") from None
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
    model = model_class.from_pretrained(args.model_name_or_path, **{**args.config_overrides, **kwargs})
    if data.max_length > model.config.max_position_embeddings:
        raise ValueError(f"max_length {data.max_length} exceeds max_position_embeddings "
                         f"{model.config.max_position_embeddings} of {args.model_name_or_path}")
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
    return (saved.get("model_type") == config.model_type and labels == config.num_labels
            and saved.get("problem_type") == config.problem_type)


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


def build_finetuning(recipe: FinetuneRecipe) -> tuple[Trainer, TaskData, str | None]:
    """Steps 1-4: the Trainer ready to train, the task's data, and the checkpoint to resume from."""
    training = recipe.training
    check_hub(training)
    resume = check_output_dir(recipe)
    tokenizer = AutoTokenizer.from_pretrained(recipe.model.tokenizer_name_or_path or recipe.model.model_name_or_path)
    task = prepare_task(recipe, tokenizer)
    model = build_model(recipe, task)
    if recipe.model.task == "question-answering" and training.eval_strategy != "no":
        # answers need the windows' offsets: QA evaluates after training (evaluate_question_answering)
        training.eval_strategy = transformers.IntervalStrategy.NO
    # the long-document collator reads raw columns (text, input_ids) the model's forward does not take
    training.remove_unused_columns = False
    optimizer = build_optimizer(recipe, model)
    trainer = Trainer(
        model=model, args=training, train_dataset=task.train,
        eval_dataset=task.eval if recipe.model.task != "question-answering" else None,
        data_collator=task.collator, processing_class=tokenizer, compute_metrics=task.compute_metrics,
        optimizers=(optimizer, None),
        optimizer_cls_and_kwargs=None if optimizer is not None else trainer_optimizer(recipe.run.optimizer, training),
    )
    return trainer, task, resume


def run_finetuning(recipe: FinetuneRecipe) -> dict[str, Any]:
    """Build, train, evaluate and save (steps 1-6); returns the metrics and the trainer's log."""
    trainer, task, resume = build_finetuning(recipe)
    training = recipe.training
    if (done := finished_checkpoint(resume, training)) is not None:
        _say(training, f"{resume} already reached the end of training (step {done}): nothing to resume; raise "
                       "max_steps or num_train_epochs to train further")
        return {"finished_at": done, "checkpoint": resume, "trainer": trainer}
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    _say(training, f"fine-tuning {recipe.model.model_name_or_path} for {recipe.model.task} ({recipe.model.mode}, "
                   f"{trainable:,} trainable parameters) on {len(task.train)} examples -> {training.output_dir}")
    if training.process_index == 0:
        write_recipe(recipe)
    result = trainer.train(resume_from_checkpoint=resume)
    metrics: dict[str, Any] = dict(result.metrics)
    answers = None
    if task.eval is not None:
        if recipe.model.task == "question-answering":
            evaluated = evaluate_question_answering(trainer, task, recipe.data)
            answers = evaluated.pop("eval_answers")
            metrics.update(evaluated)
        else:
            metrics.update(trainer.evaluate())
    trainer.save_model()
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    _say(training, "metrics:\n" + "\n".join(f"  {key:<28}{value:.4f}" if isinstance(value, float)
                                            else f"  {key:<28}{value}" for key, value in sorted(metrics.items())))
    _say(training, f"saved model, tokenizer and all_results.json to {training.output_dir}")
    return {"metrics": metrics, "log_history": trainer.state.log_history, "model": training.output_dir,
            "answers": answers, "trainer": trainer}


def main(argv: Sequence[str] | None = None) -> int:
    """``bert18 finetune [RECIPE.yaml] [--key=value ...]``; ``--help`` lists every key."""
    def run(path: str | None, overrides: list[str]) -> int:
        run_finetuning(parse_finetune_recipe(path, overrides))
        return 0

    return run_recipe_command(argv, "bert18 finetune", finetune_parser, run)


__all__ = ["MODEL_CLASSES", "build_finetuning", "build_model", "main", "prepare_task", "run_finetuning"]

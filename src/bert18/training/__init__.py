"""Training bert18 models with the Hugging Face Trainer and Accelerate.

- ``Bert18Trainer`` (``trainer.py``): the Trainer with per-task label names, loss normalisation,
  metrics and epochs for multi-task pretraining.
- Two peer recipe families, each a YAML plus overrides parsed into dataclasses and run end to end:
  pretraining, ``parse_pretrain_recipe`` (alias ``parse_recipe``) -> ``PretrainRecipe`` ->
  ``build_pretraining`` / ``run_pretraining`` (``arguments.py``, ``pretrain.py``: what ``bert18
  pretrain`` and ``recipes/pretrain.py`` run); fine-tuning, ``parse_finetune_recipe`` ->
  ``FinetuneRecipe`` -> ``build_finetuning`` / ``run_finetuning`` (``finetune_arguments.py``,
  ``finetune.py``, four tasks: what ``bert18 finetune`` and ``recipes/finetune.py`` run).
- The run machinery both share (``run.py``): output folder and Hub checks, the resolved recipe,
  Ctrl-C to a resumable checkpoint, the end-of-run save and model card.
- Callbacks (``callbacks.py``): per-task progress and curves, Ctrl-C to a checkpoint.
- ``write_model_card`` / ``write_finetune_model_card`` (``model_card.py``).
"""

from .arguments import (
    DataArguments,
    MaskingArguments,
    ModelArguments,
    PretrainDataArguments,
    PretrainModelArguments,
    PretrainRecipe,
    PretrainRunArguments,
    Recipe,
    RunArguments,
    parse_pretrain_recipe,
    parse_recipe,
)
from .callbacks import InterruptCallback, TaskProgressCallback, plot_task_curves
from .finetune import build_finetuning, run_finetuning
from .finetune_arguments import FinetuneDataArguments, FinetuneModelArguments, FinetuneRecipe, parse_finetune_recipe
from .model_card import write_finetune_model_card, write_model_card
from .pretrain import build_pretraining, run_pretraining
from .trainer import Bert18Trainer, TaskMetrics, pretraining_label_names

__all__ = [
    "Bert18Trainer",
    "DataArguments",
    "FinetuneDataArguments",
    "FinetuneModelArguments",
    "FinetuneRecipe",
    "InterruptCallback",
    "MaskingArguments",
    "ModelArguments",
    "PretrainDataArguments",
    "PretrainModelArguments",
    "PretrainRecipe",
    "PretrainRunArguments",
    "Recipe",
    "RunArguments",
    "TaskMetrics",
    "TaskProgressCallback",
    "build_finetuning",
    "build_pretraining",
    "parse_finetune_recipe",
    "parse_pretrain_recipe",
    "parse_recipe",
    "plot_task_curves",
    "pretraining_label_names",
    "run_finetuning",
    "run_pretraining",
    "write_finetune_model_card",
    "write_model_card",
]

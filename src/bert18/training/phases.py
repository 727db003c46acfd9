"""Pretraining in phases: BERT's two sequence lengths (90% of the steps at 128 tokens, then 512), as
NVIDIA's BERT recipe runs them, in one recipe.

A recipe lists its phases, each a mapping of the recipe keys that change::

    phases:
      - {max_length: 128, max_steps: 900000, per_device_train_batch_size: 256}
      - {max_length: 512, max_steps: 100000, per_device_train_batch_size: 64, warmup_steps: 1000}

Phase ``k`` (1-based) is the recipe with those keys, written to ``output_dir/phase-k``. Every phase
after the first starts from the previous phase's final weights and tokenizer, on its own data (the
corpus prepared again at its ``max_length``), with its own learning-rate schedule, and carries the
previous phase's optimizer state (Adam's or LAMB's moments, as NVIDIA's phase 2 does): the moments
are loaded, the hyper-parameters (learning rate, betas, decay) are the phase's own. The model keys
(``PretrainModelArguments``) cannot change between phases: it is one model.

When the last phase ends, its model, tokenizer, card and metrics are copied into ``output_dir``.
A finished phase leaves ``phase-k/phase_complete.json``; with ``resume_from_checkpoint: true`` a
run skips the finished phases and resumes the unfinished one from its last checkpoint (or starts it
from the previous phase), so an interrupted run continues exactly, across the boundary too.
"""

import dataclasses
import difflib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

PHASE_DONE = "phase_complete.json"
FINAL_OPTIMIZER = "final_optimizer.pt"


def _owners(recipe: Any) -> dict[str, str]:
    """Which part of the recipe (``data``, ``masking``, ``training``) holds each key a phase may set."""
    owners = {}
    for part in ("data", "masking", "training"):
        owners.update({f.name: part for f in dataclasses.fields(getattr(recipe, part)) if f.init})
    for fixed in ("output_dir", "resume_from_checkpoint", "overwrite_output_dir", "push_to_hub"):
        owners.pop(fixed, None)
    return owners


def phase_recipes(recipe: Any) -> list[Any]:
    """One ``Recipe`` per phase of ``recipe.run.phases``, each writing to ``output_dir/phase-k``."""
    phases = recipe.run.phases or []
    owners = _owners(recipe)
    model_keys = {f.name for f in dataclasses.fields(recipe.model)}
    output = Path(recipe.training.output_dir)
    recipes, previous = [], None
    for index, changes in enumerate(phases, start=1):
        if not isinstance(changes, dict) or not changes:
            raise ValueError(f"phases[{index - 1}] must be a non-empty mapping of recipe keys, got {changes!r}")
        parts: dict[str, dict[str, Any]] = {"data": {}, "masking": {}, "training": {}}
        for key, value in changes.items():
            if key in model_keys:
                raise ValueError(
                    f"phases[{index - 1}] sets {key!r}: the model keys are the same in every phase "
                    "(set them once, outside phases)"
                )
            if key not in owners:
                close = difflib.get_close_matches(key, list(owners), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"phases[{index - 1}]: {key!r} is not a key a phase can set{hint}")
            parts[owners[key]][key] = value
        folder = output / f"phase-{index}"
        training = _replace_training(
            recipe.training, output_dir=str(folder), resume_from_checkpoint=None, **parts["training"]
        )
        model = recipe.model
        if previous is not None:  # continue the previous phase's weights and vocabulary
            model = dataclasses.replace(model, model_name_or_path=str(previous), tokenizer_name_or_path=str(previous))
        run = dataclasses.replace(recipe.run, phases=None, overwrite_output_dir=False)
        recipes.append(
            type(recipe)(
                model,
                dataclasses.replace(recipe.data, **parts["data"]),
                dataclasses.replace(recipe.masking, **parts["masking"]),
                run,
                training,
            )
        )
        previous = folder
    longest = max(phase.data.max_length for phase in recipes) if recipes else 0
    if (positions := _max_positions(recipe)) is not None and longest > positions:
        raise ValueError(
            f"phases reach max_length {longest}, beyond the model's max_position_embeddings "
            f"({positions}): raise it in config_overrides so every phase fits"
        )
    return recipes


def _max_positions(recipe: Any) -> int | None:
    """The model's longest sequence, known before anything trains (``None`` for another library's config)."""
    from ..configuration_bert18 import Bert18Config

    if recipe.model.model_name_or_path is None:
        overrides = dict(recipe.model.config_overrides or {})
        return Bert18Config.from_preset(recipe.model.preset, **overrides).max_position_embeddings
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(recipe.model.model_name_or_path)
    return config.max_position_embeddings if config.model_type == Bert18Config.model_type else None


def _replace_training(training: TrainingArguments, **changes: Any) -> TrainingArguments:
    """A copy of ``training`` with ``changes``, re-validated by ``TrainingArguments`` itself."""
    values = {f.name: getattr(training, f.name) for f in dataclasses.fields(training) if f.init}
    return type(training)(**{**values, **changes})


def carry_optimizer_state(optimizer: torch.optim.Optimizer, path: str | Path) -> None:
    """Load the moments saved at the end of the previous phase into ``optimizer``, keeping its own
    hyper-parameters (learning rate, betas, decay: the new phase's)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    current = optimizer.state_dict()
    if len(saved["param_groups"]) != len(current["param_groups"]) or any(
        len(a["params"]) != len(b["params"]) for a, b in zip(saved["param_groups"], current["param_groups"])
    ):
        raise ValueError(
            f"{path}: the previous phase's optimizer holds other parameters than this phase's; "
            "phases must train the same model with the same optimizer"
        )
    optimizer.load_state_dict({"state": saved["state"], "param_groups": current["param_groups"]})


def _check_output_dir(recipe: Any) -> bool:
    """The top folder's guard: refuse another run's folder; returns whether to resume."""
    from .run import clear_output_dir

    training = recipe.training
    output = Path(training.output_dir)
    resume = str(training.resume_from_checkpoint or "").lower() in ("true", "last", "yes")
    if (
        training.resume_from_checkpoint is not None
        and not resume
        and str(training.resume_from_checkpoint).lower() not in ("false", "no", "none", "")
    ):
        raise ValueError(
            "a run in phases resumes with resume_from_checkpoint=true (each phase from its own last "
            f"checkpoint), not from a given folder ({training.resume_from_checkpoint})"
        )
    if recipe.run.overwrite_output_dir:  # after every refusal: nothing is deleted for a run that cannot start
        clear_output_dir(training)
    if output.is_dir() and any(output.iterdir()) and not resume:
        raise FileExistsError(
            f"output_dir {output} already holds a run: pass --resume_from_checkpoint=true to "
            "continue it, --overwrite_output_dir=true to replace it, or choose another output_dir"
        )
    return resume


def run_phases(recipe: Any, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run every phase of ``recipe`` in order (see the module docstring), each trainer with ``callbacks``
    added; returns the last phase's result."""
    from .pretrain import run_pretraining
    from .run import write_recipe

    training = recipe.training
    resume = _check_output_dir(recipe)
    if training.process_index == 0:
        write_recipe(recipe)
    result: dict[str, Any] = {}
    previous: Path | None = None
    for index, phase in enumerate(phase_recipes(recipe), start=1):
        folder = Path(phase.training.output_dir)
        if (folder / PHASE_DONE).is_file():
            if not resume:
                raise FileExistsError(f"{folder} holds a finished phase: pass --resume_from_checkpoint=true")
            previous = folder
            continue
        if resume and folder.is_dir() and any(p.name.startswith("checkpoint-") for p in folder.iterdir()):
            phase.training = _replace_training(phase.training, resume_from_checkpoint="true")
        elif folder.is_dir():
            with training.main_process_first(desc="clearing an unfinished phase"):
                if training.process_index == 0:
                    shutil.rmtree(folder)  # a phase that never reached a checkpoint starts again
        carry = previous / FINAL_OPTIMIZER if previous is not None else None
        result = run_pretraining(phase, initial_optimizer_state=carry, save_optimizer_state=True, callbacks=callbacks)
        if "interrupted_at" in result:
            return result
        if phase.training.process_index == 0:
            (folder / PHASE_DONE).write_text(json.dumps({"phase": index, "steps": phase.training.max_steps}))
        previous = folder
    if training.process_index == 0 and previous is not None:
        for item in previous.iterdir():  # the final model at the top, as a one-phase run leaves it
            if item.is_file() and item.name not in (PHASE_DONE, FINAL_OPTIMIZER):
                shutil.copy2(item, Path(training.output_dir) / item.name)
    return result


__all__ = ["PHASE_DONE", "carry_optimizer_state", "phase_recipes", "run_phases"]

"""The run machinery the pretraining and fine-tuning recipes share, from the output folder to the saved model.

``pretrain.run_pretraining`` and ``finetune.run_finetuning`` are peers built on this module:

- before anything is written: ``check_hub`` (with ``push_to_hub``, the Hub must answer as a logged-in
  user) and ``check_output_dir`` (a folder holding another run is refused unless
  ``resume_from_checkpoint`` or ``overwrite_output_dir``; a resumed run must agree with the saved
  recipe, ``bert18_recipe.yaml``, on what defines it);
- ``write_recipe``: the resolved recipe, reusable as one;
- ``finished_checkpoint``: resuming from a checkpoint that already reached the end trains nothing more;
- ``RunCallbacks``: the callbacks every run gets, held by the recipe that made them (Ctrl-C to a
  checkpoint through ``InterruptCallback``; the progress bar that shows per-task metrics), so
  nothing is dug back out of the trainer;
- ``interrupted``: what a run stopped by Ctrl-C reports (its checkpoint, resumable);
- ``save_run`` and ``push_run``: the end-of-run tail: model, metrics, trainer state, model card; the Hub;
- ``say``: print on the main process only.

Both recipes are ``RunRecipe``s: ``training`` (``TrainingArguments``), ``run`` (``RunArguments``)
and ``identity()``, the settings a resumed run must keep.
"""

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_utils import get_last_checkpoint

from ..modeling_bert18 import Bert18PreTrainedModel
from .callbacks import InterruptCallback, TaskProgressCallback

logger = logging.getLogger(__name__)

RECIPE_FILE = "bert18_recipe.yaml"
TOKENIZER_FOLDER = "tokenizer"
# What a start that failed before its first checkpoint leaves in output_dir: the resolved recipe,
# the trained tokenizer (saved whole or not at all) and TensorBoard's folder. A folder holding
# nothing else never blocks a rerun of the same recipe.
LEFTOVERS = frozenset({RECIPE_FILE, TOKENIZER_FOLDER, "runs"})


class RunRecipe(Protocol):
    """What the run machinery reads: the pretraining ``PretrainRecipe`` and the fine-tuning
    ``FinetuneRecipe`` both have it."""

    training: TrainingArguments
    run: Any  # RunArguments: overwrite_output_dir, language, license, optimizer

    def identity(self) -> dict[str, Any]: ...


def say(training: TrainingArguments, message: str) -> None:
    """Print ``message`` once, on the main process (the others stay quiet)."""
    if training.process_index == 0:
        print(message, flush=True)


def resume_checkpoint(training: TrainingArguments) -> str | None:
    """``resume_from_checkpoint`` resolved: ``true``/``last`` to the last checkpoint of output_dir."""
    value = training.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "no", "none", ""):
        return None
    if str(value).lower() in ("true", "last", "yes"):
        last = get_last_checkpoint(training.output_dir) if Path(training.output_dir).is_dir() else None
        if last is None:
            raise ValueError(
                f"resume_from_checkpoint={value}, but {training.output_dir} holds no checkpoint-N folder "
                "to resume from: run without resume_from_checkpoint to start (again) from the beginning"
            )
        return last
    if not Path(value).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint: no checkpoint folder at {value}")
    return str(value)


def refuse_resuming_from_what_overwrite_deletes(training: TrainingArguments) -> None:
    """``overwrite_output_dir`` with ``resume_from_checkpoint`` asking to resume from inside that folder
    (``true``, or a checkpoint in it) contradict each other: honouring the first would delete the checkpoint
    and silently start over. Raised before anything is deleted."""
    value = str(training.resume_from_checkpoint or "")
    if value.lower() in ("", "false", "no", "none"):
        return
    checkpoint = Path(value).resolve()  # resolved: ``..`` and symbolic links cannot hide that it lies inside
    if value.lower() in ("true", "last", "yes") or Path(training.output_dir).resolve() in (
        checkpoint,
        *checkpoint.parents,
    ):
        raise ValueError(
            f"overwrite_output_dir=true would delete {training.output_dir}, from which "
            f"resume_from_checkpoint={value} resumes: pass one of the two"
        )


def clear_output_dir(training: TrainingArguments) -> None:
    """Empty ``output_dir`` (``overwrite_output_dir``): the main process removes it, the others wait."""
    refuse_resuming_from_what_overwrite_deletes(training)
    with training.main_process_first(desc="clearing output_dir"):
        if training.process_index == 0 and Path(training.output_dir).is_dir():
            shutil.rmtree(training.output_dir)


def check_output_dir(recipe: RunRecipe) -> str | None:
    """Refuse to write into a folder holding another run; return the checkpoint to resume from, if any.

    Runs on every process (reads only); with ``overwrite_output_dir`` the main process empties the
    folder and the others wait for it.
    """
    training = recipe.training
    output = Path(training.output_dir)
    if output.exists() and not output.is_dir():
        raise FileExistsError(f"output_dir {output} is a file, not a folder: choose another output_dir")
    if output.is_dir() and not os.access(output, os.W_OK | os.X_OK):
        raise PermissionError(f"output_dir {output} is not writable: choose another output_dir")
    if not output.exists() and not os.access(_existing_parent(output), os.W_OK | os.X_OK):
        raise PermissionError(
            f"output_dir {output} cannot be created in {_existing_parent(output)} (not writable): "
            "choose another output_dir"
        )
    if recipe.run.overwrite_output_dir:
        refuse_resuming_from_what_overwrite_deletes(training)
        resume = resume_checkpoint(training)  # another run's checkpoint: checked before anything is deleted
        clear_output_dir(training)
        return resume
    resume = resume_checkpoint(training)
    held = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    differences = _recipe_differences(recipe, output / RECIPE_FILE)
    if held and resume is None:
        listing = f"{', '.join(held[:5])}{', ...' if len(held) > 5 else ''}"
        if set(held) <= LEFTOVERS:  # a start that failed before its first checkpoint
            if differences:
                raise FileExistsError(
                    f"output_dir {output} holds the start of another run that failed before its first checkpoint "
                    f"({differences}): pass --overwrite_output_dir=true to replace it, or choose another output_dir"
                )
            logger.info(
                "output_dir %s holds what a failed start of this recipe left (%s): starting again", output, listing
            )
            return None
        has_checkpoint = get_last_checkpoint(str(output)) is not None
        raise FileExistsError(
            f"output_dir {output} already holds a run ({listing}): "
            + ("pass --resume_from_checkpoint=true to continue it, " if has_checkpoint else "")
            + "pass --overwrite_output_dir=true to replace it, or choose another output_dir"
        )
    if resume is not None and differences:
        raise ValueError(
            f"output_dir {output} holds a different run: {differences}; "
            "resume with the same settings, or pass --overwrite_output_dir=true"
        )
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


def nothing_to_resume(checkpoint: str | None, training: TrainingArguments) -> dict[str, Any] | None:
    """``{"finished_at", "checkpoint"}`` (and a line saying so) when ``checkpoint`` already reached the
    end of training, so the recipe returns instead of training; else None."""
    if (done := finished_checkpoint(checkpoint, training)) is None:
        return None
    say(
        training,
        f"{checkpoint} already reached the end of training (step {done}): nothing to resume; raise "
        "max_steps or num_train_epochs to train further",
    )
    return {"finished_at": done, "checkpoint": checkpoint}


def check_hub(training: TrainingArguments) -> None:
    """With ``push_to_hub``, the Hub must answer and know the user before anything is trained or written."""
    if not training.push_to_hub:
        return
    from huggingface_hub import HfApi

    try:
        HfApi(token=training.hub_token).whoami()
    except Exception as error:  # offline, no token, a bad token: all say the same to the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"push_to_hub: cannot reach the Hugging Face Hub as a logged-in user ({reason}); "
            "log in with `hf auth login`, or set push_to_hub=false and push the saved folder later"
        ) from None


def check_encoder_loaded(loading: dict[str, Any], config: Any, source: str, overrides: dict[str, Any]) -> None:
    """Refuse a checkpoint whose encoder does not fit the config: an architecture key in config_overrides
    (``position_embedding_type``, ...) would otherwise drop some of its trained weights, or start some
    encoder weights random, with only a warning in the log. What an override adds or removes by design
    passes: new heads, a pooler or ERNIE's task embeddings the checkpoint lacks (they start random), and
    the layers above a smaller ``num_hidden_layers`` (the lower ones kept)."""
    prefix = Bert18PreTrainedModel.base_model_prefix + "."
    new_modules = (prefix + "pooler.", prefix + "embeddings.task_type_embeddings.")
    dropped = sorted(
        key
        for key in loading["unexpected_keys"]
        if key.startswith(prefix) and not _above_the_layers(key, prefix, config.num_hidden_layers)
    )
    fresh = sorted(key for key in loading["missing_keys"] if key.startswith(prefix) and not key.startswith(new_modules))
    if dropped or fresh:
        raise ValueError(
            f"{source}'s encoder does not fit config_overrides {overrides}: {len(dropped)} of its weights would be "
            f"dropped {dropped[:3]} and {len(fresh)} encoder weights would start random {fresh[:3]}; leave the "
            "architecture keys out of config_overrides when continuing from a checkpoint"
        )


@contextlib.contextmanager
def shapes_fit(source: str, asked: dict[str, Any]) -> Iterator[None]:
    """Around a ``from_pretrained`` with ``config_overrides`` (and a task's ``num_labels``): a key that
    changes the checkpoint's weight shapes (``hidden_size``, ``intermediate_size``, ...: a recipe written for
    training from scratch, such as ``tiny-demo``, sets them) fails in transformers with a RuntimeError about
    ``ignore_mismatched_sizes``; it is refused in one line naming what the run asked for instead."""
    try:
        yield
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error):
            raise
        raise ValueError(
            f"{source}'s weights do not have the shapes this run asks for ({asked}; transformers' load report "
            "names the weights): leave the size keys out of config_overrides when continuing from a checkpoint, "
            "or start from a recipe that does not set them"
        ) from error


def _above_the_layers(key: str, prefix: str, layers: int) -> bool:
    """An encoder block's weight past the first ``layers`` blocks (``encoder.attention.5.query.weight``)."""
    match = re.match(re.escape(prefix) + r"encoder\.(?:attention|feed_forward)\.(\d+)\.", key)
    return match is not None and int(match.group(1)) >= layers


def write_recipe(recipe: RunRecipe) -> Path:
    """The resolved recipe, reusable as one (``bert18 pretrain output_dir/bert18_recipe.yaml``, or
    ``bert18 finetune`` for a fine-tuning run)."""
    values = {**recipe.identity(), **asdict(recipe.run), **recipe.training.to_dict()}
    values = {k: v for k, v in values.items() if not k.startswith("_")}
    path = Path(recipe.training.output_dir) / RECIPE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class RunCallbacks:
    """The callbacks a recipe hands its trainer, kept here so the recipe reads them back without
    searching the trainer: Ctrl-C handling, and (pretraining) the per-task progress bar.

    ``install`` passes ``progress`` as the trainer's progress bar in place of transformers' own
    (the same bar, with each task's latest loss and accuracy after it); with ``disable_tqdm`` the
    trainer keeps its plain printer and ``progress`` is not used.
    """

    interrupt: InterruptCallback = field(default_factory=InterruptCallback)
    progress: TaskProgressCallback | None = None
    others: list[TrainerCallback] = field(default_factory=list)

    def for_trainer(self) -> list[TrainerCallback]:
        """The callbacks to give the trainer's constructor (the progress bar follows in ``install``)."""
        return [self.interrupt, *self.others]

    def install(self, trainer: Trainer) -> None:
        """Swap the trainer's default progress bar for ``progress`` (a ``ProgressCallback`` itself). In a
        notebook the Trainer draws its own widget instead, which stays (one bar, without the tasks)."""
        if self.progress is None or trainer.args.disable_tqdm or DEFAULT_PROGRESS_CALLBACK is not ProgressCallback:
            return
        trainer.remove_callback(ProgressCallback)  # by class: the default one, ours is not added yet
        trainer.add_callback(self.progress)


def interrupted(callbacks: RunCallbacks, training: TrainingArguments) -> dict[str, Any] | None:
    """``{"interrupted_at", "checkpoint"}`` (and a line saying how to continue) when Ctrl-C stopped the
    run: the checkpoint it saved resumes with ``resume_from_checkpoint: true``. None otherwise."""
    step = callbacks.interrupt.interrupted_at
    if step is None:
        return None
    checkpoint = Path(training.output_dir) / f"checkpoint-{step}"
    say(training, f"interrupted: checkpoint saved at {checkpoint}; continue with --resume_from_checkpoint=true")
    return {"interrupted_at": step, "checkpoint": str(checkpoint)}


def save_run(trainer: Trainer, metrics: dict[str, Any]) -> None:
    """The end of a finished run: the model (and tokenizer), ``all_results.json``, the trainer state and
    the model card (the trainer's ``create_model_card``: bert18's cards for both recipes)."""
    trainer.save_model()
    trainer.save_metrics("all", metrics)
    trainer.save_state()
    trainer.create_model_card()


def push_run(trainer: Trainer) -> None:
    """Upload the output folder (after ``save_run`` and anything written next to it) when ``push_to_hub``."""
    if trainer.args.push_to_hub:
        trainer.push_to_hub()


__all__ = [
    "LEFTOVERS",
    "RECIPE_FILE",
    "RunCallbacks",
    "RunRecipe",
    "TOKENIZER_FOLDER",
    "check_hub",
    "check_output_dir",
    "clear_output_dir",
    "finished_checkpoint",
    "interrupted",
    "nothing_to_resume",
    "push_run",
    "resume_checkpoint",
    "save_run",
    "say",
    "write_recipe",
]

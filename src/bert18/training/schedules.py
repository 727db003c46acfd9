"""ERNIE 2.0's continual multi-task learning: pretraining tasks introduced in stages over steps.

ERNIE 2.0 (Sun et al., 2020, section 3.3) does not train its tasks one after another, which forgets
the earlier ones, nor all at once from the start: each new task joins the tasks already training,
and all of them keep training together. A recipe states it as a schedule of stages::

    task_schedule:
      - {step: 0, tasks: [mlm]}
      - {step: 2000, tasks: [mlm, capitalization]}
      - {step: 5000, tasks: [mlm, capitalization, sentence_distance], weights: {sentence_distance: 0.5}}

From a stage's ``step`` on, its ``tasks`` train with their loss weights (``weights`` for this stage,
else the config's ``task_loss_weights``, else 1.0); every other task of ``pretraining_tasks`` weighs
0. The batches still carry every task's labels, so each head keeps reporting its loss and accuracy
(a task's curve before it joins shows what the shared encoder already knows of it), and every
parameter takes part in every step (DDP needs no unused-parameter search).

The weights are a pure function of the optimizer step, set before each step from the Trainer's
``global_step``: a resumed run continues in the stage it stopped in, and every process agrees.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback

from ..configuration_bert18 import Bert18Config


@dataclass(frozen=True)
class TaskStage:
    """From optimizer step ``step`` on, ``tasks`` train (each with ``weights`` or its base weight)."""

    step: int
    tasks: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)


class TaskSchedule:
    """Stages of a continual multi-task run, checked against the model's ``pretraining_tasks``."""

    def __init__(self, stages: Sequence[Mapping[str, Any] | TaskStage], config: Bert18Config):
        self.config = config
        self.base_weights = {task: config.task_loss_weight(task) for task in config.pretraining_tasks}
        self.stages = [self._stage(entry, index) for index, entry in enumerate(stages)]
        if not self.stages:
            raise ValueError("task_schedule needs at least one stage")
        if self.stages[0].step != 0:
            raise ValueError(f"task_schedule: the first stage must start at step 0, got {self.stages[0].step}")
        for before, after in zip(self.stages, self.stages[1:]):
            if after.step <= before.step:
                raise ValueError(f"task_schedule: stage steps must increase, got {before.step} then {after.step}")

    def _stage(self, entry: Mapping[str, Any] | TaskStage, index: int) -> TaskStage:
        if isinstance(entry, TaskStage):
            stage = entry
        else:
            if not isinstance(entry, Mapping) or "step" not in entry or "tasks" not in entry:
                raise ValueError(f"task_schedule[{index}] must be a mapping with 'step' and 'tasks', got {entry!r}")
            unknown_keys = set(entry) - {"step", "tasks", "weights"}
            if unknown_keys:
                raise ValueError(
                    f"task_schedule[{index}]: unknown key(s) {sorted(unknown_keys)} "
                    "(a stage has step, tasks and optional weights)"
                )
            stage = TaskStage(int(entry["step"]), tuple(entry["tasks"]), dict(entry.get("weights") or {}))
        if stage.step < 0:
            raise ValueError(f"task_schedule[{index}]: step must be >= 0, got {stage.step}")
        if not stage.tasks:
            raise ValueError(f"task_schedule[{index}]: a stage trains at least one task")
        for task in (*stage.tasks, *stage.weights):
            if task not in self.config.pretraining_tasks:
                raise ValueError(
                    f"task_schedule[{index}] names {task!r}, which is not in pretraining_tasks "
                    f"{self.config.pretraining_tasks}"
                )
        for task, weight in stage.weights.items():
            if task not in stage.tasks:
                raise ValueError(f"task_schedule[{index}] weighs {task!r} but does not train it (add it to tasks)")
            if weight < 0:
                raise ValueError(f"task_schedule[{index}]: weight of {task!r} must be >= 0, got {weight}")
        return stage

    def stage_at(self, step: int) -> TaskStage:
        """The stage in force at optimizer step ``step`` (0-based: the step about to be taken)."""
        return next(stage for stage in reversed(self.stages) if stage.step <= step)

    def weights_at(self, step: int) -> dict[str, float]:
        """Every pretraining task's loss weight at ``step``: 0 for the tasks not yet introduced."""
        stage = self.stage_at(step)
        return {
            task: float(stage.weights.get(task, self.base_weights[task])) if task in stage.tasks else 0.0
            for task in self.config.pretraining_tasks
        }


class TaskScheduleCallback(TrainerCallback):
    """Sets the model's ``task_loss_weights`` from a ``TaskSchedule`` before every optimizer step.

    Saved checkpoints hold the weights of the stage they were saved in; the schedule, not the saved
    config, decides the weights of a resumed run."""

    def __init__(self, schedule: TaskSchedule):
        self.schedule = schedule

    def _apply(self, step: int, model: Any) -> None:
        model.config.task_loss_weights = self.schedule.weights_at(step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._apply(state.global_step, model)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        self._apply(state.global_step, model)


__all__ = ["TaskSchedule", "TaskScheduleCallback", "TaskStage"]

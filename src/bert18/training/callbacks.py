"""Trainer callbacks of the recipes, and the one reading of per-task metrics from the training log.

- ``task_curves`` / ``final_task_metrics``: each task's loss and accuracy from ``state.log_history``
  (the curves, or their last values); the plot, the model card and the recipe's summary all read
  the log through them.
- ``TaskProgressCallback``: transformers' progress bar with each task's latest loss and accuracy
  after it (``RunCallbacks.install`` puts it in place of the default bar).
- ``InterruptCallback``: Ctrl-C (SIGINT) or SIGTERM stops training at the end of the current step
  with a checkpoint saved, so ``resume_from_checkpoint`` continues the run; a second Ctrl-C stops
  at once.
"""

import logging
import math
import signal
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

logger = logging.getLogger(__name__)

PLOT_FILE = "task_curves.png"
_METRIC_SUFFIXES = ("_loss", "_accuracy", "_majority")  # majority: evaluation only (TaskMetrics)

Curves = dict[str, dict[str, list[tuple[int, float]]]]


def task_curves(log_history: list[dict[str, Any]], tasks: list[str]) -> Curves:
    """``{"train"|"eval": {"<task>_loss"|"<task>_accuracy"|"<task>_majority": [(step, value), ...]}}`` from
    ``state.log_history`` (the majority-class share is reported by evaluations only).

    NaN values (a task without targets in a logging interval) are left out."""
    curves: dict[str, dict[str, list]] = {"train": defaultdict(list), "eval": defaultdict(list)}
    for entry in log_history:
        for task in tasks:
            for suffix in _METRIC_SUFFIXES:
                for split, key in (("train", f"{task}{suffix}"), ("eval", f"eval_{task}{suffix}")):
                    if key in entry and not math.isnan(entry[key]):
                        curves[split][f"{task}{suffix}"].append((entry.get("step", 0), entry[key]))
    return {split: dict(values) for split, values in curves.items()}


def final_task_metrics(log_history: list[dict[str, Any]], tasks: list[str]) -> dict[str, dict[str, float]]:
    """The last logged value of each task's metrics: ``{"train"|"eval": {"<task>_loss": value, ...}}``."""
    return {
        split: {key: points[-1][1] for key, points in curves.items()}
        for split, curves in task_curves(log_history, tasks).items()
    }


def plot_task_curves(log_history: list[dict[str, Any]], tasks: list[str], path: str | Path) -> Path | None:
    """Draw each task's loss and accuracy (training lines, evaluation markers) into a PNG at ``path``.

    Returns the path, or ``None`` (with a warning) when matplotlib is missing or nothing was logged.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on servers
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed, so no %s (pip install 'bert18[plot]')", PLOT_FILE)
        return None
    curves = task_curves(log_history, tasks)
    if not any(curves.values()):
        logger.warning("no per-task metrics were logged, so no %s", PLOT_FILE)
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, suffix, label in ((axes[0], "_loss", "loss (nats)"), (axes[1], "_accuracy", "accuracy")):
        for index, task in enumerate(tasks):
            color = f"C{index}"
            if points := curves["train"].get(f"{task}{suffix}"):
                axis.plot(*zip(*points), color=color, label=f"{task} (train)")
            if points := curves["eval"].get(f"{task}{suffix}"):
                axis.plot(*zip(*points), color=color, marker="o", linestyle="--", label=f"{task} (eval)")
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=8, loc="lower right")
    figure.suptitle("bert18 pretraining: per-task curves")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


class TaskProgressCallback(ProgressCallback):
    """transformers' progress bar, with each task's latest loss and accuracy shown after it.

    Args:
        tasks: the pretraining tasks (their metrics are ``<task>_loss`` / ``<task>_accuracy``).
    """

    def __init__(self, tasks: list[str]):
        super().__init__()
        self.tasks = tasks

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=logs, **kwargs)
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        shown = {
            task: f"{logs[f'{task}_loss']:.3g}/{logs[f'{task}_accuracy']:.0%}"
            for task in self.tasks
            if f"{task}_loss" in logs
        }
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)


class InterruptCallback(TrainerCallback):
    """Turn SIGINT / SIGTERM into "save a checkpoint and stop" at the end of the current step.

    With several processes the flag is combined across them at every step (one tiny all-reduce),
    so all ranks stop at the same step and save together; a second signal raises at once.
    """

    def __init__(self):
        self.requested = False
        self.interrupted_at: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.requested:  # the second Ctrl-C: the user means it
            raise KeyboardInterrupt
        self.requested = True
        logger.warning(
            "%s received: stopping after this step with a checkpoint (again to stop at once)",
            signal.Signals(signum).name,
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.requested = False
        self.interrupted_at = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _anyone_requested(self, args) -> bool:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.requested
        flag = torch.tensor([float(self.requested)], device=args.device)
        torch.distributed.all_reduce(flag)
        return flag.item() > 0

    def on_step_end(self, args, state, control, **kwargs):
        if self._anyone_requested(args):
            self.interrupted_at = state.global_step
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def format_metrics(metrics: dict[str, float], tasks: list[str], prefix: str = "") -> str:
    """One line per task: ``mlm  loss 3.912  accuracy 31.2%``, and ``(majority class 6.4%)`` where the
    metrics hold the task's majority-class share (evaluation: ``TaskMetrics``)."""
    lines = []
    for task in tasks:
        loss, accuracy = metrics.get(f"{prefix}{task}_loss"), metrics.get(f"{prefix}{task}_accuracy")
        majority = metrics.get(f"{prefix}{task}_majority")
        if loss is not None and not math.isnan(loss):
            baseline = f"   (majority class {majority:.1%})" if majority is not None else ""
            lines.append(f"  {task:<24} loss {loss:7.3f}   accuracy {accuracy:6.1%}{baseline}")
    return "\n".join(lines)


__all__ = [
    "InterruptCallback",
    "PLOT_FILE",
    "TaskProgressCallback",
    "final_task_metrics",
    "format_metrics",
    "plot_task_curves",
    "task_curves",
]

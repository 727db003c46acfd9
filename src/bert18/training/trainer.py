"""``Bert18Trainer``: the Hugging Face Trainer, taught what multi-task pretraining needs.

The stock ``Trainer`` runs bert18 models as they are; four things it cannot know about
multi-task pretraining are filled in here:

- **Label names.** The Trainer computes an evaluation loss only when every label argument of
  ``forward`` is in the batch; ``Bert18ForPreTraining`` takes one per task, so the label names
  become those of ``config.pretraining_tasks`` (``pretraining_label_names``).
- **Loss normalisation under gradient accumulation.** The stock Trainer counts only ``labels``
  (the MLM targets) across an accumulation step. Here every task's targets are counted (and summed
  across processes when ``average_tokens_across_devices``), so each task's loss is its sum over the
  whole step divided by its own count: exactly the loss of one big batch.
- **Per-task metrics.** Every logged training step and every evaluation reports each task's loss
  and accuracy (``mlm_loss``, ``mlm_accuracy``, ``sop_accuracy``, ...; ``eval_`` in front for
  evaluation), summed over all processes, so they reach the console, the progress bar, TensorBoard
  and ``state.log_history`` like the Trainer's own loss.
- **Epochs.** ``SetEpochCallback`` gives the collator and the dataset the epoch, so masks and
  sentence pairs are drawn afresh each epoch and reproduced on resume, in DataLoader workers too
  (persistent or not). The training and evaluation DataLoaders get their own generator, so dropout
  does not depend on the number of workers, on whether they persist, or on a resume.

``create_model_card`` writes bert18's card (``bert18.training.model_card``), so ``push_to_hub``
uploads it through transformers' own Hub code.
"""

from functools import partial
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader, IterableDataset
from transformers import Trainer
from transformers.trainer_utils import seed_worker

from ..collators import SetEpochCallback
from ..collators.base import own_generator
from ..configuration_bert18 import PRETRAINING_TASKS, Bert18Config
from ..modeling_bert18 import Bert18ForPreTraining
from .model_card import write_model_card
from .phases import carry_optimizer_state
from .sharding import save_full_model, saves_sharded_state
from .warmup import BatchSizeWarmup, SequenceLengthWarmup, WarmupBatchSampler


def pretraining_label_names(config: Bert18Config) -> list[str]:
    """The label arguments a batch for ``config.pretraining_tasks`` carries (``TrainingArguments.label_names``)."""
    return [PRETRAINING_TASKS[task].label for task in config.pretraining_tasks]


class TaskMetrics:
    """Per-task sums between two reports: summed loss, correct predictions, targets; and, when
    ``label_classes`` gives each task's number of labels, how often each label was the target.

    Kept as tensors on the model's device; the values are summed across processes and read only
    when reported. The label counts give the **majority-class share** (``<task>_majority``): what a
    model that learnt nothing but the label frequencies would score on the same targets, the
    baseline an accuracy is read against (92% on capitalization is read against the 90% of words in
    lower case). They are kept for evaluation only: for MLM they are a vocabulary-sized vector.
    """

    def __init__(self, tasks: list[str], label_classes: list[int] | None = None):
        self.tasks = tasks
        if label_classes is not None and len(label_classes) != len(tasks):
            raise ValueError(f"label_classes has {len(label_classes)} entries for {len(tasks)} tasks")
        self.label_classes = label_classes
        self.reset()

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None  # [tasks, 3]: loss sum, correct, targets
        self.label_counts: torch.Tensor | None = None  # every task's label counts, one after the other

    @torch.no_grad()
    def record(self, outputs: Any, inputs: dict[str, Any]) -> None:
        rows, label_counts = [], []
        for j, task in enumerate(self.tasks):
            labels = inputs.get(PRETRAINING_TASKS[task].label)
            loss = (outputs.task_losses or {}).get(task)
            logits = outputs.prediction_logits if task == "mlm" else (outputs.task_logits or {}).get(task)
            if labels is None or loss is None:
                rows.append(torch.zeros(3, device=loss.device if loss is not None else None))
                if self.label_classes is not None:
                    label_counts.append(torch.zeros(self.label_classes[j], dtype=torch.long))
                continue
            keep = labels.ne(-100)
            count = keep.sum()
            # task_losses are always this batch's plain means (only the training loss is normalised by
            # num_items_in_batch), so this batch's count undoes them, on every rank and micro-batch.
            loss_sum = loss.detach().float() * count
            rows.append(torch.stack([loss_sum, _correct(logits, labels, keep).float(), count.float()]))
            if self.label_classes is not None:
                label_counts.append(torch.bincount(labels[keep].reshape(-1), minlength=self.label_classes[j]))
        device = next((row.device for row in rows if row.device.type != "cpu"), rows[0].device)
        step = torch.stack([row.to(device) for row in rows])
        self.sums = step if self.sums is None else self.sums + step
        if self.label_classes is not None:
            counts = torch.cat([c.to(device) for c in label_counts])
            self.label_counts = counts if self.label_counts is None else self.label_counts + counts

    def report(self, accelerator: Any, prefix: str = "") -> dict[str, float]:
        """``{prefix}{task}_loss``, ``{prefix}{task}_accuracy`` and, with label counts,
        ``{prefix}{task}_majority`` over every process; then reset.

        Every process must call it together (a collective sum) when several run."""
        sums = self.sums if self.sums is not None else torch.zeros(len(self.tasks), 3, device=accelerator.device)
        label_counts = self.label_counts
        if self.label_classes is not None and label_counts is None:
            label_counts = torch.zeros(sum(self.label_classes), dtype=torch.long, device=accelerator.device)
        self.reset()
        if accelerator.num_processes > 1:
            sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum")
            if label_counts is not None:
                label_counts = accelerator.reduce(label_counts.to(accelerator.device), reduction="sum")
        per_task = label_counts.split(self.label_classes) if label_counts is not None else [None] * len(self.tasks)
        metrics = {}
        for task, (loss_sum, correct, count), labels in zip(self.tasks, sums.tolist(), per_task):
            if count > 0:
                metrics[f"{prefix}{task}_loss"] = loss_sum / count
                metrics[f"{prefix}{task}_accuracy"] = correct / count
                if labels is not None:
                    metrics[f"{prefix}{task}_majority"] = labels.max().item() / count
        return metrics


def _correct(logits: torch.Tensor | None, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Number of targets whose arg-max prediction is right; logits per position or per target only."""
    if logits is None:
        return keep.new_zeros(())
    targets = labels[keep]
    if logits.shape[:-1] == labels.shape:  # a prediction at every position (or example)
        return logits.argmax(-1)[keep].eq(targets).sum()
    if logits.shape[:-1] == targets.shape:  # predictions at the targets only (a sparse head)
        return logits.argmax(-1).eq(targets).sum()
    raise ValueError(f"cannot match logits {tuple(logits.shape)} with labels {tuple(labels.shape)}")


class Bert18Trainer(Trainer):
    """``transformers.Trainer`` with per-task label names, loss normalisation, metrics and epochs for
    bert18's dynamic collators and datasets. Everything else is the Trainer's.

    Args:
        card_info: facts about the run for the model card (``corpus``, ``recipe``, ...); see
            ``bert18.training.model_card.write_model_card``.
        args, kwargs: as for ``transformers.Trainer``.
    """

    def __init__(self, *args: Any, card_info: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.card_info = dict(card_info or {})
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        self.pretraining_tasks = list(config.pretraining_tasks) if isinstance(config, Bert18Config) else []
        if self._pretraining() and self.args.label_names is None:
            self.label_names = pretraining_label_names(config)
        self.train_metrics = TaskMetrics(self.pretraining_tasks)
        self.eval_metrics = TaskMetrics(
            self.pretraining_tasks,
            label_classes=[PRETRAINING_TASKS[t].classes(config) or config.vocab_size for t in self.pretraining_tasks],
        )
        self.epoch_callback = SetEpochCallback(self.train_dataset, self.data_collator)
        self.add_callback(self.epoch_callback)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> Any:
        """The Trainer's, with its own generator: starting it never advances the global RNG (which a
        cached persistent-worker loader would do once, a fresh loader every evaluation)."""
        loader = super().get_eval_dataloader(eval_dataset)
        own_generator(loader, self.args.seed)
        return loader

    initial_optimizer_state: str | None = None  # a previous phase's moments (bert18.training.phases)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer; in a later phase of a phased run, with the previous phase's moments
        (a resumed checkpoint's own state replaces them afterwards, as the Trainer loads it later)."""
        optimizer = super().create_optimizer(model)
        if self.initial_optimizer_state is not None:
            carry_optimizer_state(optimizer, self.initial_optimizer_state)
        return optimizer

    sequence_length_warmup: SequenceLengthWarmup | None = None  # short rows first (bert18.training.warmup)
    batch_size_warmup: BatchSizeWarmup | None = None  # small batches first (bert18.training.warmup)

    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's loader; under a batch-size warmup, one whose batches follow the warmup
        (``WarmupBatchSampler``: this rank's slice of each global batch, so accelerate must not shard it again)."""
        if self.batch_size_warmup is None:
            return super().get_train_dataloader()
        dataset, collator = self.train_dataset, self.data_collator
        if isinstance(dataset, IterableDataset):
            raise ValueError(
                "batch_size_warmup orders a map-style dataset's examples itself; a stream keeps its own "
                "order: unset batch_size_warmup or streaming"
            )
        if isinstance(dataset, datasets.Dataset):
            dataset = self._remove_unused_columns(dataset, description="Training")
        else:
            collator = self._get_collator_with_removed_columns(collator, description="Training")
        args = self.args
        seed = args.data_seed if args.data_seed is not None else args.seed
        sampler = WarmupBatchSampler(
            len(dataset),
            self.batch_size_warmup,
            args.gradient_accumulation_steps,
            seed,
            args.world_size,
            args.process_index,
        )
        others = [target for target in self.epoch_callback.targets if not isinstance(target, WarmupBatchSampler)]
        self.epoch_callback.targets = [*others, sampler]  # a loader built again replaces the last one's sampler
        loader = self.accelerator.prepare(
            DataLoader(
                dataset,
                batch_sampler=sampler,
                collate_fn=collator,
                num_workers=args.dataloader_num_workers,
                pin_memory=args.dataloader_pin_memory,
                persistent_workers=args.dataloader_persistent_workers,
                multiprocessing_context=args.dataloader_multiprocessing_context,
                prefetch_factor=args.dataloader_prefetch_factor,
                in_order=args.dataloader_in_order,
                worker_init_fn=partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
            )
        )
        shard = getattr(loader, "batch_sampler", None)  # accelerate's BatchSamplerShard: make it a passthrough
        if getattr(shard, "batch_sampler", None) is sampler:
            shard.num_processes, shard.process_index = 1, 0
        return loader

    _warmup_length: int | None = None  # the longest row of the last step, logged as sequence_length

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: torch.device) -> tuple[list, Any]:
        """The Trainer's batches of one optimizer step; under a sequence-length warmup, cut to the step's
        length before their targets are counted (the loss is normalised by the targets that remain)."""
        batches, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.sequence_length_warmup is None:
            return batches, num_items_in_batch
        batches = [self.sequence_length_warmup.truncate(batch, self.state.global_step) for batch in batches]
        if batches:
            self._warmup_length = max(batch["input_ids"].shape[1] for batch in batches)
        return batches, self._get_num_items_in_batch(batches, device)

    def _pretraining(self) -> bool:
        return isinstance(self.accelerator.unwrap_model(self.model), Bert18ForPreTraining)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> Any:
        """``{task: targets in the whole accumulation step}`` for a pretraining model, which
        ``Bert18ForPreTraining`` divides each task's summed loss by; the Trainer's count otherwise."""
        if not (self.model_accepts_loss_kwargs and self._pretraining() and batch_samples):
            return super()._get_num_items_in_batch(batch_samples, device)
        counts = {}
        for task in self.pretraining_tasks:
            name = PRETRAINING_TASKS[task].label
            if name in batch_samples[0]:
                count = sum(batch[name].ne(-100).sum() for batch in batch_samples).to(device)
                if self.args.average_tokens_across_devices and self.args.world_size > 1:
                    count = self.accelerator.gather(count).sum()
                counts[task] = count
        return counts or None

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        """The Trainer's loss; for a pretraining model also records each task's loss and accuracy."""
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if self._pretraining():
            metrics = self.train_metrics if model.training else self.eval_metrics
            metrics.record(outputs, inputs)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the per-task training metrics since the last report to a training log."""
        if self._pretraining() and "loss" in logs:
            logs = {**logs, **self.train_metrics.report(self.accelerator)}
        if self.sequence_length_warmup is not None and "loss" in logs and self._warmup_length:
            logs = {**logs, "sequence_length": self._warmup_length}
        super().log(logs, start_time)

    def evaluation_loop(
        self,
        dataloader: Any,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> Any:
        """The Trainer's loop plus per-task metrics; a pretraining model without ``compute_metrics``
        keeps only losses (gathering [batch, length, vocabulary] logits would fill the memory)."""
        if not self._pretraining():
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        self.eval_metrics.reset()
        if self.compute_metrics is None:
            prediction_loss_only = True
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update(self.eval_metrics.report(self.accelerator, prefix=f"{metric_key_prefix}_"))
        return output

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's ``save_model``; under FSDP with sharded checkpoints (which it would leave without
        weights) the full model is gathered and saved (``bert18.training.sharding``), here and for
        ``push_to_hub``; checkpoints (an explicit ``output_dir`` from the Trainer) stay sharded."""
        if saves_sharded_state(self) and (not _internal_call or output_dir is None):
            save_full_model(self, output_dir)
            if self.args.push_to_hub and not _internal_call:
                self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)
            return
        super().save_model(output_dir, _internal_call)

    def prediction_step(
        self, model: Any, inputs: dict[str, Any], prediction_loss_only: bool, ignore_keys: list[str] | None = None
    ) -> Any:
        """The Trainer's step; for a pretraining model the per-task losses are not logits, so
        ``compute_metrics`` / ``preprocess_logits_for_metrics`` get ``(prediction_logits, task_logits)``
        first, as run_mlm.py's ``logits[0]`` expects of ``BertForPreTraining``."""
        if self._pretraining():
            ignore_keys = [*(ignore_keys or []), "task_losses"]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def create_model_card(self, **kwargs: Any) -> None:
        """bert18's model card for a pretraining run (transformers' otherwise); ``push_to_hub`` calls it."""
        if not self._pretraining():
            return super().create_model_card(**kwargs)
        if self.is_world_process_zero():
            write_model_card(
                self.args.output_dir,
                self.accelerator.unwrap_model(self.model),
                self.state,
                **{**self.card_info, **{k: v for k, v in kwargs.items() if v is not None}},
            )
        return None


__all__ = ["Bert18Trainer", "TaskMetrics", "pretraining_label_names"]

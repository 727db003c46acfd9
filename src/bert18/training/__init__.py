"""Training with the Hugging Face Trainer: ``Bert18Trainer``.

The stock ``Trainer`` runs bert18 models as they are; three things it cannot know about
multi-task pretraining are filled in here:

- **Label names.** The Trainer computes an evaluation loss only when every label argument of
  ``forward`` is in the batch; ``Bert18ForPreTraining`` takes one per task, so the label names
  become those of ``config.pretraining_tasks`` (``pretraining_label_names``).
- **Loss normalisation under gradient accumulation.** The stock Trainer counts only ``labels``
  (the MLM targets) across an accumulation step. Here every task's targets are counted (and summed
  across processes when ``average_tokens_across_devices``), so each task's loss is its sum over the
  whole step divided by its own count: exactly the loss of one big batch.
- **Epochs.** ``SetEpochCallback`` gives the collator and the dataset the epoch, so masks and
  sentence pairs are drawn afresh each epoch and reproduced on resume.
"""

from typing import Any

import torch
from transformers import Trainer

from ..collators import SetEpochCallback
from ..configuration_bert18 import PRETRAINING_TASKS, Bert18Config
from ..modeling_bert18 import Bert18ForPreTraining


def pretraining_label_names(config: Bert18Config) -> list[str]:
    """The label arguments a batch for ``config.pretraining_tasks`` carries (``TrainingArguments.label_names``)."""
    return [PRETRAINING_TASKS[task][0] for task in config.pretraining_tasks]


class Bert18Trainer(Trainer):
    """``transformers.Trainer`` with per-task label names, per-task loss normalisation and epochs
    for bert18's dynamic collators and datasets. Everything else is the Trainer's."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        self.pretraining_tasks = list(config.pretraining_tasks) if isinstance(config, Bert18Config) else []
        if self._pretraining() and self.args.label_names is None:
            self.label_names = pretraining_label_names(config)
        self.add_callback(SetEpochCallback(self.train_dataset, self.data_collator))

    def _pretraining(self) -> bool:
        return isinstance(self.accelerator.unwrap_model(self.model), Bert18ForPreTraining)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> Any:
        """``{task: targets in the whole accumulation step}`` for a pretraining model, which
        ``Bert18ForPreTraining`` divides each task's summed loss by; the Trainer's count otherwise."""
        if not (self.model_accepts_loss_kwargs and self._pretraining() and batch_samples):
            return super()._get_num_items_in_batch(batch_samples, device)
        counts = {}
        for task in self.pretraining_tasks:
            name = PRETRAINING_TASKS[task][0]
            if name in batch_samples[0]:
                count = sum(batch[name].ne(-100).sum() for batch in batch_samples).to(device)
                if self.args.average_tokens_across_devices and self.args.world_size > 1:
                    count = self.accelerator.gather(count).sum()
                counts[task] = count
        return counts or None


__all__ = ["Bert18Trainer", "pretraining_label_names"]

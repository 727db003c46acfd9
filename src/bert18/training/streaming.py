"""Exact resume of a streamed pretraining run: the data loader's position saved with every checkpoint.

The stock Trainer resumes a run by skipping, batch by batch, what the checkpoint's step count says
was consumed: for a stream that means reading and preparing everything again from the start of the
stream, and it is wrong once the stream has wrapped around. A streamed bert18 run instead uses
torchdata's ``StatefulDataLoader`` (accelerate's ``use_stateful_dataloader``): its ``state_dict``
holds the ``datasets.IterableDataset`` state (shard, row, window, pass; see
``bert18.data.streaming``) at the last batch handed to the Trainer, accelerate's one-batch look-ahead
accounted for. ``StreamStateCallback`` writes it into every checkpoint folder, one file per rank,
and loads it back when the run resumes, so the resumed run's batches are the uninterrupted run's.
"""

import logging
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

logger = logging.getLogger(__name__)


def stream_state_file(checkpoint: str | Path, process_index: int) -> Path:
    """Where rank ``process_index`` keeps its data loader state in a checkpoint folder."""
    return Path(checkpoint) / f"stream_state_rank{process_index}.pt"


class StreamStateCallback(TrainerCallback):
    """Save the training data loader's state with each checkpoint; restore it from ``resume_from``.

    With ``trainer`` given, a resumed run also reloads the checkpoint's random states once its
    first batches are fetched, as the Trainer does after skipping batches: starting the data loader
    draws from torch's generator, which would shift dropout against the uninterrupted run."""

    def __init__(self, resume_from: str | None = None, trainer: Trainer | None = None):
        self.resume_from = resume_from
        self.trainer = trainer
        self._rng_to_sync = False

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if self.resume_from is None:
            return
        path = stream_state_file(self.resume_from, args.process_index)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the checkpoint holds no stream position for rank {args.process_index}, so a "
                "streamed run cannot resume exactly (resume with the same number of processes, or start over)"
            )
        train_dataloader.load_state_dict(torch.load(path, weights_only=False))
        self._rng_to_sync = self.trainer is not None
        logger.info("resumed the data stream from %s", path)

    def on_step_begin(self, args, state, control, **kwargs):
        if self._rng_to_sync:  # after the data loader started (the Trainer's own rng_to_sync, for streams)
            self.trainer._load_rng_state(self.resume_from)
            self._rng_to_sync = False

    def on_save(self, args, state, control, train_dataloader=None, **kwargs):
        if train_dataloader is None or not hasattr(train_dataloader, "state_dict"):
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            torch.save(train_dataloader.state_dict(), stream_state_file(folder, args.process_index))


def configure_streaming(trainer: Trainer, resume_from: str | None) -> None:
    """Set a Trainer up for a streamed training set: every rank reads its own shards (no dispatching
    from the main process), the data loader is stateful, its state is checkpointed, and a resumed
    run restores it instead of skipping batches."""
    config = trainer.accelerator.dataloader_config
    config.dispatch_batches = False  # each rank reads its own shards (IterableDataset.shard per rank)
    config.use_stateful_dataloader = True
    trainer.args.ignore_data_skip = True  # the saved state positions the stream; skipping would re-read it
    trainer.add_callback(StreamStateCallback(resume_from, trainer))


__all__ = ["StreamStateCallback", "configure_streaming", "stream_state_file"]

"""Dynamic draws reach every DataLoader worker: masks, orders and pairs of the epoch that is set.

The collators and ``SentencePairDataset`` draw in whichever process collates or reads an item: the
``DataLoader`` workers when there are any. ``set_epoch`` runs in the main process. The reference for
every batch is the single-process draw of the same (seed, epoch, examples) by a fresh object; each
setting must equal it, epoch after epoch, and the epochs must differ (dynamic masking: RoBERTa).
Settings: no worker, two workers started per epoch, two persistent workers (which outlive the
epoch), under a plain ``DataLoader``, the Trainer (``Bert18Trainer`` and the stock ``Trainer`` with
``SetEpochCallback``) and a ``datasets.IterableDataset`` stream. Exact resume with persistent
workers: tests/test_recipes.py.
"""

import pickle

import datasets
import pytest
import torch
import transformers
from helpers import BERT_DROPOUT, tiny_config
from helpers import ERNIE_TASKS as ERNIE
from torch.utils.data import DataLoader

from bert18 import Bert18ForMaskedLM, Bert18ForPreTraining
from bert18.collators import (
    KnowledgeMaskingCollator,
    MLMCollator,
    PermutationLMCollator,
    PretrainingCollator,
    SetEpochCallback,
)
from bert18.data import SentencePairDataset, prepare_pretraining_dataset
from bert18.training import Bert18Trainer

EPOCHS = 3
BATCH = 8
WORKERS = {
    "in-process": dict(num_workers=0),
    "2-workers": dict(num_workers=2),
    "2-persistent-workers": dict(num_workers=2, persistent_workers=True),
}
COLLATORS = {
    "mlm": lambda tokenizer: MLMCollator(tokenizer, seed=3),
    "whole-word": lambda tokenizer: MLMCollator(tokenizer, granularity="whole_word", seed=3),
    # the level schedule changes with the epoch too: entities only from epoch 1
    "knowledge": lambda tokenizer: KnowledgeMaskingCollator(
        tokenizer, levels=[(0, {"basic": 1, "phrase": 1}), (1, {"entity": 1})], seed=3
    ),
    "permutation": lambda tokenizer: PermutationLMCollator(tokenizer, granularity="span", seed=3),
}
# What changes from epoch to epoch in each collator's batch.
DRAWN = {"mlm": "labels", "whole-word": "labels", "knowledge": "labels", "permutation": "plm_content_mask"}


@pytest.fixture(scope="module")
def rows(corpus, tokenizer):
    """48 packed rows of 64 tokens with word ids, 16 of them with capitalized-entity spans."""
    datasets.disable_progress_bars()
    packed = prepare_pretraining_dataset(
        corpus.select(range(40)), tokenizer, ["mlm", "capitalization"], max_length=64, capitalized_entities=True
    )
    with_spans = [dict(row) for row in packed if row["span_starts"]]
    without = [dict(row) for row in packed if not row["span_starts"]]
    assert len(with_spans) >= 16  # the knowledge collator has entities to take
    return sorted(with_spans[:16] + without[:32], key=lambda row: row["example_index"])


@pytest.fixture(scope="module")
def documents(corpus, tokenizer):
    """Grouped documents for sentence pairs: about 60 pairs of 64 tokens."""
    datasets.disable_progress_bars()
    return prepare_pretraining_dataset(
        corpus.select(range(8)), tokenizer, ERNIE, max_length=64, capitalized_entities=True
    )


def as_list(examples):
    """A DataLoader collate_fn that keeps the items as they are (module level: workers can pickle it)."""
    return examples


def reference_batches(make, tokenizer, rows, epoch):
    collator = make(tokenizer)
    collator.set_epoch(epoch)
    return [collator(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH)]


def assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        assert mine.keys() == theirs.keys()
        for name in theirs:
            assert torch.equal(mine[name], theirs[name]), name


@pytest.mark.parametrize("workers", WORKERS, ids=str)
@pytest.mark.parametrize("kind", COLLATORS, ids=str)
def test_collators_draw_each_epoch_in_every_worker(tokenizer, rows, kind, workers):
    """Every batch of every epoch equals the single-process draw of that epoch, and the epochs differ."""
    collator = COLLATORS[kind](tokenizer)
    loader = DataLoader(rows, batch_size=BATCH, collate_fn=collator, **WORKERS[workers])
    seen = []
    for epoch in range(EPOCHS):
        collator.set_epoch(epoch)
        seen.append(list(loader))
        assert_same_batches(seen[-1], reference_batches(COLLATORS[kind], tokenizer, rows, epoch))
    drawn = [torch.cat([batch[DRAWN[kind]].flatten() for batch in epoch]) for epoch in seen]
    for earlier in range(EPOCHS):
        for later in range(earlier + 1, EPOCHS):
            assert not torch.equal(drawn[earlier], drawn[later]), (earlier, later)


@pytest.mark.parametrize("workers", WORKERS, ids=str)
def test_pairs_are_drawn_each_epoch_in_every_worker(documents, tokenizer, workers):
    pairs = SentencePairDataset(documents, tokenizer, ERNIE, max_length=64, seed=5)
    reference = SentencePairDataset(documents, tokenizer, ERNIE, max_length=64, seed=5)
    loader = DataLoader(pairs, batch_size=BATCH, collate_fn=as_list, **WORKERS[workers])
    seen = []
    for epoch in range(EPOCHS):
        pairs.set_epoch(epoch)
        reference.set_epoch(epoch)
        seen.append([item for batch in loader for item in batch])
        assert seen[-1] == [reference[i] for i in range(len(reference))]
    for earlier in range(EPOCHS):
        for later in range(earlier + 1, EPOCHS):
            changed = sum(a != b for a, b in zip(seen[earlier], seen[later]))
            assert changed > len(pairs) // 2, (earlier, later, changed)


def test_the_epoch_reaches_spawned_workers_and_survives_pickling(tokenizer, rows):
    """``spawn`` workers get the collator pickled: it still follows set_epoch. A plain pickle gives
    an independent copy whose own epoch is shared again (workers forked from it follow it)."""
    collator = MLMCollator(tokenizer, seed=3)
    loader = DataLoader(
        rows[:16],
        batch_size=BATCH,
        collate_fn=collator,
        num_workers=1,
        persistent_workers=True,
        multiprocessing_context="spawn",
    )
    for epoch in (0, 4):
        collator.set_epoch(epoch)
        assert_same_batches(list(loader), reference_batches(COLLATORS["mlm"], tokenizer, rows[:16], epoch))
    copy = pickle.loads(pickle.dumps(collator))
    assert copy.epoch == 4 and copy._shared_epoch.is_shared()
    copy.set_epoch(6)
    assert (collator.epoch, copy.epoch) == (4, 6)
    forked = DataLoader(rows[:16], batch_size=BATCH, collate_fn=copy, num_workers=1, persistent_workers=True)
    for epoch in (6, 7):
        copy.set_epoch(epoch)
        assert_same_batches(list(forked), reference_batches(COLLATORS["mlm"], tokenizer, rows[:16], epoch))
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="epoch must be a non-negative integer"):
            collator.set_epoch(bad)
    with torch.device("meta"):  # built under a default-device context (empty-weights loading): still shared
        assert MLMCollator(tokenizer)._shared_epoch.is_shared()


class WithIndex:
    """A collate_fn that also returns the examples' indices (a stream's batches have no fixed order)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        return {**self.collator(examples), "example_index": torch.tensor([e["example_index"] for e in examples])}


def test_streaming_dataset_with_persistent_workers(tokenizer, rows):
    """A ``datasets.IterableDataset`` in two shards read by two persistent workers: each example's
    masks are those of the epoch set, as drawn in one process."""
    stream = datasets.Dataset.from_list(rows).to_iterable_dataset(num_shards=2)
    collator = MLMCollator(tokenizer, granularity="whole_word", seed=3)
    loader = DataLoader(
        stream, batch_size=BATCH, collate_fn=WithIndex(collator), num_workers=2, persistent_workers=True
    )
    reference = MLMCollator(tokenizer, granularity="whole_word", seed=3)
    by_index = {row["example_index"]: row for row in rows}
    by_epoch = []
    for epoch in range(EPOCHS):
        stream.set_epoch(epoch)
        collator.set_epoch(epoch)
        reference.set_epoch(epoch)
        labels = {}
        for batch in loader:
            for index, row, ids in zip(batch["example_index"].tolist(), batch["labels"], batch["input_ids"]):
                length = len(by_index[index]["input_ids"])
                labels[index] = row[:length]
                expected = reference([by_index[index]])
                assert torch.equal(row[:length], expected["labels"][0]) and torch.equal(
                    ids[:length], expected["input_ids"][0]
                )
        assert sorted(labels) == sorted(by_index)
        by_epoch.append(torch.cat([labels[i] for i in sorted(by_index)]))
    assert not torch.equal(by_epoch[0], by_epoch[1]) and not torch.equal(by_epoch[1], by_epoch[2])


# Trainer runs on sentence pairs: (trainer class, tasks, the PretrainingCollator's masking or permutation
# collator, what changes between epochs). The stock Trainer gets SetEpochCallback(pairs, collator).
TRAINER_SETUPS = {
    "ernie-knowledge": (
        Bert18Trainer,
        ERNIE,
        lambda tokenizer: dict(masking=KnowledgeMaskingCollator(tokenizer, seed=3)),
        "labels",
    ),
    "mlm-nsp-whole-word": (
        transformers.Trainer,
        ["mlm", "nsp"],
        lambda tokenizer: dict(masking=MLMCollator(tokenizer, granularity="whole_word", seed=3)),
        "labels",
    ),
    "plm-sop": (
        Bert18Trainer,
        ["plm", "sop"],
        lambda tokenizer: dict(permutation=PermutationLMCollator(tokenizer, granularity="span", seed=3)),
        "plm_content_mask",
    ),
}


@pytest.mark.parametrize("workers", WORKERS, ids=str)
@pytest.mark.parametrize("setup", TRAINER_SETUPS, ids=str)
def test_trainer_batches_follow_the_epoch_with_workers(documents, tokenizer, tmp_path, setup, workers):
    """Two epochs of Trainer training on sentence pairs: every batch the model gets (pairs, masks or
    orders, labels) is the single-process draw of its epoch, the first batches of epoch 1 included,
    however the workers run."""
    trainer_class, tasks, collators, drawn = TRAINER_SETUPS[setup]
    pairs = SentencePairDataset(documents, tokenizer, tasks, max_length=64, seed=5)
    config = tiny_config(
        vocab_size=30522, num_hidden_layers=1, num_attention_heads=2, pretraining_tasks=tasks, **BERT_DROPOUT
    )
    transformers.set_seed(0)
    model = Bert18ForPreTraining(config)
    collator = PretrainingCollator(tokenizer, config, **collators(tokenizer))
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            {k: v.clone() for k, v in kwargs.items() if k != "num_items_in_batch"}
        ),
        with_kwargs=True,
    )
    args = transformers.TrainingArguments(
        str(tmp_path),
        per_device_train_batch_size=BATCH,
        num_train_epochs=2,
        train_sampling_strategy="sequential",
        dataloader_num_workers=WORKERS[workers]["num_workers"],
        report_to="none",
        save_strategy="no",
        dataloader_persistent_workers=WORKERS[workers].get("persistent_workers", False),
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        remove_unused_columns=False,
    )  # keep example_index
    callbacks = [] if trainer_class is Bert18Trainer else [SetEpochCallback(pairs, collator)]
    trainer_class(model=model, args=args, train_dataset=pairs, data_collator=collator, callbacks=callbacks).train()

    reference_pairs = SentencePairDataset(documents, tokenizer, tasks, max_length=64, seed=5)
    reference = PretrainingCollator(tokenizer, config, **collators(tokenizer))
    expected = []
    for epoch in range(2):
        reference_pairs.set_epoch(epoch)
        reference.set_epoch(epoch)
        expected += [
            reference([reference_pairs[i] for i in range(start, min(start + BATCH, len(pairs)))])
            for start in range(0, len(pairs), BATCH)
        ]
    assert_same_batches(seen, expected)
    per_epoch = len(expected) // 2
    assert not torch.equal(seen[0][drawn], seen[per_epoch][drawn])
    assert not all(torch.equal(seen[i]["input_ids"], seen[per_epoch + i]["input_ids"]) for i in range(per_epoch))


@pytest.mark.parametrize("workers", WORKERS, ids=str)
def test_trainer_on_a_stream_follows_the_epoch(tokenizer, rows, tmp_path, workers):
    """The stock Trainer on a ``datasets.IterableDataset`` (two shards) for three passes: each pass's
    masks are the single-process draws of its epoch. A stream has no length, so the Trainer's
    state.epoch is fractional at a pass boundary; SetEpochCallback follows the Trainer's own count."""
    stream = datasets.Dataset.from_list(rows).to_iterable_dataset(num_shards=2)
    collator = MLMCollator(tokenizer, granularity="whole_word", seed=3)
    transformers.set_seed(0)
    model = Bert18ForMaskedLM(tiny_config(vocab_size=30522, num_hidden_layers=1, num_attention_heads=2, **BERT_DROPOUT))
    seen = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(
            [tuple(row[:length].tolist()) for row, length in zip(kwargs["labels"], kwargs["attention_mask"].sum(1))]
        ),
        with_kwargs=True,
    )
    per_pass = len(rows) // BATCH
    args = transformers.TrainingArguments(
        str(tmp_path),
        per_device_train_batch_size=BATCH,
        max_steps=3 * per_pass,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_strategy="no",
        remove_unused_columns=False,
        dataloader_num_workers=WORKERS[workers]["num_workers"],
        dataloader_persistent_workers=WORKERS[workers].get("persistent_workers", False),
    )
    transformers.Trainer(
        model=model,
        args=args,
        train_dataset=stream,
        data_collator=collator,
        callbacks=[SetEpochCallback(stream, collator)],
    ).train()
    assert len(seen) == 3 * per_pass
    reference = MLMCollator(tokenizer, granularity="whole_word", seed=3)
    passes = []
    for epoch in range(3):
        reference.set_epoch(epoch)
        expected = sorted(tuple(reference([row])["labels"][0].tolist()) for row in rows)
        passes.append(sorted(label for batch in seen[epoch * per_pass : (epoch + 1) * per_pass] for label in batch))
        assert passes[-1] == expected, epoch
    assert passes[0] != passes[1] != passes[2]

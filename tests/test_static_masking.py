"""Static masking (BERT's dupe_factor copies): equal across epochs, different across copies, each copy
exactly the dynamic collator's draw for that epoch, stored compactly."""

import numpy as np
import pytest
import torch
from helpers import ERNIE_TASKS

from bert18 import Bert18Config
from bert18.collators import KnowledgeMaskingCollator, MLMCollator, PretrainingCollator, StaticMasks, static_masking
from bert18.data import prepare_pretraining_dataset

DUPES = 3


@pytest.fixture(scope="module")
def packed(tokenizer, corpus):
    return prepare_pretraining_dataset(corpus.select(range(60)), tokenizer, ["mlm", "capitalization"], max_length=128)


@pytest.fixture(scope="module")
def masking(tokenizer):
    return MLMCollator(tokenizer, granularity="whole_word", seed=7)


@pytest.fixture(scope="module")
def static(packed, masking):
    return static_masking(packed, masking, dupe_factor=DUPES)


def rows_of(dataset, copy):
    n = len(dataset) // DUPES
    return [dataset[i] for i in range(copy * n, copy * n + n)]


def test_each_copy_is_the_dynamic_draw_of_its_epoch(tokenizer, packed, masking, static):
    assert len(static) == DUPES * len(packed)
    assert masking.epoch == 0  # drawing the copies left the collator's epoch alone
    collator = PretrainingCollator(tokenizer, ["mlm", "capitalization"], masking=StaticMasks(tokenizer))
    dynamic = PretrainingCollator(tokenizer, ["mlm", "capitalization"], masking=masking)
    originals = [packed[i] for i in range(len(packed))]
    for copy in range(DUPES):
        dynamic.set_epoch(copy)
        expected = dynamic(originals[:16])
        got = collator(rows_of(static, copy)[:16])
        for name in ("input_ids", "labels", "attention_mask", "capitalization_labels"):
            assert torch.equal(got[name], expected[name]), (copy, name)


def test_static_masks_repeat_across_epochs_and_differ_across_copies(tokenizer, static):
    collator = PretrainingCollator(tokenizer, ["mlm"], masking=StaticMasks(tokenizer))
    first = rows_of(static, 0)[:32]
    batches = []
    for epoch in range(3):
        collator.set_epoch(epoch)
        batches.append(collator(first))
    assert all(torch.equal(b["labels"], batches[0]["labels"]) for b in batches)
    other = collator(rows_of(static, 1)[:32])
    assert [r["example_index"] for r in rows_of(static, 1)[:32]] == [r["example_index"] for r in first]
    assert not torch.equal(other["labels"].ne(-100), batches[0]["labels"].ne(-100))
    # BERT's rate holds in every copy: 15% of the maskable tokens
    for copy in range(DUPES):
        rows = rows_of(static, copy)
        masked = sum(len(r["mask_positions"]) for r in rows)
        special = list(tokenizer.all_special_ids)
        maskable = 0
        for r in rows:  # on the original ids: the stored ones hold [MASK], itself a special token
            original = np.asarray(r["input_ids"], dtype=np.int64)
            original[np.asarray(r["mask_positions"], dtype=np.int64)] = r["mask_targets"]
            maskable += int((~np.isin(original, special)).sum())
        assert abs(masked / maskable - 0.15) < 0.01


def test_copies_are_stored_compactly(packed, static):
    assert static.features["input_ids"].feature.dtype == "uint16"
    assert static.features["mask_positions"].feature.dtype == "uint16"
    tokens = sum(len(ids) for ids in static["input_ids"])
    added = sum(static.data.column(c).nbytes for c in ("input_ids", "mask_positions", "mask_targets", "static_copy"))
    assert added / tokens < 3.2  # 2 bytes of id + ~15% x (2 + 2) of masks + offsets, per token and copy


def test_knowledge_masking_copies_and_bad_input(tokenizer, packed):
    knowledge = KnowledgeMaskingCollator(tokenizer, seed=1)
    static = static_masking(packed.select(range(8)), knowledge, dupe_factor=2)
    assert len(static) == 16 and np.asarray(static[0]["mask_positions"]).size > 0
    with pytest.raises(ValueError, match="dupe_factor must be a positive integer"):
        static_masking(packed, knowledge, dupe_factor=0)
    with pytest.raises(ValueError, match="already holds static masks"):
        static_masking(static, knowledge, dupe_factor=1)
    with pytest.raises(ValueError, match=r"needs a map-style datasets\.Dataset"):
        static_masking(packed.to_iterable_dataset(), knowledge)
    with pytest.raises(ValueError, match=r"prepare the data with bert18\.collators\.static_masking"):
        PretrainingCollator(tokenizer, Bert18Config(pretraining_tasks=["mlm"]), masking=StaticMasks(tokenizer))(
            [packed[0]]
        )


def test_the_recipe_trains_on_static_copies(tmp_path, minilm_path):
    """dupe_factor in a recipe: the Trainer's data is dupe_factor copies of the packed rows, every batch
    collated from stored masks; sentence tasks are refused before anything is written."""
    from bert18.training import parse_recipe
    from bert18.training.pretrain import build_pretraining

    values = dict(
        config_overrides={
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "max_position_embeddings": 64,
        },
        max_length=64,
        max_documents=6,
        per_device_train_batch_size=8,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        validation_fraction=0.0,
        tokenizer_name_or_path=minilm_path,
        max_steps=3,
        masking="whole_word",
        dupe_factor=2,
    )
    recipe = parse_recipe("tiny-demo", output_dir=str(tmp_path / "run"), pretraining_tasks=["mlm"], **values)
    run = build_pretraining(recipe)
    assert isinstance(run.trainer.data_collator.masking, StaticMasks)
    assert sorted(set(run.train_dataset["static_copy"])) == [0, 1]
    run.trainer.train()
    assert run.trainer.state.global_step == 3
    refused = parse_recipe("tiny-demo", output_dir=str(tmp_path / "refused"), pretraining_tasks=ERNIE_TASKS, **values)
    with pytest.raises(ValueError, match="draw sentence pairs per epoch"):
        build_pretraining(refused)
    assert not (tmp_path / "refused").exists()

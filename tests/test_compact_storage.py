"""Compact prepared data: the smallest types, nothing the collators do not read, and the same batches as before.

References: the tokenizer's own word ids (word boundaries), the collators on the full-width fields
(the same examples with word ids kept, as plain Python lists), and the file sizes on disk.
"""

import os

import datasets
import numpy as np
import pytest
import torch
from helpers import ERNIE_TASKS as ERNIE

from bert18 import Bert18Config
from bert18.collators import MLMCollator, PretrainingCollator
from bert18.collators.mlm import word_start_table, word_starts
from bert18.data import SentencePairDataset, prepare_pretraining_dataset
from bert18.data.prepare import marks_word_starts, token_id_type


def _bytes_per_token(dataset, tokens):
    return sum(os.path.getsize(f["filename"]) for f in dataset.cache_files) / tokens


@pytest.fixture(scope="module")
def corpus_tokens(corpus, tokenizer):
    return sum(len(ids) for ids in tokenizer(list(corpus["text"]), add_special_tokens=False)["input_ids"])


def test_packed_mlm_and_ernie_layouts_meet_the_size_goals(corpus, tokenizer, corpus_tokens):
    """At most 3 bytes per token packed for MLM and 6 for the ERNIE layout (on disk, every column)."""
    packed = prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=128)
    assert packed.features["input_ids"].feature.dtype == "uint16"
    assert set(packed.column_names) == {"input_ids", "example_index"}  # WordPiece: word starts come from ##
    assert _bytes_per_token(packed, corpus_tokens) <= 3.0

    ernie = prepare_pretraining_dataset(corpus, tokenizer, ERNIE, max_length=128, capitalized_entities=True)
    types = {name: feature.feature.feature.dtype for name, feature in ernie.features.items() if name != "module"}
    assert types == {
        "input_ids": "uint16",
        "word_ids": "uint8",
        "capitalization_labels": "int8",
        "span_starts": "uint16",
        "span_ends": "uint16",
        "span_kinds": "string",
    }
    assert _bytes_per_token(ernie, corpus_tokens) <= 6.0
    plain = prepare_pretraining_dataset(corpus, tokenizer, ["mlm", "sop"], max_length=128)
    assert set(plain.column_names) == {"module", "input_ids", "word_ids"}  # no spans, no labels: none asked for


def test_id_type_follows_the_vocabulary():
    class Vocabulary:
        def __init__(self, size):
            self.size = size

        def __len__(self):
            return self.size

    assert token_id_type(Vocabulary(30522)) == "uint16" and token_id_type(Vocabulary(65536)) == "uint16"
    assert token_id_type(Vocabulary(65537)) == "int32"  # XLM-R's 250,002 ids


@pytest.mark.parametrize("granularity", ["whole_word", "ngram", "span"])
def test_wordpiece_rows_without_word_ids_mask_the_same_words(corpus, tokenizer, granularity):
    """WordPiece rows stored without word ids give exactly the batches of rows that keep them."""
    assert marks_word_starts(tokenizer)
    small = corpus.select(range(40))
    compact = prepare_pretraining_dataset(small, tokenizer, ["mlm"], max_length=128)
    full = prepare_pretraining_dataset(small, tokenizer, ["mlm"], max_length=128, word_ids=True)
    assert "word_ids" not in compact.column_names and "word_ids" in full.column_names
    collator = MLMCollator(tokenizer, granularity=granularity, seed=3)
    for start in range(0, len(full), 16):
        ours, reference = (
            collator(list(compact.select(range(start, min(start + 16, len(full)))))),
            collator(list(full.select(range(start, min(start + 16, len(full)))))),
        )
        for name in reference:
            assert torch.equal(ours[name], reference[name]), name


def test_word_ids_modulo_256_keep_every_word_boundary(tokenizer):
    """A sentence of 400 words (max_length 512): stored word ids wrap at 256, but every boundary the
    collators and SentencePairDataset read is the tokenizer's own."""
    words = [("apple", "river", "house", "green", "music")[i % 5] for i in range(400)]  # one token each
    text = " ".join(words) + ". Second sentence here. And a third one."
    documents = prepare_pretraining_dataset(
        datasets.Dataset.from_dict({"text": [text, text]}), tokenizer, ["mlm", "sop"], max_length=512
    )
    stored = documents[0]["word_ids"][0]
    assert max(stored) == 255 and len(set(stored)) == 256
    encoding = tokenizer(text, add_special_tokens=False)
    reference = np.asarray(encoding.word_ids())[: len(stored)]
    ids = np.asarray(documents[0]["input_ids"][0])
    starts = word_starts(ids, np.zeros(len(ids), dtype=bool), stored, word_start_table(tokenizer))
    assert np.array_equal(starts, np.r_[True, reference[1:] != reference[:-1]])
    pairs = SentencePairDataset(documents, tokenizer, ["mlm", "sop"], max_length=512)
    assert np.array_equal(pairs._words[: len(stored)], reference - reference[0])  # renumbered across the corpus

    packed = prepare_pretraining_dataset(
        datasets.Dataset.from_dict({"text": [text]}), tokenizer, ["mlm"], max_length=512, word_ids=True
    )
    row = packed[0]
    inner = np.asarray(row["word_ids"][1:-1])
    assert row["word_ids"][0] == row["word_ids"][-1] == 255  # [CLS], [SEP]
    assert np.array_equal(inner[1:] != inner[:-1], np.diff(np.asarray(encoding.word_ids())) != 0)


@pytest.mark.parametrize("tasks", [["mlm", "capitalization"], ERNIE], ids="+".join)
def test_collators_take_the_compact_types_as_numpy(corpus, tokenizer, tasks):
    """Rows read as numpy arrays of uint16/uint8/int8 make the batches that Python lists make."""
    prepared = prepare_pretraining_dataset(
        corpus.select(range(30)), tokenizer, tasks, max_length=128, capitalized_entities=True
    )
    config = Bert18Config.from_preset(
        "tiny", pretraining_tasks=tasks, vocab_size=len(tokenizer), max_position_embeddings=128
    )
    if "sentence_distance" in tasks:
        examples = SentencePairDataset(prepared, tokenizer, config, max_length=128)
        as_lists = [examples[i] for i in range(16)]
        as_arrays = [
            {
                k: np.asarray(v, dtype=np.uint16 if k == "input_ids" else None) if isinstance(v, list) else v
                for k, v in e.items()
            }
            for e in as_lists
        ]
    else:
        as_lists = list(prepared.select(range(16)))
        dtypes = {
            name: np.dtype(feature.feature.dtype)
            for name, feature in prepared.features.items()
            if isinstance(feature, datasets.List) and feature.feature.dtype != "string"
        }
        as_arrays = [{k: np.asarray(v, dtype=dtypes.get(k)) for k, v in e.items()} for e in as_lists]
        assert as_arrays[0]["input_ids"].dtype == np.uint16
        assert as_arrays[0]["capitalization_labels"].dtype == np.int8
    collator = PretrainingCollator(tokenizer, config, granularity="whole_word")
    reference, ours = collator(as_lists), collator(as_arrays)
    assert reference.keys() == ours.keys()
    for name in reference:
        assert torch.equal(ours[name], reference[name]), name

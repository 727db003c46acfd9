"""Streaming: local shards read incrementally, every objective prepared from a stream in bounded windows,
exact resume of the stream, sharding across ranks, bad input named, and a streamed recipe resumed exactly."""

import gzip
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from datasets.distributed import split_dataset_by_node
from helpers import ERNIE_TASKS as ERNIE
from helpers import cli_overrides, run_distributed_pretrain

from bert18 import Bert18Config
from bert18.collators import PretrainingCollator
from bert18.data import SentencePairDataset, load_corpus, prepare_pretraining_dataset, stream_sentence_pairs
from bert18.data.corpus import write_sample_corpus
from bert18.data.streaming import ShuffledRows, WindowPairs, windowed
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny-demo.yaml"
DOCS = [
    "First document. It has two sentences.",
    "Second document, one line.\nAnd a second line. Third.",
    "Third document: Guido van Rossum wrote Python. It is named after Monty Python.",
    "Fourth. Short.",
]


def _texts(dataset):
    return [row["text"] for row in dataset]


# ------------------------------------------------------------------ reading shards


def test_text_shards_stream_as_map_style_reads_them(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(f"{DOCS[0]}\n\n{DOCS[1]}\n   \n", encoding="utf-8")  # whitespace-only separator
    (folder / "b.txt").write_text(f"\ufeff{DOCS[2]}\n\n\n{DOCS[3]}", encoding="utf-8")  # BOM, no final newline
    (folder / "README.md").write_text("not corpus")
    streamed = load_corpus(folder, streaming=True)
    assert isinstance(streamed, datasets.IterableDataset) and streamed.n_shards == 2
    assert _texts(streamed) == load_corpus(folder)["text"] == DOCS
    assert _texts(load_corpus(folder, streaming=True, documents="line"))[:2] == [DOCS[0], "Second document, one line."]
    assert _texts(load_corpus(str(folder / "*.txt"), streaming=True)) == DOCS  # a glob
    shuffled = load_corpus(folder, streaming=True, shard_seed=3)
    assert sorted(_texts(shuffled)) == sorted(DOCS)


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_compressed_shards_stream(tmp_path, compression):
    paths = write_sample_corpus(tmp_path / "c", megabytes=0.05, num_shards=2, compression=compression)
    plain = write_sample_corpus(tmp_path / "p", megabytes=0.05, num_shards=2)  # the same seed, uncompressed
    assert all(p.name.endswith(f".txt.{compression}") for p in paths)
    streamed = _texts(load_corpus(tmp_path / "c", streaming=True))
    assert streamed == _texts(load_corpus(tmp_path / "p", streaming=True)) and len(streamed) > 20
    assert load_corpus(tmp_path / "c")["text"] == streamed  # map-style reads them too (datasets decompresses)
    assert len(plain) == 2


def test_jsonl_and_parquet_shards_stream(tmp_path):
    (tmp_path / "j").mkdir()
    with gzip.open(tmp_path / "j" / "a.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"body": text, "id": i}) + "\n" for i, text in enumerate(DOCS[:2]))
    (tmp_path / "j" / "b.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in DOCS[2:]))
    assert _texts(load_corpus(tmp_path / "j", streaming=True, text_column="body")) == DOCS
    (tmp_path / "q").mkdir()
    pq.write_table(pa.table({"content": DOCS, "n": [1, 2, 3, 4]}), tmp_path / "q" / "a.parquet", row_group_size=2)
    assert _texts(load_corpus(tmp_path / "q", streaming=True, text_column="content")) == DOCS
    with pytest.raises(ValueError, match=r"has no column 'text'; its columns: \['content', 'n'\]"):
        list(load_corpus(tmp_path / "q", streaming=True))


def test_a_text_shard_is_read_incrementally(tmp_path):
    """The first documents of a 40 MB shard come without reading it whole: memory stays far below its size."""
    path = tmp_path / "big.txt"
    block = ("A sentence of a document in a large shard. " * 20 + "\n\n").encode()
    with path.open("wb") as handle:
        for _ in range(40_000_000 // len(block)):
            handle.write(block)
    stream = load_corpus(path, streaming=True)
    tracemalloc.start()
    first = list(itertools.islice(stream, 50))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == 50 and peak < 5_000_000, peak


def test_bad_input_names_the_shard_and_the_line(tmp_path, caplog):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"text": broken}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl, line 4: malformed JSON"):
        list(load_corpus(folder, streaming=True))
    (folder / "a.jsonl").write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match=r"a\.jsonl, line 2: expected a JSON object with a string 'text'"):
        list(load_corpus(folder, streaming=True))

    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "1.txt").write_text(DOCS[0] + "\n")
    (texts / "2.txt").write_bytes(b"")  # an empty shard in the middle: skipped, named in a warning
    (texts / "3.txt").write_bytes(b"fine line\nstill fine\n\xe9t\xe9 in latin-1\n")
    (texts / "4.txt").write_text(DOCS[1] + "\n")
    with pytest.raises(ValueError, match=r"3\.txt, line 3: not UTF-8 text"):
        list(load_corpus(texts, streaming=True))
    (texts / "3.txt").write_text(DOCS[2] + "\n")
    with caplog.at_level(logging.WARNING, logger="bert18.data.corpus"):
        assert _texts(load_corpus(texts, streaming=True)) == [DOCS[0], DOCS[2], DOCS[1]]
    assert "2.txt holds no document: skipped" in caplog.text
    (texts / "5.txt.gz").write_bytes(gzip.compress(b"cut short")[:-6])  # a truncated archive
    with pytest.raises(ValueError, match=r"5\.txt\.gz: cannot read it"):
        list(load_corpus(texts, streaming=True))


# ------------------------------------------------------------------ windows: resume and shards


def _numbers(num_shards=4, size=50):
    return datasets.Dataset.from_dict({"a": list(range(size))}).to_iterable_dataset(num_shards=num_shards)


FEATURES = datasets.Features({"a": datasets.Value("int64"), "example_index": datasets.Value("int64")})


@pytest.mark.parametrize("repeat", [False, True])
def test_a_windowed_stream_resumes_exactly_at_any_position(repeat):
    stream = windowed(_numbers(), ShuffledRows(), window=7, seed=0, features=FEATURES, repeat=repeat)
    total = 130 if repeat else 50  # repeat: into the third pass
    reference = list(itertools.islice(stream, total))
    assert len({row["example_index"] for row in reference}) == total
    assert sorted(row["a"] for row in reference[:50]) == list(range(50))
    if repeat:  # a new pass is another order, from the pass number
        assert [r["a"] for r in reference[50:100]] != [r["a"] for r in reference[:50]]
    for stop in (1, 6, 7, 8, 23, 49, *((50, 51, 99, 117) if repeat else ())):
        iterator = iter(stream)
        for _ in range(stop):
            next(iterator)
        state = stream.state_dict()
        resumed = windowed(_numbers(), ShuffledRows(), window=7, seed=0, features=FEATURES, repeat=repeat)
        resumed.load_state_dict(json.loads(json.dumps(state)))  # the state survives serialisation
        assert list(itertools.islice(resumed, total - stop)) == reference[stop:], stop


def test_epochs_draw_another_order_and_seeds_reproduce():
    stream = windowed(_numbers(), ShuffledRows(), window=10, seed=0, features=FEATURES)
    first = list(stream)
    assert list(stream) == first
    stream.set_epoch(1)
    second = list(stream)
    assert second != first and sorted(r["a"] for r in second) == list(range(50))
    other_seed = list(windowed(_numbers(), ShuffledRows(), window=10, seed=1, features=FEATURES))
    assert [r["a"] for r in other_seed] != [r["a"] for r in first]


@pytest.mark.parametrize("num_shards", [4, 3])
def test_ranks_split_the_stream(num_shards):
    """split_dataset_by_node (and IterableDataset.shard, which accelerate calls per rank): disjoint ranks
    whose union is the whole stream; with shards divisible by the ranks no rank reads another's shard."""
    stream = windowed(_numbers(num_shards), ShuffledRows(), window=5, seed=0, features=FEATURES)
    ranks = [list(split_dataset_by_node(stream, rank=r, world_size=2)) for r in (0, 1)]
    values = [[row["a"] for row in rows] for rows in ranks]
    assert not set(values[0]) & set(values[1]) and sorted(values[0] + values[1]) == list(range(50))
    indices = [row["example_index"] for rows in ranks for row in rows]
    assert len(set(indices)) == 50  # the rank is part of each window's key
    if num_shards % 2 == 0:
        shards = [list(stream.shard(num_shards=2, index=r)) for r in (0, 1)]
        assert sorted(row["a"] for rows in shards for row in rows) == list(range(50))
        assert {row["a"] for row in shards[0]} == set(range(len(shards[0])))  # contiguous shards 0-1 of 0-3


# ------------------------------------------------------------------ every objective from a stream


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    write_sample_corpus(folder, megabytes=0.3, num_shards=4)
    return folder


@pytest.mark.parametrize(
    "tasks",
    [["mlm"], ["mlm", "capitalization"], ["mlm", "nsp"], ["mlm", "sop"], ERNIE, ["token_document_relation"]],
    ids="+".join,
)
def test_every_objective_streams_into_the_collator(tasks, tokenizer, shards):
    stream = load_corpus(shards, streaming=True)
    prepared = prepare_pretraining_dataset(stream, tokenizer, tasks, max_length=64, capitalized_entities=True)
    assert isinstance(prepared, datasets.IterableDataset)
    grouped = bool({"nsp", "sop", "sentence_distance", "token_document_relation"} & set(tasks))
    if grouped:
        prepared = stream_sentence_pairs(prepared, tokenizer, tasks, max_length=64, window=16)
    rows = list(itertools.islice(prepared, 64))
    assert set(prepared.features) == set(rows[0])
    assert all(len(row["input_ids"]) <= 64 for row in rows) and len({r["example_index"] for r in rows}) == 64
    config = Bert18Config.from_preset("tiny", pretraining_tasks=tasks, vocab_size=len(tokenizer))
    batch = PretrainingCollator(tokenizer, config, seed=0)(rows[:16])
    for task in tasks:
        name = {"mlm": "labels"}.get(task, f"{task}_labels" if task in ("capitalization",) else None)
        if name:
            assert (batch[name] != -100).any(), task
    if "sentence_distance" in tasks:
        labels = [row["sentence_distance_label"] for row in rows]
        assert set(labels) == {0, 1, 2}


@pytest.mark.parametrize("tasks", [["mlm", "nsp"], ERNIE], ids="+".join)
def test_a_window_makes_the_map_style_pairs_of_its_documents(tasks, tokenizer, shards):
    """Each window is SentencePairDataset over the window's documents, seeded by the window key: the
    streamed pairs are the reference pairs of that window (negatives from its other documents), shuffled."""
    documents = prepare_pretraining_dataset(load_corpus(shards, streaming=True), tokenizer, tasks, max_length=64)
    window = list(itertools.islice(documents, 12))
    transform = WindowPairs(tokenizer, tasks, 64, 0.1, documents.features)
    key = 12345
    streamed = transform(window, key)
    reference = SentencePairDataset(
        datasets.Dataset.from_list(window, features=documents.features), tokenizer, tasks, max_length=64, seed=key
    )

    def strip(item):
        return json.dumps({k: v for k, v in sorted(item.items()) if k != "example_index"})

    assert sorted(map(strip, streamed)) == sorted(strip(reference[i]) for i in range(len(reference)))
    assert [strip(item) for item in streamed] != [strip(reference[i]) for i in range(len(reference))]  # shuffled


def test_streamed_pairs_resume_exactly_and_change_with_the_epoch(tokenizer, shards):
    def pairs():
        documents = prepare_pretraining_dataset(load_corpus(shards, streaming=True), tokenizer, ERNIE, max_length=64)
        return stream_sentence_pairs(documents, tokenizer, ERNIE, max_length=64, window=8, seed=5)

    stream = pairs()
    reference = list(itertools.islice(stream, 60))
    iterator = iter(stream)
    for _ in range(21):
        next(iterator)
    resumed = pairs()
    resumed.load_state_dict(stream.state_dict())
    assert list(itertools.islice(resumed, 39)) == reference[21:]
    stream.set_epoch(1)
    assert list(itertools.islice(stream, 60)) != reference


def test_a_map_style_pair_dataset_points_to_the_streaming_one(tokenizer, shards):
    documents = prepare_pretraining_dataset(load_corpus(shards, streaming=True), tokenizer, ["mlm", "sop"], 64)
    with pytest.raises(TypeError, match="stream_sentence_pairs"):
        SentencePairDataset(documents, tokenizer, ["mlm", "sop"], max_length=64)


# ------------------------------------------------------------------ the recipe


SMALL = dict(
    config_overrides={
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "max_position_embeddings": 64,
    },
    max_length=64,
    per_device_train_batch_size=8,
    logging_steps=1,
    eval_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    dataloader_num_workers=0,
    streaming=True,
    validation_fraction=0.0,
    pretraining_tasks=ERNIE,
)


def _train(recipe):
    run = build_pretraining(recipe)
    run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    losses = {entry["step"]: entry["loss"] for entry in run.trainer.state.log_history if "loss" in entry}
    return run, losses


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_recipe_resumes_exactly(tmp_path, minilm_path, workers):
    """ERNIE tasks streamed with a window of 4 documents from 2 small shards: a run resumed from its
    step-5 checkpoint trains on the same batches (pairs and dynamic masks) as the uninterrupted run, into
    its second pass over the corpus: the same losses and weights; also with two dataloader workers
    (one shard each, their states saved by the StatefulDataLoader)."""
    corpus = tmp_path / "corpus"
    write_sample_corpus(corpus, megabytes=0.012, num_shards=2)
    common = dict(
        SMALL,
        corpus=str(corpus),
        tokenizer_name_or_path=minilm_path,
        max_steps=12,
        stream_window=4,
        save_strategy="steps",
        save_steps=5,
        save_total_limit=5,
        dataloader_num_workers=workers,
    )
    straight, straight_losses = _train(parse_recipe(TINY, output_dir=str(tmp_path / "straight"), **common))
    checkpoint = tmp_path / "straight" / "checkpoint-5"

    def stream_pass(step):
        state = torch.load(tmp_path / "straight" / f"checkpoint-{step}" / "stream_state_rank0.pt", weights_only=False)
        return int(re.search(r'"pass": (\d+)', json.dumps(state, default=str)).group(1))

    assert stream_pass(10) > stream_pass(5)  # the resumed part crosses into another pass over the corpus

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    os.symlink(checkpoint, resumed_dir / "checkpoint-5")
    (resumed_dir / "bert18_recipe.yaml").write_bytes((tmp_path / "straight" / "bert18_recipe.yaml").read_bytes())
    resumed, resumed_losses = _train(
        parse_recipe(TINY, output_dir=str(resumed_dir), resume_from_checkpoint=str(checkpoint), **common)
    )
    after = lambda losses: {step: loss for step, loss in losses.items() if step > 5}  # noqa: E731
    assert after(resumed_losses) == after(straight_losses) and len(after(straight_losses)) == 7
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_streaming_needs_max_steps(tmp_path, minilm_path, shards):
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "run"),
        **{
            **SMALL,
            "corpus": str(shards),
            "tokenizer_name_or_path": minilm_path,
            "max_steps": -1,
            "num_train_epochs": 1,
        },
    )
    with pytest.raises(ValueError, match="set max_steps"):
        build_pretraining(recipe)


def test_streamed_validation_holds_out_the_same_documents(tmp_path, minilm_path, shards):
    from bert18.training.pretrain import stream_documents

    recipe = parse_recipe(
        TINY, output_dir=str(tmp_path / "run"), **{**SMALL, "corpus": str(shards), "validation_fraction": 0.1}
    )
    train, held = stream_documents(recipe)
    train_texts, held_texts = _texts(train), _texts(held)
    everything = _texts(load_corpus(shards, streaming=True))
    assert sorted(train_texts + held_texts) == sorted(everything) and not set(train_texts) & set(held_texts)
    assert 0.03 < len(held_texts) / len(everything) < 0.2
    assert _texts(stream_documents(recipe)[1]) == held_texts


def test_two_ranks_stream_disjoint_shards(tmp_path, minilm_path):
    """`accelerate launch` with two gloo ranks on a streamed corpus of 4 shards: each rank reads its own two
    shards (no dispatching from rank 0), the ranks collate disjoint examples and keep identical replicas."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    tags = ["apple", "river", "mountain", "violin"]  # one word per shard, in every sentence of its documents
    for shard, tag in enumerate(tags):
        documents = [
            " ".join(f"Sentence {s} of document {d} in the {tag} shard is here." for s in range(6)) for d in range(40)
        ]
        (corpus / f"{shard}.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    overrides = cli_overrides(SMALL)
    overrides += [
        f"--tokenizer_name_or_path={minilm_path}",
        "--max_steps=3",
        f"--corpus={corpus}",
        "--per_device_train_batch_size=4",
        "--save_strategy=no",
    ]
    two = tmp_path / "two"
    run_distributed_pretrain(TINY, f"--output_dir={two}", *overrides, ranks=2)
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(len(r["seen"]) >= 12 for r in ranks) and not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    from transformers import AutoTokenizer

    tag_ids = AutoTokenizer.from_pretrained(minilm_path).convert_tokens_to_ids(tags)
    read = [{tag for tag, token in zip(tags, tag_ids) if token in r["token_ids"]} for r in ranks]
    assert read[0] and read[1] and not read[0] & read[1], read  # each rank read only its own shards
    weights = [torch.load(two / f"rank{r}.pt") for r in (0, 1)]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
    assert np.isfinite(ranks[0]["losses"]).all()


PEAK_RSS_SCRIPT = """
import resource, sys
from bert18.cli import main
code = main(sys.argv[1:])
print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
sys.exit(code)
"""


@pytest.mark.slow
def test_streamed_ernie_pretraining_memory_does_not_grow_with_the_corpus(tmp_path, minilm_path):
    """The issue's done criterion: `bert18 pretrain ernie-base --corpus=<shards> --streaming=true` (model
    sizes small, 30 steps, phrases mined from the stream) peaks within 300 MB on a corpus ten times larger."""
    overrides = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 128,
    }
    peaks = {}
    for megabytes in (1.5, 15):
        corpus = tmp_path / f"corpus-{megabytes}"
        write_sample_corpus(corpus, megabytes, num_shards=8)
        command = [
            sys.executable,
            "-c",
            PEAK_RSS_SCRIPT,
            "pretrain",
            "ernie-base",
            f"--corpus={corpus}",
            "--streaming=true",
            f"--tokenizer_name_or_path={minilm_path}",
            f"--config_overrides={json.dumps(overrides)}",
            "--max_length=128",
            "--per_device_train_batch_size=8",
            "--gradient_accumulation_steps=1",
            "--max_steps=30",
            "--save_steps=15",
            "--eval_strategy=no",
            "--validation_fraction=0",
            "--bf16=false",
            "--use_cpu=true",
            "--dataloader_num_workers=0",
            "--report_to=none",
            f"--output_dir={tmp_path / f'run-{megabytes}'}",
            "--disable_tqdm=true",
        ]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        peaks[megabytes] = float(re.search(r"PEAK_RSS_MB ([\d.]+)", done.stdout).group(1))
    print(peaks)
    assert peaks[15] - peaks[1.5] < 300, peaks


RECIPES = sorted(p for p in (ROOT / "recipes" / "configs").glob("*.yaml") if not p.stem.startswith("finetune-"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_streams(path, tmp_path, minilm_path, shards):
    """streaming: true in each packaged recipe (model sizes small): two steps train on streamed examples."""
    recipe = parse_recipe(
        path,
        output_dir=str(tmp_path / "run"),
        **{
            **{key: value for key, value in SMALL.items() if key != "pretraining_tasks"},  # the recipe's own
            "corpus": str(shards),
            "tokenizer_name_or_path": minilm_path,
            "max_steps": 2,
            "bf16": False,
            "fp16": False,
            "gradient_accumulation_steps": 1,
            "per_device_train_batch_size": 4,
            "save_strategy": "no",
            "phrase_mining_documents": 50,
            "num_proc": None,
            "model_name_or_path": None,
            "span_column": None,
            "word_column": None,  # the shards are plain text (tiny-demo-zh reads gold columns)
            "config_overrides": {**SMALL["config_overrides"], "embedding_size": 16},
        },
    )
    run = build_pretraining(recipe)
    assert isinstance(run.train_dataset, datasets.IterableDataset)
    run.trainer.train()
    assert run.trainer.state.global_step == 2
    assert all(np.isfinite(entry["loss"]) for entry in run.trainer.state.log_history if "loss" in entry)

"""Long documents (seed question 9): truncation, key sentences, chunking, the chunk-pooling classifier.

Models here are tiny bert18 encoders with ``max_position_embeddings=64``, documents are built-in
corpus texts several times longer than that, tokenized by the real MiniLM WordPiece tokenizer. A
synthetic task puts the evidence at the end of each document: head truncation cannot see it, the
tail and the chunked model can.
"""

import itertools
import os
import random
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest
import torch
import transformers
from helpers import tiny_config

from bert18 import Bert18ForLongSequenceClassification, Bert18ForSequenceClassification
from bert18.data import split_sentences
from bert18.long_text import (
    LongDocumentCollator,
    chunk_document,
    chunk_spans,
    chunks_needed,
    encode_truncated,
    key_sentences,
    sentence_centrality,
    special_tokens,
    truncate_ids,
)

POOLINGS = ["concat", "mean", "max", "attention", "lstm"]
CLS, SEP = 101, 102


# Tiny classifiers with 2 heads, BERT's vocabulary (the MiniLM tokenizer's ids), 2 labels, at most 10 chunks.
tiny = partial(tiny_config, vocab_size=30522, num_attention_heads=2, num_labels=2, max_chunks=10)


@pytest.fixture(scope="module")
def long_texts(corpus, tokenizer):
    """Built-in corpus documents of 200 to 450 tokens (3 to 7 times max_position_embeddings=64): at most
    10 chunks of 64 with a stride of 16."""
    texts = [
        t
        for t in corpus.select(range(60))["text"]
        if 200 <= len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]) <= 450
    ]
    assert len(texts) >= 8
    return texts


# --- (a) truncation ---------------------------------------------------------------------------


def test_truncate_ids():
    ids = list(range(20))
    assert truncate_ids(ids, 8, "head") == list(range(8))
    assert truncate_ids(ids, 8, "tail") == list(range(12, 20))
    assert truncate_ids(ids, 8, "head+tail") == [0, 1, *range(14, 20)]  # a quarter from the head
    assert truncate_ids(ids, 8, "head+tail", head_tokens=5) == [0, 1, 2, 3, 4, 17, 18, 19]
    assert truncate_ids(ids, 8, "head+tail", head_tokens=0) == truncate_ids(ids, 8, "tail")
    assert truncate_ids(ids[:5], 8, "tail") == ids[:5]  # short enough: unchanged
    # Sun et al. 2019's best at 512: the first 128 and the last 382 tokens.
    kept = truncate_ids(range(1000), 510, "head+tail")
    assert kept == [*range(128), *range(1000 - 382, 1000)]
    with pytest.raises(ValueError, match=r"head_tokens=9 must lie in 0\.\.8"):
        truncate_ids(ids, 8, "head+tail", head_tokens=9)
    with pytest.raises(ValueError, match="strategy must be one of"):
        truncate_ids(ids, 8, "middle")


def test_encode_truncated_with_a_real_tokenizer(tokenizer, long_texts):
    assert special_tokens(tokenizer) == ([CLS], [SEP])
    text = long_texts[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    for strategy, content in (("head", ids[:62]), ("tail", ids[-62:]), ("head+tail", ids[:16] + ids[-46:])):
        assert encode_truncated(tokenizer, text, 64, strategy) == [CLS, *content, SEP], strategy
    assert encode_truncated(tokenizer, text, 64, "head", 0)[:5] == [CLS, *ids[:4]]
    assert encode_truncated(tokenizer, "", 64) == [CLS, SEP]  # empty text: the special tokens alone
    keys = encode_truncated(tokenizer, text, 64, "key_sentences")
    assert len(keys) <= 64 and keys[0] == CLS and keys[-1] == SEP
    with pytest.raises(ValueError, match="leaves no room"):
        encode_truncated(tokenizer, text, 2)


# --- (b) key sentences ------------------------------------------------------------------------

TOPICAL = (
    "The pickle module serializes Python objects into a byte stream. "
    "Bananas grow in tropical climates. "
    "Pickle protocol versions decide how objects are written to the stream. "
    "A newer pickle protocol writes objects more compactly. "
    "Volcanoes erupt molten rock. "
    "Reading a pickle stream rebuilds the objects it holds."
)


def test_sentence_centrality():
    sentences = split_sentences(TOPICAL)
    scores = sentence_centrality(sentences)
    assert len(scores) == 6 and scores.sum() == pytest.approx(1.0)
    off_topic = {1, 4}  # bananas, volcanoes: no word shared with the rest
    assert max(scores[i] for i in off_topic) < min(scores[i] for i in range(6) if i not in off_topic)
    chinese = ["机器学习模型需要大量数据。", "深度学习模型也需要数据。", "今天天气很好。", "学习模型的数据很重要。"]
    scores = sentence_centrality(chinese)  # character pairs stand in for words
    assert scores.argmin() == 2
    assert sentence_centrality(["Only one."]).tolist() == [1.0]
    assert sentence_centrality([]).size == 0


def test_key_sentences_keep_the_central_ones_in_order(tokenizer):
    sentences = split_sentences(TOPICAL)
    lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in sentences]
    budget = sum(lengths) - min(lengths[1], lengths[4])  # room for all but about one sentence
    kept = key_sentences(TOPICAL, tokenizer, budget)
    assert len(tokenizer(kept, add_special_tokens=False)["input_ids"]) <= budget
    kept_sentences = split_sentences(kept)
    assert kept_sentences == [s for s in sentences if s in kept_sentences]  # original order
    assert not {sentences[1], sentences[4]} <= set(kept_sentences)
    assert all(s in kept_sentences for i, s in enumerate(sentences) if i not in (1, 4))
    assert key_sentences(TOPICAL, tokenizer, 1000) == TOPICAL  # fits: unchanged
    assert key_sentences(TOPICAL, tokenizer, 3) in sentences  # nothing fits: the best sentence alone


# --- (c) chunks -------------------------------------------------------------------------------


@pytest.mark.parametrize("window,stride", [(1, 0), (5, 0), (5, 2), (62, 15), (62, 61)])
def test_chunk_spans_cover_every_token(window, stride):
    for n in range(0, 200, 7):
        spans = chunk_spans(n, window, stride)
        covered = set()
        for start, end in spans:
            assert 0 <= start <= end <= max(n, 0) and end - start <= window
            covered.update(range(start, end))
        assert covered == set(range(n)), (n, spans)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end - start == stride  # consecutive windows share exactly `stride` tokens
        assert len(spans) == chunks_needed(n, window + 2, stride)
    with pytest.raises(ValueError, match="stride"):
        chunk_spans(10, window, window)


def test_chunk_document_sees_every_token(tokenizer, long_texts):
    for text in long_texts:
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        chunks = chunk_document(tokenizer, text, max_length=64, stride=16)
        assert len(ids) > 3 * 62 and len(chunks) == chunks_needed(len(ids), 64, 16) >= 4
        position = 0
        for chunk in chunks:  # each chunk is [CLS] + the next window + [SEP], overlapping by 16
            assert len(chunk) <= 64 and chunk[0] == CLS and chunk[-1] == SEP
            assert chunk[1:-1] == ids[position : position + 62]
            position += 62 - 16
        seen = {p for k in range(len(chunks)) for p in range(k * 46, min(k * 46 + 62, len(ids)))}
        assert seen == set(range(len(ids)))
        assert chunk_document(tokenizer, ids, max_length=64, stride=16) == chunks  # from token ids
    assert chunk_document(tokenizer, "", max_length=64) == [[CLS, SEP]]


def test_chunk_limit(tokenizer, long_texts):
    text = long_texts[0]
    chunks = chunk_document(tokenizer, text, max_length=64, stride=0)
    with pytest.raises(ValueError, match=rf"needs {len(chunks)} chunks, more than max_chunks=3"):
        chunk_document(tokenizer, text, max_length=64, stride=0, max_chunks=3)
    kept = chunk_document(tokenizer, text, max_length=64, stride=0, max_chunks=3, on_overflow="truncate")
    assert kept == [chunks[0], chunks[1], chunks[-1]]  # the opening and the ending survive
    assert chunk_document(tokenizer, text, 64, 0, max_chunks=1, on_overflow="truncate") == chunks[:1]


# --- the collator -----------------------------------------------------------------------------


def test_collator(tokenizer, long_texts):
    features = [{"text": text, "label": i % 2} for i, text in enumerate(long_texts[:3])] + [{"text": "", "label": 1}]
    batch = LongDocumentCollator(tokenizer, "chunk", max_length=64, stride=16)(features)
    assert list(batch) == ["num_chunks", "input_ids", "attention_mask", "labels"]
    expected = [chunk_document(tokenizer, f["text"], 64, 16) for f in features]
    assert batch["num_chunks"].tolist() == [len(c) for c in expected] and batch["num_chunks"][-1] == 1
    rows = [chunk for chunks in expected for chunk in chunks]
    assert batch["input_ids"].shape == (len(rows), 64)
    for row, ids, mask in zip(rows, batch["input_ids"], batch["attention_mask"]):
        assert ids[: len(row)].tolist() == row and mask.sum() == len(row) and ids[len(row) :].eq(0).all()
    assert batch["labels"].tolist() == [0, 1, 0, 1] and batch["labels"].dtype == torch.long

    for specials in (False, True):  # a dataset tokenized once, with or without [CLS] and [SEP]
        pretokenized = [
            {"input_ids": tokenizer(f["text"], add_special_tokens=specials)["input_ids"], "labels": f["label"]}
            for f in features
        ]
        again = LongDocumentCollator(tokenizer, "chunk", max_length=64, stride=16)(pretokenized)
        assert all(torch.equal(batch[k], again[k]) for k in batch)

    for strategy in ("head", "tail", "head+tail", "key_sentences"):
        single = LongDocumentCollator(tokenizer, strategy, max_length=64)(features)
        assert list(single) == ["input_ids", "attention_mask", "labels"] and single["input_ids"].shape[0] == 4
        expected = encode_truncated(tokenizer, features[0]["text"], 64, strategy)
        assert single["input_ids"][0, : len(expected)].tolist() == expected and len(expected) <= 64
        assert single["input_ids"].shape[1] == (64 if strategy != "key_sentences" else len(expected))


def test_collator_bad_input(tokenizer, long_texts):
    collator = LongDocumentCollator(tokenizer, "chunk", max_length=64, stride=0, max_chunks=2)
    with pytest.raises(ValueError, match="no documents to collate"):
        collator([])
    with pytest.raises(ValueError, match=r"document 1 of the batch: the document needs .* max_chunks=2"):
        collator([{"text": "short"}, {"text": long_texts[0]}])
    with pytest.raises(ValueError, match="no text under 'text'"):
        collator([{"body": "x"}])
    with pytest.raises(ValueError, match="some features have a label"):
        collator([{"text": "a", "label": 1}, {"text": "b"}])
    with pytest.raises(ValueError, match="strategy must be one of"):
        LongDocumentCollator(tokenizer, "middle")
    with pytest.raises(ValueError, match=r"head_tokens=100 must lie in 0\.\.62"):
        LongDocumentCollator(tokenizer, "head+tail", max_length=64, head_tokens=100)


# --- the chunk-pooling classifier -------------------------------------------------------------


@pytest.fixture(scope="module")
def chunk_batch(tokenizer, long_texts):
    features = [{"text": text, "label": i % 2} for i, text in enumerate(long_texts[:4])]
    return LongDocumentCollator(tokenizer, "chunk", max_length=64, stride=16)(features)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_each_pooling_trains_and_predicts(pooling, chunk_batch):
    torch.manual_seed(0)
    model = Bert18ForLongSequenceClassification(tiny(long_pooling=pooling))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = model(**chunk_batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in chunk_batch.items() if k != "labels"}).logits
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()


def test_chunk_document_ids_and_micro_batches_give_the_same_result(chunk_batch):
    """chunk_document_ids in a shuffled order == num_chunks; chunk_batch_size=3 (with activation
    checkpointing in training) == everything at once, outputs and gradients."""
    torch.manual_seed(0)
    model = Bert18ForLongSequenceClassification(tiny(long_pooling="lstm"))
    batch = {k: v for k, v in chunk_batch.items() if k != "num_chunks"}
    reference = model(**chunk_batch)
    reference.loss.backward()
    gradients = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    # Interleave the documents at random, each document's chunks still in their own order.
    document = torch.repeat_interleave(torch.arange(4), chunk_batch["num_chunks"])
    slots = document[torch.randperm(len(document), generator=torch.Generator().manual_seed(0))]
    order = torch.empty_like(document)
    for d in range(4):
        order[slots == d] = (document == d).nonzero().flatten()
    assert not torch.equal(order, torch.arange(len(order)))
    shuffled = {
        "input_ids": batch["input_ids"][order],
        "attention_mask": batch["attention_mask"][order],
        "chunk_document_ids": document[order],
        "labels": batch["labels"],
    }
    assert torch.allclose(model(**shuffled).logits, reference.logits, atol=1e-6)

    model.config.chunk_batch_size = 3
    micro = model(**chunk_batch)
    micro.loss.backward()
    assert torch.allclose(micro.logits, reference.logits, atol=1e-6)
    for name, param in model.named_parameters():
        if name in gradients:
            torch.testing.assert_close(param.grad, gradients[name], atol=1e-6, rtol=1e-5, msg=name)
    model.eval()  # and in inference, passes without recomputation
    with torch.no_grad():
        assert torch.allclose(model(**chunk_batch).logits, reference.logits, atol=1e-6)


def test_model_bad_input(chunk_batch):
    model = Bert18ForLongSequenceClassification(tiny(max_chunks=3))
    with pytest.raises(ValueError, match=r"has \d+ chunks, more than config.max_chunks=3"):
        model(**chunk_batch)
    model = Bert18ForLongSequenceClassification(tiny())
    ids = chunk_batch["input_ids"]
    with pytest.raises(ValueError, match="pass exactly one of num_chunks"):
        model(input_ids=ids)
    with pytest.raises(ValueError, match="must be >= 1 each and sum to"):
        model(input_ids=ids, num_chunks=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\[total chunks, chunk length\]"):
        model(input_ids=ids[0], num_chunks=torch.tensor([1]))
    with pytest.raises(ValueError, match="long_pooling must be one of"):
        tiny(long_pooling="sum")


def test_chunk_vectors_are_the_pretrained_pooler(minilm_path, tokenizer, long_texts):
    """A real BERT checkpoint loads into the long model (converted): its chunk vectors are
    transformers' BertModel pooler outputs on each chunk."""
    model = Bert18ForLongSequenceClassification.from_pretrained(minilm_path, long_pooling="max", num_labels=3).eval()
    reference = transformers.BertModel.from_pretrained(minilm_path).eval()
    assert model.config.long_pooling == "max" and model.classifier.out_features == 3
    batch = LongDocumentCollator(tokenizer, "chunk", max_length=128)([{"text": long_texts[0]}])
    with torch.no_grad():
        vectors = model.encode_chunks(batch["input_ids"], batch["attention_mask"])
        expected = reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
    torch.testing.assert_close(vectors, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_a_sequence_classifier_checkpoint_loads(pooling, chunk_batch, tmp_path):
    """Encoder and classifier of a fine-tuned Bert18ForSequenceClassification fit the long model: on
    one-chunk documents (mean, max or attention over one vector is that vector) the logits agree."""
    torch.manual_seed(0)
    short = Bert18ForSequenceClassification(tiny()).eval()
    short.save_pretrained(tmp_path)
    long = Bert18ForLongSequenceClassification.from_pretrained(tmp_path, long_pooling=pooling).eval()
    first_chunks = chunk_batch["input_ids"][:3], chunk_batch["attention_mask"][:3]
    with torch.no_grad():
        expected = short(input_ids=first_chunks[0], attention_mask=first_chunks[1]).logits
        logits = long(input_ids=first_chunks[0], attention_mask=first_chunks[1], num_chunks=torch.ones(3)).logits
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_save_and_load_round_trip(pooling, chunk_batch, tmp_path):
    torch.manual_seed(0)
    model = Bert18ForLongSequenceClassification(tiny(long_pooling=pooling, max_chunks=12)).eval()
    model.save_pretrained(tmp_path)
    assert {"configuration_bert18.py", "modeling_bert18.py"} <= set(os.listdir(tmp_path))
    loaded = Bert18ForLongSequenceClassification.from_pretrained(tmp_path).eval()
    assert (loaded.config.long_pooling, loaded.config.max_chunks) == (pooling, 12)
    assert (
        loaded.config.auto_map["AutoModelForSequenceClassification"]
        == "modeling_bert18.Bert18ForLongSequenceClassification"
    )
    with torch.no_grad():
        assert torch.equal(loaded(**chunk_batch).logits, model(**chunk_batch).logits)


def test_trainer_runs_the_long_model(tokenizer, long_texts, tmp_path):
    """The HF Trainer with the collator: trains, evaluates (a loss), predicts one row per document."""
    features = [{"text": text, "label": i % 2} for i, text in enumerate(long_texts[:6])]
    args = transformers.TrainingArguments(
        str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=3,
        per_device_eval_batch_size=4,
        remove_unused_columns=False,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = transformers.Trainer(
        model=Bert18ForLongSequenceClassification(tiny()),
        args=args,
        train_dataset=features,
        eval_dataset=features,
        data_collator=LongDocumentCollator(tokenizer, max_length=64, stride=16),
    )
    trainer.train()
    prediction = trainer.predict(features)
    assert prediction.predictions.shape == (6, 2) and prediction.label_ids.tolist() == [0, 1, 0, 1, 0, 1]
    assert np.isfinite(prediction.metrics["test_loss"])


# --- evidence at the end: truncation vs chunks ------------------------------------------------

KEYWORDS = ("zebra", "giraffe")


def evidence_at_the_end(corpus, tokenizer, documents: int, repeats: int = 8) -> list[list[dict]]:
    """Bodies of 192-260 tokens (consecutive corpus sentences), each twice: once ending in "The
    answer is zebra zebra ...", once in "... giraffe ...", labelled 0 and 1. The two copies share
    their first 190-odd tokens, so head truncation to 64 scores exactly 50%."""
    bodies = []
    for text in corpus["text"]:
        sentences = [s for s in split_sentences(text) if not any(k in s.lower() for k in KEYWORDS)]
        lengths = [len(ids) for ids in tokenizer(sentences, add_special_tokens=False)["input_ids"]] if sentences else []
        current, count = [], 0
        for sentence, length in zip(sentences, lengths):
            if length > 100:
                current, count = [], 0
                continue
            current.append(sentence)
            count += length
            if count >= 192:
                if count <= 260:
                    bodies.append(" ".join(current))
                current, count = [], 0
        if len(bodies) >= documents:
            break
    assert len(bodies) >= documents
    random.Random(0).shuffle(bodies)
    return [
        {"text": f"{body} The answer is{f' {KEYWORDS[y]}' * repeats}.", "label": y}
        for body in bodies[:documents]
        for y in (0, 1)
    ]


def train_and_score(model, collator, train, test, steps: int, batch_size: int = 8, lr: float = 3e-3) -> float:
    """Test accuracy after ``steps`` AdamW steps of ``batch_size`` documents drawn from ``train``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    draw = random.Random(3)
    for _ in range(steps):
        model(**collator(draw.sample(train, batch_size))).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    batch = collator(test)
    labels = batch.pop("labels")
    with torch.no_grad():
        return (model(**batch).logits.argmax(-1) == labels).float().mean().item()


def compare_strategies(corpus, tokenizer, strategies, train_documents, test_documents, steps):
    documents = evidence_at_the_end(corpus, tokenizer, train_documents + test_documents)
    train, test = documents[: 2 * train_documents], documents[2 * train_documents :]
    scores = {}
    for strategy, pooling in strategies:
        torch.manual_seed(0)
        if strategy == "chunk":
            model = Bert18ForLongSequenceClassification(tiny(long_pooling=pooling))
        else:
            model = Bert18ForSequenceClassification(tiny())
        collator = LongDocumentCollator(tokenizer, strategy, max_length=64, stride=16, max_chunks=8)
        scores[f"{strategy}/{pooling}" if pooling else strategy] = train_and_score(model, collator, train, test, steps)
    print(scores)
    return scores


def test_evidence_at_the_end_quick(corpus, tokenizer):
    """Head truncation cannot see the answer (exactly 50%); tail truncation and max-pooled chunks can."""
    scores = compare_strategies(
        corpus,
        tokenizer,
        [("head", None), ("tail", None), ("chunk", "max")],
        train_documents=48,
        test_documents=16,
        steps=30,
    )
    assert scores["head"] == 0.5
    assert scores["tail"] >= 0.9 and scores["chunk/max"] >= 0.9


@pytest.mark.slow
def test_evidence_at_the_end_every_strategy(corpus, tokenizer):
    """Every strategy, more steps. Head truncation and key sentences (the answer is no central
    sentence) stay at chance; tail, head+tail and the chunked model find the answer, mean pooling
    slowest (one chunk of several holds it)."""
    strategies = [("head", None), ("tail", None), ("head+tail", None), ("key_sentences", None)]
    strategies += [("chunk", pooling) for pooling in POOLINGS]
    scores = compare_strategies(corpus, tokenizer, strategies, train_documents=64, test_documents=32, steps=100)
    assert scores["head"] == 0.5
    for name in ("tail", "head+tail", "chunk/max", "chunk/attention", "chunk/lstm", "chunk/concat"):
        assert scores[name] >= 0.9, name


# --- trust_remote_code where bert18 is not installed ------------------------------------------

CHILD = textwrap.dedent(
    """
    import importlib.util, os, sys

    sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or os.getcwd(), "bert18"))]
    assert importlib.util.find_spec("bert18") is None, "bert18 is still importable"

    import torch
    from transformers import AutoModelForSequenceClassification

    checkpoint, reference = sys.argv[1], torch.load(sys.argv[2])
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, trust_remote_code=True).eval()
    assert type(model).__name__ == "Bert18ForLongSequenceClassification", type(model)
    with torch.no_grad():
        logits = model(**reference["batch"]).logits
    assert torch.equal(logits, reference["logits"]), (logits - reference["logits"]).abs().max()
    print("remote code OK")
    """
)


def test_trust_remote_code_without_bert18_installed(chunk_batch, tmp_path):
    """A fresh interpreter that cannot import bert18 loads the checkpoint through the shipped .py
    files as AutoModelForSequenceClassification (auto_map) and reproduces the logits exactly."""
    torch.manual_seed(0)
    model = Bert18ForLongSequenceClassification(tiny(long_pooling="attention")).eval()
    model.save_pretrained(tmp_path / "checkpoint")
    batch = {k: v for k, v in chunk_batch.items() if k != "labels"}
    with torch.no_grad():
        torch.save({"batch": batch, "logits": model(**batch).logits}, tmp_path / "reference.pt")
    (tmp_path / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [sys.executable, "-I", *(str(tmp_path / name) for name in ("child.py", "checkpoint", "reference.pt"))],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "remote code OK" in result.stdout

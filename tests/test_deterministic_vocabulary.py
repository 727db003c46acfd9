"""Vocabularies are byte-identical from run to run, and agree with tokenizers' own trainers.

``tokenizers`` numbers the continuation (``##e``) and end-of-word (``e</w>``) symbols in hash-map
order, which changes per process, so training runs are compared in fresh processes with different
``PYTHONHASHSEED`` (Rust's hash maps draw their own keys per process anyway). The reference is
``tokenizers``' ``WordPieceTrainer`` / ``BpeTrainer`` itself: bert18's vocabulary must agree with it
as closely as two of its own runs agree with each other.
"""

import json
import os
import subprocess
import sys

import datasets
import pytest
from tokenizers import AddedToken, trainers

from bert18.data import load_corpus
from bert18.tokenization import BERT_SPECIAL_TOKENS, _build_pipeline, train_tokenizer

#: (algorithm, special_tokens_style) of every pipeline train_tokenizer builds.
KINDS = [("wordpiece", "bert"), ("bpe", "bert"), ("bpe", "roberta"), ("unigram", "bert")]

SCRIPT = """
import json, sys
from bert18.data import builtin_corpus
from bert18.tokenization import train_tokenizer
corpus = builtin_corpus()
kinds = json.loads(sys.argv[1])
runs = {f"{algorithm}/{style}": train_tokenizer(corpus, algorithm=algorithm, special_tokens_style=style,
                                                vocab_size=3000, show_progress=False).backend_tokenizer.to_str()
        for algorithm, style in kinds}
sys.stdout.write(json.dumps(runs))
"""


@pytest.mark.parametrize("algorithm", ["wordpiece", "bpe"])
def test_two_runs_in_one_process_train_byte_identical_vocabularies(corpus, algorithm):
    """tokenizers' own trainers already differ between two runs in one process (WordPiece: 6,671 vs 6,674 tokens;
    ``</w>`` BPE: the same tokens under other ids)."""
    runs = [train_tokenizer(corpus, algorithm=algorithm, vocab_size=3000, show_progress=False) for _ in range(2)]
    runs = [run.backend_tokenizer.to_str() for run in runs]
    assert runs[0] == runs[1]


@pytest.fixture(scope="module")
def two_processes() -> list[dict[str, str]]:
    """Every kind trained in two fresh processes with different hash seeds (one process trains all kinds)."""
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(KINDS)],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
            env=env,
        )
        runs.append(json.loads(done.stdout))
    return runs


UNIGRAM_REASON = (
    "tokenizers <= 0.23's UnigramTrainer iterates its word counts in Rust HashMap order (random keys per "
    "process, not settable from Python; single-threaded too): EM sums its expected counts in that order, so "
    "piece scores differ in the last digits (about 4e-11) and pieces of nearly equal score swap ids"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=UNIGRAM_REASON))
        if kind[0] == "unigram"
        else kind
        for kind in KINDS
    ],
    ids="/".join,
)
def test_two_processes_train_byte_identical_vocabularies(two_processes, kind):
    first, second = (run["/".join(kind)] for run in two_processes)
    assert json.loads(first)["model"]["vocab"] and first == second


def _jaccard(a, b):
    return len(a & b) / len(a | b)


@pytest.mark.parametrize("algorithm", ["wordpiece", "bpe"])
def test_the_vocabulary_agrees_with_tokenizers_own_trainer(corpus, algorithm):
    """The same vocabulary as tokenizers' own trainer, up to its own run-to-run ties."""
    specials = [AddedToken(t, special=True, normalized=False) for t in BERT_SPECIAL_TOKENS]

    def reference():
        tokenizer, _ = _build_pipeline(algorithm, "bert", True, None, True)
        if algorithm == "wordpiece":
            trainer = trainers.WordPieceTrainer(
                vocab_size=4000,
                min_frequency=2,
                continuing_subword_prefix="##",
                show_progress=False,
                special_tokens=specials,
            )
        else:
            trainer = trainers.BpeTrainer(
                vocab_size=4000,
                min_frequency=2,
                end_of_word_suffix="</w>",
                show_progress=False,
                special_tokens=specials,
            )
        tokenizer.train_from_iterator(iter(corpus["text"]), trainer=trainer)
        return tokenizer

    ours = train_tokenizer(corpus, algorithm=algorithm, vocab_size=4000, show_progress=False)
    first, second = reference(), reference()
    vocab, first_vocab, second_vocab = set(ours.get_vocab()), set(first.get_vocab()), set(second.get_vocab())
    assert abs(len(vocab) - len(first_vocab)) <= 10
    assert _jaccard(vocab, first_vocab) >= min(_jaccard(first_vocab, second_vocab), 0.995) - 0.005


def test_a_stream_trains_the_vocabulary_of_the_whole_dataset(corpus, tmp_path):
    texts = corpus["text"][:80]
    (tmp_path / "a.txt").write_text("\n\n".join(texts[:40]) + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n\n".join(texts[40:]) + "\n", encoding="utf-8")
    streamed = train_tokenizer(load_corpus(tmp_path, streaming=True), vocab_size=1500, show_progress=False)
    mapped = train_tokenizer(
        datasets.Dataset.from_dict({"text": load_corpus(tmp_path)["text"]}), vocab_size=1500, show_progress=False
    )
    assert streamed.backend_tokenizer.to_str() == mapped.backend_tokenizer.to_str()

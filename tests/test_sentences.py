# ruff: noqa: RUF001  (full-width CJK punctuation is what these tests are about)
"""Sentence splitting: exact boundaries on tricky English, Python docstrings and CJK text, the offset
invariants on the real standard-library documentation, and split_documents over a Dataset."""

import importlib
import inspect
import json
import logging
import statistics
import warnings

import datasets
import pytest

from bert18.data.sentences import sentence_spans, split_documents, split_sentences


def assert_spans_valid(text: str, spans: list[tuple[int, int]]) -> None:
    """Spans trimmed, increasing, disjoint, and covering every non-whitespace character of ``text``."""
    covered = [False] * len(text)
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text), (start, end)
        assert text[start:end] == text[start:end].strip()
        covered[start:end] = [True] * (end - start)
        previous_end = end
    lost = [(i, ch) for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not lost, f"characters in no sentence: {lost[:10]}"


ENGLISH = [
    (
        "Mr. Smith met Dr. Jones and Prof. Brown at St. Mary's. Python vs. Java, Roe v. Wade.",
        ["Mr. Smith met Dr. Jones and Prof. Brown at St. Mary's.", "Python vs. Java, Roe v. Wade."],
    ),
    ("J. R. R. Tolkien wrote it. The U.S. Army agreed.", ["J. R. R. Tolkien wrote it.", "The U.S. Army agreed."]),
    (
        "Pi is 3.14 and e is 2.718. Upgrade to v1.2.3 now. Python 3.12 is out.",
        ["Pi is 3.14 and e is 2.718.", "Upgrade to v1.2.3 now.", "Python 3.12 is out."],
    ),
    (
        "Use a list, e.g. Python's list. It is fast, i.e. O(1) appends. Fine.",
        ["Use a list, e.g. Python's list.", "It is fast, i.e. O(1) appends.", "Fine."],
    ),
    (
        'He said "Stop." Then left. She asked (quietly.) Why?',
        ['He said "Stop."', "Then left.", "She asked (quietly.)", "Why?"],
    ),
    ('"Stop," he said. "Now!" She obeyed.', ['"Stop," he said.', '"Now!"', "She obeyed."]),
    (
        "Really? Yes! Are you sure?! Quite. what? lowercase continues.",
        ["Really?", "Yes!", "Are you sure?!", "Quite. what? lowercase continues."],
    ),
    (
        "Wait... what happened? Then... Nothing. It went on… and on. Count 1, 2, ... 10 now.",
        ["Wait... what happened?", "Then...", "Nothing.", "It went on… and on.", "Count 1, 2, ... 10 now."],
    ),
    (
        "Lines can end in an ellipsis...\nand go on. Or in a sentence.\nthat ends.",
        ["Lines can end in an ellipsis...\nand go on.", "Or in a sentence.", "that ends."],
    ),
    (
        "The sun. He sat. Apple Inc. The firm, et al. The end.",
        ["The sun.", "He sat.", "Apple Inc.", "The firm, et al.", "The end."],
    ),
    (
        "Call os.path.join() in __init__.py first. Visit https://example.com/a.html. Then x.y changes.",
        ["Call os.path.join() in __init__.py first.", "Visit https://example.com/a.html.", "Then x.y changes."],
    ),
    (
        "See Fig. 3 and No. 5 on p. 12. I said no. Then he left.",
        ["See Fig. 3 and No. 5 on p. 12.", "I said no.", "Then he left."],
    ),
    (
        "It met on Jan. 5 in the U.S. capital. Lists, tuples, etc. The end. Also etc. and more.",
        ["It met on Jan. 5 in the U.S. capital.", "Lists, tuples, etc.", "The end.", "Also etc. and more."],
    ),
    (
        "First   sentence   here.    Second\n   sentence on two lines.\n\n\n  A new paragraph\n\nno final punctuation",
        ["First   sentence   here.", "Second\n   sentence on two lines.", "A new paragraph", "no final punctuation"],
    ),
    (
        "It costs $5. 3 people paid. [1] Cited. 'Quoted' too.",
        ["It costs $5.", "3 people paid.", "[1] Cited.", "'Quoted' too."],
    ),
    (
        "Steps to follow:\n1. Open the file.\n2. Read it. Then close it.\n3) Done",
        ["Steps to follow:", "1. Open the file.", "2. Read it.", "Then close it.", "3) Done"],
    ),
    (
        "Options:\n- verbose mode,\n  wrapped here\n- quiet mode\n* starred item",
        ["Options:", "- verbose mode,\n  wrapped here", "- quiet mode", "* starred item"],
    ),
    (
        "dump() -- write an object.\ndumps() -- return it as bytes.\nload() -- read it back",
        ["dump() -- write an object.", "dumps() -- return it as bytes.", "load() -- read it back"],
    ),
    (
        "A line ending in a period.\nthen a lowercase line starts a new sentence.",
        ["A line ending in a period.", "then a lowercase line starts a new sentence."],
    ),
    ("Hello world", ["Hello world"]),
    ("", []),
    ("   \n\t \n ", []),
    ("... Then it ended.", ["... Then it ended."]),
]


@pytest.mark.parametrize(("text", "expected"), ENGLISH)
def test_english(text, expected):
    assert split_sentences(text) == expected
    assert_spans_valid(text, sentence_spans(text))


CJK = [
    ("今天天气很好。我们去公园吧！你去吗？", ["今天天气很好。", "我们去公园吧！", "你去吗？"]),
    ("他说：“走吧。”然后离开了。", ["他说：“走吧。”", "然后离开了。"]),
    ("“走吧！”，他说。真的吗？！当然。", ["“走吧！”，他说。", "真的吗？！", "当然。"]),
    ("第一句；还是第一句。第二句……还是第二句。", ["第一句；还是第一句。", "第二句……还是第二句。"]),
    ("「行こう。」と言った。すごい！本当？", ["「行こう。」と言った。", "すごい！", "本当？"]),
    (
        "我喜欢Python。It is great, e.g. fast. 你呢？好的!我也是。",
        ["我喜欢Python。", "It is great, e.g. fast.", "你呢？", "好的!", "我也是。"],
    ),
    ("版本3.12发布了。 The release is v3.12. 请升级。", ["版本3.12发布了。", "The release is v3.12.", "请升级。"]),
]


@pytest.mark.parametrize(("text", "expected"), CJK)
def test_chinese_japanese_and_mixed(text, expected):
    assert split_sentences(text) == expected
    assert_spans_valid(text, sentence_spans(text))


def test_docstring_with_doctest_examples():
    """statistics.mean's real docstring: every example (statement + its output) is one unit."""
    text = inspect.getdoc(statistics.mean)
    assert split_sentences(text) == [
        "Return the sample arithmetic mean of data.",
        ">>> mean([1, 2, 3, 4, 4])\n2.8",
        ">>> from fractions import Fraction as F",
        ">>> mean([F(3, 7), F(1, 21), F(5, 3), F(1, 3)])\nFraction(13, 21)",
        ">>> from decimal import Decimal as D",
        '>>> mean([D("0.5"), D("0.75"), D("0.625"), D("0.375")])\nDecimal(\'0.5625\')',
        "If ``data`` is empty, StatisticsError will be raised.",
    ]


def test_doctest_right_after_prose():
    """No blank line needed before ``>>>``; as in doctest, the output runs to the next blank line or prompt."""
    text = "For example:\n>>> f(1)\n2\n>>> f(2)  # no output\n>>> f(3)\n4\nstill output\n\nBack to prose. Done."
    assert split_sentences(text) == [
        "For example:",
        ">>> f(1)\n2",
        ">>> f(2)  # no output",
        ">>> f(3)\n4\nstill output",
        "Back to prose.",
        "Done.",
    ]


def test_indented_doctest_with_continuation_lines():
    """json's module docstring: examples in indented ``::`` blocks, ``...`` lines kept with their statement."""
    text = inspect.getdoc(json)
    sentences = split_sentences(text)
    assert_spans_valid(text, sentence_spans(text))
    definition = next(s for s in sentences if s.startswith(">>> def as_complex(dct):"))
    assert definition.splitlines()[1:] == [
        "    ...     if '__complex__' in dct:",
        "    ...         return complex(dct['real'], dct['imag'])",
        "    ...     return dct",
        "    ...",
    ]
    after = sentences[sentences.index(definition) + 1]
    assert after == (
        '>>> json.loads(\'{"__complex__": true, "real": 1, "imag": 2}\',\n'
        "    ...     object_hook=as_complex)\n    (1+2j)"
    )
    pretty = next(s for s in sentences if "indent=4" in s)
    assert pretty.endswith('{\n        "4": 5,\n        "6": 7\n    }')  # multi-line output stays
    assert "Pretty printing::" in sentences and "Compact encoding::" in sentences
    assert sentences[1] == (
        ":mod:`json` exposes an API familiar to users of the standard library\n"
        ":mod:`marshal` and :mod:`pickle` modules."
    )
    # every prompt line of the docstring starts a unit
    prompts = [line.strip() for line in text.splitlines() if line.strip().startswith(">>>")]
    assert [s.split("\n")[0] for s in sentences if s.startswith(">>>")] == prompts


def test_code_blocks_tables_and_headings():
    text = (
        "Summary line. More detail follows\n"
        "over two lines.\n"
        "\n"
        "Usage\n"
        "-----\n"
        "Text right under a heading.\n"
        "\n"
        "Example:\n"
        "    import os\n"
        "    path = os.path.join('a', 'b')  # a.b\n"
        "The block is over. Next.\n"
        "\n"
        "=========  ==========================\n"
        "Function   Description\n"
        "=========  ==========================\n"
        "mean       Arithmetic mean of data.\n"
        "fmean      Fast floating point mean.\n"
        "=========  ==========================\n"
        "\n"
        "Attributes:\n"
        "    f_back     next outer frame object\n"
        "    f_code     code object being executed\n"
        "\n"
        "x : int\n"
        "    The value. It is wrapped\n"
        "    over lines.\n"
        "y : str\n"
        "    A name."
    )
    assert split_sentences(text) == [
        "Summary line.",
        "More detail follows\nover two lines.",
        "Usage\n-----",
        "Text right under a heading.",
        "Example:",
        "import os\n    path = os.path.join('a', 'b')  # a.b",
        "The block is over.",
        "Next.",
        "=========  ==========================",
        "Function   Description\n=========  ==========================",
        "mean       Arithmetic mean of data.",
        "fmean      Fast floating point mean.",
        "=========  ==========================",
        "Attributes:",
        "f_back     next outer frame object",
        "f_code     code object being executed",
        "x : int\n    The value.",  # a numpydoc parameter keeps its first sentence
        "It is wrapped\n    over lines.",
        "y : str\n    A name.",
    ]
    assert_spans_valid(text, sentence_spans(text))


def test_offsets_match_the_text():
    text = "  Hello there.  \n\n你好。世界！ Bye now?\n>>> 1 + 1\n2\n"
    spans = sentence_spans(text)
    assert spans == [(2, 14), (18, 21), (21, 24), (25, 33), (34, 45)]
    assert [text[s:e] for s, e in spans] == ["Hello there.", "你好。", "世界！", "Bye now?", ">>> 1 + 1\n2"]


STDLIB_MODULES = [
    "abc",
    "argparse",
    "array",
    "base64",
    "bisect",
    "calendar",
    "collections",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "difflib",
    "email",
    "enum",
    "fractions",
    "functools",
    "getopt",
    "gettext",
    "glob",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "logging",
    "math",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "random",
    "re",
    "shelve",
    "shlex",
    "shutil",
    "socket",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "timeit",
    "tokenize",
    "traceback",
    "typing",
    "unittest",
    "uuid",
    "warnings",
    "zipfile",
]


def test_standard_library_documentation():
    """Invariants and plausible sentence lengths over the real docs of ~60 modules and their members."""
    texts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in STDLIB_MODULES:
            module = importlib.import_module(name)
            texts.append(inspect.getdoc(module) or "")
            texts += [
                inspect.getdoc(obj) or ""
                for attr, obj in vars(module).items()
                if not attr.startswith("_")
                and (inspect.isfunction(obj) or inspect.isclass(obj))
                and obj.__module__ == name
            ]
    assert sum(map(len, texts)) > 200_000
    prose_words, prose_count, doctest_units = 0, 0, 0
    for text in texts:
        spans = sentence_spans(text)
        assert_spans_valid(text, spans)
        for start, end in spans:
            sentence = text[start:end]
            if sentence.startswith(">>>"):
                doctest_units += 1
                continue
            prose_words += len(sentence.split())
            prose_count += 1
    assert doctest_units > 100
    assert prose_count > 2000
    assert 5 <= prose_words / prose_count <= 60
    # No sentence is cut after an abbreviation or an initial anywhere in these docs.
    for text in texts:
        for sentence in split_sentences(text):
            last_word = sentence.split()[-1]
            assert last_word not in {"e.g.", "i.e.", "Mr.", "Dr.", "vs."}, sentence


# --- split_documents --------------------------------------------------------------------------------


def test_split_documents_drops_empty_documents_and_keeps_boundaries(caplog):
    docs = datasets.Dataset.from_dict(
        {
            "text": ["First one. Second one.", "", "   \n\t ", "Only one", "你好。再见！", "\n\n"],
            "id": [0, 1, 2, 3, 4, 5],
        }
    )
    with caplog.at_level(logging.INFO, logger="bert18.data.sentences"):
        result, num_dropped = split_documents(docs)
    assert num_dropped == 3
    assert "3 dropped" in caplog.text
    assert result.column_names == ["text", "id", "sentences", "sentence_offsets"]
    assert result["id"] == [0, 3, 4]
    assert result["sentences"] == [["First one.", "Second one."], ["Only one"], ["你好。", "再见！"]]
    assert result["sentence_offsets"] == [[[0, 10], [11, 22]], [[0, 8]], [[0, 3], [3, 6]]]
    for row in result:
        assert [row["text"][s:e] for s, e in row["sentence_offsets"]] == row["sentences"]

    only_text, _ = split_documents(docs, keep_columns=False)
    assert only_text.column_names == ["text", "sentences", "sentence_offsets"]

    empty, num_dropped = split_documents(docs.select([]))
    assert (len(empty), num_dropped) == (0, 0)
    assert empty.column_names == ["text", "id", "sentences", "sentence_offsets"]


def test_split_documents_in_several_processes_matches_one():
    texts = [f"Document {i}. It has {i % 3} words. " * (i % 4) for i in range(40)]
    docs = datasets.Dataset.from_dict({"text": texts})
    single, dropped_single = split_documents(docs)
    parallel, dropped_parallel = split_documents(docs, num_proc=2)
    assert dropped_single == dropped_parallel == 10  # i % 4 == 0 gives an empty text
    assert single["sentences"] == parallel["sentences"]


def test_split_documents_errors_name_the_column_and_row():
    docs = datasets.Dataset.from_dict({"body": ["Fine.", "Also fine."], "label": [0, 1]})
    with pytest.raises(ValueError, match=r"'text' not found; available columns: \['body', 'label'\]"):
        split_documents(docs)
    with pytest.raises(TypeError, match=r"row 2 of column 'body' holds NoneType"):
        split_documents(datasets.Dataset.from_dict({"body": ["Fine.", "Also fine.", None]}), text_column="body")
    with pytest.raises(TypeError, match=r"row 0 of column 'label' holds int"):
        split_documents(docs, text_column="label")

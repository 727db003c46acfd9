"""Corpora: the built-in standard-library corpus, local files in every format, and bad input."""

import ast
import inspect
import json
import math
import sysconfig
from pathlib import Path

import datasets
import pytest

from bert18.data.corpus import builtin_corpus, load_corpus


def test_builtin_corpus_is_the_standard_library_documentation(corpus):
    """One document per module; each text is that module's real docstrings, checked against ast/inspect."""
    assert corpus.column_names == ["text", "module"]
    modules = corpus["module"]
    assert modules == sorted(modules) and len(set(modules)) == len(modules) > 150
    by_module = dict(zip(modules, corpus["text"]))
    json_source = Path(sysconfig.get_paths()["stdlib"]) / "json" / "__init__.py"
    expected = ast.get_docstring(ast.parse(json_source.read_text()))
    assert by_module["json"].startswith(expected)
    assert inspect.getdoc(json.dumps) in by_module["json"]
    assert inspect.getdoc(math.sqrt) in by_module["math"]  # a compiled module, read through inspect
    assert "antigravity" not in by_module and "test" not in by_module
    size = sum(len(text) for text in corpus["text"])
    assert 300_000 < size < 2_000_000  # "about 0.5 MB" of English


def test_builtin_corpus_is_deterministic_and_cached(corpus, corpus_cache_dir, tmp_path_factory):
    """A second call reads the datasets cache and returns the same rows."""
    again = builtin_corpus(cache_dir=corpus_cache_dir)
    assert again.cache_files[0]["filename"] == corpus.cache_files[0]["filename"]
    assert again["text"] == corpus["text"]
    fresh = builtin_corpus(cache_dir=str(tmp_path_factory.mktemp("other-cache")))
    assert fresh["text"] == corpus["text"] and fresh["module"] == corpus["module"]


def test_load_corpus_builtin_by_default(corpus, corpus_cache_dir):
    assert load_corpus(cache_dir=corpus_cache_dir)["text"] == corpus["text"]


def test_text_files_split_into_documents_at_blank_lines(tmp_path):
    """BERT's pretraining format: sentences on lines, documents separated by blank lines."""
    path = tmp_path / "docs.txt"
    path.write_text(
        "\ufeffFirst doc, line one.\nFirst doc, line two.\n\nSecond doc.\n  \t\nThird doc.\n", encoding="utf-8"
    )
    assert load_corpus(path)["text"] == ["First doc, line one.\nFirst doc, line two.", "Second doc.", "Third doc."]
    assert load_corpus(path, documents="line")["text"][:2] == ["First doc, line one.", "First doc, line two."]
    assert len(load_corpus(path, documents="file")) == 1


def test_structured_formats_and_column_choice(tmp_path):
    rows = [{"body": "Alpha text.", "label": "a"}, {"body": "Beta text.", "label": "b"}]
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    csv = tmp_path / "c.csv"
    csv.write_text("body,label\nAlpha text.,a\nBeta text.,b\n", encoding="utf-8")
    parquet = tmp_path / "c.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(parquet))
    for path in (jsonl, csv, parquet):
        dataset = load_corpus(path, text_column="body")
        assert dataset["text"] == ["Alpha text.", "Beta text."] and dataset["label"] == ["a", "b"]


def test_folder_and_streaming(tmp_path):
    (tmp_path / "b.txt").write_text("Bravo.\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("Alpha.\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("# About this corpus\n", encoding="utf-8")  # documentation, skipped
    assert load_corpus(tmp_path)["text"] == ["Alpha.", "Bravo."]
    streamed = load_corpus(tmp_path, streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert [row["text"] for row in streamed] == ["Alpha.", "Bravo."]


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"PK\x03\x04\x00\x00binary", "binary"),
        (b"caf\xe9 au lait, latin-1 encoded\n", "not UTF-8"),
    ],
)
def test_bad_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_corpus(path)
    assert str(path) in str(error.value)


def test_missing_file_column_and_mixed_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.txt"):
        load_corpus(tmp_path / "nowhere.txt")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text(json.dumps({"body": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no column 'text'.*\['body'\]"):
        load_corpus(jsonl)
    txt = tmp_path / "d.txt"
    txt.write_text("y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="one supported format"):
        load_corpus([jsonl, txt])

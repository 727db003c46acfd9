"""Corpora as ``datasets`` datasets: the built-in offline corpus, local files and Hub datasets.

The built-in corpus is the documentation of the installed Python standard library, one document per
module: the module's docstring followed by the docstrings of its public classes and functions, in
source order (about 0.5 MB of English). Modules written in Python are read with ``ast``, never
imported, so nothing runs; compiled modules (``math``, ``itertools``) are imported for their
docstrings. The ``module`` column names the module each document describes: a real label for a
downstream classification task. It needs no network and is the same on every machine with the same
Python version.
"""

import ast
import importlib
import inspect
import logging
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets

logger = logging.getLogger(__name__)

# Not documentation of a library: test suites, the IDE, demos, easter eggs.
_SKIPPED_MODULES = frozenset({"test", "idlelib", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "this",
                              "antigravity", "__phello__"})
_BUILDERS = {".txt": "text", ".text": "text", ".md": "text", ".json": "json", ".jsonl": "json",
             ".parquet": "parquet", ".csv": "csv"}


def _public_docstrings_from_source(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [tree] + [
        node for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not node.name.startswith("_")
    ]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


def _public_docstrings_from_compiled(name: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            module = importlib.import_module(name)
        except ImportError:  # platform-specific (winreg) or missing system library (readline)
            return []
    members = [member for member_name, member in sorted(vars(module).items())
               if not member_name.startswith("_") and (inspect.isroutine(member) or inspect.isclass(member))]
    return [doc for obj in [module, *members] if (doc := inspect.getdoc(obj))]


def _stdlib_source(name: str) -> Path | None:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in (root / f"{name}.py", root / name / "__init__.py"):
        if path.is_file():
            return path
    return None


def _builtin_documents(python_version: str) -> Iterator[dict[str, str]]:
    """Yield one {text, module} row per documented standard-library module, sorted by name."""
    del python_version  # part of the datasets cache key: another Python has other docs
    for name in sorted(m for m in sys.stdlib_module_names if not m.startswith("_") and m not in _SKIPPED_MODULES):
        source = _stdlib_source(name)
        docs = _public_docstrings_from_source(source) if source else _public_docstrings_from_compiled(name)
        text = "\n\n".join(docs).strip()
        if text:
            yield {"text": text, "module": name}


def builtin_corpus(cache_dir: str | None = None) -> datasets.Dataset:
    """The built-in offline corpus: standard-library documentation, columns ``text`` and ``module``.

    Built once per Python version and cached by ``datasets`` (a second call reads the cache).
    """
    return datasets.Dataset.from_generator(
        _builtin_documents,
        gen_kwargs={"python_version": sys.version},
        features=datasets.Features({"text": datasets.Value("string"), "module": datasets.Value("string")}),
        cache_dir=cache_dir,
    )


def _check_text_file(path: Path) -> None:
    """Fail early, naming the file, on what would otherwise break deep inside ``datasets``."""
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"corpus file is empty: {path}")
    if path.suffix == ".parquet":
        return
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    if b"\x00" in head:
        raise ValueError(f"{path} looks binary (NUL bytes), not a text corpus")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the 1 MiB boundary
            raise ValueError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason})") from error


def _corpus_files(source: str | os.PathLike | list) -> list[Path]:
    paths = [Path(p) for p in source] if isinstance(source, list | tuple) else [Path(source)]
    files: list[Path] = []
    for path in paths:
        if path.is_dir():  # every data file below it; a README.md there is documentation, not corpus
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _BUILDERS and p.suffix != ".md")
            if not found:
                raise ValueError(f"no corpus files ({', '.join(_BUILDERS)}) under {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


def load_corpus(
    source: str | os.PathLike | list[str | os.PathLike] | None = None,
    text_column: str = "text",
    split: str = "train",
    streaming: bool = False,
    documents: str = "blank_line",
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.IterableDataset:
    """A text corpus as a dataset with a ``text`` column (other columns kept).

    Args:
        source: ``None`` or ``"builtin"`` for the built-in corpus; local files or folders (``.txt``,
            ``.md``, ``.json``/``.jsonl``, ``.parquet``, ``.csv``; a folder's ``.md`` files are skipped);
            or a Hub dataset name.
        text_column: the column holding the text, renamed to ``text``.
        split: the split of a Hub dataset.
        streaming: stream a Hub dataset or large files instead of loading them (corpora larger
            than memory); returns an ``IterableDataset``.
        documents: how plain-text files divide into documents: ``"blank_line"`` (BERT's format:
            one document per block of lines separated by blank or whitespace-only lines), ``"line"``
            or ``"file"``.
        load_kwargs: passed to ``datasets.load_dataset`` (``name=``, ``revision=``, ``cache_dir=``...).
    """
    if source is None or source == "builtin":
        return builtin_corpus(load_kwargs.get("cache_dir"))
    is_local = isinstance(source, list | tuple) or os.path.exists(source) or Path(source).suffix in _BUILDERS
    if is_local:
        dataset = _load_local_files(_corpus_files(source), streaming, documents, load_kwargs)
    else:
        dataset = datasets.load_dataset(str(source), split=split, streaming=streaming, **load_kwargs)
    return _with_text_column(dataset, text_column, source)


_DOCUMENT_MODES = ("blank_line", "line", "file")
_BLANK_LINE = re.compile(r"\n[ \t\f\v\r]*\n")


def _split_blocks(batch: dict[str, list], documents: str) -> dict[str, list]:
    """Documents of a text file: its blocks between blank (or whitespace-only) lines, or its lines."""
    pieces = {"blank_line": _BLANK_LINE.split, "line": str.splitlines, "file": lambda text: [text]}[documents]
    texts = [piece.strip() for text in batch["text"] for piece in pieces(text)]
    return {"text": [text for text in texts if text]}


def _load_local_files(files: list[Path], streaming: bool, documents: str, load_kwargs: dict[str, Any]) -> Any:
    if documents not in _DOCUMENT_MODES:
        raise ValueError(f"documents must be one of {list(_DOCUMENT_MODES)}, got {documents!r}")
    for path in files:
        _check_text_file(path)
    suffixes = sorted({path.suffix for path in files})
    builders = {_BUILDERS.get(suffix) for suffix in suffixes}
    if None in builders or len(builders) > 1:
        raise ValueError(f"corpus files must share one supported format {sorted(_BUILDERS)}, got {suffixes}")
    builder = builders.pop()
    if builder == "text":  # read whole files (a BOM dropped), then cut them into documents here
        load_kwargs = {"sample_by": "document", "encoding": "utf-8-sig", **load_kwargs}
    names = [str(path) for path in files]
    try:
        dataset = datasets.load_dataset(builder, data_files=names, split="train", streaming=streaming, **load_kwargs)
    except datasets.exceptions.DatasetGenerationError as error:
        raise ValueError(f"cannot read corpus files {names}: {error.__cause__ or error}") from error
    if builder == "text":
        dataset = dataset.map(_split_blocks, batched=True, fn_kwargs={"documents": documents},
                              features=datasets.Features({"text": datasets.Value("string")}))
    return dataset


def _with_text_column(dataset: Any, text_column: str, source: Any) -> Any:
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"corpus {source} has no column {text_column!r}; its columns: {columns}")
    if text_column != "text":
        if columns is not None and "text" in columns:
            dataset = dataset.remove_columns("text")
        dataset = dataset.rename_column(text_column, "text")
    return dataset


__all__ = ["builtin_corpus", "load_corpus"]

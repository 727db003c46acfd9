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
import bz2
import glob
import gzip
import importlib
import inspect
import io
import json
import logging
import lzma
import os
import re
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import datasets
import numpy as np

logger = logging.getLogger(__name__)

# Not documentation of a library: test suites, the IDE, demos, easter eggs.
_SKIPPED_MODULES = frozenset(
    {"test", "idlelib", "turtledemo", "lib2to3", "ensurepip", "pydoc_data", "this", "antigravity", "__phello__"}
)
_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
# Compressed text, JSON lines and CSV shards: read through a decompressing stream (streaming) or by
# ``datasets``, which infers the compression from the same suffixes (map-style).
_COMPRESSIONS = (".gz", ".zst", ".bz2", ".xz")


def _format_suffix(path: Path) -> str:
    """The data format of ``path``: ``.txt`` for ``corpus.txt`` and ``corpus.txt.gz`` alike."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _public_docstrings_from_source(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = [tree] + [
        node
        for node in tree.body
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
    members = [
        member
        for member_name, member in sorted(vars(module).items())
        if not member_name.startswith("_") and (inspect.isroutine(member) or inspect.isclass(member))
    ]
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
    if _format_suffix(path) == ".parquet" or path.suffix.lower() in _COMPRESSIONS:
        return  # binary formats: the reader reports a bad file, naming it
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    if b"\x00" in head:
        raise ValueError(f"{path} looks binary (NUL bytes), not a text corpus")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not just a character cut at the 1 MiB boundary
            raise ValueError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason})") from error


def _is_glob(source: Any) -> bool:
    return isinstance(source, str) and any(char in source for char in "*?[")


def _corpus_files(source: str | os.PathLike | list) -> list[Path]:
    """The data files of a file, a folder (every data file below it, sorted) or a glob, or a list of those."""
    items = list(source) if isinstance(source, list | tuple) else [source]
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if _is_glob(item) and not path.exists():
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not found:
                raise FileNotFoundError(f"no corpus file matches {item}")
            files.extend(found)
        elif path.is_dir():  # every data file below it; a README.md there is documentation, not corpus
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and _format_suffix(p) in _BUILDERS and _format_suffix(p) != ".md"
            )
            if not found:
                raise ValueError(
                    f"no corpus files ({', '.join(_BUILDERS)}, optionally {', '.join(_COMPRESSIONS)}) under {path}"
                )
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
    shard_seed: int | None = None,
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.IterableDataset:
    """A text corpus as a dataset with a ``text`` column (other columns kept).

    Args:
        source: ``None`` or ``"builtin"`` for the built-in corpus; local files, folders or globs
            (``.txt``, ``.md``, ``.json``/``.jsonl``, ``.parquet``, ``.csv``, each optionally compressed
            ``.gz``/``.zst``/``.bz2``/``.xz``; a folder's ``.md`` files are skipped); or a Hub dataset name.
        text_column: the column holding the text, renamed to ``text``.
        split: the split of a Hub dataset.
        streaming: stream instead of loading (corpora larger than memory); returns an
            ``IterableDataset`` whose memory does not grow with the corpus. Local files are read
            incrementally, line by line, one **shard** per file: ``datasets`` shuffles the shard
            order every epoch, ``split_dataset_by_node`` and dataloader workers divide the shards,
            and ``state_dict()`` records the position (shard and row) for an exact resume. A
            malformed JSON line, a non-UTF-8 line or an unreadable file raises an error naming the
            file and the line; empty files are skipped with a warning naming them.
        documents: how plain-text files divide into documents: ``"blank_line"`` (BERT's format:
            one document per block of lines separated by blank or whitespace-only lines), ``"line"``
            or ``"file"``.
        shard_seed: streaming local files: shuffle the order of the files with this seed (later
            epochs reshuffle it, from the epoch); ``None`` keeps them sorted.
        load_kwargs: passed to ``datasets.load_dataset`` (``name=``, ``revision=``, ``cache_dir=``...).
    """
    if source is None or source == "builtin":
        if streaming:  # the built-in corpus is small: build it, then stream it in 8 shards
            return builtin_corpus(load_kwargs.get("cache_dir")).to_iterable_dataset(num_shards=8)
        return builtin_corpus(load_kwargs.get("cache_dir"))
    is_local = (
        isinstance(source, list | tuple)
        or os.path.exists(source)
        or _is_glob(source)
        or _format_suffix(Path(source)) in _BUILDERS
    )
    if is_local and streaming:  # the reader takes text_column itself
        return _stream_local_files(_corpus_files(source), documents, text_column, shard_seed)
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
    suffixes = sorted({_format_suffix(path) for path in files})
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
        dataset = dataset.map(
            _split_blocks,
            batched=True,
            fn_kwargs={"documents": documents},
            features=datasets.Features({"text": datasets.Value("string")}),
        )
    return dataset


def write_sample_corpus(
    folder: str | os.PathLike, megabytes: float, num_shards: int = 8, seed: int = 0, compression: str | None = None
) -> list[Path]:
    """Write a corpus of about ``megabytes`` MB of distinct documents into ``num_shards`` ``.txt`` shards.

    Each document is 3 to 24 sentences drawn at random from the built-in corpus (real English
    prose, sentence-split by ``bert18.data.split_sentences``), documents separated by a blank line
    (BERT's format): a corpus of any size, for testing memory and throughput at scale offline.
    ``compression`` ``"gz"`` or ``"zst"`` compresses each shard. Returns the shard paths.
    """
    from .sentences import split_sentences

    if megabytes <= 0 or num_shards < 1:
        raise ValueError(f"need megabytes > 0 and num_shards >= 1, got {megabytes} and {num_shards}")
    if compression not in (None, "gz", "zst"):
        raise ValueError(f"compression must be None, 'gz' or 'zst', got {compression!r}")
    sentences = [s for text in builtin_corpus()["text"] for s in split_sentences(text) if len(s) > 20]
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = megabytes * 1e6 / num_shards
    paths = []
    for shard in range(num_shards):
        path = folder / f"shard-{shard:05d}.txt{'.' + compression if compression else ''}"
        if compression == "gz":
            handle: IO[bytes] = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 (closed by the with below)
        elif compression == "zst":
            import zstandard

            handle = zstandard.ZstdCompressor(level=1).stream_writer(path.open("wb"), closefd=True)
        else:
            handle = path.open("wb")
        with handle:
            written = 0
            while written < per_shard:
                picks = rng.integers(len(sentences), size=int(rng.integers(3, 25)))
                block = (" ".join(sentences[i] for i in picks) + "\n\n").encode("utf-8")
                handle.write(block)
                written += len(block)
        paths.append(path)
    return paths


# ------------------------------------------------------------------ streaming local files


def _open_shard(path: Path) -> IO[bytes]:
    """A binary stream of the file's decompressed bytes, chosen by its last suffix."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    if suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(path.open("rb"), closefd=True))
    return path.open("rb")


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` for every line of a text shard, decoded strictly, read incrementally."""
    try:
        with _open_shard(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(
                        f"corpus shard {path}, line {number}: not UTF-8 text (byte {error.start} of the "
                        f"line: {error.reason}); convert the file (e.g. iconv -t UTF-8)"
                    ) from None
                if "\x00" in line:
                    raise ValueError(f"corpus shard {path}, line {number}: NUL byte; the file looks binary, not text")
                yield number, line
    except (OSError, EOFError) as error:  # a truncated .gz, a corrupt .zst
        raise ValueError(f"corpus shard {path}: cannot read it ({type(error).__name__}: {error})") from error


def _text_documents(path: Path, documents: str) -> Iterator[str]:
    """The documents of a text shard: blocks between blank lines, lines, or the whole file."""
    block: list[str] = []
    for _, line in _decoded_lines(path):
        if documents == "line":
            if line.strip():
                yield line.strip()
            continue
        if documents == "blank_line" and not line.strip():
            if block:
                yield "".join(block).strip()
                block = []
            continue
        block.append(line)
    if block and "".join(block).strip():
        yield "".join(block).strip()


def _json_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"corpus shard {path}, line {number}: malformed JSON ({error.msg} at column {error.colno})"
            ) from None
        if not isinstance(row, dict) or not isinstance(row.get(text_column), str):
            raise ValueError(
                f"corpus shard {path}, line {number}: expected a JSON object with a string "
                f"{text_column!r} field, got {str(row)[:80]}"
            )
        yield {"text": row[text_column]}


def _parquet_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq  # only a Parquet corpus needs the Parquet reader (seconds of import otherwise)

    try:
        reader = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid and friends
        raise ValueError(f"corpus shard {path}: not a readable parquet file ({error})") from error
    if text_column not in reader.schema_arrow.names:
        raise ValueError(f"corpus shard {path} has no column {text_column!r}; its columns: {reader.schema_arrow.names}")
    row = 0
    for batch in reader.iter_batches(batch_size=1024, columns=[text_column]):
        for text in batch.column(0).to_pylist():
            row += 1
            if not isinstance(text, str):
                raise ValueError(
                    f"corpus shard {path}, row {row}: column {text_column!r} holds {type(text).__name__}, not text"
                )
            yield {"text": text}


def _shard_documents(shards: list[str], documents: str, text_column: str) -> Iterator[dict[str, Any]]:
    """The generator behind ``_stream_local_files``: ``shards`` is a list, so ``datasets`` splits it
    between nodes and workers and shuffles its order per epoch."""
    for shard in shards:
        path = Path(shard)
        if not path.is_file():
            raise FileNotFoundError(f"corpus shard not found: {path}")
        suffix = _format_suffix(path)
        if suffix == ".parquet":
            rows = _parquet_rows(path, text_column)
        elif _BUILDERS.get(suffix) == "json":
            rows = _json_rows(path, text_column)
        else:
            rows = ({"text": text} for text in _text_documents(path, documents))
        count = 0
        for row in rows:
            if row["text"].strip():
                count += 1
                yield row
        if count == 0:  # not an error (a writer may leave one), but never silent
            logger.warning("corpus shard %s holds no document: skipped", path)


def _stream_local_files(
    files: list[Path], documents: str, text_column: str, shard_seed: int | None
) -> datasets.IterableDataset:
    """Local files as a stream of ``{"text"}`` documents, one shard per file, read incrementally."""
    if documents not in _DOCUMENT_MODES:
        raise ValueError(f"documents must be one of {list(_DOCUMENT_MODES)}, got {documents!r}")
    formats = {_BUILDERS.get(_format_suffix(path)) for path in files}
    if None in formats or len(formats) > 1 or "csv" in formats:
        suffixes = sorted({"".join(path.suffixes) for path in files})
        raise ValueError(
            "streamed corpus files must share one format of .txt/.text/.md, .json/.jsonl or .parquet "
            f"(optionally {'/'.join(_COMPRESSIONS)}); got {suffixes}"
        )
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
    names = [str(path) for path in files]
    if shard_seed is not None:
        names = [names[i] for i in np.random.default_rng(shard_seed).permutation(len(names))]
    return datasets.IterableDataset.from_generator(
        _shard_documents,
        features=datasets.Features({"text": datasets.Value("string")}),
        gen_kwargs={"shards": names, "documents": documents, "text_column": text_column},
    )


def _with_text_column(dataset: Any, text_column: str, source: Any) -> Any:
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"corpus {source} has no column {text_column!r}; its columns: {columns}")
    if text_column != "text":
        if columns is not None and "text" in columns:
            dataset = dataset.remove_columns("text")
        dataset = dataset.rename_column(text_column, "text")
    return dataset


__all__ = ["builtin_corpus", "load_corpus", "write_sample_corpus"]

"""Vocabulary training: WordPiece, BPE and Unigram tokenizers built with Hugging Face ``tokenizers``.

Two entry points:

- :func:`train_tokenizer` trains a real subword vocabulary on a corpus (strings, text files or a
  ``datasets.Dataset``) and returns a ``transformers.PreTrainedTokenizerFast`` that
  ``save_pretrained`` writes and ``AutoTokenizer.from_pretrained`` loads back.
- :func:`learn_bpe` / :func:`apply_bpe` are a short pure-Python reference of the original BPE merge
  loop (Sennrich et al., 2016) for teaching; they reproduce the seed article's worked example
  (low x5, lower x2, newest x6, widest x3: 10 symbols grown to 18 in 8 merges).

The pipelines ``train_tokenizer`` builds (``style`` picks the special tokens and the template):

==========  =======  ====================================================================
algorithm   style    pipeline
==========  =======  ====================================================================
wordpiece   bert     BERT: BertNormalizer, BertPreTokenizer, ``##`` continuation prefix,
                     ``[PAD] [UNK] [CLS] [SEP] [MASK]``, ``[CLS] A [SEP] B [SEP]``
bpe         bert     the original (Sennrich) character-level BPE: BERT normalization and
                     pre-tokenization, ``</w>`` end-of-word suffix, unseen characters -> ``[UNK]``
bpe         roberta  RoBERTa / GPT-2 byte-level BPE: no ``[UNK]`` ever, exact round trip,
                     ``<s> <pad> </s> <unk> <mask>``, ``<s> A </s></s> B </s>``
unigram     bert     ALBERT-like SentencePiece Unigram: Metaspace (``▁``) pre-tokenizer
unigram     roberta  XLM-R-like SentencePiece Unigram with the RoBERTa special tokens
wordpiece   roberta  refused: WordPiece has no byte-level form and RoBERTa is byte-level BPE
==========  =======  ====================================================================

``split_cjk`` makes every CJK ideograph its own pre-token (BERT's ``handle_chinese_chars``, the
behaviour of the released Chinese and multilingual BERT vocabularies); for the byte-level and
Metaspace pipelines it is a ``Split`` pre-tokenizer, which keeps decoding exact.
"""

from __future__ import annotations

import codecs
import heapq
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = [
    "BERT_SPECIAL_TOKENS",
    "ROBERTA_SPECIAL_TOKENS",
    "BpeMerge",
    "apply_bpe",
    "check_vocab_size",
    "learn_bpe",
    "train_tokenizer",
]

ALGORITHMS = ("wordpiece", "bpe", "unigram")
STYLES = ("bert", "roberta")

#: Special tokens in id order (ids 0..4) for each style.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
ROBERTA_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

#: The CJK ideograph blocks BERT's ``_is_chinese_char`` treats as one token each.
CJK_CHARACTERS = (
    "[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f]"
)

_TEXT_SUFFIXES = (".txt", ".text", ".md", ".rst", ".raw", ".tok")
_BATCH_SIZE = 1000
_CHUNK_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------------
# train_tokenizer
# --------------------------------------------------------------------------------------------------


@dataclass
class _Corpus:
    """Batches of training text, the number of texts when known, and what was actually seen."""

    batches: Callable[[], Iterator[list[str]]]
    length: int | None
    description: str
    texts_seen: int = 0
    characters_seen: int = 0

    def __iter__(self) -> Iterator[list[str]]:
        for batch in self.batches():
            self.texts_seen += len(batch)
            self.characters_seen += sum(len(text.strip()) for text in batch)
            yield batch


def _looks_like_path(text: str) -> bool:
    """A short single-token string naming a file: contains a separator or ends in a text suffix."""
    if not text or len(text) > 4096 or any(ch.isspace() for ch in text):
        return False
    return "/" in text or os.sep in text or text.lower().endswith(_TEXT_SUFFIXES)


def _check_text_file(path: Path) -> tuple[int, bool]:
    """Read ``path`` once: it must exist and be UTF-8 text. Returns (line count, has any text)."""
    if not path.exists():
        raise FileNotFoundError(f"training file not found: {path}")
    if not path.is_file():
        raise ValueError(f"training input is not a regular file: {path}")
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines, has_text, offset = 0, False, 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            if b"\x00" in chunk:
                position = offset + chunk.index(b"\x00")
                raise ValueError(
                    f"{path} looks like a binary file (NUL byte at offset {position}); "
                    "train_tokenizer reads UTF-8 plain text"
                )
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                # error.object is the decoder's pending bytes followed by this chunk
                position = offset - (len(error.object) - len(chunk)) + error.start
                raise ValueError(
                    f"{path} is not UTF-8 text: invalid byte 0x{error.object[error.start]:02x} at offset "
                    f"{position}; convert it (e.g. `iconv -t UTF-8`) or pass decoded strings"
                ) from None
            lines += chunk.count(b"\n")
            has_text = has_text or bool(chunk.strip())
            offset += len(chunk)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text: it ends inside a multi-byte character") from None
    return lines + 1, has_text


def _file_batches(paths: Sequence[Path]) -> Callable[[], Iterator[list[str]]]:
    def batches() -> Iterator[list[str]]:
        for path in paths:
            with open(path, encoding="utf-8") as handle:
                while batch := [line.rstrip("\r\n") for line in itertools.islice(handle, _BATCH_SIZE)]:
                    batch = [line for line in batch if line.strip()]
                    if batch:
                        yield batch

    return batches


def _text_batches(texts: Iterable[Any]) -> Callable[[], Iterator[list[str]]]:
    def batches() -> Iterator[list[str]]:
        iterator = iter(texts)
        index = 0
        while batch := list(itertools.islice(iterator, _BATCH_SIZE)):
            for position, text in enumerate(batch):
                if not isinstance(text, str):
                    raise TypeError(f"training texts must be str; item {index + position} is {type(text).__name__}")
            index += len(batch)
            yield batch

    return batches


def _dataset_corpus(dataset: Any, text_column: str) -> _Corpus:
    columns = list(getattr(dataset, "column_names", None) or [])
    if text_column not in columns:
        raise ValueError(f"the dataset has no {text_column!r} column (columns: {columns}); pass text_column=...")
    length = len(dataset) if hasattr(dataset, "__len__") else None
    if length == 0:
        raise ValueError("no text to train on: the dataset is empty")

    def batches() -> Iterator[list[str]]:
        if length is not None and hasattr(dataset, "__getitem__"):
            rows = (dataset[start : start + _BATCH_SIZE] for start in range(0, length, _BATCH_SIZE))
        else:  # datasets.IterableDataset
            rows = dataset.iter(batch_size=_BATCH_SIZE)
        for row in rows:
            batch = [text for text in row[text_column] if isinstance(text, str) and text.strip()]
            if batch:
                yield batch

    return _Corpus(batches, length, f"the {text_column!r} column of the dataset")


def _as_corpus(texts_or_files: Any, text_column: str) -> _Corpus:
    """Recognise strings, paths or a ``datasets.Dataset`` and check files before any training."""
    if hasattr(texts_or_files, "column_names"):
        return _dataset_corpus(texts_or_files, text_column)
    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]
    if isinstance(texts_or_files, (bytes, bytearray)):
        raise TypeError("train_tokenizer takes str texts or file paths, not bytes")
    if isinstance(texts_or_files, Sequence):
        items = list(texts_or_files)
        if not items:
            raise ValueError("no text to train on: the input is empty")
        first = items[0]
        is_files = isinstance(first, os.PathLike) or (
            isinstance(first, str) and (os.path.isfile(first) or _looks_like_path(first))
        )
        if is_files:
            paths = []
            for item in items:
                if not isinstance(item, (str, os.PathLike)):
                    raise TypeError(f"expected file paths, got {type(item).__name__}: {item!r}")
                paths.append(Path(item))
            total, has_text = 0, False
            for path in paths:
                lines, text_found = _check_text_file(path)
                total += lines
                has_text = has_text or text_found
            if not has_text:
                raise ValueError(f"no text to train on: the files are empty ({', '.join(map(str, paths))})")
            return _Corpus(_file_batches(paths), total, f"{len(paths)} file(s)")
        if all(isinstance(item, str) and not item.strip() for item in items):
            raise ValueError("no text to train on: every text is empty")
        return _Corpus(_text_batches(items), len(items), f"{len(items)} text(s)")
    if isinstance(texts_or_files, Iterable):
        return _Corpus(_text_batches(texts_or_files), None, "the iterator")
    raise TypeError(
        "train_tokenizer takes a list/iterator of strings, file paths or a datasets.Dataset, "
        f"not {type(texts_or_files).__name__}"
    )


def _build_pipeline(
    algorithm: str, style: str, lowercase: bool, strip_accents: bool | None, split_cjk: bool
) -> tuple[Tokenizer, Any]:
    """The untrained tokenizer (normalizer, pre-tokenizer, model, decoder) and its trainer class."""
    specials = BERT_SPECIAL_TOKENS if style == "bert" else ROBERTA_SPECIAL_TOKENS
    unk = specials[1] if style == "bert" else specials[3]
    cjk_split = [pre_tokenizers.Split(Regex(CJK_CHARACTERS), behavior="isolated")] if split_cjk else []

    if style == "bert":
        # BERT's own normalizer; handle_chinese_chars puts spaces around CJK characters for the
        # BertPreTokenizer, which only the whitespace-splitting pipelines (wordpiece, bpe) want.
        normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=split_cjk and algorithm != "unigram",
            strip_accents=strip_accents,
            lowercase=lowercase,
        )
    else:
        steps: list[normalizers.Normalizer] = []
        if strip_accents or (strip_accents is None and lowercase):
            steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
        if lowercase:
            steps.append(normalizers.Lowercase())
        normalizer = normalizers.Sequence(steps) if steps else None

    if algorithm == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=unk, continuing_subword_prefix="##"))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
        trainer = trainers.WordPieceTrainer
    elif algorithm == "bpe" and style == "bert":
        tokenizer = Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix="</w>"))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
        trainer = trainers.BpeTrainer
    elif algorithm == "bpe":
        tokenizer = Tokenizer(models.BPE())  # byte-level: every byte is in the alphabet, no unk
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [*cjk_split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer
    else:  # unigram, SentencePiece-style
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [*cjk_split, pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)]
        )
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        trainer = trainers.UnigramTrainer
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    return tokenizer, trainer


def _word_counts(tokenizer: Tokenizer, corpus: _Corpus) -> Counter[str]:
    """How often each pre-token (word) occurs: the corpus normalized and pre-tokenized by the pipeline
    itself, text by text, so memory grows with the number of distinct words, not with the corpus."""
    counts: Counter[str] = Counter()
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    for batch in corpus:
        for text in batch:
            normalized = normalizer.normalize_str(text) if normalizer is not None else text
            counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalized))
    return counts


def _deterministic_merges(
    counts: Counter[str],
    vocab_size: int,
    min_frequency: int,
    specials: Sequence[str],
    limit_alphabet: int | None,
    prefix: str = "",
    suffix: str = "",
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The vocabulary and merges of ``tokenizers``' ``BpeTrainer`` / ``WordPieceTrainer`` merge loop
    (WordPiece: a ``prefix`` such as ``##`` on every symbol but a word's first; character-level BPE:
    a ``suffix`` such as ``</w>`` on a word's last symbol), made deterministic.

    ``tokenizers`` numbers the prefixed / suffixed symbols (``##e``, ``e</w>``) in the order it meets
    them while iterating a hash map of the words, which changes from process to process, and breaks
    ties between equally frequent pairs by those numbers, so two runs on the same corpus can learn
    different vocabularies (different ids, different merges, even different sizes). Here every order
    is fixed: special tokens, then the alphabet by code point (the ``limit_alphabet`` most frequent
    characters, ties by code point), then the prefixed / suffixed symbols by text, then merged tokens
    in merge order, the most frequent pair first and ties broken by the smaller ids, as ``tokenizers``
    does with its own ids. The same word counts and settings always give the same vocabulary and
    merges, byte for byte.
    """
    vocab: dict[str, int] = {}
    tokens: list[str] = []

    def add(token: str) -> int:
        if token not in vocab:
            vocab[token] = len(tokens)
            tokens.append(token)
        return vocab[token]

    for token in specials:
        add(token)
    characters: Counter[str] = Counter()
    for word, count in counts.items():
        for character in word:
            characters[character] += count
    alphabet = sorted(characters)
    if limit_alphabet is not None and len(alphabet) > limit_alphabet:
        alphabet = sorted(sorted(characters, key=lambda c: (-characters[c], c))[:limit_alphabet])
    allowed = set(alphabet)
    for character in alphabet:
        add(character)

    def symbol(word: str, i: int) -> str:
        """The i-th character of a word as tokenizers' trainer spells it (BpeTrainer.tokenize_words)."""
        return (prefix if i > 0 else "") + word[i] + (suffix if i == len(word) - 1 else "")

    for decorated in sorted({symbol(word, i) for word in counts for i, c in enumerate(word) if c in allowed}):
        add(decorated)

    # Words as lists of symbol ids (characters outside the alphabet dropped, as tokenizers does).
    ordered = sorted(counts.items())
    words = [[vocab[symbol(word, i)] for i, c in enumerate(word) if c in allowed] for word, _ in ordered]
    frequencies = [count for _, count in ordered]
    pair_counts: Counter[tuple[int, int]] = Counter()
    where: dict[tuple[int, int], set[int]] = {}
    for index, (symbols, count) in enumerate(zip(words, frequencies)):
        for pair in itertools.pairwise(symbols):
            pair_counts[pair] += count
            where.setdefault(pair, set()).add(index)

    def entry(pair: tuple[int, int]) -> tuple[int, tuple[int, int]]:
        return -pair_counts[pair], pair  # ties: the smaller ids first, as tokenizers (ids fixed here)

    merges: list[tuple[str, str]] = []
    heap = [entry(pair) for pair in pair_counts]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        count = pair_counts[pair]
        if -negative != count:  # stale: its count changed since it was pushed
            if count > 0:
                heapq.heappush(heap, entry(pair))
            continue
        if count < min_frequency:
            break
        first, second = tokens[pair[0]], tokens[pair[1]]
        merges.append((first, second))
        merged_id = add(first + (second[len(prefix) :] if prefix and second.startswith(prefix) else second))
        touched = set()
        for index in sorted(where.pop(pair, ())):
            symbols = words[index]
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == pair[0] and symbols[i + 1] == pair[1]:
                    merged.append(merged_id)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            if len(merged) == len(symbols):
                continue
            count_of_word = frequencies[index]
            for old in itertools.pairwise(symbols):
                pair_counts[old] -= count_of_word
                touched.add(old)
            for new in itertools.pairwise(merged):
                pair_counts[new] += count_of_word
                where.setdefault(new, set()).add(index)
                touched.add(new)
            words[index] = merged
        for changed in sorted(touched):
            if changed != pair and pair_counts[changed] > 0:
                heapq.heappush(heap, entry(changed))
    return vocab, merges


def train_tokenizer(
    texts_or_files: Any,
    algorithm: str = "wordpiece",
    vocab_size: int = 30522,
    min_frequency: int = 2,
    lowercase: bool = True,
    strip_accents: bool | None = None,
    special_tokens_style: str = "bert",
    split_cjk: bool = True,
    model_max_length: int = 512,
    show_progress: bool = True,
    save_to: str | os.PathLike[str] | None = None,
    text_column: str = "text",
    limit_alphabet: int | None = None,
) -> PreTrainedTokenizerFast:
    """Train a subword vocabulary and return it as a ``transformers`` fast tokenizer.

    Args:
        texts_or_files: the corpus, one of
            - a list (or any iterable) of strings, each one training text;
            - file paths: ``pathlib.Path`` objects, or strings when the first one names an existing
              file or looks like a path (no whitespace, and a ``/`` or a ``.txt``/``.md``/...
              suffix). Files are UTF-8 plain text, one or more documents per file, read line by
              line; every file is checked before training (missing, binary and non-UTF-8 files
              raise, naming the file);
            - a ``datasets.Dataset`` (or ``IterableDataset``) with a ``text_column`` column.
            Text is streamed to the trainer in batches of 1,000 (``train_from_iterator`` with
            ``length=`` for the progress bar when the size is known).
        algorithm: ``"wordpiece"``, ``"bpe"`` or ``"unigram"`` (see the module docstring).
        vocab_size: the target number of ids, special tokens included. WordPiece and BPE always
            keep the whole character alphabet; if special tokens plus alphabet do not fit, a
            ``ValueError`` says so (raise ``vocab_size`` or cap the alphabet with ``limit_alphabet``).
        min_frequency: a pair is merged only if it occurs at least this often (WordPiece, BPE;
            Unigram has no such threshold and ignores it).
        lowercase: lowercase the text (BERT uncased). This is the default for every style, so
            pass ``lowercase=False`` for a cased RoBERTa-like vocabulary.
        strip_accents: remove accents (NFD + drop combining marks); ``None`` follows ``lowercase``,
            as BERT's ``BertNormalizer`` does.
        special_tokens_style: ``"bert"`` (``[PAD] [UNK] [CLS] [SEP] [MASK]`` at ids 0-4,
            ``[CLS] A [SEP] B [SEP]`` with token_type_ids 0/1) or ``"roberta"``
            (``<s> <pad> </s> <unk> <mask>`` at ids 0-4, ``<s> A </s></s> B </s>``, no
            token_type_ids; with ``algorithm="bpe"`` it is byte-level BPE).
        split_cjk: make each CJK ideograph its own pre-token.
        model_max_length: stored on the returned tokenizer (truncation length).
        show_progress: the ``tokenizers`` trainer's own progress bar.
        save_to: if given, ``save_pretrained`` into this folder as well.
        text_column: the column read from a ``datasets.Dataset``.
        limit_alphabet: keep at most this many characters in the alphabet (WordPiece, char-level
            BPE); rarer characters become the unknown token.

    Returns:
        A ``PreTrainedTokenizerFast`` with the special tokens set; ``len(tokenizer) <= vocab_size``.

    Reproducibility: WordPiece and character-level (``</w>``) BPE are trained by bert18's own copy
    of the ``tokenizers`` merge loop with every order fixed (``_deterministic_merges``): the same
    corpus and settings give a byte-identical vocabulary in any process. (``tokenizers`` <= 0.23
    numbers their ``##e`` / ``e</w>`` symbols in hash-map order and breaks frequency ties by those
    numbers, huggingface/tokenizers#1794; bert18's vocabulary has the same tokens up to those
    ties.) Byte-level BPE training is deterministic in ``tokenizers`` itself. Unigram is not, and
    cannot be made so from Python: ``UnigramTrainer`` turns its word counts into a list in Rust
    ``HashMap`` order (random keys per process, not set by ``PYTHONHASHSEED``; one thread via
    ``RAYON_NUM_THREADS=1`` / ``TOKENIZERS_PARALLELISM=false`` does not help), and its EM sums
    expected counts in that order, so piece scores differ in the last digits (about 4e-11) and
    pieces of nearly equal score swap ids. Measured on the built-in corpus (3,000 pieces, two
    processes): the same pieces, 2,183 scores differ, and the ids of 78 of the 191 documents, the
    segmentation of 6 (near-ties in the Viterbi path). Keep the saved
    tokenizer with the model rather than retraining it. Training reads the corpus once, as a
    stream (a streaming ``IterableDataset`` works): memory grows with the distinct words, not the
    corpus.

    Raises:
        ValueError: unknown algorithm/style, an unsupported combination, empty input, a binary or
            non-UTF-8 file, or a ``vocab_size`` too small for the special tokens and the alphabet.
        FileNotFoundError: a training file that does not exist.
        TypeError: an input that is neither text, paths nor a dataset.
    """
    algorithm, style = algorithm.lower(), special_tokens_style.lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    if style not in STYLES:
        raise ValueError(f"unknown special_tokens_style {special_tokens_style!r}; choose one of {STYLES}")
    if algorithm == "wordpiece" and style == "roberta":
        raise ValueError(
            "algorithm='wordpiece' with special_tokens_style='roberta' is not supported: RoBERTa's "
            "vocabulary is byte-level BPE and WordPiece has no byte-level form; use "
            "algorithm='bpe' for RoBERTa, or special_tokens_style='bert' for WordPiece"
        )
    specials = BERT_SPECIAL_TOKENS if style == "bert" else ROBERTA_SPECIAL_TOKENS
    byte_level = algorithm == "bpe" and style == "roberta"
    floor = len(specials) + (len(pre_tokenizers.ByteLevel.alphabet()) if byte_level else 1)
    if vocab_size < floor:
        what = "the 256 byte symbols of byte-level BPE" if byte_level else "at least one character"
        raise ValueError(
            f"vocab_size={vocab_size} is too small: the {len(specials)} special tokens {list(specials)} "
            f"and {what} need at least {floor} ids"
        )
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be >= 1, got {min_frequency}")

    corpus = _as_corpus(texts_or_files, text_column)
    tokenizer, trainer_class = _build_pipeline(algorithm, style, lowercase, strip_accents, split_cjk)
    special_tokens = [AddedToken(token, special=True, normalized=False, lstrip=token == "<mask>") for token in specials]
    unk = specials[1] if style == "bert" else specials[3]
    if algorithm == "unigram":
        trainer = trainer_class(
            vocab_size=vocab_size, special_tokens=special_tokens, unk_token=unk, show_progress=show_progress
        )
    else:
        options: dict[str, Any] = {
            "vocab_size": vocab_size,
            "min_frequency": min_frequency,
            "special_tokens": special_tokens,
            "show_progress": show_progress,
        }
        if byte_level:
            options["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
        elif limit_alphabet is not None:
            options["limit_alphabet"] = limit_alphabet
        if algorithm == "wordpiece":
            options["continuing_subword_prefix"] = "##"
        elif not byte_level:
            options["end_of_word_suffix"] = "</w>"
        trainer = trainer_class(**options)

    if algorithm == "wordpiece" or (algorithm == "bpe" and not byte_level):
        # Deterministic (see Reproducibility): the trainer's own merge loop with every order fixed.
        counts = _word_counts(tokenizer, corpus)
        if algorithm == "wordpiece":
            vocab, _ = _deterministic_merges(counts, vocab_size, min_frequency, specials, limit_alphabet, prefix="##")
            tokenizer.model = models.WordPiece(vocab=vocab, unk_token=unk, continuing_subword_prefix="##")
        else:
            vocab, merges = _deterministic_merges(
                counts, vocab_size, min_frequency, specials, limit_alphabet, suffix="</w>"
            )
            tokenizer.model = models.BPE(vocab=vocab, merges=merges, unk_token=unk, end_of_word_suffix="</w>")
        tokenizer.add_special_tokens(special_tokens)
    else:
        tokenizer.train_from_iterator(corpus, trainer=trainer, length=corpus.length)
    if corpus.characters_seen == 0:
        raise ValueError(f"no text to train on: {corpus.description} held no non-blank text")
    trained_size = tokenizer.get_vocab_size(with_added_tokens=True)
    if trained_size > vocab_size:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for this corpus: the {len(specials)} special tokens and "
            f"the character alphabet (with its continuation forms) already take {trained_size} ids. "
            f"Raise vocab_size to more than {trained_size}, or cap the alphabet with limit_alphabet="
        )

    ids = {token: tokenizer.token_to_id(token) for token in specials}
    if style == "bert":
        cls, sep = "[CLS]", "[SEP]"
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
        )
        token_roles = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": cls, "sep_token": sep}
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    else:
        tokenizer.post_processor = processors.RobertaProcessing(
            ("</s>", ids["</s>"]), ("<s>", ids["<s>"]), trim_offsets=True, add_prefix_space=False
        )
        token_roles = {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "<unk>",
        }
        input_names = ["input_ids", "attention_mask"]

    result = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        mask_token=special_tokens[-1],
        model_input_names=input_names,
        clean_up_tokenization_spaces=False,
        **token_roles,
    )
    if save_to is not None:
        result.save_pretrained(os.fspath(save_to))
    return result


def check_vocab_size(tokenizer: Any, config: Any) -> int:
    """Check that every id the tokenizer can produce has a row in the model's embedding table.

    ``config`` is a model config (e.g. ``bert18.Bert18Config``) or a model with a ``.config``.
    Raises a ``ValueError`` naming both numbers when the tokenizer has more ids than
    ``config.vocab_size``: such ids would index past the word-embedding matrix (an index error
    on CPU, a device-side assert on GPU). A smaller tokenizer is fine and passes quietly; the
    return value is the number of embedding rows no token uses (kept for speed, e.g. a multiple
    of 64, or wasted parameters: ``hidden_size`` each).
    """
    config = getattr(config, "config", config)
    model_size = getattr(config, "vocab_size", None)
    if not isinstance(model_size, int):
        raise TypeError(f"{type(config).__name__} has no integer vocab_size")
    needed = len(tokenizer)
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    if vocab:
        needed = max(needed, max(vocab.values()) + 1)
    if needed > model_size:
        raise ValueError(
            f"the tokenizer has {needed} token ids but the model config has vocab_size={model_size}: ids "
            f"{model_size}..{needed - 1} would index past the embedding table; build the model with "
            f"vocab_size={needed} (or more), or train the tokenizer with vocab_size={model_size}"
        )
    return model_size - needed


# --------------------------------------------------------------------------------------------------
# learn_bpe / apply_bpe: the original merge loop, for teaching
# --------------------------------------------------------------------------------------------------

Pair = tuple[str, str]


class BpeMerge(NamedTuple):
    """One step of :func:`learn_bpe`: the merged pair, its weighted count, the vocabulary size after it."""

    pair: Pair
    frequency: int
    vocab_size: int

    @property
    def symbol(self) -> str:
        """The new symbol: the two halves joined."""
        return self.pair[0] + self.pair[1]


TieBreak = str | Callable[[list[Pair]], Pair]


def _merge_word(symbols: list[str], pair: Pair) -> list[str]:
    """Replace every non-overlapping occurrence of ``pair`` (left to right) by the joined symbol."""
    merged: list[str] = []
    i = 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return merged


def learn_bpe(
    word_counts: dict[str, int],
    num_merges: int,
    end_of_word: str = "</w>",
    tie_break: TieBreak = "first",
) -> list[BpeMerge]:
    """Learn BPE merges the way Sennrich et al. (2016) and the seed article describe.

    Every word is split into characters followed by the end-of-word marker (``"low"`` ->
    ``l o w </w>``). Each step counts the adjacent symbol pairs over all words, weighted by the
    word counts, merges the most frequent pair everywhere, and records it. The loop stops after
    ``num_merges`` merges, or earlier when no pair is left or the best pair occurs only once (the
    seed's stopping rule: "or the next most frequent pair has frequency 1").

    Vocabulary counting, as the seed article does it: the initial vocabulary is the set of
    distinct characters of the words, *without* the end-of-word marker (10 for low, lower,
    newest, widest: ``l o w e r n s t i d``); each merge adds its new symbol (``st``, ``est``,
    ``est</w>``, ...) and nothing is ever removed, even a symbol that no longer occurs on its own
    (``s`` and ``t`` once all of them became ``st``). So ``vocab_size`` is
    ``len(characters | merged symbols)``: one more per merge unless a merge rebuilds a symbol
    already in the set. (Counting only the symbols still in use would instead shrink or hold still
    on some merges.)

    Ties (several pairs with the top frequency) are broken by ``tie_break``:

    - ``"first"`` (default): the pair seen first when scanning the words in ``word_counts``'s
      order, each left to right; what Sennrich's reference code (``max(pairs, key=pairs.get)``)
      does on Python >= 3.7.
    - ``"lexicographic"``: the smallest ``(left, right)`` pair in string order.
    - a callable: given the tied pairs in first-seen order, return one of them.

    Five of the seed's eight steps are ties (steps 1, 2, 4, 6 and 7: e.g. step 1 has ``(e, s)``,
    ``(s, t)`` and ``(t, </w>)`` at 9 each). ``"first"`` agrees with the seed at steps 4 and 6
    only, and no fixed order of the words, scanning direction or string order picks all five of
    the seed's choices (its trace came from Python's old randomised dict order). The frequencies
    and vocabulary sizes are the same under any tie-break; the seed's exact merges come back with
    a callable that picks the seed's pair among the tied ones.

    Returns:
        One :class:`BpeMerge` ``(pair, frequency, vocab_size)`` per merge, in order.
    """
    if num_merges < 0:
        raise ValueError(f"num_merges must be >= 0, got {num_merges}")
    for word, count in word_counts.items():
        if not word or not isinstance(count, int) or count < 1:
            raise ValueError(f"word counts must map non-empty words to positive integers, got {word!r}: {count!r}")
    segmented = {word: [*word, end_of_word] for word in word_counts}
    vocabulary = {char for word in word_counts for char in word}
    merges: list[BpeMerge] = []
    for _ in range(num_merges):
        counts: Counter[Pair] = Counter()
        for word, symbols in segmented.items():
            for pair in itertools.pairwise(symbols):
                counts[pair] += word_counts[word]
        if not counts:
            break
        frequency = max(counts.values())
        if frequency < 2:
            break
        tied = [pair for pair, count in counts.items() if count == frequency]  # first-seen order
        if tie_break == "first":
            best = tied[0]
        elif tie_break == "lexicographic":
            best = min(tied)
        elif callable(tie_break):
            best = tie_break(list(tied))
            if best not in tied:
                raise ValueError(f"tie_break returned {best!r}, which is not one of the tied pairs {tied}")
        else:
            raise ValueError(f"unknown tie_break {tie_break!r}; use 'first', 'lexicographic' or a callable")
        segmented = {word: _merge_word(symbols, best) for word, symbols in segmented.items()}
        vocabulary.add(best[0] + best[1])
        merges.append(BpeMerge(best, frequency, len(vocabulary)))
    return merges


def apply_bpe(word: str, merges: Sequence[BpeMerge | Pair], end_of_word: str = "</w>") -> list[str]:
    """Segment a new word with learned merges: split into characters + ``end_of_word``, then apply
    the merges in the order they were learned, each one everywhere in the word.

    ``apply_bpe("lowest", merges)`` with the seed's merges gives ``["low", "est</w>"]``. Characters
    never seen in training stay single symbols.
    """
    if not word:
        return []
    symbols = [*word, end_of_word]
    for merge in merges:
        pair = merge.pair if isinstance(merge, BpeMerge) else tuple(merge)
        if len(symbols) == 1:
            break
        symbols = _merge_word(symbols, pair)  # type: ignore[arg-type]
    return symbols

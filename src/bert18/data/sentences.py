# ruff: noqa: RUF001, RUF002  (full-width CJK punctuation is what this module is about)
"""Sentence splitting for pretraining: character spans of the sentences of English, CJK and mixed text.

Sentence tasks (NSP, SOP, sentence distance) and key-sentence extraction need documents cut into
sentences, and the built-in corpus is Python documentation: prose, doctest examples, indented code,
tables and lists. :func:`sentence_spans` is rule-based, pure Python over compiled regular
expressions and linear in the length of the text, so it can run over a corpus inside
``datasets.map`` (:func:`split_documents`). It works in two passes.

1. **Blocks of lines.** A block never continues past

   - a blank line (a paragraph break);
   - a doctest example: a line starting with ``>>>`` opens an example that takes in the ``...``
     continuation lines and the expected output after it, up to the next blank line, the next
     ``>>>`` line or a line indented less than the prompt (doctest's own rule). **An example is one
     unit, never split**: the statement with its output is what a reader takes in at once;
   - a list item: a line starting with a bullet (``-``, ``*``, ``+``, ``•``, ``|``) or an enumerator
     (``1.``, ``2)``, ``(a)``, ``(iv)``) followed by a space starts a new unit. The enumerator stays
     at the front of its item: "1." at the start of a unit never ends a sentence. So does a
     definition line (``name -- text``, ``name(args) --> text``) and a table row (a first word
     followed by two or more spaces: ``f_back     next outer frame object``);
   - a rule line (``-----``, ``=====  =====``, at least three of ``= - ~ ^ * # + _``): it ends the
     unit it is in, so a reST heading keeps its underline and table rows come apart from the rules;
   - a dedent by 2 or more columns (leaving an indented code block, the next definition of a
     definition list), and an indent by 2 or more columns after a line ending with ``:``
     (``Example:`` then the indented code, ``class C:`` then its body).

   Indented text that is not a doctest (wrapped definitions, hanging indents, plain code blocks) is
   otherwise cut like prose: code rarely has a period followed by a space and a capital, so a code
   block usually stays one unit, while the definitions of a ``re``-style table split per entry.

2. **Sentences inside a block.**

   - English: a sentence ends after ``.``, ``!``, ``?`` or an ellipsis (``...``, ``…``), with any
     closing quotes and brackets after it, when whitespace follows and then an uppercase or
     uncased letter (``A``, ``É``, ``中``), a digit, an opening quote or bracket, a backtick or ``*``,
     or the end of the block. Where that whitespace holds a line break, any next character will do
     (docs list entries one per line: ``dump() -- ...`` then ``dumps() -- ...``). An ellipsis ends a
     sentence only before an uppercase or uncased letter or a quote, line break or not ("Wait...
     what" and "1, 2, ... 10" go on). No whitespace, no boundary: ``3.14``, ``v1.2.3``,
     ``os.path.join``, ``example.com``, ``__init__.py`` are never cut.
   - A period does not end a sentence after a known abbreviation (``Mr.``, ``Dr.``, ``Prof.``,
     ``St.``, ``vs.``, ``cf.``, ``Jan.`` ...), a dotted one (``e.g.``, ``i.e.``, ``U.S.``, ``a.m.``),
     a single capital initial (``J. R. R. Tolkien``; so "Plan B. Then" stays one sentence), or a list
     enumerator at the start of its sentence (``1.``, ``a.``, ``iv.``). ``No.``, ``Fig.``, ``p.``,
     ``Vol.``, ``Eq.`` ... hold only before a number ("Fig. 3", but "I said no. Then"). ``etc.``,
     ``et al.``, ``Inc.`` are ordinary words: "lists, tuples, etc. The next" ends a sentence, "etc.
     and" does not.
   - Chinese and Japanese: a sentence ends after ``。``, ``！``, ``？`` or ``｡`` (runs such as ``？！``
     included) with the closing quotes and brackets after it (``”』」）``), whether or not whitespace
     follows; not before a comma, colon or semicolon (``“走吧！”，他说``), nor before the quotative
     ``と``/``っ`` after a closing quote (``「行こう。」と言った``). ``；`` and ``……`` are not
     terminators (an ellipsis ends a sentence only as in English). ASCII ``!`` or ``?`` directly
     followed by a CJK character also ends one (``你好!我是``).
   - A unit with no letter or digit is never cut off on its own ("... Then" stays together).

Every span is trimmed of whitespace, spans are increasing and disjoint, and every non-whitespace
character of the text lies in exactly one of them: nothing is dropped.
"""

import bisect
import logging
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from datasets import Dataset, Features, List, Value

logger = logging.getLogger(__name__)

_CLOSERS = "\"'”’»›)\\]}」』）】》〉"
_QUOTES = "\"'“‘«‹「『"
_OPENERS = _QUOTES + "([{（【《〈¿¡`*"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"

# Either a run holding a CJK terminator (needs no whitespace after it), or an ASCII/ellipsis run that
# must be followed by whitespace, the end of the block, or (for ! and ?) a CJK character. A run is only
# tried from its first character (the lookbehind), which keeps a long run of dots linear.
_CANDIDATE = re.compile(
    r"(?<![.!?…。！？｡])"
    rf"(?:(?P<cjk>[.!?…]*[。！？｡][.!?…。！？｡]*)(?P<cjk_close>[{_CLOSERS}]*)"
    rf"|(?P<term>[.!?…]+)(?P<close>[{_CLOSERS}]*)(?:(?P<space>\s+)|(?=[{_CJK}])|\Z))"
)
_CJK_NO_BREAK_BEFORE = frozenset("，、,：:；;")
_QUOTATIVE = frozenset("とっ")  # Japanese 「...。」と言った: the quote belongs to the sentence that follows
_WORD = re.compile(r"\w")
_SPACE = re.compile(r"\s*")

# Abbreviations that never end a sentence (compared lowercased, without the final period). Words that
# often do end one ("etc.", "et al.", "Inc.", "Ltd.") are left out: they end a sentence only before an
# uppercase word, like any other word. So are words that are also English words ("sun", "sat").
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms mx dr prof sr jr st mt rev hon gen capt lt sgt gov pres messrs mme mlle
    vs v cf viz ca approx esp incl excl resp dept univ assn ibid
    jan feb mar apr jun jul aug sep sept oct nov dec tue tues thu thur thurs
""".split()
)
# Abbreviations that hold only before a number: "Fig. 3", "No. 5", "p. 12".
_NUMBER_ABBREVIATIONS = frozenset("no nos fig figs vol vols p pp eq eqs sec ch art ref refs ex ver".split())
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, i.e, U.S, a.m, U.S.A (the last period is the candidate's)
_ENUMERATOR = re.compile(r"\d{1,3}|[^\W\d_]|[ivx]{1,4}|[IVX]{1,4}")
_TOKEN_LIMIT = 24  # longer tokens are never abbreviations

_LIST_ITEM = re.compile(
    r"(?:[-*+•‣◦–|]|\d{1,3}[.)]|\((?:\d{1,2}|[a-zA-Z]|[ivx]{1,4})\))(?:\s|$)"  # bullets, enumerators
    r"|\w[\w.]*(?:\([^)]*\))?\s+-{1,2}>?\s"  # definitions: "name -- text", "name() --> text"
    r"|[^\s.!?,;:]+ {2,}\S"  # table rows: "f_back     next outer frame object"
)
_RULE = re.compile(r"([=\-~^*#+_])\1{2,}[=\-~^*#+_ ]*")
_PROMPT = re.compile(r">>>(?:\s|$)")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character ``(start, end)`` offsets of the sentences of ``text``; ``text[start:end]`` is one sentence.

    See the module docstring for the rules. Spans are trimmed of whitespace, increasing and disjoint,
    and cover every non-whitespace character. Linear time in ``len(text)``.
    """
    spans: list[tuple[int, int]] = []
    for start, end, is_example in _blocks(text):
        cuts = [end] if is_example else _sentence_ends(text, start, end)
        for cut in cuts:
            span = _trim(text, start, cut)
            if span is not None:
                spans.append(span)
            start = cut
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`), whitespace trimmed."""
    return [text[start:end] for start, end in sentence_spans(text)]


def cut_at_words(
    word_ids: Sequence[int | None],
    max_tokens: int,
    lo: int = 0,
    hi: int | None = None,
) -> list[tuple[int, int]]:
    """Token ranges covering ``[lo, hi)`` of a tokenized sentence, each at most ``max_tokens`` long,
    cut only where a word begins (``word_ids`` changes), so no piece starts with a word's
    continuation (``##ing``). A single word longer than ``max_tokens`` (a URL, a long identifier)
    is the one case cut inside a word. Greedy: each piece ends at the last word start that fits.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    hi = len(word_ids) if hi is None else hi
    words = list(word_ids[lo:hi])
    # word starts, relative to lo: a change of word id (a token without a word id is a word of its own)
    starts = [i for i in range(1, len(words)) if words[i] is None or words[i] != words[i - 1]]
    pieces, start = [], 0
    while len(words) - start > max_tokens:
        limit = start + max_tokens
        i = bisect.bisect_right(starts, limit) - 1  # the last word start at or before the limit
        end = starts[i] if i >= 0 and starts[i] > start else limit
        pieces.append((lo + start, lo + end))
        start = end
    if start < len(words):
        pieces.append((lo + start, lo + len(words)))
    return pieces


# --- pass 1: blocks of lines -------------------------------------------------------------------------


def _blocks(text: str) -> Iterator[tuple[int, int, bool]]:
    """Cut ``text`` into blocks of whole lines: ``(start, end, is_doctest_example)``."""
    block_start = block_end = -1  # -1: no open block
    block_is_example = False
    example_indent = -1  # indentation of the open doctest example's prompt; -1 outside an example
    previous_indent, previous_line, previous_is_rule = 0, "", False
    line_start = 0
    for line in text.split("\n"):
        stripped = line.strip()
        offset, line_start = line_start, line_start + len(line) + 1
        if not stripped:  # paragraph break: ends everything
            if block_start >= 0:
                yield block_start, block_end, block_is_example
            block_start, example_indent = -1, -1
            continue
        content_start = offset + len(line) - len(line.lstrip())
        indent = _indent_width(line[: content_start - offset])
        is_prompt = _PROMPT.match(stripped) is not None
        is_rule = _RULE.fullmatch(stripped) is not None
        if example_indent >= 0 and not is_prompt and indent >= example_indent:
            block_end = offset + len(line.rstrip())  # "..." continuation or expected output
            continue
        new_block = (
            block_start < 0
            or is_prompt
            or example_indent >= 0  # the line after an example, dedented below its prompt
            or (_LIST_ITEM.match(stripped) is not None and not is_rule)
            or previous_is_rule
            or indent <= previous_indent - 2
            or (previous_line.endswith(":") and indent >= previous_indent + 2)
        )
        if new_block:
            if block_start >= 0:
                yield block_start, block_end, block_is_example
            block_start, block_is_example = content_start, is_prompt
        block_end = offset + len(line.rstrip())
        example_indent = indent if is_prompt else -1
        previous_indent, previous_line, previous_is_rule = indent, stripped, is_rule
    if block_start >= 0:
        yield block_start, block_end, block_is_example


def _indent_width(indentation: str) -> int:
    return len(indentation.expandtabs(8)) if "\t" in indentation else len(indentation)


# --- pass 2: sentences inside a block ----------------------------------------------------------------


def _sentence_ends(text: str, start: int, end: int) -> list[int]:
    """Positions in ``[start, end]`` where a sentence of the block ``text[start:end]`` ends; the last is ``end``."""
    cuts = []
    sentence_start = start
    has_word, scanned = False, start  # whether text[sentence_start:scanned] holds a letter or digit
    for match in _CANDIDATE.finditer(text, start, end):
        if match.group("cjk") is not None:
            cut = match.end("cjk_close")
            if not _cjk_boundary(text, cut, end, closed=cut > match.end("cjk")):
                continue
        else:
            cut = match.end("close")
            if not _latin_boundary(text, match, sentence_start, end):
                continue
        if not has_word:
            has_word, scanned = _WORD.search(text, scanned, cut) is not None, cut
            if not has_word:
                continue
        cuts.append(cut)
        sentence_start = scanned = _SPACE.match(text, cut, end).end()
        has_word = False
    cuts.append(end)
    return cuts


def _cjk_boundary(text: str, cut: int, end: int, closed: bool) -> bool:
    if cut >= end:
        return True
    following = text[cut]
    return following not in _CJK_NO_BREAK_BEFORE and not (closed and following in _QUOTATIVE)


def _latin_boundary(text: str, match: re.Match[str], sentence_start: int, end: int) -> bool:
    """Whether an English terminator (``.``, ``!``, ``?``, ellipsis) ends a sentence."""
    term = match.group("term")
    space = match.group("space")
    following = text[match.end()] if match.end() < end else ""
    if space is None and following:  # glued to a CJK character: only "!" and "?" count
        return set(term) <= {"!", "?"}
    if term == "." and not _period_ends_sentence(text, match.start(), sentence_start, following):
        return False
    if not following:  # end of the block
        return True
    if "…" in term or term.startswith(".."):  # "Wait... what", "1, 2, ... 10" go on
        return (following.isalpha() and not following.islower()) or following in _QUOTES
    if "\n" in space:
        return True
    return (following.isalpha() and not following.islower()) or following.isdigit() or following in _OPENERS


def _period_ends_sentence(text: str, period: int, sentence_start: int, following: str) -> bool:
    """False where the word before a period makes it an abbreviation, an initial or a list enumerator."""
    token_start = period
    limit = max(sentence_start, period - _TOKEN_LIMIT)
    while token_start > limit and not text[token_start - 1].isspace():
        token_start -= 1
    if token_start == limit > sentence_start and not text[token_start - 1].isspace():
        return True  # a long token (a URL, a path): not an abbreviation
    while token_start < period and text[token_start] in _OPENERS:
        token_start += 1
    token = text[token_start:period]
    lowered = token.lower()
    if lowered in _ABBREVIATIONS or _DOTTED.fullmatch(token):
        return False
    if lowered in _NUMBER_ABBREVIATIONS and following.isdigit():
        return False
    if len(token) == 1 and token.isupper():  # an initial: J. R. R. Tolkien
        return False
    return not (token_start == sentence_start and _ENUMERATOR.fullmatch(token))


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return None
    first = start + len(piece) - len(piece.lstrip())
    return first, first + len(stripped)


# --- over a dataset ----------------------------------------------------------------------------------


class SplitDocuments(NamedTuple):
    """What :func:`split_documents` returns: unpack it as ``dataset, num_dropped = split_documents(...)``."""

    dataset: Dataset
    """One row per kept document, with ``sentences`` and ``sentence_offsets`` columns added."""
    num_dropped: int
    """Documents dropped because they held no sentence (empty or whitespace only)."""


def split_documents(
    dataset: Dataset,
    text_column: str = "text",
    num_proc: int | None = None,
    keep_columns: bool = True,
) -> SplitDocuments:
    """Split every document of ``dataset`` into sentences, one row per document.

    Adds a ``sentences`` column (list of str) and a ``sentence_offsets`` column (list of ``[start,
    end]`` character offsets into the document's text, as :func:`sentence_spans` gives them), and
    keeps document boundaries: sentence tasks draw pairs within a document. Documents that hold no
    sentence (empty or whitespace only) are dropped, counted and logged. With ``keep_columns=False``
    only ``text_column`` and the two new columns are kept (the offsets refer to the text).

    Raises ``ValueError`` if ``text_column`` is not a column, and ``TypeError`` naming the row if a
    value in it is not a string (``None``, a number).
    """
    if text_column not in dataset.column_names:
        raise ValueError(
            f"split_documents: text column {text_column!r} not found; available columns: {dataset.column_names}"
        )
    kept = dataset.column_names if keep_columns else [text_column]
    features = Features({name: dataset.features[name] for name in kept})
    features["sentences"] = List(Value("string"))
    features["sentence_offsets"] = List(List(Value("int64"), length=2))
    if len(dataset) == 0:  # map() skips the function on an empty dataset, and so the new columns
        return SplitDocuments(Dataset.from_dict({name: [] for name in features}, features=features), 0)
    result = dataset.map(
        _split_batch,
        batched=True,
        with_indices=True,
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc,
        fn_kwargs={"text_column": text_column, "kept": kept},
        desc="Splitting sentences",
    )
    num_dropped = len(dataset) - len(result)
    logger.info("split_documents: %d documents kept, %d dropped (empty or whitespace only)", len(result), num_dropped)
    return SplitDocuments(result, num_dropped)


def _split_batch(batch: dict[str, list], indices: list[int], text_column: str, kept: list[str]) -> dict[str, list]:
    output: dict[str, list] = {name: [] for name in [*kept, "sentences", "sentence_offsets"]}
    for row, (index, text) in enumerate(zip(indices, batch[text_column])):
        if not isinstance(text, str):
            raise TypeError(
                f"split_documents: row {index} of column {text_column!r} holds {type(text).__name__} "
                f"{text!r:.60}, not a string"
            )
        spans = sentence_spans(text)
        if not spans:
            continue
        for name in kept:
            output[name].append(batch[name][row])
        output["sentences"].append([text[start:end] for start, end in spans])
        output["sentence_offsets"].append([[start, end] for start, end in spans])
    return output

"""Span sources for ERNIE knowledge masking: named entities and phrases as character spans.

ERNIE (Sun et al., 2019) masks whole units instead of single word pieces: every token of a named
entity or phrase is masked, or none of it. This module finds those units; a collator later masks
each span's tokens all-or-none. Three sources, all returning :class:`Span` character offsets:

- :class:`LexiconMatcher`: a known list of entities/phrases (a gazetteer, a knowledge-base title
  list, mined phrases). Leftmost-longest matching over word tokens with a token trie, so the cost
  is linear in the text length and independent of the lexicon size.
- :func:`capitalized_entity_spans`: English named-entity candidates from capitalized multi-word
  sequences ("New York Stock Exchange", "Guido van Rossum"), no model needed.
- :class:`PhraseMiner`: unsupervised phrases from corpus collocation statistics (normalized PMI).

:func:`char_spans_to_token_spans` then maps the character spans onto a fast tokenizer's tokens
using its ``offset_mapping``.

Word tokens, shared by the matcher and the miner: a CJK ideograph is a token on its own (the
ranges BERT's BasicTokenizer isolates), any other run of word characters is one token, and every
other non-space character (punctuation) is a token of its own. Matching on these tokens gives
word boundaries for free: "cat" never matches inside "concatenate", "Python" matches in
"(Python)," and "北京大学" matches inside "我在北京大学读书".
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

__all__ = [
    "CONNECTORS",
    "SPAN_COLUMNS",
    "LexiconMatcher",
    "Phrase",
    "PhraseMiner",
    "STOP_WORDS",
    "Span",
    "capitalized_entity_spans",
    "char_spans_to_token_spans",
    "ENTITY_KINDS",
    "PHRASE_KINDS",
    "remove_overlaps",
    "span_level",
]


class Span(NamedTuple):
    """A half-open character range ``text[start:end]`` and what it is (``"entity"``, ``"phrase"``, ...)."""

    start: int
    end: int
    kind: str


class Phrase(NamedTuple):
    """A mined phrase: its lowercased words joined by one space, its NPMI score and its corpus count."""

    text: str
    score: float
    count: int


# Span kinds and the knowledge-masking level they belong to (ERNIE 1.0: phrase-level, then
# entity-level masking). Entities: bert18's own "entity" and the label sets NER corpora use:
# CoNLL-2003 (PER, ORG, LOC, MISC), OntoNotes 5 (PERSON, NORP, FAC, ORG, GPE, LOC, PRODUCT, EVENT,
# WORK_OF_ART, LAW, LANGUAGE, DATE, TIME, PERCENT, MONEY, QUANTITY, ORDINAL, CARDINAL), the long
# forms (ORGANIZATION, LOCATION), and the People's Daily / MSRA tags (nr person, ns place, nt
# organization, nz other proper noun). Compared case-insensitively; any other kind is an error.
ENTITY_KINDS = frozenset(
    """ENTITY PER PERSON ORG ORGANIZATION ORGANISATION LOC LOCATION MISC GPE NORP FAC FACILITY PRODUCT EVENT
    WORK_OF_ART LAW LANGUAGE DATE TIME PERCENT MONEY QUANTITY ORDINAL CARDINAL NR NS NT NZ""".split()
)
PHRASE_KINDS = frozenset({"PHRASE"})


def span_level(kind: str) -> str:
    """The knowledge-masking level of a span kind: ``"phrase"`` or ``"entity"`` (see :data:`ENTITY_KINDS`).

    Raises a ``ValueError`` naming the kind for anything else, so a misspelt or unexpected label
    is never silently masked as plain words.
    """
    key = str(kind).upper()
    if key in PHRASE_KINDS:
        return "phrase"
    if key in ENTITY_KINDS:
        return "entity"
    raise ValueError(
        f"unknown span kind {kind!r}: knowledge masking takes 'phrase', 'entity' or an NER label "
        f"({', '.join(sorted(k for k in ENTITY_KINDS if k != 'ENTITY'))}, any case); rename the kind"
    )


# The columns of knowledge spans as token ranges ``[start, end)`` and their kinds, which
# ``bert18.data.prepare_pretraining_dataset`` writes (from character spans mapped through
# ``char_spans_to_token_spans``) and the knowledge-masking collator reads.
SPAN_COLUMNS = ("span_starts", "span_ends", "span_kinds")

# CJK ideographs: the code-point blocks BERT's BasicTokenizer._is_chinese_char puts in a token of
# their own (Hangul and kana are written with spaces or in runs, so they stay ordinary word characters).
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f"
)
_TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")

# A small English stop-word list: function words that neither start nor end a phrase.
STOP_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can cannot could did do does doing down during each either else etc
    few for from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just may me might more most must my myself neither no nor not now of off
    on once only or other our ours ourselves out over own per same shall she should so some such
    than that the their theirs them themselves then there these they this those through to too
    under until up upon us very via was we were what when where whether which while who whom whose
    why will with within without would yet you your yours yourself yourselves
    """.split()
)


def _tokens(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, token)`` for every word token of ``text`` (see the module docstring)."""
    return [(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(text)]


# ---------------------------------------------------------------------------------------------------
# Lexicon matching
# ---------------------------------------------------------------------------------------------------

_KIND = object()  # trie key under which a node stores the kind of the entry ending there


class LexiconMatcher:
    """Find the entries of a lexicon in text: non-overlapping, leftmost-longest, on word boundaries.

    ``entries`` is an iterable of strings (all get ``kind``) or a mapping ``entry -> kind``; an
    entry is one word or several ("New York Stock Exchange", "北京大学"). Entries are split into
    word tokens (module docstring) and stored in a trie keyed by token. Matching walks the trie
    from each text token and keeps the longest entry ending on a token boundary; after a match it
    resumes behind it, so the result is the leftmost-longest non-overlapping cover. Between the
    tokens of a match the text may hold any whitespace (line breaks, several spaces) or nothing,
    but nothing else: "New York" matches "New\\n  York", never "New, York" (and "Coca-Cola" also
    matches "Coca - Cola"). Entries that differ only in case (``str.casefold``) are the same entry
    unless ``case_sensitive``; the last one given sets the kind.

    Cost: one trie walk per text token, bounded by the longest entry, whatever the lexicon size.

    In a pipeline, pass the matcher to ``bert18.data.prepare_pretraining_dataset(..., lexicon=matcher)``,
    which maps its character spans onto tokens. To keep the matches in a column instead, store them
    as the character spans ``span_column`` reads::

        ds = ds.map(lambda row: {"spans": [s._asdict() for s in matcher.find(row["text"])]})
        rows = prepare_pretraining_dataset(ds, tokenizer, span_column="spans")
    """

    def __init__(self, entries: Iterable[str] | Mapping[str, str], case_sensitive: bool = False, kind: str = "entity"):
        self.case_sensitive = case_sensitive
        self._trie: dict = {}
        self._size = 0
        items = entries.items() if isinstance(entries, Mapping) else ((entry, kind) for entry in entries)
        for entry, entry_kind in items:
            self.add(entry, entry_kind)

    def add(self, entry: str, kind: str = "entity") -> None:
        """Add one entry (or change the kind of an existing one)."""
        keys = [self._key(token) for _, _, token in _tokens(entry)]
        if not keys:
            raise ValueError(f"lexicon entry {entry!r} has no word tokens")
        node = self._trie
        for key in keys:
            node = node.setdefault(key, {})
        self._size += _KIND not in node
        node[_KIND] = kind

    def __len__(self) -> int:
        return self._size

    def _key(self, token: str) -> str:
        return token if self.case_sensitive else token.casefold()

    def find(self, text: str) -> list[Span]:
        """All non-overlapping occurrences in ``text``, leftmost-longest, as character spans."""
        tokens = _tokens(text)
        keys = [self._key(token) for _, _, token in tokens]
        root, spans, i, n = self._trie, [], 0, len(tokens)
        while i < n:
            node = root.get(keys[i])
            if node is None:  # the common case: no entry starts with this token
                i += 1
                continue
            best_end, best_kind = -1, None
            j = i
            while True:
                if _KIND in node:
                    best_end, best_kind = j, node[_KIND]
                j += 1
                if j == n:
                    break
                node = node.get(keys[j])
                if node is None:
                    break
            if best_kind is None:
                i += 1
            else:
                spans.append(Span(tokens[i][0], tokens[best_end][1], best_kind))
                i = best_end + 1
        return spans


# ---------------------------------------------------------------------------------------------------
# Capitalized multi-word entities
# ---------------------------------------------------------------------------------------------------

# Lowercase particles allowed inside (never at either end of) a capitalized name: "Guido van
# Rossum", "Bank of America", "Leonardo da Vinci". "the" only right after "of" ("University of the
# Arts"): on its own it mostly joins a capitalized verb to a name ("Return the IP", "See the
# Differ"). "and"/"for" are left out on purpose: they would join "Alice and Bob" into one entity.
CONNECTORS = frozenset("of de da di du del della der den von van la le y bin ibn al el".split())

# A word is a run of letters and digits ("Ascii85", "Point2D", "W3C"): a span must never end inside
# one, or the tokenizer's word would be masked in part. One starting with a digit is no name word.
_WORD_RE = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
_SENTENCE_END = frozenset(".!?:*\u2022")  # "*" and "•": a bullet starts a new sentence too
_OPENERS = frozenset("\"'([{\u201c\u2018")


def _is_sentence_start(text: str, start: int) -> bool:
    """Whether the word at ``start`` begins the text, a sentence, a paragraph or a bullet item."""
    i = start
    while i > 0 and (text[i - 1].isspace() or text[i - 1] in _OPENERS):
        i -= 1
    return i == 0 or text[i - 1] in _SENTENCE_END or text.count("\n", i, start) >= 2


def capitalized_entity_spans(text: str, min_words: int = 2, common_words: Container[str] = frozenset()) -> list[Span]:
    """English named-entity candidates: runs of capitalized words, ``kind="entity"``.

    A run is capitalized words (first letter uppercase: "Python", "McDonald", "IBM") separated by
    exactly one space (letters and digits make one word: "Ascii85", "Point2D"); anything else ends it:
    punctuation, a number, several spaces (tables, aligned
    columns) and line breaks (lists, headings and tables put capitalized words at line ends far
    more often than wrapped prose splits a name across lines). Lowercase :data:`CONNECTORS`
    ("van", "de", "of", "of the", ...) may sit inside a run, never at its ends; "the" alone is not
    one (so "Alexander the Great" is missed and "Return the IP" is not taken). A possessive ends
    the run and stays outside it ("Guido van Rossum's" -> "Guido van Rossum"). ``min_words``
    counts the capitalized words only ("Bank of America" has 2).

    Heuristics, each a deliberate choice:

    - A capitalized stop word ("The", "If", "When", "A", "This") is capitalized by grammar: it
      splits a run and is never part of an entity, so "When Python Starts" gives "Python Starts"
      and "The Hague" gives "Hague" (one word, below the default ``min_words``).
    - Sentence-initial words are capitalized by grammar too. When a run begins a sentence (text
      start, after ``.!?:``, a bullet or a blank line), its first word is dropped if it is known as
      a common word: it appears in lowercase in the same text, or in ``common_words`` (lowercase
      forms; pass a corpus vocabulary to catch "Return True" in a text that never says "return").
      Otherwise it is kept ("Guido van Rossum wrote ..."). A sentence-initial capitalized word
      standing alone ("Python is ...") is never an entity, whatever ``min_words``.
    - All-caps runs ("NOTE THAT", "WARNING SIGN") are shouting, headings or constants, not
      entities: a run whose capitalized words are all upper case is skipped. An acronym next to
      ordinary capitalized words stays ("IBM Research", "NASA Space Center").
    - Initials with a period ("J. R. R. Tolkien") are not joined: the period ends the run.
    """
    if min_words < 1:
        raise ValueError(f"min_words must be >= 1, got {min_words}")
    words = [(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text)]
    lowercase_words = {word for _, _, word in words if word.islower()}
    spans: list[Span] = []
    run: list[tuple[int, int, str]] = []

    def close_run() -> None:
        while run and run[-1][2] in CONNECTORS:  # connectors never end a name
            run.pop()
        if run:
            _emit_run(text, run, lowercase_words, common_words, min_words, spans)
        run.clear()

    for start, end, word in words:
        possessive = len(word) > 2 and word.endswith(("'s", "\u2019s"))
        if possessive:
            end, word = end - 2, word[:-2]
        if run and text[run[-1][1] : start] not in (" ", "\u00a0"):  # one space, nothing else
            close_run()
        name_word = word[0].isupper() and word.lower() not in STOP_WORDS  # a digit is not upper case
        connector = bool(run) and (word in CONNECTORS or (word == "the" and run[-1][2] == "of"))
        if name_word or connector:
            run.append((start, end, word))
        else:
            close_run()
        if possessive:
            close_run()
    close_run()
    return spans


def _emit_run(
    text: str,
    run: list[tuple[int, int, str]],
    lowercase_words: set[str],
    common_words: Container[str],
    min_words: int,
    spans: list[Span],
) -> None:
    """Apply the sentence-start and all-caps rules to one run and append its span, if any is left."""
    if _is_sentence_start(text, run[0][0]):
        first = run[0][2].lower()
        if first in lowercase_words or first in common_words:
            run = run[1:]
            while run and run[0][2] in CONNECTORS:  # connectors never start a name either
                run = run[1:]
        elif len(run) == 1:
            return
    capitalized = [word for _, _, word in run if word[0].isupper()]
    if len(capitalized) < min_words or all(word.isupper() for word in capitalized):
        return
    spans.append(Span(run[0][0], run[-1][1], "entity"))


# ---------------------------------------------------------------------------------------------------
# Phrase mining
# ---------------------------------------------------------------------------------------------------


# Phrase mining reads words of letters, with inner hyphens and apostrophes ("file-like", "don't"),
# and CJK ideographs. Anything else ends a segment: punctuation, and whole word-character runs that
# hold a digit or "_" (numbers, snake_case identifiers: "expr_context ctx" yields no "context ctx").
_MINER_TOKEN_RE = re.compile(rf"([{_CJK}])|([^\W{_CJK}]+(?:['\u2019-][^\W{_CJK}]+)*)|\S")
_LETTERS_RE = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")


def _segments(text: str) -> Iterator[list[str]]:
    """Lowercased word runs of ``text`` that cross no punctuation, number, identifier or blank line."""
    segment: list[str] = []
    previous_end = 0
    for match in _MINER_TOKEN_RE.finditer(text):
        word = match.group(1) or match.group(2)
        if word is not None and match.group(2) and not _LETTERS_RE.fullmatch(word):
            word = None
        if segment and (word is None or "\n\n" in text[previous_end : match.start()]):
            yield segment
            segment = []
        if word is not None:
            segment.append(word.lower())
        previous_end = match.end()
    if segment:
        yield segment


_MISSING = object()  # zip_longest's filler: texts and word lists of different lengths


def _word_segments(text: str, words: Sequence[Sequence[int]]) -> Iterator[list[str]]:
    """Lowercased runs of the given words (``[start, end]`` character spans, e.g. a Chinese segmenter's or
    gold annotation's) that cross no punctuation, number, identifier or blank line, as ``_segments``
    reads them: a word made of anything but letters (CJK ideographs included) ends the run, and so does
    unlisted text between two words other than spaces on one line."""
    segment: list[str] = []
    previous_end = None
    for start, end in words:
        word, gap = text[start:end], text[previous_end:start] if previous_end is not None else ""
        previous_end = end
        if segment and (gap.strip() or "\n\n" in gap):
            yield segment
            segment = []
        if _LETTERS_RE.fullmatch(word):
            segment.append(word.lower())
        elif segment:
            yield segment
            segment = []
    if segment:
        yield segment


class PhraseMiner:
    """Unsupervised phrases from collocation statistics: n-grams whose words occur together far more than chance.

    :meth:`fit` counts lowercased word n-grams (n = 1 .. ``max_n``) inside segments that cross
    no punctuation, number, identifier or blank line. An n-gram with count >= ``min_count`` is
    scored by normalized pointwise mutual information (Bouma, 2009),

        NPMI(x, y) = log(p(x, y) / (p(x) p(y))) / -log p(x, y),

    which is bounded in [-1, 1]: 1 when x and y only ever occur together, 0 when independent.
    Probabilities are counts over the number of words N, whatever the n-gram length: p(x) = c(x) / N
    (an n-gram occurs at most as often as its parts, so the bound holds for every split).
    A bigram is NPMI(w1, w2). A longer n-gram is scored by the minimum NPMI over its binary
    splits (for a trigram: min(NPMI(w1, w2 w3), NPMI(w1 w2, w3))), so every way of cutting it
    must be cohesive: "file descriptor is" fails because "file descriptor" + "is" is not.

    Phrases may contain stop words inside ("point of view") but may neither start nor end with
    one (:data:`STOP_WORDS`), which also excludes stop-word-only n-grams such as "of the". Those
    with score >= ``threshold`` make :attr:`phrases`, sorted by score, then count, then text, so
    the result is deterministic. Counting keeps every n-gram in memory (fine for millions of
    words; shard or prune for bigger corpora).
    """

    def __init__(
        self, max_n: int = 3, min_count: int = 5, threshold: float = 0.5, stop_words: Iterable[str] = STOP_WORDS
    ):
        if max_n < 2:
            raise ValueError(f"max_n must be >= 2 (phrases have at least two words), got {max_n}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is an NPMI, in [-1, 1]; got {threshold}")
        self.max_n = max_n
        self.min_count = min_count
        self.threshold = threshold
        self.stop_words = frozenset(stop_words)
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.num_words = 0
        self._phrases: list[Phrase] | None = None

    def fit(self, texts: Iterable[str], words: Iterable[Sequence[Sequence[int]]] | None = None) -> PhraseMiner:
        """Count the n-grams of ``texts`` (replacing earlier counts) and score them.

        ``words``, one list of ``[start, end]`` character spans per text, gives the words when the text
        does not show them (Chinese: from gold annotation or a segmenter, as ``word_column``); the
        phrases are then runs of those words (中国 政府), not of single characters."""
        self.counts.clear()
        self.num_words = 0
        pairs = (
            itertools.zip_longest(texts, words, fillvalue=_MISSING)
            if words is not None
            else ((text, None) for text in texts)
        )
        for text, text_words in pairs:
            if text is _MISSING or text_words is _MISSING:
                raise ValueError("PhraseMiner.fit: texts and words differ in length (one word list per text)")
            segments = _segments(text) if text_words is None else _word_segments(text, text_words)
            for segment in segments:
                self.num_words += len(segment)
                for n in range(1, self.max_n + 1):
                    self.counts.update(tuple(segment[i : i + n]) for i in range(len(segment) - n + 1))
        self._phrases = self._score()
        return self

    def npmi(self, left: tuple[str, ...], right: tuple[str, ...]) -> float:
        """NPMI of the n-gram ``left + right`` split into ``left`` and ``right`` (counts from :meth:`fit`)."""
        total = self.num_words
        joint = self.counts[left + right] / total
        if joint == 0:
            return -1.0
        if joint == 1:
            return 1.0
        p_left = self.counts[left] / total
        p_right = self.counts[right] / total
        return math.log(joint / (p_left * p_right)) / -math.log(joint)

    def score(self, gram: tuple[str, ...]) -> float:
        """The n-gram's score: the minimum NPMI over its binary splits."""
        return min(self.npmi(gram[:k], gram[k:]) for k in range(1, len(gram)))

    def _score(self) -> list[Phrase]:
        phrases = []
        for gram, count in self.counts.items():
            if len(gram) < 2 or count < self.min_count:
                continue
            if gram[0] in self.stop_words or gram[-1] in self.stop_words:
                continue
            score = self.score(gram)
            if score >= self.threshold:
                phrases.append(Phrase(" ".join(gram), score, count))
        phrases.sort(key=lambda phrase: (-phrase.score, -phrase.count, phrase.text))
        return phrases

    @property
    def phrases(self) -> list[Phrase]:
        """``(phrase, score, count)`` for every phrase found, best score first."""
        if self._phrases is None:
            raise RuntimeError("PhraseMiner has not been fitted: call .fit(texts) first")
        return self._phrases

    def matcher(self, kind: str = "phrase", top_k: int | None = None) -> LexiconMatcher:
        """A case-insensitive :class:`LexiconMatcher` over the (``top_k`` best) phrases."""
        return LexiconMatcher((phrase.text for phrase in self.phrases[:top_k]), kind=kind)


# ---------------------------------------------------------------------------------------------------
# Character spans -> token spans
# ---------------------------------------------------------------------------------------------------


def remove_overlaps(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Keep a non-overlapping subset, longest first (ties: earlier start, then input order), sorted by start.

    Works on character spans (to combine sources, e.g. lexicon entities and mined phrases) as on
    token spans. Spans that only touch (``a.end == b.start``) do not overlap.
    """
    by_length = sorted(enumerate(spans), key=lambda item: (item[1][0] - item[1][1], item[1][0], item[0]))
    kept_starts: list[int] = []  # sorted starts of the kept spans, and their ends in the same order
    kept_ends: list[int] = []
    kept = []
    for _, span in by_length:
        start, end = span[0], span[1]
        i = bisect.bisect_right(kept_starts, start)
        if (i > 0 and kept_ends[i - 1] > start) or (i < len(kept_starts) and kept_starts[i] < end):
            continue
        kept_starts.insert(i, start)
        kept_ends.insert(i, end)
        kept.append(span)
    return sorted(kept, key=lambda span: span[0])


def char_spans_to_token_spans(
    spans: Iterable[tuple[int, int, str]],
    offsets: Sequence[tuple[int, int]],
    text_length: int | None = None,
    return_dropped: bool = False,
) -> list[tuple[int, int, str]] | tuple[list[tuple[int, int, str]], int]:
    """Map character spans onto token ranges ``(tok_start, tok_end, kind)``, ``tok_end`` exclusive.

    ``offsets`` is one sequence's ``offset_mapping`` from a fast tokenizer (a list, or a tensor /
    array of shape [L, 2]): ``(char_start, char_end)`` per token, special tokens ``(0, 0)``. For a
    pair of texts, pass each text's own slice of offsets (see ``sequence_ids()``): offsets restart
    at 0 in the second text.

    - A token belongs to a span if it overlaps it (shares at least one character); zero-width
      tokens (special tokens) never belong to any span.
    - A span with ``start >= end``, ``start < 0`` or (when ``text_length`` is given) ``end >
      text_length`` is a caller bug: ``ValueError`` naming the span.
    - Truncation: a span that lies entirely in text cut away by ``max_length`` (it overlaps no
      token) is dropped; a span cut in the middle keeps the tokens that survived, which the
      collator still masks as one unit. A span that overlaps no token for another reason (it covers
      only whitespace or characters the tokenizer discards) is dropped too.
    - Overlaps: when two spans share a token, the one with more tokens is kept (ties: the earlier
      one) and the other dropped, so each token belongs to at most one unit (:func:`remove_overlaps`).

    Returns the token spans sorted by ``tok_start``; with ``return_dropped=True`` a pair
    ``(token_spans, number_of_spans_dropped)`` (truncated, empty after mapping or overlapping).
    """
    if hasattr(offsets, "tolist"):
        offsets = offsets.tolist()
    token_index, starts, ends = [], [], []
    for i, (start, end) in enumerate(offsets):
        if end > start:
            token_index.append(i)
            starts.append(start)
            ends.append(end)

    mapped: list[tuple[int, int, str]] = []
    spans = list(spans)
    for span in spans:
        start, end, kind = span
        if start < 0 or start >= end:
            raise ValueError(f"invalid span {span!r}: need 0 <= start < end")
        if text_length is not None and end > text_length:
            raise ValueError(f"span {span!r} ends past the end of the text (length {text_length})")
        first = bisect.bisect_right(ends, start)  # first token ending after the span starts
        last = bisect.bisect_left(starts, end)  # first token starting at or after the span's end
        if first < last:
            mapped.append((token_index[first], token_index[last - 1] + 1, kind))
    kept = remove_overlaps(mapped)
    return (kept, len(spans) - len(kept)) if return_dropped else kept

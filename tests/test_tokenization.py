"""Vocabulary training (bert18.tokenization) on real English text, against the real BERT tokenizer.

The corpus is the documentation of ~100 standard-library modules (their docstrings and those of
their public classes and functions): about 0.4 MB of real English that ships with every Python.
"""

import importlib
import inspect
import random
import warnings

import datasets
import pytest
import transformers

import bert18
from bert18 import tokenization
from bert18.cli import main
from bert18.tokenization import BpeMerge, apply_bpe, check_vocab_size, learn_bpe, train_tokenizer

STDLIB_MODULES = """
abc argparse ast asyncio base64 bisect calendar cmd codecs collections colorsys configparser contextlib copy csv
dataclasses datetime decimal difflib dis email enum filecmp fileinput fnmatch fractions ftplib functools getopt
gettext glob gzip hashlib heapq hmac html http.client imaplib inspect io ipaddress itertools json keyword linecache
locale logging lzma mailbox math mimetypes numbers operator optparse os pathlib pickle pkgutil platform plistlib
poplib pprint queue quopri random re reprlib sched secrets selectors shelve shlex shutil signal smtplib socket
socketserver sqlite3 ssl stat statistics string struct subprocess tarfile tempfile textwrap threading timeit token
tokenize trace traceback types typing unittest urllib.parse urllib.request uuid warnings wave weakref
xml.dom.minidom zipfile zlib
""".split()

TRICKY = (
    "Héllo, WÖRLD! Naïve café—déjà vu… I don't (x+y)=z costs $5.00; e-mail\tTAB\u00a0nbsp "
    "中文字符\uff0c测试。日本語のテキスト 한국어 Ångström \ufb01 ligature"
)


def stdlib_docs(modules=STDLIB_MODULES) -> list[str]:
    """The docstrings of each module and of its public classes and functions, in a fixed order."""
    texts = []
    with warnings.catch_warnings():  # getattr(typing, "io") and friends warn
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in modules:
            texts += _module_docs(name)
    return texts


def _module_docs(name: str) -> list[str]:
    try:
        module = importlib.import_module(name)
    except ImportError:  # a module a given Python build lacks (e.g. no _ssl)
        return []
    members = [getattr(module, attr, None) for attr in sorted(dir(module)) if not attr.startswith("_")]
    public = [obj for obj in members if inspect.isclass(obj) or inspect.isfunction(obj)]
    texts = []
    for obj in [module, *(obj for obj in public if getattr(obj, "__module__", None) == module.__name__)]:
        doc = inspect.getdoc(obj)
        if doc:
            texts.append(doc)
    return texts


@pytest.fixture(scope="module")
def docs() -> list[str]:
    texts = stdlib_docs()
    assert len(texts) > 1000 and sum(map(len, texts)) > 200_000
    return texts


@pytest.fixture(scope="module")
def wordpiece(docs):
    return train_tokenizer(docs, "wordpiece", vocab_size=2000, show_progress=False)


def words_of(tokenizer, text: str) -> list[str]:
    """The trained tokenizer's own normalization + pre-tokenization of ``text``: its words."""
    backend = tokenizer.backend_tokenizer
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text))]


def sample(docs, n=150, seed=0):
    return random.Random(seed).sample(docs, n)


# --------------------------------------------------------------------------------------------------
# WordPiece, BERT style
# --------------------------------------------------------------------------------------------------


def test_wordpiece_vocabulary_size_special_ids_and_continuations(wordpiece):
    assert isinstance(wordpiece, transformers.PreTrainedTokenizerFast)
    assert 1900 <= len(wordpiece) <= 2000
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert [wordpiece.convert_tokens_to_ids(token) for token in specials] == [0, 1, 2, 3, 4]
    assert (wordpiece.pad_token_id, wordpiece.unk_token_id, wordpiece.cls_token_id) == (0, 1, 2)
    assert (wordpiece.sep_token_id, wordpiece.mask_token_id) == (3, 4)
    assert wordpiece.model_max_length == 512
    vocab = wordpiece.get_vocab()
    continuations = [token for token in vocab if token.startswith("##")]
    assert len(continuations) > 300
    assert all(token == token.lower() for token in vocab if not token.startswith("["))  # uncased
    for common in ("the", "return", "file", "string"):
        assert common in vocab


def test_wordpiece_round_trip_on_the_corpus(wordpiece, docs):
    """decode(encode(text)) gives back the normalized text, word for word, with no [UNK]."""
    for text in sample(docs):
        ids = wordpiece(text, add_special_tokens=False)["input_ids"]
        assert wordpiece.unk_token_id not in ids
        decoded = wordpiece.decode(ids)
        assert words_of(wordpiece, decoded) == words_of(wordpiece, text)
        for word in words_of(wordpiece, text)[:40]:
            assert wordpiece.convert_tokens_to_string(wordpiece.tokenize(word)) == word


def test_wordpiece_splits_rare_words_into_pieces_not_unk(wordpiece):
    for word in ("antidisestablishmentarianism", "pneumonoultramicroscopic", "serializations", "unfrobnicated"):
        assert word not in wordpiece.get_vocab()
        pieces = wordpiece.tokenize(word)
        assert len(pieces) > 1 and "[UNK]" not in pieces
        assert not pieces[0].startswith("##") and all(piece.startswith("##") for piece in pieces[1:])
        assert wordpiece.convert_tokens_to_string(pieces) == word
    assert wordpiece.tokenize("Ⓠ") == ["[UNK]"]  # a character never seen in training


def test_wordpiece_template_and_token_type_ids(wordpiece):
    encoding = wordpiece("Return the value.", "Raise an error.")
    tokens = wordpiece.convert_ids_to_tokens(encoding["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and tokens[-1] == "[SEP]"
    first_sep = tokens.index("[SEP]")
    assert tokens[1:first_sep] == wordpiece.tokenize("Return the value.")
    assert tokens[first_sep + 1 : -1] == wordpiece.tokenize("Raise an error.")
    assert encoding["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    single = wordpiece("Return the value.")
    assert set(single["token_type_ids"]) == {0}
    masked = wordpiece("the [MASK] value", add_special_tokens=False)["input_ids"]
    assert masked[1] == wordpiece.mask_token_id


def test_save_and_auto_tokenizer_reload_give_identical_ids(wordpiece, docs, tmp_path):
    wordpiece.save_pretrained(tmp_path)
    reloaded = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == len(wordpiece) and reloaded.model_max_length == 512
    assert reloaded.all_special_tokens == wordpiece.all_special_tokens
    texts = [*sample(docs, 50, seed=1), TRICKY]
    assert reloaded(texts)["input_ids"] == wordpiece(texts)["input_ids"]
    pair = reloaded("one", "two")
    assert pair == wordpiece("one", "two")


def test_pre_tokenization_matches_the_real_bert_uncased_tokenizer(wordpiece, minilm_path):
    """Same normalization (lowercase, accents, CJK spacing, control chars) and punctuation split as BERT."""
    bert = transformers.AutoTokenizer.from_pretrained(minilm_path)
    ours, theirs = wordpiece.backend_tokenizer, bert.backend_tokenizer
    for text in (TRICKY, "Crème brûlée à la mode!!", "北京大学(Peking University)在1898年成立", "a\x00b\u200bc\r\nd"):
        normalized = ours.normalizer.normalize_str(text)
        assert normalized == theirs.normalizer.normalize_str(text)
        assert ours.pre_tokenizer.pre_tokenize_str(normalized) == theirs.pre_tokenizer.pre_tokenize_str(normalized)
    words = words_of(wordpiece, TRICKY)
    assert words[:4] == ["hello", ",", "world", "!"]
    assert "cafe" in words and "—" in words and "中" in words and "文" in words


def test_dataset_list_and_file_inputs_train_the_same_vocabulary(docs, tmp_path):
    """The three input routes feed the trainer the same text: byte-level BPE (whose training is
    deterministic, unlike WordPiece's in tokenizers 0.23) comes out identical, ids and merges."""
    texts = docs[:300]
    options = {"algorithm": "bpe", "special_tokens_style": "roberta", "vocab_size": 600, "show_progress": False}
    from_list = train_tokenizer(texts, **options)
    from_iterator = train_tokenizer(iter(texts), **options)
    from_dataset = train_tokenizer(datasets.Dataset.from_dict({"text": texts}), **options)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(texts), encoding="utf-8")
    from_file = train_tokenizer([str(path)], **options)
    lines = [line for text in texts for line in text.split("\n")]
    from_lines = train_tokenizer(lines, **options)
    assert len(from_list) == 600
    assert from_list.get_vocab() == from_iterator.get_vocab() == from_dataset.get_vocab()
    assert from_file.backend_tokenizer.to_str() == from_lines.backend_tokenizer.to_str()
    renamed = datasets.Dataset.from_dict({"body": texts})
    assert train_tokenizer(renamed, text_column="body", **options).get_vocab() == from_list.get_vocab()
    with pytest.raises(ValueError, match="no 'text' column"):
        train_tokenizer(renamed, **options)


# --------------------------------------------------------------------------------------------------
# Byte-level BPE (RoBERTa style), char-level BPE, Unigram
# --------------------------------------------------------------------------------------------------


def test_byte_level_bpe_never_unk_and_round_trips_any_unicode(docs):
    tokenizer = train_tokenizer(
        docs, "bpe", vocab_size=1000, lowercase=False, special_tokens_style="roberta", show_progress=False
    )
    assert 900 <= len(tokenizer) <= 1000
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 4]
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token_id) == ("<s>", "</s>", 1)
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(0x20, 0x3000)] + ["\t", "\n", "😀", "👩‍👩‍👧", "🇫🇷", "\U0010fffd", "e\u0301"]
    texts = [TRICKY, "Emoji 😀👍🏽 and \U0001d518\U0001d52b\U0001d526 math letters", "  two  spaces\tand\na newline "]
    texts += sample(docs, 30)
    texts += ["".join(rng.choice(alphabet) for _ in range(60)) for _ in range(30)]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    encoding = tokenizer("first text", "second text")
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    a, b = tokenizer.tokenize("first text"), tokenizer.tokenize("second text")
    assert tokens == ["<s>", *a, "</s>", "</s>", *b, "</s>"]
    assert "token_type_ids" not in encoding
    assert tokenizer("a <mask> b")["input_ids"].count(tokenizer.mask_token_id) == 1


def test_char_level_bpe_uses_the_end_of_word_suffix(docs):
    tokenizer = train_tokenizer(docs, "bpe", vocab_size=1000, show_progress=False)
    assert len(tokenizer) <= 1000
    assert tokenizer.tokenize("the returns")[0] == "the</w>"
    pieces = tokenizer.tokenize("unfrobnicated")
    assert len(pieces) > 1 and pieces[-1].endswith("</w>") and not any(p.endswith("</w>") for p in pieces[:-1])
    assert tokenizer.decode(tokenizer("Return the value.")["input_ids"], skip_special_tokens=True) == (
        "return the value ."  # BPEDecoder: words joined by spaces, punctuation is its own word
    )


def test_unigram_round_trip_and_metaspace_pieces(docs):
    tokenizer = train_tokenizer(docs, "unigram", vocab_size=1000, show_progress=False)
    assert len(tokenizer) <= 1000
    vocab = tokenizer.get_vocab()
    assert sum(token.startswith("▁") for token in vocab) > 200
    assert tokenizer.cls_token_id == 2 and tokenizer.sep_token_id == 3
    for text in sample(docs, 60, seed=2):
        text = " ".join(text.split())
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == tokenizer.backend_tokenizer.normalizer.normalize_str(text)
    assert tokenizer.tokenize("Return the value")[0].startswith("▁")
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("one", "two")["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2


def test_unigram_roberta_style_is_xlmr_like():
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 30
    tokenizer = train_tokenizer(texts, "unigram", vocab_size=60, special_tokens_style="roberta", show_progress=False)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the cat", "a dog")["input_ids"])
    assert tokens[0] == "<s>" and tokens.count("</s>") == 3 and tokens[-1] == "</s>"
    assert tokenizer.decode(tokenizer("the cat sat")["input_ids"], skip_special_tokens=True) == "the cat sat"


# --------------------------------------------------------------------------------------------------
# Chinese
# --------------------------------------------------------------------------------------------------

CHINESE = [
    "自然语言处理是人工智能的一个分支。",
    "我们用自然语言处理技术分析文本。",
    "BERT 在自然语言处理任务上表现很好。",
] * 20


@pytest.mark.parametrize(
    ("algorithm", "style"), [("wordpiece", "bert"), ("bpe", "bert"), ("bpe", "roberta"), ("unigram", "bert")]
)
def test_each_cjk_character_is_its_own_pre_token(algorithm, style):
    tokenizer = train_tokenizer(
        CHINESE, algorithm, vocab_size=300, special_tokens_style=style, min_frequency=1, show_progress=False
    )
    backend = tokenizer.backend_tokenizer
    text = "自然语言处理很好"
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    pieces = [piece for piece, _ in backend.pre_tokenizer.pre_tokenize_str(normalized) if piece not in ("▁", "Ġ")]
    assert len(pieces) == len(text)
    if style == "bert":  # the learned vocabulary has no multi-character CJK token either
        tokens = [t.replace("</w>", "").replace("▁", "") for t in tokenizer.tokenize(text)]
        assert [t for t in tokens if t] == list(text)


def test_split_cjk_false_learns_multi_character_words():
    tokenizer = train_tokenizer(CHINESE, vocab_size=300, split_cjk=False, min_frequency=1, show_progress=False)
    assert any(len(token) > 2 and "\u4e00" <= token[0] <= "\u9fff" for token in tokenizer.get_vocab())


# --------------------------------------------------------------------------------------------------
# learn_bpe: the seed's worked example
# --------------------------------------------------------------------------------------------------

SEED_WORDS = {"lower": 2, "newest": 6, "widest": 3, "low": 5}
# The article's trace: (pair, frequency, vocabulary size after the merge), 10 symbols -> 18.
SEED_TRACE = [
    (("s", "t"), 9, 11),
    (("e", "st"), 9, 12),
    (("est", "</w>"), 9, 13),
    (("l", "o"), 7, 14),
    (("lo", "w"), 7, 15),
    (("n", "e"), 6, 16),
    (("w", "est</w>"), 6, 17),
    (("ne", "west</w>"), 6, 18),
]
SEED_FINAL_VOCAB = ["l", "o", "w", "e", "r", "n", "s", "t", "i", "d",
                    "st", "est", "est</w>", "lo", "low", "ne", "west</w>", "newest</w>"]  # fmt: skip


def seed_choice(tied):
    """Break ties as the article did: its next merge, which must be among the tied pairs."""
    return next(pair for pair, _, _ in SEED_TRACE if pair in tied)


def test_learn_bpe_reproduces_the_seed_example_exactly():
    merges = learn_bpe(SEED_WORDS, 8, tie_break=seed_choice)
    assert merges == [BpeMerge(*step) for step in SEED_TRACE]
    assert [tuple(m) for m in merges] == SEED_TRACE
    initial = sorted(set("".join(SEED_WORDS)))
    assert len(initial) == 10 == merges[0].vocab_size - 1
    assert sorted(initial + [m.symbol for m in merges]) == sorted(SEED_FINAL_VOCAB)
    assert [apply_bpe(word, merges) for word in SEED_WORDS] == [
        ["low", "e", "r", "</w>"],
        ["newest</w>"],
        ["w", "i", "d", "est</w>"],
        ["low", "</w>"],
    ]


def test_seed_example_ties():
    """Five of the eight steps are ties; the seed's pick is always one of the tied pairs."""
    seen = []
    learn_bpe(SEED_WORDS, 8, tie_break=lambda tied: seen.append(tied) or seed_choice(tied))
    assert [i for i, tied in enumerate(seen, 1) if len(tied) > 1] == [1, 2, 4, 6, 7]
    assert seen[0] == [("e", "s"), ("s", "t"), ("t", "</w>")]


def test_learn_bpe_tie_breaking_is_deterministic():
    merges = learn_bpe(SEED_WORDS, 8)  # default: first pair seen, words in dict order, left to right
    assert [m.pair for m in merges] == [
        ("e", "s"),
        ("es", "t"),
        ("est", "</w>"),
        ("l", "o"),
        ("lo", "w"),
        ("n", "e"),
        ("ne", "w"),
        ("new", "est</w>"),
    ]
    # the ties only change which pair wins, never the frequencies or the vocabulary sizes
    assert [(m.frequency, m.vocab_size) for m in merges] == [(f, n) for _, f, n in SEED_TRACE]
    assert learn_bpe(SEED_WORDS, 8) == merges
    reordered = dict(reversed(SEED_WORDS.items()))
    lexicographic = learn_bpe(SEED_WORDS, 8, tie_break="lexicographic")
    assert learn_bpe(reordered, 8, tie_break="lexicographic") == lexicographic
    assert [m.pair for m in lexicographic][5:] == [("e", "w"), ("ew", "est</w>"), ("n", "ewest</w>")]
    with pytest.raises(ValueError, match="not one of the tied pairs"):
        learn_bpe(SEED_WORDS, 1, tie_break=lambda tied: ("l", "o"))  # (l, o) has 7, the top is 9


def test_learn_bpe_stops_when_no_pair_repeats():
    merges = learn_bpe(SEED_WORDS, 100)
    assert merges[-1].frequency >= 2 and len(merges) < 100
    assert learn_bpe({"ab": 1}, 5) == []


def test_apply_bpe_segments_a_new_word():
    for merges in (learn_bpe(SEED_WORDS, 8, tie_break=seed_choice), learn_bpe(SEED_WORDS, 8)):
        assert apply_bpe("lowest", merges) == ["low", "est</w>"]
        assert apply_bpe("lowest", [m.pair for m in merges]) == ["low", "est</w>"]
    seed = learn_bpe(SEED_WORDS, 8, tie_break=seed_choice)
    assert apply_bpe("newer", seed) == ["ne", "w", "e", "r", "</w>"]
    assert apply_bpe("zest", seed) == ["z", "est</w>"]  # unseen "z" stays a symbol


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_empty_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer([], show_progress=False)
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer(iter([]), show_progress=False)
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer(["", "   "], show_progress=False)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        train_tokenizer([empty], show_progress=False)


def test_bad_files_are_named(tmp_path, monkeypatch):
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        train_tokenizer([str(missing)], show_progress=False)
    good = tmp_path / "good.txt"
    good.write_text("some text\n" * 10)
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        train_tokenizer([good, missing], show_progress=False)
    binary = tmp_path / "weights.txt"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary\x00" * 10)
    with pytest.raises(ValueError, match=r"weights\.txt.*binary"):
        train_tokenizer([good, binary], show_progress=False)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("un café crème\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8.*0xe9 at offset 6"):
        train_tokenizer([latin1], show_progress=False)
    split = tmp_path / "split.txt"
    split.write_bytes("añb".encode() + b"\xff rest")  # bytes: a, ñ (0xc3 0xb1), b, then 0xff at offset 4
    monkeypatch.setattr(tokenization, "_CHUNK_BYTES", 2)  # "ñ" straddles a chunk boundary
    with pytest.raises(ValueError, match=r"split\.txt is not UTF-8.*0xff at offset 4"):
        train_tokenizer([split], show_progress=False)
    with pytest.raises(TypeError, match="item 1 is int"):
        train_tokenizer(iter(["text", 3]), show_progress=False)


def test_vocab_size_too_small_and_unsupported_combinations(docs):
    with pytest.raises(ValueError, match=r"too small.*special tokens"):
        train_tokenizer(docs[:10], vocab_size=5, show_progress=False)
    with pytest.raises(ValueError, match="256 byte"):
        train_tokenizer(docs[:10], "bpe", vocab_size=200, special_tokens_style="roberta", show_progress=False)
    with pytest.raises(ValueError, match="alphabet"):
        train_tokenizer(docs[:200], vocab_size=60, show_progress=False)
    with pytest.raises(ValueError, match="byte-level"):
        train_tokenizer(docs[:10], "wordpiece", special_tokens_style="roberta", show_progress=False)
    with pytest.raises(ValueError, match="unknown algorithm"):
        train_tokenizer(docs[:10], "sentencepiece", show_progress=False)


def test_check_vocab_size_against_the_model_config(wordpiece):
    size = len(wordpiece)
    with pytest.raises(ValueError, match=rf"{size} token ids.*vocab_size=1000"):
        check_vocab_size(wordpiece, bert18.Bert18Config(vocab_size=1000))
    assert check_vocab_size(wordpiece, bert18.Bert18Config(vocab_size=size)) == 0
    assert check_vocab_size(wordpiece, bert18.Bert18Config(vocab_size=2048)) == 2048 - size


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_cli_train_tokenizer_writes_a_loadable_folder(docs, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(docs[:400]), encoding="utf-8")
    output = tmp_path / "tok"
    assert main(["train-tokenizer", str(corpus), "--vocab-size", "500", "--output", str(output), "--quiet"]) == 0
    assert "trained a wordpiece vocabulary" in capsys.readouterr().out
    tokenizer = transformers.AutoTokenizer.from_pretrained(output)
    assert len(tokenizer) <= 500 and tokenizer.cls_token == "[CLS]"
    assert tokenizer.convert_ids_to_tokens(tokenizer("Return")["input_ids"])[0] == "[CLS]"

    cased = tmp_path / "cased"
    argv = ["train-tokenizer", str(corpus), "--algorithm", "bpe", "--style", "roberta", "--no-lowercase",
            "--vocab-size", "400", "--output", str(cased), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    roberta = transformers.AutoTokenizer.from_pretrained(cased)
    assert roberta.decode(roberta("Return None")["input_ids"], skip_special_tokens=True) == "Return None"

    assert main(["train-tokenizer", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "x"), "--quiet"]) == 2
    assert "nope.txt" in capsys.readouterr().err

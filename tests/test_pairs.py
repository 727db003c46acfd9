"""Sentence-pair examples (NSP, SOP, sentence distance, token-document relation, capitalization).

Built on the real built-in corpus and the real MiniLM WordPiece tokenizer. References: the tokenizer's
own pair layout (the Python ``BertTokenizerLegacy`` on the same vocabulary), the document rows
(every segment is located in them by its tokens), and brute-force label computations from those rows.
"""

import collections
import json
import pickle
import subprocess
import sys
import time

import datasets
import numpy as np
import pytest
from transformers.models.bert import BertTokenizerLegacy

from bert18 import Bert18Config
from bert18.data import prepare_pretraining_dataset
from bert18.data.pairs import SentencePairDataset
from bert18.tokenization import train_tokenizer

MAX_LENGTH = 128
TOKEN_TASKS = ["capitalization", "token_document_relation"]
LABELS = {"nsp": "next_sentence_label", "sop": "sentence_order_label", "sentence_distance": "sentence_distance_label"}
FIVE_SENTENCES = "Alpha is first. Beta is second. Gamma is third. Delta is fourth. Epsilon is fifth."


@pytest.fixture(scope="module")
def documents(corpus, tokenizer):
    tasks = ["mlm", "sentence_distance", *TOKEN_TASKS]
    return prepare_pretraining_dataset(corpus, tokenizer, tasks, max_length=MAX_LENGTH, capitalized_entities=True)


@pytest.fixture(scope="module")
def rows(documents):
    return Rows(documents)


@pytest.fixture(scope="module")
def pair_datasets(documents, tokenizer):
    return {
        task: SentencePairDataset(documents, tokenizer, ["mlm", task, *TOKEN_TASKS], max_length=MAX_LENGTH)
        for task in LABELS
    }


@pytest.fixture(scope="module")
def drawn(pair_datasets):
    """Every item of epochs 0, 1 and 2, per task: (epoch, index, item)."""
    out = {}
    for task, dataset in pair_datasets.items():
        start = time.perf_counter()
        out[task] = []
        for epoch in range(3):
            dataset.set_epoch(epoch)
            out[task] += [(epoch, i, dataset[i]) for i in range(len(dataset))]
        dataset.set_epoch(0)
        seconds = time.perf_counter() - start
        print(f"{task}: {len(out[task])} items in {seconds:.2f} s = {len(out[task]) / seconds:,.0f} items/s")
    return out


class Rows:
    """The document rows as flat arrays per document (tokens, labels, word keys, spans), and a segment finder."""

    def __init__(self, documents: datasets.Dataset):
        self.tokens, self.sentence_starts, self.capitals, self.words, self.spans = [], [], [], [], []
        for doc in documents:
            starts = np.cumsum([0] + [len(ids) for ids in doc["input_ids"]])
            self.sentence_starts.append(starts)
            self.tokens.append(np.array([t for ids in doc["input_ids"] for t in ids], dtype=np.int32))
            self.capitals.append([c for labels in doc["capitalization_labels"] for c in labels])
            self.words.append([(s, w) for s, words in enumerate(doc["word_ids"]) for w in words])
            if "span_starts" not in doc:  # prepared without a span source: no span columns
                self.spans.append([])
                continue
            self.spans.append(
                [
                    (int(starts[s]) + a, int(starts[s]) + b, kind)
                    for s in range(len(starts) - 1)
                    for a, b, kind in zip(doc["span_starts"][s], doc["span_ends"][s], doc["span_kinds"][s])
                ]
            )
        self.doc_starts = np.cumsum([0] + [len(t) for t in self.tokens])
        self.haystack = np.concatenate(self.tokens).tobytes()

    def find(self, segment: list[int]) -> list[tuple[int, int]]:
        """Every (document, token position) where ``segment`` occurs inside one document."""
        needle, found, start = np.array(segment, dtype=np.int32).tobytes(), [], 0
        while (byte := self.haystack.find(needle, start)) >= 0:
            start = byte + 1
            if byte % 4:
                continue
            position = byte // 4
            doc = int(np.searchsorted(self.doc_starts, position, side="right")) - 1
            if position + len(segment) <= self.doc_starts[doc + 1]:
                found.append((doc, position - int(self.doc_starts[doc])))
        return found

    def sentence_of(self, doc: int, position: int) -> int:
        return int(np.searchsorted(self.sentence_starts[doc], position, side="right")) - 1

    def is_boundary(self, doc: int, position: int) -> bool:
        return position in set(self.sentence_starts[doc].tolist())


def split(item: dict) -> tuple[list[int], list[int], int, int]:
    """The two segments of an item (the runs between special tokens) and where each starts."""
    mask, ids = item["special_tokens_mask"], item["input_ids"]
    runs, start = [], None
    for j, special in enumerate([*mask, 1]):
        if not special and start is None:
            start = j
        elif special and start is not None:
            runs.append((start, j))
            start = None
    assert len(runs) == 2, f"expected two segments, got {runs}"
    (a0, a1), (b0, b1) = runs
    return ids[a0:a1], ids[b0:b1], a0, b0


def locate(dataset: SentencePairDataset, rows: Rows, index: int, item: dict) -> dict:
    """Where A (the chunk's first sentences) and the candidates for B lie in the documents, by their tokens."""
    first, second, first_at, second_at = split(item)
    swapped = item.get("sentence_order_label") == 1
    a, b = (second, first) if swapped else (first, second)
    doc, c0, c1 = (int(x) for x in dataset.chunks_index[index])
    lo, hi = rows.sentence_starts[doc][c0], rows.sentence_starts[doc][c1]
    a_positions = [p for d, p in rows.find(a) if d == doc and lo <= p and p + len(a) <= hi]
    assert a_positions, f"item {index}: A is not inside its chunk"
    a_pos = lo if lo in a_positions else a_positions[0]
    return {
        "doc": doc,
        "chunk_end": int(hi),
        "a": a,
        "b": b,
        "a_pos": a_pos,
        "b_candidates": rows.find(b),
        "a_at": second_at if swapped else first_at,
        "b_at": first_at if swapped else second_at,
    }


def non_adjacent(rows: Rows, doc: int, a_pos: int, a_len: int, b_pos: int, b_len: int) -> bool:
    """B lies in A's document with at least one whole sentence between them."""
    a_first, a_last = rows.sentence_of(doc, a_pos), rows.sentence_of(doc, a_pos + a_len - 1)
    b_first, b_last = rows.sentence_of(doc, b_pos), rows.sentence_of(doc, b_pos + b_len - 1)
    return b_first >= a_last + 2 or b_last <= a_first - 2


def true_b_positions(task: str, rows: Rows, where: dict, label: int) -> list[tuple[int, int]]:
    """The candidates for B's location that agree with the label."""
    doc, a_pos, a, b = where["doc"], where["a_pos"], where["a"], where["b"]
    follows = [(d, p) for d, p in where["b_candidates"] if d == doc and p == a_pos + len(a)]
    other = [(d, p) for d, p in where["b_candidates"] if d != doc]
    distant = [
        (d, p) for d, p in where["b_candidates"] if d == doc and non_adjacent(rows, doc, a_pos, len(a), p, len(b))
    ]
    if task == "sop" or label == 0:
        return follows
    if task == "nsp":
        return other
    return distant if label == 1 else other


# ---------------------------------------------------------------------------------- layout


def test_every_item_has_the_tokenizers_pair_layout(minilm_path, tokenizer, documents, pair_datasets, drawn):
    """[CLS] A [SEP] B [SEP] with the token types and special mask of BERT's own tokenizer code."""
    reference = BertTokenizerLegacy.from_pretrained(minilm_path)
    for task, items in drawn.items():
        for _, _, item in items:
            a, b, _, _ = split(item)
            assert len(item["input_ids"]) <= MAX_LENGTH and a and b
            assert item["input_ids"][0] == tokenizer.cls_token_id
            assert item["input_ids"] == reference.build_inputs_with_special_tokens(a, b)
            assert item["token_type_ids"] == reference.create_token_type_ids_from_sequences(a, b)
            assert item["special_tokens_mask"] == reference.get_special_tokens_mask(a, b)
            for name in ("word_ids", "capitalization_labels", "token_document_labels"):
                assert len(item[name]) == len(item["input_ids"]), name
            assert LABELS[task] in item and not (set(LABELS.values()) - {LABELS[task]}) & set(item)
    # BERT's Python tokenizer (build_inputs_with_special_tokens) yields the same template, hence the same items.
    fast = pair_datasets["nsp"]
    slow = SentencePairDataset(documents, reference, fast.tasks, max_length=MAX_LENGTH)
    assert slow.template == fast.template
    assert all(slow[i] == fast[i] for i in range(0, len(fast), 50))


def test_roberta_style_tokenizer_gets_its_own_layout(corpus):
    """``<s> A </s></s> B </s>``, four special tokens: the budget shrinks, and the preparation (which asks
    the tokenizer how many specials a pair takes) leaves no sentence over it."""
    small = corpus.select(range(40))
    roberta = train_tokenizer(
        small["text"], algorithm="bpe", vocab_size=2000, special_tokens_style="roberta", show_progress=False
    )
    documents = prepare_pretraining_dataset(small, roberta, ["mlm", "sentence_distance"], max_length=64)
    dataset = SentencePairDataset(documents, roberta, ["sentence_distance"], max_length=64)
    bos, eos = roberta.convert_tokens_to_ids(["<s>", "</s>"])
    assert dataset.budget == 60 and dataset.stats["sentences_over_budget"] == 0
    for i in range(len(dataset)):
        item = dataset[i]
        ids, mask = item["input_ids"], item["special_tokens_mask"]
        assert len(ids) <= 64 and ids[0] == bos and ids[-1] == eos and set(item["token_type_ids"]) == {0}
        separator = mask.index(1, 1)
        assert ids[separator : separator + 2] == [eos, eos] and mask.count(1) == 4
        assert all(t not in (bos, eos) for t, m in zip(ids, mask) if not m)
    assert dataset.stats["truncated_pairs"] > 0


# ---------------------------------------------------------------------------------- labels


def test_label_shares_are_balanced(drawn):
    for task, items in drawn.items():
        counts = collections.Counter(item[LABELS[task]] for _, _, item in items)
        shares = {label: count / len(items) for label, count in sorted(counts.items())}
        print(task, len(items), "draws, label shares", {k: round(v, 4) for k, v in shares.items()})
        classes = 3 if task == "sentence_distance" else 2
        assert sorted(shares) == list(range(classes))
        assert all(abs(share - 1 / classes) <= 0.03 for share in shares.values()), shares


@pytest.mark.parametrize("task", list(LABELS))
def test_labels_match_where_the_segments_come_from(task, rows, pair_datasets, drawn):
    """Label 0: B is exactly the sentences after A; NSP 1 / distance 2: B is in another document;
    distance 1: B in A's document, a sentence away at least; SOP 1: the item is (B, A)."""
    dataset = pair_datasets[task]
    cuts, cut_before = collections.Counter(), 0
    for _, i, item in drawn[task]:
        label = item[LABELS[task]]
        where = locate(dataset, rows, i, item)
        positions = true_b_positions(task, rows, where, label)
        assert positions, f"{task} item {i} label {label}: B is not where the label says"
        if task == "sop" or label == 0:  # whole sentences, nothing truncated: A starts the chunk, B ends it
            doc, a_pos = where["doc"], where["a_pos"]
            assert a_pos == rows.sentence_starts[doc][dataset.chunks_index[i][1]]
            assert rows.is_boundary(doc, a_pos + len(where["a"]))
            assert a_pos + len(where["a"]) + len(where["b"]) == where["chunk_end"]
        if task == "sop":  # A goes first exactly when the label is 0
            assert (where["a_at"] < where["b_at"]) == (label == 0)
        doc, a_end = where["doc"], where["a_pos"] + len(where["a"])
        cuts["front"] += int(where["a_pos"] != rows.sentence_starts[doc][dataset.chunks_index[i][1]])
        cuts["front"] += all(not rows.is_boundary(d, p) for d, p in positions)
        cuts["back"] += not rows.is_boundary(doc, a_end)
        cuts["back"] += all(not rows.is_boundary(d, p + len(where["b"])) for d, p in positions)
        if cuts.total() > cut_before:  # BERT's truncation: only as much as needed
            assert len(item["input_ids"]) == MAX_LENGTH
            cut_before = cuts.total()
    print(task, "segments truncated at the front / back:", dict(cuts))
    if task != "sop":  # B from elsewhere may overflow the budget; both ends get cut
        assert cuts["front"] > 20 and cuts["back"] > 20


# ---------------------------------------------------------------------------------- reproducibility


def test_same_seed_epoch_index_gives_the_same_item_anywhere(documents, tokenizer, pair_datasets, drawn, tmp_path):
    dataset = pair_datasets["sentence_distance"]
    epoch2 = {i: item for epoch, i, item in drawn["sentence_distance"] if epoch == 2}
    fresh = SentencePairDataset(documents, tokenizer, ["mlm", "sentence_distance", *TOKEN_TASKS], max_length=128)
    fresh.set_epoch(2)
    assert np.array_equal(fresh.chunks_index, dataset.chunks_index)
    assert all(fresh[i] == epoch2[i] for i in reversed(range(len(fresh))))  # any order: no state between draws

    (tmp_path / "dataset.pkl").write_bytes(pickle.dumps(dataset))
    code = (
        "import json, pickle, sys\n"
        "dataset = pickle.load(open(sys.argv[1], 'rb'))\n"
        "dataset.set_epoch(2)\n"
        "json.dump([dataset[i] for i in range(0, len(dataset), 5)], open(sys.argv[2], 'w'))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "dataset.pkl"), str(tmp_path / "items.json")],
        check=True,
        timeout=120,
    )
    assert json.loads((tmp_path / "items.json").read_text()) == [epoch2[i] for i in range(0, len(dataset), 5)]


def test_epochs_and_seeds_change_the_pairs(documents, tokenizer, drawn):
    by_epoch = collections.defaultdict(dict)
    for epoch, i, item in drawn["nsp"]:
        by_epoch[epoch][i] = item
    same = np.mean([by_epoch[0][i] == by_epoch[1][i] for i in by_epoch[0]])
    print(f"NSP items identical in epochs 0 and 1: {same:.1%}")
    assert same < 0.4

    seed0 = SentencePairDataset(documents, tokenizer, ["nsp", *TOKEN_TASKS], max_length=128, seed=0)
    seed1 = SentencePairDataset(documents, tokenizer, ["nsp", *TOKEN_TASKS], max_length=128, seed=1)
    assert seed0.chunks_index.shape != seed1.chunks_index.shape or not np.array_equal(
        seed0.chunks_index, seed1.chunks_index
    )  # short targets fall elsewhere
    same = np.mean([seed0[i] == seed1[i] for i in range(min(len(seed0), len(seed1)))])
    print(f"NSP items identical with seeds 0 and 1: {same:.1%}")
    assert same < 0.2


def test_chunks_are_fixed_whole_sentence_runs_within_the_budget(documents, tokenizer, rows):
    tasks = ["nsp"]
    long_only = SentencePairDataset(documents, tokenizer, tasks, max_length=128, short_seq_prob=0.0)
    short_only = SentencePairDataset(documents, tokenizer, tasks, max_length=128, short_seq_prob=1.0)
    assert long_only.stats["short_target_chunks"] == 0
    assert short_only.stats["short_target_chunks"] == short_only.stats["chunks"]
    mean_length = {}
    for dataset in (long_only, short_only):
        previous, lengths = (-1, 0), []
        for doc, c0, c1 in dataset.chunks_index.tolist():
            starts = rows.sentence_starts[doc]
            assert c1 - c0 >= 2 and (doc, c0) >= previous
            lengths.append(starts[c1] - starts[c0])
            previous = (doc, c1)
        assert max(lengths) <= dataset.budget
        mean_length[dataset.short_seq_prob] = np.mean(lengths)
    print("mean chunk tokens by short_seq_prob:", mean_length)
    assert mean_length[1.0] < 0.7 * mean_length[0.0]  # short targets make short chunks
    assert len(short_only) > 1.3 * len(long_only)


# ---------------------------------------------------------------------------------- token labels and spans


def _expected_document_labels(rows: Rows, shown: list[tuple[int, int, int]], doc: int) -> list[int]:
    """Brute force: a token of a shown range is 1 if its id occurs in ``doc`` outside every shown range."""
    ranges = [(p, n) for d, p, n in shown if d == doc]
    outside = np.delete(rows.tokens[doc], np.concatenate([np.arange(p, p + n) for p, n in ranges]))
    return [int(t) for p, n in ranges for t in np.isin(rows.tokens[doc][p : p + n], outside)]


def _agrees_with_documents(item: dict, rows: Rows, a: tuple, b: tuple) -> bool:
    """Do the item's token-document labels, word ids, capitalization labels and spans follow the documents,
    A and B being (offset in the pair, length, (document, position))?"""
    (a_at, a_len, a_place), (b_at, b_len, b_place) = a, b
    shown = [(*a_place, a_len), (*b_place, b_len)]
    if a_place[0] == b_place[0]:
        expected = _expected_document_labels(rows, shown, a_place[0])  # A's labels, then B's
    else:
        expected = _expected_document_labels(rows, shown[:1], a_place[0]) + _expected_document_labels(
            rows, shown[1:], b_place[0]
        )
    labels = [x for x in item["token_document_labels"] if x != -100]
    if labels != (expected if a_at < b_at else expected[a_len:] + expected[:a_len]):
        return False
    for at, n, (doc, position) in (a, b):
        words = item["word_ids"][at : at + n]
        original = rows.words[doc][position : position + n]
        if [words.index(w) for w in words] != [original.index(w) for w in original]:  # same grouping
            return False
        starts = [j == 0 or words[j] != words[j - 1] for j in range(n)]
        capitals = [rows.capitals[doc][position + j] if start else -100 for j, start in enumerate(starts)]
        if item["capitalization_labels"][at : at + n] != capitals:
            return False
        expected_spans = sorted(
            (max(s, position) - position + at, min(e, position + n) - position + at, kind)
            for s, e, kind in rows.spans[doc]
            if s < position + n and e > position
        )
        spans = zip(item["span_starts"], item["span_ends"], item["span_kinds"])
        if sorted(span for span in spans if at <= span[0] < at + n) != expected_spans:
            return False
    return True


@pytest.mark.parametrize("task", ["nsp", "sentence_distance"])
def test_token_labels_word_ids_and_spans_follow_the_documents(task, tokenizer, rows, pair_datasets, drawn):
    dataset = pair_datasets[task]
    span_count = 0
    for _, i, item in drawn[task][: len(dataset)]:  # epoch 0
        where = locate(dataset, rows, i, item)
        a_at, b_at, a_len, b_len = where["a_at"], where["b_at"], len(where["a"]), len(where["b"])
        a_place = (where["doc"], where["a_pos"])
        b_places = true_b_positions(task, rows, where, item[LABELS[task]])
        assert any(
            _agrees_with_documents(item, rows, (a_at, a_len, a_place), (b_at, b_len, b_place)) for b_place in b_places
        ), f"{task} item {i}"

        special = [j for j, m in enumerate(item["special_tokens_mask"]) if m]
        assert all(
            item[name][j] == fill
            for j in special
            for name, fill in (("word_ids", -1), ("capitalization_labels", -100), ("token_document_labels", -100))
        )
        assert not set(item["word_ids"][a_at : a_at + a_len]) & set(item["word_ids"][b_at : b_at + b_len])
        for j, token in enumerate(tokenizer.convert_ids_to_tokens(item["input_ids"])):
            if token.startswith("##") and j not in (a_at, b_at):  # continuation pieces never carry the label
                assert item["capitalization_labels"][j] == -100
        for s, e in zip(item["span_starts"], item["span_ends"]):  # spans decode as in their sentence
            span_count += 1
            assert not any(item["special_tokens_mask"][s:e])
            (doc, position), at = (a_place, a_at) if s < b_at else (b_places[0], b_at)
            original = [(os, oe) for os, oe, _ in rows.spans[doc] if os == position + s - at]
            if original and original[0][1] == position + e - at:  # not clipped by truncation
                assert tokenizer.decode(item["input_ids"][s:e]) == tokenizer.decode(
                    rows.tokens[doc][original[0][0] : original[0][1]].tolist()
                )
    assert span_count > 200


# ---------------------------------------------------------------------------------- short documents


@pytest.fixture(scope="module")
def prepare_texts(tokenizer):
    def prepare(texts: list[str]) -> datasets.Dataset:
        return prepare_pretraining_dataset(
            datasets.Dataset.from_dict({"text": texts}), tokenizer, ["mlm", "nsp"], max_length=MAX_LENGTH
        )

    return prepare


def test_short_documents_follow_the_stated_rules(prepare_texts, tokenizer, caplog):
    documents = prepare_texts(["Only one sentence here.", "First of two. Second of two.", FIVE_SENTENCES])
    assert [len(doc) for doc in documents["input_ids"]] == [1, 2, 5]
    for task in ("nsp", "sop"):
        dataset = SentencePairDataset(documents, tokenizer, [task], short_seq_prob=0.0)
        assert dataset.chunks_index.tolist() == [[1, 0, 2], [2, 0, 5]]
        assert (dataset.stats["skipped_one_sentence_chunks"], dataset.stats["skipped_no_distant_segment"]) == (1, 0)
    with caplog.at_level("INFO", logger="bert18.data.pairs"):
        distance = SentencePairDataset(documents, tokenizer, ["sentence_distance"], short_seq_prob=0.0)
    assert "1 one-sentence chunks, 1 chunks with no distant segment" in caplog.text
    assert distance.chunks_index.tolist() == [[2, 0, 5]]  # the two-sentence document cannot host class 1
    assert distance.stats["skipped_one_sentence_chunks"] == 1 and distance.stats["skipped_no_distant_segment"] == 1
    rows = Rows(documents.map(lambda doc: {"capitalization_labels": [[0] * len(s) for s in doc["input_ids"]]}))
    labels = collections.Counter()
    for epoch in range(60):
        distance.set_epoch(epoch)
        item = distance[0]
        labels[item["sentence_distance_label"]] += 1
        assert true_b_positions(
            "sentence_distance", rows, locate(distance, rows, 0, item), item["sentence_distance_label"]
        )
    assert sorted(labels) == [0, 1, 2]
    assert distance.stats["fallback_no_other_document"] == 0


def test_single_document_corpus_falls_back_and_counts(prepare_texts, tokenizer, caplog):
    documents = prepare_texts([FIVE_SENTENCES])
    rows = Rows(documents.map(lambda doc: {"capitalization_labels": [[0] * len(s) for s in doc["input_ids"]]}))
    with caplog.at_level("WARNING", logger="bert18.data.pairs"):
        nsp = SentencePairDataset(documents, tokenizer, ["nsp"], short_seq_prob=0.0)
        distance = SentencePairDataset(documents, tokenizer, ["sentence_distance"], short_seq_prob=0.0)
    assert "only one document" in caplog.text
    labels = {"nsp": collections.Counter(), "sentence_distance": collections.Counter()}
    for epoch in range(60):
        for task, dataset in (("nsp", nsp), ("sentence_distance", distance)):
            dataset.set_epoch(epoch)
            item = dataset[0]
            label = item[LABELS[task]]
            labels[task][label] += 1
            where = locate(dataset, rows, 0, item)
            if label == 1:  # NSP's negative and distance class 1: same document, a sentence away at least
                assert true_b_positions("sentence_distance", rows, where, 1)
            else:
                assert true_b_positions(task, rows, where, 0)
    assert sorted(labels["nsp"]) == [0, 1] and sorted(labels["sentence_distance"]) == [0, 1]
    assert nsp.stats["fallback_no_other_document"] == labels["nsp"][1]  # every negative
    assert distance.stats["fallback_no_other_document"] == 60  # every draw: class 2 is unavailable

    two = prepare_texts(["First of two. Second of two."])
    assert len(SentencePairDataset(two, tokenizer, ["sop"])) == 1
    with pytest.raises(ValueError, match="no chunk"):  # NSP needs a distant negative here: none exists
        SentencePairDataset(two, tokenizer, ["nsp"])


# ---------------------------------------------------------------------------------- bad input


def test_bad_input_is_refused_clearly(documents, tokenizer, corpus):
    with pytest.raises(ValueError, match="label the same pair differently"):
        SentencePairDataset(documents, tokenizer, ["nsp", "sop"])
    with pytest.raises(ValueError, match="unknown task"):
        SentencePairDataset(documents, tokenizer, ["nsp", "sentence_order"])
    with pytest.raises(ValueError, match="needs sentence pairs"):
        SentencePairDataset(documents, tokenizer, ["mlm", "capitalization"])
    with pytest.raises(ValueError, match="'input_ids'"):
        SentencePairDataset(documents.remove_columns("input_ids"), tokenizer, ["nsp"])
    packed = prepare_pretraining_dataset(corpus.select(range(5)), tokenizer, ["mlm"], max_length=64)
    with pytest.raises(ValueError, match=r"column 'input_ids' has type .*list per sentence"):
        SentencePairDataset(packed, tokenizer, ["nsp"])
    with pytest.raises(ValueError, match="max_length 4 leaves 1 tokens"):
        SentencePairDataset(documents, tokenizer, ["nsp"], max_length=4)
    no_capitals = documents.map(lambda doc: {"capitalization_labels": [[] for _ in doc["input_ids"]]})
    with pytest.raises(ValueError, match="capitalization_labels"):
        SentencePairDataset(no_capitals, tokenizer, ["sop", "capitalization"])
    with pytest.raises(ValueError, match="max_position_embeddings"):
        SentencePairDataset(
            documents,
            tokenizer,
            Bert18Config(pretraining_tasks=["mlm", "sop"], max_position_embeddings=64),
            max_length=128,
        )


def test_config_and_token_document_relation_alone(documents, tokenizer, rows):
    config = Bert18Config(pretraining_tasks=["mlm", "sop"])
    item = SentencePairDataset(documents, tokenizer, config, max_length=MAX_LENGTH)[0]
    assert "sentence_order_label" in item and "token_document_labels" not in item
    assert "capitalization_labels" not in item

    alone = SentencePairDataset(documents, tokenizer, ["token_document_relation"], max_length=MAX_LENGTH)
    for i in range(0, len(alone), 10):
        item = alone[i]
        assert not set(LABELS.values()) & set(item)
        where = locate(alone, rows, i, item)
        assert true_b_positions("sop", rows, where, 0)  # consecutive segments, in order

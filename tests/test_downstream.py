"""The built-in corpus's downstream task (module classification) and removing its test passages."""

from collections import Counter

import pytest

from bert18.data.downstream import module_classification, remove_passages


@pytest.fixture(scope="module")
def task(corpus):
    return module_classification(corpus, num_labels=6, passages_per_label=20, test_every=4)


def test_balanced_labels_and_real_passages(task, corpus):
    names = task["train"].features["label"].names
    assert len(names) == 6 and names == sorted(names)
    assert Counter(task["train"]["label"]) == dict.fromkeys(range(6), 15)
    assert Counter(task["test"]["label"]) == dict.fromkeys(range(6), 5)
    for split in ("train", "test"):
        for passage in task[split].select(range(10)):
            document = corpus[passage["document"]]
            assert document["text"][passage["start"] : passage["end"]] == passage["text"]
            assert document["module"] == names[passage["label"]]


def test_train_and_test_passages_do_not_overlap(task):
    spans = {split: {(p["document"], p["start"], p["end"]) for p in task[split]} for split in ("train", "test")}
    assert not spans["train"] & spans["test"]
    for document, start, end in spans["test"]:
        assert not any(d == document and s < end and start < e for d, s, e in spans["train"])


def test_removed_passages_are_gone_and_the_rest_stays(task, corpus):
    cleaned = remove_passages(corpus, task["test"])
    assert len(cleaned) == len(corpus)
    removed = Counter()
    for passage in task["test"]:
        removed[passage["document"]] += passage["end"] - passage["start"] - 2  # a blank line takes its place
        before, after = corpus[passage["document"]]["text"], cleaned[passage["document"]]["text"]
        assert after.count(passage["text"]) < before.count(passage["text"])  # identical text may recur
    for row, text in enumerate(corpus["text"]):
        assert len(text) - len(cleaned[row]["text"]) == removed[row]
    for passage in task["train"].select(range(20)):
        assert passage["text"] in cleaned[passage["document"]]["text"]


def test_bad_settings(corpus):
    with pytest.raises(ValueError, match="test_every must be at least 2"):
        module_classification(corpus, test_every=1)
    with pytest.raises(ValueError, match="lower num_labels or passages_per_label"):
        module_classification(corpus, num_labels=8, passages_per_label=10_000)

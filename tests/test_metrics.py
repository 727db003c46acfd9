"""Offline metrics: hand-worked values, scikit-learn / scipy where installed, seqeval's and SQuAD's
own examples, the evaluate.Metric API (compute, add_batch, add, combine), bad input, and load()."""

import math
import textwrap

import evaluate
import numpy as np
import pytest
import torch

from bert18 import metrics
from bert18.metrics import entity_spans, normalize_answer

BINARY_REFS = [1, 1, 1, 0, 0, 0, 1, 0]
BINARY_PREDS = [1, 0, 1, 0, 1, 0, 1, 1]  # TP 3, FP 2, FN 1, TN 2
MULTI_REFS = [0, 0, 1, 1, 2, 2]
MULTI_PREDS = [0, 1, 1, 1, 2, 0]  # per class F1: 0.5, 0.8, 2/3


def compute(name: str, **kwargs):
    return metrics.load(name).compute(**kwargs)


# --- classification ---------------------------------------------------------------------------


def test_binary_scores_by_hand():
    inputs = dict(predictions=BINARY_PREDS, references=BINARY_REFS)
    assert compute("accuracy", **inputs) == {"accuracy": 5 / 8}
    assert compute("precision", **inputs) == {"precision": pytest.approx(3 / 5)}
    assert compute("recall", **inputs) == {"recall": pytest.approx(3 / 4)}
    assert compute("f1", **inputs) == {"f1": pytest.approx(6 / 9)}
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (6 - 2) / sqrt(5 * 4 * 4 * 3)
    assert compute("matthews_correlation", **inputs)["matthews_correlation"] == pytest.approx(4 / math.sqrt(240))
    # pos_label=0 scores the other class: TP 2, FP 1, FN 2
    assert compute("f1", pos_label=0, **inputs)["f1"] == pytest.approx(4 / 7)


def test_multiclass_averages_by_hand():
    inputs = dict(predictions=MULTI_PREDS, references=MULTI_REFS)
    per_class = [0.5, 0.8, 2 / 3]
    assert compute("f1", average=None, **inputs)["f1"] == pytest.approx(per_class)
    assert compute("f1", average="macro", **inputs)["f1"] == pytest.approx(sum(per_class) / 3)
    assert compute("f1", average="micro", **inputs)["f1"] == pytest.approx(4 / 6)  # = accuracy
    assert compute("f1", average="weighted", **inputs)["f1"] == pytest.approx(sum(per_class) / 3)  # equal supports
    assert compute("precision", average="macro", **inputs)["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert compute("recall", average="macro", **inputs)["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # A label that never occurs still counts in a macro average when named (F1 0 by zero division).
    assert compute("f1", average="macro", labels=[0, 1, 2, 3], **inputs)["f1"] == pytest.approx(sum(per_class) / 4)


@pytest.mark.parametrize("average", ["binary", "micro", "macro", "weighted", None])
@pytest.mark.parametrize("weighted", [False, True])
def test_classification_matches_scikit_learn(average, weighted):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    classes = 2 if average == "binary" else 4
    refs, preds = rng.integers(0, classes, 200), rng.integers(0, classes, 200)
    preds[:120] = refs[:120]  # better than chance
    weights = rng.uniform(0.1, 2.0, 200) if weighted else None
    for name, reference in (
        ("precision", sklearn_metrics.precision_score),
        ("recall", sklearn_metrics.recall_score),
        ("f1", sklearn_metrics.f1_score),
    ):
        ours = compute(name, predictions=preds, references=refs, average=average, sample_weight=weights)[name]
        expected = reference(refs, preds, average=average, sample_weight=weights, zero_division=0.0)
        np.testing.assert_allclose(ours, expected, rtol=1e-12, err_msg=name)
    expected = sklearn_metrics.matthews_corrcoef(refs, preds, sample_weight=weights)
    ours = compute("matthews_correlation", predictions=preds, references=refs, sample_weight=weights)
    assert ours["matthews_correlation"] == pytest.approx(expected, abs=1e-12)
    expected = sklearn_metrics.accuracy_score(refs, preds, sample_weight=weights)
    assert compute("accuracy", predictions=preds, references=refs, sample_weight=weights)["accuracy"] == pytest.approx(
        expected
    )


def test_classification_edge_cases():
    assert compute("matthews_correlation", predictions=[1, 1, 1], references=[0, 1, 1]) == {"matthews_correlation": 0.0}
    assert compute("f1", predictions=[0, 0], references=[0, 0]) == {"f1": 0.0}  # no positives anywhere: 0/0 -> 0
    assert compute("accuracy", predictions=[1, 0], references=[1, 1], normalize=False) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="at most two labels"):
        compute("f1", predictions=MULTI_PREDS, references=MULTI_REFS)
    with pytest.raises(ValueError, match="pos_label=1 is not one of the labels"):
        compute("f1", predictions=[0, 2], references=[2, 0])
    with pytest.raises(ValueError, match="average must be"):
        compute("f1", predictions=[0, 1], references=[1, 0], average="samples")


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no predictions to score"):
        compute("accuracy", predictions=[], references=[])
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute("f1", predictions=[0, 1, 1], references=[0, 1])
    # Floats would be cast to class ids silently by datasets: 0.7 -> 0.
    with pytest.raises(ValueError, match="take the argmax"):
        compute("accuracy", predictions=[0.7, 0.2], references=[1, 0])
    with pytest.raises(ValueError, match="sequence 1 has 2 predicted tags but 3 reference tags"):
        compute("seqeval", predictions=[["O"], ["O", "O"]], references=[["O"], ["O", "O", "O"]])


def test_metric_api_add_batch_add_and_array_inputs():
    accuracy = metrics.load("accuracy")
    assert isinstance(accuracy, evaluate.Metric) and accuracy.name == "accuracy"
    for preds, refs in ((np.array([1, 0]), torch.tensor([1, 1])), ([1, 1], [1, 1])):
        accuracy.add_batch(predictions=preds, references=refs)
    accuracy.add(prediction=0, reference=0)
    assert accuracy.compute() == {"accuracy": 4 / 5}
    combined = evaluate.combine([metrics.load("accuracy"), metrics.load("f1")])
    assert combined.compute(predictions=BINARY_PREDS, references=BINARY_REFS) == {
        "accuracy": 5 / 8,
        "f1": pytest.approx(6 / 9),
    }
    # Without keep_in_memory, evaluate's cache files (its distributed path) give the same.
    on_disk = metrics.load("f1", keep_in_memory=False)
    assert on_disk.compute(predictions=BINARY_PREDS, references=BINARY_REFS)["f1"] == pytest.approx(6 / 9)


# --- regression -------------------------------------------------------------------------------


def test_correlations_by_hand():
    assert compute("pearsonr", predictions=[1, 2, 3], references=[2, 4, 6]) == {"pearsonr": pytest.approx(1.0)}
    assert compute("pearsonr", predictions=[1, 2, 3], references=[3, 2, 1]) == {"pearsonr": pytest.approx(-1.0)}
    # Ties share their average rank: x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]; r = 4.5 / sqrt(4.5 * 5)
    rho = compute("spearmanr", predictions=[1, 2, 2, 3], references=[1, 2, 3, 4])["spearmanr"]
    assert rho == pytest.approx(4.5 / math.sqrt(22.5))
    # Monotone but not linear: Spearman 1, Pearson below 1.
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [v**3 for v in x]
    assert compute("spearmanr", predictions=x, references=y)["spearmanr"] == pytest.approx(1.0)
    assert compute("pearsonr", predictions=x, references=y)["pearsonr"] < 0.99
    assert math.isnan(compute("pearsonr", predictions=[1, 1, 1], references=[1, 2, 3])["pearsonr"])


def test_correlations_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    y[:10] = np.round(y[:10])  # some ties
    x[5:15] = np.round(x[5:15])
    pearson = compute("pearsonr", predictions=x, references=y, return_pvalue=True)
    expected = stats.pearsonr(x, y)
    assert pearson["pearsonr"] == pytest.approx(expected[0], abs=1e-12)
    assert pearson["p-value"] == pytest.approx(expected[1], rel=1e-9)
    spearman = compute("spearmanr", predictions=x, references=y, return_pvalue=True)
    expected = stats.spearmanr(x, y)
    assert spearman["spearmanr"] == pytest.approx(expected[0], abs=1e-12)
    assert spearman["spearmanr_pvalue"] == pytest.approx(expected[1], rel=1e-9)


# --- sequence labelling -----------------------------------------------------------------------


def test_entity_spans_follow_seqeval_chunking():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]  # seqeval's docstring
    assert entity_spans(["I-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]  # I- after O starts one
    assert entity_spans(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 2)]  # a type change starts one
    assert entity_spans(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]  # B- always starts one
    assert entity_spans(["S-PER", "B-LOC", "E-LOC", "O"]) == [("PER", 0, 0), ("LOC", 1, 2)]  # IOBES
    assert entity_spans(["O", "O"]) == [] and entity_spans([]) == []


def test_seqeval_readme_example():
    """seqeval's README and the evaluate seqeval card: the MISC entity is off by one token."""
    references = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predictions = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert compute("seqeval", predictions=predictions, references=references) == {
        "MISC": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1},
        "PER": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 1},
        "overall_precision": 0.5,
        "overall_recall": 0.5,
        "overall_f1": 0.5,
        "overall_accuracy": 0.8,
    }


def test_seqeval_per_type_by_hand():
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    predictions = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "I-PER"]]
    # true: PER 0-1, LOC 3, ORG 0, PER 2; predicted: PER 0-1, ORG 3, ORG 0, PER 2 (I-PER after O starts one)
    scores = compute("seqeval", predictions=predictions, references=references)
    assert scores["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "number": 2}
    assert scores["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}  # never predicted: 0/0 -> 0
    assert scores["ORG"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "number": 1}
    assert (scores["overall_precision"], scores["overall_recall"], scores["overall_f1"]) == (0.75, 0.75, 0.75)
    assert scores["overall_accuracy"] == pytest.approx(5 / 7)
    # An entity never crosses sequence boundaries: [I-PER] then [I-PER] are two entities.
    two = compute("seqeval", predictions=[["I-PER"], ["I-PER"]], references=[["B-PER"], ["B-PER"]])
    assert two["PER"]["number"] == 2 and two["overall_f1"] == 1.0
    none = compute("seqeval", predictions=[["O", "O"]], references=[["O", "O"]])
    assert none == {"overall_precision": 0.0, "overall_recall": 0.0, "overall_f1": 0.0, "overall_accuracy": 1.0}


# --- extractive QA ----------------------------------------------------------------------------


def squad_inputs(pairs: list[tuple[str, list[str]]]) -> dict:
    return {
        "predictions": [{"id": str(i), "prediction_text": pred} for i, (pred, _) in enumerate(pairs)],
        "references": [
            {"id": str(i), "answers": {"text": gold, "answer_start": [0] * len(gold)}}
            for i, (_, gold) in enumerate(pairs)
        ],
    }


def test_squad_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear & the fig.") == "apple pear fig"
    assert normalize_answer("theatre") == "theatre"  # articles are whole words only
    assert normalize_answer("A") == ""


def test_squad_scores_by_hand():
    # evaluate's squad card: one exact answer.
    assert compute("squad", **squad_inputs([("1976", ["1976"])])) == {"exact_match": 100.0, "f1": 100.0}
    # "the cat sat" vs "a cat sat down": "cat sat" / "cat sat down", overlap 2, P 1, R 2/3, F1 0.8.
    assert compute("squad", **squad_inputs([("the cat sat", ["a cat sat down"])])) == {
        "exact_match": 0.0,
        "f1": pytest.approx(80.0),
    }
    # The best gold answer counts; a question with no overlap scores 0; averaged over 3 questions.
    scores = compute(
        "squad",
        **squad_inputs(
            [
                ("Denver Broncos", ["Broncos", "the Denver Broncos"]),
                ("in 1990", ["1990", "ninety"]),
                ("blue", ["red"]),
            ]
        ),
    )
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx((100 + 100 * 2 * 0.5 / 1.5 + 0) / 3)


def test_squad_ids_must_match():
    inputs = squad_inputs([("1976", ["1976"]), ("x", ["y"])])
    inputs["predictions"][1]["id"] = "nope"
    with pytest.raises(ValueError, match=r"predictions only \['nope'\], references only \['1'\]"):
        compute("squad", **inputs)
    with pytest.raises(ValueError, match="1 predictions but 2 references"):
        compute("squad", predictions=inputs["predictions"][:1], references=inputs["references"])


# --- load() -----------------------------------------------------------------------------------


def test_load_returns_offline_metrics_by_their_hub_names():
    for name, cls in metrics.OFFLINE_METRICS.items():
        metric = metrics.load(name)
        assert type(metric) is cls and metric.name == name


def test_load_falls_back_to_evaluate(tmp_path):
    """Any other name goes to evaluate.load: a local metric script loads; a Hub name offline fails clearly."""
    script = tmp_path / "exact_length.py"
    script.write_text(
        textwrap.dedent("""
        import datasets
        import evaluate

        class ExactLength(evaluate.Metric):
            def _info(self):
                return evaluate.MetricInfo(description="", citation="", features=datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Value("string")}))

            def _compute(self, predictions, references):
                return {"same_length": sum(len(p) == len(r) for p, r in zip(predictions, references))}
    """)
    )
    metric = metrics.load(str(script), cache_dir=str(tmp_path / "cache"))
    assert metric.compute(predictions=["ab", "c"], references=["xy", "zz"]) == {"same_length": 1}
    with pytest.raises(FileNotFoundError, match="not one of bert18's offline metrics"):
        metrics.load("no_such_metric_anywhere_bert18")

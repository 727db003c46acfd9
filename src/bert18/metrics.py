"""Evaluation metrics that compute offline: ``evaluate.Metric`` subclasses and ``load(name)``.

``evaluate.load("accuracy")`` downloads the metric's script from the Hugging Face Hub, so it fails
without a network. The metrics fine-tuning needs are implemented here in numpy, as
``evaluate.Metric`` subclasses: ``.compute(predictions=..., references=...)``, ``.add_batch``,
``.add`` and ``evaluate.combine`` work as with the Hub's, the inputs and the result keys are the
same, and so are the conventions:

- ``accuracy``, ``precision``, ``recall``, ``f1``, ``matthews_correlation``: scikit-learn's
  (``average`` in ``binary | micro | macro | weighted | None``, ``pos_label``, ``labels``,
  ``sample_weight``; a zero division scores 0).
- ``pearsonr``, ``spearmanr``: scipy's (Spearman ranks ties by their average rank; the optional
  p-value needs scipy).
- ``seqeval``: entity-level precision / recall / F1 of BIO (IOB2) tag sequences, overall and per
  entity type, with seqeval's default (lenient, conlleval) chunking: an ``I-X`` after ``O`` or
  after another type starts an entity, as ``B-X`` would. ``E-``/``S-`` tags (IOBES) chunk as in
  seqeval too. ``overall_accuracy`` is token accuracy.
- ``squad``: the official SQuAD v1.1 exact match and F1 (answers normalised: lowercase, no
  punctuation, no articles a/an/the, single spaces; the best over the gold answers), in percent.

``load(name)`` returns these for their names and falls back to ``evaluate.load(name)`` for any
other (a Hub metric, for users with a network, or a local metric script).
"""

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasets
import evaluate
import numpy as np

__all__ = [
    "OFFLINE_METRICS",
    "Accuracy",
    "F1",
    "MatthewsCorrelation",
    "Pearsonr",
    "Precision",
    "Recall",
    "Seqeval",
    "Spearmanr",
    "Squad",
    "entity_spans",
    "load",
    "normalize_answer",
]

_LABELS = datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
_SCORES = datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")})
_TAGS = datasets.Features(
    {
        "predictions": datasets.List(datasets.Value("string")),
        "references": datasets.List(datasets.Value("string")),
    }
)
_SQUAD = datasets.Features(
    {
        "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
        "references": {
            "id": datasets.Value("string"),
            "answers": datasets.Sequence({"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
        },
    }
)


class _OfflineMetric(evaluate.Metric):
    """Shared plumbing: the info block, and input checks that run before ``datasets`` casts the
    inputs (it would silently turn a float prediction 0.7 into the class 0)."""

    features: datasets.Features = _LABELS
    description = ""
    integer_inputs = False

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=self.description or (self.__doc__ or "").split("\n")[0],
            citation="",
            features=self.features,
            reference_urls=["https://github.com/huggingface/evaluate"],
        )

    def add_batch(self, *, predictions: Any = None, references: Any = None, **kwargs: Any) -> None:
        """Add a batch of predictions and references (checked first; see ``evaluate.Metric.add_batch``)."""
        self._check_inputs(predictions, references)
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction: Any = None, reference: Any = None, **kwargs: Any) -> None:
        """Add one prediction and reference (checked first; see ``evaluate.Metric.add``)."""
        self._check_inputs([prediction], [reference])
        super().add(prediction=prediction, reference=reference, **kwargs)

    def _check_inputs(self, predictions: Any, references: Any) -> None:
        if predictions is None or references is None:
            return
        if len(predictions) != len(references):
            raise ValueError(f"{self.name}: {len(predictions)} predictions but {len(references)} references")
        if self.integer_inputs:
            for name, values in (("predictions", predictions), ("references", references)):
                array = np.asarray(values)
                if array.size and (array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)):
                    raise ValueError(
                        f"{self.name}: {name} must be class ids, got non-integer values such as "
                        f"{array[np.mod(array, 1) != 0][0]!r} (take the argmax of the logits first)"
                    )


def _nonempty(name: str, predictions: Sequence) -> None:
    if len(predictions) == 0:
        raise ValueError(f"{name}: no predictions to score (got an empty list)")


# --- classification: accuracy, precision / recall / F1, Matthews correlation -----------------


def _confusion(
    references: np.ndarray, predictions: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None
) -> np.ndarray:
    """Weighted confusion matrix C[true, predicted] over ``labels``; pairs with another label are dropped."""
    index = {label: i for i, label in enumerate(labels.tolist())}
    weights = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    matrix = np.zeros((len(labels), len(labels)))
    for true, pred, weight in zip(references.tolist(), predictions.tolist(), weights):
        if true in index and pred in index:
            matrix[index[true], index[pred]] += weight
    return matrix


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(numerator.shape, float(zero_division))
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def precision_recall_f1(
    predictions: Sequence[int],
    references: Sequence[int],
    labels: Sequence[int] | None = None,
    pos_label: int = 1,
    average: str | None = "binary",
    sample_weight: Sequence[float] | None = None,
    zero_division: float = 0.0,
) -> dict[str, float | list[float]]:
    """Precision, recall and F1 with scikit-learn's conventions.

    ``average``: ``binary`` (the scores of ``pos_label``; the labels present must be at most two),
    ``micro`` (pooled counts; equals accuracy when every label counts), ``macro`` (unweighted mean
    over labels), ``weighted`` (mean weighted by each label's number of references), or ``None``
    (one score per label, in sorted label order). ``labels`` fixes the label set (default: every
    label seen in either list). A 0/0 scores ``zero_division``. F1 is 2TP / (2TP + FP + FN).
    """
    y_pred, y_true = np.asarray(predictions), np.asarray(references)
    present = np.unique(np.concatenate([y_true, y_pred]))
    if average == "binary":
        if len(present) > 2:
            raise ValueError(
                f"average='binary' needs at most two labels, got {present.tolist()}: choose "
                "average='micro', 'macro' or 'weighted' for multiclass data"
            )
        if len(present) == 2 and pos_label not in present:
            raise ValueError(f"pos_label={pos_label} is not one of the labels {present.tolist()}")
        label_set = np.array([pos_label])
    elif average in ("micro", "macro", "weighted", None):
        label_set = present if labels is None else np.asarray(labels)
    else:
        raise ValueError(f"average must be 'binary', 'micro', 'macro', 'weighted' or None, got {average!r}")
    # Every label, so that false positives of labels outside label_set still count against it.
    everything = np.union1d(present, label_set)
    matrix = _confusion(y_true, y_pred, everything, sample_weight)
    rows = [int(np.flatnonzero(everything == label)[0]) for label in label_set]
    tp = matrix.diagonal()[rows]
    predicted = matrix.sum(axis=0)[rows]
    actual = matrix.sum(axis=1)[rows]
    if average == "micro":
        tp, predicted, actual = tp.sum(keepdims=True), predicted.sum(keepdims=True), actual.sum(keepdims=True)
    precision = _safe_divide(tp, predicted, zero_division)
    recall = _safe_divide(tp, actual, zero_division)
    f1 = _safe_divide(2 * tp, predicted + actual, zero_division)
    if average is None:
        return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist()}
    scores = {"precision": precision, "recall": recall, "f1": f1}
    if average == "weighted":
        total = actual.sum()
        if not total:  # no reference carries any of the labels: nothing to weight by
            return {key: float(zero_division) for key in scores}
        return {key: float(value @ (actual / total)) for key, value in scores.items()}
    return {key: float(value.mean()) for key, value in scores.items()}


class Accuracy(_OfflineMetric):
    """Accuracy: the fraction (or, with ``normalize=False``, the weighted count) of exact matches."""

    integer_inputs = True

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        normalize: bool = True,
        sample_weight: Sequence[float] | None = None,
    ) -> dict[str, float]:
        _nonempty(self.name, predictions)
        correct = np.asarray(predictions) == np.asarray(references)
        weights = np.ones(len(correct)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        score = (correct * weights).sum()
        return {"accuracy": float(score / weights.sum() if normalize else score)}


class _PRF(_OfflineMetric):
    integer_inputs = True
    key = "f1"

    def _compute(
        self,
        predictions: list[int],
        references: list[int],
        labels: Sequence[int] | None = None,
        pos_label: int = 1,
        average: str | None = "binary",
        sample_weight: Sequence[float] | None = None,
        zero_division: float = 0.0,
    ) -> dict[str, Any]:
        _nonempty(self.name, predictions)
        scores = precision_recall_f1(predictions, references, labels, pos_label, average, sample_weight, zero_division)
        return {self.key: scores[self.key]}


class Precision(_PRF):
    """Precision TP / (TP + FP), scikit-learn's conventions (see ``precision_recall_f1``)."""

    key = "precision"


class Recall(_PRF):
    """Recall TP / (TP + FN), scikit-learn's conventions (see ``precision_recall_f1``)."""

    key = "recall"


class F1(_PRF):
    """F1, the harmonic mean of precision and recall, scikit-learn's conventions (see ``precision_recall_f1``)."""

    key = "f1"


class MatthewsCorrelation(_OfflineMetric):
    """Matthews correlation coefficient (multiclass: Gorodkin's R_K, as scikit-learn); 0 when undefined."""

    integer_inputs = True

    def _compute(
        self, predictions: list[int], references: list[int], sample_weight: Sequence[float] | None = None
    ) -> dict[str, float]:
        _nonempty(self.name, predictions)
        y_pred, y_true = np.asarray(predictions), np.asarray(references)
        matrix = _confusion(y_true, y_pred, np.union1d(y_true, y_pred), sample_weight)
        t_sum, p_sum = matrix.sum(axis=1), matrix.sum(axis=0)
        samples, correct = matrix.sum(), np.trace(matrix)
        cov_tp = correct * samples - t_sum @ p_sum
        cov_pp = samples**2 - p_sum @ p_sum
        cov_tt = samples**2 - t_sum @ t_sum
        if cov_pp * cov_tt == 0:  # a constant prediction or reference: no correlation to speak of
            return {"matthews_correlation": 0.0}
        return {"matthews_correlation": float(cov_tp / np.sqrt(cov_tt * cov_pp))}


# --- regression: Pearson and Spearman correlation ---------------------------------------------


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the average of the ranks they span (scipy's ``rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = (first[group] + last[group]) / 2 + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(np.clip(x @ y / denominator, -1.0, 1.0)) if denominator else float("nan")


def _p_value(r: float, n: int) -> float:
    """Two-sided p-value of a correlation r over n pairs under the t-distribution (needs scipy)."""
    try:
        from scipy import stats
    except ImportError as error:
        raise ImportError(
            "return_pvalue=True needs scipy (pip install scipy); the correlation itself does not"
        ) from error
    if n < 3 or np.isnan(r):
        return float("nan")
    if abs(r) == 1.0:
        return 0.0
    t = r * np.sqrt((n - 2) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


class _Correlation(_OfflineMetric):
    """A correlation of predictions with references, and its two-sided p-value on request, under
    the result names of the Hub metric it stands in for."""

    features = _SCORES
    key = ""
    pvalue_key = ""

    def _statistic(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def _compute(
        self, predictions: list[float], references: list[float], return_pvalue: bool = False
    ) -> dict[str, float]:
        _nonempty(self.name, predictions)
        x, y = np.asarray(predictions, dtype=float), np.asarray(references, dtype=float)
        r = self._statistic(x, y)
        return {self.key: r, self.pvalue_key: _p_value(r, len(x))} if return_pvalue else {self.key: r}


class Pearsonr(_Correlation):
    """Pearson correlation coefficient (NaN when either side is constant)."""

    key, pvalue_key = "pearsonr", "p-value"

    def _statistic(self, x: np.ndarray, y: np.ndarray) -> float:
        return _pearson(x, y)


class Spearmanr(_Correlation):
    """Spearman rank correlation: Pearson over average ranks (NaN when either side is constant)."""

    key, pvalue_key = "spearmanr", "spearmanr_pvalue"

    def _statistic(self, x: np.ndarray, y: np.ndarray) -> float:
        return _pearson(_average_ranks(x), _average_ranks(y))


# --- sequence labelling: seqeval's entity-level scores ----------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """``B-PER`` -> (``B``, ``PER``); ``O`` -> (``O``, ``_``); a bare ``B`` -> (``B``, ``_``) as in seqeval."""
    return tag[:1], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    return (
        tag in ("B", "S")
        or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities ``(type, first, last)`` (inclusive token indices) of one tag sequence, chunked as
    seqeval's default mode: ``["B-PER", "I-PER", "O", "I-LOC"]`` -> ``[("PER", 0, 1), ("LOC", 3, 3)]``."""
    spans, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = _split_tag(chunk)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            spans.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return spans


class Seqeval(_OfflineMetric):
    """Entity-level precision, recall and F1 of BIO tag sequences, overall and per type (seqeval)."""

    features = _TAGS

    def _compute(
        self, predictions: list[list[str]], references: list[list[str]], zero_division: float = 0.0
    ) -> dict[str, Any]:
        _nonempty(self.name, predictions)
        true_entities: set[tuple[int, str, int, int]] = set()
        pred_entities: set[tuple[int, str, int, int]] = set()
        correct_tokens = total_tokens = 0
        for n, (pred, true) in enumerate(zip(predictions, references)):
            if len(pred) != len(true):
                raise ValueError(f"seqeval: sequence {n} has {len(pred)} predicted tags but {len(true)} reference tags")
            true_entities.update((n, *span) for span in entity_spans(true))
            pred_entities.update((n, *span) for span in entity_spans(pred))
            correct_tokens += sum(p == t for p, t in zip(pred, true))
            total_tokens += len(true)
        hits = true_entities & pred_entities
        by_type = [Counter(entity[1] for entity in entities) for entities in (hits, pred_entities, true_entities)]
        scores: dict[str, Any] = {}
        for type_ in sorted(by_type[1] | by_type[2]):
            hit, predicted, actual = (counts[type_] for counts in by_type)
            precision, recall, f1 = _prf_counts(hit, predicted, actual, zero_division)
            scores[type_] = {"precision": precision, "recall": recall, "f1": f1, "number": actual}
        precision, recall, f1 = _prf_counts(len(hits), len(pred_entities), len(true_entities), zero_division)
        scores.update(
            overall_precision=precision,
            overall_recall=recall,
            overall_f1=f1,
            overall_accuracy=correct_tokens / total_tokens if total_tokens else float(zero_division),
        )
        return scores


def _prf_counts(hits: int, predicted: int, actual: int, zero_division: float) -> tuple[float, float, float]:
    precision = hits / predicted if predicted else float(zero_division)
    recall = hits / actual if actual else float(zero_division)
    f1 = 2 * hits / (predicted + actual) if predicted + actual else float(zero_division)
    return float(precision), float(recall), float(f1)


# --- extractive QA: SQuAD v1.1 exact match and F1 ---------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lowercase, drop punctuation, drop a/an/the, collapse spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of two normalised answers (0 when nothing overlaps, as in v1.1)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


class Squad(_OfflineMetric):
    """SQuAD v1.1 exact match and F1 in percent, each the best over a question's gold answers.

    Predictions are ``{"id", "prediction_text"}``, references ``{"id", "answers": {"text": [...],
    "answer_start": [...]}}``, one of each per question (evaluate stores them as rows side by side),
    matched by ``id``: a prediction whose id has no reference, or the reverse, is an error.
    """

    features = _SQUAD

    def _compute(self, predictions: list[dict], references: list[dict]) -> dict[str, float]:
        _nonempty(self.name, predictions)
        answers = {p["id"]: p["prediction_text"] for p in predictions}
        gold = {r["id"]: r["answers"]["text"] for r in references}
        if set(answers) != set(gold):
            raise ValueError(
                f"squad: prediction and reference ids differ: predictions only {sorted(set(answers) - set(gold))[:5]}, "
                f"references only {sorted(set(gold) - set(answers))[:5]}"
            )
        exact = f1 = 0.0
        for question, texts in gold.items():
            if texts:  # a question without gold answers (SQuAD 2.0's unanswerable) scores 0 in v1.1
                exact += max(float(normalize_answer(answers[question]) == normalize_answer(t)) for t in texts)
                f1 += max(squad_f1(answers[question], t) for t in texts)
        return {"exact_match": 100.0 * exact / len(gold), "f1": 100.0 * f1 / len(gold)}


# --- loading by name --------------------------------------------------------------------------

OFFLINE_METRICS: dict[str, type[evaluate.Metric]] = {
    "accuracy": Accuracy,
    "precision": Precision,
    "recall": Recall,
    "f1": F1,
    "matthews_correlation": MatthewsCorrelation,
    "pearsonr": Pearsonr,
    "spearmanr": Spearmanr,
    "seqeval": Seqeval,
    "squad": Squad,
}


def load(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """The metric called ``name``: bert18's offline implementation when it has one, otherwise
    ``evaluate.load(name, **kwargs)`` (a Hub metric, which needs a network, or a local script).

    Offline metrics keep their inputs in memory unless ``keep_in_memory=False`` or a distributed
    ``num_process`` is given (evaluate then shares them through cache files).
    """
    if name in OFFLINE_METRICS:
        kwargs.setdefault("keep_in_memory", kwargs.get("num_process", 1) == 1)
        return OFFLINE_METRICS[name](**kwargs)
    try:
        return evaluate.load(name, **kwargs)
    except (OSError, ConnectionError, ImportError) as error:
        raise FileNotFoundError(
            f"metric {name!r} is not one of bert18's offline metrics ({', '.join(OFFLINE_METRICS)}), and "
            f"evaluate.load could not fetch it (it needs the Hugging Face Hub, or a local metric script): {error}"
        ) from error

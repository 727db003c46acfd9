"""Extractive question answering (SQuAD v1.1 style) for the fine-tuning recipe.

A context longer than ``max_length`` is read in windows of the context that share ``doc_stride``
tokens (the tokenizer's ``return_overflowing_tokens`` + ``stride``), each ``[CLS] question [SEP]
window [SEP]``, as in BERT and transformers' ``run_qa.py``. Training: a window holding the whole
answer points at its tokens; one without it points at [CLS]. Evaluation: every window of a question
proposes its ``n_best_size`` best starts and ends; the valid pairs (inside the context, end after
start, at most ``max_answer_length`` tokens) are scored start logit + end logit, and the best over
all windows is the answer, cut from the context by the tokens' character offsets.
"""

import collections
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, Trainer

from .. import metrics as bert18_metrics
from .finetune_arguments import FinetuneDataArguments
from .finetune_data import check_texts, default_text_columns, require_columns
from .finetune_tasks import AnswerWindows, TaskData


def _check_answers(dataset: datasets.Dataset, context: str, column: str, split: str) -> None:
    """Each answer is {"text": [...], "answer_start": [...]} and its text is where it says in the context."""
    for row, (answers, text) in enumerate(zip(dataset[column], dataset[context])):
        if not isinstance(answers, dict) or not {"text", "answer_start"} <= set(answers):
            raise ValueError(
                f"{split} row {row}: column {column!r} must be {{'text': [...], 'answer_start': [...]}}, "
                f"got {answers!r}"
            )
        if split == "train" and not answers["text"]:
            raise ValueError(f"train row {row}: column {column!r} has no answer to train on")
        for answer, start in zip(answers["text"], answers["answer_start"]):
            if not isinstance(start, int) or text[start : start + len(answer)] != answer:
                raise ValueError(
                    f"{split} row {row}: answer {answer!r} is not at character {start!r} of column {context!r}"
                )


def _windows(
    tokenizer: Any, dataset: datasets.Dataset, question: str, context: str, data: FinetuneDataArguments
) -> Any:
    return tokenizer(
        list(dataset[question]),
        list(dataset[context]),
        truncation="only_second",
        max_length=data.max_length,
        stride=data.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def prepare_question_answering(
    train: datasets.Dataset, eval_: datasets.Dataset | None, tokenizer: Any, data: FinetuneDataArguments
) -> TaskData:
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("question answering needs a fast tokenizer (character offsets of the tokens)")
    if data.doc_stride >= data.max_length // 2:  # windows must advance past the question and the overlap
        raise ValueError(f"doc_stride {data.doc_stride} must be below half of max_length {data.max_length}")
    question, context = data.text_columns or default_text_columns(
        train, [("question", "context")], "question-answering"
    )
    answers = data.label_column or "answers"
    for split, dataset in (("train", train), ("eval", eval_)):
        if dataset is not None:
            require_columns(dataset, [question, context, answers], split, "question/context/answers")
            check_texts(dataset, [question, context], split)
            _check_answers(dataset, context, answers, split)

    windows = _windows(tokenizer, train, question, context, data)
    starts, ends = [], []
    for i, offsets in enumerate(windows["offset_mapping"]):
        example = windows["overflow_to_sample_mapping"][i]
        gold = train[example][answers]
        first, last = gold["answer_start"][0], gold["answer_start"][0] + len(gold["text"][0])
        in_context = [k for k, s in enumerate(windows.sequence_ids(i)) if s == 1]
        lo, hi = in_context[0], in_context[-1]
        if not (offsets[lo][0] <= first and offsets[hi][1] >= last):
            starts.append(0)  # the answer is not (wholly) in this window: point at [CLS]
            ends.append(0)
            continue
        start = next(k for k in range(lo, hi + 1) if offsets[k][1] > first)
        end = next(k for k in range(hi, lo - 1, -1) if offsets[k][0] < last)
        starts.append(start)
        ends.append(end)
    keep = [k for k in windows if k not in ("offset_mapping", "overflow_to_sample_mapping")]
    train_set = datasets.Dataset.from_dict(
        {**{k: windows[k] for k in keep}, "start_positions": starts, "end_positions": ends}
    )
    windows_of_eval = None
    eval_set = None
    if eval_ is not None:
        eval_windows = _windows(tokenizer, eval_, question, context, data)
        # offsets of non-context tokens become None, so no answer is ever cut from the question
        offsets = [
            [o if s == 1 else None for o, s in zip(row, eval_windows.sequence_ids(i))]
            for i, row in enumerate(eval_windows["offset_mapping"])
        ]
        eval_set = datasets.Dataset.from_dict({k: eval_windows[k] for k in keep})
        windows_of_eval = AnswerWindows(eval_, offsets, eval_windows["overflow_to_sample_mapping"], context, answers)
    return TaskData(train_set, eval_set, DataCollatorWithPadding(tokenizer), answer_windows=windows_of_eval)


def best_answers(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: list,
    window_example: list[int],
    contexts: list[str],
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """The best answer text of each example over all its windows (``""`` when no span is valid)."""
    by_example = collections.defaultdict(list)
    for window, example in enumerate(window_example):
        by_example[example].append(window)
    answers = []
    for example, context in enumerate(contexts):
        best, best_score = "", -np.inf
        for window in by_example[example]:
            window_offsets = offsets[window]
            starts = np.argsort(start_logits[window][: len(window_offsets)])[::-1][:n_best_size]
            ends = np.argsort(end_logits[window][: len(window_offsets)])[::-1][:n_best_size]
            for s in starts:
                for e in ends:
                    if window_offsets[s] is None or window_offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start_logits[window][s] + end_logits[window][e]
                    if score > best_score:
                        best, best_score = context[window_offsets[s][0] : window_offsets[e][1]], score
        answers.append(best)
    return answers


@dataclass
class AnswerEvaluation:
    """Question answering's evaluation: the metrics (``eval_exact_match``, ``eval_f1``) and the best
    answer text of each evaluation row, in order."""

    metrics: dict[str, float]
    answers: list[str]


def evaluate_question_answering(trainer: Trainer, task: TaskData, data: FinetuneDataArguments) -> AnswerEvaluation:
    """SQuAD exact match and F1 (``eval_`` keys) of the trained model's best answers, and the answers."""
    windows = task.answer_windows
    if windows is None or task.eval is None:
        raise ValueError("question answering evaluates an eval split: this task has none (eval_split is unset)")
    output = trainer.predict(task.eval)
    start_logits, end_logits = output.predictions[:2]
    examples = windows.examples
    texts = best_answers(
        start_logits,
        end_logits,
        windows.offsets,
        windows.window_example,
        list(examples[windows.context_column]),
        data.n_best_size,
        data.max_answer_length,
    )
    ids = [str(i) for i in range(len(examples))]
    references = [{"id": i, "answers": a} for i, a in zip(ids, examples[windows.answers_column])]
    predictions = [{"id": i, "prediction_text": t} for i, t in zip(ids, texts)]
    metrics: dict[str, float] = {}
    for name in data.metrics or ["squad"]:
        computed = bert18_metrics.load(name).compute(predictions=predictions, references=references)
        metrics.update({f"eval_{k}": float(v) for k, v in computed.items()})
    return AnswerEvaluation(metrics, texts)


__all__ = ["AnswerEvaluation", "best_answers", "evaluate_question_answering", "prepare_question_answering"]

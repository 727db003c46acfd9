"""Bert18Trainer: evaluation losses for every task mix, and gradient accumulation equal to one big batch."""

import datasets
import pytest
import torch
import transformers
from helpers import ERNIE_TASKS as TASKS
from transformers import TrainingArguments

from bert18 import Bert18Config, Bert18ForPreTraining
from bert18.collators import PretrainingCollator
from bert18.data import SentencePairDataset, prepare_pretraining_dataset
from bert18.training import Bert18Trainer, pretraining_label_names
from bert18.training.callbacks import format_metrics


@pytest.fixture(scope="module")
def setup(minilm_path, corpus):
    datasets.disable_progress_bars()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    documents = prepare_pretraining_dataset(corpus.select(range(40)), tokenizer, TASKS, max_length=64)
    pairs = SentencePairDataset(documents, tokenizer, TASKS, max_length=64)
    config = Bert18Config.from_preset(
        "tiny",
        pretraining_tasks=TASKS,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return tokenizer, pairs, config


def arguments(tmp_path, **overrides) -> TrainingArguments:
    return TrainingArguments(
        str(tmp_path),
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
        data_seed=0,
        **overrides,
    )


def test_evaluation_reports_the_pretraining_loss(setup, tmp_path):
    """The stock Trainer wants every label argument of forward; Bert18Trainer asks for the config's."""
    tokenizer, pairs, config = setup
    model = Bert18ForPreTraining(config)
    collator = PretrainingCollator(tokenizer, config)
    trainer = Bert18Trainer(
        model=model,
        args=arguments(tmp_path, per_device_eval_batch_size=16),
        eval_dataset=torch.utils.data.Subset(pairs, range(32)),
        data_collator=collator,
    )
    assert (
        trainer.label_names
        == pretraining_label_names(config)
        == ["labels", "sentence_distance_label", "capitalization_labels", "token_document_labels"]
    )
    metrics = trainer.evaluate()
    assert 5 < metrics["eval_loss"] < 20  # ln(30522) = 10.3 for MLM plus three small tasks


def test_evaluation_reports_each_tasks_majority_class(setup, tmp_path):
    """``eval_<task>_majority`` is the share of the most frequent label among the task's targets, as
    counted on the collator's own batches of the same rows (what label frequencies alone would score)."""
    tokenizer, pairs, config = setup
    rows = torch.utils.data.Subset(pairs, range(48))
    collator = PretrainingCollator(tokenizer, config)
    trainer = Bert18Trainer(
        model=Bert18ForPreTraining(config),
        args=arguments(tmp_path, per_device_eval_batch_size=16),
        eval_dataset=rows,
        data_collator=collator,
    )
    metrics = trainer.evaluate()
    counts = {task: torch.zeros(0, dtype=torch.long) for task in TASKS}
    for start in range(0, 48, 16):
        batch = collator([rows[i] for i in range(start, start + 16)])
        for task, label in zip(TASKS, pretraining_label_names(config)):
            targets = batch[label][batch[label] != -100]
            counts[task] = torch.cat([counts[task], targets])
    for task, targets in counts.items():
        expected = torch.bincount(targets).max().item() / targets.numel()
        assert metrics[f"eval_{task}_majority"] == pytest.approx(expected), task
    assert 0.3 < metrics["eval_sentence_distance_majority"] < 0.6  # three classes, a third each in expectation
    assert metrics["eval_mlm_majority"] < 0.5
    printed = format_metrics(metrics, TASKS, "eval_").splitlines()
    share = metrics["eval_capitalization_majority"]
    assert printed[TASKS.index("capitalization")].endswith(f"(majority class {share:.1%})")


def test_gradient_accumulation_equals_one_big_batch(setup, tmp_path):
    """2 x 4 accumulated examples move the weights exactly as 1 x 8: every task normalised over the step."""
    tokenizer, pairs, config = setup
    subset = torch.utils.data.Subset(pairs, range(8))
    weights = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = Bert18ForPreTraining(config)
        args = arguments(
            tmp_path / f"run{batch_size}",
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=0.5,
            optim="sgd",
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
        )
        Bert18Trainer(
            model=model, args=args, train_dataset=subset, data_collator=PretrainingCollator(tokenizer, config)
        ).train()
        weights.append({k: v.detach().clone() for k, v in model.named_parameters()})
    for name, value in weights[0].items():
        assert torch.allclose(value, weights[1][name], atol=1e-6), name

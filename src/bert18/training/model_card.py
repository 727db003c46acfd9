"""The model cards (``README.md``) of pretrained and fine-tuned bert18 checkpoints.

Pretraining (``write_model_card``): Hub metadata (the YAML header) ``library_name: transformers``,
``pipeline_tag: fill-mask`` (or ``feature-extraction`` without MLM), tags naming bert18 and the
pretraining tasks, the corpus when it is a Hub dataset, and a ``model-index`` with the final
evaluation loss and accuracy of every task. The body says how to load the model with and without
bert18 installed, and lists the run's facts.

Fine-tuning (``write_finetune_model_card``): the task's pipeline tag, the checkpoint it started from
(``base_model`` when a Hub id), the dataset, and a ``model-index`` with the run's final evaluation
metrics (``all_results.json``); the body tables the same metrics and shows how to load the model.
"""

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainerState

from ..configuration_bert18 import PRETRAINING_TASKS
from ..modeling_bert18 import Bert18PreTrainedModel
from .callbacks import final_task_metrics


def final_metrics(state: TrainerState, tasks: list[str]) -> dict[str, dict[str, float]]:
    """The last logged value of each task's metrics: ``{"eval": {...}, "train": {...}}``."""
    return final_task_metrics(state.log_history, tasks)


def write_model_card(
    output_dir: str | Path,
    model: Bert18PreTrainedModel,
    state: TrainerState,
    corpus: str = "builtin",
    recipe: str | None = None,
    model_name: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: list[str] | str | None = None,
    **_: Any,
) -> Path:
    """Write ``README.md`` into ``output_dir`` and return its path."""
    config = model.config
    tasks = list(config.pretraining_tasks)
    name = model_name or Path(output_dir).resolve().name
    metrics = final_metrics(state, tasks)
    hub_dataset = corpus if corpus != "builtin" and not Path(corpus).exists() else None
    dataset_name = hub_dataset or (
        "Python standard-library documentation (bert18 built-in corpus)" if corpus == "builtin" else Path(corpus).name
    )
    results = [
        EvalResult(
            task_type=task,
            task_name=PRETRAINING_TASKS[task].title,
            dataset_type=hub_dataset or "bert18-corpus",
            dataset_name=dataset_name,
            dataset_split="held-out documents",
            metric_type=metric,
            metric_name=f"{task} {metric}",
            metric_value=round(value, 4),
        )
        for key, value in metrics["eval"].items()
        for task, metric in [key.rsplit("_", 1)]
        if metric != "majority"  # a property of the held-out labels, not a result of the model
    ]
    extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="fill-mask" if "mlm" in tasks else "feature-extraction",
        tags=["bert18", "pretraining", *tasks, *extra_tags],
        datasets=[hub_dataset] if hub_dataset else None,
        language=language,
        license=license,
        model_name=name,
        eval_results=results or None,
    )
    card = ModelCard(_body(data, name, config, tasks, corpus, recipe, state, metrics))
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def _metric_rows(metrics: dict[str, dict[str, float]], tasks: list[str]) -> str:
    rows = [
        "| task | train loss | train accuracy | eval loss | eval accuracy | eval majority class |",
        "|---|---|---|---|---|---|",
    ]
    for task in tasks:
        values = [
            metrics[split].get(f"{task}_{metric}") for split in ("train", "eval") for metric in ("loss", "accuracy")
        ] + [metrics["eval"].get(f"{task}_majority")]
        cells = [("-" if v is None else f"{v:.4f}") for v in values]
        rows.append(f"| {PRETRAINING_TASKS[task].title} | {' | '.join(cells)} |")
    return "\n".join(rows)


def _body(
    data: ModelCardData,
    name: str,
    config: Any,
    tasks: list[str],
    corpus: str,
    recipe: str | None,
    state: TrainerState,
    metrics: dict[str, dict[str, float]],
) -> str:
    auto = "AutoModelForMaskedLM" if "mlm" in tasks else "AutoModel"
    sharing = "" if config.layer_sharing == "none" else f", {config.layer_sharing} layers shared"
    factorized = "" if config.embedding_size in (None, config.hidden_size) else f", embeddings {config.embedding_size}"
    return f"""---
{data.to_yaml()}
---

# {name}

A BERT-family encoder pretrained with [bert18](https://pypi.org/project/bert18/):
{config.num_hidden_layers} layers, hidden size {config.hidden_size}, {config.num_attention_heads} heads,
vocabulary {config.vocab_size}{factorized}{sharing}, {config.position_embedding_type} positions.

Pretraining tasks: {", ".join(PRETRAINING_TASKS[t].title for t in tasks)}.
Corpus: {corpus}. Steps: {state.global_step} (epoch {state.epoch or 0:.2f}).{f" Recipe: `{recipe}`." if recipe else ""}

## Metrics at the end of pretraining

{_metric_rows(metrics, tasks)}

Accuracies are over the predicted targets of each task ({", ".join(PRETRAINING_TASKS[t].label for t in tasks)});
the majority class is the share of the most frequent label among the same held-out targets, what a model that
learnt only the label frequencies would score.

## Use

```python
import bert18  # optional: without it, pass trust_remote_code=True and the code shipped here is used
from transformers import AutoTokenizer, {auto}

tokenizer = AutoTokenizer.from_pretrained("{name}")
model = {auto}.from_pretrained("{name}", trust_remote_code=True)
```

For a downstream task, load a head on the encoder: `AutoModelForSequenceClassification`,
`AutoModelForTokenClassification`, `AutoModelForQuestionAnswering`, `AutoModelForMultipleChoice`.
"""


# The fine-tuning tasks' Hub pipeline tags and Auto classes (multiple choice has no pipeline).
FINETUNE_PIPELINES = {
    "sequence-classification": ("text-classification", "AutoModelForSequenceClassification"),
    "token-classification": ("token-classification", "AutoModelForTokenClassification"),
    "question-answering": ("question-answering", "AutoModelForQuestionAnswering"),
    "multiple-choice": (None, "AutoModelForMultipleChoice"),
}
# Timings and counters the Trainer reports next to the metrics: not results of the model.
_NOT_METRICS = ("_runtime", "_per_second", "_samples", "epoch")


def evaluation_results(metrics: dict[str, Any]) -> dict[str, float]:
    """The evaluation metrics of a run (``eval_accuracy`` -> ``accuracy``), timings and counters left out."""
    return {
        key.removeprefix("eval_"): float(value)
        for key, value in metrics.items()
        if key.startswith("eval_") and isinstance(value, int | float) and not key.endswith(_NOT_METRICS)
    }


def write_finetune_model_card(
    output_dir: str | Path,
    state: TrainerState,
    metrics: dict[str, Any],
    task: str,
    base_model: str,
    dataset: str,
    dataset_on_hub: bool = False,
    mode: str = "full",
    recipe: str | None = None,
    model_name: str | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: list[str] | str | None = None,
) -> Path:
    """Write the ``README.md`` of a fine-tuned model into ``output_dir`` and return its path.

    ``metrics`` are the run's final ones (``all_results.json``); its ``eval_`` entries become the card's
    ``model-index`` and its table. ``base_model`` enters the Hub metadata only when it is no local
    folder, ``dataset`` only with ``dataset_on_hub`` (a file or a built-in dataset is named in the body)."""
    if task not in FINETUNE_PIPELINES:
        raise ValueError(f"task must be one of {', '.join(FINETUNE_PIPELINES)}; got {task!r}")
    pipeline, auto = FINETUNE_PIPELINES[task]
    name = model_name or Path(output_dir).resolve().name
    results = evaluation_results(metrics)
    hub_base = base_model if not Path(base_model).exists() else None
    hub_dataset = dataset if dataset_on_hub else None
    extra_tags = [tags] if isinstance(tags, str) else list(tags or [])
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=pipeline,
        tags=["bert18", "fine-tuned", task, *extra_tags],
        base_model=hub_base,
        datasets=[hub_dataset] if hub_dataset else None,
        language=language,
        license=license,
        model_name=name,
        eval_results=[
            EvalResult(
                task_type=pipeline or task,
                dataset_type=hub_dataset or dataset,
                dataset_name=dataset,
                metric_type=metric,
                metric_name=metric,
                metric_value=round(value, 4),
            )
            for metric, value in results.items()
        ]
        or None,
    )
    recipe_note = f" Recipe: `{recipe}`." if recipe else ""
    rows = "\n".join(f"| {metric} | {value:.4f} |" for metric, value in results.items()) or "| (no evaluation) | - |"
    body = f"""---
{data.to_yaml()}
---

# {name}

`{base_model}` fine-tuned with [bert18](https://pypi.org/project/bert18/) for {task} on `{dataset}`
({mode} fine-tuning). Steps: {state.global_step} (epoch {state.epoch or 0:.2f}).{recipe_note}

## Evaluation at the end of fine-tuning

| metric | value |
|---|---|
{rows}

## Use

```python
import bert18  # optional: without it, pass trust_remote_code=True and the code shipped here is used
from transformers import AutoTokenizer, {auto}

tokenizer = AutoTokenizer.from_pretrained("{name}")
model = {auto}.from_pretrained("{name}", trust_remote_code=True)
```
"""
    path = Path(output_dir) / "README.md"
    ModelCard(body).save(path)
    return path


__all__ = ["FINETUNE_PIPELINES", "evaluation_results", "final_metrics", "write_finetune_model_card", "write_model_card"]

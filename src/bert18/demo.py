"""`bert18 demo` / `make demo`: the whole transfer-learning loop, offline, on a CPU, in minutes.

1. Builds the downstream task of the built-in corpus (which standard-library module a passage
   documents) and cuts its test passages out of the pretraining text.
2. Runs the ``tiny-demo`` pretraining recipe on the rest: trains a WordPiece vocabulary, pretrains a
   tiny bert18 with ERNIE's knowledge-masked language model and capitalization task under the HF
   Trainer, prints each task's held-out loss and accuracy beside its majority class and writes their
   curves.
3. Shows fill-mask predictions of the pretrained model on cloze sentences of the test passages
   (``FILL_MASK_CLOZES``: never read in pretraining, each hiding a content word), unfiltered.
4. Fine-tunes it on the downstream task with the ``finetune-modules`` fine-tuning recipe (what
   ``bert18 finetune finetune-modules`` runs) and, with the same recipe, seeds and hyper-parameters,
   the same architecture from random weights (the recipe's ``from_scratch: true``): test loss,
   accuracy and macro-F1 side by side over a few fine-tuning seeds, once with every labelled passage
   and once with 8 per module (``LABEL_BUDGETS``). Each budget ends with the gain on every seed beside
   the seed-to-seed spread (``seed_spread``). With 80
   test passages one passage is 1.25 accuracy points; the test loss (cross-entropy on every passage)
   is the steadier measure.
"""

import contextlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer

from .data import builtin_corpus
from .data.downstream import module_classification, remove_passages
from .modeling_bert18 import Bert18ForMaskedLM
from .training import parse_finetune_recipe, parse_recipe, run_finetuning, run_pretraining

FINETUNE_RECIPE = "finetune-modules"
STARTS = {"pretrained": False, "random start": True}  # arm -> the recipe's from_scratch
# Fine-tuning label budgets: name -> (labelled training passages per module, None for all 30; epochs). With
# every label the random start catches up on some seeds (this task is keywords, learnt from 240 passages);
# with the first 8 per module (the same 64 on every seed) it has no lucky seeds, and the pretrained start
# leads on every seed by more than the spread. 80 epochs over 64 passages are 320 updates, more than the
# 225 of 15 over 240: both starts gain from 40 to 80 (docs/evidence.md, section 1).
LABEL_BUDGETS: dict[str, tuple[int | None, float]] = {"all labels": (None, 15), "8 per module": (8, 80)}
# Cloze sentences for fill-mask, each with the word it hides: one sentence of each module's test
# passages (cut out of the pretraining text, so the model never read them), the hidden word a
# content word the tokenizer keeps whole. Chosen before measuring any recipe on them; the answers
# are the pipeline's top 5, unfiltered.
FILL_MASK_CLOZES = {
    "Return an ASCII-only representation of an [MASK].": "object",  # builtins
    "This is necessary to compare [MASK] with unknown or inconsistent encoding.": "files",  # difflib
    "The test runner's display [MASK] can be controlled in two ways.": "output",  # doctest
    "Return true if the object is a code [MASK].": "object",  # inspect
    "Log a [MASK] with severity 'ERROR' on the root logger.": "message",  # logging
    "Return a duplicate of a file [MASK].": "descriptor",  # posix
    "Convert data to floats and compute the arithmetic [MASK].": "mean",  # statistics
    "At runtime, functions marked this way should return a [MASK].": "boolean",  # typing
}
FILL_MASK_PROMPTS = list(FILL_MASK_CLOZES)


def _step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}", flush=True)


def pretraining_corpus(output_dir: Path, task: datasets.DatasetDict) -> Path:
    """The built-in corpus without the downstream test passages, as a JSON-lines file."""
    path = output_dir / "pretraining-corpus.jsonl"
    remove_passages(builtin_corpus(), task["test"]).select_columns(["text"]).to_json(path, lines=True)
    return path


def fill_mask(model_dir: Path, prompts: Sequence[str] = FILL_MASK_PROMPTS) -> dict[str, list[str]]:
    """Top-5 predictions for each prompt, with the model loaded through ``AutoModelForMaskedLM``."""
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    if not isinstance(model, Bert18ForMaskedLM):
        raise RuntimeError(f"AutoModelForMaskedLM gave {type(model).__name__}, not Bert18ForMaskedLM")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {prompt: [guess["token_str"] for guess in fill(prompt, top_k=5)] for prompt in prompts}


def finetune(
    model_dir: str | os.PathLike,
    output_dir: Path,
    seed: int,
    epochs: float,
    learning_rate: float,
    from_scratch: bool = False,
    **overrides: Any,
) -> dict[str, float]:
    """Fine-tune ``model_dir`` on the module task with the ``finetune-modules`` recipe (from random weights
    of its architecture with ``from_scratch``); test loss, accuracy and macro-F1. ``overrides`` are more
    recipe keys (``mode="partial"``, ``freeze_layers=3``, ...). What the recipe prints goes to
    ``finetuning.log`` next to ``output_dir``, so the demo's comparison stays one line a run."""
    recipe = parse_finetune_recipe(
        FINETUNE_RECIPE,
        **overrides,
        model_name_or_path=str(model_dir),
        from_scratch=from_scratch,
        output_dir=str(output_dir),
        overwrite_output_dir=True,
        seed=seed,
        data_seed=seed,
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(output_dir.parent / "finetuning.log", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        metrics = run_finetuning(recipe)["metrics"]
    return {"loss": metrics["eval_loss"], "accuracy": metrics["eval_accuracy"], "macro_f1": metrics["eval_macro_f1"]}


def compare_starts(
    pretrained_dir: Path,
    output_dir: Path,
    seeds: Sequence[int],
    learning_rate: float,
    per_module: int | None,
    epochs: float,
    budget: str,
) -> dict[str, Any]:
    """Fine-tune both starts on each seed with ``per_module`` labelled passages per module (None: all) and
    print each run, the means, and the gain per seed beside the spread; figures as ``run_demo`` returns."""
    labelled = "every labelled passage" if per_module is None else f"{per_module} labelled passages per module"
    print(f"  {budget}: {labelled}, {epochs:g} epochs")
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in STARTS}
    for run_seed in seeds:
        for name, from_scratch in STARTS.items():
            folder = output_dir / f"finetuned-{budget.replace(' ', '-')}" / name.replace(" ", "-") / f"seed-{run_seed}"
            runs[name].append(
                finetune(
                    pretrained_dir,
                    folder,
                    run_seed,
                    epochs,
                    learning_rate,
                    from_scratch,
                    train_samples_per_label=per_module,
                )
            )
            figures = runs[name][-1]
            print(
                f"    seed {run_seed}  {name:<13} test loss {figures['loss']:.3f}   accuracy {figures['accuracy']:6.1%}"
                f"   macro-F1 {figures['macro_f1']:.3f}",
                flush=True,
            )
    results: dict[str, Any] = {
        name: {**{key: float(np.mean([run[key] for run in done])) for key in done[0]}, "runs": done}
        for name, done in runs.items()
    }
    for name in STARTS:
        figures = results[name]
        print(
            f"    mean    {name:<13} test loss {figures['loss']:.3f}   accuracy {figures['accuracy']:6.1%}"
            f"   macro-F1 {figures['macro_f1']:.3f}"
        )
    accuracy = {name: [run["accuracy"] for run in runs[name]] for name in STARTS}
    results["gains"] = [p - r for p, r in zip(accuracy["pretrained"], accuracy["random start"])]
    results["spread"] = seed_spread(accuracy)
    loss_drop = results["random start"]["loss"] - results["pretrained"]["loss"]
    print(
        f"    pretraining lowers the test loss by {loss_drop:.3f}; accuracy gain per seed "
        f"{' '.join(f'{gain * 100:+.1f}' for gain in results['gains'])} points, seed-to-seed spread "
        f"{results['spread'] * 100:.1f}"
    )
    return results


def seed_spread(runs: Mapping[str, Sequence[float]]) -> float:
    """The seed-to-seed spread of a comparison: the larger of its starts' sample standard deviations over
    the fine-tuning seeds (0.0 with one seed). A gain above it on every seed is no luck of a seed."""
    return max((float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0) for scores in runs.values())


def run_demo(
    output_dir: str | os.PathLike = "demo-output",
    steps: int | None = None,
    seed: int = 0,
    finetune_learning_rate: float = 3e-4,
    finetune_seeds: int = 3,
    label_budgets: Mapping[str, tuple[int | None, float]] = LABEL_BUDGETS,
) -> dict[str, Any]:
    """Run the four steps above, printing as it goes (``steps``: pretraining steps, default the
    ``tiny-demo`` recipe's); returns the measured figures (fine-tuning, per label budget: each start's
    means over ``finetune_seeds`` seeds from ``seed`` on with each run's figures under ``runs``, the
    accuracy ``gains`` per seed and their ``spread``)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()  # the steps print what matters; warnings stay on

    _step(1, "the downstream task: which standard-library module does a passage document?")
    task = module_classification()
    names = task["train"].features["label"].names
    corpus_file = pretraining_corpus(output_dir, task)
    print(
        f"{len(task['train'])} training and {len(task['test'])} test passages of {len(names)} modules "
        f"({', '.join(names)}); chance is {1 / len(names):.1%}"
    )
    print(f"pretraining text (the built-in corpus minus the test passages) -> {corpus_file}")

    pretrained_dir = output_dir / "pretrained"
    recipe = parse_recipe(
        "tiny-demo",
        output_dir=str(pretrained_dir),
        corpus=str(corpus_file),
        seed=seed,
        overwrite_output_dir=True,
        disable_tqdm=True,
        **({} if steps is None else {"max_steps": steps}),  # None: the recipe's
    )
    _step(
        2,
        f"pretraining a tiny bert18 ({' + '.join(recipe.model.pretraining_tasks or ['mlm'])}, "
        f"{recipe.masking.masking} masking) for {recipe.training.max_steps} steps of "
        f"{recipe.training.per_device_train_batch_size} (recipe tiny-demo)",
    )
    pretraining = run_pretraining(recipe)

    _step(3, "fill-mask with the pretrained model (AutoModelForMaskedLM)")
    guesses = fill_mask(pretrained_dir)
    for prompt, top in guesses.items():
        print(f"  {prompt!r} -> {top}   (the passage says {FILL_MASK_CLOZES[prompt]!r})")

    _step(4, "fine-tuning on the module task: pretrained weights vs the same model from random weights")
    seeds = range(seed, seed + finetune_seeds)
    print(
        f"  recipe {FINETUNE_RECIPE} (from_scratch: true for the random start), same seeds "
        f"({', '.join(map(str, seeds))}) and hyper-parameters for both: learning rate "
        f"{finetune_learning_rate:g}, batch 16"
    )
    results = {
        budget: compare_starts(pretrained_dir, output_dir, seeds, finetune_learning_rate, per_module, epochs, budget)
        for budget, (per_module, epochs) in label_budgets.items()
    }
    print(
        f"\nall outputs in {output_dir.resolve()}: pretrained/ (model, tokenizer, model card, task_curves.png, "
        "TensorBoard runs/), finetuned-*/ (a folder per label budget, start and seed), pretraining-corpus.jsonl"
    )
    return {
        "pretraining": pretraining.get("metrics", {}),
        "fill_mask": guesses,
        "finetuning": results,
        "plot": pretraining.get("plot"),
    }

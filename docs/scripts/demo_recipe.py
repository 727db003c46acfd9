"""Measure a pretraining recipe the way `make demo` uses it: pretrain, fill-mask, fine-tune against random weights.

    python docs/scripts/demo_recipe.py src/bert18/recipes/tiny-demo.yaml [--key=value ...] [--seeds 3]
        [--budgets=all:15,8:80] [--json out.json]

Every ``--key=value`` after the recipe overrides a recipe key, exactly as on the ``bert18 pretrain``
command line (``--mlm_probability=0.3``, ``'--config_overrides={"hidden_dropout_prob": 0.0}'``), so one
change at a time can be measured against the packaged recipe. The script runs the demo's own code
(``bert18.demo``) for its four steps: the module-classification task's test passages are cut out of
the built-in corpus, the recipe pretrains on the rest (``bert18.training.build_pretraining``, the code
under ``bert18 pretrain``), fill-mask answers are read with transformers' pipeline, and the
pretrained model and the same architecture from random weights are fine-tuned by the
``finetune-modules`` recipe (``bert18.demo.compare_starts``, what ``make demo`` runs) with the same
seeds and hyper-parameters (the demo's: learning rate 3e-4, batch 16, linear decay), under each label
budget of ``--budgets`` (comma-separated ``PER_MODULE:EPOCHS``, ``all`` for every labelled passage; default the demo's
``bert18.demo.LABEL_BUDGETS``: all for 15 epochs, 8 per module for 80). It prints

- each pretraining task's held-out accuracy beside its majority class (the share of the most
  frequent label among the held-out targets, drawn by the same collator: the accuracy of a model
  that learnt nothing but the label frequencies; for MLM, the most frequent target token), with
  the held-out accuracy at each evaluation during pretraining;
- for a recipe with tasks on sentence pairs, the same over 10 draws of the held-out pairs (one draw
  is 107 sentence pairs: too few to tell a few points from chance);
- the top-5 fill-mask answers for the demo's cloze prompts (``bert18.demo.FILL_MASK_CLOZES``), how
  many start with a content word (``FUNCTION_WORDS`` counts, it never filters) and how many have the
  hidden word in their top 5;
- per label budget, the test accuracy and loss per fine-tuning seed, pretrained and random, the gain on
  each seed and the seed-to-seed spread (``bert18.demo.seed_spread``; ``--seeds 0``: no fine-tuning,
  the pretraining figures alone).

Run it with ``OMP_NUM_THREADS=1`` on a shared machine; on one core a run of the packaged recipe
takes about 8 minutes (pretraining ~5.5, fine-tuning 2 budgets x 2 starts x 3 seeds ~2.5).
"""

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer

from bert18.configuration_bert18 import PRETRAINING_TASKS
from bert18.data.downstream import module_classification
from bert18.demo import FILL_MASK_CLOZES, LABEL_BUDGETS, compare_starts, fill_mask, pretraining_corpus
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining

# Function words and punctuation: a fill-mask answer among them is no content word of the corpus.
# Used to count the answers, never to filter them (the answers printed are the pipeline's top 5).
FUNCTION_WORDS = frozenset(
    """a an the this that these those it its they them their he she we you i is are was were be been
    being am has have had do does did will would shall should can could may might must of in on at by
    for with from to into onto over under about as than then so such and or but nor not no if when
    while where which who whom whose what how why there here all any each some one other same only
    also just very more most""".split()
)


# Recipe keys for a measuring run: a fresh folder each time, no progress bar, report, checkpoint or plot.
QUIET_RUN = {"overwrite_output_dir": True, "disable_tqdm": True, "report_to": [], "save_strategy": "no", "plot": False}


def is_content_word(answer: str) -> bool:
    """A word of letters or digits (not a continuation piece) and not a function word."""
    return answer.isalnum() and answer.lower() not in FUNCTION_WORDS


def majority_baselines(run) -> dict[str, float]:
    """Each task's majority-class share among the held-out targets, drawn by the run's own collator."""
    counts: dict[str, Counter] = {task: Counter() for task in run.config.pretraining_tasks}
    collator = run.trainer.data_collator
    rows = [dict(row) for row in run.eval_dataset]
    for start in range(0, len(rows), 64):
        batch = collator(rows[start : start + 64])
        for task in counts:
            labels = batch[PRETRAINING_TASKS[task].label]
            counts[task].update(labels[labels != -100].tolist())
    return {task: max(c.values()) / sum(c.values()) for task, c in counts.items() if c}


def hidden_word_ranks(model_dir: Path) -> dict[str, int]:
    """Where each cloze's hidden word stands among the model's answers (0: first), a graded measure of
    fill-mask beneath the top 5: a model that uses the context moves the hidden word up."""
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ranks = {}
    for prompt, hidden in FILL_MASK_CLOZES.items():
        encoded = tokenizer(prompt, return_tensors="pt")
        position = int((encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0])
        with torch.no_grad():
            scores = model(**encoded).logits[0, position]
        ranks[prompt] = int((scores > scores[tokenizer.convert_tokens_to_ids(hidden)]).sum())
    return ranks


def held_out_draws(run, draws: int) -> dict[str, tuple[float, float]]:
    """Each task's held-out accuracy and majority share over ``draws`` pairings of the held-out documents
    (epochs 0, 1, ... of the held-out pair dataset): 107 pairs are one draw, too few to tell 40% from
    37% apart, so the pairs are drawn again. Runs after training: it changes nothing the
    model saw. Returns {task: (mean accuracy over the draws, majority share of all their targets)}."""
    return accuracy_over_draws(run, run.eval_dataset, range(draws))


def accuracy_over_draws(
    run, dataset, epochs: Iterable[int], rows: int | None = None, new_masks: bool = False
) -> dict[str, tuple[float, float]]:
    """Each task's accuracy and majority share over the pairings ``epochs`` of a pair ``dataset`` (its
    ``set_epoch`` draws the pairs), evaluated by the run's trainer and collator; ``rows``: that many rows
    of each draw, picked at random (all when None); ``new_masks``: the collator draws its masks for the
    same epochs too (else it keeps the epoch training left it at), and is set back afterwards. Returns
    {task: (mean accuracy over the draws, majority share of all their targets)}; the trainer's own
    evaluation always draws epoch 0."""
    accuracy: dict[str, list[float]] = {task: [] for task in run.config.pretraining_tasks}
    counts: dict[str, Counter] = {task: Counter() for task in accuracy}
    collator = run.trainer.data_collator
    trained_epoch = collator.epoch
    for epoch in epochs:
        dataset.set_epoch(epoch)
        if new_masks:
            collator.set_epoch(epoch)
        picked = range(len(dataset)) if rows is None else np.random.default_rng(epoch).permutation(len(dataset))[:rows]
        drawn = [dict(dataset[int(i)]) for i in picked]
        metrics = run.trainer.evaluate(eval_dataset=drawn, metric_key_prefix="draw")
        for task in accuracy:
            accuracy[task].append(metrics[f"draw_{task}_accuracy"])
        for start in range(0, len(drawn), 64):
            batch = collator(drawn[start : start + 64])
            for task in counts:
                labels = batch[PRETRAINING_TASKS[task].label]
                counts[task].update(labels[labels != -100].tolist())
    collator.set_epoch(trained_epoch)
    return {task: (float(np.mean(accuracy[task])), max(c.values()) / sum(c.values())) for task, c in counts.items()}


def measure(
    recipe_path: str,
    overrides: list[str],
    seeds: int = 3,
    budgets: dict[str, tuple[int | None, float]] = LABEL_BUDGETS,
) -> dict:
    """Pretrain with the recipe (plus ``--key=value`` overrides) and measure it as described above;
    ``seeds=0`` stops after fill-mask (the pretraining figures alone)."""
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="demo-recipe-"))
    task = module_classification()
    model_dir = work / "pretrained"
    recipe = parse_recipe(
        recipe_path,
        overrides,
        output_dir=str(model_dir),
        corpus=str(pretraining_corpus(work, task)),
        **QUIET_RUN,
    )
    start = time.perf_counter()
    run = build_pretraining(recipe)
    majority = majority_baselines(run)
    run.trainer.train()
    metrics = run.trainer.evaluate()
    run.trainer.save_model()
    pretrain_seconds = time.perf_counter() - start
    held_out = {name: metrics.get(f"eval_{name}_accuracy") for name in run.config.pretraining_tasks}
    curves = {  # the held-out accuracies at each evaluation during pretraining
        name: [
            (entry["step"], entry[f"eval_{name}_accuracy"])
            for entry in run.trainer.state.log_history
            if f"eval_{name}_accuracy" in entry
        ]
        for name in run.config.pretraining_tasks
    }
    draws = held_out_draws(run, 10) if hasattr(run.eval_dataset, "set_epoch") else {}
    guesses = fill_mask(model_dir)
    ranks = hidden_word_ranks(model_dir)

    # the demo's fine-tuning (bert18.demo.compare_starts): both starts, same seeds, each label budget
    start = time.perf_counter()
    finetuning = {
        budget: compare_starts(model_dir, work, range(seeds), 3e-4, per_module, epochs, budget)
        for budget, (per_module, epochs) in (budgets.items() if seeds else ())
    }
    finetune_seconds = time.perf_counter() - start
    return {
        "overrides": overrides,
        "held_out_accuracy": held_out,
        "majority": majority,
        "curves": curves,
        "held_out_10_draws": draws,
        "fill_mask": guesses,
        "content_first": sum(is_content_word(top[0]) for top in guesses.values()),
        "hidden_word_ranks": ranks,
        "hidden_word_in_top5": sum(FILL_MASK_CLOZES[prompt] in top for prompt, top in guesses.items()),
        "finetuning": finetuning,
        "pretrain_seconds": pretrain_seconds,
        "finetune_seconds": finetune_seconds,
    }


def parse_budgets(values: str) -> dict[str, tuple[int | None, float]]:
    """Comma-separated ``PER_MODULE:EPOCHS`` items (``all:15,8:80``) as label budgets."""
    budgets = {}
    for value in values.split(","):
        per_module, _, epochs = value.partition(":")
        try:
            valid = (per_module == "all" or int(per_module) > 0) and float(epochs) > 0
        except ValueError:
            valid = False
        if not valid:
            raise SystemExit(f"--budgets: {value!r} is not PER_MODULE:EPOCHS, both positive (all:15,8:80)")
        name = "all labels" if per_module == "all" else f"{per_module} per module"
        budgets[f"{name}, {float(epochs):g} epochs"] = (None if per_module == "all" else int(per_module), float(epochs))
    return budgets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("recipe")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds (0, 1, ...); 0: pretraining only")
    parser.add_argument("--budgets", help="label budgets, PER_MODULE:EPOCHS,... (default: the demo's all:15,8:80)")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--label", default="", help="a name for this run in the printed line")
    args, overrides = parser.parse_known_args()
    result = measure(args.recipe, overrides, args.seeds, parse_budgets(args.budgets) if args.budgets else LABEL_BUDGETS)
    result["label"] = args.label
    held_out, majority, guesses = (result[k] for k in ("held_out_accuracy", "majority", "fill_mask"))
    for name in held_out:
        curve = " ".join(f"{step}: {value:.3f}" for step, value in result["curves"][name])
        print(
            f"{name:<24} held-out accuracy {held_out[name]:.3f}  majority class {majority.get(name, 0):.3f}"
            f"  (during pretraining {curve})"
        )
    for name, (accuracy, share) in result["held_out_10_draws"].items():
        print(f"{name:<24} over 10 draws of the held-out pairs: accuracy {accuracy:.3f}  majority class {share:.3f}")
    for prompt, top in guesses.items():
        hidden, rank = FILL_MASK_CLOZES[prompt], result["hidden_word_ranks"][prompt]
        print(f"  {prompt!r} -> {top}  (hidden: {hidden!r}, ranked {rank + 1})")
    summary = (
        f"SUMMARY {args.label or ' '.join(overrides) or 'recipe'}: mlm {held_out.get('mlm', 0):.3f} | "
        + " ".join(f"{t} {held_out[t]:.3f}/{majority.get(t, 0):.3f}" for t in held_out if t != "mlm")
    )
    if result["held_out_10_draws"]:
        draws = result["held_out_10_draws"].items()
        summary += " | 10 draws " + " ".join(f"{t} {a:.3f}/{m:.3f}" for t, (a, m) in draws)
    summary += (
        f" | fill: {result['content_first']}/{len(guesses)} content words first, "
        f"{result['hidden_word_in_top5']}/{len(guesses)} hidden word in top 5, median rank "
        f"{np.median(list(result['hidden_word_ranks'].values())) + 1:.0f} {[top[0] for top in guesses.values()]}"
    )
    for budget, figures in result["finetuning"].items():
        accuracy = {
            start: [run["accuracy"] for run in figures[start]["runs"]] for start in ("pretrained", "random start")
        }
        summary += (
            f" | {budget}: pretrained {' / '.join(f'{a:.1%}' for a in accuracy['pretrained'])}"
            f" random {' / '.join(f'{a:.1%}' for a in accuracy['random start'])}"
            f" loss {figures['pretrained']['loss']:.3f} vs {figures['random start']['loss']:.3f}"
            f" gains {' '.join(f'{g * 100:+.1f}' for g in figures['gains'])} spread {figures['spread'] * 100:.1f}"
        )
    print(summary + f" | {result['pretrain_seconds']:.0f}s + {result['finetune_seconds']:.0f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())

"""Measure a pretraining recipe the way `make demo` uses it: pretrain, fill-mask, fine-tune against random weights.

    python docs/scripts/demo_recipe.py src/bert18/recipes/tiny-demo.yaml [--key=value ...] [--seeds 3] [--json out.json]

Every ``--key=value`` after the recipe overrides a recipe key, exactly as on the ``bert18 pretrain``
command line (``--mlm_probability=0.3``, ``--config_overrides={hidden_dropout_prob: 0.0}``), so one
change at a time can be measured against the packaged recipe. The script reproduces the demo's four
steps: the module-classification task's test passages are cut out of the built-in corpus, the recipe
pretrains on the rest (``bert18.training.build_pretraining``, the code under ``bert18 pretrain``),
fill-mask answers are read with transformers' pipeline, and the pretrained model and the same
architecture from random weights are fine-tuned with the same seeds and hyper-parameters (the
demo's: learning rate 3e-4, 15 epochs, batch 16, linear decay). It prints

- each pretraining task's held-out accuracy beside its majority class (the share of the most
  frequent label among the held-out targets, drawn by the same collator: the accuracy of a model
  that learnt nothing but the label frequencies; for MLM, the most frequent target token);
- the top-5 fill-mask answers for the demo's three prompts;
- the test accuracy and loss per fine-tuning seed, pretrained and random, and their differences.

Run it with ``OMP_NUM_THREADS=1`` on a shared machine; on one core a run of the packaged recipe
takes about 6 minutes (pretraining ~4, fine-tuning 2 x 3 seeds ~2).
"""

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, TrainingArguments

from bert18.configuration_bert18 import PRETRAINING_TASKS
from bert18.data import builtin_corpus
from bert18.data.downstream import module_classification, remove_passages
from bert18.modeling_bert18 import Bert18ForSequenceClassification
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining

PROMPTS = [
    "Return a new [MASK] containing the items of the list.",
    "Raise a [MASK] if the file does not exist.",
    "The default value of the argument is [MASK].",
]


def majority_baselines(run) -> dict[str, float]:
    """Each task's majority-class share among the held-out targets, drawn by the run's own collator."""
    counts: dict[str, Counter] = {task: Counter() for task in run.config.pretraining_tasks}
    collator = run.trainer.data_collator
    rows = [dict(row) for row in run.eval_dataset]
    for start in range(0, len(rows), 64):
        batch = collator(rows[start : start + 64])
        for task in counts:
            labels = batch[PRETRAINING_TASKS[task][0]]
            counts[task].update(labels[labels != -100].tolist())
    return {task: max(c.values()) / sum(c.values()) for task, c in counts.items() if c}


def fill_mask(model_dir: Path) -> dict[str, list[str]]:
    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {p: [g["token_str"] for g in fill(p, top_k=5)] for p in PROMPTS}


def finetune(
    model,
    tokenizer,
    task: datasets.DatasetDict,
    seed: int,
    output_dir: str,
    epochs: float = 15,
    learning_rate: float = 3e-4,
) -> dict[str, float]:
    """The demo's fine-tuning: test accuracy and loss on the module task."""
    encoded = task.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128),
        batched=True,
        remove_columns=["text", "document", "start", "end"],
    )
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=learning_rate,
        warmup_steps=0.1,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["test"],
        processing_class=tokenizer,
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    trainer.train()
    metrics = trainer.evaluate()
    return {"accuracy": metrics["eval_accuracy"], "loss": metrics["eval_loss"]}


def measure(recipe_path: str, overrides: list[str], seeds: int = 3) -> dict:
    """Pretrain with the recipe (plus ``--key=value`` overrides) and measure it as described above."""
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="demo-recipe-"))
    task = module_classification()
    corpus_file = work / "pretraining-corpus.jsonl"
    remove_passages(builtin_corpus(), task["test"]).select_columns(["text"]).to_json(corpus_file, lines=True)
    model_dir = work / "pretrained"
    recipe = parse_recipe(
        recipe_path,
        overrides,
        output_dir=str(model_dir),
        corpus=str(corpus_file),
        overwrite_output_dir=True,
        disable_tqdm=True,
        report_to=[],
        save_strategy="no",
        plot=False,
    )
    start = time.perf_counter()
    run = build_pretraining(recipe)
    majority = majority_baselines(run)
    run.trainer.train()
    metrics = run.trainer.evaluate()
    run.trainer.save_model()
    pretrain_seconds = time.perf_counter() - start
    held_out = {name: metrics.get(f"eval_{name}_accuracy") for name in run.config.pretraining_tasks}
    guesses = fill_mask(model_dir)

    names = task["train"].features["label"].names
    labels = dict(num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    runs: dict[str, list[dict[str, float]]] = {"pretrained": [], "random": []}
    start = time.perf_counter()
    for seed in range(seeds):
        transformers.set_seed(seed)
        pretrained = Bert18ForSequenceClassification.from_pretrained(model_dir, **labels)
        transformers.set_seed(seed)
        scratch = Bert18ForSequenceClassification(pretrained.config)
        runs["pretrained"].append(finetune(pretrained, tokenizer, task, seed, str(work / "ft")))
        runs["random"].append(finetune(scratch, tokenizer, task, seed, str(work / "ft")))
    finetune_seconds = time.perf_counter() - start
    gains = [p["accuracy"] - r["accuracy"] for p, r in zip(runs["pretrained"], runs["random"])]
    return {
        "overrides": overrides,
        "held_out_accuracy": held_out,
        "majority": majority,
        "fill_mask": guesses,
        "finetuning": runs,
        "gains": gains,
        "pretrain_seconds": pretrain_seconds,
        "finetune_seconds": finetune_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds (0, 1, ...)")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--label", default="", help="a name for this run in the printed line")
    args, overrides = parser.parse_known_args()
    result = measure(args.recipe, overrides, args.seeds)
    result["label"] = args.label
    held_out, majority, guesses, runs, gains = (
        result[k] for k in ("held_out_accuracy", "majority", "fill_mask", "finetuning", "gains")
    )
    for name in held_out:
        print(f"{name:<24} held-out accuracy {held_out[name]:.3f}  majority class {majority.get(name, 0):.3f}")
    for prompt, top in guesses.items():
        print(f"  {prompt!r} -> {top}")
    for seed, (p, r) in enumerate(zip(runs["pretrained"], runs["random"])):
        print(
            f"seed {seed}: pretrained {p['accuracy']:.1%} (loss {p['loss']:.3f})  random {r['accuracy']:.1%} "
            f"(loss {r['loss']:.3f})  gain {gains[seed] * 100:+.1f}"
        )
    p_acc = [r["accuracy"] for r in runs["pretrained"]]
    r_acc = [r["accuracy"] for r in runs["random"]]
    print(
        f"SUMMARY {args.label or ' '.join(overrides) or 'recipe'}: mlm {held_out.get('mlm', 0):.3f} | "
        + " ".join(f"{t} {held_out[t]:.3f}/{majority.get(t, 0):.3f}" for t in held_out if t != "mlm")
        + f" | pretrained {np.mean(p_acc):.1%} ± {np.std(p_acc):.1%}"
        + f" random {np.mean(r_acc):.1%} ± {np.std(r_acc):.1%}"
        + f" | gains {' '.join(f'{g * 100:+.1f}' for g in gains)} | min gain {min(gains) * 100:+.1f}"
        + f" | fill {[top[0] for top in guesses.values()]}"
        + f" | {result['pretrain_seconds']:.0f}s + {result['finetune_seconds']:.0f}s",
        flush=True,
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())

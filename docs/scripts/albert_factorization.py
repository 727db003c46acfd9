"""ALBERT's two parameter savings (Lan et al. 2020, Tables 3 and 4) on one tiny model: parameters against score.

    python docs/scripts/albert_factorization.py [--seeds 3] [--steps 300] [--json out.json]

Four models, the same but for ``embedding_size`` and ``layer_sharing`` (bert18's config knobs):

- **BERT-style**: E = H, every layer its own weights;
- **factorized**: token embeddings of width E < H, lifted to H by one linear map (V x E + E x H
  parameters instead of V x H);
- **all-shared**: one attention and one feed-forward block used by every layer
  (``layer_sharing="all"``);
- **both** (ALBERT).

Each is pretrained with MLM on the built-in corpus (standard-library documentation) *minus the module
task's test passages*, through ``bert18.training.build_pretraining`` (the code under ``bert18 pretrain``):
the ``tiny`` preset widened to H=128 (2 layers, 2 heads, feed-forward 512, no dropout), an 8,000-token
WordPiece vocabulary trained on the corpus, packed rows of 128 tokens, 30% token masking, AdamW at
2e-3 with 6% warm-up and linear decay, batches of 32. Then the pretrained model is fine-tuned on the
module-classification task (which of 8 standard-library modules a passage documents: 240 training, 80
test passages) with the ``finetune-modules`` recipe through ``bert18.training.run_finetuning`` (the code
under ``bert18 finetune``), at the demo's fine-tuning settings: learning rate 3e-4, 15 epochs, batch 16,
passages cut to 128 tokens. A seed fixes the pretraining (initial weights, masks, row
order) and the fine-tuning (classifier weights, batch order) of its run. Reported per model: the
parameters of the encoder (``bert18.count_parameters``, ``Bert18Model`` with its pooler, as ALBERT's
tables count), the held-out MLM accuracy (5% of the corpus's rows, fresh masks) and the test accuracy
after fine-tuning, as mean and spread over seeds; a last row fine-tunes the BERT-style architecture
from random weights (the recipe's ``from_scratch``), what pretraining is measured against. Published
(ALBERT-base, H=768, 12 layers; average over SQuAD 1.1/2.0, MNLI, SST-2, RACE):

    model                      parameters   average
    not shared, E=768             108M        82.3
    not shared, E=128              89M        82.3
    all shared, E=768              31M        79.8
    all shared, E=128              12M        80.1
"""

import argparse
import json
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers

from bert18 import count_parameters
from bert18.data import builtin_corpus
from bert18.data.downstream import module_classification, remove_passages
from bert18.training import parse_recipe
from bert18.training.finetune import run_finetuning
from bert18.training.finetune_arguments import parse_finetune_recipe
from bert18.training.pretrain import build_pretraining

HIDDEN = 128
BERT_STYLE = "BERT-style (E = H, not shared)"
RANDOM_START = "BERT-style, not pretrained (random start)"
# name -> (embedding_size, layer_sharing); embedding_size None is E = H
VARIANTS = {
    BERT_STYLE: (None, "none"),
    "factorized (E = 32, not shared)": (32, "none"),
    "all-shared (E = H)": (None, "all"),
    "ALBERT (E = 32, all shared)": (32, "all"),
}
PUBLISHED = {  # ALBERT Tables 3 and 4, ALBERT-base: (parameters, average score)
    "BERT-style (E = H, not shared)": "108M, 82.3",
    "factorized (E = 32, not shared)": "89M, 82.3 (E = 128)",
    "all-shared (E = H)": "31M, 79.8",
    "ALBERT (E = 32, all shared)": "12M, 80.1 (E = 128)",
    RANDOM_START: "",
}


def pretrain(corpus_file: Path, output_dir: Path, embedding_size: int | None, sharing: str, seed: int, args) -> dict:
    """MLM pretraining of one variant; its encoder's parameters and held-out MLM accuracy."""
    recipe = parse_recipe(
        None,
        [],
        preset="tiny",
        config_overrides={
            "hidden_size": HIDDEN,
            "num_attention_heads": 2,
            "intermediate_size": 4 * HIDDEN,
            "num_hidden_layers": args.layers,
            "max_position_embeddings": args.max_length,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "embedding_size": embedding_size,
            "layer_sharing": sharing,
        },
        pretraining_tasks=["mlm"],
        tokenizer_vocab_size=8000,
        corpus=str(corpus_file),
        max_length=args.max_length,
        validation_fraction=0.05,
        mlm_probability=0.3,
        output_dir=str(output_dir),
        overwrite_output_dir=True,
        max_steps=args.steps,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=2e-3,
        warmup_steps=0.06,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        plot=False,
    )
    run = build_pretraining(recipe)
    run.trainer.train()
    accuracy = run.trainer.evaluate()["eval_mlm_accuracy"]
    run.trainer.save_model()
    return {"parameters": count_parameters(run.config).total, "mlm_accuracy": accuracy}


def finetune(model_dir: Path, output_dir: Path, seed: int, args, from_scratch: bool = False) -> float:
    """The module task's test accuracy after fine-tuning ``model_dir`` with the finetune-modules recipe
    (``from_scratch``: its architecture from random weights, the recipe's baseline)."""
    recipe = parse_finetune_recipe(
        "finetune-modules",
        [],
        model_name_or_path=str(model_dir),
        from_scratch=from_scratch,
        output_dir=str(output_dir),
        max_length=args.max_length,
        learning_rate=3e-4,
        num_train_epochs=15,
        eval_strategy="no",
        logging_strategy="no",
        seed=seed,
        use_cpu=True,
        disable_tqdm=True,
        log_level="error",
        overwrite_output_dir=True,
    )
    return run_finetuning(recipe)["metrics"]["eval_accuracy"]


def experiment(seeds: int = 3, steps: int = 300, max_length: int = 128, layers: int = 2) -> dict[str, list[dict]]:
    """Pretrain and fine-tune each variant with each seed; parameters, held-out MLM and test accuracy."""
    args = argparse.Namespace(steps=steps, max_length=max_length, layers=layers)
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="albert-factorization-"))
    corpus_file = work / "pretraining-corpus.jsonl"
    task = module_classification()
    remove_passages(builtin_corpus(), task["test"]).select_columns(["text"]).to_json(corpus_file, lines=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    results[RANDOM_START] = []
    for seed in range(seeds):
        for name, (embedding_size, sharing) in VARIANTS.items():
            model_dir = work / "pretrained"
            run = pretrain(corpus_file, model_dir, embedding_size, sharing, seed, args)
            run["accuracy"] = finetune(model_dir, work / "finetuned", seed, args)
            results[name].append(run)
            if name == BERT_STYLE:  # what pretraining adds: the same architecture fine-tuned from random weights
                scratch = {"parameters": run["parameters"], "mlm_accuracy": None}
                scratch["accuracy"] = finetune(model_dir, work / "finetuned", seed, args, from_scratch=True)
                results[RANDOM_START].append(scratch)
                print(f"seed {seed} {RANDOM_START}: module task {scratch['accuracy']:.3f}", flush=True)
            print(
                f"seed {seed} {name}: {run['parameters']:,} parameters, held-out MLM {run['mlm_accuracy']:.3f}, "
                f"module task {run['accuracy']:.3f}",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    results = experiment(args.seeds, args.steps, args.max_length, args.layers)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(
        f"\n| model (H={HIDDEN}, {args.layers} layers) | parameters | held-out MLM accuracy ({args.seeds} seeds) "
        "| module task accuracy | ALBERT-base (parameters, average) |"
    )
    print("|---|---:|---:|---:|---|")
    for name, runs in results.items():
        mlm = np.array([run["mlm_accuracy"] or 0.0 for run in runs]) * 100
        accuracy = np.array([run["accuracy"] for run in runs]) * 100
        mlm_cell = f"{mlm.mean():.1f} ± {mlm.std():.1f}" if name != RANDOM_START else ""
        print(
            f"| {name} | {runs[0]['parameters'] / 1e6:.2f}M | {mlm_cell} "
            f"| {accuracy.mean():.1f} ± {accuracy.std():.1f} (min {accuracy.min():.1f}) | {PUBLISHED[name]} |"
        )


if __name__ == "__main__":
    main()

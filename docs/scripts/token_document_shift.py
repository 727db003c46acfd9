"""Why the demo's token-document relation stays at its held-out majority class: the labels' base rate moves
with the held-out documents, and what a token alone tells does not carry over.

    python docs/scripts/token_document_shift.py [--splits 3] [--draws 5] [--json out.json]

ERNIE 2.0's token-document relation labels a token 1 when its id occurs in the segment's document outside
the pair shown. How often that happens depends mostly on how long the document is, which the model never
sees. For each split seed (the ``tiny-demo`` recipe's ``seed``: which 5% of the documents are held out,
as ``bert18 pretrain`` splits them; the seed also draws the pairs and the masks) the script builds the demo's
pretraining data exactly as ``make demo`` does (``bert18.training.build_pretraining``; nothing is trained) and prints

- the mean length in words of the training and the held-out documents;
- the share of label 1 among the targets of the first pass's training pairs and of ``--draws`` draws of
  the held-out pairs (the held-out majority class is the larger of that share and its complement);
- the accuracy of the best rule a model could learn from the token alone: each input id's most frequent
  label in those training pairs (1 for an id they never show), scored on both. The ids are those the model
  reads, after MLM masking: at a masked position the rule sees ``[MASK]`` (or the random token), as the
  model does.

A model that read its context could in principle do better than that rule; a model that only learned the
token's tendency cannot beat the held-out majority class unless its held-out documents resemble the
training ones in length.
"""

import argparse
import json
import tempfile
from pathlib import Path

import datasets
import numpy as np
import transformers

from bert18.data.downstream import module_classification
from bert18.demo import pretraining_corpus
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining, load_documents

RECIPE = Path(__file__).resolve().parents[2] / "src" / "bert18" / "recipes" / "tiny-demo.yaml"


def token_labels(rows: list[dict], collator) -> tuple[np.ndarray, np.ndarray]:
    """The (token id, token-document label) of every target in ``rows``, drawn by the run's collator."""
    ids, labels = [], []
    for start in range(0, len(rows), 64):
        batch = collator(rows[start : start + 64])
        targets = batch["token_document_labels"] != -100
        ids.append(batch["input_ids"][targets].numpy())
        labels.append(batch["token_document_labels"][targets].numpy())
    return np.concatenate(ids), np.concatenate(labels)


def token_rule(ids: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Each token id's most frequent label (ties to 1, the overall majority)."""
    ones = np.bincount(ids, weights=labels)
    seen = np.bincount(ids)
    return {int(token): int(ones[token] * 2 >= seen[token]) for token in np.flatnonzero(seen)}


def rule_accuracy(rule: dict[int, int], ids: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.array([rule.get(int(token), 1) for token in ids]) == labels))


def measure_split(seed: int, draws: int, work: Path) -> dict[str, float]:
    recipe = parse_recipe(
        str(RECIPE),
        [],
        seed=seed,
        output_dir=str(work / f"split-{seed}"),
        corpus=str(pretraining_corpus(work, module_classification())),
        overwrite_output_dir=True,
        report_to=[],
        save_strategy="no",
        plot=False,
        disable_tqdm=True,
    )
    run = build_pretraining(recipe)
    collator = run.trainer.data_collator
    run.train_dataset.set_epoch(0)  # the first pass's pairs
    training = token_labels([dict(row) for row in run.train_dataset], collator)
    held_rows = []
    for draw in range(draws):
        run.eval_dataset.set_epoch(draw)
        held_rows += [dict(row) for row in run.eval_dataset]
    held_out = token_labels(held_rows, collator)
    rule = token_rule(*training)
    documents = dict(zip(("training", "held_out"), load_documents(recipe)))
    return {
        **{f"{part}_words": float(np.mean([len(text.split()) for text in d["text"]])) for part, d in documents.items()},
        "training_share_of_1": float(training[1].mean()),
        "training_rule": rule_accuracy(rule, *training),
        "held_out_share_of_1": float(held_out[1].mean()),
        "held_out_rule": rule_accuracy(rule, *held_out),
        "held_out_targets": int(held_out[1].size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3, help="split seeds 0, 1, ...")
    parser.add_argument("--draws", type=int, default=5, help="draws of the held-out pairs per split")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="token-document-"))
    results = {seed: measure_split(seed, args.draws, work) for seed in range(args.splits)}
    print(
        "| split seed | words per document, training / held-out | training: share of 1 / token rule "
        "| held-out: share of 1 / token rule | held-out targets |"
    )
    print("|---:|---|---|---|---:|")
    for seed, r in results.items():
        print(
            f"| {seed} | {r['training_words']:,.0f} / {r['held_out_words']:,.0f} | "
            f"{r['training_share_of_1']:.1%} / {r['training_rule']:.1%} | "
            f"{r['held_out_share_of_1']:.1%} / {r['held_out_rule']:.1%} | {r['held_out_targets']:,} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

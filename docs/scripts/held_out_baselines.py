"""What the demo's sentence-level and token-document tasks allow on held-out documents: simple baselines
fitted on the training pairs, beside each task's held-out majority class.

    python docs/scripts/held_out_baselines.py [--corpus en|zh] [--splits 3] [--draws 5] [--json out.json]
                                               [--key=value ...]

For each split seed (the recipe's ``seed``: which 5% of the documents are held out, as ``bert18
pretrain`` splits them; the seed also draws the pairs and the masks) the script builds the pretraining
data (``bert18.training.build_pretraining``; nothing is trained): ``en``, the demo's, exactly as ``make
demo`` does (``tiny-demo``); ``zh``, ``docs/scripts/document_tasks.py``'s (``tiny-demo-zh`` with the two
document tasks, on the People's Daily). It takes the first pass's training pairs and ``--draws`` draws of
the held-out pairs, and prints:

- **Token-document relation** (ERNIE 2.0: 1 when the token's id occurs in the segment's document
  outside the pair shown): the mean length in words (characters in Chinese) of the training and the
  held-out documents, the
  share of label 1 (the held-out majority class is the larger of that share and its complement), and
  the best rule a model could learn from the token alone: each input id's most frequent label in the
  training pairs (1 for an id they never show). The ids are those the model reads, after MLM masking.
  How often a token recurs depends mostly on how long its document is, which the model never sees.
- **Sentence distance** (ERNIE 2.0: B adjacent to A, from A's document further away, or from another
  document, a third each): a multinomial logistic regression on three numbers of the unmasked pair, the
  share of B's distinct tokens that also occur in A, the Jaccard overlap of their token sets, and the
  number of B's distinct tokens: what lexical overlap alone buys, a reference for what a model of the pair could reach.
  Fitted once on the pairs as written and once on the pairs as the model reads them (after MLM
  masking, ``[MASK]`` counted as no token): masking hides part of the overlap, not all of it.

Every ``--key=value`` overrides a recipe key, as on the ``bert18 pretrain`` command line
(``--validation_fraction=0.2`` holds out more documents).
"""

import argparse
import json
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from demo_recipe import QUIET_RUN
from document_tasks import RECIPES

from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining, load_documents


def document_length(text: str) -> int:
    """Words; characters for a text written without spaces between words (Chinese, mostly non-ASCII)."""
    spaced = sum(character.isascii() for character in text) > len(text) / 2
    return len(text.split()) if spaced else len(text)


def token_labels(read: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The (input id, token-document label) of every target in pairs as the model reads them (``as_read``)."""
    ids = np.concatenate([row["input_ids"] for row in read])
    labels = np.concatenate([row["token_document_labels"] for row in read])
    targets = labels != -100
    return ids[targets], labels[targets]


def token_rule(ids: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """Each token id's most frequent label (ties to 1, the overall majority)."""
    ones = np.bincount(ids, weights=labels)
    seen = np.bincount(ids)
    return {int(token): int(ones[token] * 2 >= seen[token]) for token in np.flatnonzero(seen)}


def rule_accuracy(rule: dict[int, int], ids: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.array([rule.get(int(token), 1) for token in ids]) == labels))


def overlap_features(rows: list[dict], special: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: the share of B's distinct tokens found in A, the Jaccard overlap, B's distinct tokens; the label."""
    features, labels = [], []
    for row in rows:
        ids, types = np.asarray(row["input_ids"]), np.asarray(row["token_type_ids"])
        first, second = set(ids[types == 0].tolist()) - special, set(ids[types == 1].tolist()) - special
        shared = len(first & second)
        features.append([shared / max(1, len(second)), shared / max(1, len(first | second)), len(second)])
        labels.append(row["sentence_distance_label"])
    return np.asarray(features, dtype=np.float64), np.asarray(labels)


def logistic_regression(features: np.ndarray, labels: np.ndarray, classes: int = 3):
    """A multinomial logistic regression (standardized features, L-BFGS); returns a predict function."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-9
    x, y = torch.tensor((features - mean) / std), torch.tensor(labels)
    linear = torch.nn.Linear(x.shape[1], classes, dtype=torch.float64)
    for parameter in linear.parameters():  # from zeros: the same fit on every run
        torch.nn.init.zeros_(parameter)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(linear(x), y)
        value.backward()
        return value

    optimizer.step(loss)

    @torch.no_grad()
    def predict(new: np.ndarray) -> np.ndarray:
        return linear(torch.tensor((new - mean) / std)).argmax(dim=1).numpy()

    return predict


def as_read(rows: list[dict], collator) -> list[dict]:
    """The pairs as the model reads them, drawn by the run's collator: input ids after MLM masking and the
    token-document labels it gives them (padding stripped), the other columns as they were."""
    read = []
    for start in range(0, len(rows), 64):
        chunk = rows[start : start + 64]
        batch = collator(chunk)
        for j, row in enumerate(chunk):
            length = len(row["input_ids"])
            columns = {name: batch[name][j, :length].tolist() for name in ("input_ids", "token_document_labels")}
            read.append({**row, **columns})
    return read


def measure_split(
    seed: int, draws: int, chosen: tuple[str, dict], work: Path, overrides: list[str]
) -> dict[str, float]:
    """Build the pairs of split ``seed`` for ``chosen`` (a recipe's name and its keys) and score the baselines."""
    name, values = chosen
    recipe = parse_recipe(
        name,
        overrides,
        seed=seed,
        output_dir=str(work / f"split-{seed}"),
        **QUIET_RUN,
        **values,
    )
    run = build_pretraining(recipe)
    run.train_dataset.set_epoch(0)  # the first pass's pairs
    training_rows = [dict(row) for row in run.train_dataset]
    held_rows = []
    for draw in range(draws):
        run.eval_dataset.set_epoch(draw)
        held_rows += [dict(row) for row in run.eval_dataset]

    read_training, read_held = (as_read(rows, run.trainer.data_collator) for rows in (training_rows, held_rows))
    training, held_out = token_labels(read_training), token_labels(read_held)
    rule = token_rule(*training)
    documents = dict(zip(("training", "held_out"), load_documents(recipe)))
    special = set(run.tokenizer.all_special_ids)
    (fit_x, fit_y), (test_x, test_y) = (overlap_features(rows, special) for rows in (training_rows, held_rows))
    predict = logistic_regression(fit_x, fit_y)
    (masked_x, masked_y), (masked_test_x, masked_test_y) = (
        overlap_features(rows, special | {run.tokenizer.mask_token_id}) for rows in (read_training, read_held)
    )
    predict_masked = logistic_regression(masked_x, masked_y)
    return {
        **{
            f"{part}_words": float(np.mean([document_length(text) for text in d["text"]]))
            for part, d in documents.items()
        },
        "training_share_of_1": float(training[1].mean()),
        "training_rule": rule_accuracy(rule, *training),
        "held_out_share_of_1": float(held_out[1].mean()),
        "held_out_rule": rule_accuracy(rule, *held_out),
        "held_out_targets": int(held_out[1].size),
        "distance_training_overlap": float(np.mean(predict(fit_x) == fit_y)),
        "distance_held_out_overlap": float(np.mean(predict(test_x) == test_y)),
        "distance_held_out_masked_overlap": float(np.mean(predict_masked(masked_test_x) == masked_test_y)),
        "distance_held_out_majority": float(np.bincount(test_y).max() / test_y.size),
        "held_out_pairs": int(test_y.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--splits", type=int, default=3, help="split seeds 0, 1, ...")
    parser.add_argument("--draws", type=int, default=5, help="draws of the held-out pairs per split")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--corpus", choices=list(RECIPES), default="en", help="en: tiny-demo; zh: document_tasks.py's")
    args, overrides = parser.parse_known_args()  # --key=value: recipe overrides, as on the bert18 command line
    if clash := [o for o in overrides if o.split("=")[0] in ("--seed", "--output_dir", "--corpus")]:
        parser.error(f"{clash[0]}: the script sets it for each split (--splits chooses the split seeds)")
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="held-out-baselines-"))
    chosen = RECIPES[args.corpus](work)  # the same documents for every split
    if chosen is None:
        return
    results = {seed: measure_split(seed, args.draws, chosen, work, overrides) for seed in range(args.splits)}
    print("\ntoken-document relation")
    print(
        "| split seed | words (Chinese: characters) per document, training / held-out "
        "| training: share of 1 / token rule "
        "| held-out: share of 1 / token rule | held-out targets |"
    )
    print("|---:|---|---|---|---:|")
    for seed, r in results.items():
        print(
            f"| {seed} | {r['training_words']:,.0f} / {r['held_out_words']:,.0f} | "
            f"{r['training_share_of_1']:.1%} / {r['training_rule']:.1%} | "
            f"{r['held_out_share_of_1']:.1%} / {r['held_out_rule']:.1%} | {r['held_out_targets']:,} |"
        )
    print("\nsentence distance")
    print(
        "| split seed | lexical overlap, training | lexical overlap, held-out | the same on the masked pair "
        "| held-out majority | held-out pairs |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for seed, r in results.items():
        print(
            f"| {seed} | {r['distance_training_overlap']:.1%} | {r['distance_held_out_overlap']:.1%} | "
            f"{r['distance_held_out_masked_overlap']:.1%} | "
            f"{r['distance_held_out_majority']:.1%} | {r['held_out_pairs']:,} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

"""RoBERTa's static against dynamic masking (Liu et al. 2019, Table 1) on one tiny model.

    python docs/scripts/static_vs_dynamic.py [--seeds 3] [--steps 1000] [--json out.json]

Everything is the same but when the masks are drawn: the built-in corpus (standard-library
documentation), a WordPiece vocabulary of 4,096 trained on it, packed rows of 128 tokens, 128
held-out rows, the ``tiny`` preset (H=64, 2 layers), MLM with BERT's 15% and 80/10/10, AdamW at
2e-3 with 5% warm-up and linear decay, batches of 32, ``--steps`` steps (1,000: about 28 passes
over the ~1,150 training rows, the many-epochs regime where the choice could matter). Three regimes:

- **dynamic** (RoBERTa, bert18's default): a fresh mask each time a row is seen;
- **static, dupe_factor 10** (BERT's ``create_pretraining_data.py``, RoBERTa's "static" row): ten
  masked copies of every row drawn once (``bert18.collators.static_masking``), so each mask is
  seen about 2.8 times here (4 times in RoBERTa's 40 epochs);
- **static, dupe_factor 1**: one mask per row for the whole run (seen ~28 times), the extreme.

Copy d of the static data is exactly the dynamic collator's draw for epoch d, so only the redrawing
differs. Scored on the held-out rows with fresh masks (the same for every regime and seed): MLM
loss per target (nats) and accuracy. RoBERTa's Table 1 (BERT-base, SQuAD 2.0 F1 / MNLI-m / SST-2):
static 78.3 / 84.3 / 92.5, dynamic 78.7 / 84.0 / 92.9 -- "comparable or slightly better". Seeds
change the initial weights, the batch order and the masks. Prints a Markdown table of the mean and
spread over seeds.
"""

import argparse
import json

import datasets
import numpy as np
import torch
import transformers

from bert18 import Bert18Config, Bert18ForPreTraining
from bert18.collators import MLMCollator, PretrainingCollator, StaticMasks, static_masking
from bert18.data import builtin_corpus, prepare_pretraining_dataset
from bert18.tokenization import train_tokenizer


@torch.no_grad()
def evaluate(model: Bert18ForPreTraining, batches: list[dict]) -> tuple[float, float]:
    """MLM loss per target and accuracy over ``batches``."""
    model.eval()
    loss = correct = count = 0.0
    for batch in batches:
        output = model(**batch)
        labels = batch["labels"]
        keep = labels != -100
        loss += output.task_losses["mlm"].item() * keep.sum().item()
        correct += (output.prediction_logits.argmax(-1)[keep] == labels[keep]).sum().item()
        count += keep.sum().item()
    model.train()
    return loss / count, correct / count


def run(regime: str, seed: int, tokenizer, train_rows: datasets.Dataset, evaluation: list[dict], args) -> dict:
    config = Bert18Config.from_preset(
        "tiny", vocab_size=len(tokenizer), max_position_embeddings=args.max_length, pretraining_tasks=["mlm"]
    )
    masking = MLMCollator(tokenizer, seed=seed)
    if regime == "dynamic":
        rows, collator = [dict(r) for r in train_rows], PretrainingCollator(tokenizer, config, masking=masking)
    else:
        copies = static_masking(train_rows, masking, dupe_factor=int(regime.split()[-1]))
        rows, collator = (
            [dict(r) for r in copies],
            PretrainingCollator(tokenizer, config, masking=StaticMasks(tokenizer)),
        )
    torch.manual_seed(seed)
    model = Bert18ForPreTraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup)))
    )
    rng = np.random.default_rng(seed)
    order, position, epoch = rng.permutation(len(rows)), 0, 0
    for _ in range(args.steps):
        if position + args.batch_size > len(order):  # next pass: dynamic draws new masks, static reads the same
            epoch += 1
            masking.set_epoch(epoch)
            order, position = rng.permutation(len(rows)), 0
        batch = collator([rows[int(i)] for i in order[position : position + args.batch_size]])
        position += args.batch_size
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    loss, accuracy = evaluate(model, evaluation)
    passes = args.steps * args.batch_size / len(train_rows)
    print(
        f"{regime:<18} seed {seed}: held-out MLM loss {loss:.3f}, accuracy {accuracy:.3f} ({passes:.1f} passes)",
        flush=True,
    )
    return {"loss": loss, "accuracy": accuracy, "passes": passes}


REGIMES = ("dynamic", "static, dupe 10", "static, dupe 1")


def experiment(
    seeds: int = 3, steps: int = 1000, batch_size: int = 32, max_length: int = 128, lr: float = 2e-3
) -> dict[str, list[dict[str, float]]]:
    """Each regime for each seed: held-out MLM loss and accuracy with fresh masks."""
    args = argparse.Namespace(steps=steps, batch_size=batch_size, max_length=max_length, lr=lr)
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    rows = prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=max_length)
    split = rows.train_test_split(test_size=128, seed=0)
    fresh = MLMCollator(tokenizer, seed=999)
    fresh.set_epoch(10_000)  # held-out masks from an epoch training never reaches, the same for every run
    evaluation_collator = PretrainingCollator(tokenizer, ["mlm"], masking=fresh)
    held_out = [dict(r) for r in split["test"]]
    evaluation = [evaluation_collator(held_out[i : i + 32]) for i in range(0, len(held_out), 32)]
    print(f"{len(split['train'])} training rows, {len(held_out)} held out, vocabulary {len(tokenizer)}", flush=True)
    return {
        regime: [run(regime, seed, tokenizer, split["train"], evaluation, args) for seed in range(seeds)]
        for regime in REGIMES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    results = experiment(args.seeds, args.steps, args.batch_size, args.max_length, args.lr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(f"\n| masking | held-out MLM loss ({args.seeds} seeds) | held-out MLM accuracy |\n|---|---:|---:|")
    for regime, runs in results.items():
        loss = np.array([r["loss"] for r in runs])
        accuracy = np.array([r["accuracy"] for r in runs]) * 100
        print(f"| {regime} | {loss.mean():.3f} ± {loss.std():.3f} | {accuracy.mean():.1f} ± {accuracy.std():.1f} |")
    dynamic = np.array([r["loss"] for r in results["dynamic"]])
    for regime in REGIMES[1:]:
        gap = np.array([r["loss"] for r in results[regime]]) - dynamic
        print(f"{regime} minus dynamic, same seed: loss {gap.mean():+.3f} (min {gap.min():+.3f}, max {gap.max():+.3f})")


if __name__ == "__main__":
    main()

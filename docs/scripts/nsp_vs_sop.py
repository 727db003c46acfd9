"""ALBERT's cross-evaluation of NSP and SOP (Lan et al. 2020, Table 5) on one tiny model.

    python docs/scripts/nsp_vs_sop.py [--seeds 3] [--steps 800] [--json out.json]

Two models per seed, the same but for the sentence-level task: MLM + NSP (BERT) and MLM + SOP
(ALBERT). Each is then scored with its own sentence head on held-out pairs of *both* kinds:
NSP pairs (B continues A, label 0, or B comes from another document, label 1) and SOP pairs (A, B
in order, label 0, or swapped, label 1). Both tasks put the coherent pair at 0, so the NSP head's
"is next" answers the SOP question "in order?" and the SOP head's "in order" answers NSP's "is
next?" -- the cross-evaluation of ALBERT's Table 5, whose published figures are

    trained on   NSP accuracy   SOP accuracy
    NSP              90.5           52.0
    SOP              78.9           86.5

(ALBERT-base, 125K steps on BookCorpus + Wikipedia: NSP learns topic prediction, which says
nothing about order; SOP has to model coherence, which also solves most of NSP).

Set-up: the built-in corpus (standard-library documentation), a WordPiece vocabulary of 4,096
trained on it, documents split 90/10 into training and held-out documents (the held-out pairs come
from documents no model saw), one pair per row of at most 128 tokens (``SentencePairDataset``,
pairs redrawn every epoch), the ``tiny`` preset widened to H=128 without dropout, AdamW at 1e-3
with 5% warm-up and linear decay, batches of 32. Held-out inputs are not masked. Seeds change the
initial weights, the pair draws and the masks (the document split stays fixed). Prints a Markdown
table of the mean and spread over seeds.
"""

import argparse
import json

import datasets
import numpy as np
import torch
import transformers

from bert18 import Bert18Config, Bert18ForPreTraining
from bert18.collators import PretrainingCollator
from bert18.data import SentencePairDataset, builtin_corpus, prepare_pretraining_dataset
from bert18.tokenization import train_tokenizer

LABEL = {"nsp": "next_sentence_label", "sop": "sentence_order_label"}


def held_out_batches(documents, tokenizer, task: str, max_length: int, epochs: int = 4) -> list[dict]:
    """Unmasked held-out pairs of ``task``, several draws (epochs) of each chunk, in batches of 64."""
    pairs = SentencePairDataset(documents, tokenizer, [task], max_length=max_length, seed=12345)
    collator = PretrainingCollator(tokenizer, [task])
    items = []
    for epoch in range(epochs):
        pairs.set_epoch(epoch)
        items += [pairs[i] for i in range(len(pairs))]
    return [collator(items[i : i + 64]) for i in range(0, len(items), 64)]


@torch.no_grad()
def accuracy(model: Bert18ForPreTraining, head: str, batches: list[dict], task: str) -> float:
    """Share of pairs where ``model``'s ``head`` predicts the label of ``task`` (0 = coherent, 1 = not)."""
    model.eval()
    correct = total = 0
    for batch in batches:
        labels = batch[LABEL[task]]
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
        ).task_logits[head]
        correct += (logits.argmax(-1) == labels).sum().item()
        total += len(labels)
    model.train()
    return correct / total


def train(task: str, seed: int, train_docs, tokenizer, evaluation: dict, args) -> dict[str, float]:
    config = Bert18Config.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        max_position_embeddings=args.max_length,
        hidden_size=128,
        num_attention_heads=2,
        intermediate_size=512,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pretraining_tasks=["mlm", task],
    )
    pairs = SentencePairDataset(train_docs, tokenizer, config, max_length=args.max_length, seed=seed)
    collator = PretrainingCollator(tokenizer, config, seed=seed)
    torch.manual_seed(seed)
    model = Bert18ForPreTraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup)))
    )
    rng = np.random.default_rng(seed)
    order, position, epoch = rng.permutation(len(pairs)), 0, 0
    for _ in range(args.steps):
        if position + args.batch_size > len(order):
            epoch += 1
            pairs.set_epoch(epoch)
            collator.set_epoch(epoch)
            order, position = rng.permutation(len(pairs)), 0
        batch = collator([pairs[int(i)] for i in order[position : position + args.batch_size]])
        position += args.batch_size
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    scores = {f"on_{kind}": accuracy(model, task, batches, kind) for kind, batches in evaluation.items()}
    print(f"seed {seed} trained on {task}: " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()), flush=True)
    return scores


def experiment(
    seeds: int = 3, steps: int = 800, batch_size: int = 32, max_length: int = 128, lr: float = 1e-3
) -> dict[str, list[dict[str, float]]]:
    """Train MLM + NSP and MLM + SOP for each seed; each one's held-out accuracy on both kinds of pairs."""
    args = argparse.Namespace(steps=steps, batch_size=batch_size, max_length=max_length, lr=lr)
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    documents = prepare_pretraining_dataset(corpus, tokenizer, ["mlm", "sop"], max_length=max_length)
    split = documents.train_test_split(test_size=0.1, seed=0)
    evaluation = {kind: held_out_batches(split["test"], tokenizer, kind, max_length) for kind in ("nsp", "sop")}
    print(
        f"{len(split['train'])} training documents, {len(split['test'])} held out; held-out pairs: "
        + ", ".join(f"{kind} {sum(len(b['input_ids']) for b in batches)}" for kind, batches in evaluation.items()),
        flush=True,
    )
    return {
        task: [train(task, seed, split["train"], tokenizer, evaluation, args) for seed in range(seeds)]
        for task in ("nsp", "sop")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    results = experiment(args.seeds, args.steps, args.batch_size, args.max_length, args.lr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    published = {"nsp": (90.5, 52.0), "sop": (78.9, 86.5)}
    print(f"\n| trained on | NSP accuracy ({args.seeds} seeds) | SOP accuracy | ALBERT Table 5 (NSP / SOP) |")
    print("|---|---:|---:|---:|")
    for task, runs in results.items():
        cells = []
        for kind in ("nsp", "sop"):
            values = np.array([run[f"on_{kind}"] for run in runs]) * 100
            cells.append(f"{values.mean():.1f} ± {values.std():.1f} (min {values.min():.1f})")
        print(f"| {task.upper()} | {cells[0]} | {cells[1]} | {published[task][0]} / {published[task][1]} |")


if __name__ == "__main__":
    main()

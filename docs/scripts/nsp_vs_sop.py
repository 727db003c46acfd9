"""ALBERT's cross-evaluation of NSP and SOP (Lan et al. 2020, Table 5) on one tiny model.

    python docs/scripts/nsp_vs_sop.py [--seeds 3] [--steps 800] [--sentence-weight 3] [--pooling mean] [--json out.json]

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
from documents no model saw), one pair per row of at most 64 tokens (``SentencePairDataset``, pairs
redrawn every epoch), the ``tiny`` preset (H=64, 2 layers) without dropout, AdamW at 1e-3 with 5%
warm-up and linear decay, 800 steps of 32 pairs. Held-out inputs are not masked. Seeds change the
initial weights, the pair draws and the masks (the document split stays fixed). Prints a Markdown
table of the mean and spread over seeds.

Two settings make the sentence heads learn at all in this budget (with BERT's set-up, H=128, 128
tokens, weight 1 and the [CLS] pooler, the NSP loss stayed at ln 2 for 500 steps):

- ``--sentence-weight 3``: the sentence task's loss counts three times against MLM's (bert18's
  ``task_loss_weights``). MLM's loss is about 6 nats, the sentence loss at most ln 2 = 0.69, so with
  equal weights the shared encoder follows MLM's gradient almost only;
- ``--pooling mean``: the sentence head reads the pooler over the mean of the pair's tokens
  (``classifier_pooling="mean"``, as ModernBERT's classifier can) rather than the [CLS] state alone,
  which a 2-layer encoder trained for minutes has to learn to fill with a summary of the pair.

``--pooling cls --sentence-weight 1`` runs the BERT / ALBERT heads as published. The development
runs behind these choices (one seed, 300-600 steps) were too few to say how much each change buys
on its own; docs/evidence.md lists them.
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
        hidden_size=args.hidden_size,
        num_attention_heads=2,
        intermediate_size=4 * args.hidden_size,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pretraining_tasks=["mlm", task],
        task_loss_weights={task: args.sentence_weight},
        classifier_pooling=args.pooling,
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


# The settings the table on docs/evidence.md was measured with (``experiment``'s and the command line's defaults).
DEFAULTS = dict(steps=800, batch_size=32, max_length=64, lr=1e-3, hidden_size=64, sentence_weight=3.0, pooling="mean")


def experiment(seeds: int = 3, **settings) -> dict[str, list[dict[str, float]]]:
    """Train MLM + NSP and MLM + SOP for each seed; each one's held-out accuracy on both kinds of pairs.

    ``settings`` override ``DEFAULTS`` (``steps``, ``batch_size``, ``max_length``, ``lr``, ``hidden_size``,
    ``sentence_weight``: the sentence task's loss weight against MLM's 1, ``pooling``: ``cls`` or ``mean``).
    Seed s's two models do not depend on how many seeds run, so ``seeds=2`` repeats the first two of three."""
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}: the settings are {sorted(DEFAULTS)}")
    args = argparse.Namespace(**{**DEFAULTS, **settings})
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    documents = prepare_pretraining_dataset(corpus, tokenizer, ["mlm", "sop"], max_length=args.max_length)
    split = documents.train_test_split(test_size=0.1, seed=0)
    evaluation = {kind: held_out_batches(split["test"], tokenizer, kind, args.max_length) for kind in ("nsp", "sop")}
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
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    results = experiment(args.seeds, **{name: getattr(args, name) for name in DEFAULTS})
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

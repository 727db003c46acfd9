"""MLM (autoencoding, BERT) against PLM (autoregressive over a random order, XLNet) on one tiny model.

    python docs/scripts/mlm_vs_plm.py [--steps 1000] [--eval-every 100] [--json out.json]

Everything is the same but the objective: the built-in corpus (standard-library documentation),
a WordPiece vocabulary of 4,096 trained on it (fast on a CPU; the 30,522 of BERT would spend most
of the time in the output layer), packed rows of 128 tokens, 128 held-out rows, the ``tiny``
preset (H=64, 2 layers), the same initial weights, AdamW at 2e-3 with 5% warm-up and linear decay,
batches of 32. MLM uses BERT's 15% and 80/10/10; PLM predicts the last 1/6 of each order.

Held-out losses are per target token (nats). Two reference points, both from the training rows:
the entropy of the unigram distribution of the targets (the loss of the best context-free guess
on the training data) and that distribution's cross-entropy on the held-out targets (add-0.5
smoothing). MLM is also scored with every target replaced by [MASK] (no 10% left unchanged, which
lets a model copy its input), the fair comparison with PLM, which never sees its target.
Prints a Markdown table; ``docs/mlm-vs-plm.md`` quotes one run.
"""

import argparse
import json
import time

import datasets
import numpy as np
import torch
import transformers

from bert18 import Bert18Config, Bert18ForPreTraining
from bert18.collators import MLMCollator, PretrainingCollator
from bert18.data import builtin_corpus, prepare_pretraining_dataset
from bert18.tokenization import train_tokenizer

LABELS = {"mlm": "labels", "plm": "plm_labels"}


def unigram_baselines(train_targets: torch.Tensor, held_out_targets: torch.Tensor, vocab: int) -> tuple[float, float]:
    """Entropy of the training targets' unigram distribution, and its cross-entropy on the held-out targets."""
    counts = torch.bincount(train_targets, minlength=vocab).double()
    p = counts[counts > 0] / counts.sum()
    smoothed = (counts + 0.5) / (counts.sum() + 0.5 * vocab)
    return float(-(p * p.log()).sum()), float(-smoothed[held_out_targets].log().mean())


def visibility(batches: list[dict]) -> dict[str, float]:
    """PLM: the share of its row a token's content row sees, the share a target's query row sees,
    and the query rows added per token (the fine-tuned encoder sees the whole row, with no query rows)."""
    content, query, rows = [], [], []
    for batch in batches:
        real = batch["attention_mask"].bool()
        length = real.sum(-1, keepdim=True)
        content.append((batch["plm_content_mask"].sum(-1) / length)[real])
        positions = batch["plm_target_positions"]
        index = positions.clamp(min=0)[..., None].expand(-1, -1, real.shape[1])
        query.append((batch["plm_query_mask"].gather(1, index).sum(-1) / length)[positions >= 0])
        rows.append((positions >= 0).sum() / real.sum())
    return {
        "content_sees": torch.cat(content).mean().item(),
        "query_sees": torch.cat(query).mean().item(),
        "query_rows_per_token": torch.stack(rows).mean().item(),
    }


def evaluate(model: Bert18ForPreTraining, batches: list[dict], task: str) -> float:
    """Loss per target over ``batches`` (summed, then divided by the number of targets)."""
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for batch in batches:
            output = model(**batch)
            targets = (batch[LABELS[task]] != -100).sum().item()
            total += output.task_losses[task].item() * targets
            count += targets
    model.train()
    return total / count


def run(task: str, tokenizer, train_rows: list, held_out: list, args) -> dict:
    """Train one tiny model on ``task``; held-out losses every ``args.eval_every`` steps and timings."""
    config = Bert18Config.from_preset(
        "tiny", vocab_size=len(tokenizer), max_position_embeddings=args.max_length, pretraining_tasks=[task]
    )
    collator = PretrainingCollator(tokenizer, config)
    collator.set_epoch(10_000)  # held-out draws: an epoch training never reaches
    evaluation = [collator(held_out[i : i + 32]) for i in range(0, len(held_out), 32)]
    extra = {}
    if task == "mlm":  # every target [MASK]: nothing left unchanged to copy
        all_mask = MLMCollator(tokenizer, mask_replace_prob=1.0, random_replace_prob=0.0, seed=0)
        all_mask.set_epoch(10_000)
        extra["all_mask"] = [
            {k: v for k, v in all_mask(held_out[i : i + 32]).items() if k in evaluation[0]}
            for i in range(0, len(held_out), 32)
        ]
    torch.manual_seed(args.seed)
    model = Bert18ForPreTraining(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup)))
    )
    rng = np.random.default_rng(args.seed)
    curve, seconds, targets_seen, train_targets = [], 0.0, 0, []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0:
            point = {"step": step, "held_out": evaluate(model, evaluation, task)}
            for name, batches in extra.items():
                point[name] = evaluate(model, batches, task)
            curve.append(point)
            print(task, point, flush=True)
        if step == args.steps:
            break
        collator.set_epoch(step * args.batch_size // len(train_rows))
        batch = collator([train_rows[int(i)] for i in rng.choice(len(train_rows), args.batch_size, replace=False)])
        labels = batch[LABELS[task]]
        train_targets.append(labels[labels != -100])
        targets_seen += (labels != -100).sum().item()
        start = time.perf_counter()
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        seconds += time.perf_counter() - start
    held_out_targets = torch.cat([b[LABELS[task]][b[LABELS[task]] != -100] for b in evaluation])
    entropy, cross_entropy = unigram_baselines(torch.cat(train_targets), held_out_targets, len(tokenizer))
    masked_inputs = sum((b["input_ids"] == tokenizer.mask_token_id).sum().item() for b in evaluation)
    real_tokens = sum(b["attention_mask"].sum().item() for b in evaluation)
    return {
        "task": task,
        "curve": curve,
        "seconds_per_step": seconds / args.steps,
        "targets_per_row": targets_seen / (args.steps * args.batch_size),
        "unigram_entropy": entropy,
        "unigram_held_out": cross_entropy,
        "mask_share_of_inputs": masked_inputs / real_tokens,
        **(visibility(evaluation) if task == "plm" else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    rows = [dict(r) for r in prepare_pretraining_dataset(corpus, tokenizer, ["mlm"], max_length=args.max_length)]
    order = np.random.default_rng(args.seed).permutation(len(rows))
    held_out, train_rows = [rows[i] for i in order[:128]], [rows[i] for i in order[128:]]
    print(f"{len(train_rows)} training rows, {len(held_out)} held out, vocabulary {len(tokenizer)}")
    results = [run(task, tokenizer, train_rows, held_out, args) for task in ("mlm", "plm")]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    mlm, plm = results
    print("\n| step | MLM (80/10/10) | MLM (all [MASK]) | PLM |\n|---:|---:|---:|---:|")
    for a, b in zip(mlm["curve"], plm["curve"]):
        print(f"| {a['step']} | {a['held_out']:.3f} | {a['all_mask']:.3f} | {b['held_out']:.3f} |")
    print("\n| | MLM | PLM |\n|---|---:|---:|")
    for key in (
        "unigram_entropy",
        "unigram_held_out",
        "targets_per_row",
        "mask_share_of_inputs",
        "seconds_per_step",
        "content_sees",
        "query_sees",
        "query_rows_per_token",
    ):
        print(f"| {key} | {mlm.get(key, float('nan')):.3f} | {plm[key]:.3f} |")


if __name__ == "__main__":
    main()

"""Length extrapolation of four position codes: train a tiny MLM at 128 tokens, evaluate at 128 and at 512.

    python docs/scripts/position_extrapolation.py [--steps 600] [--json out.json]

Everything is the same but ``position_embedding_type``: the built-in corpus (standard-library
documentation), a WordPiece vocabulary of 4,096 trained on it, the ``tiny`` preset (H=64, 2 layers,
2 heads) with 512 positions (the learned table's rows past 128 are never trained: that is the point), the
same initial weights elsewhere, AdamW at 2e-3 with 5% warm-up and linear decay, batches of 32 windows of
128 tokens, MLM with BERT's 15% (every target [MASK] at evaluation).

Evaluation: held-out documents, cut into windows of 512 tokens; the same masked tokens are scored with
512 tokens of context (one window) and with 128 (each 512 window cut in four). A code that extrapolates
reads the longer context at least as well as the shorter one; one that does not gets worse past the
length it was trained on. Prints a Markdown table; ``docs/questions/05-learned-positions.md`` quotes one run.
"""

import argparse
import json
import time

import datasets
import numpy as np
import torch

from bert18 import Bert18Config, Bert18ForMaskedLM
from bert18.data import builtin_corpus
from bert18.tokenization import train_tokenizer

TYPES = ("learned", "sinusoidal", "rotary", "alibi")


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([i for doc in ids for i in doc])


def windows(stream: torch.Tensor, length: int) -> torch.Tensor:
    usable = len(stream) // length * length
    return stream[:usable].view(-1, length)


def mask(
    ids: torch.Tensor, tokenizer, generator: torch.Generator, probability: float = 0.15, all_mask: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of ``ids`` (80/10/10, or every target [MASK])."""
    chosen = torch.rand(ids.shape, generator=generator) < probability
    labels = ids.masked_fill(~chosen, -100)
    inputs = ids.clone()
    draw = torch.rand(ids.shape, generator=generator)
    replace = chosen if all_mask else chosen & (draw < 0.8)
    inputs[replace] = tokenizer.mask_token_id
    if not all_mask:
        random = chosen & (draw >= 0.8) & (draw < 0.9)
        inputs[random] = torch.randint(len(tokenizer), ids.shape, generator=generator)[random]
    return inputs, labels


def rate(step: int, steps: int) -> float:
    """Linear warm-up over 5% of the steps, then linear decay to 0."""
    warmup = max(1, steps // 20)
    return min((step + 1) / warmup, max(0.0, (steps - step) / (steps - warmup)))


def evaluate(model, inputs: torch.Tensor, labels: torch.Tensor, length: int) -> float:
    """Mean loss per target with ``length``-token context (512 windows cut into pieces of ``length``)."""
    model.eval()
    pieces_in, pieces_out = inputs.reshape(-1, length), labels.reshape(-1, length)
    total = count = 0.0
    with torch.no_grad():
        for start in range(0, len(pieces_in), 16):
            out = model(pieces_in[start : start + 16], labels=pieces_out[start : start + 16])
            targets = (pieces_out[start : start + 16] != -100).sum().item()
            total += out.loss.item() * targets
            count += targets
    model.train()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    texts = list(corpus["text"])
    order = np.random.default_rng(args.seed).permutation(len(texts))
    held_out = [texts[i] for i in order[: max(8, len(texts) // 10)]]
    train = [texts[i] for i in order[max(8, len(texts) // 10) :]]
    train_rows = windows(token_stream(tokenizer, train), 128)
    eval_ids = windows(token_stream(tokenizer, held_out), 512)[:64]
    eval_inputs, eval_labels = mask(eval_ids, tokenizer, torch.Generator().manual_seed(1), all_mask=True)
    print(
        f"{len(train_rows)} training windows of 128, {len(eval_ids)} held-out windows of 512, vocabulary "
        f"{len(tokenizer)}"
    )
    results = {}
    for kind in TYPES:
        config = Bert18Config.from_preset(
            "tiny",
            vocab_size=len(tokenizer),
            max_position_embeddings=512,
            position_embedding_type=kind,
            pretraining_tasks=["mlm"],
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(args.seed)
        model = Bert18ForMaskedLM(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: rate(s, args.steps))
        rng, generator = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
        start = time.perf_counter()
        for _ in range(args.steps):
            batch = train_rows[torch.from_numpy(rng.choice(len(train_rows), args.batch_size, replace=False))]
            inputs, labels = mask(batch, tokenizer, generator)
            model(inputs, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        results[kind] = {
            "loss_128": evaluate(model, eval_inputs, eval_labels, 128),
            "loss_512": evaluate(model, eval_inputs, eval_labels, 512),
            "seconds": time.perf_counter() - start,
        }
        print(kind, results[kind], flush=True)
    print(f"\n{args.steps} steps of 32 x 128 tokens; held-out MLM loss per target (nats), same targets:\n")
    print("| positions | context 128 (trained length) | context 512 | change |")
    print("|---|---|---|---|")
    for kind, r in results.items():
        print(f"| {kind} | {r['loss_128']:.3f} | {r['loss_512']:.3f} | {r['loss_512'] - r['loss_128']:+.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

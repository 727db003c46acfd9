"""Length extrapolation of four position codes (question 5): train a tiny MLM at 128 tokens, read 256 and 512.

    python docs/scripts/position_extrapolation.py [--seeds 3] [--steps 450] [--json out.json]

Everything is the same but ``position_embedding_type`` (learned, sinusoidal, rotary, ALiBi): the built-in
corpus (standard-library documentation), a WordPiece vocabulary of 4,096 trained on it, a fixed split of
its documents (10% held out), the ``tiny`` preset (H=64, 2 layers, 2 heads, no dropout) with 512
positions, MLM with BERT's 15% and 80/10/10 on packed windows of 128 tokens (batches of 32), AdamW at
``--lr`` with 5% warm-up and linear decay. A seed sets the initial weights, the batches and the masks;
the held-out masks are the same for every run.

A fifth arm, ``sinusoidal-scaled``, is the sinusoidal code with its fixed table multiplied by
0.02 * sqrt(2) (about 1/35). bert18's sinusoids, like DistilBERT's option, are added at amplitude 1 to word
vectors initialised at std 0.02, so after the LayerNorm the sum is almost only position (the Transformer
multiplies its word vectors by sqrt(width) first); in this short run the unscaled model learns nothing
from its context, and the scaled arm shows what the code does once it can.

Learned positions cannot extrapolate: a table has a row per position, and training at 128 tokens only
ever updates rows 0-127. The script gives the table 512 rows, so rows 128-511 exist but keep their random
initialisation (normal, std 0.02; AdamW's decoupled weight decay shrinks them by under 1%); that is what
a BERT checkpoint trained at 128 tokens holds past 128 if its table is larger, and reading 512 tokens
with it is the measurement (a table of 128 rows would refuse the input).

Evaluation: the held-out documents as one token stream, cut into windows of 512 tokens, 15% of the
tokens replaced by [MASK] (three draws over the same windows, for more targets). The same masked tokens
are scored with the windows cut into pieces of 8, 32, 128, 256 or 512 tokens, so only the context each
target sees changes:

- up to 128 (the trained length), the check that the model reads its context at all: if it did not,
  cutting the context would cost nothing, and its loss would sit at that of no context at all (the
  training tokens' frequencies, printed as a reference line);
- above 128, the extrapolation: a code that carries over reads the longer context at least as well as
  128 tokens (a little better, as targets near a cut regain their neighbours); one that does not gets
  worse past the length it was trained on. At 512 the targets are also split by where they sit, in the
  first 128 positions of the window (trained positions, but untrained keys around them) or beyond.

Prints Markdown tables: loss per target (nats) for each code and context, mean ± standard deviation over
seeds, and the change from 128 tokens on each seed. ``docs/evidence.md`` (its question 5 section) and
``docs/questions/05-learned-positions.md`` quote a run of the defaults (``--types`` picks the arms; the
slow test in ``tests/test_evidence.py`` runs three of them).
"""

import argparse
import json
import math

import datasets
import numpy as np
import torch
import transformers

from bert18 import Bert18Config, Bert18ForMaskedLM
from bert18.data import builtin_corpus
from bert18.tokenization import train_tokenizer

# The four codes, and the sinusoids scaled down to the word vectors' size (see the module docstring).
TYPES = ("learned", "sinusoidal", "sinusoidal-scaled", "rotary", "alibi")
TRAINED = 128
CONTEXTS = (8, 32, 128, 256, 512)
LONGEST = max(CONTEXTS)


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """The texts' tokens, one document after another, without special tokens (packed windows)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([i for doc in ids for i in doc])


def windows(stream: torch.Tensor, length: int) -> torch.Tensor:
    usable = len(stream) // length * length
    return stream[:usable].view(-1, length)


def mask(
    ids: torch.Tensor, tokenizer, generator: torch.Generator, probability: float = 0.15, all_mask: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of ``ids`` (80/10/10, or every target [MASK] for evaluation)."""
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


@torch.no_grad()
def losses_by_context(model: Bert18ForMaskedLM, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean loss per target of the same masked tokens with each context length: the windows of
    ``LONGEST`` tokens cut into pieces of that length. Keys: the lengths, and ``<length> first 128`` /
    ``<length> beyond 128`` for the targets in the first ``TRAINED`` positions of their window or past them."""
    model.eval()
    results = {}
    for length in CONTEXTS:
        pieces_in, pieces_out = inputs.reshape(-1, length), labels.reshape(-1, length)
        per_target = []
        for start in range(0, len(pieces_in), max(1, 4096 // length)):
            rows = slice(start, start + max(1, 4096 // length))
            logits = model(pieces_in[rows]).logits
            per_target.append(
                torch.nn.functional.cross_entropy(
                    logits.transpose(1, 2), pieces_out[rows], ignore_index=-100, reduction="none"
                )
            )
        loss = torch.cat(per_target).reshape(labels.shape)  # back to the windows' layout: 0 where no target
        targets = labels != -100
        early = targets.clone()
        early[:, TRAINED:] = False
        results[str(length)] = loss[targets].mean().item()
        results[f"{length} first {TRAINED}"] = loss[early].mean().item()
        results[f"{length} beyond {TRAINED}"] = loss[targets & ~early].mean().item()
    model.train()
    return results


def run(kind: str, seed: int, tokenizer, train_rows: torch.Tensor, evaluation, args) -> dict[str, float]:
    """Train one model with positions ``kind`` from ``seed``; its held-out losses by context."""
    config = Bert18Config.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        max_position_embeddings=LONGEST,
        position_embedding_type=kind.removesuffix("-scaled"),
        pretraining_tasks=["mlm"],
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,  # cramming: no dropout in a short pretraining run
        attention_probs_dropout_prob=0.0,
        sparse_prediction=True,  # the head scores the masked positions only: the same loss, faster
    )
    torch.manual_seed(seed)
    model = Bert18ForMaskedLM(config)
    if kind == "sinusoidal-scaled":  # the fixed table's rms (1/sqrt 2) brought down to the word vectors' std
        model.bert18.embeddings.sinusoidal_table.mul_(config.initializer_range * math.sqrt(2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: rate(s, args.steps))
    rng, generator = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    for _ in range(args.steps):
        batch = train_rows[torch.from_numpy(rng.choice(len(train_rows), args.batch_size, replace=False))]
        inputs, labels = mask(batch, tokenizer, generator)
        model(inputs, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    result = losses_by_context(model, *evaluation)
    shown = [str(c) for c in CONTEXTS] + [f"{LONGEST} first {TRAINED}", f"{LONGEST} beyond {TRAINED}"]
    print(f"{kind:<10} seed {seed}: " + ", ".join(f"{k} {result[k]:.3f}" for k in shown), flush=True)
    return result


def experiment(
    seeds: int = 3, steps: int = 450, batch_size: int = 32, lr: float = 3e-3, types: tuple[str, ...] = TYPES
) -> dict:
    """Each position code for each seed: held-out MLM loss per target by context length (``runs``: position
    code -> one dict per seed, keys as ``losses_by_context``'s), and the no-context reference (``unigram``)."""
    args = argparse.Namespace(steps=steps, batch_size=batch_size, lr=lr)
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    corpus = builtin_corpus()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    texts = list(corpus["text"])
    order = np.random.default_rng(0).permutation(len(texts))  # one split for every seed
    cut = max(8, len(texts) // 10)
    train_rows = windows(token_stream(tokenizer, [texts[i] for i in order[cut:]]), TRAINED)
    held_out = windows(token_stream(tokenizer, [texts[i] for i in order[:cut]]), LONGEST)
    eval_ids = held_out.repeat(3, 1)  # three mask draws over the held-out windows: three times the targets
    evaluation = mask(eval_ids, tokenizer, torch.Generator().manual_seed(10_000), all_mask=True)
    print(
        f"{len(train_rows)} training windows of {TRAINED}, {len(held_out)} held-out windows of {LONGEST} "
        f"masked three times ({int((evaluation[1] != -100).sum())} targets), vocabulary {len(tokenizer)}; "
        f"{steps} steps of {batch_size} ({steps * batch_size / len(train_rows):.1f} passes)",
        flush=True,
    )
    counts = torch.bincount(train_rows.flatten(), minlength=len(tokenizer)).double() + 1  # add-one smoothing
    targets = evaluation[1][evaluation[1] != -100]
    unigram = -(counts / counts.sum()).log()[targets].mean().item()
    print(f"no context (the training tokens' frequencies): {unigram:.3f} nats per target", flush=True)
    runs = {kind: [run(kind, seed, tokenizer, train_rows, evaluation, args) for seed in range(seeds)] for kind in types}
    return {"unigram": unigram, "runs": runs}


def tables(measured: dict) -> str:
    """The Markdown tables of ``experiment``'s result: loss by context (mean ± std over seeds), and the change
    from 128 per seed."""
    results = measured["runs"]
    seeds = len(next(iter(results.values())))
    lines = [
        f"Held-out MLM loss per target (nats), mean ± std over {seeds} seeds; the same targets in every column:",
        "",
        "| positions | " + " | ".join(f"context {c}" + (" (trained)" if c == TRAINED else "") for c in CONTEXTS) + " |",
        "|---|" + "---:|" * len(CONTEXTS),
        "| no context (training-token frequencies) | "
        + " | ".join([f"{measured['unigram']:.3f}"] * len(CONTEXTS))
        + " |",
    ]
    for kind, runs in results.items():
        cells = [np.array([r[str(c)] for r in runs]) for c in CONTEXTS]
        lines.append(f"| {kind} | " + " | ".join(f"{x.mean():.3f} ± {x.std():.3f}" for x in cells) + " |")
    lines += [
        "",
        f"Change from context {TRAINED} on each seed (nats; negative: the longer context helps), and at "
        f"{LONGEST} by where the target sits in its window of {LONGEST} (against the same targets at {TRAINED}):",
        "",
        "| positions | 32 - 128 | 256 - 128 | 512 - 128 | 512 - 128, targets at positions 0-127 of the window "
        "| 512 - 128, targets at positions 128-511 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, runs in results.items():
        cells = [
            ", ".join(f"{r[f'{length}{part}'] - r[f'{TRAINED}{part}']:+.3f}" for r in runs)
            for length, part in (
                (32, ""),
                (256, ""),
                (LONGEST, ""),
                (LONGEST, f" first {TRAINED}"),
                (LONGEST, f" beyond {TRAINED}"),
            )
        ]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    results = experiment(args.seeds, args.steps, args.batch_size, args.lr, tuple(args.types))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    print("\n" + tables(results))


if __name__ == "__main__":
    main()

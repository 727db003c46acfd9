"""ModernBERT throughput: bert18's modern encoder against transformers.ModernBertForMaskedLM, same batches and weights.

    python benchmarks/modernbert_throughput.py [--size tiny|base] [--device auto|cpu|cuda] [--dtype fp32|bf16]
        [--threads 2] [--steps 3] [--rounds 3] [--max-length 128] [--batch-size 8] [--inference-batches 4]

A random ModernBERT (``modernbert-base``'s published shape: 22 layers, H 768, GeGLU 1,152, 128-token local
windows with a global layer every third, rotary 160k / 10k, 8,192 positions; ``tiny`` is 4 layers of 128 for a
quick check) is built by transformers, and bert18's model is converted from it with
``bert18.convert.from_transformers``, so both hold the same weights; their losses on the first batch are
printed side by side.

- **Pretraining step** (forward, backward, AdamW; dropout as configured, 0 in ModernBERT): MLM with 30%
  masking (80/10/10) on the sentence pairs of ``benchmarks/pretrain_throughput.py`` (built-in corpus, BERT's
  uncased WordPiece, each batch padded to its longest row). transformers runs twice: as shipped
  (``sparse_prediction=False``, its default) and with ``sparse_prediction=True`` (the vocabulary projection on
  the masked tokens only, as bert18's recipes do), so the gain of unpadding shows apart from the sparse head.
  bert18 also runs its last layer's output projection and feed-forward on the masked tokens alone (the only
  final states the sparse head reads; every token still gives keys and values).
- **Inference** (feature extraction, ``inference_mode``): the encoders only (``ModernBertModel`` and
  ``Bert18Model``) on the corpus's paragraphs of ``benchmarks/inference_throughput.py``, padded to the longest
  of each batch.

Reported: real (non-padding) tokens/s, the median of ``--rounds`` (the models take turns within each round),
and the ratio to transformers as shipped; the *work bound* (``forward_work``); and on CPU a profile of bert18's
step: the share of matmuls, attention and the rest, and the rate its matmuls reach against square matmuls on
the same machine (``where_the_time_goes``).
On a shared machine the absolute figures move from run to run; the ratios, measured in one process on the
same batches, move less.
"""

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from common import DTYPES, autocast, matmul_peak_flops, pick_device, real_tokenizer, tokens_per_second
from inference_throughput import paragraphs
from pretrain_throughput import optimizer_for, timed_steps, train_step

from bert18.collators import PretrainingCollator
from bert18.convert import from_transformers
from bert18.data import builtin_corpus, prepare_pretraining_dataset
from bert18.data.pairs import SentencePairDataset

SIZES = {
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=192),
    "base": {},  # ModernBertConfig's defaults are ModernBERT-base
}


def mlm_batches(batch_size: int, max_length: int, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` MLM batches (30% masking) of the sentence pairs pretrain_throughput.py uses, in random order."""
    tokenizer = real_tokenizer()
    documents = prepare_pretraining_dataset(builtin_corpus(), tokenizer, ["mlm", "nsp"], max_length)
    pairs = SentencePairDataset(documents, tokenizer, ["mlm", "nsp"], max_length=max_length, seed=seed)
    collate = PretrainingCollator(tokenizer, ["mlm"], seed=seed, mlm_probability=0.3)
    order = np.random.default_rng(seed).permutation(len(pairs))
    batches = []
    for b in range(count):
        rows = [pairs[int(i)] for i in order[b * batch_size : (b + 1) * batch_size]]
        kept = ("input_ids", "special_tokens_mask", "example_index")
        batch = collate([{k: v for k, v in row.items() if k in kept} for row in rows])
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    return batches


def build_models(size: str, device: torch.device, attention: str) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    # BERT's tokenizer pads with 0; ModernBERT's vocabulary (50,368) holds its ids.
    config = transformers.ModernBertConfig(pad_token_id=0, **SIZES[size])
    shipped = transformers.ModernBertForMaskedLM._from_config(config, attn_implementation="sdpa")
    sparse = transformers.ModernBertForMaskedLM._from_config(config, attn_implementation="sdpa")
    sparse.load_state_dict(shipped.state_dict())
    sparse.config.sparse_prediction = sparse.sparse_prediction = True
    ours = from_transformers(shipped)
    ours.config._attn_implementation = attention
    ours.config.sparse_prediction = True  # as bert18's pretraining recipes set it
    models = {"transformers": shipped, "transformers sparse": sparse, "bert18": ours}
    return {name: model.to(device) for name, model in models.items()}


def forward_work(
    config: transformers.ModernBertConfig,
    batches: list[dict],
    unpadded: bool,
    sparse: bool,
    final_layer_on_targets: bool = False,
    attention: bool = True,
) -> float:
    """Multiply-accumulates of the forward matmuls over ``batches`` (backward is about twice as many, in the same
    proportions): projections, gated feed-forward, attention scores and values, the MLM head's transform and its
    vocabulary projection. Padded: every slot of every row; ``unpadded``: the real tokens (attention within each
    row's real length); ``sparse``: the head on the masked tokens only, and (with ``final_layer_on_targets``, as
    bert18 does) the last layer's output projection and feed-forward too; ``attention=False`` leaves out the scores
    and values (the linear layers' work alone). A bound on what skipping work can buy."""
    hidden, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    after_attention = hidden * hidden + 3 * hidden * inner  # output projection, gated feed-forward
    per_token = layers * (3 * hidden * hidden + after_attention)
    head = hidden * hidden + hidden * config.vocab_size
    work = 0.0
    for batch in batches:
        lengths = batch["attention_mask"].sum(dim=1).double()
        rows, slots = batch["attention_mask"].shape
        tokens = float(lengths.sum()) if unpadded else float(rows * slots)
        pairs = float((lengths**2).sum()) if unpadded else float(rows * slots * slots)
        targets = float((batch["labels"] != -100).sum()) if sparse else tokens
        work += tokens * per_token + attention * layers * 2 * hidden * pairs + targets * head
        if final_layer_on_targets:
            work -= (tokens - targets) * after_attention
    return work


def pretraining(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    batches = [
        {k: v.to(device) for k, v in b.items()} for b in mlm_batches(args.batch_size, args.max_length, args.steps * 2)
    ]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    slots = sum(b["attention_mask"].numel() for b in batches)
    models = build_models(args.size, device, args.attention)
    with torch.no_grad():
        losses = {name: model.eval()(**batches[0]).loss.item() for name, model in models.items()}
    optimizers = {name: optimizer_for(model, device) for name, model in models.items()}
    for name, model in models.items():  # warm-up
        model.train()
        train_step(model, optimizers[name], batches[0], dtype, device)
    rates = interleaved(
        {
            name: (
                lambda name=name: timed_steps(
                    models[name], optimizers[name], batches, dtype, device, args.steps, start=1
                )
            )
            for name in models
        },
        args.rounds,
    )
    print(
        f"\n== pretraining step, {args.size}: batch {args.batch_size}, max length {args.max_length}, 30% MLM, "
        f"{device.type} {str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads =="
    )
    print(
        f"real tokens {real / slots:.1%} of the padded batches; loss on batch 0: "
        + ", ".join(f"{name} {loss:.6f}" for name, loss in losses.items())
    )
    report(rates)
    config = models["transformers"].config
    shipped = forward_work(config, batches, unpadded=False, sparse=False)
    ours = forward_work(config, batches, unpadded=True, sparse=True, final_layer_on_targets=True)
    sparse = forward_work(config, batches, unpadded=False, sparse=True)
    print(
        f"work bound: with padding and unmasked rows of the head and last layer skipped bert18 does "
        f"{shipped / ours:.2f}x less matmul "
        f"work than transformers as shipped ({shipped / sparse:.2f}x for its sparse prediction alone): the most "
        "that skipping work can buy"
    )
    if device.type == "cpu":
        where_the_time_goes(models["bert18"], optimizers["bert18"], batches[1 : 1 + args.steps], dtype, device)
    models.clear()


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")  # the kernels; aten::linear only dispatches to them


def where_the_time_goes(model, optimizer, batches: list[dict], dtype: torch.dtype, device: torch.device) -> None:
    """Profile bert18's training steps: the share of matmuls, attention and the rest, and the rate its matmuls reach
    against this machine's (the linear layers' work, forward and backward, over the matmuls' time). With its matmuls
    near the machine's rate and the work bound reached, a faster kernel can only shave the rest."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for batch in batches:
            train_step(model, optimizer, batch, dtype, device)
    seconds: dict[str, float] = {"matmul": 0.0, "attention": 0.0, "rest": 0.0}
    for event in profile.key_averages():
        kind = "matmul" if event.key in MATMULS else "attention" if "scaled_dot_product" in event.key else "rest"
        seconds[kind] += event.self_cpu_time_total / 1e6
    linear = 3 * forward_work(
        model.config, batches, unpadded=True, sparse=True, final_layer_on_targets=True, attention=False
    )  # backward: twice the forward's multiply-accumulates
    rate, peak = 2 * linear / seconds["matmul"], matmul_peak_flops(device, dtype)
    total = sum(seconds.values())
    print(
        f"bert18's step, profiled: matmuls {seconds['matmul'] / total:.0%} of its time at {rate / 1e9:,.0f} GFLOP/s, "
        f"{rate / peak:.0%} of this machine's {peak / 1e9:,.0f} (square matmuls); attention "
        f"{seconds['attention'] / total:.0%}, the rest {seconds['rest'] / total:.0%}"
    )


def inference(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    tokenizer = real_tokenizer()
    texts = paragraphs()[: 32 * args.inference_batches]
    batches = [
        tokenizer(
            texts[i : i + 32],
            padding=True,
            truncation=True,
            max_length=args.max_length,
            return_token_type_ids=False,
            return_tensors="pt",
        ).to(device)
        for i in range(0, len(texts), 32)
    ]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    slots = sum(b["attention_mask"].numel() for b in batches)
    built = build_models(args.size, device, args.attention)
    encoders = {"transformers": built["transformers"].model.eval(), "bert18": built["bert18"].bert18.eval()}

    def encode(name: str, batch: dict) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, dtype):
            return encoders[name](**batch).last_hidden_state

    mask = batches[0]["attention_mask"].bool()
    difference = (
        (encode("bert18", batches[0])[mask].float() - encode("transformers", batches[0])[mask].float()).abs().max()
    )

    def rate(name: str) -> float:
        return tokens_per_second(lambda batch: encode(name, batch), batches, real, device)

    for name in encoders:  # warm-up
        rate(name)
    rates = interleaved({name: (lambda name=name: rate(name)) for name in encoders}, args.rounds)
    print(
        f"\n== inference (encoder), {args.size}: {len(batches)} batches of 32 paragraphs, max length "
        f"{args.max_length}, {device.type} {str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads =="
    )
    print(f"real tokens {real / slots:.1%} of the padded batches; max |difference| at real tokens {difference:.2e}")
    report(rates)


def interleaved(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """The median rate of each run over ``rounds``, the models taking turns within each round: on a shared
    machine a change of load then hits every model alike instead of the one timed at that moment."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            rates[name].append(run())
    return {name: statistics.median(values) for name, values in rates.items()}


def report(rates: dict[str, float]) -> None:
    print(f"{'model':<22}{'real tokens/s':>15}{'ratio':>8}")
    for name, value in rates.items():
        print(f"{name:<22}{value:>15,.0f}{value / rates['transformers']:>7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="base")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=list(DTYPES), help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--inference-batches", type=int, default=4)
    parser.add_argument("--attention", default="sdpa", help="bert18's attention: sdpa or flash_attention_2")
    parser.add_argument("--skip", choices=["pretraining", "inference"], help="run only the other measurement")
    args = parser.parse_args()
    device = pick_device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.skip != "pretraining":
        pretraining(args, device, dtype)
    if args.skip != "inference":
        inference(args, device, dtype)


if __name__ == "__main__":
    main()

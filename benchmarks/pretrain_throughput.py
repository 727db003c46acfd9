"""Pretraining step throughput: bert18 against transformers.BertForPreTraining, same batches, same weights.

    python benchmarks/pretrain_throughput.py [--size small|base|all] [--device auto|cpu|cuda]
        [--dtype fp32|bf16] [--threads 2] [--steps 4] [--rounds 3] [--compile] [--no-memory]

The work is BERT's: MLM (15%, 80/10/10) + NSP on sentence pairs drawn from the built-in corpus by
``SentencePairDataset`` with BERT's real uncased WordPiece (30,522 ids), so lengths follow the
corpus (``short_seq_prob`` included) and each batch is padded to its longest row, as a data loader
does. Both models start from the same weights (bert18's converted from transformers' with
``bert18.convert.from_transformers``; their losses on the first batch are printed side by side),
see the same batches and run a full training step: forward, backward, AdamW (fused where the device
has it, for both, as the Trainer's default), dropout on.

Reported per model: real (non-padding) tokens/s (median of ``--rounds``), the ratio to transformers,
peak memory of a training run measured in a fresh process each (``--no-memory`` skips it), and model
FLOPs utilization against the measured dense-matmul peak of this device and dtype. Model FLOPs use
the PaLM formula on real tokens, the work BERT pretraining needs whatever the implementation:
6 x (encoder matmul parameters) + 12 x layers x hidden x (the token's sequence length) per real
token, plus 6 x (transform + vocabulary projection) per masked token and the pooler + NSP head per
example. Both models get the same count, so the MFU ratio is the speed ratio.

Sizes: ``small`` = 4 layers, hidden 256, 4 heads, FFN 1024, batch 32; ``base`` = BERT-base, batch 8;
both max length 128 and vocabulary 30,522.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    DTYPES,
    autocast,
    matmul_peak_flops,
    median_rate,
    peak_memory,
    pick_device,
    real_tokenizer,
    synchronize,
)

from bert18.collators import PretrainingCollator
from bert18.convert import from_transformers
from bert18.data import builtin_corpus, prepare_pretraining_dataset
from bert18.data.pairs import SentencePairDataset

TASKS = ["mlm", "nsp"]
SIZES = {
    "small": ({"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024}, 32),
    "base": ({}, 8),  # BertConfig's defaults are BERT-base
}


def corpus_batches(batch_size: int, max_length: int, count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``count`` MLM + NSP batches of sentence pairs from the built-in corpus, in random order."""
    tokenizer = real_tokenizer()
    documents = prepare_pretraining_dataset(builtin_corpus(), tokenizer, TASKS, max_length)
    pairs = SentencePairDataset(documents, tokenizer, TASKS, max_length=max_length, seed=seed)
    collate = PretrainingCollator(tokenizer, TASKS, seed=seed)
    order = np.random.default_rng(seed).permutation(len(pairs))
    if len(order) < count * batch_size:
        raise SystemExit(f"the corpus gives {len(order)} pairs, fewer than {count} batches of {batch_size}")
    return [collate([pairs[int(i)] for i in order[b * batch_size : (b + 1) * batch_size]]) for b in range(count)]


def build_models(size: str, device: torch.device, attention: str) -> dict[str, torch.nn.Module]:
    overrides, _ = SIZES[size]
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, max_position_embeddings=512, **overrides)
    reference = transformers.BertForPreTraining._from_config(config, attn_implementation="sdpa")
    ours = from_transformers(reference)
    ours.config._attn_implementation = attention
    ours.config.sparse_prediction = True  # as bert18's pretraining recipes set it
    return {"transformers": reference.to(device), "bert18": ours.to(device)}


def model_flops(config: transformers.BertConfig, batch: dict[str, torch.Tensor]) -> float:
    """PaLM-formula training FLOPs of one batch on its real tokens (see the module docstring)."""
    hidden, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    lengths = batch["attention_mask"].sum(1).double()
    encoder = 6 * layers * (4 * hidden * hidden + 2 * hidden * inner) * lengths.sum()
    attention = 12 * layers * hidden * (lengths**2).sum()
    masked = batch["labels"].ne(-100).sum()
    head = 6 * (hidden * hidden + hidden * config.vocab_size) * masked
    pooler = 6 * (hidden * hidden + 2 * hidden) * len(lengths)
    return float(encoder + attention + head + pooler)


def optimizer_for(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    except RuntimeError:  # no fused kernel for this device
        return torch.optim.AdamW(model.parameters(), lr=1e-4)


def train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: dict, dtype: torch.dtype, device: torch.device
) -> None:
    with autocast(device, dtype):
        loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed_steps(model, optimizer, batches, dtype, device, steps: int, start: int) -> float:
    """Real tokens per second over ``steps`` training steps from batch ``start`` on."""
    chosen = [batches[(start + i) % len(batches)] for i in range(steps)]
    synchronize(device)
    begin = time.perf_counter()
    for batch in chosen:
        train_step(model, optimizer, batch, dtype, device)
    synchronize(device)
    return sum(int(b["attention_mask"].ne(0).sum()) for b in chosen) / (time.perf_counter() - begin)


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: peak memory of building one model and training it on the saved batches."""
    device, dtype = pick_device(args.device), DTYPES[args.dtype]
    batches = [{k: v.to(device) for k, v in b.items()} for b in torch.load(args.batches)]
    with peak_memory(device) as memory:
        model = build_models(args.size, device, args.attention)[args.memory_child]
        model.train()
        optimizer = optimizer_for(model, device)
        for batch in batches:
            train_step(model, optimizer, batch, dtype, device)
    print(json.dumps(memory))


def measure_memory(args: argparse.Namespace, name: str, batches: list[dict[str, torch.Tensor]]) -> float | None:
    """Peak memory of a short training run of ``name`` in a fresh process (CPU peak RSS is per process)."""
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "batches.pt"
        torch.save([{k: v.cpu() for k, v in b.items()} for b in batches[:3]], saved)
        command = [
            sys.executable,
            __file__,
            "--memory-child",
            name,
            "--batches",
            str(saved),
            "--size",
            args.size,
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--threads",
            str(args.threads),
            "--attention",
            args.attention,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  (memory run of {name} failed: {done.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def run_size(args: argparse.Namespace, peak: float) -> None:
    device, dtype = pick_device(args.device), DTYPES[args.dtype]
    batch_size = SIZES[args.size][1]
    batches = [
        {k: v.to(device) for k, v in b.items()} for b in corpus_batches(batch_size, args.max_length, args.steps * 2)
    ]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    slots = sum(b["attention_mask"].numel() for b in batches)
    models = build_models(args.size, device, args.attention)
    with torch.no_grad():  # same weights, same batch: the same loss (dropout off)
        losses = {name: model.eval()(**batches[0]).loss.item() for name, model in models.items()}
    if args.compile:
        models = {name: torch.compile(model) for name, model in models.items()}
    optimizers = {name: optimizer_for(model, device) for name, model in models.items()}
    for name, model in models.items():  # warm-up: allocator, kernels, compilation
        model.train()
        for batch in batches[:2]:
            train_step(model, optimizers[name], batch, dtype, device)
    rates = {
        name: median_rate(
            lambda name=name: timed_steps(models[name], optimizers[name], batches, dtype, device, args.steps, start=2),
            args.rounds,
        )
        for name in models
    }
    config = models["transformers"].config
    flops_per_token = sum(model_flops(config, b) for b in batches) / real
    print(
        f"\n== {args.size}: batch {batch_size}, max length {args.max_length}, {device.type} {args.dtype}, "
        f"{torch.get_num_threads()} threads{', compiled' if args.compile else ''} =="
    )
    mean_length = real / (len(batches) * batch_size)
    print(
        f"real tokens {real / slots:.1%} of the padded batches (mean length {mean_length:.1f}); "
        f"loss on batch 0: transformers {losses['transformers']:.6f}, bert18 {losses['bert18']:.6f}"
    )
    print(f"matmul peak {peak / 1e9:,.1f} GFLOP/s; model FLOPs {flops_per_token / 1e6:,.1f} M per real token")
    print(f"{'model':<14}{'real tokens/s':>15}{'ratio':>8}{'peak MiB':>10}{'MFU':>8}")
    for name in models:
        memory = measure_memory(args, name, batches) if args.memory else None
        shown = f"{memory:>10,.0f}" if memory is not None else f"{'-':>10}"
        mfu = rates[name] * flops_per_token / peak
        print(f"{name:<14}{rates[name]:>15,.0f}{rates[name] / rates['transformers']:>7.2f}x{shown}{mfu:>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=list(DTYPES), help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--steps", type=int, default=4, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--attention", default="sdpa", help="bert18's attention: sdpa or flash_attention_2")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--memory-child", choices=["transformers", "bert18"], help=argparse.SUPPRESS)
    parser.add_argument("--batches", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bf16" if pick_device(args.device).type == "cuda" else "fp32")
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.memory_child:
        memory_child(args)
        return
    device = pick_device(args.device)
    peak = matmul_peak_flops(device, DTYPES[args.dtype])
    for size in SIZES if args.size == "all" else [args.size]:
        run_size(argparse.Namespace(**{**vars(args), "size": size}), peak)


if __name__ == "__main__":
    main()

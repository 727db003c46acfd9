"""Run folders and the command line on bad input: everything checked before anything is written, one line and
a non-zero exit status instead of a traceback, nothing written or lost (issue 17, items 6, 11, 12, 13)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import datasets
import huggingface_hub
import pytest
from helpers import ERNIE_TASKS, ROOT, SMALL_RUN, cli_overrides
from helpers import TINY_RECIPE as TINY

import bert18.training.pretrain as pretrain
from bert18.cli import main
from bert18.training import parse_recipe, run_pretraining
from bert18.training.pretrain import RECIPE_FILE, TOKENIZER_FOLDER, build_pretraining

SMALL = dict(
    SMALL_RUN,
    pretraining_tasks=ERNIE_TASKS,
    max_documents=24,
    tokenizer_vocab_size=1500,
    per_device_train_batch_size=8,
    per_device_eval_batch_size=16,
    validation_fraction=0.0,
    plot=False,
)
SMALL_CLI = cli_overrides(SMALL)


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- item 12: one line, non-zero exit status, nothing written -----------------------------------------------------


def test_output_dir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["pretrain", "tiny-demo", f"--output_dir={target}", *SMALL_CLI]) == 2
    assert "is a file, not a folder" in one_line_error(capsys, "bert18 pretrain")
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_malformed_yaml_names_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: tiny\nmax_steps: 4\nconfig_overrides: {hidden_size: 64\noutput_dir: out\n")
    assert main(["pretrain", str(bad)]) == 2
    message = one_line_error(capsys, "bert18 pretrain")
    assert f"{bad}, line 4" in message and "not valid YAML" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_push_to_hub_without_the_hub_fails_before_writing(tmp_path, capsys):
    """A token the Hub does not know (here it cannot even be reached): refused before the folder exists."""
    output = tmp_path / "run"
    assert (
        main(
            [
                "pretrain",
                "tiny-demo",
                f"--output_dir={output}",
                "--push_to_hub=true",
                "--hub_token=hf_invalid",
                *SMALL_CLI,
            ]
        )
        == 2
    )
    assert "push_to_hub: cannot reach the Hugging Face Hub" in one_line_error(capsys, "bert18 pretrain")
    assert not output.exists()


def test_hub_corpus_and_dataset_offline(tmp_path, capsys, monkeypatch, minilm_path):
    """A Hub name with no network: the pretraining corpus and the fine-tuning dataset each fail in one line."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # the real offline code path, without retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    output = tmp_path / "run"
    assert main(["pretrain", "tiny-demo", f"--output_dir={output}", "--corpus=someone/some-corpus", *SMALL_CLI]) == 2
    assert "corpus 'someone/some-corpus' is no local file or folder, and the Hub cannot be reached" in one_line_error(
        capsys, "bert18 pretrain"
    )
    assert (
        main(
            [
                "finetune",
                "finetune-glue-sst2",
                f"--output_dir={output}",
                f"--model_name_or_path={minilm_path}",
                "--use_cpu=true",
                "--report_to=none",
            ]
        )
        == 2
    )
    assert "the Hub cannot be reached" in one_line_error(capsys, "bert18 finetune")
    assert not output.exists()


def test_convert_missing_folder_and_destination_permissions(tmp_path, capsys, minilm_path):
    assert main(["convert", str(tmp_path / "nonexistent"), str(tmp_path / "out")]) == 2
    assert f"no checkpoint folder at {tmp_path / 'nonexistent'}" in one_line_error(capsys, "bert18 convert")
    assert not (tmp_path / "out").exists()
    old = os.umask(0o022)
    try:
        assert main(["convert", minilm_path, str(tmp_path / "converted")]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "converted").stat().st_mode) == 0o755  # as mkdir under umask 022, not 0700


def test_console_script_prints_no_traceback(tmp_path):
    """Through a real process: the exit status and one line on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "bert18.cli", "convert", "/nonexistent/model", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "no checkpoint folder at /nonexistent/model" in result.stderr


# -- item 11: bert18 train-tokenizer -------------------------------------------------------------------------------


@pytest.fixture
def text_file(tmp_path, corpus):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(corpus["text"][:200]), encoding="utf-8")
    return path


def test_train_tokenizer_refuses_a_file_and_a_full_folder(tmp_path, text_file, capsys):
    existing = tmp_path / "vocab.txt"
    existing.write_text("mine")
    assert main(["train-tokenizer", str(text_file), "--output", str(existing), "--vocab-size=500", "--quiet"]) == 2
    assert "is a file" in one_line_error(capsys, "bert18 train-tokenizer")
    assert existing.read_text() == "mine"
    folder = tmp_path / "tok"
    assert main(["train-tokenizer", str(text_file), "--output", str(folder), "--vocab-size=500", "--quiet"]) == 0
    assert "-> " in capsys.readouterr().out
    before = tree(folder)
    assert main(["train-tokenizer", str(text_file), "--output", str(folder), "--vocab-size=600", "--quiet"]) == 2
    assert "is not empty" in one_line_error(capsys, "bert18 train-tokenizer") and tree(folder) == before
    assert (
        main(["train-tokenizer", str(text_file), "--output", str(folder), "--vocab-size=600", "--quiet", "--overwrite"])
        == 0
    )
    assert tree(folder) != before and not [p for p in tmp_path.iterdir() if p.name.startswith(".tok")]
    assert main(["train-tokenizer", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "t2"), "--quiet"]) == 2
    assert "no such text file" in one_line_error(capsys, "bert18 train-tokenizer") and not (tmp_path / "t2").exists()


def test_train_tokenizer_roberta_style_keeps_case(tmp_path, text_file):
    import transformers

    assert (
        main(
            [
                "train-tokenizer",
                str(text_file),
                "--output",
                str(tmp_path / "rob"),
                "--style=roberta",
                "--algorithm=bpe",
                "--vocab-size=600",
                "--quiet",
            ]
        )
        == 0
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "rob")
    text = "The JSON Module encodes Python Objects."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text  # exact round trip
    assert (
        main(["train-tokenizer", str(text_file), "--output", str(tmp_path / "bert"), "--vocab-size=600", "--quiet"])
        == 0
    )
    bert = transformers.AutoTokenizer.from_pretrained(tmp_path / "bert")
    assert bert.decode(bert(text, add_special_tokens=False)["input_ids"]).startswith("the json")  # uncased by default


# -- item 6: a failed start never blocks a rerun --------------------------------------------------------------------


def small(tmp_path, minilm_path=None, **values):
    extra = {"tokenizer_name_or_path": minilm_path} if minilm_path else {}
    return parse_recipe(TINY, output_dir=str(tmp_path / "run"), **{**SMALL, **extra, **values})


def test_a_start_interrupted_during_data_preparation_is_rerun(tmp_path, monkeypatch):
    """Ctrl-C while preparing the data leaves the recipe and the trained tokenizer; the same command starts again."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pretrain, "build_examples", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_pretraining(small(tmp_path, max_steps=2))
    output = tmp_path / "run"
    assert sorted(p.name for p in output.iterdir()) == [RECIPE_FILE, TOKENIZER_FOLDER]
    vocabulary = (output / TOKENIZER_FOLDER / "tokenizer.json").read_bytes()
    result = run_pretraining(small(tmp_path, max_steps=2))  # no --resume, no --overwrite needed
    assert "metrics" in result and (output / "model.safetensors").is_file()
    assert (output / TOKENIZER_FOLDER / "tokenizer.json").read_bytes() == vocabulary  # the same vocabulary kept


def test_leftovers_of_another_recipe_and_resume_without_checkpoint(tmp_path, minilm_path):
    output = tmp_path / "run"
    output.mkdir()
    pretrain.write_recipe(small(tmp_path, minilm_path, mlm_probability=0.2))
    before = tree(output)
    with pytest.raises(
        FileExistsError,
        match=r"holds the start of another run that failed before its first "
        r"checkpoint \(mlm_probability was 0.2, now 0.3\): pass "
        r"--overwrite_output_dir=true",
    ) as error:
        build_pretraining(small(tmp_path, minilm_path))
    assert "resume_from_checkpoint" not in str(error.value) and tree(output) == before
    with pytest.raises(
        ValueError, match="holds no checkpoint-N folder to resume from: run without resume_from_checkpoint"
    ):
        build_pretraining(small(tmp_path, minilm_path, resume_from_checkpoint="true"))
    (output / "model.safetensors").write_bytes(b"a finished run without checkpoints")
    with pytest.raises(FileExistsError, match="already holds a run") as error:
        build_pretraining(small(tmp_path, minilm_path))
    assert "resume_from_checkpoint" not in str(error.value)  # nothing to resume: not suggested


def test_bad_arguments_leave_no_folder(tmp_path, capsys):
    """Arguments once checked late (at the first batch, after the folder was written) now fail first."""
    output = tmp_path / "run"
    for bad in ("--mlm_probability=1.5", "--max_steps=-5", "--max_ngram=0", "--max_length=2"):
        assert main(["pretrain", "tiny-demo", f"--output_dir={output}", *SMALL_CLI, bad]) == 2
        one_line_error(capsys, "bert18 pretrain")
    big = json.dumps({**SMALL["config_overrides"], "max_position_embeddings": 32})  # max_length 64 > 32
    assert main(["pretrain", "tiny-demo", f"--output_dir={output}", *SMALL_CLI, f"--config_overrides={big}"]) == 2
    assert "exceeds max_position_embeddings" in one_line_error(capsys, "bert18 pretrain")
    assert not output.exists()


# -- item 13: resuming a finished run ----------------------------------------------------------------------------


def test_resuming_a_finished_run_trains_no_extra_step(tmp_path, minilm_path, capsys):
    common = dict(max_steps=2, save_strategy="steps", save_steps=2)
    run_pretraining(small(tmp_path, minilm_path, **common))
    output = tmp_path / "run"
    weights = (output / "checkpoint-2" / "model.safetensors").read_bytes()
    capsys.readouterr()
    result = run_pretraining(small(tmp_path, minilm_path, resume_from_checkpoint="true", **common))
    assert result["finished_at"] == 2 and "nothing to resume" in capsys.readouterr().out
    assert sorted(p.name for p in output.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (output / "checkpoint-2" / "model.safetensors").read_bytes() == weights
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 2
    more = run_pretraining(small(tmp_path, minilm_path, resume_from_checkpoint="true", **{**common, "max_steps": 3}))
    assert "metrics" in more and json.loads((output / "trainer_state.json").read_text())["global_step"] == 3


def test_overwrite_never_deletes_the_checkpoint_it_is_asked_to_resume(tmp_path, capsys):
    """overwrite_output_dir with resume_from_checkpoint=true, or a checkpoint inside output_dir, is refused
    before anything is deleted (it used to delete the checkpoint and start over silently); a checkpoint of
    another run stays a valid start for a replaced folder."""
    output = tmp_path / "run"
    (output / "checkpoint-4").mkdir(parents=True)
    (output / "checkpoint-4" / "trainer_state.json").write_text("{}")
    before = tree(output)
    (tmp_path / "other").mkdir()
    (tmp_path / "link").symlink_to(output)
    inside = [
        output / "checkpoint-4",
        tmp_path / "other" / ".." / "run" / "checkpoint-4",
        tmp_path / "link" / "checkpoint-4",
    ]
    for resume in ("true", *map(str, inside)):  # also through ``..`` and a symbolic link
        command = ["pretrain", "tiny-demo", f"--output_dir={output}", *SMALL_CLI, "--overwrite_output_dir=true"]
        assert main([*command, f"--resume_from_checkpoint={resume}"]) == 2
        assert "overwrite_output_dir=true would delete" in one_line_error(capsys, "bert18 pretrain")
        assert tree(output) == before
    linked = [*SMALL_CLI, f"--output_dir={tmp_path / 'link'}", "--overwrite_output_dir=true"]  # output_dir a link
    assert main(["pretrain", "tiny-demo", *linked, f"--resume_from_checkpoint={output / 'checkpoint-4'}"]) == 2
    assert "would delete" in one_line_error(capsys, "bert18 pretrain") and tree(output) == before
    elsewhere = tmp_path / "other" / "checkpoint-2"
    elsewhere.mkdir(parents=True)
    recipe = small(tmp_path, overwrite_output_dir=True, resume_from_checkpoint=str(elsewhere))
    assert pretrain.check_output_dir(recipe) == str(elsewhere) and not output.exists()

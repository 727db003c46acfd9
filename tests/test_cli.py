"""The `bert18` command: convert and its error reporting, through the real entry point."""

import json
import subprocess
import sys

import torch
import transformers

import bert18
from bert18.cli import main


def test_convert_command_writes_a_loadable_checkpoint(minilm_path, tmp_path, capsys):
    """`bert18 convert` on the real MiniLM folder: the result loads and matches transformers exactly."""
    destination = tmp_path / "minilm-bert18"
    assert main(["convert", minilm_path, str(destination)]) == 0
    assert "converted" in capsys.readouterr().out
    assert json.loads((destination / "config.json").read_text())["model_type"] == "bert18"
    tokenizer = transformers.AutoTokenizer.from_pretrained(destination)
    batch = tokenizer(["The json module encodes Python objects."], return_tensors="pt")
    with torch.no_grad():
        ours = bert18.Bert18Model.from_pretrained(destination).eval()(**batch).last_hidden_state
        theirs = transformers.BertModel.from_pretrained(minilm_path).eval()(**batch).last_hidden_state
    assert (ours - theirs).abs().max() <= 1e-5


def test_convert_command_refuses_a_non_empty_destination(minilm_path, tmp_path, capsys):
    destination = tmp_path / "taken"
    destination.mkdir()
    (destination / "keep.txt").write_text("user data")
    assert main(["convert", minilm_path, str(destination)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (destination / "keep.txt").read_text() == "user data"


def test_console_script_is_installed():
    """The `bert18` entry point of pyproject.toml runs (`python -m bert18.cli` as a fallback)."""
    result = subprocess.run([sys.executable, "-m", "bert18.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("demo", "convert", "params"):
        assert command in result.stdout

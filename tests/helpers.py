"""Helpers shared by the tests, as transformers' ``BertModelTester`` is for theirs: one tiny config
builder, a small pretraining run's recipe overrides, one ERNIE task list, a callback that interrupts a
run and the launcher of the multi-process runs, so a test states only what it changes.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``: the folder has no
``__init__.py``). The shared fixtures (the MiniLM checkpoint and tokenizer, the built-in corpus) are in
``conftest.py``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from bert18 import Bert18Config

ROOT = Path(__file__).resolve().parent.parent
#: Trains a recipe, then writes what each rank saw, its losses and weights (rank{r}.json, rank{r}.pt).
DISTRIBUTED_PRETRAIN = ROOT / "tests" / "scripts" / "distributed_pretrain.py"
CPU_ACCELERATE_CONFIG = ROOT / "recipes" / "accelerate_configs" / "cpu.yaml"
#: The demo's pretraining recipe, which the recipe tests shrink with ``SMALL_RUN``.
TINY_RECIPE = ROOT / "recipes" / "configs" / "tiny-demo.yaml"
#: Recipe overrides that make a pretraining run take seconds on a CPU: a 2-layer H=32 model on rows of
#: 64 tokens, logging every step, no evaluation, checkpoint, report, progress bar or loader workers.
SMALL_RUN = dict(
    config_overrides={
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "max_position_embeddings": 64,
    },
    max_length=64,
    logging_steps=1,
    eval_strategy="no",
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    dataloader_num_workers=0,
)

#: ERNIE's pretraining tasks, as the ``ernie-base`` recipe trains them (and ``tiny-demo`` did until it left
#: the two document tasks out): the tests that run ``tiny-demo`` set them, so sentence pairs drawn from
#: documents stay exercised end to end (pairing, resume, ranks, streaming).
ERNIE_TASKS = ["mlm", "sentence_distance", "capitalization", "token_document_relation"]


def cli_overrides(values: dict[str, Any]) -> list[str]:
    """Recipe keys as ``bert18 pretrain`` command-line arguments: a dict as JSON, a list as its items."""
    arguments: list[str] = []
    for key, value in values.items():
        if isinstance(value, list):
            arguments += [f"--{key}", *map(str, value)]
        else:
            arguments.append(f"--{key}={json.dumps(value) if isinstance(value, dict) else value}")
    return arguments


#: The tiny model most tests start from: 2 layers, H=32, 4 heads, a vocabulary of 1,000, 64 positions,
#: dropout off (deterministic in train mode too); every other field is the ``tiny`` preset's (BERT's).
TINY = dict(
    vocab_size=1000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)

#: BERT's own dropout, for tests whose model trains with it (``tiny_config(**BERT_DROPOUT)``).
BERT_DROPOUT = dict(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


def tiny_config(**overrides: Any) -> Bert18Config:
    """``Bert18Config.from_preset("tiny")`` with ``TINY`` and then ``overrides`` on top.

    A test file whose models all differ the same way binds its defaults once with
    ``functools.partial(tiny_config, ...)``; keywords given at the call still win. Overrides are copied,
    so a list bound that way (``pretraining_tasks``) is never shared between two configs.
    """
    return Bert18Config.from_preset("tiny", **{**TINY, **copy.deepcopy(overrides)})


class StopAt(TrainerCallback):
    """Stop training after optimizer step ``step``, as an interrupted run would (resume tests)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def run_distributed_pretrain(recipe: Path, *args: str, ranks: int = 1, launch_options: Sequence[str] = ()) -> None:
    """``tests/scripts/distributed_pretrain.py`` on ``recipe`` with ``args``: one plain process, or (``ranks``
    above 1) `accelerate launch` of that many gloo CPU ranks with ``cpu.yaml`` and ``launch_options``; one
    thread each, offline. Asserts it succeeded, showing the end of what it printed."""
    command = [sys.executable]
    if ranks > 1:
        command += ["-m", "accelerate.commands.launch", "--config_file", str(CPU_ACCELERATE_CONFIG), *launch_options]
        command += ["--num_processes", str(ranks), "--main_process_port", "0"]
    command += [str(DISTRIBUTED_PRETRAIN), str(recipe), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

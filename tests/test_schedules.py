"""ERNIE 2.0's continual multi-task learning: stages switch at the configured steps, inactive tasks do
not train, and a run resumed across a stage boundary reproduces the uninterrupted one."""

import pytest
import torch
from helpers import ERNIE_TASKS as ERNIE
from helpers import SMALL_RUN, StopAt
from helpers import TINY_RECIPE as TINY
from transformers import TrainerCallback

from bert18 import Bert18Config
from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining
from bert18.training.schedules import TaskSchedule

SMALL = dict(
    SMALL_RUN,
    pretraining_tasks=ERNIE,
    config_overrides={**SMALL_RUN["config_overrides"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    max_documents=8,
    per_device_train_batch_size=8,
    validation_fraction=0.0,
    weight_decay=0.0,
    max_steps=8,
)
STAGES = [
    {"step": 0, "tasks": ["mlm"]},
    {"step": 3, "tasks": ["mlm", "capitalization"]},
    {
        "step": 6,
        "tasks": ["mlm", "capitalization", "sentence_distance", "token_document_relation"],
        "weights": {"sentence_distance": 0.5},
    },
]


def test_weights_follow_the_stages():
    config = Bert18Config(pretraining_tasks=ERNIE, task_loss_weights={"capitalization": 2.0})
    schedule = TaskSchedule(STAGES, config)
    assert schedule.weights_at(0) == {
        "mlm": 1.0,
        "sentence_distance": 0.0,
        "capitalization": 0.0,
        "token_document_relation": 0.0,
    }
    assert schedule.weights_at(2) == schedule.weights_at(0)
    assert schedule.weights_at(3) == {
        "mlm": 1.0,
        "sentence_distance": 0.0,
        "capitalization": 2.0,
        "token_document_relation": 0.0,
    }
    assert schedule.weights_at(10_000) == {
        "mlm": 1.0,
        "sentence_distance": 0.5,
        "capitalization": 2.0,
        "token_document_relation": 1.0,
    }


@pytest.mark.parametrize(
    "stages, message",
    [
        ([], "at least one stage"),
        ([{"step": 5, "tasks": ["mlm"]}], "must start at step 0"),
        ([{"step": 0, "tasks": ["mlm"]}, {"step": 0, "tasks": ["mlm", "sop"]}], "not in pretraining_tasks"),
        ([{"step": 0, "tasks": ["mlm"]}, {"step": 0, "tasks": ["mlm"]}], "must increase"),
        ([{"step": 0, "tasks": ["mlm"], "weights": {"capitalization": 1}}], "does not train it"),
        ([{"step": 0, "tasks": ["mlm"], "weight": {}}], r"unknown key\(s\) \['weight'\]"),
        ([{"step": 0}], "with 'step' and 'tasks'"),
    ],
)
def test_bad_schedules_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        TaskSchedule(stages, Bert18Config(pretraining_tasks=ERNIE))


class RecordWeights(TrainerCallback):
    def __init__(self):
        self.weights = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = dict(model.config.task_loss_weights)


def _run(tmp_path, minilm_path, name, **values):
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / name),
        tokenizer_name_or_path=minilm_path,
        task_schedule=STAGES,
        **{**SMALL, **values},
    )
    run = build_pretraining(recipe)
    recorder = RecordWeights()
    run.trainer.add_callback(recorder)
    head = run.trainer.model.heads["sentence_distance"].weight
    start = head.detach().clone()
    heads = {}

    class Snapshot(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            heads[state.global_step] = head.detach().clone()

    run.trainer.add_callback(Snapshot())
    run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    history = {entry["step"]: entry for entry in run.trainer.state.log_history if "loss" in entry}
    return run, recorder.weights, history, start, heads


def test_stages_switch_at_the_configured_steps_under_the_trainer(tmp_path, minilm_path):
    _, weights, history, start, heads = _run(tmp_path, minilm_path, "run")
    # weights in force during step s (1-based in the log) are those of stage_at(s - 1)
    assert [weights[s]["capitalization"] for s in range(1, 9)] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert [weights[s]["sentence_distance"] for s in range(1, 9)] == [0, 0, 0, 0, 0, 0, 0.5, 0.5]
    # the optimized loss is the weighted sum of the task losses the heads report
    for step, entry in history.items():
        expected = sum(weights[step][task] * entry[f"{task}_loss"] for task in ERNIE)
        assert entry["loss"] == pytest.approx(expected, rel=1e-3), step
    # a task not yet introduced does not train: its head is untouched until step 7
    assert all(torch.equal(heads[s], start) for s in range(1, 7))
    assert not torch.equal(heads[7], start)


def test_resume_across_a_stage_boundary_is_exact(tmp_path, minilm_path):
    """Stopped after step 5 (stage 2), resumed to step 8 (stage 3): the weights and losses of one run."""
    straight, _, straight_history, _, _ = _run(tmp_path, minilm_path, "straight")
    saving = dict(save_strategy="steps", save_steps=5)
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "resumed"),
        tokenizer_name_or_path=minilm_path,
        task_schedule=STAGES,
        **{**SMALL, **saving},
    )
    first = build_pretraining(recipe)
    first.trainer.add_callback(StopAt(5))
    first.trainer.train()
    assert first.trainer.state.global_step == 5 and (tmp_path / "resumed" / "checkpoint-5").is_dir()
    resumed, weights, history, _, _ = _run(tmp_path, minilm_path, "resumed", resume_from_checkpoint="true", **saving)
    assert weights[6]["sentence_distance"] == 0 and weights[7]["sentence_distance"] == 0.5
    for step in (6, 7, 8):
        assert history[step]["loss"] == straight_history[step]["loss"], step
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name

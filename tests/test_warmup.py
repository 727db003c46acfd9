"""Sequence-length warmup: DeepSpeed's fixed_linear schedule, batches cut to it under the Trainer, losses
normalised by the targets that remain, and a resumed run that truncates as the uninterrupted one did."""

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining
from bert18.training.warmup import TRUNCATABLE_TASKS, SequenceLengthWarmup

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny-demo.yaml"
SMALL = dict(
    config_overrides={"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 2,
                      "max_position_embeddings": 64, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0},
    max_length=64, max_documents=8, per_device_train_batch_size=4, gradient_accumulation_steps=2, logging_steps=1,
    eval_strategy="no", save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
    dataloader_num_workers=0, validation_fraction=0.0, max_steps=8, pretraining_tasks=["mlm", "capitalization"],
    sequence_length_warmup={"start": 16, "steps": 6},
)


def deepspeed_fixed_linear(step: int, start: int, full: int, total: int, difficulty_step: int) -> int:
    """DeepSpeed's CurriculumScheduler ``fixed_linear`` difficulty (deepspeed/runtime/data_pipeline/curriculum_
    scheduler.py), written from its documented definition."""
    difficulty = float(step) / total * (full - start) + start
    difficulty = int(difficulty) - int(difficulty) % difficulty_step
    return min(max(difficulty, start), full)


@pytest.mark.parametrize("start, full, total, multiple", [(64, 512, 1000, 8), (16, 128, 7, 8), (10, 100, 9, 1)])
def test_schedule_is_deepspeeds_fixed_linear(start, full, total, multiple):
    warmup = SequenceLengthWarmup(start=start, steps=total, full=full, multiple_of=multiple)
    for step in range(total + 5):
        assert warmup.length(step) == deepspeed_fixed_linear(step, start, full, total, multiple), step
    assert warmup.length(total) == full


@pytest.mark.parametrize("value, message", [
    ({"start": 12, "steps": 10}, "multiple of 8"),
    ({"start": 16, "steps": 0}, "positive number of optimizer steps"),
    ({"start": 16}, "with 'start' and 'steps'"),
    ({"start": 16, "steps": 5, "step": 3}, r"unknown key\(s\) \['step'\]"),
    ({"start": 64, "steps": 5}, r"below the full length \(max_length, 64\)"),
])
def test_bad_warmups_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        SequenceLengthWarmup.from_recipe(value, full=64)


def test_truncation_keeps_the_prefix_of_every_positional_entry():
    warmup = SequenceLengthWarmup(start=8, steps=4, full=16)
    batch = {"input_ids": torch.arange(48).view(3, 16), "attention_mask": torch.ones(3, 16, dtype=torch.long),
             "labels": torch.full((3, 16), -100), "next_thing": torch.tensor([1, 2, 3])}
    cut = warmup.truncate(batch, step=0)
    assert cut["input_ids"].shape == (3, 8) and torch.equal(cut["input_ids"], batch["input_ids"][:, :8])
    assert cut["attention_mask"].shape == (3, 8) and cut["labels"].shape == (3, 8)
    assert torch.equal(cut["next_thing"], batch["next_thing"])
    assert warmup.truncate(batch, step=4) is batch  # warm: untouched


def test_sentence_tasks_are_refused(tmp_path, minilm_path):
    assert "mlm" in TRUNCATABLE_TASKS and "nsp" not in TRUNCATABLE_TASKS and "plm" not in TRUNCATABLE_TASKS
    recipe = parse_recipe(TINY, output_dir=str(tmp_path / "run"), tokenizer_name_or_path=minilm_path,
                          **{**SMALL, "pretraining_tasks": ["mlm", "sop"]})
    with pytest.raises(ValueError, match=r"cut the segments that the labels of \['sop'\]"):
        build_pretraining(recipe)


class RecordBatches(TrainerCallback):
    """The widths of the batches the model sees, by the optimizer step they belong to."""

    def __init__(self, model):
        self.widths: dict[int, list[int]] = {}
        self.step = 0
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training:
            self.widths.setdefault(self.step, []).append(kwargs["input_ids"].shape[1])

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def _run(tmp_path, minilm_path, name, stop_at=None, **values):
    recipe = parse_recipe(TINY, output_dir=str(tmp_path / name), tokenizer_name_or_path=minilm_path,
                          **{**SMALL, **values})
    run = build_pretraining(recipe)
    recorder = RecordBatches(run.trainer.model)
    run.trainer.add_callback(recorder)
    if stop_at is not None:
        run.trainer.add_callback(StopAt(stop_at))
    run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    return run, recorder.widths


def test_batches_follow_the_schedule_under_the_trainer(tmp_path, minilm_path):
    run, widths = _run(tmp_path, minilm_path, "run")
    warmup = run.trainer.sequence_length_warmup
    assert sorted(widths) == list(range(8)) and all(len(w) == 2 for w in widths.values())  # 2 micro-batches a step
    for step, seen in widths.items():
        assert all(width <= warmup.length(step) for width in seen), (step, seen)
    # 16 + 48 s / 6 (a multiple of 8 already); the packed rows hold 51 to 64 tokens
    assert [max(widths[s]) for s in range(6)] == [16, 24, 32, 40, 48, 56]
    assert max(widths[6]) > 56 and max(widths[7]) > 56  # warm: whole rows
    logged = {entry["step"]: entry for entry in run.trainer.state.log_history if "loss" in entry}
    assert logged[1]["sequence_length"] == 16 and logged[8]["sequence_length"] == max(widths[7])
    # the step's loss is normalised by the MLM targets that remain after the cut (one big batch's mean):
    # the per-task report (sums over the cut batches / their counts) equals the optimised loss
    for entry in logged.values():
        assert entry["loss"] == pytest.approx(entry["mlm_loss"] + entry["capitalization_loss"], rel=1e-3)


def test_resume_inside_the_warmup_is_exact(tmp_path, minilm_path):
    """Stopped after step 3 (still warming up), resumed to step 8: the uninterrupted run's widths and weights."""
    straight, straight_widths = _run(tmp_path, minilm_path, "straight")
    saving = dict(save_strategy="steps", save_steps=3)
    _run(tmp_path, minilm_path, "resumed", stop_at=3, **saving)
    resumed, widths = _run(tmp_path, minilm_path, "resumed", resume_from_checkpoint="true", **saving)
    assert {step: widths[step] for step in range(3, 8)} == {step: straight_widths[step] for step in range(3, 8)}
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name

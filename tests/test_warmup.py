"""Warm-ups. Sequence length: DeepSpeed's fixed_linear schedule, batches cut to it under the Trainer, losses
normalised by the targets that remain, and a resumed run that truncates as the uninterrupted one did.
Batch size: the rows of each step follow the same rule, every example is seen once per pass on every
number of ranks, and a resumed run reads the uninterrupted run's batches."""

import json

import pytest
import torch
from helpers import SMALL_RUN, StopAt, run_distributed_pretrain
from helpers import TINY_RECIPE as TINY
from transformers import TrainerCallback

from bert18.training import parse_recipe
from bert18.training.pretrain import build_pretraining
from bert18.training.warmup import (
    TRUNCATABLE_TASKS,
    BatchSizeWarmup,
    SequenceLengthWarmup,
    WarmupBatchSampler,
    linear_warmup,
)

SMALL = dict(
    SMALL_RUN,
    config_overrides={**SMALL_RUN["config_overrides"], "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.0},
    max_documents=8,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    validation_fraction=0.0,
    max_steps=8,
    pretraining_tasks=["mlm", "capitalization"],
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


@pytest.mark.parametrize(
    "value, message",
    [
        ({"start": 12, "steps": 10}, "multiple of 8"),
        ({"start": 16, "steps": 0}, "positive number of optimizer steps"),
        ({"start": 16}, "with 'start' and 'steps'"),
        ({"start": 16, "steps": 5, "step": 3}, r"unknown key\(s\) \['step'\]"),
        ({"start": 64, "steps": 5}, r"below the full value \(max_length, 64\)"),
    ],
)
def test_bad_warmups_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        SequenceLengthWarmup.from_recipe(value, full=64)


def test_truncation_keeps_the_prefix_of_every_positional_entry():
    warmup = SequenceLengthWarmup(start=8, steps=4, full=16)
    batch = {
        "input_ids": torch.arange(48).view(3, 16),
        "attention_mask": torch.ones(3, 16, dtype=torch.long),
        "labels": torch.full((3, 16), -100),
        "next_thing": torch.tensor([1, 2, 3]),
    }
    cut = warmup.truncate(batch, step=0)
    assert cut["input_ids"].shape == (3, 8) and torch.equal(cut["input_ids"], batch["input_ids"][:, :8])
    assert cut["attention_mask"].shape == (3, 8) and cut["labels"].shape == (3, 8)
    assert torch.equal(cut["next_thing"], batch["next_thing"])
    assert warmup.truncate(batch, step=4) is batch  # warm: untouched


def test_sentence_tasks_are_refused(tmp_path, minilm_path):
    assert "mlm" in TRUNCATABLE_TASKS and "nsp" not in TRUNCATABLE_TASKS and "plm" not in TRUNCATABLE_TASKS
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "run"),
        tokenizer_name_or_path=minilm_path,
        **{**SMALL, "pretraining_tasks": ["mlm", "sop"]},
    )
    with pytest.raises(ValueError, match=r"cut the segments that the labels of \['sop'\]"):
        build_pretraining(recipe)


class RecordBatches(TrainerCallback):
    """The widths of the batches the model sees, by the optimizer step they belong to."""

    def __init__(self, model):
        self.widths: dict[int, list[int]] = {}
        self.rows: dict[int, list[int]] = {}
        self.step = 0
        model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        if module.training:
            self.widths.setdefault(self.step, []).append(kwargs["input_ids"].shape[1])
            self.rows.setdefault(self.step, []).append(kwargs["input_ids"].shape[0])

    def on_step_begin(self, args, state, control, **kwargs):
        self.step = state.global_step


def _run(tmp_path, minilm_path, name, stop_at=None, **values):
    recipe = parse_recipe(
        TINY, output_dir=str(tmp_path / name), tokenizer_name_or_path=minilm_path, **{**SMALL, **values}
    )
    run = build_pretraining(recipe)
    recorder = RecordBatches(run.trainer.model)
    run.trainer.add_callback(recorder)
    if stop_at is not None:
        run.trainer.add_callback(StopAt(stop_at))
    run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
    return run, recorder


def test_batches_follow_the_schedule_under_the_trainer(tmp_path, minilm_path):
    run, recorder = _run(tmp_path, minilm_path, "run")
    widths = recorder.widths
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


BATCH_WARMUP = dict(sequence_length_warmup=None, batch_size_warmup={"start": 1, "steps": 4})


def test_batch_rows_follow_the_rule():
    warmup = BatchSizeWarmup(start=2, steps=10, full=32, multiple_of=2)
    assert [warmup.rows(step) for step in (0, 1, 5, 9, 10, 99)] == [
        linear_warmup(step, 2, 32, 10, 2) for step in (0, 1, 5, 9, 10, 99)
    ]
    assert [warmup.rows(step) for step in (0, 1, 5, 9, 10, 99)] == [2, 4, 16, 28, 32, 32]  # 2 + 3 s, even
    with pytest.raises(ValueError, match=r"below the full value \(per_device_train_batch_size, 4\)"):
        BatchSizeWarmup.from_recipe({"start": 4, "steps": 3}, full=4)


def global_batches(examples: int, warmup: BatchSizeWarmup, accumulation: int, seed: int, world: int, epochs: int):
    """Every rank's batches of each Trainer epoch, in global order: one list of ``world`` batches per batch."""
    samplers = [WarmupBatchSampler(examples, warmup, accumulation, seed, world, rank) for rank in range(world)]
    for epoch in range(epochs):
        per_rank = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            per_rank.append(list(sampler))
        assert len({len(batches) for batches in per_rank}) == 1 and len(per_rank[0]) == len(samplers[0])
        yield from zip(*per_rank)


def assert_whole_passes(order: list[int], examples: int) -> int:
    """Each pass of ``order`` is a permutation of the examples; returns the number of passes."""
    passes = len(order) // examples
    for number in range(passes):
        assert sorted(order[number * examples : (number + 1) * examples]) == list(range(examples)), number
    return passes


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_example_once_per_pass_on_any_number_of_ranks(world):
    """The ranks' batches, put back in global order, are whole permutations of the dataset, one per pass,
    and each rank's micro-batches of step t hold rows(t) examples."""
    warmup = BatchSizeWarmup(start=1, steps=7, full=5)
    order = []
    for batch_index, batches in enumerate(global_batches(23, warmup, accumulation=2, seed=3, world=world, epochs=6)):
        assert all(len(batch) == warmup.rows(batch_index // 2) for batch in batches), batch_index
        order.extend(index for batch in batches for index in batch)
    assert assert_whole_passes(order, 23) >= 3
    assert order[:23] != order[23:46]  # each pass its own permutation


@pytest.mark.parametrize("world", [1, 2, 3])
def test_an_optimizer_step_straddling_two_passes_never_holds_an_example_twice(world):
    """Each pass's first examples avoid the previous pass's last ones, so no optimizer step (all ranks, both
    micro-batches) repeats an example (the plain permutations put one twice in 5 of 38, 21 of 43 and 39 of 48
    straddling steps on 1, 2 and 3 ranks here), and every pass is still a whole permutation."""
    examples, warmup = 121, BatchSizeWarmup(start=2, steps=5, full=5)  # 121 >= 4 x the largest step (5 x 3 x 2)
    order, straddling = [], 0
    micro_batches = global_batches(examples, warmup, accumulation=2, seed=7, world=world, epochs=40)
    for first, second in zip(micro_batches, micro_batches, strict=True):  # the two micro-batches of a step
        step = [index for rank_batch in (*first, *second) for index in rank_batch]
        assert len(set(step)) == len(step), step
        straddling += (len(order) // examples) != ((len(order) + len(step) - 1) // examples)
        order.extend(step)
    assert straddling >= 10
    assert_whole_passes(order, examples)


def test_batch_sizes_follow_the_warmup_under_the_trainer(tmp_path, minilm_path):
    run, recorder = _run(tmp_path, minilm_path, "run", **BATCH_WARMUP)
    # rows(t) = 1 + 3 t / 4 rounded down: 1, 1, 2, 3, then the full 4; 2 micro-batches per step
    assert [recorder.rows[step] for step in range(6)] == [[1, 1], [1, 1], [2, 2], [3, 3], [4, 4], [4, 4]]
    assert run.trainer.state.global_step == 8


def test_streaming_refuses_batch_warmup(tmp_path, minilm_path):
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "run"),
        tokenizer_name_or_path=minilm_path,
        **{**SMALL, **BATCH_WARMUP, "streaming": True},
    )
    with pytest.raises(ValueError, match="batch_size_warmup orders a prepared dataset"):
        build_pretraining(recipe)


def test_split_batches_refuses_batch_warmup(tmp_path, minilm_path):
    """accelerate's split_batches cuts one batch across the processes: refused in one line, before anything is
    written (it failed at the first batch with accelerate's message about a missing batch size)."""
    recipe = parse_recipe(
        TINY,
        output_dir=str(tmp_path / "run"),
        tokenizer_name_or_path=minilm_path,
        **{**SMALL, **BATCH_WARMUP, "accelerator_config": {"split_batches": True}},
    )
    with pytest.raises(ValueError, match="split_batches=true cuts one batch across the processes"):
        build_pretraining(recipe)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("warmup", [{}, BATCH_WARMUP], ids=["sequence_length", "batch_size"])
def test_resume_inside_the_warmup_is_exact(tmp_path, minilm_path, warmup):
    """Stopped after step 3 (still warming up), resumed to step 8: the uninterrupted run's batches and weights."""
    straight, straight_recorder = _run(tmp_path, minilm_path, "straight", **warmup)
    saving = dict(save_strategy="steps", save_steps=3, **warmup)
    _run(tmp_path, minilm_path, "resumed", stop_at=3, **saving)
    resumed, recorder = _run(tmp_path, minilm_path, "resumed", resume_from_checkpoint="true", **saving)
    for seen, expected in ((recorder.widths, straight_recorder.widths), (recorder.rows, straight_recorder.rows)):
        assert {step: seen[step] for step in range(3, 8)} == {step: expected[step] for step in range(3, 8)}
    expected = straight.trainer.model.state_dict()
    for name, value in resumed.trainer.model.state_dict().items():
        assert torch.equal(value, expected[name]), name


@pytest.mark.slow
def test_two_ranks_under_batch_warmup_match_one_process(tmp_path, minilm_path):
    """`accelerate launch` with two gloo ranks, each warming up from 1 to 4 rows, against one process
    warming up from 2 to 8 (both 2, 4, 8 rows a step in all): disjoint examples, the same global batches,
    the one process's losses and weights (accelerate's own sharding must not cut the ranks' slices again)."""
    skip = ("sequence_length_warmup", "config_overrides", "pretraining_tasks")
    overrides = [f"--{key}={value}" for key, value in SMALL.items() if key not in skip]
    overrides += ["--pretraining_tasks", *SMALL["pretraining_tasks"]]
    overrides += [
        "--config_overrides=" + json.dumps({**SMALL["config_overrides"], "hidden_dropout_prob": 0.0}),
        f"--tokenizer_name_or_path={minilm_path}",
        "--max_steps=3",
        "--gradient_accumulation_steps=1",
    ]
    two, one = tmp_path / "two", tmp_path / "one"
    warmup = '--batch_size_warmup={"start": 1, "steps": 2}'
    run_distributed_pretrain(
        TINY, f"--output_dir={two}", *overrides, "--per_device_train_batch_size=4", warmup, ranks=2
    )
    warmup = '--batch_size_warmup={"start": 2, "steps": 2, "multiple_of": 2}'
    run_distributed_pretrain(TINY, f"--output_dir={one}", *overrides, "--per_device_train_batch_size=8", warmup)

    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    alone = json.loads((one / "rank0.json").read_text())
    assert [r["world_size"] for r in ranks] == [2, 2]
    # rows per rank: 1, 2, 4 (7 trained on; accelerate collates one batch ahead); one process: 2, 4, 8
    trained_on = [r["seen"][:7] for r in ranks]
    assert not set(trained_on[0]) & set(trained_on[1])
    assert sorted(trained_on[0] + trained_on[1]) == sorted(alone["seen"][:14])
    assert ranks[0]["losses"] == pytest.approx(alone["losses"], rel=1e-5)
    reference = torch.load(one / "rank0.pt")
    for name, value in torch.load(two / "rank0.pt").items():
        assert torch.allclose(value, reference[name], atol=1e-6), name


def test_warmups_are_part_of_the_run_and_refused_with_phases(tmp_path, minilm_path):
    recipe = parse_recipe(TINY, output_dir=str(tmp_path / "run"), tokenizer_name_or_path=minilm_path, **SMALL)
    assert recipe.identity()["sequence_length_warmup"] == {"start": 16, "steps": 6}  # a resume must keep it
    with pytest.raises(ValueError, match="sequence_length_warmup with phases: each phase is a new run"):
        parse_recipe(TINY, output_dir=str(tmp_path / "run"), phases=[{"max_steps": 2}], **SMALL)
    one = parse_recipe(TINY, output_dir=str(tmp_path / "run"), pretraining_tasks="mlm")
    assert one.model.pretraining_tasks == ["mlm"]

"""Two-phase pretraining (BERT's 128 then 512 tokens): each phase's data, the optimizer state carried
across, and an interrupted run resumed across the boundary equal to the uninterrupted one."""

import os
import signal
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from bert18.training import parse_recipe, run_pretraining
from bert18.training.phases import PHASE_DONE, phase_recipes

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny-demo.yaml"
SMALL = dict(
    config_overrides={
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "max_position_embeddings": 64,
    },
    max_documents=8,
    per_device_train_batch_size=4,
    logging_steps=1,
    eval_strategy="no",
    save_strategy="no",
    report_to="none",
    use_cpu=True,
    disable_tqdm=True,
    dataloader_num_workers=0,
    validation_fraction=0.0,
    pretraining_tasks=["mlm", "sentence_distance"],
    plot=False,
    phases=[{"max_length": 32, "max_steps": 4}, {"max_length": 64, "max_steps": 3, "learning_rate": 1e-3}],
)


class Watch(TrainerCallback):
    """Records the longest batch and the optimizer's first moment when training begins."""

    seen: list = []

    def on_train_begin(self, args, state, control, optimizer=None, model=None, **kwargs):
        state = optimizer.state_dict()["state"]
        moments = [state[index]["exp_avg"].clone() for index in sorted(state)]
        Watch.seen.append({"output": args.output_dir, "moments": moments, "lr": optimizer.param_groups[0]["lr"]})


def _recipe(tmp_path, name, minilm_path, **values):
    return parse_recipe(
        TINY, output_dir=str(tmp_path / name), tokenizer_name_or_path=minilm_path, **{**SMALL, **values}
    )


def test_phases_take_their_own_keys_and_refuse_model_keys(tmp_path, minilm_path):
    first, second = phase_recipes(_recipe(tmp_path, "run", minilm_path))
    assert (first.data.max_length, first.training.max_steps, first.training.learning_rate) == (32, 4, 2e-3)
    assert (second.data.max_length, second.training.max_steps, second.training.learning_rate) == (64, 3, 1e-3)
    assert second.model.model_name_or_path == first.training.output_dir.replace("phase-1", "phase-1")
    assert Path(second.training.output_dir).name == "phase-2"
    with pytest.raises(ValueError, match="model keys are the same in every phase"):
        phase_recipes(_recipe(tmp_path, "run", minilm_path, phases=[{"preset": "bert-base"}]))
    with pytest.raises(ValueError, match="did you mean 'max_length'"):
        phase_recipes(_recipe(tmp_path, "run", minilm_path, phases=[{"max_lenght": 512}]))
    with pytest.raises(ValueError, match="beyond the model's max_position_embeddings"):
        phase_recipes(_recipe(tmp_path, "run", minilm_path, phases=[{"max_length": 32}, {"max_length": 128}]))


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_two_phases_carry_the_optimizer_and_resume_exactly_across_the_boundary(tmp_path, minilm_path, monkeypatch):
    import bert18.training.pretrain as pretrain

    original = pretrain.build_pretraining

    longest = []

    def watched(recipe, *args, **kwargs):
        run = original(recipe, *args, **kwargs)
        run.trainer.add_callback(Watch())
        longest.append(max(len(run.train_dataset[i]["input_ids"]) for i in range(len(run.train_dataset))))
        return run

    monkeypatch.setattr(pretrain, "build_pretraining", watched)
    Watch.seen.clear()
    straight = _recipe(tmp_path, "straight", minilm_path)
    run_pretraining(straight)
    out = tmp_path / "straight"
    assert (out / "phase-1" / PHASE_DONE).is_file() and (out / "phase-2" / PHASE_DONE).is_file()
    assert (out / "model.safetensors").is_file()  # the final model at the top
    phase1_end = torch.load(out / "phase-1" / "final_optimizer.pt", weights_only=True)
    first, second = Watch.seen
    assert first["moments"] == []  # phase 1 starts fresh
    assert second["lr"] <= 1e-3  # phase 2 runs its own schedule (its learning rate, from its own warmup)
    carried = [phase1_end["state"][index]["exp_avg"] for index in sorted(phase1_end["state"])]
    assert len(second["moments"]) == len(carried)
    assert all(torch.equal(a, b) for a, b in zip(second["moments"], carried))
    # each phase prepares its own data: phase 2's rows are longer than phase 1 allows
    assert longest[0] <= 32 < longest[1] <= 64

    # the same run stopped in phase 2 after a checkpoint, then resumed: equal to the straight run
    class CtrlC(TrainerCallback):  # a real SIGINT during phase 2's second step
        def on_optimizer_step(self, args, state, control, **kwargs):
            if args.output_dir.endswith("phase-2") and state.global_step + 1 == 2:
                os.kill(os.getpid(), signal.SIGINT)

    def stopping(recipe, *args, **kwargs):
        run = original(recipe, *args, **kwargs)
        run.trainer.add_callback(CtrlC())
        return run

    monkeypatch.setattr(pretrain, "build_pretraining", stopping)
    interrupted = _recipe(tmp_path, "interrupted", minilm_path)
    assert run_pretraining(interrupted)["interrupted_at"] == 2
    assert (tmp_path / "interrupted" / "phase-2" / "checkpoint-2").is_dir()
    assert not (tmp_path / "interrupted" / "phase-2" / PHASE_DONE).is_file()
    with pytest.raises(FileExistsError, match="resume_from_checkpoint=true"):
        run_pretraining(interrupted)
    monkeypatch.setattr(pretrain, "build_pretraining", original)
    run_pretraining(_recipe(tmp_path, "interrupted", minilm_path, resume_from_checkpoint="true"))
    expected = _final_weights(out)
    resumed = _final_weights(tmp_path / "interrupted")
    assert expected.keys() == resumed.keys()
    for name, value in resumed.items():
        assert torch.equal(value, expected[name]), name

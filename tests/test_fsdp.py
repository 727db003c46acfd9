"""Sharded training: FSDP2 over two gloo ranks on the CPU, under `accelerate launch` with recipes/accelerate_configs/
fsdp.yaml and Bert18Trainer, for the BERT, ALBERT (shared blocks) and ERNIE presets at tiny sizes.

Against a reference: one plain process taking the same global batch (same losses, same weights within float
tolerance), a plain `Bert18ForPreTraining` loading the gathered full state dict, and the uninterrupted run for a
run resumed from a sharded checkpoint. accelerate 1.15 drops the FSDP plugin on CPU ranks (checked below), so
tests/scripts/fsdp_pretrain.py takes accelerate's own FSDP branch for them; see its docstring.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ERNIE_TASKS

from bert18 import Bert18Config, Bert18ForPreTraining

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "scripts" / "fsdp_pretrain.py"
FSDP_CONFIG = ROOT / "recipes" / "accelerate_configs" / "fsdp.yaml"
TINY = ROOT / "recipes" / "configs" / "tiny-demo.yaml"
SIZES = {
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "max_position_embeddings": 64,
    "position_embedding_type": "learned",  # each preset's own (tiny-demo's is rotary): a learned table to shard
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
# name -> (preset, recipe overrides): the tasks and masking of recipes/configs/<preset>.yaml, at tiny sizes.
PRESETS = {
    "bert": ("bert-base", ["--pretraining_tasks", "mlm", "nsp", "--masking=token"]),
    "albert": ("albert-base", ["--pretraining_tasks", "mlm", "sop", "--masking=ngram"]),
    "ernie": ("ernie-base", ["--pretraining_tasks", *ERNIE_TASKS, "--masking=knowledge"]),
}
# all-MiniLM-L6-v2 lacks the MLM and NSP heads: from_pretrained starts them anew, which is where FSDP's
# cpu_ram_efficient_loading trains them wrongly (see fsdp.yaml).
CHECKPOINT = "minilm"
STEPS, SAVED_AT, GLOBAL_BATCH = 4, 2, 8
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _spec(output: Path, tokenizer: str, per_device: int, names: tuple[str, ...], resume: bool) -> dict:
    common = [
        "--max_length=64",
        "--max_documents=8",
        "--logging_steps=1",
        "--eval_strategy=no",
        "--report_to=none",
        "--use_cpu=true",
        "--disable_tqdm=true",
        "--dataloader_num_workers=0",
        "--validation_fraction=0",
        "--plot=false",
        f"--tokenizer_name_or_path={tokenizer}",
        f"--max_steps={STEPS}",
        "--save_strategy=steps",
        f"--save_steps={SAVED_AT}",
        f"--per_device_train_batch_size={per_device}",
    ]
    runs = []
    for name in names:
        if name == CHECKPOINT:  # continued pretraining from the real BERT checkpoint (whose tokenizer this is)
            no_dropout = {k: v for k, v in SIZES.items() if "dropout" in k}
            args = [
                *common,
                f"--model_name_or_path={tokenizer}",
                "--pretraining_tasks",
                "mlm",
                "nsp",
                "--masking=token",
                # tiny-demo's training keys, which the tolerances below were set for (no recipe file here)
                "--learning_rate=2e-3",
                "--warmup_steps=0.06",
                "--weight_decay=0.01",
                "--seed=0",
                "--config_overrides=" + json.dumps(no_dropout),
            ]
            # no recipe file: tiny-demo's model sizes would be merged into the checkpoint's config
            runs.append(
                {"name": name, "recipe": None, "overrides": [*args, f"--output_dir={output / name / 'straight'}"]}
            )
            continue
        preset, overrides = PRESETS[name]
        sizes = {**SIZES, "embedding_size": 16} if preset.startswith("albert") else SIZES  # E < H, as in ALBERT
        args = [*common, f"--preset={preset}", *overrides, "--config_overrides=" + json.dumps(sizes)]
        straight = output / name / "straight"
        runs.append({"name": name, "overrides": [*args, f"--output_dir={straight}"], "embeddings_as_a_unit": resume})
        if resume:
            runs.append(
                {
                    "name": f"{name}-resumed",
                    "overrides": [
                        *args,
                        f"--output_dir={output / name / 'resumed'}",
                        f"--resume_from_checkpoint={straight / f'checkpoint-{SAVED_AT}'}",
                    ],
                }
            )
    return {"recipe": str(TINY), "runs": runs}


def _run(command: list[str], spec: dict, folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run(
        [*command, str(folder / "spec.json")], capture_output=True, text=True, timeout=900, env=ENV, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _train(root: Path, tokenizer: str, names: tuple[str, ...]) -> Path:
    """``names`` trained by two FSDP ranks (4 examples each per step), uninterrupted and resumed from the
    step-2 sharded checkpoint; and by one plain process taking all 8 examples per step."""
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(FSDP_CONFIG),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "0",
        str(SCRIPT),
    ]
    _run(launch, _spec(root / "two", tokenizer, GLOBAL_BATCH // 2, names, resume=True), root / "two")
    _run([sys.executable, str(SCRIPT)], _spec(root / "one", tokenizer, GLOBAL_BATCH, names, resume=False), root / "one")
    return root


# ALBERT (shared blocks, factorized and tied embeddings: every case at once) runs in the default run, in about
# 30 s; BERT and ERNIE in one more launch with the slow tests.
DEFAULT, SLOW = ("albert",), ("bert", "ernie", CHECKPOINT)
NAMES = [*DEFAULT, *(pytest.param(name, marks=pytest.mark.slow) for name in SLOW if name != CHECKPOINT)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm_path):
    """``trained(name)``: the folder holding ``name``'s runs (each group of presets launched once)."""
    roots: dict[tuple[str, ...], Path] = {}

    def get(name: str) -> Path:
        group = DEFAULT if name in DEFAULT else SLOW
        if group not in roots:
            roots[group] = _train(tmp_path_factory.mktemp("fsdp"), minilm_path, group)
        return roots[group]

    return get


def _record(root: Path, run: str, name: str, kind: str = "straight") -> dict:
    return json.loads((root / run / name / kind / "record.json").read_text())


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    model, info = Bert18ForPreTraining.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    assert model.lm_head.decoder.weight is model.bert18.embeddings.word_embeddings.weight
    return model.state_dict()


def test_accelerate_drops_fsdp_on_cpu_ranks():
    """The reason the launch script exists: under accelerate 1.15 a gloo CPU rank given an FSDP plugin runs as
    plain MULTI_CPU data parallelism, with the plugin dropped. When this fails, accelerate runs FSDP on CPU
    ranks itself and tests/scripts/fsdp_pretrain.py can stop patching it."""
    script = """
from accelerate import Accelerator
from accelerate.utils import FullyShardedDataParallelPlugin
accelerator = Accelerator(cpu=True, fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))
print(accelerator.distributed_type, getattr(accelerator.state, "fsdp_plugin", None))
"""
    env = {
        **ENV,
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "0",
    }
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["DistributedType.MULTI_CPU", "None"]


@pytest.mark.parametrize("preset", ["bert-base", "albert-base", "ernie-base"])
def test_wrap_units_leave_the_tied_embeddings_to_one_group(preset):
    """accelerate wraps every module of a `_no_split_modules` class, then the word embeddings and the tied
    decoder together: no wrapped class may own the word embeddings (the failure of issue 22), and a shared
    ALBERT block is one module however many layers apply it."""
    config = Bert18Config.from_preset(
        preset,
        vocab_size=100,
        embedding_size=16 if preset == "albert-base" else None,
        **{k: v for k, v in SIZES.items() if "dropout" not in k},
    )
    model = Bert18ForPreTraining(config)
    words = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is words
    units = [m for m in model.modules() if type(m).__name__ in model._no_split_modules]
    assert {type(m).__name__ for m in units} == set(model._no_split_modules)
    assert not any(p is words for unit in units for p in unit.parameters())
    expected = 2 if preset == "albert-base" else 2 * config.num_hidden_layers  # one attention + one FFN if shared
    assert len(units) == expected


@pytest.mark.parametrize("name", NAMES)
def test_accelerate_shards_the_model_as_fsdp_yaml_asks(trained, name):
    runs = trained(name)
    record = _record(runs, "two", name)
    assert record["world_size"] == 2 and record["distributed_type"] == "DistributedType.FSDP"
    assert record["model_class"] == "FSDPBert18ForPreTraining" and record["parameter_types"] == ["DTensor"]
    blocks = 1 if name == "albert" else 2
    assert sorted(record["groups"]) == sorted(
        [[""], ["bert18.embeddings.word_embeddings", "lm_head.decoder"]]
        + [[f"bert18.encoder.{kind}.{i}"] for kind in ("attention", "feed_forward") for i in range(blocks)]
    )
    assert record["tied"]  # the decoder still shares the embeddings' parameter after sharding
    # The same path with Bert18Embeddings as a unit of its own fails. Wrapped by hand (issue 22): "Parameter
    # 'bert18.embeddings.word_embeddings.weight' is shared with a parameter already managed by another FSDP group";
    # by accelerate: the embeddings' unit takes the word embeddings from the decoder, accelerate then sees them
    # untied and shards the word embeddings a second time, which fully_shard refuses with a TypeError.
    assert record["embeddings_as_a_unit"].startswith(("TypeError", "ValueError")), record["embeddings_as_a_unit"]


@pytest.mark.parametrize("name", NAMES)
def test_two_fsdp_ranks_match_one_process(trained, name):
    runs = trained(name)
    two, one = _record(runs, "two", name), _record(runs, "one", name)
    assert one["distributed_type"] == "DistributedType.NO" and two["global_step"] == one["global_step"] == STEPS
    assert list(two["losses"].values()) == pytest.approx(list(one["losses"].values()), rel=1e-5)
    for step, metrics in one["task_metrics"].items():  # each task's loss and accuracy, summed over the ranks
        assert len(metrics) >= 4 and two["task_metrics"][step] == pytest.approx(metrics, rel=1e-5), step
    sharded, reference = _weights(runs / "two" / name / "straight"), _weights(runs / "one" / name / "straight")
    for key, value in reference.items():
        assert torch.allclose(sharded[key], value, atol=5e-6), key


@pytest.mark.slow
def test_continued_pretraining_from_a_checkpoint_matches_one_process(trained):
    """From all-MiniLM-L6-v2 (a BERT checkpoint, converted on the fly, its MLM and NSP heads new) under fsdp.yaml:
    the new heads train as on one process. With fsdp_cpu_ram_efficient_loading they did not (see fsdp.yaml)."""
    runs = trained(CHECKPOINT)
    two, one = _record(runs, "two", CHECKPOINT), _record(runs, "one", CHECKPOINT)
    assert two["distributed_type"] == "DistributedType.FSDP" and two["global_step"] == one["global_step"] == STEPS
    assert list(two["losses"].values()) == pytest.approx(list(one["losses"].values()), rel=1e-4)
    sharded = _weights(runs / "two" / CHECKPOINT / "straight")
    reference = _weights(runs / "one" / CHECKPOINT / "straight")
    for key, value in reference.items():
        # Adam divides float noise by itself where a gradient is zero in exact arithmetic (the key bias of
        # attention: softmax ignores it), so those entries may move by up to the learning rate; DDP does the same.
        tolerance = 2e-3 if key.endswith("qkv.bias") else 5e-5
        assert torch.allclose(sharded[key], value, atol=tolerance), key


@pytest.mark.parametrize("name", NAMES)
def test_full_state_save_is_a_plain_checkpoint(trained, name):
    runs = trained(name)
    folder = runs / "two" / name / "straight"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Bert18ForPreTraining"]
    assert all(value.startswith("modeling_bert18.") for key, value in config["auto_map"].items() if key != "AutoConfig")
    assert not list(folder.glob("_fsdp*.py"))  # torch's FSDP sources are not shipped as the model's code
    assert (folder / "modeling_bert18.py").is_file() and (folder / "tokenizer.json").is_file()
    _weights(folder)


@pytest.mark.parametrize("name", NAMES)
def test_resume_from_a_sharded_checkpoint_is_exact(trained, name):
    runs = trained(name)
    checkpoint = runs / "two" / name / "straight" / f"checkpoint-{SAVED_AT}"
    assert sorted(p.name for p in (checkpoint / "pytorch_model_fsdp_0").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert not (checkpoint / "model.safetensors").exists()  # sharded: one file per rank, no gathered copy
    straight, resumed = _record(runs, "two", name), _record(runs, "two", name, "resumed")
    assert resumed["losses"] == straight["losses"]
    expected = _weights(runs / "two" / name / "straight")
    for key, value in _weights(runs / "two" / name / "resumed").items():
        assert torch.equal(value, expected[key]), key


def test_deepspeed_zero2_config_leaves_the_batch_to_the_trainer(monkeypatch):
    """What can be checked without DeepSpeed (it needs a GPU): `accelerate launch` with deepspeed_zero2.yaml
    exports ZeRO stage 2 and bf16 and no batch, accumulation or clipping, so accelerate's DeepSpeed config says
    "auto" for them and the Trainer fills them from the recipe's TrainingArguments."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    config = ROOT / "recipes" / "accelerate_configs" / "deepspeed_zero2.yaml"
    args = launch_command_parser().parse_args(["--config_file", str(config), "recipes/pretrain.py", "recipe.yaml"])
    args, defaults, _ = _validate_launch_command(args)
    assert args.use_deepspeed and args.mixed_precision == "bf16"
    args.deepspeed_fields_from_accelerate_config = ",".join([*defaults.deepspeed_config, "mixed_precision"])
    _, env = prepare_deepspeed_cmd_env(args)  # what deepspeed_launcher hands each rank
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    for name, value in env.items():
        if name.startswith("ACCELERATE_"):
            monkeypatch.setenv(name, value)
    deepspeed = DeepSpeedPlugin().deepspeed_config
    assert deepspeed["zero_optimization"]["stage"] == 2
    assert deepspeed["zero_optimization"]["offload_optimizer"]["device"] == "none"
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert deepspeed[key] == "auto", key

"""Run pretraining recipes one after another and record, per run, the losses and how the model was sharded.

Launched by tests/test_fsdp.py under ``accelerate launch --config_file recipes/accelerate_configs/fsdp.yaml``
with two gloo ranks on the CPU, and as one plain process for the reference. The recipe code, the Trainer,
accelerate's FSDP2 wrapping (``fsdp2_prepare_model``), its sharded checkpoints and its full-state gathering are
the real ones. One thing is changed, and only where a run is launched with an FSDP plugin on CPU ranks:

accelerate 1.15 turns FSDP on only for accelerator ranks. ``AcceleratorState.__init__`` sets
``DistributedType.FSDP`` (and keeps the plugin) in a branch taken when the ranks are ``MULTI_GPU``,
``MULTI_NPU``, ``MULTI_XPU``, ... but never ``MULTI_CPU``, so on gloo CPU ranks the plugin that ``fsdp.yaml``
asks for is dropped silently and the run is plain data parallelism. ``enable_fsdp_on_cpu_ranks`` takes that
branch for ``MULTI_CPU`` too (the same assignments); everything after it is accelerate's own code.

Usage: ``fsdp_pretrain.py SPEC.json``; SPEC holds ``{"recipe": path, "runs": [{"name", "overrides"}, ...]}``
(a run's own ``"recipe"`` replaces SPEC's; ``null``: no recipe file, the defaults), and each run writes
``record.json`` (rank 0) into its ``output_dir``. A run with ``"embeddings_as_a_unit": true`` then also shards
a fresh model the way the issue reported failing, and records the error raised.
"""

import json
import os
import sys
from pathlib import Path

import torch


def enable_fsdp_on_cpu_ranks() -> None:
    """Let ``AcceleratorState`` keep an FSDP plugin on gloo CPU ranks (see the module docstring)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = plugin
            PartialState._shared_state["distributed_type"] = self.distributed_type  # as that branch ends

    AcceleratorState.__init__ = __init__


def sharding_record(model: torch.nn.Module) -> dict:
    """Which modules are FSDP units, which share one group, and whether the decoder is still tied."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    units = {name: module for name, module in model.named_modules() if isinstance(module, FSDPModule)}
    groups: dict[int, list[str]] = {}
    for name, module in units.items():
        groups.setdefault(id(fully_shard.state(module)), []).append(name)
    inner = model.bert18 if hasattr(model, "bert18") else model
    words = inner.embeddings.word_embeddings
    decoder = model.lm_head.decoder
    return {
        "units": sorted(units),
        "groups": sorted(sorted(names) for names in groups.values()),
        "tied": decoder.weight is words.weight,
        "model_class": type(model).__name__,
        "parameter_types": sorted({type(p).__name__ for p in model.parameters()}),
    }


def wrap_with_embeddings_as_a_unit(accelerator, config) -> str:
    """Shard a fresh model as accelerate would if ``Bert18Embeddings`` were a wrap unit (``_no_split_modules``
    before issue 22) and run one forward; returns the error raised, or "" if none."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    from bert18 import Bert18ForPreTraining

    plugin = accelerator.state.fsdp_plugin
    accelerator.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["Bert18Embeddings", *Bert18ForPreTraining._no_split_modules],
    )
    try:
        model = fsdp2_prepare_model(accelerator, Bert18ForPreTraining(config))
        model(input_ids=torch.randint(5, config.vocab_size, (2, 8)))
        return ""
    except (TypeError, ValueError) as error:  # accelerate's own wrapping fails in fully_shard, a manual one later
        return f"{type(error).__name__}: {error}"
    finally:
        accelerator.state.fsdp_plugin = plugin


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        enable_fsdp_on_cpu_ranks()

    from bert18.training import parse_recipe
    from bert18.training.pretrain import build_pretraining

    for entry in spec["runs"]:
        recipe = parse_recipe(entry.get("recipe", spec["recipe"]), entry["overrides"])
        run = build_pretraining(recipe)
        run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
        run.trainer.save_model()
        if recipe.training.process_index == 0:
            trainer = run.trainer
            record = {
                "name": entry["name"],
                "world_size": recipe.training.world_size,
                "distributed_type": str(trainer.accelerator.distributed_type),
                "losses": {log["step"]: log["loss"] for log in trainer.state.log_history if "loss" in log},
                "task_metrics": {
                    log["step"]: {k: v for k, v in log.items() if k.endswith(("_loss", "_accuracy"))}
                    for log in trainer.state.log_history
                    if "loss" in log
                },
                "global_step": trainer.state.global_step,
            }
            if trainer.is_fsdp_enabled:
                record.update(sharding_record(trainer.model))
            (Path(recipe.training.output_dir) / "record.json").write_text(json.dumps(record))
        if entry.get("embeddings_as_a_unit") and run.trainer.is_fsdp_enabled:
            error = wrap_with_embeddings_as_a_unit(run.trainer.accelerator, run.config)
            if recipe.training.process_index == 0:
                record = json.loads((Path(recipe.training.output_dir) / "record.json").read_text())
                record["embeddings_as_a_unit"] = error
                (Path(recipe.training.output_dir) / "record.json").write_text(json.dumps(record))
        run.trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main()

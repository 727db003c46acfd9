"""Sharded training (FSDP2) with bert18: what accelerate wraps, and a full-state save at the end.

``accelerate launch --config_file recipes/accelerate_configs/fsdp.yaml`` runs the Trainer under
accelerate's FSDP2 plugin (``fsdp_version: 2``), whose ``fsdp2_prepare_model`` shards the model as:

1. one ``fully_shard`` unit per module of a class in the model's ``_no_split_modules``
   (``TRANSFORMER_BASED_WRAP``): for bert18 ``Bert18Attention`` and ``Bert18FeedForward``. ALBERT's
   shared blocks are single modules applied at every layer, so each is one unit, gathered at every
   layer that applies it; its gradients from all layers are summed before they are reduce-scattered;
2. one unit for the tied pair: the input embeddings (``get_input_embeddings``, the word embeddings)
   and the output embeddings (``get_output_embeddings``, the MLM decoder) together, since a tied
   parameter may live in one FSDP group only. This is why ``Bert18Embeddings`` is *not* in
   ``_no_split_modules``: as a unit of its own it would take the word embeddings away from the
   decoder, and sharding fails (by hand: "shared with a parameter already managed by another FSDP
   group"; under accelerate, which then sees the two untied, a TypeError inside ``fully_shard``);
3. the root: everything else (position and segment embeddings, the embedding LayerNorm and
   projection, the pooler, the other task heads).

Checkpoints under ``fsdp_state_dict_type: SHARDED_STATE_DICT`` are written per rank
(``pytorch_model_fsdp_0/``, ``optimizer_0/``: torch.distributed.checkpoint) and resume exactly. The
Trainer's ``save_model`` writes no weights at all under that setting; ``Bert18Trainer.save_model``
gathers the full state dict instead (``save_full_model``), so the output folder of a sharded run
holds an ordinary ``model.safetensors`` that ``from_pretrained`` reads on one process.

``fsdp_cpu_ram_efficient_loading`` must stay off for a checkpoint that lacks some weights (a new
task head): with it, those weights stay on the meta device on ranks past the first and accelerate
1.15 maps them all to one sharded parameter in the optimizer (see ``fsdp.yaml``).
"""

import copy
import os
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.trainer import TRAINING_ARGS_NAME

SHARDED_STATE_DICT = "SHARDED_STATE_DICT"


def saves_sharded_state(trainer: Any) -> bool:
    """True when ``trainer`` runs under FSDP with sharded state dicts: its own ``save_model`` would write
    no weights."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    return (
        bool(getattr(trainer, "is_fsdp_enabled", False))
        and plugin is not None
        and (SHARDED_STATE_DICT in str(plugin.state_dict_type))
    )


def unsharded_model(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> PreTrainedModel:
    """A plain (not FSDP) instance of ``model``'s own class holding ``state_dict``, built on the meta device
    and given the tensors themselves (no copy); tied weights tied again.

    FSDP2 wraps a model by swapping its class for ``FSDP<Class>``: saving that object would name the FSDP
    class in ``auto_map``, copy torch's FSDP sources next to the weights, and read DTensor parameters.
    """
    from torch.distributed.fsdp import FSDPModule

    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        plain = cls(copy.deepcopy(model.config))
    missing, unexpected = plain.load_state_dict(state_dict, strict=False, assign=True)
    tied = set(getattr(plain, "_tied_weights_keys", None) or {})  # {target: source}; tie_weights fills targets
    missing = [name for name in missing if name not in tied]
    if missing or unexpected:
        raise RuntimeError(
            f"the gathered state dict does not fit {cls.__name__}: missing {missing}, unexpected {unexpected}"
        )
    plain.tie_weights()
    return plain


def save_full_model(trainer: Any, output_dir: str | None = None) -> None:
    """Gather the sharded model's full state dict and save it as the Trainer's ``_save`` would (weights,
    config, code, tokenizer, training arguments) into ``output_dir`` (default ``args.output_dir``).

    A collective: every process must call it. The main process receives the full weights (offloaded to the
    CPU, so the gathered model never has to fit on one accelerator) and writes them.
    """
    output_dir = output_dir if output_dir is not None else trainer.args.output_dir
    state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if trainer.args.should_save:
        os.makedirs(output_dir, exist_ok=True)
        unsharded_model(trainer.model, state_dict).save_pretrained(output_dir)
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(output_dir)
        torch.save(trainer.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
    trainer.accelerator.wait_for_everyone()


__all__ = ["save_full_model", "saves_sharded_state", "unsharded_model"]

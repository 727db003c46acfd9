"""LoRA on bert18 models through peft, an optional dependency.

bert18's attention has BERT's three projections ``query``, ``key`` and ``value``, so peft finds them
by the names BERT users pass (``LoraConfig(target_modules=["query", "value"])`` adapts exactly Q and
V). A ``LoraConfig`` without ``target_modules`` takes peft's default for the model type: importing
bert18 registers ``"bert18"`` in peft's default-target mappings with BERT's entry (``query``,
``value``), now if peft is already imported, else the moment it is (peft is never imported by bert18
itself, so ``import bert18`` stays as fast without it).

``apply_lora`` is what the fine-tuning recipe calls (``lora_r``, ``lora_alpha``, ``lora_dropout``,
``lora_target_modules``): the encoder frozen, adapters on the targets, the task head trained in full.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Any

import torch

# BERT's entry in peft's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: Q and V (Hu et al. 2021, 4.2).
DEFAULT_LORA_TARGETS = ["query", "value"]
MODEL_TYPE = "bert18"
# The modules a task head adds on top of the encoder: trained in full (peft's modules_to_save).
HEAD_MODULES = ("classifier", "qa_outputs", "chunk_attention", "chunk_lstm")


def register_peft_defaults(constants: Any) -> None:
    """Give ``bert18`` BERT's default targets in every peft mapping where BERT's are ``query``/``value``
    (LoRA and the adapters sharing its mapping); mappings naming other BERT modules are left alone."""
    for name in dir(constants):
        mapping = getattr(constants, name)
        lora_like = isinstance(mapping, dict) and mapping.get("bert") == DEFAULT_LORA_TARGETS
        if name.startswith("TRANSFORMERS_MODELS_TO_") and lora_like:
            mapping.setdefault(MODEL_TYPE, list(DEFAULT_LORA_TARGETS))


class _PeftConstantsHook(importlib.abc.MetaPathFinder):
    """Registers bert18's defaults right after ``peft.utils.constants`` is first imported."""

    target = "peft.utils.constants"

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.target:
            return None
        sys.meta_path.remove(self)  # once; the real finders locate the module
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            register_peft_defaults(module)

        spec.loader.exec_module = exec_module
        return spec


def install_peft_defaults() -> None:
    """Register bert18 with peft now (peft imported) or when peft is imported (installed); else nothing."""
    if _PeftConstantsHook.target in sys.modules:
        register_peft_defaults(sys.modules[_PeftConstantsHook.target])
    elif importlib.util.find_spec("peft") is not None and not any(
        isinstance(finder, _PeftConstantsHook) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _PeftConstantsHook())


def _peft() -> Any:
    try:
        import peft
    except ImportError as error:
        raise ImportError(
            "LoRA (lora_r) needs peft, which is not installed: pip install peft (or pip install 'bert18[peft]')"
        ) from error
    return peft


# The peft task type of each bert18 head (multiple choice has none in peft: a plain PeftModel).
PEFT_TASK_TYPES = {
    "Bert18ForSequenceClassification": "SEQ_CLS",
    "Bert18ForLongSequenceClassification": "SEQ_CLS",
    "Bert18ForTokenClassification": "TOKEN_CLS",
    "Bert18ForQuestionAnswering": "QUESTION_ANS",
}


def apply_lora(
    model: torch.nn.Module, r: int, alpha: float = 16.0, dropout: float = 0.1, target_modules: list[str] | None = None
) -> torch.nn.Module:
    """``model`` wrapped by peft with LoRA adapters of rank ``r`` on ``target_modules`` (default: query and
    value), the encoder frozen and the task head (``HEAD_MODULES`` present) trained in full."""
    peft = _peft()
    if r < 1:
        raise ValueError(f"lora_r must be a positive rank, got {r}")
    targets = list(target_modules) if target_modules else list(DEFAULT_LORA_TARGETS)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [t for t in targets if t not in names]
    if unknown:
        raise ValueError(
            f"lora_target_modules {unknown} name no module of {type(model).__name__}; bert18's "
            "attention has query, key, value, output; its feed-forward intermediate, output"
        )
    heads = [name for name in HEAD_MODULES if getattr(model, name, None) is not None]
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=heads or None,
        task_type=PEFT_TASK_TYPES.get(type(model).__name__),
    )
    return peft.get_peft_model(model, config)


__all__ = ["DEFAULT_LORA_TARGETS", "HEAD_MODULES", "apply_lora", "install_peft_defaults", "register_peft_defaults"]

"""LAMB (You et al., 2019), the large-batch optimizer of ALBERT's and NVIDIA's BERT recipes.

transformers has no LAMB. The update comes from ``pytorch_optimizer`` (a maintained library of
optimizers with no dependencies beyond torch and numpy), configured to match the published recipes
(Google's ``albert/lamb_optimizer.py``; NVIDIA's BERT with ``use_nvlamb=False``), per parameter
tensor ``w`` with gradient ``g``::

    m = beta1 * m + (1 - beta1) * g            # no bias correction
    v = beta2 * v + (1 - beta2) * g**2
    r = m / (sqrt(v) + eps) + weight_decay * w  # decay inside the update, before the trust ratio
    ratio = ||w|| / ||r||  (1 where either norm is 0)
    w = w - lr * ratio * r

Biases and normalisation gains (the 1-D tensors) take neither weight decay nor the trust ratio
(``exclude_from_weight_decay`` = ``exclude_from_layer_adaptation`` in ALBERT's code), so for them
the step is Adam's without bias correction. Three differences from ``pytorch_optimizer``'s defaults
are set here on purpose, each caught by the reference test (``tests/test_optim.py``): the weight
norm is not clamped at 10 (the published code does not); decay is coupled into ``r``
(``weight_decouple=False``) as the paper writes it; and ``adam_debias=True``, without which the
library divides the step by ``1 - beta1**t`` (a 10x larger first step than the published update).

Gradient accumulation and DDP need nothing special: the Trainer steps once per accumulated batch
on gradients already averaged across processes, so every process takes the same step.

Selected in a recipe with ``optimizer: lamb``; ``learning_rate``, ``adam_beta1``, ``adam_beta2``,
``adam_epsilon`` and ``weight_decay`` of ``TrainingArguments`` apply.
"""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("trainer", "lamb")


def _lamb_class() -> type[torch.optim.Optimizer]:
    try:
        from pytorch_optimizer import Lamb as _Lamb
    except ImportError as error:
        raise ImportError("optimizer: lamb needs the pytorch_optimizer package: pip install 'bert18[lamb]'") from error

    class Lamb(_Lamb):
        """``pytorch_optimizer.Lamb`` with the published recipes' trust ratio (no clamp on ||w||)."""

        clamp = float("inf")

    return Lamb


def lamb_param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: matrices (decayed, layer-adapted) and 1-D tensors (neither); frozen ones left out.

    ``adam=True`` is ``pytorch_optimizer``'s switch that sets the trust ratio to 1 for a group.
    """
    matrices, vectors, seen = [], [], set()
    for _, param in params:
        if not param.requires_grad or id(param) in seen:  # tied weights appear once
            continue
        seen.add(id(param))
        (vectors if param.ndim < 2 else matrices).append(param)
    return [
        {"params": matrices, "weight_decay": weight_decay, "adam": False},
        {"params": vectors, "weight_decay": 0.0, "adam": True},
    ]


def create_lamb(
    groups: list[dict[str, Any]],
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """A LAMB optimizer over ``groups`` (torch parameter groups; a group may set ``adam=True`` to skip
    the trust ratio and its own ``weight_decay``)."""
    return _lamb_class()(
        groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, weight_decouple=False, adam_debias=True
    )


class LambFactory:
    """A transformers optimizer factory (``Trainer(optimizer_cls_and_kwargs=(LambFactory, kwargs))``):
    the Trainer calls ``LambFactory()(model, **kwargs)`` after wrapping the model (DDP, FSDP), so the
    groups are built from the parameters that will really be stepped."""

    def __call__(
        self, model: nn.Module, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        return create_lamb(lamb_param_groups(model.named_parameters(), weight_decay), lr, betas, eps, weight_decay)


def trainer_optimizer(name: str, training: Any) -> tuple[type, dict[str, Any]] | None:
    """``Trainer``'s ``optimizer_cls_and_kwargs`` for a recipe's ``optimizer`` key; ``None`` keeps the
    Trainer's own choice (``TrainingArguments.optim``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    if name == "trainer":
        return None
    _lamb_class()  # fail at set-up, not at the first step, when pytorch_optimizer is missing
    kwargs = {
        "lr": training.learning_rate,
        "betas": (training.adam_beta1, training.adam_beta2),
        "eps": training.adam_epsilon,
        "weight_decay": training.weight_decay,
    }
    return LambFactory, kwargs


__all__ = ["OPTIMIZERS", "LambFactory", "create_lamb", "lamb_param_groups", "trainer_optimizer"]

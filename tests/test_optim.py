"""LAMB against the published update written out here (ALBERT's ``lamb_optimizer.py``), alone and
under the stock Trainer with gradient accumulation."""

import pytest
import torch
from helpers import tiny_config
from transformers import Trainer, TrainingArguments

from bert18 import Bert18ForSequenceClassification
from bert18.training.arguments import parse_recipe
from bert18.training.optim import LambFactory, lamb_param_groups, trainer_optimizer

pytest.importorskip("pytorch_optimizer")

LR, BETAS, EPS, DECAY = 1e-2, (0.9, 0.999), 1e-6, 0.01


def tiny_model(seed: int = 0) -> Bert18ForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(vocab_size=64, max_position_embeddings=32, num_labels=3, classifier_dropout=0.0)
    return Bert18ForSequenceClassification(config)


class ReferenceLamb:
    """The published update, one tensor at a time, in float64 (Google's ALBERT ``LAMBOptimizer``):
    no bias correction; decay inside the update; trust ratio ||w|| / ||r||, 1 when either is 0;
    biases and LayerNorm parameters (the 1-D tensors) take neither decay nor the trust ratio."""

    def __init__(self, params: dict[str, torch.Tensor]):
        self.w = {name: p.detach().double().clone() for name, p in params.items()}
        self.m = {name: torch.zeros_like(w) for name, w in self.w.items()}
        self.v = {name: torch.zeros_like(w) for name, w in self.w.items()}

    def step(self, grads: dict[str, torch.Tensor], lr: float = LR) -> None:
        for name, w in self.w.items():
            g = grads[name].double()
            self.m[name] = BETAS[0] * self.m[name] + (1 - BETAS[0]) * g
            self.v[name] = BETAS[1] * self.v[name] + (1 - BETAS[1]) * g * g
            update = self.m[name] / (self.v[name].sqrt() + EPS)
            adapted = w.ndim >= 2
            if adapted:
                update = update + DECAY * w
            ratio = 1.0
            w_norm, u_norm = w.norm(), update.norm()
            if adapted and w_norm > 0 and u_norm > 0:
                ratio = (w_norm / u_norm).item()
            self.w[name] = w - lr * ratio * update


def batch(seed: int, size: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(5, 64, (size, 12), generator=generator),
        "labels": torch.randint(0, 3, (size,), generator=generator),
    }


def named(model) -> dict[str, torch.nn.Parameter]:
    return dict(model.named_parameters())


def test_lamb_matches_the_published_update_over_several_steps():
    model = tiny_model()
    with torch.no_grad():  # a weight norm above 10, where a clamped trust ratio would differ
        model.bert18.embeddings.word_embeddings.weight.mul_(40)
    assert model.bert18.embeddings.word_embeddings.weight.norm() > 10
    reference = ReferenceLamb(named(model))
    optimizer = LambFactory()(model, lr=LR, betas=BETAS, eps=EPS, weight_decay=DECAY)
    before = {name: p.detach().clone() for name, p in named(model).items()}
    for step in range(5):
        model.zero_grad()
        model(**batch(step)).loss.backward()
        reference.step({name: p.grad for name, p in named(model).items()})
        optimizer.step()
    for name, param in named(model).items():
        torch.testing.assert_close(param.detach().double(), reference.w[name], rtol=1e-5, atol=1e-7, msg=name)
    # the trust ratio really acted: a plain Adam step (ratio 1) would have moved the matrices elsewhere
    moved = {name: (param.detach() - before[name]).norm() for name, param in named(model).items()}
    assert all(value > 0 for value in moved.values())


def test_param_groups_exclude_vectors_from_decay_and_adaptation():
    model = tiny_model()
    matrices, vectors = lamb_param_groups(model.named_parameters(), 0.01)
    assert all(p.ndim >= 2 for p in matrices["params"]) and matrices["weight_decay"] == 0.01
    assert all(p.ndim == 1 for p in vectors["params"]) and vectors["weight_decay"] == 0.0 and vectors["adam"]
    unique = {id(p) for p in model.parameters()}
    assert len(matrices["params"]) + len(vectors["params"]) == len(unique)


def test_lamb_under_the_trainer_with_gradient_accumulation(tmp_path):
    """Two micro-batches of 4 accumulated = one step on the batch of 8, by the reference update."""
    model = tiny_model()
    reference = ReferenceLamb(named(model))
    steps, data = 3, [batch(step) for step in range(3)]
    for step in range(steps):
        twin = tiny_model()
        twin.load_state_dict({name: w.float() for name, w in reference.w.items()}, strict=False)
        twin(**data[step]).loss.backward()
        reference.step({name: p.grad for name, p in named(twin).items()})

    rows = [{"input_ids": ids, "labels": label} for b in data for ids, label in zip(b["input_ids"], b["labels"])]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=steps,
        learning_rate=LR,
        adam_beta1=BETAS[0],
        adam_beta2=BETAS[1],
        adam_epsilon=EPS,
        weight_decay=DECAY,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=rows, optimizer_cls_and_kwargs=trainer_optimizer("lamb", args)
    )
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(rows)
    trainer.train()
    assert (
        type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer).__name__
        == "Lamb"
    )
    for name, param in named(model).items():
        torch.testing.assert_close(param.detach().double(), reference.w[name], rtol=1e-4, atol=1e-6, msg=name)


def test_recipe_key_selects_lamb_and_refuses_unknown_names():
    recipe = parse_recipe("tiny-demo", optimizer="lamb")
    cls, kwargs = trainer_optimizer(recipe.run.optimizer, recipe.training)
    assert cls is LambFactory and kwargs["lr"] == recipe.training.learning_rate
    assert trainer_optimizer("trainer", recipe.training) is None
    with pytest.raises(ValueError, match="optimizer must be one of trainer, lamb"):
        parse_recipe("tiny-demo", optimizer="lars")
    assert parse_recipe("albert-base", bf16=False).run.optimizer == "lamb"


def test_finetuning_with_layerwise_decay_builds_lamb_groups(minilm_path):
    from bert18.training.finetune import build_optimizer
    from bert18.training.finetune_arguments import parse_finetune_recipe

    recipe = parse_finetune_recipe(
        "finetune-modules",
        model_name_or_path=minilm_path,
        optimizer="lamb",
        layerwise_lr_decay=0.9,
        weight_decay=0.01,
        output_dir="unused",
    )
    optimizer = build_optimizer(recipe, tiny_model())
    assert type(optimizer).__name__ == "Lamb"
    for group in optimizer.param_groups:
        vectors = group["name"].endswith("/no_decay")
        assert group["adam"] == vectors and all((p.ndim < 2) == vectors for p in group["params"])

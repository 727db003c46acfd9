"""bert18's version of transformers' common model checks, over the family's configurations.

What every in-tree transformers model passes, run against every bert18 class, parametrized over the
BERT, RoBERTa, ALBERT (factorized + shared), ERNIE, sinusoidal and fast-paths-off configurations at
tiny sizes: save/load round trips, eager vs SDPA vs unpadded equivalence (``output_attentions``
included), ``inputs_embeds`` vs ``input_ids``, gradient checkpointing with every parameter trained,
``torch.export`` / ONNX with an attention mask and dynamic shapes, ``resize_token_embeddings``, tied
weights, and a few steps on the stock ``Trainer``. The references are the eager padded computation,
transformers' own machinery (save_pretrained, Trainer, resize) and ONNX Runtime.
"""

import copy
import os

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments

import bert18
from bert18 import Bert18Config
from bert18.configuration_bert18 import PRESETS, PRETRAINING_TASKS

VOCAB = 99
SMALL = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    num_labels=3,
)
FAMILIES = {
    "bert": ("tiny", {}),
    "roberta": ("roberta-base", {}),  # pad id 1, positions over real tokens, one segment, no pooler in pretraining
    "albert": ("albert-base", {"embedding_size": 16}),  # factorized embeddings, every layer shared
    "ernie": ("ernie-base", {}),  # four segment types, four pretraining tasks
    "sinusoidal": ("tiny", {"position_embedding_type": "sinusoidal"}),
    "fast_paths_off": ("tiny", {"unpad_inputs": False, "sparse_prediction": False}),
    # ModernBERT: rotary, pre-norm without biases, GeGLU, no segments, local layers narrower than the batch.
    "modernbert": (
        "modernbert-base",
        {"pad_token_id": 0, "local_attention_window": 4, "global_attention_every_n_layers": 2},
    ),
    # ALBERT's objectives on a modern encoder: factorized + shared, RMSNorm, SwiGLU, rotary, local/global.
    "modern_albert": (
        "albert-base",
        {
            "embedding_size": 16,
            "position_embedding_type": "rotary",
            "norm_position": "pre",
            "norm_type": "rms_norm",
            "feed_forward_type": "swiglu",
            "hidden_act": "silu",
            "attention_bias": False,
            "mlp_bias": False,
            "local_attention_window": 4,
            "global_attention_every_n_layers": 2,
        },
    ),
}
CLASSES = [
    "Bert18Model",
    "Bert18ForPreTraining",
    "Bert18ForMaskedLM",
    "Bert18ForSequenceClassification",
    "Bert18ForTokenClassification",
    "Bert18ForQuestionAnswering",
    "Bert18ForMultipleChoice",
]
CHOICES = 2


def family_config(family: str, **overrides) -> Bert18Config:
    preset, fields = FAMILIES[family]
    return Bert18Config.from_preset(preset, **{**SMALL, **fields, **overrides})


def make_model(name: str, config: Bert18Config, attention: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(bert18, name)(copy.deepcopy(config))
    model.set_attn_implementation(attention)
    with torch.no_grad():  # LayerNorms and biases away from their init, so a mix-up would show
        for param_name, param in model.named_parameters():
            if param_name.endswith("bias") or "layer_norm" in param_name:
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def make_inputs(name: str, config: Bert18Config, batch: int = 3, length: int = 10, seed: int = 0) -> dict:
    """Right-padded rows of decreasing length (the first full), ids away from the pad id, segments."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([length, max(2, length - 3), max(2, length - 6), length - 1][:batch])
    if batch > 4:
        lengths = torch.randint(2, length + 1, (batch,), generator=generator)
        lengths[0] = length
    real = torch.arange(length)[None, :] < lengths[:, None]
    ids = torch.randint(3, config.vocab_size, (batch, length), generator=generator)
    ids = ids.masked_fill(~real, config.pad_token_id)
    segments = (torch.arange(length)[None, :] >= (lengths[:, None] // 2)).long() * real
    inputs = {"input_ids": ids, "attention_mask": real.long()}
    if config.type_vocab_size > 1:
        inputs["token_type_ids"] = segments.clamp(max=config.type_vocab_size - 1)
    if name == "Bert18ForMultipleChoice":  # [batch, choices, length]: choice c shifts the ids
        inputs = {
            k: torch.stack(
                [v if k != "input_ids" else (v + c).masked_fill(~real, config.pad_token_id) for c in range(CHOICES)], 1
            ).clamp(max=config.vocab_size - 1)
            for k, v in inputs.items()
        }
    return inputs


def make_labels(name: str, config: Bert18Config, inputs: dict, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    real = inputs["attention_mask"].bool()
    batch = real.shape[0]
    if name in ("Bert18ForMaskedLM", "Bert18ForPreTraining"):
        keep = real & (torch.rand(real.shape, generator=generator) < 0.4)
        keep[:, 1] = True
        labels = {"labels": inputs["input_ids"].masked_fill(~keep, -100)}
        if name == "Bert18ForPreTraining":
            for task in config.pretraining_tasks:
                record = PRETRAINING_TASKS[task]
                argument, classes, level = record.label, record.classes(config), record.level
                if task == "mlm":
                    continue
                shape = (batch,) if level == "sequence" else real.shape
                target = torch.randint(0, classes, shape, generator=generator)
                labels[argument] = target if level == "sequence" else target.masked_fill(~real, -100)
            if "mlm" not in config.pretraining_tasks:
                labels.pop("labels")
        return labels
    if name == "Bert18ForSequenceClassification":
        return {"labels": torch.randint(0, config.num_labels, (batch,), generator=generator)}
    if name == "Bert18ForTokenClassification":
        return {"labels": torch.randint(0, config.num_labels, real.shape, generator=generator).masked_fill(~real, -100)}
    if name == "Bert18ForQuestionAnswering":
        return {"start_positions": torch.tensor([1, 2, 0])[:batch], "end_positions": torch.tensor([3, 2, 1])[:batch]}
    if name == "Bert18ForMultipleChoice":
        return {"labels": torch.randint(0, CHOICES, (batch,), generator=generator)}
    return {}


def outputs_of(name: str, out) -> dict[str, torch.Tensor]:
    """The tensors a class returns, by name; token-level ones are [batch, length, ...]."""
    if name == "Bert18Model":
        tensors = {"last_hidden_state": out.last_hidden_state}
        if out.pooler_output is not None:
            tensors["pooler_output"] = out.pooler_output
        return tensors
    if name == "Bert18ForPreTraining":
        tensors = {f"task_{k}": v for k, v in (out.task_logits or {}).items()}
        if out.prediction_logits is not None:
            tensors["prediction_logits"] = out.prediction_logits
        return tensors
    if name == "Bert18ForQuestionAnswering":
        return {"start_logits": out.start_logits, "end_logits": out.end_logits}
    return {"logits": out.logits}


def assert_same(ours: dict, reference: dict, real: torch.Tensor | None = None, atol: float = 1e-5) -> None:
    """Equal tensors; token-level ones ([batch, length, ...]) compared at real tokens when ``real`` is given."""
    assert ours.keys() == reference.keys()
    for key in reference:
        a, b = ours[key], reference[key]
        assert a.shape == b.shape, key
        if real is not None and a.dim() >= 2 and a.shape[:2] == real.shape:
            a, b = a[real], b[real]
        torch.testing.assert_close(a, b, atol=atol, rtol=atol, msg=key)


def real_tokens(name: str, inputs: dict) -> torch.Tensor:
    mask = inputs["attention_mask"].bool()
    return mask.flatten(0, 1) if name == "Bert18ForMultipleChoice" else mask


family_params = pytest.mark.parametrize("family", list(FAMILIES))
class_params = pytest.mark.parametrize("name", CLASSES)


# --- save / load --------------------------------------------------------------------------------


@family_params
@class_params
def test_save_and_load_round_trip(family, name, tmp_path):
    """save_pretrained then from_pretrained: the same config, every tensor and the same outputs."""
    config = family_config(family)
    model = make_model(name, config)
    inputs = make_inputs(name, config)
    with torch.no_grad():
        before = outputs_of(name, model(**inputs))
    model.save_pretrained(tmp_path)
    loaded, info = getattr(bert18, name).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info  # nothing missing, unexpected or mismatched
    saved = {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}
    assert {k: v for k, v in loaded.config.to_dict().items() if k != "_name_or_path"} == saved
    reference = model.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)
    with torch.no_grad():
        after = outputs_of(name, loaded.eval()(**inputs))
    assert_same(after, before, atol=1e-6)


# --- eager vs SDPA vs unpadded --------------------------------------------------------------------


@family_params
@class_params
def test_eager_sdpa_and_unpadded_agree(family, name):
    """The same weights under eager attention (the padded reference), padded SDPA and SDPA with
    unpadding: equal outputs at real tokens, and equal losses."""
    config = family_config(family)
    inputs = make_inputs(name, config)
    labels = make_labels(name, config, inputs)
    results = {}
    for attention, unpad in (("eager", False), ("sdpa", False), ("sdpa", True)):
        model = make_model(name, config, attention)
        model.config.unpad_inputs = unpad and config.unpad_inputs
        with torch.no_grad():
            out = model(**inputs, **labels)
        results[attention, unpad] = outputs_of(name, out), getattr(out, "loss", None)
    real = real_tokens(name, inputs)
    reference, reference_loss = results["eager", False]
    for key, (outputs, loss) in results.items():
        assert_same(outputs, reference, real)
        if reference_loss is not None:
            torch.testing.assert_close(loss, reference_loss, atol=1e-5, rtol=1e-5, msg=str(key))


@family_params
def test_output_attentions_on_every_path(family):
    """output_attentions=True: eager returns one [batch, heads, length, length] map per layer (rows sum
    to 1, no weight on padding keys); SDPA, padded or unpadded, returns none, as transformers' BertModel
    does, and the same hidden states."""
    config = family_config(family)
    inputs = make_inputs("Bert18Model", config)
    real = inputs["attention_mask"].bool()
    states = {}
    for attention, unpad in (("eager", False), ("sdpa", False), ("sdpa", True)):
        model = make_model("Bert18Model", config, attention)
        model.config.unpad_inputs = unpad
        with torch.no_grad():
            out = model(**inputs, output_attentions=True, output_hidden_states=True)
        states[attention, unpad] = out.hidden_states
        if attention == "eager":
            assert len(out.attentions) == config.num_hidden_layers
            for weights in out.attentions:
                assert weights.shape == (3, config.num_attention_heads, 10, 10)
                torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
                assert weights.masked_select(~real[:, None, None, :]).abs().max() == 0
        else:
            assert out.attentions == ()
    for key, hidden in states.items():
        assert len(hidden) == config.num_hidden_layers + 1
        for ours, reference in zip(hidden, states["eager", False]):
            torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=1e-5, msg=str(key))


# --- inputs_embeds ------------------------------------------------------------------------------


@family_params
@pytest.mark.parametrize("name", ["Bert18Model", "Bert18ForMaskedLM", "Bert18ForMultipleChoice"])
def test_inputs_embeds_equal_input_ids(family, name):
    """The word embeddings passed as inputs_embeds give what the ids give (RoBERTa's positions then
    come from the attention mask)."""
    config = family_config(family)
    model = make_model(name, config)
    inputs = make_inputs(name, config)
    embeds = {**inputs, "inputs_embeds": model.get_input_embeddings()(inputs["input_ids"])}
    del embeds["input_ids"]
    with torch.no_grad():
        assert_same(outputs_of(name, model(**embeds)), outputs_of(name, model(**inputs)), atol=1e-6)


# --- gradient checkpointing -----------------------------------------------------------------------


@family_params
@pytest.mark.parametrize("name", ["Bert18ForPreTraining", "Bert18ForSequenceClassification"])
def test_gradient_checkpointing_trains_every_parameter(family, name):
    """Activation checkpointing gives the same loss and gradients, and every parameter gets one."""
    config = family_config(family)
    inputs = make_inputs(name, config)
    labels = make_labels(name, config, inputs)
    grads = []
    for checkpointing in (False, True):
        model = make_model(name, config).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
        loss = model(**inputs, **labels).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (plain_loss, plain), (loss, checkpointed) = grads
    torch.testing.assert_close(loss, plain_loss)
    missing = [n for n, g in checkpointed.items() if g is None or not g.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    for n, g in checkpointed.items():
        torch.testing.assert_close(g, plain[n], atol=1e-6, rtol=1e-5, msg=n)


# --- export -----------------------------------------------------------------------------------------


def dynamic_shapes(name: str, inputs: dict, config: Bert18Config) -> dict:
    batch = torch.export.Dim("batch", min=1, max=64)
    length = torch.export.Dim("length", min=2, max=config.max_position_embeddings)
    dims = {0: batch, 2: length} if name == "Bert18ForMultipleChoice" else {0: batch, 1: length}
    return {key: dims for key in inputs}


def packed_inputs(config: Bert18Config) -> dict:
    """Rows packing two and three sequences (numbered 1, 2, 3) and padding."""
    mask = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 2, 2, 3, 3, 3, 3]])
    ids = torch.randint(3, config.vocab_size, mask.shape, generator=torch.Generator().manual_seed(5))
    inputs = {"input_ids": ids.masked_fill(mask.eq(0), config.pad_token_id), "attention_mask": mask}
    if config.type_vocab_size > 1:
        inputs["token_type_ids"] = torch.zeros_like(mask)
    return inputs


def check_export(family: str, name: str) -> None:
    config = family_config(family)
    model = make_model(name, config)
    example = make_inputs(name, config)
    program = torch.export.export(model, (), example, dynamic_shapes=dynamic_shapes(name, example, config))
    exported = program.module()
    for inputs, real in export_checks(name, config, length=2):
        with torch.no_grad():
            assert_same(outputs_of(name, exported(**inputs)), outputs_of(name, model(**inputs)), real)


def export_checks(name: str, config: Bert18Config, length: int | None = None) -> list[tuple[dict, torch.Tensor | None]]:
    """Inputs of other shapes than the traced example, and where to compare: everywhere, except that a
    padding position of a packed row, attended by nothing when not unpadded, has no defined value."""
    checks = [(make_inputs(name, config, batch=5, length=13, seed=3), None)]
    if length is not None:
        checks.append((make_inputs(name, config, batch=1, length=length), None))
    if name != "Bert18ForMultipleChoice" and not config.pad_aware_positions:
        packed = packed_inputs(config)
        checks.append((packed, packed["attention_mask"].ne(0)))
    return checks


def check_onnx(family: str, name: str, folder) -> None:
    import onnxruntime

    config = family_config(family)
    model = make_model(name, config)
    example = make_inputs(name, config)
    path = os.path.join(folder, f"{family}-{name}.onnx")
    torch.onnx.export(
        model,
        (),
        path,
        kwargs=example,
        dynamo=True,
        verbose=False,
        dynamic_shapes=dynamic_shapes(name, example, config),
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for inputs, real in export_checks(name, config):
        results = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        with torch.no_grad():
            expected = list(outputs_of(name, model(**inputs)).values())
        if name == "Bert18ForPreTraining":  # the output tree flattens as prediction_logits, then task_logits
            with torch.no_grad():
                out = model(**inputs)
            expected = [t for t in (out.prediction_logits, *(out.task_logits or {}).values()) if t is not None]
        assert len(results) == len(expected)
        for got, want in zip(results, expected):
            if real is not None and want.dim() >= 2 and want.shape[:2] == real.shape:
                got, want = got[real.numpy()], want[real]
            np.testing.assert_allclose(got, want.numpy(), atol=1e-5, rtol=1e-5)


@class_params
def test_torch_export_every_class(name):
    """torch.export with an attention mask, dynamic batch and length: the program equals eager on other
    shapes, on padded rows and on packed (numbered) rows."""
    check_export("bert", name)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "bert"])
def test_torch_export_every_family(family):
    check_export(family, "Bert18ForPreTraining")


@pytest.mark.parametrize("name", ["Bert18Model", "Bert18ForSequenceClassification"])
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    """The ONNX exporter (dynamo) with an attention mask and dynamic shapes; ONNX Runtime equals eager."""
    check_onnx("bert", name, tmp_path)


@pytest.mark.slow
@family_params
@class_params
def test_export_and_onnx_every_class_and_family(family, name, tmp_path):
    check_export(family, name)
    check_onnx(family, name, tmp_path)


# --- resize_token_embeddings and tied weights ----------------------------------------------------


def tied(model) -> bool:
    return model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@family_params
@pytest.mark.parametrize("name", ["Bert18ForMaskedLM", "Bert18ForPreTraining"])
def test_tied_weights_survive_save_load_and_resize(family, name, tmp_path):
    """The decoder is the word embedding matrix after init, save/load and resize_token_embeddings;
    old tokens score as before a resize, new ones are scored too."""
    config = family_config(family)
    model = make_model(name, config)
    assert tied(model)
    model.save_pretrained(tmp_path)
    loaded = getattr(bert18, name).from_pretrained(tmp_path).eval()
    assert tied(loaded)
    inputs = make_inputs(name, config)
    with torch.no_grad():
        before = outputs_of(name, loaded(**inputs))
    logits_key = "logits" if name == "Bert18ForMaskedLM" else "prediction_logits"
    loaded.resize_token_embeddings(VOCAB + 7)
    assert loaded.config.vocab_size == VOCAB + 7
    assert tied(loaded)
    assert loaded.get_input_embeddings().weight.shape[0] == VOCAB + 7
    assert loaded.lm_head.decoder.bias.shape == (VOCAB + 7,)
    with torch.no_grad():
        after = outputs_of(name, loaded(**inputs))
        new_ids = {**inputs, "input_ids": inputs["input_ids"].masked_fill(inputs["attention_mask"].bool(), VOCAB + 3)}
        assert torch.isfinite(outputs_of(name, loaded(**new_ids))[logits_key]).all()
    assert after[logits_key].shape[-1] == VOCAB + 7
    after[logits_key] = after[logits_key][..., :VOCAB]
    assert_same(after, before, atol=1e-6)


def test_untied_weights_stay_untied(tmp_path):
    config = family_config("bert", tie_word_embeddings=False)
    model = make_model("Bert18ForMaskedLM", config)
    assert not tied(model)
    model.save_pretrained(tmp_path)
    loaded = bert18.Bert18ForMaskedLM.from_pretrained(tmp_path)
    assert not tied(loaded)
    torch.testing.assert_close(loaded.lm_head.decoder.weight, model.lm_head.decoder.weight, rtol=0, atol=0)


# --- the stock Trainer ------------------------------------------------------------------------------


class Rows(torch.utils.data.Dataset):
    def __init__(self, name: str, config: Bert18Config, count: int = 12):
        inputs = make_inputs(name, config, batch=count, length=10, seed=7)
        labels = make_labels(name, config, inputs, seed=8)
        self.rows = [{k: v[i] for k, v in {**inputs, **labels}.items()} for i in range(count)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


@family_params
@pytest.mark.parametrize("name", ["Bert18ForPreTraining", "Bert18ForSequenceClassification"])
def test_a_few_steps_on_the_stock_trainer(family, name, tmp_path):
    """transformers' Trainer as it is: training steps move every trained weight and lower the loss on
    the training rows; evaluation reports a loss."""
    config = family_config(family)
    model = make_model(name, config).train()
    rows = Rows(name, config)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        batch = torch.utils.data.default_collate(rows.rows)
        initial = model.eval()(**batch).loss.item()
    label_names = [k for k in rows[0] if k not in ("input_ids", "attention_mask", "token_type_ids")]
    args = TrainingArguments(
        str(tmp_path),
        max_steps=8,
        per_device_train_batch_size=12,
        learning_rate=3e-3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        label_names=label_names,
        seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, eval_dataset=rows)
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] < initial
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), start[n])]
    assert not unchanged, unchanged


def test_families_cover_the_presets():
    """Every preset's architecture is among the configurations above (a new one must be added here)."""
    covered = {preset for preset, _ in FAMILIES.values()}
    for name, fields in PRESETS.items():
        kind = (
            "modernbert-base"
            if fields.get("norm_position") == "pre"
            else "albert-base"
            if fields.get("layer_sharing", "none") != "none"
            else "roberta-base"
            if fields.get("pad_aware_positions")
            else "ernie-base"
            if fields.get("type_vocab_size") == 4
            else "tiny"
        )
        assert kind in covered, name

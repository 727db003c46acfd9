"""The modern encoder options (rotary positions, pre-norm, RMSNorm, gated feed-forward, bias-free layers,
local/global attention) and ModernBERT checkpoints.

References: transformers' ``ModernBertModel``, ``ModernBertForMaskedLM`` and
``ModernBertForSequenceClassification`` with random weights on padded batches (local attention narrower
than the sequences), and bert18's own eager padded computation for the SDPA and unpadded paths.
"""

import copy
from pathlib import Path

import pytest
import torch
from helpers import ERNIE_TASKS
from transformers import ModernBertConfig, ModernBertForMaskedLM, ModernBertForSequenceClassification, ModernBertModel

import bert18
from bert18 import Bert18Config
from bert18.convert import ConversionError, convert_checkpoint, from_transformers
from bert18.params import count_parameters
from bert18.training import parse_recipe

VOCAB = 97
SMALL = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=24,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    num_labels=3,
    pad_token_id=0,
)


def modernbert_config(**overrides) -> ModernBertConfig:
    fields = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=24,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=64,
        local_attention=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        num_labels=3,
        global_rope_theta=1000.0,
        local_rope_theta=50.0,
    )
    return ModernBertConfig(**{**fields, **overrides})


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (norm weights around 1, biases around 0), so a misplaced weight shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * 0.1
            param.copy_((1.0 + noise) if "norm" in name and name.endswith("weight") else noise * 2)
    return model.eval()


def padded_batch(length: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows (one full, others shorter than and longer than the local window)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (4, length), generator=generator)
    mask = torch.ones(4, length, dtype=torch.long)
    for row, real in enumerate((length, length - 7, 12, 5)):
        mask[row, real:] = 0
        ids[row, real:] = 0
    return ids, mask


def max_diff_at_real(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return (a - b).abs()[mask.bool()].max().item()


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize(
    "source_class", ["ModernBertModel", "ModernBertForMaskedLM", "ModernBertForSequenceClassification"]
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "classifier_pooling": "mean",
            "norm_bias": True,
            "attention_bias": True,
            "mlp_bias": True,
            "classifier_bias": True,
            "hidden_activation": "silu",
        },
    ],
)
def test_modernbert_parity(source_class, attention, options):
    """bert18 converted from a random ModernBERT computes what it computes: last hidden states, MLM
    logits and classifier logits within 1e-5 at real tokens, on eager, SDPA and bert18's unpadded path."""
    torch.manual_seed(0)
    reference = randomize(
        {
            "ModernBertModel": ModernBertModel,
            "ModernBertForMaskedLM": ModernBertForMaskedLM,
            "ModernBertForSequenceClassification": ModernBertForSequenceClassification,
        }[source_class](modernbert_config(**options))
    )
    reference.set_attn_implementation(attention)
    ids, mask = padded_batch()
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask)
    converted = from_transformers(reference)
    assert converted.config.layer_types == reference.config.layer_types
    for implementation, unpad in ((attention, False), ("sdpa", True)):
        model = copy.deepcopy(converted)
        model.config.unpad_inputs = unpad
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            got = model(ids, attention_mask=mask)
        if source_class == "ModernBertModel":
            assert max_diff_at_real(got.last_hidden_state, expected.last_hidden_state, mask) <= 1e-5
        elif source_class == "ModernBertForMaskedLM":
            assert max_diff_at_real(got.logits, expected.logits, mask) <= 1e-5
        else:
            assert (got.logits - expected.logits).abs().max().item() <= 1e-5


def test_local_attention_matters_in_the_parity_batch():
    """The parity batch is longer than the window: without local attention the outputs differ."""
    reference = randomize(ModernBertModel(modernbert_config()))
    ids, mask = padded_batch()
    converted = from_transformers(reference)
    converted.config.layer_types = ["full_attention"] * 4
    converted.encoder.layer_types = converted.config.layer_types
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).last_hidden_state
        got = converted(ids, attention_mask=mask).last_hidden_state
    assert max_diff_at_real(got, expected, mask) > 1e-3


def test_modernbert_folder_loads_with_from_pretrained_and_converts(tmp_path):
    reference = randomize(ModernBertForMaskedLM(modernbert_config()))
    reference.save_pretrained(tmp_path / "modernbert")
    ids, mask = padded_batch()
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).logits
    loaded = bert18.Bert18ForMaskedLM.from_pretrained(tmp_path / "modernbert").eval()
    converted = convert_checkpoint(tmp_path / "modernbert", tmp_path / "bert18")
    reloaded = bert18.Bert18ForMaskedLM.from_pretrained(converted).eval()
    with torch.no_grad():
        for model in (loaded, reloaded):
            assert max_diff_at_real(model(ids, attention_mask=mask).logits, expected, mask) <= 1e-5


def test_modernbert_token_classification_is_refused():
    from transformers import ModernBertForTokenClassification

    with pytest.raises(ConversionError, match="prediction head"):
        from_transformers(ModernBertForTokenClassification(modernbert_config()))


@pytest.mark.parametrize("preset", ["modernbert-base", "modernbert-large"])
def test_presets_count_what_transformers_counts(preset):
    """Built on the meta device: bert18's preset and transformers' ModernBertModel of the published config."""
    published = {
        "modernbert-base": {},
        "modernbert-large": dict(
            hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, intermediate_size=2624
        ),
    }
    with torch.device("meta"):
        reference = ModernBertModel(ModernBertConfig(**published[preset]))
    expected = sum(p.numel() for p in reference.parameters())
    if preset == "modernbert-base":
        assert expected == 149_014_272
    report = count_parameters(preset)
    assert report.total == expected
    config = Bert18Config.from_preset(preset)
    converted = bert18.convert.config_from_transformers(reference.config)
    for field in (
        "layer_types",
        "local_attention_window",
        "rope_theta",
        "local_rope_theta",
        "intermediate_size",
        "norm_bias",
        "attention_bias",
        "mlp_bias",
        "feed_forward_type",
        "max_position_embeddings",
    ):
        assert getattr(config, field) == getattr(converted, field), field


# Modern options in combination, with factorized embeddings and cross-layer sharing: the eager padded
# computation is the reference for SDPA (padded) and the unpadded variable-length path, packed rows included.
COMBINATIONS = {
    "modernbert": ("modernbert-base", dict(local_attention_window=6)),
    "rotary_post_norm": ("tiny", dict(position_embedding_type="rotary", rope_theta=500.0)),
    "albert_modern": (
        "albert-base",
        dict(
            embedding_size=16,
            position_embedding_type="rotary",
            norm_position="pre",
            norm_type="rms_norm",
            feed_forward_type="swiglu",
            hidden_act="silu",
            attention_bias=False,
            mlp_bias=False,
            local_attention_window=6,
            global_attention_every_n_layers=2,
            local_rope_theta=100.0,
        ),
    ),
    "shared_ffn_rms_bias": (
        "tiny",
        dict(
            layer_sharing="ffn",
            norm_type="rms_norm",
            norm_position="pre",
            feed_forward_type="geglu",
            position_embedding_type="rotary",
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            local_attention_window=4,
        ),
    ),
    "alibi_albert": (
        "albert-base",
        dict(
            embedding_size=16,
            position_embedding_type="alibi",
            norm_position="pre",
            feed_forward_type="geglu",
            local_attention_window=6,
            global_attention_every_n_layers=2,
        ),
    ),
    "alibi_plain": ("tiny", dict(position_embedding_type="alibi", num_attention_heads=8)),  # 8 heads: other slopes
    "shared_attention_learned": (
        "tiny",
        dict(
            layer_sharing="attention",
            norm_position="pre",
            norm_bias=False,
            embedding_size=16,
            global_attention_every_n_layers=3,
            local_attention_window=8,
        ),
    ),
}


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
@pytest.mark.parametrize("packed", [False, True])
def test_eager_sdpa_unpadded_agree(combination, packed):
    preset, fields = COMBINATIONS[combination]
    config = Bert18Config.from_preset(preset, **{**SMALL, **fields})
    ids, mask = padded_batch(length=20)
    if packed:  # rows holding several sequences: positions restart and windows stay inside each
        mask = torch.tensor(
            [[1] * 7 + [2] * 9 + [3] * 4, [1] * 12 + [2] * 5 + [0] * 3, [1] * 20, [1] * 3 + [2] * 3 + [0] * 14]
        )
    outputs = {}
    for implementation, unpad in (("eager", True), ("sdpa", False), ("sdpa", True)):
        torch.manual_seed(0)
        model = randomize(bert18.Bert18ForSequenceClassification(copy.deepcopy(config)))
        model.config.unpad_inputs = unpad
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            out = model.bert18(ids, attention_mask=mask)
        outputs[implementation, unpad] = out.last_hidden_state
    reference = outputs["eager", True]
    for key, value in outputs.items():
        assert max_diff_at_real(value, reference, mask) <= 1e-5, key


def test_packed_rows_equal_the_sequences_alone():
    """A packed row computes what its sequences compute one per row (positions restart, windows and
    attention stay inside each sequence)."""
    preset, fields = COMBINATIONS["albert_modern"]
    config = Bert18Config.from_preset(preset, **{**SMALL, **fields})
    model = randomize(bert18.Bert18Model(config, add_pooling_layer=False))
    model.set_attn_implementation("sdpa")
    ids = torch.randint(3, VOCAB, (1, 18))
    packed_mask = torch.tensor([[1] * 11 + [2] * 7])
    with torch.no_grad():
        packed = model(ids, attention_mask=packed_mask).last_hidden_state[0]
        first = model(ids[:, :11]).last_hidden_state[0]
        second = model(ids[:, 11:]).last_hidden_state[0]
    assert torch.allclose(packed, torch.cat([first, second]), atol=1e-5)


FINAL_LAYER_CASES = {"bert": ("tiny", {}), **COMBINATIONS}


@pytest.mark.parametrize("combination", sorted(FINAL_LAYER_CASES))
@pytest.mark.parametrize("model_class", ["Bert18ForMaskedLM", "Bert18ForPreTraining"])
def test_final_layer_on_the_targets_only_equals_the_full_final_layer(combination, model_class):
    """Sparse MLM runs the last layer's output projection, residual and feed-forward on the masked
    positions alone: the loss, the logits and every gradient equal those of the full final layer (asked
    for with ``output_hidden_states``), on every attention path, packed rows included, and the last
    feed-forward really sees the targets only."""
    preset, fields = FINAL_LAYER_CASES[combination]
    config = Bert18Config.from_preset(preset, **{**SMALL, **fields, "sparse_prediction": True})
    config.pretraining_tasks = ["mlm"]
    ids, mask = padded_batch(length=20)
    mask[2, 6:12] = 2  # a packed row too: its second sequence attends to itself only
    labels = ids.masked_fill(torch.rand(ids.shape, generator=torch.Generator().manual_seed(3)) > 0.3, -100)
    labels = labels.masked_fill(mask == 0, -100)
    targets = int(labels.ne(-100).sum())
    for implementation, unpad in (("eager", True), ("sdpa", False), ("sdpa", True)):
        results = {}
        for full in (False, True):
            model = randomize(getattr(bert18, model_class)(copy.deepcopy(config))).train()
            model.config.unpad_inputs = unpad
            model.set_attn_implementation(implementation)
            rows = []
            last_ffn = model.bert18.encoder.feed_forward[-1]
            hook = last_ffn.register_forward_hook(
                lambda module, args, out, rows=rows: rows.append(args[0].shape[:-1].numel())
            )
            out = model(ids, attention_mask=mask, labels=labels, output_hidden_states=full)
            hook.remove()
            out.loss.backward()
            logits = out.logits if model_class == "Bert18ForMaskedLM" else out.prediction_logits
            results[full] = out.loss, logits, {n: p.grad for n, p in model.named_parameters()}, rows[-1]
        (loss, logits, grads, last_rows), (full_loss, full_logits, full_grads, full_rows) = (
            results[False],
            results[True],
        )
        assert last_rows == targets < full_rows, (implementation, unpad)
        torch.testing.assert_close(loss, full_loss, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=1e-5)
        for name, grad in full_grads.items():
            torch.testing.assert_close(grads[name], grad, atol=1e-5, rtol=1e-4, msg=f"{implementation} {unpad} {name}")


def test_states_at_returns_the_states_of_those_positions():
    """``Bert18Model(states_at=...)``: the final states at those positions, as ``last_hidden_state[states_at]``
    of the full forward; refused with two streams' outputs of every layer."""
    preset, fields = COMBINATIONS["modernbert"]
    model = randomize(bert18.Bert18Model(Bert18Config.from_preset(preset, **{**SMALL, **fields})))
    ids, mask = padded_batch(length=20)
    chosen = (torch.arange(20)[None, :] % 3 == 0) & mask.bool()
    with torch.no_grad():
        full = model(ids, attention_mask=mask).last_hidden_state
        picked = model(ids, attention_mask=mask, states_at=chosen)
    assert picked.pooler_output is None
    torch.testing.assert_close(picked.last_hidden_state, full[chosen], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="output_hidden_states"):
        model(ids, attention_mask=mask, states_at=chosen, output_hidden_states=True)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("norm_position", "middle", "norm_position"),
        ("norm_type", "batch_norm", "norm_type"),
        ("feed_forward_type", "moe", "feed_forward_type"),
        ("layer_types", ["full_attention"], "layer_types lists 1"),
        ("layer_types", ["global", "local"], "each entry must be"),
        ("global_attention_every_n_layers", 0, "global_attention_every_n_layers"),
        ("rope_theta", -1.0, "rope_theta"),
        ("classifier_pooling", "max", "classifier_pooling"),
        ("pooler_activation", "nope", "pooler_activation"),
        ("type_vocab_size", -1, "type_vocab_size"),
    ],
)
def test_bad_modern_options_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        Bert18Config(num_hidden_layers=2, **{field: value})


def test_option_interactions_raise():
    with pytest.raises(ValueError, match="hidden_act"):
        Bert18Config(feed_forward_type="swiglu", hidden_act="gelu")
    with pytest.raises(ValueError, match="local_attention_window"):
        Bert18Config(num_hidden_layers=2, layer_types=["full_attention", "sliding_attention"])
    with pytest.raises(ValueError, match="even"):
        Bert18Config(hidden_size=30, num_attention_heads=2, position_embedding_type="rotary")


def test_defaults_are_bert():
    """Every new field's default keeps BERT: biases, LayerNorms after the residual, no final norm."""
    model = bert18.Bert18Model(Bert18Config.from_preset("tiny"))
    names = {name for name, _ in model.named_parameters()}
    assert "encoder.attention.0.query.bias" in names and "encoder.feed_forward.0.layer_norm.bias" in names
    assert "embeddings.position_embeddings.weight" in names and "embeddings.token_type_embeddings.weight" in names
    assert not any("final_layer_norm" in n for n in names)
    assert count_parameters("bert-base").total == 109_482_240


def test_plm_query_rows_are_rotated_by_their_target_positions(tokenizer):
    """With rotary positions the query stream knows its target's position only through the rotation:
    eager equals SDPA, and moving the query positions changes the predictions."""
    from bert18.collators import PermutationLMCollator

    config = Bert18Config.from_preset(
        "tiny",
        **{
            **SMALL,
            "vocab_size": len(tokenizer),
            "pad_token_id": 0,
            "position_embedding_type": "rotary",
            "norm_position": "pre",
            "pretraining_tasks": ["plm"],
        },
    )
    torch.manual_seed(0)
    model = randomize(bert18.Bert18ForPreTraining(config))
    texts = ["The quick brown fox jumps over the lazy dog.", "Rotary positions rotate queries and keys."]
    batch = PermutationLMCollator(tokenizer)(
        [{"input_ids": tokenizer(t)["input_ids"], "example_index": i} for i, t in enumerate(texts)]
    )
    logits = {}
    for attention in ("eager", "sdpa"):
        model.config._attn_implementation = attention
        with torch.no_grad():
            logits[attention] = model(**batch).task_logits["plm"]
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=1e-5, rtol=1e-5)
    streams = model._plm_streams(
        batch["input_ids"],
        None,
        batch["attention_mask"],
        None,
        None,
        None,
        batch["plm_content_mask"],
        batch["plm_query_mask"],
        batch["plm_target_positions"],
    )
    with torch.no_grad():
        same = model.bert18(batch["input_ids"], attention_mask=batch["attention_mask"], **streams)
        moved = model.bert18(
            batch["input_ids"],
            attention_mask=batch["attention_mask"],
            **{**streams, "query_position_ids": streams["query_position_ids"] + 3},
        )
    torch.testing.assert_close(model.lm_head(same.query_last_hidden_state), logits["sdpa"], atol=1e-5, rtol=1e-5)
    assert (moved.query_last_hidden_state - same.query_last_hidden_state).abs().max() > 1e-2


RECIPE = Path(bert18.__file__).parent / "recipes" / "modernbert-base.yaml"


def test_modernbert_recipe_says_what_it_reproduces():
    """30% masking, no NSP, packed documents, warmup-stable-decay with a 1-sqrt decay."""
    recipe = parse_recipe(RECIPE, use_cpu=True)
    assert recipe.model.preset == "modernbert-base" and recipe.model.pretraining_tasks == ["mlm"]
    assert recipe.masking.mlm_probability == 0.3 and recipe.data.packing == "packed_documents"
    assert recipe.training.lr_scheduler_kwargs["decay_type"] == "1-sqrt"
    assert recipe.training.per_device_train_batch_size * recipe.training.gradient_accumulation_steps * 8 == 4608


@pytest.mark.slow
def test_modernbert_recipe_trains_a_tiny_version(tmp_path, minilm_path):
    """A tiny version of the recipe trains through the stock Trainer on numbered (packed) masks (~25 s)."""
    from bert18.training.pretrain import build_pretraining

    path = RECIPE
    small = dict(
        config_overrides={
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 48,
            "num_hidden_layers": 3,
            "max_position_embeddings": 64,
            "pad_token_id": 0,
            "local_attention_window": 16,
        },
        corpus="builtin",
        corpus_config_name=None,
        max_length=64,
        max_documents=24,
        tokenizer_vocab_size=1500,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        per_device_eval_batch_size=16,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        bf16=False,
        max_steps=4,
        warmup_steps=1,
        validation_fraction=0.1,
        lr_scheduler_kwargs={"num_decay_steps": 2, "decay_type": "1-sqrt"},
    )
    recipe = parse_recipe(path, output_dir=str(tmp_path / "run"), tokenizer_name_or_path=minilm_path, **small)
    run = build_pretraining(recipe)
    assert run.trainer.model.config.position_embedding_type == "rotary"
    assert any(batch["attention_mask"].max() > 1 for batch in run.trainer.get_train_dataloader())
    run.trainer.train()
    assert run.trainer.evaluate()["eval_loss"] > 0


@pytest.mark.parametrize("combination", ["albert_modern", "alibi_albert"])
def test_long_sequences_attend_in_blocks_like_the_dense_computation(monkeypatch, combination):
    """Past QUERY_BLOCK the SDPA fallback attends in blocks of queries (local layers see only their
    window's keys): the same results as the eager padded computation, padded rows included."""
    import bert18.attention_bert18 as attention_module
    import bert18.modeling_bert18 as modeling_module

    monkeypatch.setattr(attention_module, "QUERY_BLOCK", 16)
    monkeypatch.setattr(modeling_module, "QUERY_BLOCK", 16)
    preset, fields = COMBINATIONS[combination]
    config = Bert18Config.from_preset(preset, **{**SMALL, **fields})
    ids, mask = padded_batch(length=60)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = randomize(bert18.Bert18Model(copy.deepcopy(config), add_pooling_layer=False))
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            outputs[implementation] = [
                model(ids, attention_mask=mask).last_hidden_state,
                model(ids[:1]).last_hidden_state,
            ]  # no padding: unpadded all the same
    assert max_diff_at_real(outputs["sdpa"][0], outputs["eager"][0], mask) <= 1e-5
    torch.testing.assert_close(outputs["sdpa"][1], outputs["eager"][1], atol=1e-5, rtol=1e-5)


def test_8192_positions_with_rotary_local_layers():
    """The ModernBERT presets read 8,192 tokens; a tiny model of that shape runs one such row, and its
    local layers attend in blocks (no [8192, 8192] scores): each token's state depends on nearby tokens only
    in a model whose layers are all local."""
    config = Bert18Config.from_preset(
        "modernbert-base",
        **{
            **SMALL,
            "num_hidden_layers": 1,
            "max_position_embeddings": 8192,
            "layer_types": ["sliding_attention"],
            "local_attention_window": 128,
        },
    )
    assert Bert18Config.from_preset("modernbert-base").max_position_embeddings == 8192
    model = randomize(bert18.Bert18Model(config, add_pooling_layer=False))
    model.set_attn_implementation("sdpa")
    ids = torch.randint(3, VOCAB, (1, 8192))
    changed = ids.clone()
    changed[0, 4000] = (ids[0, 4000] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(ids).last_hidden_state[0], model(changed).last_hidden_state[0]
    moved = (a - b).abs().amax(-1) > 0
    assert moved[4000 - 64 : 4000 + 65].all() and not moved[: 4000 - 64].any() and not moved[4000 + 65 :].any()
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(torch.randint(3, VOCAB, (1, 8193)))


def test_long_text_tools_use_the_models_limit(tokenizer):
    """The long-text collator sized for a ModernBERT-shaped model chunks at 8,192 tokens, not 512."""
    from bert18.long_text import LongDocumentCollator, model_max_length

    config = Bert18Config.from_preset("modernbert-base")
    assert model_max_length(config) == 8192 and model_max_length(Bert18Config.from_preset("bert-base")) == 512
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 300)  # ~2,700 tokens
    long = LongDocumentCollator.for_model(tokenizer, config)([{"text": text, "label": 1}])
    short = LongDocumentCollator(tokenizer)([{"text": text, "label": 1}])
    assert long["input_ids"].shape[0] == 1 and short["input_ids"].shape[0] > 5
    assert long["input_ids"].shape[1] > 2000
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model_max_length(object())


def test_alibi_against_its_definition():
    """ALiBi's slopes are the paper's (2^-1 .. 2^-8 for 8 heads; the interleaved set for 6), and a one-layer
    model's attention equals softmax(QK^T / sqrt(d) - slope_h |i - j|) V computed by hand."""
    from bert18.attention_bert18 import alibi_slopes

    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    expected6 = [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]  # 4 of the power of two, every other of 8
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected6))
    config = Bert18Config.from_preset(
        "tiny", **{**SMALL, "num_hidden_layers": 1, "position_embedding_type": "alibi", "type_vocab_size": 0}
    )
    model = randomize(bert18.Bert18Model(config, add_pooling_layer=False))
    model.set_attn_implementation("eager")
    ids = torch.randint(3, VOCAB, (1, 9))
    captured = {}
    attention = model.encoder.attention[0]
    attention.output.register_forward_hook(lambda module, args, out: captured.setdefault("context", args[0]))
    with torch.no_grad():
        model(ids)
        x = model.embeddings(ids)
        heads, dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
        q, k, v = (
            proj(x).view(1, 9, heads, dim).transpose(1, 2) for proj in (attention.query, attention.key, attention.value)
        )
        index = torch.arange(9)
        bias = -alibi_slopes(heads)[:, None, None] * (index[:, None] - index[None, :]).abs()
        expected = torch.softmax(q @ k.transpose(-1, -2) / dim**0.5 + bias, -1) @ v
    torch.testing.assert_close(captured["context"], expected.transpose(1, 2).reshape(1, 9, -1), atol=1e-5, rtol=1e-5)


def test_a_hub_style_modernbert_config_converts():
    """answerdotai/ModernBERT-base's config.json spells the pattern and the bases the old way
    (global_attn_every_n_layers, global_rope_theta, local_rope_theta): read through ModernBertConfig."""
    hub = dict(
        architectures=["ModernBertForMaskedLM"],
        model_type="modernbert",
        vocab_size=50368,
        hidden_size=768,
        intermediate_size=1152,
        num_hidden_layers=22,
        num_attention_heads=12,
        hidden_activation="gelu",
        global_attn_every_n_layers=3,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        local_attention=128,
        max_position_embeddings=8192,
        norm_bias=False,
        norm_eps=1e-5,
        attention_bias=False,
        mlp_bias=False,
        classifier_pooling="mean",
        pad_token_id=50283,
        transformers_version="4.47.0.dev0",
    )
    config = bert18.convert.config_from_transformers(hub)
    preset = Bert18Config.from_preset("modernbert-base")
    assert config.layer_types == preset.layer_types and config.classifier_pooling == "mean"
    assert (config.rope_theta, config.local_rope_theta, config.local_attention_window) == (160000.0, 10000.0, 128)
    assert count_parameters(config).total == 149_014_272


@pytest.mark.parametrize("tasks", [["mlm", "nsp"], ERNIE_TASKS])
def test_pretraining_objectives_on_a_modern_encoder(tasks):
    """BERT's and ERNIE's objectives on a factorized, shared, rotary, local/global, RMSNorm/SwiGLU encoder:
    eager and the unpadded SDPA path give the same task logits and losses, and every parameter trains."""
    preset, fields = COMBINATIONS["albert_modern"]
    config = Bert18Config.from_preset(preset, **{**SMALL, **fields, "pretraining_tasks": tasks})
    ids, mask = padded_batch(length=20)
    generator = torch.Generator().manual_seed(0)
    labels = {"labels": ids.masked_fill((torch.rand(ids.shape, generator=generator) > 0.3) | (mask == 0), -100)}
    for task in tasks[1:]:
        record = bert18.configuration_bert18.PRETRAINING_TASKS[task]
        argument, classes, level = record.label, record.classes(config), record.level
        shape = (ids.shape[0],) if level == "sequence" else ids.shape
        target = torch.randint(0, classes, shape, generator=generator)
        labels[argument] = target if level == "sequence" else target.masked_fill(mask == 0, -100)
    outputs = {}
    for implementation in ("eager", "sdpa"):
        model = randomize(bert18.Bert18ForPreTraining(copy.deepcopy(config)))
        model.set_attn_implementation(implementation)
        outputs[implementation] = model(ids, attention_mask=mask, **labels)
    for task in tasks:
        torch.testing.assert_close(
            outputs["sdpa"].task_losses[task], outputs["eager"].task_losses[task], atol=1e-5, rtol=1e-5
        )
    outputs["sdpa"].loss.backward()
    untrained = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not untrained, untrained

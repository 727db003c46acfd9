"""The bert18 model family against references: eager attention, torch.nn.functional losses,
closed-form parameter counts, transformers' own classes, Auto classes, remote code and pipelines.

Models are tiny (hidden 32, 4 heads, vocab 1000) with dropout off, so every comparison is exact or
within float32 rounding; the MiniLM checkpoint (tests/conftest.py) is the one real model.
"""

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers
from helpers import TINY, tiny_config
from torch.nn import functional as F
from transformers import (
    AlbertConfig,
    AlbertModel,
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    BertConfig,
    BertModel,
    ErnieConfig,
    ErnieModel,
    RobertaConfig,
    RobertaModel,
    pipeline,
)

import bert18
from bert18 import (
    PRESETS,
    Bert18Config,
    Bert18ForMaskedLM,
    Bert18ForMultipleChoice,
    Bert18ForPreTraining,
    Bert18ForQuestionAnswering,
    Bert18ForSequenceClassification,
    Bert18ForTokenClassification,
    Bert18Model,
)
from bert18.modeling_bert18 import Bert18Attention, Bert18FeedForward

VOCAB = TINY["vocab_size"]
HIDDEN, HEADS, INTERMEDIATE = TINY["hidden_size"], TINY["num_attention_heads"], TINY["intermediate_size"]


def make_batch(batch: int = 3, length: int = 9, padded: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random ids (never the pad id 0) with segment ids; when ``padded``, rows 1 and 2 are right-padded."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        for row, real in zip(range(1, batch), (length - 3, 4)):
            attention_mask[row, real:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    token_type_ids = (torch.arange(length) >= length // 2).long().expand(batch, length) * attention_mask
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- 1. eager == sdpa, and SDPA must not turn causal -----------------------------------------


@pytest.fixture
def eager_and_sdpa(tmp_path):
    torch.manual_seed(0)
    Bert18Model(tiny_config()).save_pretrained(tmp_path)
    eager = Bert18Model.from_pretrained(tmp_path, attn_implementation="eager").eval()
    sdpa = Bert18Model.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    return eager, sdpa


@pytest.mark.parametrize("pass_mask", [False, True], ids=["no_mask", "all_ones_mask"])
def test_sdpa_matches_eager_without_padding(eager_and_sdpa, pass_mask):
    """Reference: the eager softmax(QK^T)V. With no padding transformers drops the mask, and SDPA then
    goes causal unless the module says ``is_causal=False``: the first token would stop seeing the last."""
    eager, sdpa = eager_and_sdpa
    batch = make_batch(padded=False)
    if not pass_mask:
        del batch["attention_mask"]
    with torch.no_grad():
        expected = eager(**batch).last_hidden_state
        actual = sdpa(**batch).last_hidden_state
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)

        # Bidirectional: the first token's output depends on the last token's input.
        changed = {**batch, "input_ids": batch["input_ids"].clone()}
        changed["input_ids"][:, -1] = 5 + (changed["input_ids"][:, -1] - 4) % (VOCAB - 5)  # another non-special id
        assert (sdpa(**changed).last_hidden_state[:, 0] - actual[:, 0]).abs().max() > 1e-4

        # The comparison above catches the trap: a causal SDPA is far from eager.
        for block in sdpa.encoder.attention:
            block.is_causal = True
        assert (sdpa(**batch).last_hidden_state - expected).abs().max() > 1e-3


def test_sdpa_matches_eager_with_padding(eager_and_sdpa):
    """Reference: eager attention at real tokens, and each row encoded alone without padding."""
    eager, sdpa = eager_and_sdpa
    batch = make_batch(padded=True)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = eager(**batch).last_hidden_state
        actual = sdpa(**batch).last_hidden_state
        torch.testing.assert_close(actual[real], expected[real], atol=1e-5, rtol=1e-5)
        for row in range(len(real)):
            n = int(real[row].sum())
            alone = {k: v[row : row + 1, :n] for k, v in batch.items()}
            torch.testing.assert_close(sdpa(**alone).last_hidden_state[0], actual[row, :n], atol=1e-5, rtol=1e-5)


# --- 2. layer sharing x position embeddings x factorized embeddings ---------------------------


def block_sizes(h: int, i: int) -> tuple[int, int]:
    """Parameters of one attention block (fused QKV, output, LayerNorm) and one feed-forward block."""
    attention = (h * 3 * h + 3 * h) + (h * h + h) + 2 * h
    ffn = (h * i + i) + (i * h + h) + 2 * h
    return attention, ffn


def sinusoidal_reference(positions: int, dim: int) -> torch.Tensor:
    """PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d)), in float64."""
    table = torch.empty(positions, dim, dtype=torch.float64)
    for j in range(dim):
        angle = torch.arange(positions, dtype=torch.float64) / 10000 ** (2 * (j // 2) / dim)
        table[:, j] = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
    return table


@pytest.mark.parametrize("embedding_size", [None, 16], ids=["E=H", "E=16"])
@pytest.mark.parametrize("position_embedding_type", ["learned", "sinusoidal"])
@pytest.mark.parametrize("layer_sharing", ["none", "all", "attention", "ffn"])
def test_sharing_positions_train_step_and_round_trip(tmp_path, layer_sharing, position_embedding_type, embedding_size):
    """Block counts and parameter totals against closed-form counts; one SGD step moves every
    parameter; save/load is bit-exact (state_dict and outputs); sinusoids against the formula."""
    layers = 3
    options = dict(num_hidden_layers=layers, embedding_size=embedding_size, pretraining_tasks=["mlm", "sop"])
    config = tiny_config(layer_sharing=layer_sharing, position_embedding_type=position_embedding_type, **options)
    torch.manual_seed(0)
    model = Bert18ForPreTraining(config)

    attention_blocks = 1 if layer_sharing in ("all", "attention") else layers
    ffn_blocks = 1 if layer_sharing in ("all", "ffn") else layers
    assert sum(isinstance(m, Bert18Attention) for m in model.modules()) == attention_blocks
    assert sum(isinstance(m, Bert18FeedForward) for m in model.modules()) == ffn_blocks
    unshared = Bert18ForPreTraining(tiny_config(position_embedding_type=position_embedding_type, **options))
    attention_size, ffn_size = block_sizes(HIDDEN, INTERMEDIATE)
    saved = (layers - attention_blocks) * attention_size + (layers - ffn_blocks) * ffn_size
    assert n_params(model) == n_params(unshared) - saved
    if layer_sharing != "none":
        assert n_params(model) < n_params(unshared)

    embeddings = model.bert18.embeddings
    if position_embedding_type == "sinusoidal":
        assert not hasattr(embeddings, "position_embeddings")
        reference = sinusoidal_reference(64, config.effective_embedding_size).float()
        torch.testing.assert_close(embeddings.sinusoidal_table, reference, atol=1e-5, rtol=0)
    assert (embeddings.projection is None) == (embedding_size is None)

    batch = make_batch()
    labels = batch["input_ids"].masked_fill(torch.rand(batch["input_ids"].shape) > 0.3, -100)
    labels[:, 1] = batch["input_ids"][:, 1]  # at least one target per row
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model(**batch, labels=labels, sentence_order_label=torch.tensor([0, 1, 1])).loss
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert not unchanged

    model.eval()
    with torch.no_grad():
        expected = model(**batch)
    model.save_pretrained(tmp_path)
    loaded = Bert18ForPreTraining.from_pretrained(tmp_path).eval()
    assert loaded.config.layer_sharing == layer_sharing
    assert loaded.config.position_embedding_type == position_embedding_type
    assert loaded.config.embedding_size == embedding_size
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    for name, tensor in state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    with torch.no_grad():
        actual = loaded(**batch)
    assert torch.equal(actual.prediction_logits, expected.prediction_logits)
    assert torch.equal(actual.task_logits["sop"], expected.task_logits["sop"])
    if position_embedding_type == "sinusoidal":  # not saved (a fixed buffer): rebuilt on load
        assert torch.equal(loaded.bert18.embeddings.sinusoidal_table, embeddings.sinusoidal_table)


# --- 3. tied MLM decoder -----------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [Bert18ForMaskedLM, Bert18ForPreTraining])
@pytest.mark.parametrize("embedding_size", [None, 16], ids=["E=H", "E=16"])
def test_mlm_decoder_tied_to_word_embeddings(tmp_path, model_class, embedding_size):
    """The decoder weight is the word-embedding tensor itself, before and after a save/load."""
    model = model_class(tiny_config(embedding_size=embedding_size))
    assert model.lm_head.decoder.weight is model.bert18.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = model_class.from_pretrained(tmp_path)
    assert loaded.lm_head.decoder.weight is loaded.bert18.embeddings.word_embeddings.weight
    assert torch.equal(loaded.lm_head.decoder.weight, model.bert18.embeddings.word_embeddings.weight)


def test_mlm_decoder_untied_when_configured(tmp_path):
    """With ``tie_word_embeddings=False`` decoder and embeddings are separate tensors, both saved."""
    model = Bert18ForMaskedLM(tiny_config(tie_word_embeddings=False))
    decoder, embeddings = model.lm_head.decoder.weight, model.bert18.embeddings.word_embeddings.weight
    assert decoder is not embeddings and decoder.data_ptr() != embeddings.data_ptr()
    assert not torch.equal(decoder, embeddings)
    model.save_pretrained(tmp_path)
    loaded = Bert18ForMaskedLM.from_pretrained(tmp_path)
    assert loaded.lm_head.decoder.weight is not loaded.bert18.embeddings.word_embeddings.weight
    assert torch.equal(loaded.lm_head.decoder.weight, decoder)
    assert torch.equal(loaded.bert18.embeddings.word_embeddings.weight, embeddings)


# --- 4. output formats ------------------------------------------------------------------------


def test_return_dict_false_gives_tuples():
    """``return_dict=False`` returns the ModelOutput's values, in order, as a plain tuple."""
    torch.manual_seed(0)
    batch = make_batch()
    model = Bert18Model(tiny_config()).eval()
    mlm = Bert18ForMaskedLM(tiny_config()).eval()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        as_dict = model(**batch)
        as_tuple = model(**batch, return_dict=False)
        mlm_dict = mlm(**batch, labels=labels)
        mlm_tuple = mlm(**batch, labels=labels, return_dict=False)
    assert type(as_tuple) is tuple and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], as_dict.last_hidden_state)
    assert torch.equal(as_tuple[1], as_dict.pooler_output)
    assert type(mlm_tuple) is tuple and len(mlm_tuple) == 2
    assert torch.equal(mlm_tuple[0], mlm_dict.loss) and torch.equal(mlm_tuple[1], mlm_dict.logits)


def test_hidden_states_and_eager_attention_weights():
    """L+1 hidden states (embeddings first); attention weights equal softmax(QK^T/sqrt(d) + mask)
    recomputed from each layer's input, rows summing to 1, zero on padded keys."""
    torch.manual_seed(0)
    config = tiny_config()
    model = Bert18Model(config).eval()
    model.set_attn_implementation("eager")
    batch = make_batch()
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        embedded = model.embeddings(batch["input_ids"], batch["token_type_ids"])
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert torch.equal(out.hidden_states[0], embedded)
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert len(out.attentions) == config.num_hidden_layers

    b, length = batch["input_ids"].shape
    head_dim = HIDDEN // HEADS
    padded_keys = batch["attention_mask"][:, None, None, :] == 0
    for layer, weights in enumerate(out.attentions):
        assert weights.shape == (b, HEADS, length, length)
        torch.testing.assert_close(weights.sum(-1), torch.ones(b, HEADS, length), atol=1e-5, rtol=0)
        assert weights.masked_select(padded_keys).abs().max() < 1e-6
        block = model.encoder.attention[layer]
        with torch.no_grad():
            q, k = block.query(out.hidden_states[layer]), block.key(out.hidden_states[layer])
        q, k = (t.view(b, length, HEADS, head_dim).transpose(1, 2) for t in (q, k))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(head_dim)).masked_fill(padded_keys, float("-inf"))
        torch.testing.assert_close(weights, scores.softmax(-1), atol=1e-6, rtol=1e-5)


def test_output_attentions_with_sdpa_warns_like_bert():
    """Fused kernels never build the weights: as transformers' BertModel, a warning and no weights
    (tests/test_transformers_seams.py compares with BertModel itself)."""
    model = Bert18Model(tiny_config()).eval()
    model.set_attn_implementation("sdpa")
    assert model(**make_batch(), output_attentions=True).attentions == ()


# --- 5. gradient checkpointing ------------------------------------------------------------------


def loss_and_grads(model: Bert18ForPreTraining, batch: dict, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    loss = model(**batch, labels=labels, sentence_order_label=torch.tensor([1, 0, 1])).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("layer_sharing", ["none", "all"])
def test_gradient_checkpointing_same_loss_and_grads(layer_sharing):
    """Reference: the same model, same batch, without checkpointing (dropout 0, training mode)."""
    torch.manual_seed(0)
    config = tiny_config(layer_sharing=layer_sharing, pretraining_tasks=["mlm", "sop"])
    model = Bert18ForPreTraining(config).train()
    batch = make_batch()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    expected_loss, expected_grads = loss_and_grads(model, batch, labels)

    # transformers 5.x renamed gradient checkpointing to activation checkpointing (old names deprecated)
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable()
        assert model.is_activation_checkpointing
    else:
        model.gradient_checkpointing_enable()
        assert model.is_gradient_checkpointing
    calls = []
    for module in model.modules():
        if isinstance(module, (Bert18Attention, Bert18FeedForward)):
            assert module.gradient_checkpointing
            inner = module._gradient_checkpointing_func
            module._gradient_checkpointing_func = lambda *a, _inner=inner, **k: calls.append(1) or _inner(*a, **k)
    loss, grads = loss_and_grads(model, batch, labels)

    assert len(calls) == 2 * config.num_hidden_layers  # every attention and feed-forward application
    torch.testing.assert_close(loss, expected_loss, atol=1e-6, rtol=1e-6)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


# --- 6. heads: logits shapes, losses against torch.nn.functional -----------------------------


@pytest.mark.parametrize(
    ("num_labels", "labels", "problem_type"),
    [
        (3, torch.tensor([0, 2, 1]), "single_label_classification"),
        (1, torch.tensor([0.5, -1.0, 2.0]), "regression"),
        (3, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), "multi_label_classification"),
    ],
)
def test_sequence_classification_loss(num_labels, labels, problem_type):
    """Cross-entropy / MSE / BCE-with-logits of the returned logits, problem type inferred as transformers does."""
    torch.manual_seed(0)
    model = Bert18ForSequenceClassification(tiny_config(num_labels=num_labels)).eval()
    out = model(**make_batch(), labels=labels)
    assert out.logits.shape == (3, num_labels)
    assert model.config.problem_type == problem_type
    if problem_type == "single_label_classification":
        expected = F.cross_entropy(out.logits, labels)
    elif problem_type == "regression":
        expected = F.mse_loss(out.logits[:, 0], labels)
    else:
        expected = F.binary_cross_entropy_with_logits(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)


def test_token_classification_loss_ignores_minus_100():
    """Mean cross-entropy over labelled tokens only (padding and -100 positions excluded)."""
    torch.manual_seed(0)
    model = Bert18ForTokenClassification(tiny_config(num_labels=5)).eval()
    batch = make_batch()
    labels = torch.randint(0, 5, batch["input_ids"].shape, generator=torch.Generator().manual_seed(1))
    labels = labels.masked_fill(batch["attention_mask"] == 0, -100)
    labels[0, 0] = -100
    out = model(**batch, labels=labels)
    assert out.logits.shape == (3, 9, 5)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_question_answering_loss_ignores_positions_past_the_end():
    """Mean of start and end cross-entropies, each over the examples whose position lies inside
    the sequence (an answer cut off by truncation is ignored, as in BertForQuestionAnswering)."""
    torch.manual_seed(0)
    model = Bert18ForQuestionAnswering(tiny_config()).eval()
    starts, ends = torch.tensor([1, 50, 3]), torch.tensor([2, 4, 9])  # length 9: 50 and 9 lie outside
    out = model(**make_batch(), start_positions=starts, end_positions=ends)
    assert out.start_logits.shape == out.end_logits.shape == (3, 9)
    start_loss = F.cross_entropy(out.start_logits[[0, 2]], starts[[0, 2]])
    end_loss = F.cross_entropy(out.end_logits[[0, 1]], ends[[0, 1]])
    torch.testing.assert_close(out.loss, (start_loss + end_loss) / 2)


def test_multiple_choice_scores_each_choice_and_loss():
    """[B, C, L] inputs: logit c equals the classifier on choice c encoded on its own; cross-entropy over C."""
    torch.manual_seed(0)
    model = Bert18ForMultipleChoice(tiny_config()).eval()
    flat = make_batch(batch=6)
    batch = {k: v.view(2, 3, -1) for k, v in flat.items()}
    labels = torch.tensor([2, 0])
    out = model(**batch, labels=labels)
    assert out.logits.shape == (2, 3)
    with torch.no_grad():
        for c in range(3):
            choice = {k: v[:, c] for k, v in batch.items()}
            alone = model.classifier(model.bert18(**choice).pooler_output)[:, 0]
            torch.testing.assert_close(out.logits[:, c], alone, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits, labels))


def test_pretraining_task_losses_and_weighted_sum():
    """Each task's loss is F.cross_entropy of its logits (-100 ignored); the total is the sum
    weighted by ``task_loss_weights`` (1.0 for tasks not listed)."""
    tasks = ["mlm", "sop", "sentence_distance", "capitalization", "token_document_relation"]
    weights = {"mlm": 1.0, "sop": 0.5, "sentence_distance": 2.0, "capitalization": 0.25}
    torch.manual_seed(0)
    model = Bert18ForPreTraining(
        tiny_config(pretraining_tasks=tasks, task_loss_weights=weights, sparse_prediction=True)
    ).eval()
    batch = make_batch()
    real = batch["attention_mask"].bool()
    generator = torch.Generator().manual_seed(2)
    mlm = batch["input_ids"].masked_fill(torch.rand(real.shape, generator=generator) > 0.3, -100)
    mlm[:, 0] = batch["input_ids"][:, 0]
    labels = {
        "labels": mlm,
        "sentence_order_label": torch.tensor([0, 1, 1]),
        "sentence_distance_label": torch.tensor([2, 0, 1]),
        "capitalization_labels": torch.randint(0, 2, real.shape, generator=generator).masked_fill(~real, -100),
        "token_document_labels": torch.randint(0, 2, real.shape, generator=generator).masked_fill(~real, -100),
    }
    out = model(**batch, **labels)

    b, length = real.shape
    masked = mlm != -100  # the sparse head scores the labelled positions only, in this order
    assert out.prediction_logits.shape == (int(masked.sum()), VOCAB)
    expected_shapes = {
        "sop": (b, 2),
        "sentence_distance": (b, 3),
        "capitalization": (b, length, 2),
        "token_document_relation": (b, length, 2),
    }
    assert {task: tuple(t.shape) for task, t in out.task_logits.items()} == expected_shapes
    logits = {"mlm": out.prediction_logits, **out.task_logits}
    targets = dict(zip(tasks, labels.values()))
    expected = {}
    for task in tasks:
        keep = targets[task] != -100
        scores = logits[task] if task == "mlm" else logits[task][keep]
        expected[task] = F.cross_entropy(scores, targets[task][keep])
        torch.testing.assert_close(out.task_losses[task], expected[task], msg=task)
    total = sum(weights.get(task, 1.0) * expected[task] for task in tasks)
    torch.testing.assert_close(out.loss, total)

    with pytest.raises(ValueError, match="next_sentence_label"):
        model(**batch, next_sentence_label=torch.tensor([0, 1, 0]))


# --- 7. configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Bert18Config.from_preset("bert-huge"), "preset"),
        (lambda: tiny_config(pretraining_tasks=["mlm", "jigsaw"]), "pretraining task"),
        (lambda: tiny_config(hidden_size=30), "num_attention_heads"),
        (lambda: tiny_config(embedding_size=HIDDEN + 1), "embedding_size"),
        (lambda: tiny_config(layer_sharing="every_other"), "layer_sharing"),
        (lambda: tiny_config(position_embedding_type="absolute"), "position_embedding_type"),
        (lambda: tiny_config(task_loss_weights={"nsp": 1.0}, pretraining_tasks=["mlm"]), "task_loss_weights"),
    ],
    ids=["preset", "task", "heads", "embedding_size", "layer_sharing", "position_type", "task_weight"],
)
def test_config_errors_name_the_field(build, field):
    """Inconsistent configurations raise a ValueError whose message names the offending field."""
    with pytest.raises(ValueError, match=field):
        build()


def test_config_error_when_field_changed_after_construction():
    """``check`` runs again when a model is built, catching a field edited after construction."""
    config = tiny_config()
    config.layer_sharing = "sometimes"
    with pytest.raises(ValueError, match="layer_sharing"):
        Bert18Model(config)


# The released configurations, written out independently of bert18's PRESETS (transformers' defaults
# are bert-base-uncased, roberta-base and albert-xxlarge-v2).
def _albert(hidden: int, heads: int, layers: int = 24) -> AlbertConfig:
    return AlbertConfig(
        hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden, num_hidden_layers=layers
    )


REFERENCE_CONFIGS = {
    "bert-base": (BertModel, BertConfig()),
    "bert-large": (
        BertModel,
        BertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    ),
    "roberta-base": (RobertaModel, RobertaConfig(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5)),
    "albert-base": (AlbertModel, _albert(768, 12, layers=12)),
    "albert-large": (AlbertModel, _albert(1024, 16)),
    "albert-xlarge": (AlbertModel, _albert(2048, 16)),
    "albert-xxlarge": (AlbertModel, AlbertConfig()),
    # ERNIE 2.0 en: BERT-base with 4 segment types and 3 task types
    "ernie-base": (ErnieModel, ErnieConfig(type_vocab_size=4, use_task_id=True, task_type_vocab_size=3)),
}
COMPARED_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid_and_matches_the_released_model(name):
    """Each preset is a valid config; the published ones have the released hyper-parameters, and their
    Bert18Model exactly the parameter count of transformers' BertModel / RobertaModel / AlbertModel
    (all built on the meta device, so no memory is used)."""
    config = Bert18Config.from_preset(name)
    config.check()
    with torch.device("meta"):
        model = Bert18Model(config)
    assert n_params(model) > 0
    if name == "tiny" or name.startswith("modernbert"):  # ModernBERT: against ModernBertModel in test_modern.py
        return
    reference_class, reference = REFERENCE_CONFIGS[name]
    assert {f: getattr(config, f) for f in COMPARED_FIELDS} == {f: getattr(reference, f) for f in COMPARED_FIELDS}
    is_albert = reference_class is AlbertModel
    assert config.embedding_size == (reference.embedding_size if is_albert else None)
    assert config.layer_sharing == ("all" if is_albert else "none")
    with torch.device("meta"):
        reference_model = reference_class(reference)
    # RoBERTa's table has pad_token_id + 1 = 2 offset rows that bert18 drops (pad_aware_positions).
    dropped = 2 * reference.hidden_size if reference_class is RobertaModel else 0
    assert config.pad_aware_positions == (reference_class is RobertaModel)
    assert n_params(model) == n_params(reference_model) - dropped


# --- 8. Auto classes --------------------------------------------------------------------------


AUTO_TO_BERT18 = [
    (AutoModel, Bert18Model),
    (AutoModelForPreTraining, Bert18ForPreTraining),
    (AutoModelForMaskedLM, Bert18ForMaskedLM),
    (AutoModelForSequenceClassification, Bert18ForSequenceClassification),
    (AutoModelForTokenClassification, Bert18ForTokenClassification),
    (AutoModelForQuestionAnswering, Bert18ForQuestionAnswering),
    (AutoModelForMultipleChoice, Bert18ForMultipleChoice),
]


def test_auto_classes_load_bert18(tmp_path):
    """After ``import bert18`` every Auto class resolves a bert18 folder to the bert18 class, and the
    encoder weights of the saved pretraining checkpoint reach each head."""
    assert type(AutoConfig.for_model("bert18", hidden_size=HIDDEN, num_attention_heads=HEADS)) is Bert18Config
    torch.manual_seed(0)
    source = Bert18ForPreTraining(tiny_config())
    source.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is Bert18Config
    encoder_state = source.bert18.state_dict()
    for auto_class, expected in AUTO_TO_BERT18:
        model = auto_class.from_pretrained(tmp_path)
        assert type(model) is expected, auto_class.__name__
        assert type(auto_class.from_config(source.config)) is expected
        base = model if isinstance(model, Bert18Model) else model.bert18
        for name, tensor in base.state_dict().items():
            if not name.startswith("pooler.") or base.pooler is not None:
                assert torch.equal(tensor, encoder_state[name]), (auto_class.__name__, name)


# --- 9. trust_remote_code where bert18 is not installed ---------------------------------------


CHILD = textwrap.dedent(
    """
    import importlib.util, os, sys

    # bert18 is installed editable (a .pth adds its src folder): drop every path that holds it.
    sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or os.getcwd(), "bert18"))]
    assert importlib.util.find_spec("bert18") is None, "bert18 is still importable"

    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    checkpoint, reference = sys.argv[1], torch.load(sys.argv[2])
    mlm = AutoModelForMaskedLM.from_pretrained(checkpoint, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(checkpoint, trust_remote_code=True).eval()
    assert type(mlm).__name__ == "Bert18ForMaskedLM", type(mlm)
    assert type(base).__name__ == "Bert18Model", type(base)
    assert "bert18" not in sys.modules and type(mlm).__module__.startswith("transformers_modules")
    with torch.no_grad():
        logits = mlm(**reference["batch"]).logits
        hidden = base(**reference["batch"]).last_hidden_state
    assert torch.equal(logits, reference["logits"]), (logits - reference["logits"]).abs().max()
    assert torch.equal(hidden, reference["hidden"]), (hidden - reference["hidden"]).abs().max()
    print("remote code OK")
    """
)


def test_trust_remote_code_without_bert18_installed(tmp_path):
    """Reference: the installed classes' outputs; a fresh interpreter that cannot import bert18 loads the
    checkpoint through the shipped .py files and reproduces logits and hidden states exactly."""
    checkpoint = tmp_path / "checkpoint"
    torch.manual_seed(0)
    model = Bert18ForMaskedLM(tiny_config()).eval()
    model.save_pretrained(checkpoint)
    assert {"configuration_bert18.py", "modeling_bert18.py"} <= set(os.listdir(checkpoint))
    batch = make_batch()
    with torch.no_grad():
        reference = {
            "batch": batch,
            "logits": model(**batch).logits,
            "hidden": Bert18Model.from_pretrained(checkpoint).eval()(**batch).last_hidden_state,
        }
    torch.save(reference, tmp_path / "reference.pt")
    (tmp_path / "child.py").write_text(CHILD)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "child.py"), str(checkpoint), str(tmp_path / "reference.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "remote code OK" in result.stdout


# --- 10. pipelines on a converted real checkpoint ---------------------------------------------


@pytest.fixture(scope="module")
def minilm_bert18_folder(minilm_path, tmp_path_factory):
    """all-MiniLM-L6-v2 converted to a bert18 MLM checkpoint (its MLM head is freshly initialised)."""
    folder = tmp_path_factory.mktemp("minilm_bert18")
    torch.manual_seed(0)
    model = Bert18ForMaskedLM.from_pretrained(minilm_path)
    assert type(model) is Bert18ForMaskedLM and model.config.model_type == "bert18"
    model.save_pretrained(folder)
    return folder


def test_fill_mask_pipeline(minilm_bert18_folder, minilm_path):
    """Top-k structure of the fill-mask pipeline, and scores/tokens equal the softmax of the model's
    own logits at the [MASK] position."""
    fill = pipeline("fill-mask", model=str(minilm_bert18_folder), tokenizer=minilm_path, top_k=5)
    assert isinstance(fill.model, Bert18ForMaskedLM)
    text = "The capital of France is [MASK]."
    results = fill(text)
    assert len(results) == 5
    for result in results:
        assert set(result) == {"score", "token", "token_str", "sequence"}
        assert result["token_str"] in result["sequence"]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)

    encoded = fill.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = fill.model(**encoded).logits[0]
    position = int((encoded["input_ids"][0] == fill.tokenizer.mask_token_id).nonzero())
    top = logits[position].softmax(-1).topk(5)
    assert [r["token"] for r in results] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor(scores), top.values, atol=1e-6, rtol=1e-5)


def test_feature_extraction_pipeline_matches_transformers_bert(minilm_bert18_folder, minilm_path):
    """Features from the bert18 checkpoint equal transformers.BertModel on the original MiniLM weights."""
    extract = pipeline("feature-extraction", model=str(minilm_bert18_folder), tokenizer=minilm_path)
    assert isinstance(extract.model, Bert18Model)
    text = "Pretraining reads text in both directions, then transfers to downstream tasks."
    features = extract(text, return_tensors=True)
    reference = BertModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        expected = reference(**extract.tokenizer(text, return_tensors="pt")).last_hidden_state
    assert features.shape == expected.shape == (1, expected.shape[1], 384)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=0)


def test_package_registers_with_transformers():
    """Importing bert18 registers the model type in transformers' config mapping."""
    assert transformers.CONFIG_MAPPING["bert18"] is Bert18Config
    assert bert18.Bert18Config.model_type == "bert18"


def test_pretraining_without_mlm_round_trips(tmp_path):
    """A sentence-task-only model (no MLM head, nothing to tie) saves, reloads and scores identically."""
    model = Bert18ForPreTraining(tiny_config(pretraining_tasks=["sop"])).eval()
    model.save_pretrained(tmp_path)
    reloaded = Bert18ForPreTraining.from_pretrained(tmp_path).eval()
    batch = make_batch()
    label = torch.tensor([0, 1, 1])
    with torch.no_grad():
        expected, actual = model(**batch, sentence_order_label=label), reloaded(**batch, sentence_order_label=label)
    assert model.lm_head is None and expected.prediction_logits is None
    assert torch.equal(expected.task_logits["sop"], actual.task_logits["sop"])
    assert torch.equal(expected.loss, F.cross_entropy(expected.task_logits["sop"], label))

"""Feature extraction against transformers' BertModel on the real MiniLM checkpoint; freezing and
layer-wise learning-rate decay on tiny models, with and without cross-layer sharing."""

from functools import partial

import numpy as np
import pytest
import torch
import transformers
from helpers import BERT_DROPOUT, tiny_config

from bert18 import Bert18ForSequenceClassification, Bert18Model
from bert18.features import extract_features, freeze, freeze_encoder, layerwise_lr_decay_groups

TEXTS = [
    "A short one.",
    "Return the absolute value of the argument, which may be an integer or a floating point number.",
    "",
    "Pickle protocol versions: the higher the protocol, the more recent the Python needed to read it.",
    "Yes",
    "Create a new thread and return its identifier; the thread runs the function with the argument list.",
    "os.path.join(a, *p) joins paths intelligently.",
]


@pytest.fixture(scope="module")
def encoders(minilm_path):
    """The same real weights as transformers' BertModel and as a converted Bert18Model."""
    reference = transformers.BertModel.from_pretrained(minilm_path).eval()
    return reference, Bert18Model.from_pretrained(minilm_path).eval()


@pytest.fixture(scope="module")
def unpadded_states(encoders, tokenizer):
    """Every text alone (no padding at all) through transformers' BertModel: its hidden states."""
    reference, _ = encoders
    with torch.no_grad():
        return [
            reference(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states for text in TEXTS
        ]


def manual_features(states, layers, pooling):
    def pool(hidden):
        return {"cls": hidden[0, 0], "mean": hidden[0].mean(0), "max": hidden[0].max(0).values}[pooling]

    return np.stack([torch.cat([pool(s[layer]) for layer in layers]).numpy() for s in states])


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
@pytest.mark.parametrize("layers", [(-1,), (0, -2, -1)])
def test_features_equal_transformers_bert(encoders, tokenizer, unpadded_states, pooling, layers):
    """Batched (3 per batch, sorted by length, so most rows are padded), in input order, equal to each
    text encoded alone by transformers' BertModel: padding never enters a mean or a max."""
    expected = manual_features(unpadded_states, layers, pooling)
    for model in encoders:  # bert18 and transformers' own encoder alike
        features = extract_features(
            model, tokenizer, TEXTS, layers=layers, pooling=pooling, batch_size=3, progress=False
        )
        assert features.shape == (len(TEXTS), 384 * len(layers)) and features.dtype == np.float32
        np.testing.assert_allclose(features, expected, atol=1e-5, rtol=0)


def test_mean_features_match_sentence_transformers(encoders, tokenizer, minilm_path):
    """all-MiniLM-L6-v2 is a sentence-transformers model: mean pooling then L2 normalisation."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    published = sentence_transformers.SentenceTransformer(minilm_path, device="cpu").encode(TEXTS)
    features = extract_features(encoders[1], tokenizer, TEXTS, pooling="mean", progress=False)
    np.testing.assert_allclose(features / np.linalg.norm(features, axis=1, keepdims=True), published, atol=1e-5)


def test_extraction_details(encoders, tokenizer):
    _, model = encoders
    model.train()
    cut = extract_features(model, tokenizer, TEXTS[:2], max_length=4, progress=False)
    assert model.training, "the model's mode is restored"
    model.eval()
    with torch.no_grad():  # max_length=4 keeps [CLS] + 2 tokens + [SEP]
        expected = model(**tokenizer(TEXTS[1], truncation=True, max_length=4, return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(cut[1], expected[0, 0].numpy(), atol=1e-5)
    assert extract_features(model, tokenizer, [], layers=(-2, -1), progress=False).shape == (0, 768)
    with pytest.raises(ValueError, match="pooling must be one of"):
        extract_features(model, tokenizer, TEXTS, pooling="sum")
    with pytest.raises(TypeError, match="wrap a single text"):
        extract_features(model, tokenizer, "one text")


# --- freezing ---------------------------------------------------------------------------------


# Smaller still for freezing and LLRD: H=16, 4 layers, 16 positions, 3 labels, BERT's dropout kept.
tiny = partial(
    tiny_config,
    vocab_size=100,
    hidden_size=16,
    num_attention_heads=2,
    intermediate_size=32,
    num_hidden_layers=4,
    max_position_embeddings=16,
    num_labels=3,
    **BERT_DROPOUT,
)


def gradients_after_backward(model) -> dict[str, bool]:
    """Which parameters receive a gradient from one classification loss."""
    ids = torch.randint(1, 100, (2, 8))
    model(input_ids=ids, labels=torch.tensor([0, 2])).loss.backward()
    return {name: param.grad is not None for name, param in model.named_parameters()}


def test_freeze_embeddings_and_lower_layers():
    torch.manual_seed(0)
    model = Bert18ForSequenceClassification(tiny())
    frozen = freeze(model, embeddings=True, layers=2)
    assert frozen and all(not model.get_parameter(name).requires_grad for name in frozen)
    got_grad = gradients_after_backward(model)
    for name, has_grad in got_grad.items():
        lower = any(f".{kind}.{i}." in name for kind in ("attention", "feed_forward") for i in (0, 1))
        expect_frozen = name.startswith("bert18.embeddings.") or lower
        assert has_grad is not expect_frozen, name
    assert got_grad["classifier.weight"] and got_grad["bert18.pooler.dense.weight"]
    assert got_grad["bert18.encoder.attention.3.query.weight"]


def test_freeze_with_cross_layer_sharing():
    """A shared block serves every layer: it cannot be frozen for some and trained for others."""
    for sharing in ("all", "attention", "ffn"):
        model = Bert18ForSequenceClassification(tiny(layer_sharing=sharing))
        with pytest.raises(ValueError, match="is shared by layers"):
            freeze(model, layers=2)
    model = Bert18ForSequenceClassification(tiny(layer_sharing="ffn"))
    freeze(model, embeddings=False, layers=4)  # everything or nothing is fine
    got_grad = gradients_after_backward(model)
    assert not got_grad["bert18.encoder.feed_forward.0.intermediate.weight"]
    assert got_grad["bert18.embeddings.word_embeddings.weight"] and got_grad["classifier.weight"]
    with pytest.raises(ValueError, match=r"layers must lie in 0\.\.4"):
        freeze(model, layers=5)


def test_freeze_transformers_bert():
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    model = transformers.BertForSequenceClassification(config)
    freeze(model, layers=1)
    got_grad = gradients_after_backward(model)
    assert not got_grad["bert.embeddings.word_embeddings.weight"]
    assert not got_grad["bert.encoder.layer.0.attention.self.query.weight"]
    assert got_grad["bert.encoder.layer.1.attention.self.query.weight"] and got_grad["classifier.weight"]


def test_freeze_encoder_trains_only_the_head():
    model = Bert18ForSequenceClassification(tiny())
    freeze_encoder(model)
    got_grad = gradients_after_backward(model)
    assert {name for name, has_grad in got_grad.items() if has_grad} == {"classifier.weight", "classifier.bias"}
    with pytest.raises(ValueError, match="no task head"):
        freeze_encoder(Bert18Model(tiny()))


# --- layer-wise learning-rate decay -----------------------------------------------------------


def group_rates(groups) -> dict[str, float]:
    return {group["name"]: group["lr"] for group in groups}


def test_layerwise_lr_decay_rates_and_weight_decay():
    model = Bert18ForSequenceClassification(tiny(num_hidden_layers=3))
    groups = layerwise_lr_decay_groups(model, lr=1.0, decay=0.5, weight_decay=0.01)
    rates = group_rates(groups)
    expected = {"head": 1.0, "layer.2": 1.0, "layer.1": 0.5, "layer.0": 0.25, "embeddings": 0.125}
    for name, lr in expected.items():
        assert rates[name] == pytest.approx(lr) and rates[f"{name}/no_decay"] == pytest.approx(lr), name
    assert [g["name"] for g in groups][::2] == list(expected)  # top to bottom
    names = {id(p): n for n, p in model.named_parameters()}
    for group in groups:
        for param in group["params"]:
            assert (param.ndim == 1) == (group["weight_decay"] == 0.0), names[id(param)]
        depth = group["name"].split("/")[0]
        for param in group["params"]:
            name = names[id(param)]
            if depth == "head":
                assert name.startswith(("classifier.", "bert18.pooler.")), name
            elif depth == "embeddings":
                assert name.startswith("bert18.embeddings."), name
            else:
                assert f".{depth.split('.')[1]}." in name, name
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(names) and len(grouped) == len(set(grouped))
    optimizer = torch.optim.AdamW(groups)
    model(input_ids=torch.randint(1, 100, (2, 8)), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()


def test_layerwise_lr_decay_shared_blocks_and_frozen_parameters():
    model = Bert18ForSequenceClassification(tiny(layer_sharing="attention", num_hidden_layers=3))
    rates = group_rates(layerwise_lr_decay_groups(model, lr=1.0, decay=0.5))
    assert rates["layers.0-2"] == pytest.approx((1 + 0.5 + 0.25) / 3)  # the shared attention block: the mean
    assert rates["layer.0"] == pytest.approx(0.25)  # its own feed-forward block
    freeze(model, embeddings=True)
    groups = layerwise_lr_decay_groups(model, lr=1.0, decay=0.5)
    assert not any(g["name"].startswith("embeddings") for g in groups)
    with pytest.raises(ValueError, match="decay must lie"):
        layerwise_lr_decay_groups(model, lr=1.0, decay=0.0)

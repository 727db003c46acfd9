"""Parameter accounting against the seed's Q13 arithmetic and transformers' own models."""

import pytest
import torch
import transformers
from helpers import BERT_DROPOUT, tiny_config

import bert18
from bert18 import Bert18Config, count_parameters
from bert18.cli import main


def test_bert_base_reproduces_seed_q13():
    """The seed's numbers for BERT-base, each computed from the model's real modules."""
    report = count_parameters("bert-base")
    assert report.embedding_tables == (30522 + 512 + 2) * 768 == 23_835_648
    assert report.attention_weights_per_layer == 768 * 64 * 3 * 12 + 768 * 768 == 2_359_296
    assert report.feed_forward_weights_per_layer == 768 * 3072 * 2 == 4_718_592
    assert report.weight_matrices == 23_835_648 + 12 * (2_359_296 + 4_718_592) == 108_770_304
    assert report["attention Q"] == report["attention K"] == report["attention V"] == 12 * 768 * 768


def test_bert_base_total_matches_transformers_bert_model():
    """Biases, LayerNorms and the pooler included, the total is BertModel's 109,482,240."""
    with torch.device("meta"):
        reference = transformers.BertModel(transformers.BertConfig()).num_parameters()
    assert count_parameters("bert-base").total == reference == 109_482_240


@pytest.mark.parametrize("preset", ["albert-base", "albert-large", "albert-xlarge", "albert-xxlarge"])
def test_albert_presets_match_transformers_albert_model(preset):
    """Factorized embeddings and one shared layer: the count equals AlbertModel's for the same shape."""
    config = Bert18Config.from_preset(preset)
    albert = transformers.AlbertConfig(
        vocab_size=config.vocab_size,
        embedding_size=config.embedding_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size,
    )
    with torch.device("meta"):
        reference = transformers.AlbertModel(albert).num_parameters()
    report = count_parameters(preset)
    assert report.total == reference
    assert report.attention_blocks == report.feed_forward_blocks == 1
    assert report["factorized projection E->H"] == 128 * config.hidden_size


def test_albert_base_savings_come_from_factorization_and_sharing():
    """ALBERT-base vs BERT-base (same H, L): V x E + E x H instead of V x H, one layer instead of 12."""
    bert, albert = count_parameters("bert-base"), count_parameters("albert-base")
    assert albert["token embeddings"] == 30000 * 128
    assert albert.attention_weights_per_layer == bert.attention_weights_per_layer
    assert albert.total < bert.total / 9  # 11.7M vs 109.5M


@pytest.mark.parametrize(
    "sharing,attention_blocks,ffn_blocks",
    [
        ("none", 4, 4),
        ("all", 1, 1),
        ("attention", 1, 4),
        ("ffn", 4, 1),
    ],
)
def test_shared_blocks_are_counted_once(sharing, attention_blocks, ffn_blocks):
    """Each sharing mode stores and counts exactly the distinct blocks; the total is torch's own count."""
    config = tiny_config(
        vocab_size=100, num_hidden_layers=4, max_position_embeddings=512, layer_sharing=sharing, **BERT_DROPOUT
    )
    model = bert18.Bert18Model(config)
    report = count_parameters(model)
    assert (report.attention_blocks, report.feed_forward_blocks) == (attention_blocks, ffn_blocks)
    assert report.total == sum(p.numel() for p in model.parameters())
    assert report.attention_weights_per_layer == 4 * 32 * 32
    assert report.feed_forward_weights_per_layer == 2 * 32 * 64


def test_heads_and_tied_decoder():
    """Task heads are listed by name; the tied MLM decoder weight is not counted twice."""
    config = tiny_config(
        vocab_size=100, max_position_embeddings=512, **BERT_DROPOUT, pretraining_tasks=["mlm", "sop", "capitalization"]
    )
    model = bert18.Bert18ForPreTraining(config)
    report = count_parameters(model)
    assert report.total == sum(p.numel() for p in model.parameters())
    # transform dense 32x32 + bias, LayerNorm 2x32, decoder bias 100 (decoder weight tied)
    assert report["head: lm_head"] == 32 * 32 + 32 + 2 * 32 + 100
    assert report["head: sop"] == report["head: capitalization"] == 32 * 2 + 2
    assert "tied" in str(report)


def test_table_lists_every_component_and_the_total():
    table = str(count_parameters("bert-base"))
    for row in ("token embeddings", "attention Q", "feed-forward H->I", "LayerNorms", "biases", "pooler"):
        assert row in table
    assert "109,482,240" in table and "108,770,304" in table


def test_cli_params(capsys):
    assert main(["params", "--preset", "bert-base"]) == 0
    assert "109,482,240" in capsys.readouterr().out
    assert main(["params", "--preset", "all"]) == 0
    out = capsys.readouterr().out
    assert "albert-xxlarge" in out and "222,595,584" in out


def test_cli_params_unknown_preset_is_a_clear_error(capsys):
    assert main(["params", "--preset", "bert-huge"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'bert-huge'" in err and "bert-base" in err


def test_count_parameters_rejects_other_models():
    with pytest.raises(TypeError, match="Bert18Config"):
        count_parameters(torch.nn.Linear(2, 2))


def test_cli_params_of_a_plain_bert_checkpoint(minilm_path, capsys):
    """A BERT folder is counted as its bert18 equivalent: MiniLM-L6-H384 has 22,713,216 parameters."""
    assert main(["params", "--config", minilm_path]) == 0
    with torch.device("meta"):
        reference = transformers.BertModel(transformers.BertConfig.from_pretrained(minilm_path)).num_parameters()
    assert f"{reference:,}" in capsys.readouterr().out

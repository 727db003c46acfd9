"""ERNIE checkpoints (transformers' model_type "ernie": BERT plus ERNIE 2.0's task-type embeddings)
load with exact parity, and task ids work on every attention path."""

import pytest
import torch
from transformers import ErnieConfig, ErnieForMaskedLM, ErnieForPreTraining, ErnieForSequenceClassification, ErnieModel

import bert18
from bert18 import Bert18Config, Bert18ForPreTraining, Bert18ForSequenceClassification, Bert18Model, count_parameters
from bert18.convert import from_transformers

TINY = dict(
    vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, type_vocab_size=4
)


def perturbed(model):
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def batch():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 120, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    segments = torch.randint(0, 4, ids.shape, generator=generator)
    tasks = torch.randint(0, 3, ids.shape, generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": segments, "task_type_ids": tasks}


def worst(a, b, mask):
    return (a[mask.bool()] - b[mask.bool()]).abs().max().item()


@pytest.mark.parametrize("use_task_id", [True, False], ids=["ernie-2.0-task-ids", "ernie-1.0"])
@pytest.mark.parametrize("source_class", [ErnieModel, ErnieForMaskedLM, ErnieForPreTraining])
def test_ernie_checkpoints_convert_exactly(tmp_path, source_class, use_task_id):
    torch.manual_seed(0)
    source = perturbed(source_class(ErnieConfig(**TINY, use_task_id=use_task_id, task_type_vocab_size=3)))
    source.save_pretrained(tmp_path)
    inputs = batch()
    if not use_task_id:
        inputs.pop("task_type_ids")
    converted = from_transformers(tmp_path).eval()
    assert converted.config.use_task_id is use_task_id
    for attention in ("eager", "sdpa"):
        converted.set_attn_implementation(attention)
        with torch.no_grad():
            expected, got = source(**inputs), converted(**inputs)
        if source_class is ErnieModel:
            assert worst(got.last_hidden_state, expected.last_hidden_state, inputs["attention_mask"]) <= 1e-5
            assert (got.pooler_output - expected.pooler_output).abs().max() <= 1e-5
        elif source_class is ErnieForMaskedLM:
            assert worst(got.logits, expected.logits, inputs["attention_mask"]) <= 1e-5
        else:
            assert worst(got.prediction_logits, expected.prediction_logits, inputs["attention_mask"]) <= 1e-5
            assert (got.task_logits["nsp"] - expected.seq_relationship_logits).abs().max() <= 1e-5


def test_ernie_classifier_converts_with_its_head(tmp_path):
    torch.manual_seed(0)
    source = perturbed(ErnieForSequenceClassification(ErnieConfig(**TINY, use_task_id=True, num_labels=3)))
    source.save_pretrained(tmp_path)
    model = Bert18ForSequenceClassification.from_pretrained(tmp_path).eval()
    inputs = batch()
    with torch.no_grad():
        assert (model(**inputs).logits - source(**inputs).logits).abs().max() <= 1e-5


def test_task_ids_change_the_output_and_default_to_zero():
    torch.manual_seed(0)
    config = Bert18Config(**TINY, use_task_id=True, pretraining_tasks=["mlm", "nsp"])
    model = Bert18Model(config).eval()
    inputs = batch()
    with torch.no_grad():
        zeros = model(**{**inputs, "task_type_ids": torch.zeros_like(inputs["task_type_ids"])}).last_hidden_state
        implicit = model(**{k: v for k, v in inputs.items() if k != "task_type_ids"}).last_hidden_state
        other = model(**inputs).last_hidden_state
    assert torch.equal(zeros, implicit)
    assert worst(zeros, other, inputs["attention_mask"]) > 1e-3


def test_ernie_base_preset_counts_like_the_released_ernie():
    with torch.device("meta"):
        reference = ErnieModel(ErnieConfig(type_vocab_size=4, use_task_id=True, task_type_vocab_size=3))
    config = Bert18Config.from_preset("ernie-base")
    report = count_parameters(config)
    assert report.total == reference.num_parameters()
    assert report.components["task-type embeddings"] == 3 * 768
    assert "task-type embeddings" not in count_parameters(Bert18Config.from_preset("bert-base")).components


def test_task_ids_on_the_pretraining_model_and_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = Bert18ForPreTraining(Bert18Config(**TINY, use_task_id=True, pretraining_tasks=["mlm", "nsp"]))
    model.save_pretrained(tmp_path)
    loaded = bert18.Bert18ForPreTraining.from_pretrained(tmp_path).eval()
    inputs = batch()
    with torch.no_grad():
        assert torch.equal(model.eval()(**inputs).prediction_logits, loaded(**inputs).prediction_logits)

"""Checkpoint conversion: exact numerical parity with transformers' own classes, and clean failures.

Every parity test runs the original transformers model and the converted bert18 model on the same
padded batch (eval mode, fp32) and compares outputs at real tokens. Small random models get every
parameter perturbed first: transformers initialises LayerNorms to 1/0 and biases to 0, which would
hide a weight landing in the wrong place.
"""

import json
import os

import pytest
import torch
import transformers
from transformers import (
    AlbertConfig,
    AlbertForPreTraining,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    GPT2Config,
    GPT2Model,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

import bert18
from bert18.convert import ConversionError, config_from_transformers, convert_checkpoint, from_transformers

TOL = 1e-5
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "BERT reads every sentence in both directions.",
    "Short one.",
    "Converting a checkpoint must not change a single number the model computes, even on padding.",
]
TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)


def max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Largest absolute difference, over the positions where ``mask`` is true when given."""
    if mask is not None:
        a, b = a[mask.bool()], b[mask.bool()]
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def perturbed(model: transformers.PreTrainedModel, seed: int = 0) -> transformers.PreTrainedModel:
    """``model`` in eval mode with small random noise added to every parameter (biases, LayerNorms)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def random_batch(
    vocab_size: int, lengths: list[int], pad_token_id: int, left_padded: bool = False, segments: bool = False
) -> dict[str, torch.Tensor]:
    """Random non-pad token ids, padded (right or left) to the longest length, with attention mask."""
    generator = torch.Generator().manual_seed(1)
    width = max(lengths)
    input_ids = torch.full((len(lengths), width), pad_token_id)
    attention_mask = torch.zeros((len(lengths), width), dtype=torch.long)
    token_type_ids = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, length in enumerate(lengths):
        ids = torch.randint(pad_token_id + 2, vocab_size, (length,), generator=generator)
        span = slice(width - length, width) if left_padded else slice(0, length)
        input_ids[row, span] = ids
        attention_mask[row, span] = 1
        if segments:  # second half of each sequence is segment B
            token_type_ids[row, span.start + length // 2 : span.stop] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if segments:
        batch["token_type_ids"] = token_type_ids
    return batch


def assert_nothing_written(parent, destination, expected_entries: set[str]) -> None:
    """``destination`` was not created and ``parent`` holds no staging folder or other leftover."""
    assert not destination.exists()
    assert set(os.listdir(parent)) == expected_entries


# --- The real checkpoint: sentence-transformers/all-MiniLM-L6-v2 ---------------------------------


@pytest.fixture(scope="module")
def minilm_reference(minilm_path):
    """The MiniLM tokenizer's padded batch and transformers' BertModel outputs on it."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert len(set(batch["attention_mask"].sum(1).tolist())) == len(SENTENCES)  # all lengths differ
    model = BertModel.from_pretrained(minilm_path).eval()
    with torch.no_grad():
        outputs = model(**batch)
    return model, batch, outputs


def assert_minilm_parity(model: torch.nn.Module, minilm_reference, label: str) -> None:
    _, batch, reference = minilm_reference
    assert isinstance(model, bert18.Bert18Model)
    with torch.no_grad():
        outputs = model.eval()(**batch)
    hidden = max_diff(outputs.last_hidden_state, reference.last_hidden_state, batch["attention_mask"])
    pooled = max_diff(outputs.pooler_output, reference.pooler_output)
    print(f"\nMiniLM {label}: max |diff| last_hidden_state {hidden:.3g}, pooler_output {pooled:.3g}")
    assert hidden <= TOL
    assert pooled <= TOL


def test_minilm_from_pretrained_matches_bert(minilm_path, minilm_reference):
    """Bert18Model.from_pretrained on the original MiniLM folder equals transformers' BertModel."""
    model = bert18.Bert18Model.from_pretrained(minilm_path)
    assert model.config.model_type == "bert18"
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (6, 384, 30522)
    assert_minilm_parity(model, minilm_reference, "from_pretrained")


def test_minilm_from_transformers_object_matches_bert(minilm_reference):
    """from_transformers(BertModel object) equals that BertModel."""
    model = from_transformers(minilm_reference[0])
    assert_minilm_parity(model, minilm_reference, "from_transformers")


def test_minilm_convert_checkpoint_folder(minilm_path, minilm_reference, tmp_path):
    """convert_checkpoint writes a bert18 folder (with tokenizer) that loads to BertModel's numbers."""
    destination = convert_checkpoint(minilm_path, tmp_path / "out")
    assert destination == tmp_path / "out"
    assert os.listdir(tmp_path) == ["out"]  # no staging folder left beside it
    assert json.loads((destination / "config.json").read_text())["model_type"] == "bert18"

    assert_minilm_parity(bert18.Bert18Model.from_pretrained(destination), minilm_reference, "converted folder")
    assert_minilm_parity(AutoModel.from_pretrained(destination), minilm_reference, "converted folder, AutoModel")

    tokenizer = AutoTokenizer.from_pretrained(destination)
    original = AutoTokenizer.from_pretrained(minilm_path)
    assert tokenizer(SENTENCES)["input_ids"] == original(SENTENCES)["input_ids"]
    assert tokenizer.vocab_size == 30522


# --- BERT with its pretraining heads ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_pretraining_folder(tmp_path_factory):
    """A small random BertForPreTraining with perturbed weights, saved with save_pretrained."""
    torch.manual_seed(0)
    model = perturbed(BertForPreTraining(BertConfig(**TINY)))
    folder = tmp_path_factory.mktemp("bert_pretraining")
    model.save_pretrained(folder)
    return folder


def test_bert_pretraining_heads_match(bert_pretraining_folder):
    """Bert18ForPreTraining of a BertForPreTraining folder: MLM and NSP logits and the loss equal it."""
    reference_model = BertForPreTraining.from_pretrained(bert_pretraining_folder).eval()
    model = bert18.Bert18ForPreTraining.from_pretrained(bert_pretraining_folder).eval()
    assert model.config.pretraining_tasks == ["mlm", "nsp"]
    batch = random_batch(100, [12, 7, 3], pad_token_id=0, segments=True)
    labels = torch.where(
        torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(2)) < 0.3, batch["input_ids"], -100
    )
    labels[~batch["attention_mask"].bool()] = -100
    labels[:, 1] = batch["input_ids"][:, 1]  # every row has at least one target
    nsp = torch.tensor([0, 1, 1])
    with torch.no_grad():
        reference = reference_model(**batch, labels=labels, next_sentence_label=nsp)
        outputs = model(**batch, labels=labels, next_sentence_label=nsp)
    mlm = max_diff(outputs.prediction_logits, reference.prediction_logits, batch["attention_mask"])  # every token
    nsp_diff = max_diff(outputs.task_logits["nsp"], reference.seq_relationship_logits)
    loss = abs(outputs.loss.item() - reference.loss.item())
    print(f"\nBERT pretraining: max |diff| MLM logits {mlm:.3g}, NSP logits {nsp_diff:.3g}, loss {loss:.3g}")
    assert mlm <= TOL
    assert nsp_diff <= TOL
    assert loss <= TOL


def test_bert_masked_lm_matches(tmp_path):
    """Bert18ForMaskedLM of a BertForMaskedLM folder: MLM logits and loss equal transformers'."""
    torch.manual_seed(0)
    perturbed(BertForMaskedLM(BertConfig(**TINY)), seed=3).save_pretrained(tmp_path)
    reference_model = BertForMaskedLM.from_pretrained(tmp_path).eval()
    model = bert18.Bert18ForMaskedLM.from_pretrained(tmp_path).eval()
    batch = random_batch(100, [5, 11, 8], pad_token_id=0, segments=True)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2:4] = batch["input_ids"][:, 2:4]
    with torch.no_grad():
        reference = reference_model(**batch, labels=labels)
        outputs = model(**batch, labels=labels)
    logits = max_diff(outputs.logits, reference.logits, batch["attention_mask"])  # every token, as transformers
    loss = abs(outputs.loss.item() - reference.loss.item())
    print(f"\nBERT masked LM: max |diff| MLM logits {logits:.3g}, loss {loss:.3g}")
    assert logits <= TOL
    assert loss <= TOL


# --- RoBERTa, XLM-RoBERTa: positions offset by pad_token_id + 1 -----------------------------------


@pytest.fixture(scope="module")
def roberta_folder(tmp_path_factory):
    """A small random RobertaForMaskedLM (64 positions + the offset of 2), perturbed and saved."""
    torch.manual_seed(0)
    config = RobertaConfig(
        **TINY, pad_token_id=1, bos_token_id=0, eos_token_id=2, max_position_embeddings=64 + 2, type_vocab_size=1
    )
    folder = tmp_path_factory.mktemp("roberta")
    perturbed(RobertaForMaskedLM(config), seed=4).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("left_padded", [False, True], ids=["right-padded", "left-padded"])
def test_roberta_masked_lm_matches(roberta_folder, left_padded):
    """Bert18ForMaskedLM of a RobertaForMaskedLM folder: every layer's states and MLM logits equal it."""
    reference_model = RobertaForMaskedLM.from_pretrained(roberta_folder).eval()
    model = bert18.Bert18ForMaskedLM.from_pretrained(roberta_folder).eval()
    assert model.config.max_position_embeddings == 64
    assert model.config.pad_aware_positions
    batch = random_batch(100, [64, 9, 30], pad_token_id=1, left_padded=left_padded)
    with torch.no_grad():
        reference = reference_model(**batch, output_hidden_states=True)
        outputs = model(**batch, output_hidden_states=True)
    assert len(outputs.hidden_states) == len(reference.hidden_states) == 3
    hidden = max(
        max_diff(ours, theirs, batch["attention_mask"])
        for ours, theirs in zip(outputs.hidden_states, reference.hidden_states, strict=True)
    )
    logits = max_diff(outputs.logits, reference.logits, batch["attention_mask"])
    side = "left" if left_padded else "right"
    print(f"\nRoBERTa {side}-padded: max |diff| hidden states {hidden:.3g}, MLM logits {logits:.3g}")
    assert hidden <= TOL
    assert logits <= TOL


def test_roberta_head_with_other_activation_is_refused(tmp_path):
    """RobertaLMHead hard-codes gelu: an MLM checkpoint with hidden_act='relu' is refused, its encoder is not."""
    config = RobertaConfig(**TINY, hidden_act="relu", pad_token_id=1, max_position_embeddings=34, type_vocab_size=1)
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "mlm")
    with pytest.raises(ConversionError, match="hidden_act='relu'"):
        bert18.Bert18ForMaskedLM.from_pretrained(tmp_path / "mlm")

    torch.manual_seed(0)
    perturbed(RobertaModel(config), seed=8).save_pretrained(tmp_path / "encoder")
    reference_model = RobertaModel.from_pretrained(tmp_path / "encoder").eval()
    model = bert18.Bert18Model.from_pretrained(tmp_path / "encoder").eval()
    batch = random_batch(100, [9, 32], pad_token_id=1)
    with torch.no_grad():
        hidden = max_diff(
            model(**batch).last_hidden_state, reference_model(**batch).last_hidden_state, batch["attention_mask"]
        )
    print(f"\nRoBERTa encoder, relu: max |diff| last_hidden_state {hidden:.3g}")
    assert hidden <= TOL


def test_xlm_roberta_model_matches(tmp_path):
    """Bert18Model of an XLMRobertaModel folder: hidden states and pooler output equal it."""
    torch.manual_seed(0)
    config = XLMRobertaConfig(
        **TINY, pad_token_id=1, bos_token_id=0, eos_token_id=2, max_position_embeddings=40 + 2, type_vocab_size=1
    )
    perturbed(XLMRobertaModel(config), seed=5).save_pretrained(tmp_path)
    reference_model = XLMRobertaModel.from_pretrained(tmp_path).eval()
    model = bert18.Bert18Model.from_pretrained(tmp_path).eval()
    assert model.config.max_position_embeddings == 40
    batch = random_batch(100, [13, 40, 6], pad_token_id=1)  # right-padded: the pooler reads a real <s>
    with torch.no_grad():
        reference = reference_model(**batch)
        outputs = model(**batch)
    hidden = max_diff(outputs.last_hidden_state, reference.last_hidden_state, batch["attention_mask"])
    pooled = max_diff(outputs.pooler_output, reference.pooler_output)
    print(f"\nXLM-RoBERTa: max |diff| last_hidden_state {hidden:.3g}, pooler_output {pooled:.3g}")
    assert hidden <= TOL
    assert pooled <= TOL


# --- ALBERT: factorized embeddings, one shared layer ----------------------------------------------


def albert_config(**overrides) -> AlbertConfig:
    fields = dict(
        TINY, num_hidden_layers=3, embedding_size=16, num_hidden_groups=1, inner_group_num=1, hidden_act="gelu_new"
    )
    return AlbertConfig(**{**fields, **overrides})


def test_albert_pretraining_matches(tmp_path):
    """Bert18ForPreTraining of an AlbertForPreTraining folder: states, MLM and SOP logits, loss equal it."""
    torch.manual_seed(0)
    perturbed(AlbertForPreTraining(albert_config()), seed=6).save_pretrained(tmp_path)
    reference_model = AlbertForPreTraining.from_pretrained(tmp_path).eval()
    model = bert18.Bert18ForPreTraining.from_pretrained(tmp_path).eval()
    assert model.config.layer_sharing == "all"
    assert model.config.embedding_size == 16
    assert model.config.pretraining_tasks == ["mlm", "sop"]
    batch = random_batch(100, [10, 4, 7], pad_token_id=0, segments=True)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 1:3] = batch["input_ids"][:, 1:3]
    sop = torch.tensor([1, 0, 1])
    with torch.no_grad():
        reference = reference_model(**batch, labels=labels, sentence_order_label=sop, output_hidden_states=True)
        outputs = model(**batch, labels=labels, sentence_order_label=sop, output_hidden_states=True)
    # ALBERT's hidden_states[0] is the projected embedding output, as bert18's.
    hidden = max(
        max_diff(ours, theirs, batch["attention_mask"])
        for ours, theirs in zip(outputs.hidden_states, reference.hidden_states, strict=True)
    )
    mlm = max_diff(outputs.prediction_logits, reference.prediction_logits, batch["attention_mask"])  # every token
    sop_diff = max_diff(outputs.task_logits["sop"], reference.sop_logits)
    loss = abs(outputs.loss.item() - reference.loss.item())
    print(
        f"\nALBERT: max |diff| hidden states {hidden:.3g}, MLM logits {mlm:.3g}, SOP logits {sop_diff:.3g}, "
        f"loss {loss:.3g}"
    )
    assert hidden <= TOL
    assert mlm <= TOL
    assert sop_diff <= TOL
    assert loss <= TOL


def test_albert_with_several_layer_groups_is_refused(tmp_path):
    """ALBERT with num_hidden_groups=2 has no bert18 equivalent: ConversionError naming the field."""
    config = albert_config(num_hidden_layers=4, num_hidden_groups=2)
    with pytest.raises(ConversionError, match="num_hidden_groups"):
        config_from_transformers(config)
    assert issubclass(ConversionError, ValueError)

    source = tmp_path / "albert"
    AlbertForPreTraining(config).save_pretrained(source)
    with pytest.raises(ConversionError, match="num_hidden_groups"):
        convert_checkpoint(source, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", {"albert"})


# --- Bad input: a clear error and nothing written --------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "build"),
    [
        (
            "gpt2",
            lambda: GPT2Model(
                GPT2Config(
                    vocab_size=100, n_embd=32, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
                )
            ),
        ),
        (
            "distilbert",
            lambda: DistilBertModel(
                DistilBertConfig(
                    vocab_size=100, dim=32, n_layers=1, n_heads=2, hidden_dim=37, max_position_embeddings=16
                )
            ),
        ),
    ],
)
def test_unsupported_model_type_is_refused(tmp_path, model_type, build):
    """A checkpoint of a non-BERT-family model type: ConversionError naming the type, nothing written."""
    model = build()
    source = tmp_path / "source"
    model.save_pretrained(source)
    with pytest.raises(ConversionError, match=repr(model_type)):
        convert_checkpoint(source, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", {"source"})
    with pytest.raises(ConversionError, match=repr(model_type)):
        from_transformers(model)


def test_missing_weights_is_refused(tmp_path):
    """A folder with config.json but no weights file: ConversionError saying so, nothing written."""
    source = tmp_path / "source"
    BertConfig(**TINY).save_pretrained(source)
    assert os.listdir(source) == ["config.json"]
    with pytest.raises(ConversionError, match="no weights"):
        convert_checkpoint(source, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", {"source"})
    with pytest.raises(ConversionError, match="no weights"):
        bert18.Bert18Model.from_pretrained(source)


def test_truncated_weights_are_refused(tmp_path):
    """A model.safetensors cut in half: ConversionError naming the file, nothing written."""
    source = tmp_path / "source"
    BertModel(BertConfig(**TINY)).save_pretrained(source)
    weights = source / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated or corrupt") as error:
        convert_checkpoint(source, tmp_path / "out")
    assert "model.safetensors" in str(error.value)
    assert_nothing_written(tmp_path, tmp_path / "out", {"source"})


def test_relative_position_embeddings_are_refused(tmp_path):
    """BERT with position_embedding_type='relative_key': ConversionError naming it, nothing written."""
    source = tmp_path / "source"
    BertModel(BertConfig(**TINY)).save_pretrained(source)
    config_file = source / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    with pytest.raises(ConversionError, match="relative_key"):
        convert_checkpoint(source, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", {"source"})


def test_existing_destination_needs_overwrite(bert_pretraining_folder, tmp_path):
    """A non-empty destination: FileExistsError and untouched without overwrite, replaced with it."""
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_checkpoint(bert_pretraining_folder, destination)
    assert os.listdir(destination) == ["keep.txt"]
    assert os.listdir(tmp_path) == ["out"]

    convert_checkpoint(bert_pretraining_folder, destination, overwrite=True)
    assert "keep.txt" not in os.listdir(destination)
    assert os.listdir(tmp_path) == ["out"]
    assert isinstance(transformers.AutoModelForPreTraining.from_pretrained(destination), bert18.Bert18ForPreTraining)


def test_failure_while_writing_leaves_nothing(bert_pretraining_folder, tmp_path, monkeypatch):
    """An error after the staging folder exists (here: saving the tokenizer) removes the staging folder."""

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(bert18.convert, "_copy_tokenizer", fail)
    with pytest.raises(OSError, match="disk full"):
        convert_checkpoint(bert_pretraining_folder, tmp_path / "out")
    assert_nothing_written(tmp_path, tmp_path / "out", set())


def test_from_pretrained_refuses_other_model_types(tmp_path):
    """A GPT-2 folder handed to Bert18Model is an error naming the type, not a half-loaded model."""
    transformers.GPT2Model(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(
        tmp_path
    )
    with pytest.raises(ValueError, match="'gpt2' checkpoint"):
        bert18.Bert18Model.from_pretrained(tmp_path)


def test_truncated_bert18_checkpoint_names_the_folder(tmp_path):
    """A truncated bert18 model.safetensors: an OSError naming the checkpoint and the likely cause."""
    config = bert18.Bert18Config.from_preset("tiny", vocab_size=100)
    bert18.Bert18Model(config).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match="truncated or corrupt") as error:
        bert18.Bert18Model.from_pretrained(tmp_path)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize(
    "architecture,bert18_class",
    [
        ("BertForSequenceClassification", "Bert18ForSequenceClassification"),
        ("BertForTokenClassification", "Bert18ForTokenClassification"),
        ("BertForQuestionAnswering", "Bert18ForQuestionAnswering"),
    ],
)
def test_fine_tuned_heads_survive_conversion(tmp_path, architecture, bert18_class):
    """A fine-tuned BERT converts into the same task class with its head: equal logits after a round trip."""
    torch.manual_seed(0)
    labels = 2 if architecture.endswith("QuestionAnswering") else 3  # start and end scores
    source = perturbed(getattr(transformers, architecture)(BertConfig(**TINY, num_labels=labels)))
    source.save_pretrained(tmp_path / "source")
    convert_checkpoint(tmp_path / "source", tmp_path / "converted")
    model = getattr(bert18, bert18_class).from_pretrained(tmp_path / "converted").eval()
    assert type(from_transformers(source)).__name__ == bert18_class
    batch = random_batch(100, [9, 4], pad_token_id=0)
    with torch.no_grad():
        theirs, ours = source(**batch), model(**batch)
    for name in ("logits", "start_logits", "end_logits"):
        if name in theirs:  # per-token scores are compared at real tokens: padding's carry no meaning
            per_token = theirs[name].shape[:2] == batch["attention_mask"].shape
            assert max_diff(ours[name], theirs[name], batch["attention_mask"] if per_token else None) <= TOL


def test_pad_aware_positions_from_the_attention_mask_with_inputs_embeds():
    """RoBERTa-style positions: left padding does not shift them, given ids or only embeddings and a mask."""
    config = bert18.Bert18Config.from_preset(
        "roberta-base",
        **TINY,
        pad_token_id=1,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = bert18.Bert18Model(config).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    padded = torch.tensor([[1, 1, 5, 6, 7, 8]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        expected = model(input_ids=ids).last_hidden_state
        from_ids = model(input_ids=padded, attention_mask=mask).last_hidden_state[:, 2:]
        embeds = model.get_input_embeddings()(padded)
        from_embeds = model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, 2:]
    assert max_diff(from_ids, expected) <= TOL and max_diff(from_embeds, expected) <= TOL


# --- Fine-tuned RoBERTa classifiers keep their head; conversion copies ---------------------------


@pytest.mark.parametrize("config_class", [RobertaConfig, XLMRobertaConfig], ids=["roberta", "xlm-roberta"])
@pytest.mark.parametrize("problem_type,labels", [("single_label_classification", 3), ("regression", 1)])
def test_roberta_sequence_classifier_converts_with_its_head(tmp_path, caplog, config_class, problem_type, labels):
    """RoBERTa's classification head (dense + tanh over <s>, out_proj) becomes bert18's pooler and
    classifier: logits equal transformers' on a padded batch, from the object, the folder and a
    converted checkpoint, and no weight is left behind."""
    torch.manual_seed(0)
    config = config_class(
        **TINY,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        max_position_embeddings=64 + 2,
        type_vocab_size=1,
        num_labels=labels,
        problem_type=problem_type,
    )
    source = perturbed(transformers.AutoModelForSequenceClassification.from_config(config), seed=9)
    source.save_pretrained(tmp_path / "source")
    convert_checkpoint(tmp_path / "source", tmp_path / "converted")
    with caplog.at_level("WARNING"):
        models = {
            "object": from_transformers(source),
            "folder": bert18.Bert18ForSequenceClassification.from_pretrained(tmp_path / "source"),
            "converted": bert18.Bert18ForSequenceClassification.from_pretrained(tmp_path / "converted"),
        }
    assert "no bert18 counterpart" not in caplog.text and "newly initialized" not in caplog.text
    batch = random_batch(100, [40, 7, 19], pad_token_id=1)
    with torch.no_grad():
        expected = source(**batch).logits
        for how, model in models.items():
            assert type(model) is bert18.Bert18ForSequenceClassification, how
            logits = model.eval()(**batch).logits
            print(
                f"\n{config_class.model_type} {problem_type} classifier ({how}): max |diff| logits "
                f"{max_diff(logits, expected):.3g}"
            )
            assert max_diff(logits, expected) <= TOL
    # the head landed where it computes the same thing, not merely somewhere harmless
    head = source.classifier
    assert torch.equal(models["object"].bert18.pooler.dense.weight, head.dense.weight)
    assert torch.equal(models["object"].classifier.weight, head.out_proj.weight)


@pytest.mark.parametrize(
    "build",
    [
        lambda: BertForMaskedLM(BertConfig(**TINY)),
        lambda: transformers.RobertaForSequenceClassification(
            RobertaConfig(**TINY, pad_token_id=1, num_labels=2, max_position_embeddings=34)
        ),
        lambda: AlbertForPreTraining(AlbertConfig(**TINY, embedding_size=16)),
    ],
    ids=["bert-mlm", "roberta-classifier", "albert-pretraining"],
)
def test_from_transformers_copies_the_weights(build):
    """The converted model shares no memory with its source: training it leaves the source as it was
    (and the reverse); weights tied in the source stay tied in the copy."""
    torch.manual_seed(0)
    source = perturbed(build())
    before = {name: value.clone() for name, value in source.state_dict().items()}
    model = from_transformers(source)
    source_memory = {t.untyped_storage().data_ptr() for t in source.state_dict().values()}
    shared = [name for name, t in model.state_dict().items() if t.untyped_storage().data_ptr() in source_memory]
    assert shared == []
    if hasattr(model, "lm_head"):
        assert model.lm_head.decoder.weight.data_ptr() == model.bert18.embeddings.word_embeddings.weight.data_ptr()

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    batch = random_batch(100, [12, 5], pad_token_id=1)
    output = model(**batch)
    scores = [v for value in output.values() for v in (value.values() if isinstance(value, dict) else [value])]
    loss = sum(score.float().pow(2).mean() for score in scores if isinstance(score, torch.Tensor))
    loss.backward()
    optimizer.step()
    changed = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert len(changed) > 10
    for name, value in source.state_dict().items():
        assert torch.equal(value, before[name]), name
    after_training = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)
    for name, value in model.state_dict().items():
        assert torch.equal(value, after_training[name]), name


def test_an_unsaved_fine_tuned_object_keeps_its_head():
    """A task model built in memory has no ``architectures`` in its config: its class says which head."""
    torch.manual_seed(0)
    source = perturbed(transformers.BertForQuestionAnswering(BertConfig(**TINY)))
    assert not source.config.architectures
    model = from_transformers(source)
    assert type(model) is bert18.Bert18ForQuestionAnswering
    assert torch.equal(model.qa_outputs.weight, source.qa_outputs.weight)

"""The fast path must compute what the plain one does: the sparse MLM head against the dense one,
the unpadded encoder against the padded one (eager, SDPA, variable-length), packed rows against
each sequence encoded alone, and compiled models without a recompile per batch shape."""

import pytest
import torch
from helpers import TINY, tiny_config

import bert18.modeling_bert18 as modeling
from bert18 import Bert18Config, Bert18ForMaskedLM, Bert18ForPreTraining, Bert18Model
from bert18.attention_bert18 import sequence_positions, unpad
from bert18.collators import MLMCollator
from bert18.data.prepare import prepare_pretraining_dataset

VOCAB = TINY["vocab_size"]


def padded_batch(lengths: list[int], width: int, left: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (len(lengths), width), generator=generator)
    real = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    if left:
        real = real.flip(1)
    segments = (torch.arange(width) >= width // 2).long().expand_as(ids) * real
    return {"input_ids": ids.masked_fill(~real, 0), "attention_mask": real.long(), "token_type_ids": segments}


@pytest.fixture
def unpad_calls(monkeypatch):
    """How many forward passes took the unpadded path."""
    calls = []

    def counted(mask):
        calls.append(mask.shape)
        return unpad(mask)

    monkeypatch.setattr(modeling, "unpad", counted)
    return calls


def three_paths(config: Bert18Config, model_class=Bert18Model) -> dict[str, torch.nn.Module]:
    """The same weights under eager (padded), SDPA padded and SDPA unpadded attention."""
    torch.manual_seed(0)
    reference = model_class(config)
    models = {}
    for name, implementation, unpad_inputs in (
        ("eager", "eager", True),
        ("sdpa", "sdpa", False),
        ("varlen", "sdpa", True),
    ):
        model = model_class(tiny_config(**{**config.to_diff_dict(), "unpad_inputs": unpad_inputs}))
        model.load_state_dict(reference.state_dict())
        model.config._attn_implementation = implementation
        models[name] = model
    return models


# --- sparse MLM head ----------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", [Bert18ForPreTraining, Bert18ForMaskedLM])
@pytest.mark.parametrize("num_items", [None, 40])
def test_sparse_mlm_head_equals_the_dense_head(model_class, num_items):
    """Projecting only the masked positions: the same loss (1e-6) and the same gradients."""
    batch = padded_batch([20, 13, 7, 20], 20)
    generator = torch.Generator().manual_seed(1)
    labels = batch["input_ids"].masked_fill(torch.rand(batch["input_ids"].shape, generator=generator) > 0.15, -100)
    labels = labels.masked_fill(batch["attention_mask"] == 0, -100)
    extra = {"next_sentence_label": torch.tensor([0, 1, 1, 0])} if model_class is Bert18ForPreTraining else {}
    results = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        model = model_class(tiny_config(sparse_prediction=sparse))
        out = model(**batch, labels=labels, num_items_in_batch=num_items, **extra)
        out.loss.backward()
        logits = out.prediction_logits if model_class is Bert18ForPreTraining else out.logits
        results[sparse] = out.loss, logits, {n: p.grad.clone() for n, p in model.named_parameters()}
    (dense_loss, dense_logits, dense_grads), (loss, logits, grads) = results[False], results[True]
    assert abs(loss.item() - dense_loss.item()) <= 1e-6
    assert logits.shape == (int(labels.ne(-100).sum()), VOCAB)
    torch.testing.assert_close(logits, dense_logits[labels != -100], atol=1e-6, rtol=1e-6)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_without_labels_every_position_is_scored():
    model = Bert18ForMaskedLM(tiny_config()).eval()
    batch = padded_batch([9, 4], 9)
    assert model(**batch).logits.shape == (2, 9, VOCAB)


# --- unpadding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides,left",
    [
        ({}, False),
        ({"layer_sharing": "all", "embedding_size": 16}, False),
        ({"position_embedding_type": "sinusoidal", "layer_sharing": "attention"}, False),
        ({"pad_aware_positions": True, "pad_token_id": 1, "type_vocab_size": 1}, True),
    ],
    ids=["bert", "albert", "sinusoidal", "roberta-left-padded"],
)
def test_unpadded_encoder_equals_padded_eager_and_sdpa(unpad_calls, overrides, left):
    """At every real token, every layer's states, the pooled output and all gradients agree."""
    models = three_paths(tiny_config(**overrides))
    batch = padded_batch([23, 9, 1, 16], 23, left=left)
    if overrides.get("type_vocab_size") == 1:
        batch["token_type_ids"] = torch.zeros_like(batch["token_type_ids"])
    if overrides.get("pad_token_id") == 1:
        batch["input_ids"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 1)
    real = batch["attention_mask"].bool()
    results = {}
    for name, model in models.items():
        model.train()
        out = model(**batch, output_hidden_states=True)
        weights = torch.linspace(-1, 1, out.last_hidden_state.shape[-1])
        ((out.last_hidden_state[real] * weights).sum() + out.pooler_output[real[:, 0]].sum()).backward()
        results[name] = out, {n: p.grad for n, p in model.named_parameters()}
    assert len(unpad_calls) == 1  # only the varlen model unpadded
    expected, expected_grads = results["eager"]
    for name in ("sdpa", "varlen"):
        out, grads = results[name]
        for ours, theirs in zip(out.hidden_states, expected.hidden_states, strict=True):
            torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)
        first = real[:, 0]  # the pooler reads position 0 (padding in a left-padded row, in both paths)
        torch.testing.assert_close(out.pooler_output[first], expected.pooler_output[first], atol=1e-5, rtol=1e-5)
        for param, grad in expected_grads.items():
            torch.testing.assert_close(grads[param], grad, atol=1e-5, rtol=1e-4, msg=f"{name}: {param}")
    assert results["varlen"][0].last_hidden_state[~real].eq(0).all()  # padding comes back as zeros


def test_no_padding_runs_the_padded_path(unpad_calls):
    model = Bert18Model(tiny_config()).eval()
    model(**padded_batch([7, 7], 7))
    model(padded_batch([7, 7], 7)["input_ids"])
    assert unpad_calls == []


def test_unpadded_pretraining_loss_equals_padded():
    """The whole pretraining forward (sparse MLM, NSP, token task) through both paths."""
    config = tiny_config(pretraining_tasks=["mlm", "nsp", "capitalization"])
    models = three_paths(config, Bert18ForPreTraining)
    batch = padded_batch([30, 12, 5], 30)
    real = batch["attention_mask"].bool()
    labels = batch["input_ids"].masked_fill(torch.arange(30)[None, :] % 4 != 1, -100).masked_fill(~real, -100)
    capital = (batch["input_ids"] % 2).masked_fill(~real, -100)
    losses = {
        name: model(
            **batch, labels=labels, next_sentence_label=torch.tensor([0, 1, 0]), capitalization_labels=capital
        ).loss.item()
        for name, model in models.items()
    }
    assert abs(losses["varlen"] - losses["eager"]) < 1e-5 and abs(losses["sdpa"] - losses["eager"]) < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="variable-length FlashAttention needs CUDA")
def test_flash_varlen_on_cuda_equals_sdpa_padded():
    """On a GPU, bf16: the varlen kernel (flash_attn or PyTorch's) against padded SDPA."""
    models = three_paths(tiny_config(hidden_size=128, num_attention_heads=2, intermediate_size=256))
    batch = {k: v.cuda() for k, v in padded_batch([40, 17, 33], 40).items()}
    real = batch["attention_mask"].bool()
    outputs = {}
    for name in ("sdpa", "varlen"):
        model = models[name].cuda().eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            outputs[name] = model(**batch).last_hidden_state.float()
    torch.testing.assert_close(outputs["varlen"][real], outputs["sdpa"][real], atol=3e-2, rtol=3e-2)


# --- packed rows --------------------------------------------------------------------------------


def test_sequence_positions_restart_in_every_sequence():
    mask = torch.tensor([[1, 1, 1, 2, 2, 3, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1]])
    assert sequence_positions(mask).tolist() == [[0, 1, 2, 0, 1, 0, 0, 0], [0, 0, 0, 1, 2, 3, 4, 5]]
    batch = unpad(mask)
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 6, 12] and batch.max_seqlen == 6
    assert batch.positions.tolist() == [0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("path", ["eager", "sdpa", "varlen"])
def test_packed_sequences_equal_each_sequence_alone(path, unpad_calls):
    """Two documents in one row: each token's state equals that of its document encoded alone, and
    no gradient flows from one document into the other."""
    model = three_paths(tiny_config())[path].eval()
    doc_a, doc_b = padded_batch([6], 6, seed=1)["input_ids"][0], padded_batch([9], 9, seed=2)["input_ids"][0]
    packed_ids = torch.cat([doc_a, doc_b, torch.zeros(3, dtype=torch.long)])[None]
    packed_mask = torch.tensor([[1] * 6 + [2] * 9 + [0] * 3])
    alone = [
        model(doc[None], attention_mask=torch.ones(1, len(doc), dtype=torch.long)).last_hidden_state[0]
        for doc in (doc_a, doc_b)
    ]
    embeds = model.embeddings.word_embeddings(packed_ids).detach().requires_grad_()
    packed = model(inputs_embeds=embeds, attention_mask=packed_mask).last_hidden_state[0]
    torch.testing.assert_close(packed[:6], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[6:15], alone[1], atol=1e-5, rtol=1e-5)
    packed[:6].sum().backward()
    assert embeds.grad[0, 6:].abs().max() == 0 and embeds.grad[0, :6].abs().max() > 0
    assert len(unpad_calls) == (1 if path == "varlen" else 0)


def test_two_stream_attention_refuses_packed_rows():
    model = Bert18Model(tiny_config()).eval()
    ids = padded_batch([6], 6)["input_ids"]
    with pytest.raises(ValueError, match="one sequence per row"):
        model(
            ids, attention_mask=torch.tensor([[1, 1, 1, 2, 2, 2]]), content_mask=torch.ones(1, 6, 6, dtype=torch.bool)
        )


def test_unpad_refuses_bad_masks():
    with pytest.raises(ValueError, match="contiguous"):
        unpad(torch.tensor([[1, 1, 2, 2, 1, 0]]))
    with pytest.raises(ValueError, match="no real token"):
        unpad(torch.zeros(2, 4, dtype=torch.long))


def test_packed_documents_preparation(tokenizer, corpus):
    """packed_documents keeps the token stream of full_sentences, as [CLS] ... [SEP] sequences with
    their own numbers; the collator numbers the attention mask; sentence labels are refused."""
    documents = corpus.select(range(12))
    rows = {
        mode: prepare_pretraining_dataset(documents, tokenizer, ["mlm"], max_length=48, packing=mode)
        for mode in ("full_sentences", "packed_documents")
    }
    packed = rows["packed_documents"]
    several = 0
    for row in packed:
        ids, numbers = row["input_ids"], row["sequence_ids"]
        assert len(ids) == len(numbers) <= 48 and numbers[0] == 1
        starts = [i for i in range(len(ids)) if i == 0 or numbers[i] != numbers[i - 1]]
        assert [numbers[i] for i in starts] == list(range(1, len(starts) + 1))  # contiguous, in order
        for begin, end in zip(starts, [*starts[1:], len(ids)]):
            assert ids[begin] == tokenizer.cls_token_id and ids[end - 1] == tokenizer.sep_token_id
        several += len(starts) > 1
    assert several > 0

    def stream(dataset):
        special = set(tokenizer.all_special_ids)  # prepared rows mark [CLS]/[SEP] by their ids
        return [t for row in dataset for t in row["input_ids"] if t not in special]

    assert stream(packed) == stream(rows["full_sentences"])

    batch = MLMCollator(tokenizer)([packed[i] for i in range(len(packed))])
    mask = batch["attention_mask"]
    for row, example in enumerate(packed):
        assert mask[row, : len(example["sequence_ids"])].tolist() == example["sequence_ids"]
    model = Bert18ForPreTraining(
        tiny_config(vocab_size=len(tokenizer), max_position_embeddings=48, pretraining_tasks=["mlm", "nsp"])
    )
    assert torch.isfinite(model(**batch).loss)
    with pytest.raises(ValueError, match="packed rows"):
        model(**batch, next_sentence_label=torch.zeros(len(packed), dtype=torch.long))


# --- torch.compile ------------------------------------------------------------------------------


def test_compiled_model_does_not_recompile_for_new_batch_shapes():
    """After a first change of shape (which makes the dimensions dynamic), new lengths, token counts
    and mask counts reuse the compiled graphs."""
    torch._dynamo.reset()
    model = Bert18ForPreTraining(tiny_config(pretraining_tasks=["mlm"]))
    compiled = torch.compile(model, backend="eager")
    generator = torch.Generator().manual_seed(0)

    def step(lengths: list[int]) -> None:
        batch = padded_batch(lengths, max(lengths), seed=len(lengths) + sum(lengths))
        keep = torch.rand(batch["input_ids"].shape, generator=generator) < 0.3
        keep[:, 0] = True
        labels = batch["input_ids"].masked_fill(~keep | (batch["attention_mask"] == 0), -100)
        compiled(**batch, labels=labels).loss.backward()

    step([12, 7, 3])
    step([20, 19, 5, 8])
    with torch._dynamo.config.patch(error_on_recompile=True):
        for lengths in ([31, 2, 17], [9, 9, 4, 6, 1], [40, 33], [25, 14, 14, 3]):
            step(lengths)
    torch._dynamo.reset()

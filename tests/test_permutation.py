"""Permutation language modelling (XLNet, seed questions 15-16): the collator's masks and the two-stream model.

References: the seed's worked example (order [x3, x2, x4, x1] over [x1, x2, x3, x4]), autograd on
the real ``Bert18ForPreTraining`` for the absence of leaks, the eager attention for SDPA, the
ordinary encoder for the plm-off path, and the unigram entropy of the targets for learning.
"""

from functools import partial

import datasets
import numpy as np
import pytest
import torch
import transformers
from helpers import tiny_config

from bert18 import Bert18Config, Bert18ForPreTraining, Bert18Model
from bert18.collators import (
    PLM_INPUTS,
    PermutationLMCollator,
    PretrainingCollator,
    permutation_masks,
    ranks_of_order,
)
from bert18.data import SentencePairDataset, prepare_pretraining_dataset

# The seed's example: rows and columns x1..x4; mask[i][j] = may x_i attend to x_j.
SEED_CONTENT = [
    [1, 1, 1, 1],  # x1, last in the order, sees x3, x2, x4 and itself
    [0, 1, 1, 0],  # x2 sees x3 and itself
    [0, 0, 1, 0],  # x3, first in the order, sees only itself
    [0, 1, 1, 1],
]  # x4 sees x3, x2 and itself
SEED_QUERY = [[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 0]]
SEED_ORDER = [2, 1, 3, 0]  # x3, x2, x4, x1 as 0-based positions


@pytest.fixture(scope="module")
def rows(tokenizer, corpus):
    """Packed rows of 128 tokens of the built-in corpus (>= 100,000 tokens)."""
    datasets.disable_progress_bars()
    return [dict(row) for row in prepare_pretraining_dataset(corpus, tokenizer, ["plm"], max_length=128)]


# Tiny permutation-LM models: 3 layers, 128 positions.
plm_config = partial(tiny_config, num_hidden_layers=3, max_position_embeddings=128, pretraining_tasks=["plm"])


def sentences(tokenizer, texts: list[str]) -> list[dict]:
    return [{"input_ids": tokenizer(t)["input_ids"], "example_index": i} for i, t in enumerate(texts)]


TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Permutation language modelling predicts tokens in a random order.",
    "Short one.",
]


def recovered_ranks(content: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Ranks up to a shift, from a content mask: each token sees exactly the tokens ranked at or before it."""
    return np.where(real, content.sum(-1), 0)


# --- 1. the seed's example --------------------------------------------------------------------


def test_seed_example_masks():
    content, query = permutation_masks(ranks_of_order(SEED_ORDER))
    assert ranks_of_order(SEED_ORDER).tolist() == [3, 1, 0, 2]
    assert content.astype(int).tolist() == SEED_CONTENT
    assert query.astype(int).tolist() == SEED_QUERY
    with pytest.raises(ValueError, match="every position"):
        ranks_of_order([2, 1, 1, 0])


def test_seed_example_through_the_collator(tokenizer):
    """[CLS] x1 x2 x3 x4 [SEP], every token a target (k=1), strict order: among the example
    indices, one draws the order [x3, x2, x4, x1], and its masks over x1..x4 are the seed's."""
    ids = tokenizer("one two three four")["input_ids"]
    assert len(ids) == 6
    collator = PermutationLMCollator(tokenizer, k=1, ordered_context=True)
    batch = collator([{"input_ids": ids, "example_index": i} for i in range(200)])
    words = slice(1, 5)
    for row in range(200):
        targets = batch["plm_target_positions"][row].tolist()
        assert targets == [1, 2, 3, 4]  # k=1: every word, never [CLS] or [SEP]
        query = batch["plm_query_mask"][row].numpy()
        order = np.argsort(query[words, words].sum(-1))  # the more a token sees, the later it comes
        if order.tolist() == SEED_ORDER:
            assert batch["plm_content_mask"][row, words, words].int().tolist() == SEED_CONTENT
            assert query[words, words].astype(int).tolist() == SEED_QUERY
            assert batch["plm_query_mask"][row, words, [0, 5]].all()  # [CLS] and [SEP] are context for all
            return
    pytest.fail("no example drew the seed's order in 200 draws (probability 1/24 each)")


# --- 2. the collator's masks --------------------------------------------------------------------


@pytest.mark.parametrize("granularity,ordered", [("token", False), ("span", False), ("token", True)])
def test_masks_are_a_consistent_order(tokenizer, rows, granularity, ordered):
    """On corpus rows: masks are those of one order; targets are its last tokens, never special or
    padding; special tokens are visible to all; padding to none; labels are the tokens."""
    collator = PermutationLMCollator(tokenizer, k=6, granularity=granularity, ordered_context=ordered)
    examples = [{"input_ids": r["input_ids"], "example_index": r["example_index"]} for r in rows[:25]]
    examples[-1]["input_ids"] = examples[-1]["input_ids"][:50]  # a padded row
    batch = {k: v.numpy() for k, v in collator(examples).items()}
    for row in range(len(examples)):
        real = batch["attention_mask"][row].astype(bool)
        content, query = batch["plm_content_mask"][row], batch["plm_query_mask"][row]
        ranks = recovered_ranks(content, real)
        expected_content, expected_query = permutation_masks(ranks, real)
        assert np.array_equal(content, expected_content) and np.array_equal(query, expected_query)
        special = real & np.isin(batch["input_ids"][row], tokenizer.all_special_ids)
        positions = batch["plm_target_positions"][row]
        positions = positions[positions >= 0]
        predictable = int((real & ~special).sum())
        assert len(positions) == max(1, int(predictable / 6 + 0.5))  # round half up, at least one
        assert not special[positions].any()
        assert ranks[positions].min() > ranks[real & ~np.isin(np.arange(len(real)), positions)].max()
        assert not query[positions, positions].any() and content[positions, positions].all()
        assert np.array_equal(batch["plm_labels"][row][: len(positions)], batch["input_ids"][row][positions])
        assert not content[:, ~real].any() and not query[:, ~real].any()  # padding is never visible
        if not ordered:
            assert content[np.ix_(real, special)].all()  # [CLS], [SEP]: context for every token
        assert len(set(ranks[real & ~special])) == (predictable if ordered else len(positions) + 1)


def test_span_order_keeps_spans_together(tokenizer, rows):
    """Span-wise orders predict runs of consecutive tokens: longer runs of targets than token-wise."""

    def mean_run(collator):
        batch = collator(rows[:200])
        target = np.zeros(batch["input_ids"].shape, dtype=bool)
        for row, positions in enumerate(batch["plm_target_positions"].numpy()):
            target[row, positions[positions >= 0]] = True
        starts = target & ~np.pad(target, ((0, 0), (1, 0)))[:, :-1]
        return target.sum() / starts.sum()

    token = mean_run(PermutationLMCollator(tokenizer))
    span = mean_run(PermutationLMCollator(tokenizer, granularity="span"))
    print(f"mean run of targets: token {token:.2f}, span {span:.2f}")
    assert token < 1.3 < 1.8 < span


@pytest.mark.parametrize("k", [6, 3])
def test_fraction_of_targets_is_one_over_k(tokenizer, rows, k):
    """Over >= 100,000 tokens: 1/k of the predictable tokens are targets (+-0.3 pt), at the same rate
    in the first and the second half of the rows (+-1 pt), token-wise and span-wise."""
    special = torch.tensor(tokenizer.all_special_ids)
    for granularity in ("token", "span"):
        collator = PermutationLMCollator(tokenizer, k=k, granularity=granularity)
        targets, predictable = np.zeros(2), np.zeros(2)  # first half, second half
        for start in range(0, len(rows), 64):
            batch = collator(rows[start : start + 64])
            half = (torch.arange(batch["input_ids"].shape[1]) >= 64).long().expand_as(batch["input_ids"])
            eligible = batch["attention_mask"].bool() & ~torch.isin(batch["input_ids"], special)
            predictable += np.bincount(half[eligible].numpy(), minlength=2)
            positions = batch["plm_target_positions"]
            targets += np.bincount((positions[positions >= 0] >= 64).long().numpy(), minlength=2)
        rates = targets / predictable
        print(granularity, k, predictable.sum(), targets.sum() / predictable.sum(), rates)
        assert predictable.sum() > 100_000
        assert abs(targets.sum() / predictable.sum() - 1 / k) < 0.003
        assert abs(rates[0] - rates[1]) < 0.01


# --- 3. dynamic and reproducible ---------------------------------------------------------------


def test_orders_are_a_function_of_seed_epoch_and_index(tokenizer, rows):
    collator = PermutationLMCollator(tokenizer)
    first = collator(rows[:8])
    again = collator(rows[6:8] + rows[:6])  # other batch company, other place in the batch
    for name in PLM_INPUTS:
        assert torch.equal(first[name][6:8], again[name][:2]) and torch.equal(first[name][:6], again[name][2:])
    collator.set_epoch(1)
    second_epoch = collator(rows[:8])
    assert not torch.equal(first["plm_query_mask"], second_epoch["plm_query_mask"])
    other_seed = PermutationLMCollator(tokenizer, seed=1)(rows[:8])
    assert not torch.equal(first["plm_query_mask"], other_seed["plm_query_mask"])
    collator.set_epoch(0)
    assert torch.equal(collator(rows[:8])["plm_query_mask"], first["plm_query_mask"])


# --- 4. bad and edge input ---------------------------------------------------------------------


def test_bad_and_edge_input(tokenizer):
    with pytest.raises(ValueError, match="k must be at least 1"):
        PermutationLMCollator(tokenizer, k=0.5)
    with pytest.raises(ValueError, match="granularity"):
        PermutationLMCollator(tokenizer, granularity="word")
    with pytest.raises(ValueError, match="max_span"):
        PermutationLMCollator(tokenizer, max_span=0)
    collator = PermutationLMCollator(tokenizer)
    ok = {"input_ids": tokenizer("one two")["input_ids"], "example_index": 0}
    with pytest.raises(ValueError, match="example 7 is empty or all padding"):
        collator([ok, {"input_ids": [], "example_index": 7}])
    with pytest.raises(ValueError, match="example 8 is empty or all padding"):
        collator([ok, {"input_ids": [tokenizer.pad_token_id] * 5, "example_index": 8}])

    # Odd lengths need nothing special (no reshaping into blocks, as XLNet's perm_size needs).
    odd = {"input_ids": tokenizer("one two three four five")["input_ids"], "example_index": 1}
    assert len(odd["input_ids"]) == 7
    assert (PermutationLMCollator(tokenizer, k=2)([odd])["plm_target_positions"] >= 0).sum() == 3  # 2.5 up
    padded = PermutationLMCollator(tokenizer, pad_to_multiple_of=8)([odd])
    assert padded["plm_content_mask"].shape == (1, 8, 8) and not padded["plm_content_mask"][0, :, 7].any()
    # K larger than the row: still one target. Only special tokens: none, and the row is context.
    short = {"input_ids": tokenizer("one two three")["input_ids"], "example_index": 2}
    only_special = {"input_ids": [tokenizer.cls_token_id, tokenizer.sep_token_id], "example_index": 3}
    batch = PermutationLMCollator(tokenizer, k=50)([short, only_special])
    assert batch["plm_target_positions"].tolist() == [[batch["plm_target_positions"][0, 0].item()], [-1]]
    assert batch["plm_labels"][1].tolist() == [-100]
    # No special token at all: one token stays context, so the first target sees something.
    bare = {"input_ids": tokenizer("one two", add_special_tokens=False)["input_ids"], "example_index": 4}
    batch = PermutationLMCollator(tokenizer, k=1)([bare])
    assert (batch["plm_target_positions"] >= 0).sum() == 1
    position = batch["plm_target_positions"][0, 0]
    assert batch["plm_query_mask"][0, position].sum() == 1


def test_mlm_and_plm_together_are_refused(tokenizer):
    with pytest.raises(ValueError, match="cannot hold both 'mlm' and 'plm'"):
        Bert18Config.from_preset("tiny", pretraining_tasks=["mlm", "plm"])
    with pytest.raises(ValueError, match="tasks cannot hold both 'mlm' and 'plm'"):  # one check for both
        PretrainingCollator(tokenizer, ["mlm", "plm"])
    with pytest.raises(ValueError, match="'plm' is not among the pretraining tasks"):
        PretrainingCollator(tokenizer, ["mlm"], permutation=PermutationLMCollator(tokenizer))


def test_model_refuses_incomplete_plm_input(tokenizer):
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer)))
    with pytest.raises(ValueError, match="plm_labels need plm_content_mask"):
        model(input_ids=batch["input_ids"], plm_labels=batch["plm_labels"])
    with pytest.raises(ValueError, match=r"missing \['plm_query_mask'\]"):
        model(**{k: v for k, v in batch.items() if k != "plm_query_mask"})
    with pytest.raises(ValueError, match="plm_labels given, but task 'plm' is not"):
        Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer), pretraining_tasks=["sop"]))(**batch)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="per-example attention masks"):
        model(**batch)
    # Without the PLM inputs the encoder runs as usual, with no plm logits.
    model.config._attn_implementation = "sdpa"
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert output.loss is None and not output.task_logits


def test_a_batch_without_targets(tokenizer):
    only_special = [{"input_ids": [tokenizer.cls_token_id, tokenizer.sep_token_id], "example_index": 0}]
    batch = PermutationLMCollator(tokenizer)(only_special)
    assert batch["plm_target_positions"].shape == (1, 0)
    output = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer)))(**batch)
    assert output.loss.item() == 0 and output.task_logits["plm"].shape == (1, 0, len(tokenizer))


# --- 5. two-stream attention: no leak, every implementation, plm off unchanged -----------------


@pytest.mark.parametrize(
    "attention,sharing,positions,embedding_size",
    [
        ("eager", "none", "learned", None),
        ("sdpa", "none", "learned", None),
        ("eager", "all", "sinusoidal", 16),
        ("sdpa", "attention", "pad_aware", None),
        ("sdpa", "ffn", "sinusoidal", None),
        ("sdpa", "all", "rotary", 16),  # query rows rotated by their targets' positions
        ("eager", "none", "alibi", None),  # query rows biased by their targets' distances
    ],
)
def test_no_leak_through_two_streams(tokenizer, attention, sharing, positions, embedding_size):
    """d(prediction at a target) / d(input embedding of token j) is exactly zero for the target
    itself, every token later in the order and padding, and nonzero for every token before it."""
    torch.manual_seed(0)
    config = plm_config(
        vocab_size=len(tokenizer),
        layer_sharing=sharing,
        embedding_size=embedding_size,
        position_embedding_type="learned" if positions == "pad_aware" else positions,
        pad_aware_positions=positions == "pad_aware",
        attn_implementation=attention,
    )
    model = Bert18ForPreTraining(config).eval()
    assert model.config._attn_implementation == attention
    batch = PermutationLMCollator(tokenizer, k=2)(sentences(tokenizer, TEXTS))
    embeds = model.bert18.embeddings.word_embeddings(batch.pop("input_ids")).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, **batch).task_logits["plm"]
    projection = torch.randn(logits.shape[-1])
    real = batch["attention_mask"].bool()
    checked = 0
    for row, slot in (batch["plm_target_positions"] >= 0).nonzero().tolist():
        position = batch["plm_target_positions"][row, slot]
        (gradient,) = torch.autograd.grad(logits[row, slot] @ projection, embeds, retain_graph=True)
        reaches = gradient.norm(dim=-1) > 0
        earlier = batch["plm_query_mask"][row, position]  # strictly earlier in the order
        assert reaches[row].tolist() == earlier.tolist()
        assert not reaches[row, position] and not reaches[row][~real[row]].any()
        assert not reaches[torch.arange(len(reaches)) != row].any()  # nor other rows
        checked += 1
    assert checked >= 10


def two_stream_outputs(tokenizer, attentions: tuple[str, ...]) -> dict:
    torch.manual_seed(0)
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer), pretraining_tasks=["plm", "sop"])).eval()
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    outputs = {}
    for attention in attentions:
        model.config._attn_implementation = attention
        with torch.no_grad():  # FlexAttention has no backward on CPU
            outputs[attention] = model(**batch)
    return outputs


def test_eager_and_sdpa_agree(tokenizer):
    """Same weights, same two-stream outputs (with padding) under SDPA's boolean mask and eager's additive one."""
    outputs = two_stream_outputs(tokenizer, ("eager", "sdpa"))
    for task in ("plm", "sop"):
        torch.testing.assert_close(
            outputs["sdpa"].task_logits[task], outputs["eager"].task_logits[task], atol=1e-5, rtol=1e-5
        )


@pytest.mark.slow
def test_flex_attention_agrees(tokenizer):
    """FlexAttention (a BlockMask from the same index function) too; compiling it takes ~30 s on a CPU."""
    outputs = two_stream_outputs(tokenizer, ("eager", "flex_attention"))
    for task in ("plm", "sop"):
        torch.testing.assert_close(
            outputs["flex_attention"].task_logits[task], outputs["eager"].task_logits[task], atol=1e-5, rtol=1e-5
        )


def test_an_all_visible_content_mask_is_the_ordinary_encoder(tokenizer):
    """The per-example mask path, given the padding mask as [B, L, L], reproduces the ordinary one."""
    torch.manual_seed(0)
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    real = batch["attention_mask"].bool()
    for attention in ("eager", "sdpa"):
        model = Bert18Model(plm_config(vocab_size=len(tokenizer), attn_implementation=attention)).eval()
        with torch.no_grad():
            plain = model(batch["input_ids"], attention_mask=batch["attention_mask"])
            masked = model(
                batch["input_ids"],
                attention_mask=batch["attention_mask"],
                content_mask=real[:, None, :].expand(-1, real.shape[1], -1),
            )
        assert masked.query_last_hidden_state is None
        torch.testing.assert_close(masked.last_hidden_state[real], plain.last_hidden_state[real], atol=1e-6, rtol=1e-6)


def test_two_stream_hidden_states_and_attentions(tokenizer):
    """hidden_states hold the token rows; eager attentions have one more row per target."""
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer), attn_implementation="eager"))
    output = model(**batch, output_hidden_states=True, output_attentions=True)
    length, targets = batch["input_ids"].shape[1], batch["plm_target_positions"].shape[1]
    assert [h.shape[1] for h in output.hidden_states] == [length] * 4
    assert [a.shape[2:] for a in output.attentions] == [(length + targets, length)] * 3


# --- 6. composing, normalising, saving, checkpointing ------------------------------------------


def test_plm_with_sop_from_sentence_pairs(tokenizer, corpus):
    """plm + sop through PretrainingCollator: both losses, gradients reach the query vector and the SOP head."""
    tasks = ["plm", "sop"]
    documents = prepare_pretraining_dataset(corpus.select(range(20)), tokenizer, tasks, max_length=64)
    pairs = SentencePairDataset(documents, tokenizer, tasks, max_length=64, seed=0)
    config = plm_config(vocab_size=len(tokenizer), pretraining_tasks=tasks, max_position_embeddings=64)
    collator = PretrainingCollator(tokenizer, config)
    batch = collator([pairs[i] for i in range(8)])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "sentence_order_label", *PLM_INPUTS}
    model = Bert18ForPreTraining(config)
    output = model(**batch)
    assert set(output.task_losses) == set(tasks) and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.plm_query.grad.abs().sum() > 0 and model.heads["sop"].weight.grad.abs().sum() > 0
    assert model.lm_head.decoder.weight is model.bert18.embeddings.word_embeddings.weight  # tied


def test_plm_loss_normalised_over_gradient_accumulation(tokenizer, rows):
    """A {task: count} num_items_in_batch (Bert18Trainer's) makes micro-batches add up to the full batch."""
    torch.manual_seed(0)
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer))).eval()
    with torch.no_grad():  # token losses far from uniform, so the naive mean visibly differs
        model.lm_head.decoder.bias.normal_(0.0, 3.0)
    collator = PretrainingCollator(tokenizer, model.config)
    full, halves = collator(rows[:8]), [collator(rows[:3]), collator(rows[3:8])]
    counts = {"plm": sum((h["plm_labels"] != -100).sum() for h in halves)}
    with torch.no_grad():
        expected = model(**full).loss
        accumulated = sum(model(**h, num_items_in_batch=counts).loss for h in halves)
        naive = sum(model(**h).loss for h in halves) / 2
    torch.testing.assert_close(accumulated, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(naive, expected, atol=1e-4)


def test_trainer_accumulation_equals_one_big_batch(tokenizer, rows, tmp_path):
    """Bert18Trainer counts plm_labels per accumulation step: 2 x 4 examples move the weights as 1 x 8."""
    from transformers import TrainingArguments

    from bert18.training import Bert18Trainer, pretraining_label_names

    config = plm_config(vocab_size=len(tokenizer))
    assert pretraining_label_names(config) == ["plm_labels"]
    weights = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        torch.manual_seed(0)
        model = Bert18ForPreTraining(config)
        initial_query = model.plm_query.detach().clone()
        args = TrainingArguments(
            str(tmp_path / f"run{batch_size}"),
            report_to=[],
            remove_unused_columns=False,
            use_cpu=True,
            disable_tqdm=True,
            save_strategy="no",
            seed=0,
            data_seed=0,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=0.5,
            optim="sgd",
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
        )
        Bert18Trainer(
            model=model, args=args, train_dataset=rows[:8], data_collator=PretrainingCollator(tokenizer, config)
        ).train()
        weights.append({k: v.detach().clone() for k, v in model.named_parameters()})
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(weights[0]["plm_query"], initial_query)  # the query vector learns


def test_save_and_reload_keeps_the_query_vector(tokenizer, tmp_path):
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer)))
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForPreTraining.from_pretrained(tmp_path)
    assert torch.equal(loaded.plm_query, model.plm_query) and model.plm_query.std() > 0
    assert loaded.lm_head.decoder.weight is loaded.bert18.embeddings.word_embeddings.weight
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**batch).loss, model.eval()(**batch).loss)


@pytest.mark.parametrize("sharing", ["none", "all"])
def test_gradient_checkpointing_same_loss_and_gradients(tokenizer, sharing):
    torch.manual_seed(0)
    batch = PermutationLMCollator(tokenizer)(sentences(tokenizer, TEXTS))
    model = Bert18ForPreTraining(plm_config(vocab_size=len(tokenizer), layer_sharing=sharing)).train()
    results = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable()
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(results[0][0], results[1][0])
    assert results[0][1].keys() == results[1][1].keys() and "plm_query" in results[0][1]
    for name, gradient in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], gradient, msg=name)


# --- 7. it learns -------------------------------------------------------------------------------


def train(model, collator, rows, steps: int, batch_size: int, lr: float, seed: int = 0) -> list[float]:
    """AdamW steps on random batches of ``rows`` (a new epoch, so new orders, each pass); the PLM losses."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        collator.set_epoch(step * batch_size // len(rows))
        output = model(**collator([rows[int(i)] for i in rng.choice(len(rows), batch_size, replace=False)]))
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(output.task_losses["plm"].item())
    return losses


def test_plm_loss_goes_down(tokenizer, rows):
    """A few steps on the corpus: the PLM loss falls well below its start (ln V = 10.3 for BERT's vocabulary)."""
    torch.manual_seed(0)
    config = Bert18Config.from_preset(
        "tiny", vocab_size=len(tokenizer), max_position_embeddings=128, pretraining_tasks=["plm"]
    )
    model = Bert18ForPreTraining(config)
    losses = train(model, PretrainingCollator(tokenizer, config), rows, steps=12, batch_size=16, lr=3e-3)
    print([round(x, 2) for x in losses])
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 1.5


@pytest.mark.slow
def test_plm_beats_the_unigram_baseline(corpus):
    """600 steps (about a minute) of a tiny model on the corpus, with a 4,096-token WordPiece
    vocabulary trained on it: the held-out loss per target falls below the entropy of the unigram
    distribution of the training targets, the loss of the best guess that ignores the context.
    (docs/scripts/mlm_vs_plm.py runs the same set-up for 1,000 steps beside MLM.)"""
    from bert18.tokenization import train_tokenizer

    datasets.disable_progress_bars()
    tokenizer = train_tokenizer(corpus, vocab_size=4096, show_progress=False)
    packed = [dict(r) for r in prepare_pretraining_dataset(corpus, tokenizer, ["plm"], max_length=128)]
    order = np.random.default_rng(0).permutation(len(packed))
    held_out, training = [packed[i] for i in order[:128]], [packed[i] for i in order[128:]]
    config = Bert18Config.from_preset(
        "tiny", vocab_size=len(tokenizer), max_position_embeddings=128, pretraining_tasks=["plm"]
    )
    collator = PretrainingCollator(tokenizer, config)
    collator.set_epoch(10_000)
    evaluation = [collator(held_out[i : i + 32]) for i in range(0, len(held_out), 32)]
    torch.manual_seed(0)
    model = Bert18ForPreTraining(config)
    steps, warmup = 600, 30
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, (steps - s) / steps))
    rng = np.random.default_rng(0)
    targets = []
    for step in range(steps):
        collator.set_epoch(step * 32 // len(training))
        batch = collator([training[int(i)] for i in rng.choice(len(training), 32, replace=False)])
        targets.append(batch["plm_labels"][batch["plm_labels"] != -100])
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    counts = torch.cat(targets).bincount().double()
    p = counts[counts > 0] / counts.sum()
    unigram = -(p * p.log()).sum().item()
    model.eval()
    with torch.no_grad():
        total = sum(model(**b).task_losses["plm"].item() * (b["plm_labels"] != -100).sum().item() for b in evaluation)
    held_out_loss = total / sum((b["plm_labels"] != -100).sum().item() for b in evaluation)
    print(f"held-out PLM loss {held_out_loss:.3f}, unigram entropy of the targets {unigram:.3f}")
    assert held_out_loss < unigram - 0.05


def test_mlm_and_plm_granularities_are_named_apart(tokenizer):
    """MLM's units and PLM's orders have their own choices; the recipes' masking modes are MLM's plus knowledge."""
    import bert18.collators
    from bert18.collators import MLM_GRANULARITIES, PLM_GRANULARITIES, MLMCollator
    from bert18.training.arguments import MASKING_MODES

    assert MLM_GRANULARITIES == ("token", "whole_word", "ngram", "span")
    assert PLM_GRANULARITIES == ("token", "span")
    assert sorted(MASKING_MODES) == sorted([*MLM_GRANULARITIES, "knowledge"])
    assert not hasattr(bert18.collators, "GRANULARITIES")  # the name that meant either
    for granularity in MLM_GRANULARITIES:
        assert MLMCollator(tokenizer, granularity=granularity).granularity == granularity
    for granularity in PLM_GRANULARITIES:
        assert PermutationLMCollator(tokenizer, granularity=granularity).granularity == granularity
    with pytest.raises(ValueError, match=r"granularity must be one of \('token', 'span'\), got 'ngram'"):
        PermutationLMCollator(tokenizer, granularity="ngram")

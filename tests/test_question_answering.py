"""Extractive QA logits: padding never wins, the loss is transformers' over real tokens, answers stay right.

Reference: transformers' ``BertForQuestionAnswering`` with the same weights (converted), whose
logits at padding are ordinary numbers; bert18's are the dtype's minimum there and equal at real
tokens.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import BERT_DROPOUT, tiny_config
from transformers import BertConfig, BertForQuestionAnswering

from bert18 import Bert18ForQuestionAnswering
from bert18.convert import from_transformers
from bert18.training.finetune_qa import best_answers

LENGTHS = [12, 5, 9]


def padded_batch(vocab_size=100):
    generator = torch.Generator().manual_seed(0)
    width = max(LENGTHS)
    input_ids = torch.zeros(len(LENGTHS), width, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(LENGTHS):
        input_ids[row, :length] = torch.randint(2, vocab_size, (length,), generator=generator)
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@pytest.fixture(scope="module")
def models():
    """transformers' BertForQuestionAnswering (random, perturbed) and its bert18 conversion, eval mode."""
    torch.manual_seed(0)
    reference = BertForQuestionAnswering(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    )
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return reference.eval(), from_transformers(reference).eval()


def test_padding_never_wins_even_when_every_real_logit_is_negative(models):
    _, model = models
    batch = padded_batch()
    with torch.no_grad():
        model.qa_outputs.bias.fill_(-30.0)  # every real score negative: a 0.0 at padding would win
        try:
            out = model(**batch)
        finally:
            model.qa_outputs.bias.copy_(models[0].qa_outputs.bias)
    padding = batch["attention_mask"] == 0
    for logits in (out.start_logits, out.end_logits):
        assert (logits[~padding] < 0).all()
        assert (logits[padding] == torch.finfo(logits.dtype).min).all()
        assert (logits.argmax(-1) < torch.tensor(LENGTHS)).all()


def test_real_token_logits_and_loss_match_transformers_over_real_tokens(models):
    """Logits at real tokens equal BertForQuestionAnswering's; the loss is its cross-entropy with each
    row's softmax over that row's real tokens (transformers' own loss lets padding take probability)."""
    reference, model = models
    batch = padded_batch()
    starts, ends = torch.tensor([3, 0, 8]), torch.tensor([5, 4, 8])
    with torch.no_grad():
        theirs = reference(**batch)
        ours = model(**batch, start_positions=starts, end_positions=ends)
    real = batch["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        assert (ours[name][real] - theirs[name][real]).abs().max() <= 1e-5
    expected = []
    for logits, targets in ((theirs.start_logits, starts), (theirs.end_logits, ends)):
        expected.append(
            torch.stack(
                [F.cross_entropy(logits[row, :length], targets[row]) for row, length in enumerate(LENGTHS)]
            ).mean()
        )
    assert abs(ours.loss - (expected[0] + expected[1]) / 2) <= 1e-5
    with torch.no_grad():  # no padding: transformers' own loss, exactly as before
        full = {k: v[:1] for k, v in batch.items()}
        same = reference(**full, start_positions=starts[:1], end_positions=ends[:1]).loss
        assert abs(model(**full, start_positions=starts[:1], end_positions=ends[:1]).loss - same) <= 1e-5


def test_half_precision_masks_with_its_own_minimum():
    torch.manual_seed(0)
    config = tiny_config(vocab_size=100, intermediate_size=37, max_position_embeddings=32, **BERT_DROPOUT)
    model = Bert18ForQuestionAnswering(config).to(torch.bfloat16).eval()
    batch = padded_batch()
    with torch.no_grad():
        out = model(**batch, start_positions=torch.tensor([1, 2, 3]), end_positions=torch.tensor([4, 4, 5]))
    padding = batch["attention_mask"] == 0
    assert out.start_logits.dtype == torch.bfloat16
    assert (out.start_logits[padding] == torch.finfo(torch.bfloat16).min).all()
    assert torch.isfinite(out.loss) and torch.isfinite(out.start_logits).all()


def test_answers_from_padded_predictions(models):
    """``best_answers`` on the model's logits for windows of different lengths, concatenated as
    Trainer.predict does (-100 past a batch's width): the best real span, never padding."""
    _, model = models
    batch = padded_batch()
    with torch.no_grad():
        out = model(**batch)
    start = np.concatenate([out.start_logits.numpy(), np.full((3, 4), -100.0, dtype=np.float32)], axis=1)
    end = np.concatenate([out.end_logits.numpy(), np.full((3, 4), -100.0, dtype=np.float32)], axis=1)
    context = "".join(chr(ord("a") + i) for i in range(max(LENGTHS)))
    offsets = [[(i, i + 1) for i in range(length)] for length in LENGTHS]  # one character per token
    answers = best_answers(start, end, offsets, [0, 1, 2], [context] * 3, n_best_size=20, max_answer_length=30)
    for row, (answer, length) in enumerate(zip(answers, LENGTHS)):
        s, e = out.start_logits[row, :length].numpy(), out.end_logits[row, :length].numpy()
        scores = s[:, None] + e[None, :]
        scores[np.tril_indices(length, -1)] = -np.inf  # the end before the start
        best_start, best_end = np.unravel_index(np.argmax(scores), scores.shape)
        assert answer == context[best_start : best_end + 1]

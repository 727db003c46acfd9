"""Masking collators over the built-in corpus with the real MiniLM WordPiece tokenizer (>= 100,000 tokens).

References: the seed's numbers (15%; 80/10/10), transformers' DataCollatorForLanguageModeling on
the same rows, the tokenizer's own word boundaries, and distributions computed in closed form.
"""

import json
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
import torch
import transformers

from bert18 import Bert18Config, Bert18ForMaskedLM, Bert18ForPreTraining
from bert18.collators import KnowledgeMaskingCollator, MLMCollator, PretrainingCollator, word_start_table
from bert18.collators.base import example_keys, uniform
from bert18.collators.mlm import (
    labels_on_word_starts,
    length_distribution,
    numbered_units,
    tile_units,
    tile_words,
    word_boundaries,
    word_starts,
)
from bert18.data import PhraseMiner, prepare_pretraining_dataset


@pytest.fixture(scope="module")
def rows(tokenizer, corpus):
    """Packed FULL-SENTENCES rows of 128 tokens with capitalization labels and knowledge spans."""
    datasets.disable_progress_bars()
    phrases = PhraseMiner(min_count=10).fit(corpus["text"]).matcher()
    packed = prepare_pretraining_dataset(
        corpus,
        tokenizer,
        ["mlm", "capitalization"],
        max_length=128,
        lexicon=phrases,
        capitalized_entities=True,
        word_ids=True,
    )
    # prepared rows carry no special_tokens_mask (the special ids mark [CLS]/[SEP]); the reference
    # collator of transformers wants one, so it is added here from the ids
    special = set(tokenizer.all_special_ids)
    return [dict(row, special_tokens_mask=[int(t in special) for t in row["input_ids"]]) for row in packed]


def collate_all(collator, rows, batch_size=32):
    return [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def mask_statistics(batches, tokenizer, rows):
    """Shares over all real tokens: selected, and of the selected: [MASK], unchanged, random."""
    inputs = torch.cat([b["input_ids"].flatten() for b in batches])
    labels = torch.cat([b["labels"].flatten() for b in batches])
    attention = torch.cat([b["attention_mask"].flatten() for b in batches]).bool()
    selected = labels != -100
    eligible = sum(len(r["input_ids"]) - sum(r["special_tokens_mask"]) for r in rows)
    special = torch.tensor(sorted(tokenizer.all_special_ids))
    return {
        "eligible": eligible,
        "selected": selected.sum().item() / eligible,
        "mask": (inputs[selected] == tokenizer.mask_token_id).float().mean().item(),
        "unchanged": (inputs[selected] == labels[selected]).float().mean().item(),
        "random": ((inputs[selected] != tokenizer.mask_token_id) & (inputs[selected] != labels[selected]))
        .float()
        .mean()
        .item(),
        # an original special token selected, or a special token drawn as a random replacement
        "special_selected": torch.isin(labels[selected], special).sum().item()
        + torch.isin(inputs[selected & (inputs != labels) & (inputs != tokenizer.mask_token_id)], special).sum().item(),
        "labels_off_selection": (labels[~attention] != -100).sum().item(),
    }


@pytest.mark.parametrize("granularity", ["token", "whole_word", "ngram", "span"])
def test_masking_statistics_match_the_seed(tokenizer, rows, granularity):
    """15% selected (+-0.5 pt), 80/10/10 (+-1.5 pt), no special token, -100 everywhere else."""
    stats = mask_statistics(collate_all(MLMCollator(tokenizer, granularity=granularity), rows), tokenizer, rows)
    print(granularity, stats)
    assert stats["eligible"] > 100_000
    assert abs(stats["selected"] - 0.15) < 0.005
    assert abs(stats["mask"] - 0.80) < 0.015
    assert abs(stats["unchanged"] - 0.10) < 0.015
    assert abs(stats["random"] - 0.10) < 0.015
    assert stats["special_selected"] == 0 and stats["labels_off_selection"] == 0


def test_same_statistics_as_transformers_collator(tokenizer, rows):
    """transformers' DataCollatorForLanguageModeling on the same rows: the same shares within 0.5-1.5 pt."""
    reference = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    plain = [{"input_ids": r["input_ids"], "special_tokens_mask": r["special_tokens_mask"]} for r in rows]
    theirs = mask_statistics(collate_all(reference, plain), tokenizer, rows)
    ours = mask_statistics(collate_all(MLMCollator(tokenizer), rows), tokenizer, rows)
    print("transformers", theirs, "\nbert18", ours)
    assert abs(ours["selected"] - theirs["selected"]) < 0.005
    for share in ("mask", "unchanged", "random"):
        assert abs(ours[share] - theirs[share]) < 0.015


def test_whole_words_are_masked_whole(tokenizer, rows):
    """Every word (by the prepared word ids, and by ## when no ids are given) is selected entirely or not."""
    for with_word_ids in (True, False):
        examples = rows if with_word_ids else [{k: v for k, v in r.items() if k != "word_ids"} for r in rows]
        batches = collate_all(MLMCollator(tokenizer, granularity="whole_word"), examples)
        partial = words = 0
        for batch, start in zip(batches, range(0, len(rows), 32)):
            for i, row in enumerate(rows[start : start + 32]):
                selected = (batch["labels"][i, : len(row["word_ids"])] != -100).numpy()
                word_ids = np.asarray(row["word_ids"])
                for word in np.unique(word_ids[word_ids >= 0]):
                    chosen = selected[word_ids == word]
                    words += 1
                    partial += chosen.any() and not chosen.all()
        assert words > 50_000 and partial == 0


def test_word_start_conventions_of_other_vocabularies(tokenizer):
    """WordPiece '##', byte-level BPE 'Ġ' and SentencePiece '▁' vocabularies each mark words their way."""
    from bert18.tokenization import train_tokenizer

    texts = ["The quick brown fox jumps over the lazy dog near the riverbank every morning."] * 50
    bert_table = word_start_table(tokenizer)
    assert not bert_table[tokenizer.convert_tokens_to_ids("##ing")]
    assert bert_table[tokenizer.convert_tokens_to_ids("dog")]
    roberta = train_tokenizer(
        texts, algorithm="bpe", special_tokens_style="roberta", vocab_size=300, show_progress=False
    )
    unigram = train_tokenizer(texts, algorithm="unigram", vocab_size=80, show_progress=False)
    for trained, marker in ((roberta, "Ġ"), (unigram, "▁")):
        ids = np.asarray(trained(" the riverbank", add_special_tokens=False)["input_ids"])
        tokens = trained.convert_ids_to_tokens(ids.tolist())
        starts = word_starts(ids, np.zeros(len(ids), dtype=bool), None, word_start_table(trained))
        assert starts.tolist() == [t.startswith(marker) or i == 0 for i, t in enumerate(tokens)]
        assert not starts.all()  # "riverbank" is more than one piece in so small a vocabulary


def test_pre_segmented_cjk_words_stay_whole(tokenizer):
    """Chinese characters are single WordPiece tokens; word_ids from a segmenter make words of several."""
    text_words = ["北京大学", "和", "中国", "的", "人民", "北京"]  # all in the vocabulary (no [UNK])
    ids = [tokenizer.cls_token_id]
    word_ids = [-1]
    for w, word in enumerate(text_words):
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        ids += pieces
        word_ids += [w] * len(pieces)
    ids.append(tokenizer.sep_token_id)
    word_ids.append(-1)
    collator = MLMCollator(tokenizer, granularity="whole_word", mlm_probability=0.3)
    for index in range(200):
        labels = collator([{"input_ids": ids, "word_ids": word_ids, "example_index": index}])["labels"][0].numpy()
        for w in range(len(text_words)):
            chosen = labels[np.asarray(word_ids) == w] != -100
            assert chosen.all() or not chosen.any()


def test_ngram_and_span_lengths_follow_their_distributions():
    """ALBERT n-grams: p(n) ~ 1/n for n <= 3. SpanBERT spans: geometric(0.2) clipped at 10, mean 3.8 words."""
    draws = uniform(example_keys(0, 0, np.arange(2)), 200_000, stream=3)
    lengths, probabilities = length_distribution(3)
    assert lengths.tolist() == [1, 2, 3] and np.allclose(probabilities, [6 / 11, 3 / 11, 2 / 11])
    starts = tile_words(draws[0], lengths, probabilities)
    sizes = np.diff(np.flatnonzero(np.r_[starts, True]))[:-1]
    shares = np.bincount(sizes, minlength=4)[1:] / len(sizes)
    assert np.allclose(shares, [6 / 11, 3 / 11, 2 / 11], atol=0.01)
    span_lengths, span_probabilities = length_distribution(10, span_p=0.2)
    geometric = 0.2 * 0.8 ** (np.arange(1, 11) - 1)
    assert span_lengths.tolist() == list(range(1, 11)) and np.allclose(span_probabilities, geometric / geometric.sum())
    starts = tile_words(draws[1], span_lengths, span_probabilities)
    sizes = np.diff(np.flatnonzero(np.r_[starts, True]))[:-1]
    expected_mean = (span_lengths * geometric).sum() / geometric.sum()
    assert abs(expected_mean - 3.79) < 0.01 and abs(sizes.mean() - expected_mean) < 0.05


def test_word_and_unit_helpers_match_a_token_by_token_reading():
    """``word_boundaries``, ``word_starts``, ``tile_units``, ``numbered_units`` and ``labels_on_word_starts``
    against loops over the tokens, on random rows with specials anywhere and word ids wrapping modulo 256."""
    rng = np.random.default_rng(0)
    lengths, probabilities = np.arange(1, 6), np.full(5, 0.2)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        word_ids = (np.cumsum(rng.random(n) < 0.6) + rng.integers(0, 256)) % 256  # stored modulo 256: they wrap
        special = rng.random(n) < 0.15
        boundaries = word_boundaries(word_ids)
        assert boundaries.tolist() == [i == 0 or word_ids[i] != word_ids[i - 1] for i in range(n)]
        starts = word_starts(np.zeros(n, dtype=np.int64), special, word_ids, np.zeros(1, dtype=bool))
        assert starts.tolist() == [
            not special[i] and (i == 0 or special[i - 1] or bool(boundaries[i])) for i in range(n)
        ]
        draws = rng.random(int(starts.sum()))
        tile = tile_words(draws, lengths, probabilities)
        expected, word = [], -1
        for i in range(n):  # a unit begins at a word the tiling starts, or at a segment's first word
            word += bool(starts[i])
            expected.append(bool(starts[i]) and (bool(tile[word]) or i == 0 or bool(special[i - 1])))
        assert tile_units(starts, ~special, draws, lengths, probabilities).tolist() == expected
        key = example_keys(0, 0, np.array([n]))[0]
        units, priority = numbered_units(np.asarray(expected), key, stream=4)
        assert units.tolist() == [sum(expected[: i + 1]) - 1 for i in range(n)]  # -1 before the first unit
        assert priority.tolist() == uniform(key, sum(expected), 4).tolist()  # one draw per unit, from its stream
        labels = rng.integers(0, 2, n)
        assert labels_on_word_starts(labels, starts).tolist() == [
            int(labels[i]) if starts[i] else -100 for i in range(n)
        ]


def test_units_never_cross_special_tokens(tokenizer):
    """A span never joins the two segments of a pair: [SEP] always ends a unit."""
    text = "one two three four five six seven eight"
    pair = tokenizer(text, text)["input_ids"]
    collator = MLMCollator(tokenizer, granularity="span", mlm_probability=0.5)
    sep = pair.index(tokenizer.sep_token_id)
    for index in range(300):
        example = {"input_ids": pair, "example_index": index}
        units, _ = collator.unit_plan(
            example,
            np.asarray(pair),
            ~np.isin(pair, tokenizer.all_special_ids),
            example_keys(0, 0, np.array([index]))[0],
        )
        assert not set(units[1:sep]) & set(units[sep + 1 : -1])


def test_masks_are_a_function_of_seed_epoch_and_index(tokenizer, rows):
    """Same (seed, epoch, index): same masks in any batch order, and in another process; a new epoch differs."""
    collator = MLMCollator(tokenizer, granularity="whole_word", seed=7)
    forward = collator(rows[:8])["labels"]
    backward = collator(rows[:8][::-1])["labels"].flip(0)
    assert torch.equal(forward, backward)
    collator.set_epoch(1)
    assert not torch.equal(collator(rows[:8])["labels"], forward)
    script = textwrap.dedent(f"""
        import json, sys, torch, transformers
        from bert18.collators import MLMCollator
        rows = json.load(sys.stdin)
        tokenizer = transformers.AutoTokenizer.from_pretrained({tokenizer.name_or_path!r})
        labels = MLMCollator(tokenizer, granularity="whole_word", seed=7)(rows)["labels"]
        print(json.dumps(labels.tolist()))
    """)
    child = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(rows[:8]), capture_output=True, text=True, check=True
    )
    assert torch.equal(torch.tensor(json.loads(child.stdout)), forward)


def test_exact_mask_count_per_batch(tokenizer, rows):
    collator = MLMCollator(tokenizer, granularity="whole_word", mask_count_per_batch=600)
    for batch in collate_all(collator, rows[:320]):
        assert (batch["labels"] != -100).sum().item() == 600


# Knowledge masking's rates per level and unit kind, against ERNIE's definition: tests/test_knowledge.py.


def test_knowledge_level_schedule(tokenizer, rows):
    """ERNIE's stages: basic, then phrase, then entity, switched by epoch."""
    collator = KnowledgeMaskingCollator(tokenizer, levels=[(0, {"basic": 1}), (1, {"phrase": 1}), (2, {"entity": 1})])
    for epoch, level in enumerate(("basic", "phrase", "entity")):
        collator.set_epoch(epoch)
        before = dict(collator.level_counts)
        collator(rows[:16])
        assert collator.level_counts[level] - before[level] == 16
    with pytest.raises(ValueError, match="epoch 0"):
        KnowledgeMaskingCollator(tokenizer, levels=[(1, {"entity": 1})])
    with pytest.raises(ValueError, match="unknown masking level"):
        KnowledgeMaskingCollator(tokenizer, levels={"sentence": 1})


def test_bad_spans_are_named(tokenizer):
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1})
    ids = tokenizer("guido van rossum wrote python")["input_ids"]
    outside = {"input_ids": ids, "span_starts": [3], "span_ends": [40], "span_kinds": ["entity"], "example_index": 5}
    with pytest.raises(ValueError, match=r"example 5: entity span \[3, 40\)"):
        collator([outside])
    overlap = {
        "input_ids": ids,
        "span_starts": [1, 2],
        "span_ends": [4, 5],
        "span_kinds": ["entity", "phrase"],
        "example_index": 6,
    }
    with pytest.raises(ValueError, match="example 6: spans overlap"):
        collator([overlap])


def test_pretraining_collator_serves_the_config(tokenizer, rows):
    """MLM + capitalization from packed rows: exactly the model's inputs, capitalization on word starts only."""
    config = Bert18Config.from_preset("tiny", pretraining_tasks=["mlm", "capitalization"], max_position_embeddings=128)
    collator = PretrainingCollator(tokenizer, config, granularity="whole_word")
    batch = collator(rows[:8])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "capitalization_labels"}
    for i, row in enumerate(rows[:8]):
        word_ids = np.asarray(row["word_ids"])
        starts = (word_ids >= 0) & np.r_[True, word_ids[1:] != word_ids[:-1]]
        labels = batch["capitalization_labels"][i, : len(word_ids)].numpy()
        assert np.array_equal(labels[starts], np.asarray(row["capitalization_labels"])[starts])
        assert (labels[~starts] == -100).all()
    model = Bert18ForPreTraining(config)
    output = model(**batch)
    assert set(output.task_losses) == {"mlm", "capitalization"} and torch.isfinite(output.loss)


def test_pretraining_collator_bad_input(tokenizer, rows):
    config = Bert18Config.from_preset("tiny", pretraining_tasks=["mlm", "sop"], max_position_embeddings=128)
    with pytest.raises(ValueError, match=r"'sop' needs 'sentence_order_label'.*SentencePairDataset"):
        PretrainingCollator(tokenizer, config)(rows[:2])
    short = Bert18Config.from_preset("tiny", pretraining_tasks=["mlm"], max_position_embeddings=64)
    with pytest.raises(ValueError, match="more than the model's max_position_embeddings"):
        PretrainingCollator(tokenizer, short)(rows[:2])
    no_mask = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    no_mask.mask_token = None
    with pytest.raises(ValueError, match="mask token"):
        MLMCollator(no_mask)


def test_loss_normalised_over_gradient_accumulation(tokenizer, rows):
    """With num_items_in_batch, micro-batch losses add up to the full batch's token-level MLM loss."""
    config = Bert18Config.from_preset(
        "tiny",
        pretraining_tasks=["mlm"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)  # the naive check below must not depend on what earlier tests drew
    model = Bert18ForMaskedLM(config).eval()
    collator = MLMCollator(tokenizer)
    full = collator(rows[:8])
    halves = [collator(rows[:3]), collator(rows[3:8])]  # unequal halves, unequal mask counts
    total = sum((h["labels"] != -100).sum() for h in halves)
    with torch.no_grad():
        expected = model(**full).loss
        accumulated = sum(model(**h, num_items_in_batch=total).loss for h in halves)
        naive = sum(model(**h).loss for h in halves) / 2
    assert torch.allclose(accumulated, expected, atol=1e-5)
    assert not torch.allclose(naive, expected, atol=1e-4)  # the mean of means is not the same loss
    assert Bert18ForMaskedLM.accepts_loss_kwargs and Bert18ForPreTraining.accepts_loss_kwargs


def test_pretraining_loss_with_per_task_counts(tokenizer, rows):
    """A {task: count} num_items_in_batch makes every task exact across micro-batches."""
    config = Bert18Config.from_preset(
        "tiny",
        pretraining_tasks=["mlm", "capitalization"],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=128,
    )
    model = Bert18ForPreTraining(config).eval()
    collator = PretrainingCollator(tokenizer, config)
    full, halves = collator(rows[:8]), [collator(rows[:3]), collator(rows[3:8])]
    counts = {
        "mlm": sum((h["labels"] != -100).sum() for h in halves),
        "capitalization": sum((h["capitalization_labels"] != -100).sum() for h in halves),
    }
    with torch.no_grad():
        expected = model(**full).loss
        accumulated = sum(model(**h, num_items_in_batch=counts).loss for h in halves)
    assert torch.allclose(accumulated, expected, atol=1e-5)


def test_random_replacements_are_never_special(tokenizer):
    collator = MLMCollator(tokenizer, mlm_probability=0.5, mask_replace_prob=0.0, random_replace_prob=1.0)
    ids = tokenizer(" ".join(["word"] * 120))["input_ids"]
    batch = collator([{"input_ids": ids, "example_index": i} for i in range(64)])
    replaced = batch["input_ids"][batch["labels"] != -100]
    assert not torch.isin(replaced, torch.tensor(tokenizer.all_special_ids)).any()
    assert len(set(replaced.tolist())) > 1000  # drawn across the vocabulary


def test_tokenizer_without_pad_token_is_refused(tokenizer):
    no_pad = transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        MLMCollator(no_pad)


def test_set_epoch_callback_follows_the_trainer_state(tokenizer, rows):
    """At each epoch start (a resumed run starts mid-epoch: state.epoch 2.5) the collators get its integer."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from bert18.collators import SetEpochCallback

    collator = MLMCollator(tokenizer)
    callback = SetEpochCallback(collator, object())  # objects without set_epoch are ignored
    for state_epoch, expected in ((0.0, 0), (1.0, 1), (2.5, 2)):
        callback.on_epoch_begin(
            TrainingArguments("unused", report_to=[]), TrainerState(epoch=state_epoch), TrainerControl()
        )
        assert collator.epoch == expected
    fresh = MLMCollator(tokenizer)
    fresh.set_epoch(2)
    assert torch.equal(collator(rows[:4])["labels"], fresh(rows[:4])["labels"])


@pytest.mark.parametrize("granularity", ["token", "whole_word", "ngram", "span"])
def test_rows_with_little_or_nothing_to_mask(tokenizer, granularity):
    """Nothing maskable ([CLS] [UNK] [SEP]): no target, no crash. A short row still gets one (BERT's max(1, ...))."""
    collator = MLMCollator(tokenizer, granularity=granularity)
    empty = collator(
        [{"input_ids": [tokenizer.cls_token_id, tokenizer.unk_token_id, tokenizer.sep_token_id], "example_index": 0}]
    )
    assert (empty["labels"] == -100).all()
    short = tokenizer("two words")["input_ids"]
    for index in range(20):
        assert (collator([{"input_ids": short, "example_index": index}])["labels"] != -100).sum() >= 1


def test_a_long_entity_is_one_unit_drawn_like_any_other(tokenizer):
    """ERNIE draws every unit with the same probability: a 10-token entity is selected whole 15% of the time."""
    words = tokenizer(" ".join(["alpha"] * 30), add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id, *words, tokenizer.sep_token_id]
    example = {"input_ids": ids, "span_starts": [1], "span_ends": [11], "span_kinds": ["entity"]}
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1})
    taken = 0
    for i in range(2000):
        chosen = (collator([{**example, "example_index": i}])["labels"][0, 1:11] != -100).numpy()
        assert chosen.all() or not chosen.any()
        taken += chosen.all()
    assert abs(taken / 2000 - 0.15) < 0.025  # 0.15 +- 3 standard deviations


def test_a_span_opening_on_a_special_token_stays_in_its_segment(tokenizer):
    """A user span [SEP] w w: its unit starts at the first maskable token, never joins the word before [SEP]."""
    text = " ".join(["word"] * 10)
    ids = tokenizer(text, text)["input_ids"]
    sep = ids.index(tokenizer.sep_token_id)
    example = {
        "input_ids": ids,
        "span_starts": [sep],
        "span_ends": [sep + 3],
        "span_kinds": ["entity"],
        "example_index": 0,
    }
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1})
    units, _ = collator.unit_plan(
        example, np.asarray(ids), ~collator.special_table[np.asarray(ids)], example_keys(0, 0, np.array([0]))[0]
    )
    assert units[sep - 1] != units[sep + 1] == units[sep + 2]


def test_capitalization_on_word_starts_without_mlm(tokenizer):
    """Without masking (and without word ids) continuation pieces still carry no capitalization label."""
    ids = tokenizer("hello tokenization worldwide")["input_ids"]
    example = {"input_ids": ids, "capitalization_labels": [0] * len(ids), "example_index": 0}
    config = Bert18Config.from_preset("tiny", pretraining_tasks=["capitalization"])
    labels = PretrainingCollator(tokenizer, config)([example])["capitalization_labels"][0]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert [label == -100 for label in labels.tolist()] == [
        t.startswith("##") or t in ("[CLS]", "[SEP]") for t in tokens
    ]

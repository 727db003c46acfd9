"""ERNIE 1.0 knowledge masking checked against its definition (Baidu's ``ernie/batching.py``, ``mask``).

The reference: a row is cut into units (words, and phrase / entity spans kept whole), every unit is
selected on its own with probability 0.15, and each selected token is [MASK] / random / unchanged
80/10/10. So at every level each kind of unit (plain words, phrases, entities) has 15% of its
tokens predicted, and no unit is ever predicted in part. Measured on the built-in corpus with
BERT's real WordPiece vocabulary (the MiniLM tokenizer), >= 100,000 tokens per level.
"""

import datasets
import numpy as np
import pytest
from helpers import StopAt

from bert18.collators import KnowledgeMaskingCollator
from bert18.collators.knowledge import UNIT_KINDS
from bert18.data import PhraseMiner, capitalized_entity_spans, prepare_pretraining_dataset
from bert18.data.spans import ENTITY_KINDS, span_level

KINDS = ("word", "phrase", "entity")
EPOCHS = 24


@pytest.fixture(scope="module")
def rows(tokenizer, corpus):
    """Packed rows of 128 tokens with mined phrases and capitalized entities as spans."""
    datasets.disable_progress_bars()
    phrases = PhraseMiner(min_count=10).fit(corpus["text"]).matcher()
    packed = prepare_pretraining_dataset(
        corpus, tokenizer, ["mlm"], max_length=128, lexicon=phrases, capitalized_entities=True, word_ids=True
    )  # kept, to check whole words
    return [dict(row) for row in packed]


@pytest.fixture(scope="module")
def layout(rows, tokenizer):
    """Per row: the kind of unit each token belongs to (0 word, 1 phrase, 2 entity; -1 special), and the spans."""
    kinds = []
    special = list(tokenizer.all_special_ids)
    for row in rows:
        kind = np.where(np.isin(np.asarray(row["input_ids"]), special), -1, 0)
        for s, e, k in zip(row["span_starts"], row["span_ends"], row["span_kinds"]):
            kind[s:e] = np.where(kind[s:e] >= 0, KINDS.index(span_level(k)), -1)
        kinds.append(kind)
    return kinds


def masked_epochs(collator, rows, epochs, batch_size=64):
    """Per epoch and row: (labels, corrupted inputs) cut to the row's length."""
    out = []
    for epoch in range(epochs):
        collator.set_epoch(epoch)
        for i in range(0, len(rows), batch_size):
            batch = collator(rows[i : i + batch_size])
            for j, row in enumerate(rows[i : i + batch_size]):
                n = len(row["input_ids"])
                out.append((epoch, i + j, batch["labels"][j, :n].numpy(), batch["input_ids"][j, :n].numpy()))
    return out


def rates(results, rows, layout, tokenizer):
    """Per kind: tokens, share selected, and of the selected the [MASK] / unchanged / random shares."""
    totals = {k: np.zeros(5) for k in KINDS}  # tokens, selected, [MASK], unchanged, random
    for _, index, labels, inputs in results:
        kind = layout[index]
        selected = labels != -100
        for k, name in enumerate(KINDS):
            where = kind == k
            chosen = where & selected
            is_mask = inputs[chosen] == tokenizer.mask_token_id
            same = inputs[chosen] == labels[chosen]
            totals[name] += [where.sum(), chosen.sum(), is_mask.sum(), same.sum(), (~is_mask & ~same).sum()]
    return {
        name: {
            "tokens": int(t[0]),
            "selected": t[1] / t[0],
            "mask": t[2] / t[1],
            "unchanged": t[3] / t[1],
            "random": t[4] / t[1],
        }
        for name, t in totals.items()
    }


@pytest.mark.parametrize("level", ["basic", "phrase", "entity"])
def test_every_unit_kind_is_selected_at_the_target_rate(tokenizer, rows, layout, level):
    """Per level, per unit kind: 15% +- 1.5 pt of its tokens selected; no whole unit of the level in part."""
    collator = KnowledgeMaskingCollator(tokenizer, levels={level: 1.0})
    results = masked_epochs(collator, rows, epochs=EPOCHS)  # entities are rare: many epochs for a tight estimate
    measured = rates(results, rows, layout, tokenizer)
    print(level, {k: (v["tokens"], round(100 * v["selected"], 2)) for k, v in measured.items()})
    assert sum(v["tokens"] for v in measured.values()) / EPOCHS > 100_000
    assert measured["phrase"]["tokens"] > 60_000 and measured["entity"]["tokens"] > 15_000
    for kind in KINDS:
        assert abs(measured[kind]["selected"] - 0.15) < 0.015, (kind, measured[kind])
    partial = whole_spans = 0
    for _, index, labels, _ in results:
        row = rows[index]
        for s, e, k in zip(row["span_starts"], row["span_ends"], row["span_kinds"]):
            if span_level(k) in UNIT_KINDS[level]:
                chosen = labels[s:e] != -100
                whole_spans += 1
                partial += bool(chosen.any() and not chosen.all())
    assert partial == 0 and (level == "basic" or whole_spans > 10_000)


def test_80_10_10_holds_for_every_unit_kind(tokenizer, rows, layout):
    """The replacement is ERNIE's per-token 80/10/10 for words, phrases and entities alike (+- 1.5 pt)."""
    results = []
    for seed, level in enumerate(("basic", "phrase", "entity")):  # other seeds: other replacement draws
        results += masked_epochs(
            KnowledgeMaskingCollator(tokenizer, levels={level: 1.0}, seed=seed + 10), rows, epochs=EPOCHS // 2
        )
    measured = rates(results, rows, layout, tokenizer)
    print({k: [round(100 * v[share], 1) for share in ("mask", "random", "unchanged")] for k, v in measured.items()})
    for kind in KINDS:
        assert abs(measured[kind]["mask"] - 0.8) < 0.015, (kind, measured[kind])
        assert abs(measured[kind]["unchanged"] - 0.1) < 0.015, (kind, measured[kind])
        assert abs(measured[kind]["random"] - 0.1) < 0.015, (kind, measured[kind])


def test_replace_per_unit_draws_once_per_unit(tokenizer, rows):
    """With replace_per_unit a selected entity is all [MASK], all random or all unchanged."""
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1.0}, replace_per_unit=True)
    outcomes = []
    for _, index, labels, inputs in masked_epochs(collator, rows, epochs=4):
        row = rows[index]
        for s, e in zip(row["span_starts"], row["span_ends"]):
            chosen = labels[s:e] != -100
            if chosen.all() and e - s > 1:
                kinds = {
                    "mask" if i == tokenizer.mask_token_id else "same" if i == t else "random"
                    for i, t in zip(inputs[s:e], labels[s:e])
                }
                outcomes.append(len(kinds) == 1 or kinds == {"random", "same"})  # a random draw may hit the original
    assert len(outcomes) > 500 and all(outcomes)


def test_no_word_is_masked_in_part_over_twenty_epochs(tokenizer, rows):
    """Spans cover whole words (the audit found 91 words masked in part at the entity level over 20 epochs)."""
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1.0})
    partial = words = 0
    for _, index, labels, _ in masked_epochs(collator, rows, epochs=20):
        word_ids = np.asarray(rows[index]["word_ids"])
        selected = labels != -100
        real = ~np.isin(np.asarray(rows[index]["input_ids"]), list(tokenizer.all_special_ids))
        # a word is masked in part when its tokens disagree: compare each token with its word's first token
        first = np.r_[True, word_ids[1:] != word_ids[:-1]]
        owner = np.maximum.accumulate(np.where(first, np.arange(len(word_ids)), 0))
        partial += int(np.unique(word_ids[real & (selected != selected[owner])]).size)
        words += int(first[real].sum())
    assert words > 400_000 and partial == 0


def test_spans_never_cut_a_word(tokenizer, corpus):
    """Capitalized entities take words with digits whole: Ascii85, Point2D, W3C never end a span mid-word."""
    text = "We use Ascii85 Encoding here. The Point2D Class and W3C Consortium Rules apply to Python3 Users."
    found = [text[s.start : s.end] for s in capitalized_entity_spans(text)]
    assert found == ["Ascii85 Encoding", "Point2D Class", "W3C Consortium Rules", "Python3 Users"]
    encoded = tokenizer(list(corpus["text"][:300]), add_special_tokens=False, return_offsets_mapping=True)
    cut = 0
    for doc, text in enumerate(corpus["text"][:300]):
        for span in capitalized_entity_spans(text):
            for start, end in encoded["offset_mapping"][doc]:  # no token straddles either end of a span
                cut += start < span.start < end or start < span.end < end
    assert cut == 0


def test_ner_labels_are_entities_and_other_kinds_are_refused(tokenizer):
    """CoNLL / OntoNotes / People's Daily labels mask at the entity level; an unknown kind is named."""
    ids = tokenizer("guido van rossum wrote python at cwi in amsterdam")["input_ids"]
    for kind in ("ORG", "per", "LOC", "GPE", "nr", "ns", "nt", "entity", "MISC"):
        assert span_level(kind) == "entity"
    assert span_level("phrase") == "phrase" and {"PER", "ORG", "LOC", "NR"} <= ENTITY_KINDS
    collator = KnowledgeMaskingCollator(tokenizer, levels={"entity": 1.0}, mlm_probability=0.5)
    example = {"input_ids": ids, "span_starts": [1], "span_ends": [4], "span_kinds": ["PER"]}
    whole = 0
    for index in range(200):
        labels = collator([{**example, "example_index": index}])["labels"][0].numpy()
        chosen = labels[1:4] != -100
        assert chosen.all() or not chosen.any()
        whole += chosen.all()
    assert 70 < whole < 130  # selected as one unit with probability 0.5
    with pytest.raises(ValueError, match=r"example 7, column span_kinds: unknown span kind 'FOOD'"):
        collator([{**example, "span_kinds": ["FOOD"], "example_index": 7}])
    with pytest.raises(ValueError, match="unknown span kind 'FOOD'"):  # refused at the basic level too
        KnowledgeMaskingCollator(tokenizer, levels={"basic": 1.0})([{**example, "span_kinds": ["FOOD"]}])


def test_a_batch_always_has_a_target(tokenizer):
    """Units are drawn on their own; a batch that drew none takes its first unit in line, never an empty loss."""
    ids = tokenizer("two words")["input_ids"]
    collator = KnowledgeMaskingCollator(tokenizer)
    counts = [(collator([{"input_ids": ids, "example_index": i}])["labels"] != -100).sum().item() for i in range(100)]
    assert min(counts) >= 1


# -- levels over training steps (ERNIE's stages) ---------------------------------------------------------------


def _entity_rows(tokenizer, count):
    """Rows whose ten words form one entity: at the basic level they are masked word by word."""
    words = tokenizer(" ".join(["alpha"] * 10), add_special_tokens=False)["input_ids"]
    ids = [tokenizer.cls_token_id, *words, tokenizer.sep_token_id]
    return [
        {"input_ids": ids, "span_starts": [1], "span_ends": [11], "span_kinds": ["entity"], "example_index": i}
        for i in range(count)
    ]


def _levels_seen(batches):
    """Per batch: 'entity' when every row masked its entity all-or-none, else 'basic'."""
    seen = []
    for batch in batches:
        chosen = batch["labels"][:, 1:11] != -100
        whole = (chosen.all(dim=1) | ~chosen.any(dim=1)).all().item()
        seen.append("entity" if whole else "basic")
    return seen


def test_step_schedule_follows_the_optimizer_step(tokenizer):
    """Stage by optimizer step: batch i of an epoch is step start + i // accumulation, in the main process or in
    DataLoader workers (batches dealt in turn), and set_step restarts the count at an epoch or a resume."""
    import torch.utils.data

    rows = _entity_rows(tokenizer, 96)
    collator = KnowledgeMaskingCollator(
        tokenizer, levels={0: {"basic": 1}, 3: {"entity": 1}}, schedule_unit="step", mlm_probability=0.5
    )
    collator.set_step(0, accumulation_steps=2)
    expected = ["basic"] * 6 + ["entity"] * 6  # steps 0, 0, 1, 1, 2, 2, 3, 3, ...
    assert _levels_seen([collator(rows[i : i + 8]) for i in range(0, 96, 8)]) == expected
    for workers in (0, 2, 3):
        collator.set_step(0, accumulation_steps=2)
        loader = torch.utils.data.DataLoader(rows, batch_size=8, collate_fn=collator, num_workers=workers)
        assert _levels_seen(list(loader)) == expected, workers
    collator.set_step(2, accumulation_steps=2)  # a resumed epoch whose first batches were skipped
    assert _levels_seen([collator(rows[i : i + 8]) for i in range(0, 32, 8)]) == ["basic", "basic", "entity", "entity"]
    with pytest.raises(ValueError, match="must start at step 0"):
        KnowledgeMaskingCollator(tokenizer, levels={5: {"entity": 1}}, schedule_unit="step")
    with pytest.raises(ValueError, match="schedule_unit must be"):
        KnowledgeMaskingCollator(tokenizer, schedule_unit="batch")


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_step_schedule_with_persistent_workers_follows_every_epoch_start(tokenizer, workers):
    """Persistent DataLoader workers outlive the epoch: they still see each epoch's start step (shared memory,
    as the epoch) and count their batches from it, so three epochs switch levels at the same steps as masking
    in the main process (the recipe refused persistent workers with a step schedule before)."""
    import torch.utils.data

    rows = _entity_rows(tokenizer, 40)  # five batches of eight per epoch
    collator = KnowledgeMaskingCollator(
        tokenizer, levels={0: {"basic": 1}, 3: {"entity": 1}, 7: {"basic": 1}, 12: {"entity": 1}}, schedule_unit="step"
    )
    loader = torch.utils.data.DataLoader(
        rows, batch_size=8, collate_fn=collator, num_workers=workers, persistent_workers=workers > 0
    )
    seen = []
    for epoch in range(3):
        collator.set_epoch(epoch)
        collator.set_step(epoch * 5)  # as LevelScheduleCallback at each epoch start
        seen += _levels_seen(list(loader))
    assert seen == ["basic"] * 3 + ["entity"] * 4 + ["basic"] * 5 + ["entity"] * 3


def test_step_schedule_in_the_recipe_resumes_exactly(tmp_path, minilm_path):
    """knowledge_schedule through the Trainer: the stages switch at their steps (evaluation batches do not
    count), and a run interrupted at step 3 and resumed, or masked by two persistent workers across its
    epochs, draws the same masks: the same losses as one run."""

    from bert18.training import parse_recipe
    from bert18.training.pretrain import build_pretraining

    common = dict(
        config_overrides={
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "max_position_embeddings": 64,
        },
        max_length=64,
        max_documents=6,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=3,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
        validation_fraction=0.0,
        plot=False,
        tokenizer_name_or_path=minilm_path,
        pretraining_tasks=["mlm"],
        capitalized_entities=True,
        mine_phrases=True,
        phrase_min_count=2,
        knowledge_schedule={0: {"basic": 1}, 2: {"phrase": 1}, 5: {"entity": 1}},
        max_steps=8,
    )
    common.update(max_documents=8, validation_fraction=0.2, eval_strategy="steps", eval_steps=2)

    def train(output, stop=False, **values):
        run = build_pretraining(parse_recipe("tiny-demo", output_dir=str(tmp_path / output), **{**common, **values}))
        knowledge = run.trainer.data_collator.masking
        if stop:
            run.trainer.add_callback(StopAt(3))
        run.trainer.train(resume_from_checkpoint=run.resume_from_checkpoint)
        losses = {e["step"]: e["loss"] for e in run.trainer.state.log_history if "loss" in e}
        return knowledge, losses

    straight, straight_losses = train("straight")
    batches = 8 * 2  # eight steps of two micro-batches
    # steps 0 and 1 (two micro-batches of four rows each) are basic; evaluations come after step 2, in later stages
    assert straight.level_counts["basic"] == 2 * 2 * 4
    assert straight.level_counts["phrase"] >= 3 * 2 * 4 and straight.level_counts["entity"] >= (batches - 10) * 4
    _, first = train("resumed", stop=True)  # stopped after checkpoint-3
    _, second = train("resumed", resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-3"))
    assert {**first, **second} == straight_losses
    # Over three epochs of 17 batches, two persistent workers (dealt 9 and 8 batches of the first) mask each
    # batch at its step as the main process does: the same losses.
    # A last stage at step 12, inside the second epoch.
    staged = dict(
        max_steps=20, knowledge_schedule={0: {"basic": 1}, 2: {"phrase": 1}, 5: {"entity": 1}, 12: {"basic": 1}}
    )
    _, longer = train("longer", **staged)
    _, persistent = train("persistent", dataloader_num_workers=2, dataloader_persistent_workers=True, **staged)
    assert persistent == longer


def test_level_schedule_callback_keeps_evaluation_out_of_the_count(tokenizer):
    from types import SimpleNamespace

    from bert18.collators import LevelScheduleCallback

    rows = _entity_rows(tokenizer, 8)
    collator = KnowledgeMaskingCollator(tokenizer, levels={0: {"basic": 1}, 2: {"entity": 1}}, schedule_unit="step")
    callback = LevelScheduleCallback(collator)
    args, control = SimpleNamespace(gradient_accumulation_steps=1), None
    callback.on_epoch_begin(args, SimpleNamespace(global_step=0), control)
    collator(rows)
    callback.on_step_end(args, SimpleNamespace(global_step=1), control)
    for _ in range(5):  # an evaluation through the same collator
        collator(rows)
    callback.on_evaluate(args, SimpleNamespace(global_step=1), control)
    collator(rows)
    assert collator.step == 1  # the second training batch is step 1, whatever the evaluation masked
    callback.on_epoch_begin(args, SimpleNamespace(global_step=7), control)
    collator(rows)
    assert collator.step == 7

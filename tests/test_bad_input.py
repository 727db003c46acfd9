"""Bad input is a clear one-line error naming the argument, column or file and the fix (issue 17, part 2)."""

import json

import numpy as np
import pytest

from bert18 import Bert18Config
from bert18.collators import KnowledgeMaskingCollator, MLMCollator, PretrainingCollator

# -- item 7: config strictness ----------------------------------------------------------------------------------


def test_unknown_config_keys_are_refused_with_the_closest(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'hiden_size'; did you mean 'hidden_size'"):
        Bert18Config(hiden_size=64)
    with pytest.raises(ValueError, match="did you mean 'num_attention_heads'"):
        Bert18Config.from_preset("tiny", num_attention_head=4)
    assert not list(tmp_path.iterdir())
    Bert18Config(num_labels=3, bos_token_id=1, torch_dtype="float32")  # PreTrainedConfig's own keywords stay


def test_configs_written_by_other_versions_still_load(tmp_path):
    """Extra keys in config.json (a newer bert18 wrote them) load as attributes, as transformers does."""
    import json

    import transformers

    Bert18Config.from_preset("tiny").save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    written["a_future_option"] = 7
    (tmp_path / "config.json").write_text(json.dumps(written))
    assert Bert18Config.from_pretrained(tmp_path).a_future_option == 7
    assert transformers.AutoConfig.from_pretrained(tmp_path).a_future_option == 7
    assert Bert18Config.from_dict(written).hidden_size == 64


# -- items 9 and 10: collator arguments and inputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"granularity": "ngram", "max_ngram": 0}, "max_ngram must be a positive integer"),
        ({"granularity": "span", "max_span": -2}, "max_span must be a positive integer"),
        ({"granularity": "span", "span_p": 1.5}, r"span_p must lie in \(0, 1\]"),
        ({"mlm_probability": 0.0}, r"mlm_probability must lie in \(0, 1\)"),
        ({"mlm_probability": 1.2}, r"mlm_probability must lie in \(0, 1\)"),
        ({"mask_count_per_batch": 0}, "mask_count_per_batch must be a positive integer"),
    ],
)
def test_collator_arguments_are_checked_in_the_constructor(tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLMCollator(tokenizer, **kwargs)


def test_collator_inputs_name_the_column_and_the_fix(tokenizer):
    ids = tokenizer("hello tokenization worldwide")["input_ids"]
    for collator in (MLMCollator(tokenizer, granularity="whole_word"), KnowledgeMaskingCollator(tokenizer)):
        with pytest.raises(ValueError, match=r"example 3: column 'word_ids' has 2 entries for 6 tokens"):
            collator([{"input_ids": ids, "word_ids": [0, 1], "example_index": 3}])
        with pytest.raises(ValueError, match=r"column 'special_tokens_mask' has 9 entries for 6 tokens"):
            collator([{"input_ids": ids, "special_tokens_mask": [0] * 9, "example_index": 3}])
        with pytest.raises(
            ValueError,
            match=r"example 4, column 'input_ids': id 40000 is outside the tokenizer's "
            r"vocabulary of 30522 ids",
        ):
            collator([{"input_ids": [*ids[:-1], 40000, ids[-1]], "example_index": 4}])
        with pytest.raises(ValueError, match="id -1 is outside"):
            collator([{"input_ids": [*ids[:-1], -1, ids[-1]], "example_index": 4}])
        with pytest.raises(ValueError, match=r"column 'example_index' must hold non-negative integers.*got -2"):
            collator([{"input_ids": ids, "example_index": -2}])
    assert MLMCollator(tokenizer)([{"input_ids": ids, "example_index": np.int64(2)}])["labels"].shape == (1, 6)


def test_capitalization_without_labels_says_how_to_prepare(tokenizer):
    config = Bert18Config.from_preset("tiny", pretraining_tasks=["mlm", "capitalization"])
    collator = PretrainingCollator(tokenizer, config)
    ids = tokenizer("hello world")["input_ids"]
    with pytest.raises(
        ValueError,
        match="column 'capitalization_labels' is empty: the rows were prepared without "
        "capitalization; prepare them again with 'capitalization' in the tasks",
    ):
        collator([{"input_ids": ids, "capitalization_labels": [], "example_index": 0}])
    with pytest.raises(ValueError, match="has 2 labels for 4 tokens"):
        collator([{"input_ids": ids, "capitalization_labels": [0, 1], "example_index": 0}])


# -- items 7, 8, 9: recipe arguments ------------------------------------------------------------------------------

TINY = "tiny-demo"


def _minilm_finetuning(tmp_path, minilm_path, config_overrides: dict, from_scratch: bool):
    """The finetune-modules recipe on MiniLM with ``config_overrides``, from its weights or from random ones."""
    from bert18.training.finetune_arguments import parse_finetune_recipe

    return parse_finetune_recipe(
        "finetune-modules",
        [f"--config_overrides={json.dumps(config_overrides)}"],
        model_name_or_path=minilm_path,
        from_scratch=from_scratch,
        output_dir=str(tmp_path / f"finetuned-{from_scratch}"),
        use_cpu=True,
    )


def test_overrides_that_change_a_checkpoints_encoder_are_refused(tmp_path, minilm_path):
    """Continuing or fine-tuning MiniLM with rotary positions would silently drop its trained position table:
    refused. Fewer layers, new task embeddings and a fine-tuning from random weights pass."""
    from bert18.training import parse_recipe
    from bert18.training.pretrain import build_model, build_pretraining

    common = dict(
        output_dir=str(tmp_path / "run"),
        model_name_or_path=minilm_path,
        tokenizer_name_or_path=minilm_path,
        corpus="builtin",
        pretraining_tasks=["mlm"],
        use_cpu=True,
    )
    rotary = parse_recipe("roberta-base", ['--config_overrides={"position_embedding_type": "rotary"}'], **common)
    with pytest.raises(ValueError, match=r"encoder does not fit .* 1 of its weights would be dropped .*position_emb"):
        build_model(rotary, None)
    assert build_pretraining(parse_recipe("roberta-base", [], **common, max_documents=8)).trainer

    # what an override removes or adds by design passes: the layers above a smaller depth, ERNIE's task embeddings
    fewer = parse_recipe("roberta-base", ['--config_overrides={"num_hidden_layers": 3, "use_task_id": true}'], **common)
    assert build_model(fewer, None).config.num_hidden_layers == 3

    from bert18.training.finetune import build_finetuning

    def finetuning(from_scratch: bool):
        return _minilm_finetuning(tmp_path, minilm_path, {"position_embedding_type": "rotary"}, from_scratch)

    with pytest.raises(ValueError, match="encoder does not fit"):
        build_finetuning(finetuning(from_scratch=False))
    assert build_finetuning(finetuning(from_scratch=True)).trainer  # its weights start random anyway


def test_a_from_scratch_recipes_model_sizes_on_a_checkpoint_are_refused_in_one_line(tmp_path, minilm_path):
    """tiny-demo sets the demo model's sizes (H=128): continuing MiniLM (H=384) under it failed deep in
    transformers' loading with a RuntimeError about ignore_mismatched_sizes; refused in one line naming the
    overrides, for pretraining and fine-tuning alike; fine-tuning from random weights takes any sizes."""
    from bert18.training import parse_recipe
    from bert18.training.finetune import build_finetuning
    from bert18.training.pretrain import build_model, build_pretraining

    recipe = parse_recipe(TINY, model_name_or_path=minilm_path, output_dir=str(tmp_path / "run"), use_cpu=True)
    with pytest.raises(ValueError, match=r"resize .*model's weights: hidden_size=128 \(the checkpoint has 384\), inte"):
        build_pretraining(recipe)  # before the recipe is written or the corpus prepared
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"weights do not have the shapes this run asks for .*'hidden_size': 128"):
        build_model(recipe, None)  # the check at loading, for what the one above does not know

    def finetuning(from_scratch: bool):
        return _minilm_finetuning(tmp_path, minilm_path, {"intermediate_size": 512}, from_scratch)

    with pytest.raises(ValueError, match=r"weights do not have the shapes .*'intermediate_size': 512"):
        build_finetuning(finetuning(from_scratch=False))
    scratch = build_finetuning(finetuning(from_scratch=True)).trainer.model  # its weights start random anyway
    assert scratch.config.intermediate_size == 512


def test_config_overrides_are_checked_and_merged():
    from bert18.training import parse_recipe

    with pytest.raises(ValueError, match="config_overrides: unknown config key 'hiden_size'; did you mean"):
        parse_recipe(TINY, ['--config_overrides={"hiden_size": 64}'])
    recipe = parse_recipe(TINY, ["--config_overrides", '{"num_hidden_layers": 1}'])
    assert recipe.model.config_overrides == {
        "hidden_size": 128,
        "num_attention_heads": 2,
        "intermediate_size": 512,
        "max_position_embeddings": 128,
        "position_embedding_type": "rotary",
        "num_hidden_layers": 1,
    }
    weights = parse_recipe(TINY, ['--task_loss_weights={"mlm": 2}', '--task_loss_weights={"capitalization": 0.5}'])
    assert weights.model.task_loss_weights == {"mlm": 2, "capitalization": 0.5}
    with pytest.raises(ValueError, match="config_overrides must be a mapping"):
        parse_recipe(TINY, ["--config_overrides=[1, 2]"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--max_steps=-5", "max_steps must be a positive number of optimizer steps, or -1"),
        ("--max_steps=0", "max_steps must be a positive number"),
        ("--max_ngram=0", r"max_ngram must be a positive integer \(the longest n-gram"),
        ("--max_span=-1", "max_span must be a positive integer"),
        ("--span_p=1.5", r"span_p must lie in \(0, 1\]"),
        ("--mlm_probability=1.5", r"mlm_probability must lie in \(0, 1\)"),
        ("--mlm_probability=0", r"mlm_probability must lie in \(0, 1\)"),
        ("--random_replace_prob=0.5", "mask_replace_prob \\+ random_replace_prob must be at most 1"),
        ("--max_length=2", "max_length must leave room"),
        ("--per_device_train_batch_size=0", "per_device_train_batch_size must be a positive integer"),
        ('--knowledge_levels={"sentence": 1}', "knowledge_levels: unknown masking level"),
    ],
)
def test_recipe_arguments_are_checked_when_read(override, message):
    from bert18.training import parse_recipe

    with pytest.raises(ValueError, match=message):
        parse_recipe(TINY, [override])

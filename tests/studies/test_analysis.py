"""lit_gpt/studies/analysis.py: the metrics a study can declare, per-item scores of runs, the primary comparisons with
Holm's correction, the A/A control outside the family, one seed (McNemar), and the length-controlled view."""

import numpy as np
import pytest

from lit_gpt.eval.statistics import compare_arms
from lit_gpt.studies.analysis import (arm_matrix, check_primary_metric, item_scores, length_adjusted, metric,
                                      metric_spread, study_statistics)
from lit_gpt.utils import UserError


def evaluation(passed, echo=None, words=None, nll=None) -> dict:
    passed = [bool(v) for v in passed]
    return {"losses": {"held_out": {"answer_nll": list(nll)}} if nll is not None else {},
            "ifeval": {"prompt_loose": passed, "prompt_strict": passed, "echo": echo or [False] * len(passed),
                       "answer_words": list(words) if words is not None else [10] * len(passed)}}


def arm(name, role, runs) -> dict:
    return {"name": name, "role": role, "runs": [{"evaluation": e} for e in runs]}


def test_metrics_and_their_checks():
    assert metric("answer_nll:gpt4").reference_set == "gpt4" and not metric("answer_nll:gpt4").pass_fail
    assert metric("answer_nll").reference_set == "held_out" and metric("ifeval_prompt_loose_no_echo").pass_fail
    with pytest.raises(UserError, match="--primary_metric 'ifeval_accuracy': use one of"):
        metric("ifeval_accuracy")
    with pytest.raises(UserError, match="IFEval is off"):
        check_primary_metric("ifeval_prompt_loose", 0, 100, [])
    with pytest.raises(UserError, match="'lima' is not one of --reference_sets \\(gpt4\\)"):
        check_primary_metric("answer_nll:lima", 32, 100, ["gpt4"])
    with pytest.raises(UserError, match="no answers are scored"):
        check_primary_metric("answer_nll", 32, 0, [])


def test_item_scores_with_echoes_failed():
    run = evaluation([1, 1, 0, 1], echo=[False, True, True, False], nll=[2.0, 3.0, 1.0, 2.5])
    assert item_scores(run, "ifeval_prompt_loose") == [1.0, 1.0, 0.0, 1.0]
    assert item_scores(run, "ifeval_prompt_loose_no_echo") == [1.0, 0.0, 0.0, 1.0]
    assert item_scores(run, "answer_nll") == [2.0, 3.0, 1.0, 2.5]
    assert item_scores(run, "answer_nll:gpt4") is None  # not measured
    two = arm("a", "arm", [run, evaluation([0, 0, 0, 1], nll=[1.0] * 4)])
    assert arm_matrix(two, "answer_nll").shape == (2, 4)
    mean, sd = metric_spread(two, "ifeval_prompt_loose")
    assert mean == pytest.approx(0.5) and sd == pytest.approx(np.std([0.75, 0.25], ddof=1))


def simulated_arm(rng, name, role, seeds, items, p):
    return arm(name, role, [evaluation(rng.random(items) < p) for _ in range(seeds)])


def test_primary_comparisons_are_holm_corrected_and_the_aa_control_is_apart():
    rng = np.random.default_rng(0)
    arms = [simulated_arm(rng, "base", "baseline", 3, 300, 0.3), simulated_arm(rng, "better", "arm", 3, 300, 0.6),
            simulated_arm(rng, "same", "arm", 3, 300, 0.3), simulated_arm(rng, "base-aa", "aa_control", 3, 300, 0.3),
            arm("untrained", "base", [evaluation([0] * 300)])]
    stats = study_statistics(arms, "ifeval_prompt_loose")
    better, same = stats["comparisons"]
    assert [better["arm"], same["arm"]] == ["better", "same"]  # base and reference rows are not tested
    assert better["significant"] and better["difference"] == pytest.approx(0.3, abs=0.05)
    assert better["p_adjusted"] == pytest.approx(min(1.0, 2 * min(better["p_value"], same["p_value"])))
    assert not same["significant"] and same["seeds_b"] == 3 and same["items"] == 300
    assert "Satterthwaite" in better["test"] and better["mde"] > 0
    aa = stats["aa_control"]
    assert aa["arm"] == "base-aa" and aa["p_adjusted"] is None and not aa["significant"]
    assert [e["arm"] for e in stats["length"]] == ["base", "better", "same", "base-aa"]


def test_one_seed_pass_fail_uses_mcnemar():
    a = [0] * 20 + [1] * 20
    b = [1] * 6 + [0] * 14 + [1] * 20  # 6 discordant items, all b's
    stats = study_statistics([arm("a", "baseline", [evaluation(a)]), arm("b", "arm", [evaluation(b)])],
                             "ifeval_prompt_strict")
    (d,) = stats["comparisons"]
    assert d["test"] == "exact McNemar test (one seed: item noise only)"
    assert d["p_value"] == pytest.approx(2 * 0.5 ** 6) and d["difference"] == pytest.approx(6 / 40)
    loss = study_statistics([arm("a", "baseline", [evaluation(a, nll=np.arange(40.0))]),
                             arm("b", "arm", [evaluation(b, nll=np.arange(40.0) + 0.1)])], "answer_nll")
    assert loss["comparisons"][0]["test"] == "paired t test over items (one seed: item noise only)"
    assert loss["length"] == []  # the reference answers are the same for every arm: nothing to adjust


def test_a_pure_length_effect_disappears_when_adjusted():
    rng = np.random.default_rng(1)
    seeds, items = 3, 200
    words_a = 50 + rng.normal(0, 20, (seeds, items))
    words_b = 100 + rng.normal(0, 20, (seeds, items))  # arm B answers twice as long ...
    item = rng.normal(0, 0.5, items)

    def score(words):  # ... and length is all that decides the score
        return item + 0.01 * words + rng.normal(0, 0.1, words.shape)

    a, b = score(words_a), score(words_b)
    assert compare_arms(a, b).significant  # raw: B looks better
    adjusted = length_adjusted(a, b, words_a, words_b)
    assert abs(adjusted.difference) < 0.05 and not adjusted.significant

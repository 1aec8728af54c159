"""lit_gpt/studies/report.py: the report of a study written from hand-made runs (their statistics computed by
lit_gpt.studies.analysis): the claim table with the primary metric, its interval, MDE and seed spread, the A/A and
MDE lines, the untested tables, and the plot's panels."""

import copy
import struct

import pytest

from lit_gpt.studies.analysis import study_statistics
from lit_gpt.studies.report import (arms_table, length_table, loss_table, markdown_report, markdown_table, mde_note,
                                    plot_comparison, primary_table)

ITEMS = 32


def run_record(seed, passes, nll_shift=0.0, words=10, echoes=0) -> dict:
    """A run whose first `passes` IFEval prompts pass (the first `echoes` of them by echoing), with answer losses."""
    passed = [i < passes for i in range(ITEMS)]
    nll = [1.0 + 0.1 * (i % 5) + nll_shift for i in range(6)]
    losses = {"answers": 6, "cut": 1, "answer_nll": nll, "answer_nll_no_eos": [x + 0.2 for x in nll],
              "token_nll": sum(nll) / 6 - 0.05, "token_nll_no_eos": sum(nll) / 6 + 0.1, "tokens": 60,
              "tokens_no_eos": 54}
    ifeval = {"prompt_level_strict_acc": passes / ITEMS, "prompt_level_loose_acc": passes / ITEMS,
              "prompt_strict": passed, "prompt_loose": passed, "echo": [i < echoes for i in range(ITEMS)],
              "answer_words": [words + i % 3 for i in range(ITEMS)], "finished_share": 0.5}
    return {"seed": seed, "train_examples": 100, "cut_share": 0.25, "steps": 10, "tokens_read": 8000, "epochs": 1.0,
            "final_train_loss": 1.5 + seed / 1000, "train_seconds": 60.0, "eval_seconds": 20.0, "epoch_curve": [],
            "evaluation": {"losses": {"held_out": losses}, "ifeval": ifeval, "answers": [], "eos_rate": None}}


def arm(name, role, runs, **extra) -> dict:
    return {"name": name, "role": role, "data_dir": f"data/{name}", "order": "shuffle", "epochs": None,
            "draw_rows": None, "seeds": [r["seed"] for r in runs], "contaminated": {"held_out": 0}, "runs": runs,
            **extra}


def comparison(seeds=(1, 2, 3), primary="ifeval_prompt_loose", **changes) -> dict:
    k = len(seeds)
    arms = [arm("alpaca", "baseline", [run_record(s, p) for s, p in zip(seeds, (8, 9, 7)[:k])]),
            arm("lima", "arm", [run_record(s, p, -0.3, words=40, echoes=2) for s, p in zip(seeds, (20, 22, 21)[:k])]),
            arm("alpaca-aa", "aa_control", [run_record(s + 10, p) for s, p in zip(seeds, (9, 7, 8)[:k])]),
            {**arm("base (untrained)", "base", [{**run_record(0, 1), "seed": None}]), "data_dir": None,
             "checkpoint_dir": "checkpoints/base"}]
    full = {"checkpoint_dir": "checkpoints/base", "method": "lora", "hyperparameters": {"learning_rate": 0.001},
            "seeds": list(seeds), "token_budget": None, "batch_size": 8, "max_seq_length": 256,
            "eval_set": "held_out.json: 20 prompts, 6 with a reference answer", "reference_sets": {
                "held_out": "held_out.json: 20 prompts, 6 with a reference answer"}, "prompts": [],
            "max_new_tokens": 64, "ifeval_prompts": ITEMS, "ifeval_max_new_tokens": 128, "judge": None,
            "arms": arms, "study": None, "wall_seconds": 150.0}
    full["statistics"] = study_statistics(arms, primary)
    return {**full, **changes}


def table_rows(text: str) -> list:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]


def test_the_claim_table_shows_the_primary_metric_with_interval_mde_and_seed_spread():
    c = comparison()
    header, _, baseline, lima, aa, base = table_rows(primary_table(c))
    assert header == ["arm", "seeds", "ifeval_prompt_loose (%; mean ± seed SD)",
                      "difference from alpaca [95% interval]", "p", "p (Holm)", "min. detectable effect", "test",
                      "verdict"]
    assert baseline == ["alpaca", "3", "25.0 ± 3.1", "baseline", "–", "–", "–", "–", "–"]
    d = c["statistics"]["comparisons"][0]
    assert lima[:3] == ["lima", "3", "65.6 ± 3.1"]
    assert lima[3] == f"{100 * d['difference']:+.1f} [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"
    assert lima[5] == lima[4]  # one comparison: Holm changes nothing
    assert lima[6] == f"{100 * d['mde']:.1f}" and lima[7].startswith("t test over seeds and items")
    assert lima[8] == "significant: better"
    assert aa[0] == "alpaca-aa (A/A control)" and aa[5] == "not in the family"
    assert aa[8] == "not significant (as it must be)"
    assert base == ["base (untrained)", "–", "3.1", "not tested", "–", "–", "–", "–", "–"]


def test_a_loss_is_lower_is_better():
    c = comparison(primary="answer_nll")
    _, _, baseline, lima, *_ = table_rows(primary_table(c))
    assert baseline[2] == "1.167 ± 0.000" and lima[2] == "0.867 ± 0.000" and lima[8] == "significant: better"
    assert "lower is better" in primary_table(c).splitlines()[2]
    assert length_table(c) == ""  # nothing to adjust: every arm is scored on the same reference answers


def test_the_aa_and_mde_lines():
    report = markdown_report(comparison())
    assert ("A/A control: alpaca-aa is the baseline alpaca trained again with seeds 11, 12, 13; difference "
            in report) and "the method calls it not significant, as it must." in report
    assert ("with 3 seed(s) per arm on 32 of IFEval's 541 prompts (a reduced size: on all 541 the design would "
            "detect smaller effects)") in report
    assert '"no detectable difference" is not "no difference"' in report
    assert "Holm-corrected over the study's 1 comparison(s)" in report
    assert "One seed per arm" not in report


def test_a_miscalibrated_test_is_called_out():
    c = comparison()
    c["statistics"]["aa_control"]["p_value"] = 0.01
    assert "SIGNIFICANT although both arms are the same condition" in markdown_report(c)
    assert table_rows(primary_table(c))[4][8] == "SIGNIFICANT: the test is miscalibrated"


def test_one_seed_says_item_noise_only():
    c = comparison(seeds=(1,))
    d = c["statistics"]["comparisons"][0]
    assert d["test"] == "exact McNemar test (one seed: item noise only)"
    report = markdown_report(c)
    assert "One seed per arm: item noise only" in report
    assert table_rows(primary_table(c))[3][2] == "62.5"  # lima: no spread to show for one seed


def test_the_untested_tables():
    c = comparison()
    header, _, baseline, lima, *_ = table_rows(arms_table(c))
    assert header[:10] == ["arm", "data", "order", "epochs", "train ex.", "cut at max_seq_length %", "steps",
                           "tokens read (≈)", "final train loss", "answer NLL, per answer (held-out)"]
    assert baseline[5] == "25.0 ± 0.0" and baseline[8] == "1.502 ± 0.001"
    assert header[10:] == ["contaminated prompts", "IFEval prompt strict %", "IFEval prompt loose %",
                           "loose, echoes failed %", "echo answers", "passes by echo", "answer words",
                           "IFEval answers ended %"]
    assert lima[11:16] == ["65.6 ± 3.1", "65.6 ± 3.1", "59.4 ± 3.1", "2.0 ± 0.0", "2.0 ± 0.0"]
    header, _, *rows = table_rows(loss_table(c))
    assert header == ["arm", "answer style", "answers (cut)", "per answer", "per answer, no EOS", "token-weighted",
                      "token-weighted, no EOS"]
    assert rows[0] == ["alpaca", "held_out", "6 (1)", "1.167 ± 0.000", "1.367 ± 0.000", "1.117 ± 0.000",
                       "1.267 ± 0.000"]
    header, _, *rows = table_rows(length_table(c))
    assert [r[0] for r in rows] == ["alpaca", "lima", "alpaca-aa"] and rows[0][2] == "baseline"
    assert rows[1][1] == "41.0 ± 0.0"


def test_the_report_says_what_was_compared_and_how():
    study = {"question": "Does quality win?", "recipe": "recipes/q.yaml", "build": ["python scripts/a.py ..."],
             "build_seconds": 12.0,
             "machine": {"cpu": "Test CPU", "cores": 2, "load_average_before": [0.5, 0.25, 0.125]}}
    report = markdown_report(comparison(study=study))
    assert report.startswith("# Does quality win?\n\nRecipe `recipes/q.yaml`; data built by:\n\n```\n"
                             "python scripts/a.py ...\n```\n\n**The claim: IFEval prompt-level loose accuracy")
    assert markdown_table(comparison()) in report
    assert "every run trained the same steps (examples), not the same tokens" in report
    assert "base (untrained): `checkpoints/base` without fine-tuning" in report
    assert report.endswith("Wall time 2.5 min (data build 12 s; alpaca: train 180 s, eval 60 s, lima: train 180 s, "
                           "eval 60 s, alpaca-aa: train 180 s, eval 60 s) on Test CPU, 2 cores, load average before "
                           "0.50, 0.25, 0.12.\n")
    assert "equal tokens, not equal examples" in markdown_report(comparison(token_budget=10000))


def png_size(path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("primary, curves, panels", [
    ("ifeval_prompt_loose", False, 2),  # the primary metric and the answer NLL
    ("answer_nll", False, 2),  # the primary metric and IFEval loose
    ("answer_nll", True, 3),  # the per-epoch curves beside the bars
])
def test_the_plot_has_a_panel_per_measure(tmp_path, primary, curves, panels):
    c = comparison(primary=primary)
    if curves:
        for run in c["arms"][0]["runs"]:
            run["epoch_curve"] = [{"epoch": 1.0, "train_loss": 1.6, "val_loss": 1.65},
                                  {"epoch": 2.0, "train_loss": 1.1, "val_loss": 1.63}]
    plot_comparison(copy.deepcopy(c), tmp_path / "comparison.png")
    assert png_size(tmp_path / "comparison.png") == (400 * panels, 350)  # 4 x 3.5 inches per panel at 100 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["comparison.png"]


def test_mde_note_for_a_loss():
    assert "on 6 reference answers (held_out)" in mde_note(comparison(primary="answer_nll"))

"""lit_gpt/studies/report.py: the comparison report of two variants written by hand (their paired differences made by
lit_gpt.eval.bootstrap), cell by cell: the table's columns as the comparison has them, the differences and their
significance, the notes, and the plot's panels."""

import copy
import struct

import pytest

from lit_gpt.eval.bootstrap import PairedDifference
from lit_gpt.studies.report import markdown_report, markdown_table, plot_comparison, significance_notes


def paired(difference, low, high, items=50) -> dict:
    return PairedDifference(difference, low, high, items, resamples=1000).to_dict()


def ifeval_scores(strict, loose, finished):
    return {"prompt_level_strict_acc": strict, "inst_level_strict_acc": strict + 0.1, "prompt_level_loose_acc": loose,
            "inst_level_loose_acc": loose + 0.1, "finished_share": finished}


BASELINE = {"variant": "full", "data_dir": "data/full", "order": "shuffle", "epochs": 1, "train_examples": 1000,
            "steps": 30, "weights_from_step": 30, "final_train_loss": 1.5, "best_val_loss": 1.62, "eval_loss": 1.7,
            "eos_rate": 0.75, "contaminated_prompts": 0, "ifeval": ifeval_scores(0.25, 0.3, 0.9), "vs_baseline": {},
            "train_seconds": 60.0, "eval_seconds": 20.0,
            "epoch_curve": [{"epoch": 1.0, "train_loss": 1.6, "val_loss": 1.65}]}
FILTERED = {"variant": "filtered", "data_dir": "data/filtered", "order": "sorted", "epochs": 2, "train_examples": 400,
            "steps": 24, "weights_from_step": 12, "final_train_loss": 1.2, "best_val_loss": None, "eval_loss": 1.65,
            "eos_rate": 0.5, "contaminated_prompts": 3, "ifeval": ifeval_scores(0.271, 0.3, 1.0),
            "win_rate": 0.6, "wins": 5, "ties": 2, "losses": 3, "order_consistent": 0.8,
            "train_seconds": 30.0, "eval_seconds": 21.0,
            "epoch_curve": [{"epoch": 1.0, "train_loss": 1.4, "val_loss": 1.6},
                            {"epoch": 2.0, "train_loss": 1.1, "val_loss": 1.63}],
            "vs_baseline": {"answer_nll": paired(-0.05, -0.08, -0.02),
                            "ifeval_prompt_strict": paired(0.021, -0.010, 0.053),
                            "ifeval_prompt_loose": paired(0.0, -0.02, 0.02)}}


def comparison(**changes) -> dict:
    full = {"checkpoint_dir": "checkpoints/tiny", "method": "lora", "hyperparameters": {"learning_rate": 0.001},
            "eval_set": "held_out.json: 20 prompts, 20 with a reference answer", "eval_examples": 20,
            "prompts": [{"instruction": f"q{i}"} for i in range(10)], "max_new_tokens": 64, "ifeval_prompts": 50,
            "ifeval_max_new_tokens": 256, "judge": {"baseline": "full", "checkpoint_dir": "checkpoints/judge",
                                                    "tie_band": 0.05},
            "variants": [copy.deepcopy(BASELINE), copy.deepcopy(FILTERED)], "study": None, "wall_seconds": 150.0}
    return {**full, **changes}


def table_rows(text: str) -> list:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines()]


def test_the_plain_table():
    plain = [{**row, "ifeval": None, "weights_from_step": row["steps"]} for row in (BASELINE, FILTERED)]
    header, rule, *rows = table_rows(markdown_table(comparison(variants=plain, prompts=[], judge=None)))
    assert header == ["variant", "data", "order", "epochs", "train ex.", "steps", "final train loss", "best val loss",
                      "eval loss", "contaminated prompts"]
    assert rule == ["---"] * len(header)
    assert rows == [["full", "`data/full`", "shuffle", "1", "1000", "30", "1.500", "1.620", "1.700", "0"],
                    ["filtered", "`data/filtered`", "sorted", "2", "400", "24", "1.200", "–",
                     "1.650 (-0.050 [-0.080, -0.020])", "3"]]  # significant: no "n.s."


def test_the_full_table():
    header, _, baseline, filtered = table_rows(markdown_table(comparison()))
    assert header == ["variant", "data", "order", "epochs", "train ex.", "steps", "weights of step",
                      "final train loss", "best val loss", "eval loss", "EOS rate", "contaminated prompts",
                      "IFEval prompt strict", "IFEval inst strict", "IFEval prompt loose", "IFEval inst loose",
                      "IFEval answers ended", "win rate vs full"]
    assert baseline[6:] == ["30", "1.500", "1.620", "1.700", "75%", "0", "25.0", "35.0", "30.0", "40.0", "90%",
                            "baseline"]
    # differences in accuracy points with their 95% interval; n.s. where it contains 0
    assert filtered[6:] == ["12", "1.200", "–", "1.650 (-0.050 [-0.080, -0.020])", "50%", "3",
                            "27.1 (+2.1 [-1.0, +5.3] n.s.)", "37.1", "30.0 (+0.0 [-2.0, +2.0] n.s.)", "40.0", "100%",
                            "60% (5-2-3)"]


def test_a_variant_without_ifeval_scores_gets_dashes():
    variants = comparison()["variants"]
    variants[1]["ifeval"] = None
    _, _, _, filtered = table_rows(markdown_table(comparison(variants=variants)))
    assert filtered[12:17] == ["–"] * 5


def test_significance_notes():
    assert significance_notes(comparison()) == [
        "filtered vs full: eval loss: significant; IFEval prompt-level strict: n.s., ~113 IFEval prompts (now 50) "
        "would be needed to show a difference of this size; IFEval prompt-level loose: no difference at all."]
    variants = comparison()["variants"]
    variants[1]["vs_baseline"] = {}
    assert significance_notes(comparison(variants=variants)) == []  # nothing compared, nothing said


def test_the_report_says_what_was_compared_and_how():
    study = {"question": "Does filtering help?", "recipe": "recipes/filter.yaml",
             "build": ["python scripts/score_data.py ...", "python scripts/filter_data.py ..."], "build_seconds": 12.0,
             "machine": {"cpu": "Test CPU", "cores": 2, "load_average_before": [0.5, 0.25, 0.125]}}
    report = markdown_report(comparison(study=study))
    assert report.startswith("# Does filtering help?\n\nRecipe `recipes/filter.yaml`; data built by:\n\n```\n"
                             "python scripts/score_data.py ...\npython scripts/filter_data.py ...\n```\n\n"
                             "| variant | data |")
    notes = report.split("\n\n")
    assert "Model: `checkpoints/tiny` (lora), same hyperparameters and seed for every variant: " \
           "`{\"learning_rate\": 0.001}` (the rest: the defaults finetune/lora.py ships with)." in notes
    assert ("Held-out set: held_out.json: 20 prompts, 20 with a reference answer. Eval loss: mean NLL of the "
            "reference answers' tokens of 20 examples. EOS rate: greedy answers to 10 prompts that stop within 64 new "
            "tokens. Best val loss: each variant's own test set (not comparable across data).") in notes
    assert any(n.startswith("IFEval: 50 prompts, greedy, at most 256 new tokens") for n in notes)
    assert any(n.startswith("Win rate: judge `checkpoints/judge` compares each variant's answer with full's on the "
                            "same 10 prompts") and "within 0.5 ± 0.05" in n for n in notes)
    assert any(n.startswith("Judge consistency (prompts on which it picked the same answer in both orders): "
                            "filtered: 80%.") for n in notes)
    assert notes[-1] == ("Wall time 2.5 min (data build 12 s; full: train 60 s, eval 20 s, filtered: train 30 s, "
                         "eval 21 s) on Test CPU, 2 cores, load average before 0.50, 0.25, 0.12.\n")


def test_a_report_without_study_judge_or_ifeval():
    report = markdown_report(comparison(judge=None, ifeval_prompts=0, prompts=[]))
    assert report.startswith("# Dataset comparison\n\n| variant |")
    assert "Win rate" not in report and "IFEval: " not in report and "EOS rate:" not in report
    assert "Wall time" not in report


def png_size(path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("extras, panels", [
    ((), 1),  # eval loss only
    (("eos_rate",), 2),
    (("eos_rate", "ifeval", "win_rate"), 4),
    (("eos_rate", "ifeval", "win_rate", "epoch_curve"), 5),  # the per-epoch curves beside the bars
])
def test_the_plot_has_a_panel_per_measure(tmp_path, extras, panels):
    measures = ("eos_rate", "ifeval", "win_rate", "epoch_curve")
    rows = [{k: v for k, v in copy.deepcopy(row).items() if k not in measures or k in extras}
            for row in (BASELINE, FILTERED)]
    plot_comparison(rows, tmp_path / "comparison.png")
    assert png_size(tmp_path / "comparison.png") == (400 * panels, 350)  # 4 x 3.5 inches per panel at 100 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["comparison.png"]
    assert ("ifeval_prompt_strict" in rows[1]) == ("ifeval" in extras)

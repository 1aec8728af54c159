"""scripts/compare_evaluations.py: several evaluate.py folders (training seeds) against a baseline's."""

import json
import random

from helpers import ROOT, assert_one_line_error, run_as_main

SCRIPT = ROOT / "scripts" / "compare_evaluations.py"


def evaluation(folder, rng, p, nll_shift=0.0, prompts=tuple(f"p{i}" for i in range(20))):
    """An evaluate.py out_dir of 20 IFEval prompts (or `prompts`) and 15 reference answers."""
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"settings": {"ifeval_path": None}}))  # the shared IFEval file
    (folder / "ifeval_responses.jsonl").write_text("".join(json.dumps(
        {"prompt": text, "response": "...", "strict": [rng.random() < p], "loose": [rng.random() < p]}) + "\n"
        for text in prompts))
    (folder / "reference_loss.jsonl").write_text("".join(json.dumps(
        {"id": f"r{i}", "instruction": f"q{i}", "nll": (1.5 + nll_shift + rng.gauss(0, 0.1)) * 10, "tokens": 10}) + "\n"
        for i in range(15)))
    return folder


def test_runs_against_a_baseline_are_written_and_printed(tmp_path, capsys):
    rng = random.Random(0)
    base = evaluation(tmp_path / "base", rng, 0.5)
    runs = [evaluation(tmp_path / f"seed{s}", rng, 0.6, nll_shift=0.3) for s in range(3)]
    code, out, err = run_as_main(capsys, SCRIPT, "--baseline", base, "--runs", *runs, "--out_dir", tmp_path / "cmp")
    assert code == 0, err
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert comparison["runs"] == [str(r) for r in runs] and comparison["baseline"] == [str(base)]
    nll = comparison["metrics"]["reference_nll"]
    assert nll["difference"] > 0.2 and nll["significant"] and len(nll["run_means"][1]) == 3
    assert (tmp_path / "cmp" / "comparison.md").read_text() in out + "\n"


def test_user_mistakes_are_one_line_and_leave_the_folders_alone(tmp_path, capsys):
    rng = random.Random(1)
    base = evaluation(tmp_path / "base", rng, 0.5)
    runs = [evaluation(tmp_path / f"seed{s}", rng, 0.5) for s in range(2)]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = [
        (["--baseline", base, "--runs", runs[0], "--out_dir", tmp_path / "x"], "use scripts/evaluate.py --baseline"),
        (["--baseline", base, "--runs", *runs], "give --runs and --baseline"),
        (["--baseline", base, "--runs", *runs, "--out_dir", runs[0]], "--out_dir", "is the same path as --runs"),
        (["--baseline", base, "--runs", runs[0], runs[1], runs[0], "--out_dir", tmp_path / "z"],
         f"{runs[0]} is given twice"),
        (["--baseline", base, "--runs", *runs, tmp_path / "none", "--out_dir", tmp_path / "y"],
         f"--runs {tmp_path / 'none'}: not an evaluate.py output folder"),
    ]
    for args, *fragments in cases:
        code, _, err = run_as_main(capsys, SCRIPT, *args)
        assert_one_line_error(code, err, *fragments)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_confirmation_leaves_out_the_sample_an_earlier_look_saw(tmp_path, capsys):
    """--without_ifeval_sample 128: the 413 IFEval prompts that evaluate.py --ifeval_sample 128 did not draw."""
    from lit_gpt.eval.ifeval import load_prompts
    from lit_gpt.eval.run import ifeval_sample_of

    every = [p.prompt for p in load_prompts()]
    rng = random.Random(2)
    base = evaluation(tmp_path / "base", rng, 0.5, prompts=every)
    runs = [evaluation(tmp_path / f"seed{s}", rng, 0.5, prompts=every) for s in range(3)]
    code, _, err = run_as_main(capsys, SCRIPT, "--baseline", base, "--runs", *runs, "--out_dir", tmp_path / "cmp",
                               "--without_ifeval_sample", 128)
    assert code == 0, err
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    seen = {p.prompt for p in ifeval_sample_of(load_prompts(), 128)}
    strict = comparison["metrics"]["ifeval_prompt_strict"]
    assert strict["items"] == 541 - 128 and "128 IFEval prompts left out" in comparison["note"]
    fresh = [[all(json.loads(line)["strict"]) for line in (folder / "ifeval_responses.jsonl").open()
              if json.loads(line)["prompt"] not in seen] for folder in [base, *runs]]
    assert strict["run_means"][1] == [sum(run) / 413 for run in fresh[1:]]
    assert comparison["metrics"]["reference_nll"]["items"] == 15  # only IFEval prompts are left out
    few = [evaluation(tmp_path / f"few{s}", rng, 0.5) for s in range(3)]  # evaluated on 20 other prompts
    code, _, err = run_as_main(capsys, SCRIPT, "--baseline", few[0], "--runs", *few[1:], "--out_dir", tmp_path / "x",
                               "--without_ifeval_sample", 128)
    assert_one_line_error(code, err, "--without_ifeval_sample: 128 of its 128 prompts are not in these evaluations")

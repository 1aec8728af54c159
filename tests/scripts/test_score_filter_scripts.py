"""scripts/score_dataset.py and scripts/filter_dataset.py: scores (resumable), filter rules, CLI errors."""

import json
import subprocess
import sys

import pytest

from helpers import load_script
from lit_gpt.utils import UserError


@pytest.fixture(scope="module")
def score_dataset(root_dir):
    return load_script(root_dir, "score_dataset")


@pytest.fixture(scope="module")
def filter_dataset(root_dir):
    return load_script(root_dir, "filter_dataset")


@pytest.fixture(scope="module")
def alpaca_50(shared_dir, tmp_path_factory):
    rows = json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:50]
    path = tmp_path_factory.mktemp("alpaca") / "alpaca_50.json"
    path.write_text(json.dumps(rows, indent=4))
    return path, rows


@pytest.fixture(scope="module")
def judge_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=384)


@pytest.fixture(scope="module")
def ifd_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("gpt2", weights=True, block_size=256)


def sidecar_lines(path):
    return path.read_text().splitlines()


@pytest.mark.slow
def test_alpagasus_scoring_resumes_after_interruption(score_dataset, alpaca_50, judge_dir, tmp_path):
    data_path, rows = alpaca_50
    output = tmp_path / "scored.json"
    # "killed" after 20 rows: --limit stops the run there, with the output written as far as it got
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=output,
                       limit=20, batch_size=8, device="cpu", precision="32-true")
    partial = json.loads(output.read_text())
    assert len(partial) == 50 and sum(r["score_alpagasus"] is not None for r in partial) == 20
    sidecar = output.with_name("scored.json.alpagasus.scores.jsonl")
    assert len(sidecar_lines(sidecar)) == 1 + 20  # header + one line per scored row
    # rerun: only the other 30 rows are scored
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=output,
                       batch_size=8, device="cpu", precision="32-true")
    assert len(sidecar_lines(sidecar)) == 1 + 50
    assert sorted(json.loads(line)["index"] for line in sidecar_lines(sidecar)[1:]) == list(range(50))
    resumed = json.loads(output.read_text())
    # the same file as one uninterrupted run
    fresh_output = tmp_path / "fresh.json"
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=fresh_output,
                       batch_size=8, device="cpu", precision="32-true")
    fresh = json.loads(fresh_output.read_text())
    assert [{k: v for k, v in r.items() if k != "score_alpagasus"} for r in resumed] == rows
    assert [r["score_alpagasus"] for r in resumed] == pytest.approx([r["score_alpagasus"] for r in fresh], abs=1e-4)
    assert all(0 <= r["score_alpagasus"] <= 5 for r in resumed)
    # a third run finds nothing to do and rewrites the same file
    before = sidecar.read_text()
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=output,
                       device="cpu", precision="32-true")
    assert sidecar.read_text() == before and json.loads(output.read_text()) == resumed


@pytest.mark.slow
def test_score_chain_and_filter(score_dataset, filter_dataset, alpaca_50, judge_dir, ifd_dir, tmp_path):
    data_path, rows = alpaca_50
    scored = tmp_path / "alpaca.scored.json"
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=scored,
                       batch_size=16, device="cpu", precision="32-true")
    # each method adds its column to the same file
    score_dataset.main(data_path=scored, method="ifd", checkpoint_dir=ifd_dir, output=scored, batch_size=16,
                       device="cpu", precision="32-true")
    score_dataset.main(data_path=scored, method="heuristics", output=scored)
    table = json.loads(scored.read_text())
    assert len(table) == 50
    assert all({"score_alpagasus", "score_ifd", "heuristics_flags", "heuristics_pass"} <= set(r) for r in table)
    assert all(r["score_ifd"] > 0 for r in table)

    # --min_score: exactly the rows at or above it
    threshold = sorted(r["score_alpagasus"] for r in table)[30]
    kept_path = filter_dataset.main(scores=scored, method="alpagasus", min_score=threshold)
    kept = json.loads(kept_path.read_text())
    expected = [r for r in table if r["score_alpagasus"] >= threshold]
    assert kept == expected and len(kept) == 20
    manifest = json.loads(kept_path.with_name(kept_path.name + ".manifest.json").read_text())
    assert manifest["counts"] == {"input": 50, "kept": 20, "dropped": 30, "dropped_by_reason": {"below_min_score": 30}}
    assert manifest["threshold"] == threshold and manifest["rule"]["min_score"] == threshold
    assert sorted(manifest["dropped"]["below_min_score"]) == [i for i, r in enumerate(table)
                                                              if r["score_alpagasus"] < threshold]
    assert manifest["score_stats"]["kept"]["count"] == 20

    # --top_fraction 0.2: the 10 best, in their original order, layout of the input file
    out = tmp_path / "top.json"
    filter_dataset.main(scores=scored, method="alpagasus", top_fraction=0.2, output=out, drop_score_columns=True)
    top = json.loads(out.read_text())
    best = sorted(range(50), key=lambda i: -table[i]["score_alpagasus"])[:10]
    assert top == [rows[i] for i in sorted(best)]
    manifest = json.loads((tmp_path / "top.json.manifest.json").read_text())
    assert manifest["counts"]["kept"] == 10 and manifest["counts"]["dropped_by_reason"] == {"below_top_fraction": 40}
    assert manifest["threshold"] == min(table[i]["score_alpagasus"] for i in best)

    # Superfiltering: IFD >= 1 out first, then the hardest 10% of the dataset (5 rows) among the rest
    out = tmp_path / "ifd.jsonl"
    filter_dataset.main(scores=scored, method="ifd", top_fraction=0.1, max_score=1.0, output=out)
    chosen = [json.loads(line) for line in out.read_text().splitlines()]
    below_one = sorted((r["score_ifd"] for r in table if r["score_ifd"] <= 1.0), reverse=True)
    assert len(chosen) == min(5, len(below_one))
    assert sorted((r["score_ifd"] for r in chosen), reverse=True) == below_one[:len(chosen)]
    manifest = json.loads((tmp_path / "ifd.jsonl.manifest.json").read_text())
    assert manifest["counts"]["dropped_by_reason"]["above_max_score"] == sum(r["score_ifd"] > 1.0 for r in table)

    # heuristics: the 50 real Alpaca rows plus crafted bad ones
    bad = [{"instruction": "Tell me a joke.", "input": "", "output": "As an AI language model, I cannot."},
           {"instruction": "Write a poem.", "input": "", "output": ""},
           {"instruction": "Repeat: good day to you", "input": "", "output": "Repeat: good day to you"}]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows[:10] + bad))
    flagged = score_dataset.main(data_path=mixed, method="heuristics")
    assert flagged == tmp_path / "mixed.scored.jsonl"
    kept_path = filter_dataset.main(scores=flagged, method="heuristics")
    kept = [json.loads(line) for line in kept_path.read_text().splitlines()]
    assert [{k: r[k] for k in ("instruction", "input", "output")} for r in kept] == rows[:10]
    manifest = json.loads(kept_path.with_name(kept_path.name + ".manifest.json").read_text())
    assert manifest["dropped"] == {"copies_instruction": [12], "empty_response": [11], "refusal": [10]}


def test_scoring_needs_a_model(score_dataset, alpaca_50, tmp_path):
    with pytest.raises(UserError, match="--judge_checkpoint_dir"):
        score_dataset.main(data_path=alpaca_50[0], method="alpagasus", output=tmp_path / "x.json")
    with pytest.raises(UserError, match="--checkpoint_dir"):
        score_dataset.main(data_path=alpaca_50[0], method="ifd", output=tmp_path / "x.json")


def run_cli_in_process(module, argv, monkeypatch, capsys):
    """The script's `run_cli(main)` entry point without a new interpreter (importing torch again costs seconds)."""
    from lit_gpt.utils import run_cli

    monkeypatch.setattr(sys, "argv", [module.__file__, *map(str, argv)])
    try:
        run_cli(module.main)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_cli_dolly_with_column_mapping(score_dataset, shared_dir, tmp_path, monkeypatch, capsys):
    lines = (shared_dir / "datasets/dolly/dolly_3k.jsonl").read_text().splitlines()[:30]
    data = tmp_path / "dolly.jsonl"
    data.write_text("\n".join(lines) + "\n")
    code, err = run_cli_in_process(score_dataset, ["--data_path", data, "--method", "heuristics", "--columns",
                                                   '{"input": "context", "output": "response"}'], monkeypatch, capsys)
    assert code == 0, err
    scored = [json.loads(line) for line in (tmp_path / "dolly.scored.jsonl").read_text().splitlines()]
    original = [json.loads(line) for line in lines]
    # the Dolly layout stays (context/response); the heuristics columns are added
    assert [{k: v for k, v in r.items() if not k.startswith("heuristics")} for r in scored] == original
    assert all(r["heuristics_pass"] in (0, 1) for r in scored)


@pytest.mark.slow
def test_cli_errors_are_one_line(root_dir, filter_dataset, tmp_path, alpaca_50, monkeypatch, capsys):
    result = subprocess.run([sys.executable, str(root_dir / "scripts/score_dataset.py"), "--data_path",
                             str(tmp_path / "missing.json"), "--method", "heuristics"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "missing.json" in result.stderr and "not found" in result.stderr
    code, err = run_cli_in_process(filter_dataset, ["--scores", alpaca_50[0], "--method", "ifd", "--min_score", "0.5"],
                                   monkeypatch, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "alpaca_50.json" in err and "score_ifd" in err and "score_dataset.py" in err
    code, err = run_cli_in_process(filter_dataset, ["--scores", alpaca_50[0], "--method", "alpagasus",
                                                    "--top_fraction", "1.5"], monkeypatch, capsys)
    assert code == 1 and "--top_fraction" in err


def test_longest_answers_need_no_scores(filter_dataset, alpaca_50, tmp_path):
    data_path, rows = alpaca_50
    output = filter_dataset.main(scores=data_path, method="longest", top_count=5, output=tmp_path / "longest.json")
    kept = json.loads(output.read_text())
    lengths = sorted((len(r["output"].strip()) for r in rows), reverse=True)
    assert [r for r in rows if r in kept] == kept and len(kept) == 5  # the rows as they were, in their order
    assert sorted(len(r["output"].strip()) for r in kept) == sorted(lengths[:5])
    manifest = json.loads((tmp_path / "longest.json.manifest.json").read_text())
    assert manifest["column"] == "answer characters" and manifest["threshold"] == lengths[4]
    assert manifest["counts"]["dropped_by_reason"] == {"below_top_count": 45}
    with pytest.raises(UserError, match="no --min_score"):
        filter_dataset.main(scores=data_path, method="longest", min_score=100, output=tmp_path / "x.json")


@pytest.mark.slow
def test_first_rows_scores_a_fixed_sample_that_reruns_do_not_grow(score_dataset, alpaca_50, ifd_dir, tmp_path):
    data_path, rows = alpaca_50
    output = tmp_path / "sample.json"
    for _ in range(2):  # a study recipe reruns its build: the sample must stay the same 12 rows
        score_dataset.main(data_path=data_path, method="ifd", checkpoint_dir=ifd_dir, output=output, first_rows=12,
                           device="cpu", precision="32-true")
        sample = json.loads(output.read_text())
        assert [{k: v for k, v in r.items() if k != "score_ifd"} for r in sample] == rows[:12]
        assert all(r["score_ifd"] is not None for r in sample)
    with pytest.raises(UserError, match="--first_rows 0: must be at least 1"):
        score_dataset.main(data_path=data_path, method="heuristics", first_rows=0)


def test_outputs_never_overwrite_inputs_and_empty_results_are_errors(score_dataset, filter_dataset, alpaca_50,
                                                                     tmp_path):
    data_path, rows = alpaca_50
    source = tmp_path / "mine.json"
    source.write_bytes(data_path.read_bytes())
    before = source.read_bytes()
    with pytest.raises(UserError, match="--output .* is the same path as --data_path"):
        score_dataset.main(data_path=source, method="heuristics", output=source)
    with pytest.raises(UserError, match="--limit -1: must be at least 1"):
        score_dataset.main(data_path=source, method="heuristics", limit=-1)
    assert source.read_bytes() == before
    scored = score_dataset.main(data_path=source, method="heuristics", output=tmp_path / "scored.json")
    # adding another method's column to our own scored file in place is allowed (the chained workflow)
    assert score_dataset.main(data_path=scored, method="heuristics", output=scored) == scored
    assert score_dataset.main(data_path=scored, method="heuristics") == scored  # by default too, as the README does
    scores_before = scored.read_bytes()
    with pytest.raises(UserError, match="--output .* is the same path as --scores"):
        filter_dataset.main(scores=scored, method="heuristics", output=scored)
    all_flagged = tmp_path / "flagged.json"
    all_flagged.write_text(json.dumps([{**r, "heuristics_pass": 0, "heuristics_flags": ["refusal"]} for r in rows]))
    with pytest.raises(UserError, match="no row passes the rule .*refusal 50"):
        filter_dataset.main(scores=all_flagged, method="heuristics", output=tmp_path / "kept.json")
    assert scored.read_bytes() == scores_before and not (tmp_path / "kept.json").exists()


def test_the_scored_count_said_is_the_written_scores(score_dataset, judge_dir, alpaca_50, tmp_path, capsys):
    data_path, rows = alpaca_50
    output = tmp_path / "scored.json"
    # a random judge's free-text answers hold no score: every row is judged, none gets a score
    score_dataset.main(data_path=data_path, method="alpagasus", judge_checkpoint_dir=judge_dir, output=output,
                       first_rows=6, score_from="generate", device="cpu", precision="32-true")
    written = [r["score_alpagasus"] for r in json.loads(output.read_text())]
    with_score = sum(score is not None for score in written)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"wrote {output}: {with_score} of 6 rows scored"), line
    assert f"{6 - with_score} judged without a score" in line or with_score == 6
    assert with_score < 6  # the case the line used to count as scored


def test_the_filter_manifest_and_line_are_the_written_rows(filter_dataset, tmp_path, capsys):
    def row(i, passed, flags):
        return {"instruction": f"Task {i}.", "input": "", "output": f"Answer {i}.", "heuristics_pass": passed,
                "heuristics_flags": flags}

    rows = [row(0, 1, []), row(1, 0, ["too_short", "refusal"]), row(2, 1, []), row(3, 0, ["refusal"]),
            row(4, None, None)]
    scored = tmp_path / "flagged.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept_path = filter_dataset.main(scores=scored, method="heuristics")
    written = [json.loads(line) for line in kept_path.read_text().splitlines()]
    manifest = json.loads(kept_path.with_name(kept_path.name + ".manifest.json").read_text())
    counts = manifest["counts"]
    assert written == [rows[0], rows[2]] and counts["kept"] == len(written)
    assert counts["input"] == len(rows) and counts["dropped"] == len(rows) - len(written) == 3
    dropped = {i for indices in manifest["dropped"].values() for i in indices}
    assert dropped == {1, 3, 4} and counts["dropped_by_reason"] == {"refusal": 2, "too_short": 1, "unscored": 1}
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"kept 2 of 5 rows -> {kept_path} (dropped 3: refusal: 2, too_short: 1, unscored: 1; "
                           "a row with several flags counts under each)"), line

"""scripts/self_instruct.py and scripts/backtranslate.py end to end with a tiny random model."""

import json

import pytest

from helpers import load_script

pytestmark = pytest.mark.slow  # the scripts end to end with a model


@pytest.fixture
def seed_file(tmp_path, alpaca_rows):
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in alpaca_rows[:20]))
    return path


def test_self_instruct_script_end_to_end(root_dir, seed_file, model_dir, tmp_path):
    script = load_script(root_dir, "self_instruct")
    output = tmp_path / "generated.json"
    script.main(seed_tasks=seed_file, checkpoint_dir=model_dir, output=output, num_instructions=2, max_requests=2,
                max_new_tokens=16, top_p=None, device="cpu", precision="32-true")
    tasks = json.loads(output.read_text())
    manifest = json.loads((tmp_path / "generated.json.manifest.json").read_text())
    assert manifest["requests"] == 2 and manifest["accepted"] == len(tasks) <= 2
    assert manifest["settings"]["prompt_style"] == "smollm2" and manifest["seed_tasks_count"] == 20
    assert all(set(t) == {"instruction", "input", "output", "source"} for t in tasks)


def test_backtranslate_script_end_to_end(root_dir, model_dir, alpaca_rows, tmp_path):
    texts = tmp_path / "texts.jsonl"
    texts.write_text("".join(json.dumps({"text": r["output"]}) + "\n" for r in alpaca_rows[:5]))
    output = tmp_path / "bt.json"
    load_script(root_dir, "backtranslate").main(data_path=texts, checkpoint_dir=model_dir, output=output,
                                                min_score=3.0, max_new_tokens=8, device="cpu", precision="32-true")
    pairs = [json.loads(line) for line in (tmp_path / "bt.json.all.jsonl").read_text().splitlines()]
    kept = json.loads(output.read_text())
    manifest = json.loads((tmp_path / "bt.json.manifest.json").read_text())
    assert [p["output"] for p in pairs] == [r["output"] for r in alpaca_rows[:5]]
    scored = [p for p in pairs if p["instruction"]]
    assert all(1.0 <= p["score_curation"] <= 5.0 for p in scored)
    assert [k["output"] for k in kept] == [p["output"] for p in scored if p["score_curation"] >= 3.0]
    assert all(set(k) == {"instruction", "input", "output", "score_curation", "source"} for k in kept)
    counts = manifest["counts"]
    assert counts["texts"] == 5 and counts["kept"] == len(kept)
    assert counts["kept"] + counts["below_min_score"] + counts["empty_instruction"] + counts["unscored"] == 5

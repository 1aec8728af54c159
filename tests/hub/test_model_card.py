"""lit_gpt/hub/model_card.py: the facts a fine-tune's out_dir and an evaluation report give the card, and the card."""

import json

import pytest
import yaml

from helpers import capital_pairs, fast_args, make_data
from lit_gpt.hub.model_card import CARD_MARKER, dataset_entries, eval_metrics, read_eval_report, read_run, render_card
from lit_gpt.train.loop import finetune
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # a one-step training run: see conftest.one_thread

REPORT = {"model": "out/lora/capitals", "prompt_style": "chatml", "tasks": ["ifeval", "reference_loss"],
          "settings": {}, "versions": {},
          "ifeval": {"prompt_level_strict_acc": 0.25, "inst_level_strict_acc": 0.5, "prompt_level_loose_acc": 0.3,
                     "inst_level_loose_acc": 0.55, "prompts": 8},
          "reference_loss": {"mean_nll": 1.5, "perplexity": 4.48, "tokens": 90, "examples": 4},
          "harness": {"arc_easy": {"acc,none": 0.4, "alias": "arc_easy"}}}


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


@pytest.mark.slow
def test_card_of_a_real_run_names_the_data_fingerprint_even_after_the_data_is_gone(tmp_path, checkpoint):
    pairs = capital_pairs()
    data = make_data(tmp_path / "data", checkpoint, pairs[:8], pairs[8:10], name="capitals")
    fingerprint = json.loads((data / "manifest.json").read_text())["fingerprint"]
    out = tmp_path / "run"
    finetune("lora", checkpoint, data, out, fast_args(max_iters=1))
    (data / "manifest.json").unlink()  # the copy in the out_dir (data_manifest.json) is what the card reads

    run = read_run(out)
    assert run.method == "lora"
    assert run.datasets == [{"name": "capitals", "fingerprint": fingerprint,
                             "tokenizer_fingerprint": run.datasets[0]["tokenizer_fingerprint"],
                             "prompt_style": "chatml", "max_seq_length": 256, "counts": {"train": 8, "test": 2}}]
    assert run.hyperparameters["learning_rate"] == 3e-3 and run.hyperparameters["lora_r"] == 8
    assert not {"checkpoint_dir", "data_dir", "out_dir"} & set(run.hyperparameters)  # local paths stay local
    assert run.summary["steps"] == 1

    card = render_card("me/tiny-capitals", "hf", ["config.json", "model.safetensors"], run, REPORT,
                       license="apache-2.0", base_model="org/tiny-base")
    meta = front_matter(card)
    assert meta["base_model"] == "org/tiny-base" and meta["license"] == "apache-2.0"
    assert meta["library_name"] == "transformers" and "lora" in meta["tags"]
    assert meta["lit_gpt_data"]["datasets"][0]["fingerprint"] == fingerprint
    assert meta["lit_gpt_data"]["hyperparameters"]["batch_size"] == 8
    assert "datasets" not in meta  # only Hub dataset ids go there, and this data came from no Hub dataset
    results = {r["dataset"]["name"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in meta["model-index"][0]["results"]}
    assert results == {"ifeval": {"prompt_level_strict_acc": 0.25, "inst_level_strict_acc": 0.5,
                                  "prompt_level_loose_acc": 0.3, "inst_level_loose_acc": 0.55},
                       "reference_loss": {"mean_nll": 1.5, "perplexity": 4.48}, "arc_easy": {"acc,none": 0.4}}
    assert CARD_MARKER in card and f"`{fingerprint}`" in card
    assert "| ifeval | prompt_level_strict_acc | 0.2500 |" in card
    assert str(tmp_path) not in card


def test_mixture_and_hub_dataset_entries():
    manifest = {"name": "mix", "fingerprint": "f-mix", "kind": "mixture", "counts": {"train": 9, "test": 1},
                "inputs": [{"name": "lima", "fingerprint": "f-lima", "path": "/x/lima"},
                           {"name": "dolly", "fingerprint": "f-dolly", "path": "/x/dolly"}]}
    assert [(e["name"], e["fingerprint"], e.get("mixture_input_of")) for e in dataset_entries(manifest)] == [
        ("mix", "f-mix", None), ("lima", "f-lima", "mix"), ("dolly", "f-dolly", "mix")]
    hub = dataset_entries({"name": "oasst", "fingerprint": "f", "options": {"dataset_id": "OpenAssistant/oasst1"}})
    assert hub[0]["hub_dataset"] == "OpenAssistant/oasst1"


def test_eval_report_and_run_dir_errors(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(REPORT))
    assert read_eval_report(tmp_path) == REPORT  # the folder or the file
    assert ("harness", "alias", 0.0) not in eval_metrics(REPORT)  # text fields are not results
    with pytest.raises(UserError, match="no evaluation report"):
        read_eval_report(tmp_path / "missing")
    with pytest.raises(UserError, match="no hyperparameters.yaml"):
        read_run(tmp_path)


def test_a_crafted_eval_report_is_refused_in_one_line(tmp_path):
    (tmp_path / "results.json").write_text("[" * 100000 + "]" * 100000)  # json alone would raise RecursionError
    with pytest.raises(UserError, match="no evaluation report there"):
        read_eval_report(tmp_path)

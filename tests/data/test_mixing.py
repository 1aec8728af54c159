"""lit_gpt/data/mixing.py: mixing prepared datasets and record files into one.

Exact counts and ratios, sources kept, test never trained on, near-duplicates across inputs removed, oversampling only
on request, incompatible inputs refused, record-file inputs. Inputs (the `data` fixture in conftest.py) are small
slices of the real LIMA and Dolly files, prepared by the data pipeline with the SmolLM2 tokenizer.
"""

import json
import shutil
from collections import Counter

import pytest

from helpers import prepare_slice
from lit_gpt.data.mixing import content_key, instruction_key, mix
from lit_gpt.data.prepared import length_stats, load_prepared, trained_token_share
from lit_gpt.data.similarity import NearDuplicateFinder, rouge_l
from lit_gpt.utils import UserError


def ids(examples):
    return [e["id"] for e in examples]


@pytest.mark.slow
def test_counts_are_exact_and_sources_kept(data, tmp_path):
    lima_train, _, _ = load_prepared(data["lima"])
    dolly_train, _, _ = load_prepared(data["dolly"])
    manifest = mix([data["lima"], data["dolly"]], tmp_path / "mix", counts=[40, 70], seed=1)
    train, test, saved = load_prepared(tmp_path / "mix")
    assert saved == manifest and len(train) == 110 == manifest["counts"]["train"]
    lima_part = [e for e in train if e["source"] == "lima"]
    assert len(lima_part) == 40 and len(train) - len(lima_part) == 70
    assert [r["train"]["taken"] for r in manifest["per_input"]] == [40, 70]
    assert [r["train"]["requested"] for r in manifest["per_input"]] == [40, 70]
    # every example is one of its input's, unchanged (tokens and source), in the input's order
    by_id = {e["id"]: e for e in lima_train + dolly_train}
    for example in train:
        original = by_id[example["id"]]
        assert example["source"] == original["source"] and example["input_ids"].equal(original["input_ids"])
    assert {e["source"] for e in train[40:]} <= {e["source"] for e in dolly_train}  # Dolly's categories survive
    assert ids(train[:40]) == [i for i in ids(lima_train) if i in set(ids(train[:40]))]
    for key in ("prompt_style", "tokenizer_fingerprint", "max_seq_length", "mask_inputs", "fingerprint"):
        assert manifest[key] is not None
    assert not [p for p in (tmp_path / "mix").iterdir() if p.name.startswith(".")]  # no temp files left
    # the seed decides the draw: same seed, same examples; another seed, others
    again = mix([data["lima"], data["dolly"]], tmp_path / "again", counts=[40, 70], seed=1)
    other = mix([data["lima"], data["dolly"]], tmp_path / "other", counts=[40, 70], seed=2)
    assert ids(load_prepared(tmp_path / "again")[0]) == ids(train) and again["fingerprint"] == manifest["fingerprint"]
    assert ids(load_prepared(tmp_path / "other")[0]) != ids(train) and other["fingerprint"] != manifest["fingerprint"]


def test_weights_are_fractions_of_usable_examples(data, tmp_path):
    manifest = mix([data["lima"], data["dolly"]], tmp_path / "mix", weights=[1, 0.5])
    lima, dolly = (r["train"] for r in manifest["per_input"])
    assert lima["taken"] == lima["available"] == lima["in"] - sum(lima["dropped"].values())
    assert dolly["taken"] == dolly["requested"] == round(0.5 * dolly["available"])
    assert manifest["counts"]["train"] == lima["taken"] + dolly["taken"]
    assert manifest["weights"] == [1, 0.5] and manifest["counts"]["unique_train"] == manifest["counts"]["train"]


def test_no_example_in_both_train_and_test(data, tmp_path):
    _, lima_test, _ = load_prepared(data["lima"])
    _, dolly_test, _ = load_prepared(data["dolly"])
    dolly_train, _, _ = load_prepared(data["dolly"])
    leaked = tmp_path / "leaky.jsonl"  # an input whose training rows are the other inputs' test rows, verbatim
    rows = [{"instruction": e["instruction"], "input": e["input"], "output": e["output"] + " (copy)"}
            for e in lima_test[:3] + dolly_test[:3]]
    leaked.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest = mix([data["lima"], data["dolly"], leaked], tmp_path / "mix", test_split_fraction=0.0)
    train, test, _ = load_prepared(tmp_path / "mix")
    assert manifest["per_input"][2]["train"]["dropped"]["test_overlap"] == 6
    assert manifest["per_input"][2]["train"]["taken"] == 0
    # test = the union of the inputs' test sets
    assert set(ids(test)) <= set(ids(lima_test + dolly_test))
    assert len(test) == sum(r["test"]["kept"] for r in manifest["per_input"])
    assert {instruction_key(e) for e in train}.isdisjoint(instruction_key(e) for e in test)
    assert not NearDuplicateFinder("exact", 0.7).pairs(train, test)
    kept_dolly = [e for e in train if e["id"] in set(ids(dolly_train))]
    assert len(kept_dolly) == len(dolly_train) - sum(manifest["per_input"][1]["train"]["dropped"].values())


def paraphrase(text: str) -> str:
    """A light rewording: an opening phrase, every fifth word left out."""
    words = text.split()
    return "Could you tell me " + " ".join(w for i, w in enumerate(words) if i % 5 != 4)


@pytest.mark.slow
def test_near_duplicates_across_sources_removed(data, tmp_path):
    lima_train, _, _ = load_prepared(data["lima"])
    originals = [e for e in lima_train if 8 <= len(e["instruction"].split()) <= 60][:4]
    rows = [{"instruction": paraphrase(e["instruction"]), "input": "", "output": "A different answer."}
            for e in originals]
    rows.append({"instruction": "List three prime numbers between 50 and 70.", "input": "", "output": "53, 59, 61"})
    rows.append(dict(rows[-1]))  # an exact repeat inside one input
    assert all(rouge_l(r["instruction"], e["instruction"]) >= 0.7 for r, e in zip(rows, originals))
    records = tmp_path / "paraphrases.jsonl"
    records.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    manifest = mix([data["lima"], records], tmp_path / "mix", test_split_fraction=0.0)
    train, _, _ = load_prepared(tmp_path / "mix")
    report = manifest["per_input"][1]["train"]
    assert report["dropped"]["near_duplicate"] == 4 and report["dropped"]["duplicate"] == 1 and report["taken"] == 1
    assert [e["instruction"] for e in train if e["source"] == "paraphrases"] == [rows[-1]["instruction"]]
    assert set(ids(originals)) <= set(ids(train))
    assert manifest["near_duplicates"]["method"] == "exact" and "ROUGE-L" in manifest["near_duplicates"]["measure"]

    # the earlier input wins: listed first, the paraphrases stay and LIMA loses its originals
    manifest = mix([records, data["lima"]], tmp_path / "reversed", test_split_fraction=0.0)
    train, _, _ = load_prepared(tmp_path / "reversed")
    assert manifest["per_input"][1]["train"]["dropped"]["near_duplicate"] == 4
    assert set(ids(originals)).isdisjoint(ids(train))
    assert len({content_key(e) for e in train}) == len(train)

    # MinHash/LSH finds the same near-duplicates (confirmed by ROUGE-L)
    manifest = mix([data["lima"], records], tmp_path / "minhash", test_split_fraction=0.0, dedup_method="minhash")
    assert manifest["per_input"][1]["train"]["dropped"]["near_duplicate"] == 4
    assert manifest["near_duplicates"]["method"] == "minhash"


def test_oversampling_only_when_allowed(data, tmp_path):
    available = len(load_prepared(data["lima"])[0])
    with pytest.raises(UserError, match=r"lima.*asks for .* only .* --allow_oversample"):
        mix([data["lima"], data["dolly"]], tmp_path / "mix", counts=[available + 5, 10])
    with pytest.raises(UserError, match="--allow_oversample"):
        mix([data["lima"]], tmp_path / "mix", weights=[1.5])
    assert not (tmp_path / "mix" / "train.pt").exists()
    manifest = mix([data["lima"]], tmp_path / "mix", counts=[2 * available + 3], allow_oversample=True)
    train, _, _ = load_prepared(tmp_path / "mix")
    counts = sorted(ids(train).count(i) for i in set(ids(train)))
    assert len(train) == 2 * available + 3 and counts == [2] * (available - 3) + [3] * 3
    assert manifest["per_input"][0]["train"]["unique_taken"] == available


def test_bad_requests_and_incompatible_inputs(data, tmp_path, shared_dir):
    with pytest.raises(UserError, match="2 values for 1 inputs"):
        mix([data["lima"]], tmp_path / "mix", weights=[1, 1])
    with pytest.raises(UserError, match="either --weights or --counts"):
        mix([data["lima"]], tmp_path / "mix", weights=[1], counts=[1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no train.pt"):
        mix([data["lima"], tmp_path / "empty"], tmp_path / "mix")
    other = prepare_slice(shared_dir / "datasets" / "lima" / "train.jsonl", "lima", data["checkpoint_dir"],
                          tmp_path / "lima_alpaca", 20, prompt_style="alpaca", max_seq_length=128)
    with pytest.raises(UserError) as error:
        mix([data["lima"], other], tmp_path / "mix")
    message = str(error.value)
    assert "prompt_style differs" in message and "max_seq_length differs" in message and str(other) in message
    assert "tokenizer_fingerprint" not in message




def test_the_destination_is_no_input_and_not_another_dataset(data, tmp_path):
    mixed = tmp_path / "mix"
    manifest = mix([data["lima"], data["dolly"]], mixed, counts=[3, 3])
    assert manifest["source_fingerprint"]
    assert mix([data["dolly"], data["lima"]], mixed, counts=[4, 2])["counts"]["train"] == 6  # same sources: replaced
    for destination, relation in ((data["lima"], "is the same path as"), (data["lima"] / "sub", "lies inside"),
                                  (data["lima"].parent, "contains")):
        with pytest.raises(UserError, match=f"--destination_path .* {relation} --inputs"):
            mix([data["lima"]], destination, counts=[2])
    with pytest.raises(UserError, match=r"holds another dataset \(mix, made from other inputs"):
        mix([data["lima"]], mixed, counts=[2])
    prepared = tmp_path / "lima_copy"  # a prepared (not mixed) dataset
    shutil.copytree(data["lima"], prepared)
    with pytest.raises(UserError, match=r"holds a dataset of another kind \(prepared, lima\); .* --overwrite true"):
        mix([data["dolly"]], prepared)
    assert mix([data["lima"]], mixed, counts=[2], overwrite=True)["counts"]["train"] == 2


def test_a_record_file_is_not_tokenized_in_a_style_its_tokenizer_cannot_work_with(data, tmp_path, tiny_checkpoint_dir):
    records = tmp_path / "rows.jsonl"
    records.write_text(json.dumps({"instruction": "Name a prime.", "input": "", "output": "7"}) + "\n")
    with pytest.raises(UserError, match=r"tokenizer.model: prompt style \S+ needs '<\|im_start\|>' as one special"):
        mix([data["lima"], records], tmp_path / "mix", checkpoint_dir=tiny_checkpoint_dir("llama-2"))
    assert not (tmp_path / "mix").exists()


def test_the_mix_manifest_is_its_written_data(data, tmp_path):
    inputs = [data["lima"], data["dolly"]]
    manifest = mix(inputs, tmp_path / "mix", counts=[30, 300], allow_oversample=True, seed=3)
    train, test, saved = load_prepared(tmp_path / "mix")
    assert saved == manifest
    owner = {}  # example id -> the input it came from
    for path in inputs:
        input_train, input_test, _ = load_prepared(path)
        owner.update({e["id"]: str(path) for e in input_train + input_test})
    for part, examples, key in (("train", train, "taken"), ("test", test, "kept")):
        assert Counter(owner[e["id"]] for e in examples) == {r["path"]: r[part][key] for r in manifest["per_input"]}
    for report in manifest["per_input"]:
        assert report["train"]["unique_taken"] == len({e["id"] for e in train if owner[e["id"]] == report["path"]})
    assert manifest["counts"] == {"train": len(train), "test": len(test),
                                  "unique_train": len({content_key(e) for e in train})}
    assert manifest["counts"]["train"] == 330 > manifest["counts"]["unique_train"]  # Dolly drawn more than once
    assert manifest["sources"] == dict(sorted(Counter(e["source"] for e in train + test).items()))
    assert manifest["train_sources"] == dict(sorted(Counter(e["source"] for e in train).items()))
    assert manifest["token_lengths"] == length_stats(train + test)
    assert manifest["trained_token_share"] == trained_token_share(train + test)

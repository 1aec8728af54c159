"""lit_gpt/data/prepare.py: the data pipeline's full runs on real data, labels, truncation, bad rows, the seeded split.

The two full runs (LIMA multi-turn with the SmolLM2 byte-level BPE tokenizer and ChatML; the 9k Alpaca sample with
the Llama-2 SentencePiece tokenizer and the alpaca template) are module fixtures (`lima` is in conftest.py); every
example they produce is checked against the invariants of the prepared-data contract (helpers.check_prepared).
"""

import itertools
import json
import re
import time
from collections import Counter

import pytest
import torch

from helpers import check_prepared
from lit_gpt.data.normalize import conversation, is_multi_turn
from lit_gpt.data.prepare import prepare, split_examples
from lit_gpt.data.prepared import length_stats, load_prepared, trained_token_share
from lit_gpt.data.records import iter_records
from lit_gpt.data.tokenize import IGNORE_INDEX
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


@pytest.fixture(scope="module")
def alpaca(shared_dir, llama_dir, tmp_path_factory):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    out = tmp_path_factory.mktemp("alpaca")
    cpu = time.process_time()
    manifest = prepare(iter_records(path), name="alpaca", source_files=[path], checkpoint_dir=llama_dir,
                       destination_path=out)
    return out, manifest, time.process_time() - cpu


# ---- full runs on real data ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lima_multi_turn_chatml(lima, smollm2_dir):
    out, manifest = lima
    tokenizer = Tokenizer(smollm2_dir)
    train, test, loaded = load_prepared(out, tokenizer)
    assert loaded == manifest
    counts = manifest["counts"]
    assert counts["rows_in"] == 1029 and counts["rows_valid"] == 1029
    assert counts["train"] + counts["test"] + sum(counts["dropped"].values()) == 1029
    assert counts["multi_turn"] == sum(1 for e in train + test if e.get("messages")) >= 28
    assert set(counts["dropped"]) <= {"prompt longer than max_seq_length"}
    assert counts["truncated"] == sum(e["truncated"] for e in train + test) > 100  # block_size 512: LIMA is long
    assert manifest["prompt_style"] == "smollm2" and manifest["max_seq_length"] == 512  # defaults from the checkpoint
    assert manifest["tokenizer_fingerprint"] == tokenizer.fingerprint
    assert manifest["token_lengths"]["max"] == 512 and manifest["token_lengths"]["p50"] <= 512
    check_prepared(train + test, tokenizer, manifest)
    multi = next(e for e in train + test if e.get("messages") and not e["truncated"])
    assert multi["instruction"] == multi["messages"][0]["content"]
    assert multi["output"] == multi["messages"][1]["content"]
    # every assistant turn trained: as many trained stretches as answers
    trained = (multi["labels"] != IGNORE_INDEX).int()
    stretches = int((trained[1:] > trained[:-1]).sum()) + int(trained[0])
    assert stretches == sum(m["role"] == "assistant" for m in multi["messages"])


@pytest.mark.slow
def test_alpaca_sentencepiece(alpaca, llama_dir):
    out, manifest, cpu_seconds = alpaca
    tokenizer = Tokenizer(llama_dir)
    train, test, _ = load_prepared(out, tokenizer)
    counts = manifest["counts"]
    assert counts["rows_in"] == 9229
    assert counts["dropped"] == {"empty output": 4}  # the sample has 4 rows with an empty output
    assert counts["train"] + counts["test"] == 9225 and counts["test"] == round(9225 * 0.05)
    assert counts["truncated"] == 0 and manifest["prompt_style"] == "alpaca"
    assert [r["reason"] for r in manifest["dropped_rows"]] == ["empty output"] * 4
    assert manifest["dropped_rows"][0]["where"].endswith("alpaca_random_9k.json: row 1462")
    assert 0.3 < manifest["trained_token_share"] < 0.7
    check_prepared(train + test, tokenizer, manifest)
    assert all(int(e["input_ids"][0]) == tokenizer.bos_id for e in train)
    # tokenization throughput: the whole 9k sample well within budget (52k Alpaca rows = 5.7x this)
    print(f"alpaca 9k sample, SentencePiece: {manifest['seconds']} s wall, {cpu_seconds:.1f} s CPU")
    assert cpu_seconds < 60


def test_mask_inputs_false_and_drop_truncation(shared_dir, llama_dir, tmp_path):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    rows = list(itertools.islice(iter_records(path), 300))
    manifest = prepare(rows, name="alpaca", source_files=[path], checkpoint_dir=llama_dir, destination_path=tmp_path,
                       mask_inputs=False, truncation="drop", max_seq_length=128, test_split_fraction=0.1)
    tokenizer = Tokenizer(llama_dir)
    train, test, _ = load_prepared(tmp_path)
    check_prepared(train + test, tokenizer, manifest)
    dropped = manifest["counts"]["dropped"]["longer than max_seq_length"]
    assert dropped > 0 and manifest["counts"]["truncated"] == 0
    assert len(train) + len(test) + dropped == 300
    assert all(torch.equal(e["labels"], e["input_ids"]) for e in train)
    assert manifest["masking"] == "every token trained"


def test_truncate_keeps_eos_on_short_windows(shared_dir, smollm2_dir, tmp_path):
    path = shared_dir / "datasets" / "alpaca" / "alpaca_random_9k.json"
    rows = list(itertools.islice(iter_records(path), 200))
    manifest = prepare(rows, name="alpaca", source_files=[path], checkpoint_dir=smollm2_dir, destination_path=tmp_path,
                       max_seq_length=64, prompt_style="chatml")
    train, test, _ = load_prepared(tmp_path)
    check_prepared(train + test, Tokenizer(smollm2_dir), manifest)
    truncated = [e for e in train + test if e["truncated"]]
    assert truncated and all(len(e["input_ids"]) == 64 for e in truncated)
    assert manifest["counts"]["truncated"] == len(truncated)


# ---- bad rows, the split, the tokenizer ------------------------------------------------------------------------------
def test_bad_rows_skipped_and_counted_or_fatal(llama_dir, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"instruction": "q1", "output": "a1"}\n{"instruction": "q2", "output": ""}\n'
                    '{"instruction": "q3", "output": "a3"}\n')
    manifest = prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
                       destination_path=tmp_path / "out", test_split_fraction=0)
    assert manifest["counts"]["dropped"] == {"empty output": 1} and manifest["counts"]["train"] == 2
    assert manifest["dropped_rows"] == [{"where": f"{path}:2", "reason": "empty output"}]
    with pytest.raises(UserError, match=re.escape(f"{path}:2: empty output; fix the row")):
        prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
                destination_path=tmp_path / "strict", on_bad_row="error")
    assert not (tmp_path / "strict").exists()  # nothing half-written


def test_a_split_that_leaves_no_test_example_is_said(llama_dir, tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"instruction": "q{i}", "output": "a{i}"}}\n' for i in range(5)))
    manifest = prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
                       destination_path=tmp_path / "out", test_split_fraction=0.05)
    assert manifest["counts"]["test"] == 0
    assert "5 rows x --test_split_fraction 0.05 rounds to no test example" in capsys.readouterr().out
    prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=llama_dir,
            destination_path=tmp_path / "out0", test_split_fraction=0)
    assert "rounds to no test example" not in capsys.readouterr().out  # asked for none: nothing to say


def test_split_is_seeded():
    rows = list(range(100))
    train, test = split_examples(rows, 0.2, seed=1)
    assert len(test) == 20 and sorted(train + test) == rows and train == sorted(train)
    assert split_examples(rows, 0.2, seed=1) == (train, test)
    assert split_examples(rows, 0.2, seed=2)[1] != test


def test_prepare_needs_a_tokenizer(tmp_path):
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(UserError, match="no tokenizer.model or tokenizer.json"):
        prepare([], name="x", source_files=[], checkpoint_dir=tmp_path / "ckpt")
    with pytest.raises(UserError, match="--checkpoint_dir is required"):
        prepare([], name="x", source_files=[])


def test_a_destination_holding_another_dataset_or_a_model_is_not_written_over(llama_dir, tmp_path, capsys):
    def rows(name, n):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(f'{{"instruction": "{name} q{i}", "output": "a{i}"}}\n' for i in range(n)))
        return path

    first, other = rows("first", 6), rows("other", 7)

    def run(source, destination, **kwargs):
        return prepare(iter_records(source), name=source.stem, source_files=[source], checkpoint_dir=llama_dir,
                       destination_path=destination, test_split_fraction=0, **kwargs)

    out = tmp_path / "out"
    manifest = run(first, out)
    assert manifest["source_fingerprint"] and manifest["counts"]["train"] == 6
    assert run(first, out, max_seq_length=64)["max_seq_length"] == 64  # the same data, other settings: replaced
    with pytest.raises(UserError, match=rf"^--destination_path {out}: holds another dataset \(first, made from other "
                                        r"inputs: .*pass --overwrite true to replace it$"):
        run(other, out)
    assert load_prepared(out)[2]["name"] == "first"  # untouched
    assert run(other, out, overwrite=True)["name"] == "other"

    checkpoint_like = tmp_path / "model"
    checkpoint_like.mkdir()
    (checkpoint_like / "lit_model.pth").write_bytes(b"w")
    with pytest.raises(UserError, match=r"holds a model \(lit_model.pth\)"):
        run(first, checkpoint_like)
    with pytest.raises(UserError, match="--destination_path .* lies inside --checkpoint_dir"):
        run(first, llama_dir / "data")
    assert not (llama_dir / "data").exists()
    downloaded = tmp_path / "dl" / "rows.jsonl"  # a script's default download lands in its destination: fine
    downloaded.parent.mkdir()
    downloaded.write_text(first.read_text())
    assert run(downloaded, downloaded.parent)["counts"]["train"] == 6
    with pytest.raises(UserError, match="--destination_path .* contains --data_path .*train.pt"):
        run(downloaded.parent / "train.pt", downloaded.parent)


def test_a_style_the_tokenizer_cannot_work_with_is_refused_before_any_row_is_read(llama_dir, tmp_path):
    def rows():
        raise AssertionError("rows were read")
        yield

    with pytest.raises(UserError, match=re.escape("prompt style chatml needs '<|im_start|>' as one special token")):
        prepare(rows(), name="x", source_files=[], checkpoint_dir=llama_dir, destination_path=tmp_path / "out",
                prompt_style="chatml")
    assert not (tmp_path / "out").exists()


def test_the_manifests_counts_are_those_of_the_written_data(smollm2_dir, tmp_path):
    system = {"role": "system", "content": "Answer briefly."}
    rows = [{"messages": [system, {"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"}]},
            {"messages": [{"role": "user", "content": "Name a prime."}, {"role": "assistant", "content": "7"},
                          {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "11"}]},
            {"instruction": "Name a colour.", "output": "Blue.", "source": "colours"},
            {"instruction": "Name a colour.", "output": ""},  # dropped: no answer
            {"instruction": "Count. " * 100, "output": "1 2 3"}]  # dropped: longer than max_seq_length
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manifest = prepare(iter_records(path), name="rows", source_files=[path], checkpoint_dir=smollm2_dir,
                       destination_path=tmp_path / "out", max_seq_length=64, truncation="drop",
                       test_split_fraction=0.0)
    train, test, _ = load_prepared(tmp_path / "out")
    kept, counts = train + test, manifest["counts"]
    # a system message keeps a single exchange under `messages`, but makes no second turn
    assert counts["multi_turn"] == sum(is_multi_turn(conversation(e)) for e in kept) == 1
    assert (counts["train"], counts["test"], counts["rows_out"]) == (len(train), len(test), len(kept)) == (3, 0, 3)
    assert counts["rows_in"] == len(rows) == counts["rows_out"] + sum(counts["dropped"].values())
    assert counts["truncated"] == sum(e["truncated"] for e in kept)
    assert manifest["sources"] == dict(Counter(e["source"] for e in kept)) == {"colours": 1, "rows": 2}
    assert manifest["token_lengths"] == length_stats(kept)
    assert manifest["trained_token_share"] == trained_token_share(kept)

"""lit_gpt/data/prepared.py: load_prepared refuses missing data and data of another tokenizer; which dataset a
manifest describes (source_fingerprint), also for one written before it was recorded."""

import json

import pytest
import torch

from helpers import fill_disk
from lit_gpt.data.prepared import check_destination, load_prepared, source_fingerprint, write_prepared
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError


@pytest.mark.slow
def test_load_prepared_refuses_missing_and_foreign_data(lima, llama_dir, tmp_path):
    with pytest.raises(UserError, match="no train.pt; prepare it first"):
        load_prepared(tmp_path)
    out, _ = lima
    with pytest.raises(UserError, match="prepared with another tokenizer"):
        load_prepared(out, Tokenizer(llama_dir))
    train, test, manifest = load_prepared(out)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] == manifest["fingerprint"]
    example = train[0]
    assert {"input_ids", "labels", "source", "instruction", "input", "output", "id", "truncated"} <= set(example)
    assert isinstance(example["id"], str) and example["source"] == "lima"


def test_re_preparing_onto_a_full_disk_keeps_the_old_dataset(small_disk):
    example = {"input_ids": torch.arange(5), "labels": torch.arange(5)}
    write_prepared(small_disk, [example], [example], {"name": "old", "fingerprint": "a"})
    fill_disk(small_disk)
    with pytest.raises(UserError, match="no space left on device writing"):
        write_prepared(small_disk, [example] * 20000, [example], {"name": "new", "fingerprint": "b"})
    train, test, manifest = load_prepared(small_disk)  # the previous preparation is still whole
    assert manifest["name"] == "old" and len(train) == 1


def test_a_manifest_from_before_source_fingerprints_is_still_known_by_its_input_files(lima, tmp_path):
    out, manifest = lima
    assert source_fingerprint(manifest) == manifest["source_fingerprint"]
    older = {k: v for k, v in manifest.items() if k != "source_fingerprint"}
    assert source_fingerprint(older) == manifest["source_fingerprint"]  # the same hashes of its input files
    assert source_fingerprint({"name": "made by hand"}) is None
    (tmp_path / "manifest.json").write_text(json.dumps(older))
    elsewhere = [tmp_path / "other.json"]
    check_destination(tmp_path, "prepared", manifest["source_fingerprint"], elsewhere, False)  # the same content
    recorded = [f["path"] for f in manifest["source_files"]]
    check_destination(tmp_path, "prepared", "0123456789abcdef", recorded, False)  # the same files, edited since
    with pytest.raises(UserError, match="holds another dataset"):  # other content from other files
        check_destination(tmp_path, "prepared", "0123456789abcdef", elsewhere, False)
    check_destination(tmp_path, "prepared", "0123456789abcdef", elsewhere, overwrite=True)


def test_a_data_file_or_a_crafted_manifest_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a60.json").write_text("[]")
    with pytest.raises(UserError) as e:  # the raw rows, given where prepared data belongs
        load_prepared("a60.json")
    assert str(e.value) == ("a60.json: a file, not a prepared dataset (a folder with train.pt, test.pt and "
                            "manifest.json); prepare it first: `python scripts/prepare_json.py --data_path a60.json "
                            "--checkpoint_dir <model> --destination_path data/a60`, then use data/a60 in its place")
    assert "--destination_path a60.json" not in str(e.value)
    example = {"input_ids": torch.arange(5), "labels": torch.arange(5)}
    write_prepared(tmp_path / "data", [example], [example], {"name": "x"})
    (tmp_path / "data" / "manifest.json").write_text('{"counts": ' * 100 + "1" + "}" * 100)
    with pytest.raises(UserError, match=r"data/manifest.json: cannot read this dataset manifest: nested more than 64 "
                                        r"levels deep; prepare it again: `python scripts/prepare_<source>.py "
                                        r"--checkpoint_dir <model> --destination_path .*data --overwrite true`$"):
        load_prepared(tmp_path / "data")

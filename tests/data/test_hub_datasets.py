"""lit_gpt/data/hub_datasets.py: Hub datasets through `datasets` against the loopback stand-in Hub, local Parquet and
Arrow files, rows as plain values.

huggingface_hub and datasets read HF_ENDPOINT when they are imported, so the Hub loads run in one subprocess whose
environment points at the stand-in (a temporary HF_HOME holds datasets' cache); the real `datasets` builder makes
its own requests: repo info, README.md, the tree, the Parquet files by resolve URL.
"""

import datetime
import decimal
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hub import FakeHub
from helpers import assert_token_nowhere, hub_env
from lit_gpt.data.hub_datasets import dataset_files, load_dataset_file, plain
from lit_gpt.utils import UserError

TOKEN = "hf_TestTokenDatasetAccess0123456"
ROWS = [{"instruction": f"Question {i}?", "output": f"Answer {i}.", "score": i / 4} for i in range(6)]
CONFIGS_CARD = """---
configs:
- config_name: chat
  data_files:
  - split: train
    path: chat/train-*.parquet
- config_name: code
  data_files:
  - split: train
    path: code/train-*.parquet
  - split: test
    path: code/test-*.parquet
---
# Two subsets
"""

LOADS = """
import json, sys
from lit_gpt.data.hub_datasets import dataset_files, dataset_rows, load_hub_dataset
from lit_gpt.utils import UserError
results = []
for kwargs in json.loads(sys.argv[1]):
    try:
        hub = load_hub_dataset(**kwargs)
        results.append({"rows": [row for _, row in dataset_rows(hub.dataset, hub.label)], "label": hub.label,
                        "where": next(dataset_rows(hub.dataset, hub.label))[0], "options": hub.options,
                        "files": [str(p) for p in dataset_files(hub.dataset)]})
    except UserError as e:
        results.append({"error": str(e)})
print(json.dumps(results))
"""


def parquet_bytes(rows: list, tmp_path: Path, name: str) -> bytes:
    import datasets

    path = tmp_path / f"{name}.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path.read_bytes()


def load(endpoint: str, tmp_path: Path, calls: list, **env) -> tuple[list, subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-c", LOADS, json.dumps(calls)], env=hub_env(endpoint, tmp_path, **env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), proc


@pytest.mark.slow
def test_hub_datasets_subsets_splits_revisions_gated_and_offline(tmp_path):
    rows = parquet_bytes(ROWS, tmp_path, "rows")
    few = parquet_bytes(ROWS[:2], tmp_path, "few")
    with FakeHub(valid_tokens=(TOKEN,)) as hub:
        hub.add_repo("org/rows", {"data/train-00000-of-00001.parquet": rows, "README.md": "# rows"},
                     repo_type="dataset",
                     branches={"refs/convert/parquet": {"default/train/0000.parquet": few, ".gitattributes": ""}})
        hub.add_repo("org/subsets", {"README.md": CONFIGS_CARD, "chat/train-00000-of-00001.parquet": few,
                                     "code/train-00000-of-00001.parquet": rows,
                                     "code/test-00000-of-00001.parquet": few}, repo_type="dataset",
                     branches={"refs/convert/parquet": {"chat/train/0000.parquet": few,
                                                        "code/train/0000.parquet": rows}})
        hub.add_repo("org/gated", {"data/train-00000-of-00001.parquet": few}, repo_type="dataset", gated=True,
                     allowed_tokens={TOKEN})
        results, proc = load(hub.url, tmp_path, [
            {"dataset_id": "org/rows"},
            {"dataset_id": "org/rows", "split": "train[:2]"},
            {"dataset_id": "org/rows", "split": "test"},
            {"dataset_id": "org/nope"},
            {"dataset_id": "org/subsets"},
            {"dataset_id": "org/subsets", "subset": "cod"},
            {"dataset_id": "org/subsets", "subset": "code", "split": "test"},
            {"dataset_id": "org/subsets", "subset": "chat", "split": "test"},
            {"dataset_id": "org/rows", "revision": "refs/convert/parquet"},
            {"dataset_id": "org/subsets", "revision": "refs/convert/parquet"},
            {"dataset_id": "org/subsets", "revision": "refs/convert/parquet", "subset": "code"},
            {"dataset_id": "org/rows", "revision": "v2"},
            {"dataset_id": "org/gated"},
            {"dataset_id": "org/gated", "access_token": TOKEN},
        ])
        (whole, head, no_split, no_dataset, no_subset, bad_subset, code_test, chat_test, conversion,
         conversion_no_subset, conversion_code, no_revision, gated, gated_with_token) = results
        assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.requests_for("/datasets/org/gated/resolve/"))
    assert whole["rows"] == ROWS and head["rows"] == ROWS[:2]
    assert whole["label"] == "org/rows (split train)" and whole["where"] == "org/rows (split train): row 1"
    assert whole["options"] == {"dataset_id": "org/rows", "subset": None, "split": "train", "revision": None}
    assert all(Path(f).is_relative_to(tmp_path / "hf_home") and f.endswith(".arrow") for f in whole["files"])
    assert no_split["error"] == "org/rows: no split 'test' (--split); the dataset has: train"
    assert no_dataset["error"].startswith("org/nope: no such dataset repository on the Hub")
    assert no_subset["error"] == "org/subsets: the dataset has several subsets; pass --subset, one of: chat, code"
    assert bad_subset["error"] == "org/subsets: no subset 'cod' (--subset); the dataset has: chat, code"
    assert code_test["rows"] == ROWS[:2] and code_test["label"] == "org/subsets (subset code, split test)"
    assert chat_test["error"] == "org/subsets: no split 'test' (--split); the dataset subset 'chat' has: train"
    assert conversion["rows"] == ROWS[:2]  # the branch's files, not main's
    assert conversion_no_subset["error"] == ("org/subsets@refs/convert/parquet: the conversion has several subsets; "
                                             "pass --subset, one of: chat, code")
    assert conversion_code["rows"] == ROWS
    assert no_revision["error"] == "org/rows: the Hub has no such revision of this dataset"
    assert gated["error"] == ("org/gated: gated dataset; accept the licence on https://huggingface.co/datasets/"
                              "org/gated and set HF_TOKEN (or --access_token)")
    assert gated_with_token["rows"] == ROWS[:2]
    assert_token_nowhere(TOKEN, proc, tmp_path)

    # offline afterwards (HF_HUB_OFFLINE=1, the stand-in gone): datasets' cache serves what was read before
    results, _ = load(hub.url, tmp_path, [{"dataset_id": "org/rows"}, {"dataset_id": "org/never-read"}],
                      HF_HUB_OFFLINE="1")
    assert results[0]["rows"] == ROWS and results[0]["files"] == whole["files"]
    assert results[1]["error"].startswith("org/never-read: cannot reach the Hugging Face Hub")


# ---- local files and plain values ------------------------------------------------------------------------------------
@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """datasets' cache in tmp_path, not the user's ~/.cache/huggingface/datasets."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")
    return tmp_path / "datasets_cache"


def test_local_parquet_is_cached_as_arrow_and_arrow_is_read_in_place(tmp_path, datasets_cache):
    import datasets

    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "rows.parquet"))
    parquet = load_dataset_file(tmp_path / "rows.parquet")
    assert parquet.to_list() == ROWS
    assert all(p.is_relative_to(datasets_cache) for p in dataset_files(parquet))
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "saved"))
    arrow = tmp_path / "saved" / "data-00000-of-00001.arrow"
    assert load_dataset_file(arrow).to_list() == ROWS and dataset_files(load_dataset_file(arrow)) == [arrow]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match=r"broken.parquet: cannot read it as Parquet \("):
        load_dataset_file(tmp_path / "broken.parquet")


def test_rows_are_plain_values():
    moment = datetime.datetime(2024, 5, 1, 12, 30)
    assert plain({"when": moment, "day": moment.date(), "price": decimal.Decimal("1.5"), "image": b"\x89PNG",
                  "pairs": [("a", 1)], "took": datetime.timedelta(seconds=90), "n": 3, "none": None}) == {
        "when": "2024-05-01T12:30:00", "day": "2024-05-01", "price": 1.5, "image": None, "pairs": [["a", 1]],
        "took": 90.0, "n": 3, "none": None}

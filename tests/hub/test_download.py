"""lit_gpt/hub/download.py: download_dataset_file against the loopback stand-in Hub, checkpoint file choice, tokens, repo ids.

huggingface_hub reads HF_ENDPOINT when it is imported, so every download runs in a subprocess whose environment
points at the stand-in (and at a temporary HF_HOME, with telemetry and Xet off: no other host is contacted).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import LIMA, TOKEN, assert_token_nowhere, closed_port_url, hub_env
from lit_gpt.hub.download import check_repo_id, hub_endpoint, resolve_token, select_checkpoint_files
from lit_gpt.utils import UserError


# ---- download_dataset_file (prepare_lima's path to the gated LIMA dataset) -------------------------------------------
DATASET_SCRIPT = """
import json, sys
from lit_gpt.hub.download import download_dataset_file
from lit_gpt.utils import UserError
results = []
for filename, token in json.loads(sys.argv[1]):
    try:
        path = download_dataset_file("GAIR/lima", filename, access_token=token, cache_dir=sys.argv[2])
        results.append({"path": str(path), "text": path.read_text()})
    except UserError as e:
        results.append({"error": str(e), "unreachable": type(e).__name__ == "HubUnreachable"})
print(json.dumps(results))
"""


def run_dataset_downloads(endpoint: str, tmp_path: Path, calls: list) -> tuple[list, subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-c", DATASET_SCRIPT, json.dumps(calls), str(tmp_path / "cache")],
                          env=hub_env(endpoint, tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1]), proc


@pytest.mark.slow
def test_download_dataset_file(hub, tmp_path):
    results, proc = run_dataset_downloads(hub.url, tmp_path, [
        ["train.jsonl", None], ["train.jsonl", TOKEN], ["missing.jsonl", TOKEN]])
    no_token, with_token, missing = results
    assert no_token["error"] == ("GAIR/lima: gated dataset; accept the licence on "
                                 "https://huggingface.co/datasets/GAIR/lima and set HF_TOKEN (or --access_token)")
    assert with_token["text"] == LIMA["train.jsonl"]
    assert Path(with_token["path"]).is_relative_to(tmp_path / "cache")
    assert "no file missing.jsonl" in missing["error"] and "train.jsonl" in missing["error"]
    assert any(r.authorization == f"Bearer {TOKEN}" for r in hub.requests_for("/datasets/GAIR/lima/resolve/"))
    assert_token_nowhere(TOKEN, proc, tmp_path)

    # offline afterwards: the cached file is served, an uncached one is reported as unreachable
    results, _ = run_dataset_downloads(closed_port_url(), tmp_path, [["train.jsonl", None], ["test.jsonl", None]])
    assert results[0]["text"] == LIMA["train.jsonl"]
    assert results[1]["unreachable"] and "cannot reach the Hugging Face Hub" in results[1]["error"]


# ---- pure functions --------------------------------------------------------------------------------------------------
def test_select_checkpoint_files_preferences():
    mistral = ["config.json", "tokenizer.model", "consolidated.safetensors", "model-00001-of-00002.safetensors",
               "model-00002-of-00002.safetensors", "model.safetensors.index.json", "pytorch_model.bin"]
    assert sorted(select_checkpoint_files("m/m", mistral)) == sorted(
        ["config.json", "tokenizer.model", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
         "model.safetensors.index.json"])
    odd_names = ["config.json", "tokenizer.json", "weights.safetensors", "sub/model.safetensors"]
    assert sorted(select_checkpoint_files("o/o", odd_names)) == ["config.json", "tokenizer.json", "weights.safetensors"]
    with pytest.raises(UserError, match="no weights"):
        select_checkpoint_files("x/x", ["config.json", "tokenizer.json", "model.gguf"])
    with pytest.raises(UserError, match="no config.json"):
        select_checkpoint_files("x/x", ["model.safetensors"])
    with pytest.raises(UserError, match="none of the tokenizer files"):
        select_checkpoint_files("x/x", ["config.json", "model.safetensors"], tokenizer_only=True)


def test_resolve_token_and_repo_id(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "from-env")
    assert resolve_token("from-flag") == "from-flag"
    assert resolve_token(None) == "from-env"
    monkeypatch.delenv("HF_TOKEN")
    assert resolve_token(None) is None and resolve_token("  ") is None
    assert check_repo_id("Org/Name") == "Org/Name"
    for bad in ("name", "a/b/c", "/name", "org/", "../x"):
        with pytest.raises(UserError):
            check_repo_id(bad)


def test_hub_endpoint_in_messages_has_no_credentials(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "https://user:hf_secret@mirror.example/hub")
    assert hub_endpoint() == "https://mirror.example/hub"
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    assert hub_endpoint() == "https://huggingface.co"

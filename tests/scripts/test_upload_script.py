"""scripts/upload.py against the loopback stand-in Hub (tests/fake_hub.py): real huggingface_hub code creates the
repo and commits the files (weights by LFS, the rest inline); the card lists the training data's fingerprint; no
token lands in any file.

huggingface_hub reads HF_ENDPOINT when it is imported, so every upload runs in a subprocess (see test_hub.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fake_hub import FakeHub
from helpers import ROOT, TOKEN, TOKEN_WITHOUT_ACCESS, assert_token_nowhere, capital_pairs, fast_args, hub_env, \
    make_checkpoint, make_data
from lit_gpt.convert.hf import convert_lit_checkpoint
from lit_gpt.hub.model_card import CARD_MARKER
from lit_gpt.train.loop import finetune

# a one-step training run (see conftest.one_thread); slow: runs uploaded through real processes
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

READ_ONLY_TOKEN = TOKEN_WITHOUT_ACCESS


def upload(hub: FakeHub, tmp_path: Path, *args, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "upload.py"), *map(str, args)],
                          env=hub_env(hub.url, tmp_path, **env), capture_output=True, text=True, timeout=120)


def front_matter(card: bytes) -> dict:
    return yaml.safe_load(card.decode().split("---\n", 2)[1])


@pytest.fixture
def run(tmp_path):
    """A LoRA run on a base under checkpoints/ORG/NAME, and an HF folder (the base converted: what a merged and
    converted fine-tune looks like)."""
    base = make_checkpoint(tmp_path / "checkpoints" / "org" / "tiny-base")
    pairs = capital_pairs()
    data = make_data(tmp_path / "data", base, pairs[:8], pairs[8:10], name="capitals")
    finetune("lora", base, data, tmp_path / "run", fast_args(max_iters=1))
    convert_lit_checkpoint(base, tmp_path / "hf")
    report = {"model": "run", "prompt_style": "chatml", "tasks": ["ifeval"], "settings": {}, "versions": {},
              "ifeval": {"prompt_level_strict_acc": 0.25, "inst_level_strict_acc": 0.5,
                         "prompt_level_loose_acc": 0.25, "inst_level_loose_acc": 0.5}}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps(report))
    return tmp_path, json.loads((data / "manifest.json").read_text())["fingerprint"]


def test_upload_hf_folder_and_gguf_with_card(run):
    tmp_path, fingerprint = run
    with FakeHub(valid_tokens=(TOKEN, READ_ONLY_TOKEN), write_tokens=(TOKEN,)) as hub:
        proc = upload(hub, tmp_path, "--folder", tmp_path / "hf", "--repo_id", "me/tiny-capitals", "--run_dir",
                      tmp_path / "run", "--eval_report", tmp_path / "eval", "--license", "apache-2.0",
                      "--private", "true", HF_TOKEN=TOKEN)
        assert proc.returncode == 0, proc.stderr
        repo = hub.repos[("model", "me/tiny-capitals")]
        local = {p.name for p in (tmp_path / "hf").iterdir()}
        assert set(repo.files) == local and "README.md" in local and "model.safetensors" in local
        assert repo.files["model.safetensors"] == (tmp_path / "hf" / "model.safetensors").read_bytes()
        (lfs_put,) = [r for r in hub.requests if r.method == "PUT"]  # the weights went through LFS, the rest inline
        assert lfs_put.body == repo.files["model.safetensors"] and lfs_put.authorization is None
        assert repo.private and "uploaded: " in proc.stdout
        meta = front_matter(repo.files["README.md"])
        assert meta["base_model"] == "org/tiny-base" and meta["license"] == "apache-2.0"
        assert meta["lit_gpt_data"]["datasets"][0]["fingerprint"] == fingerprint
        assert meta["lit_gpt_data"]["method"] == "lora"
        assert meta["model-index"][0]["results"][0]["metrics"][0] == {"type": "prompt_level_strict_acc",
                                                                     "value": 0.25}
        assert repo.files["README.md"] == (tmp_path / "hf" / "README.md").read_bytes()  # the card is kept locally
        assert all(r.authorization == f"Bearer {TOKEN}" for r in hub.requests if r.method == "POST"
                   and "validate-yaml" not in r.path)

        # GGUF: a folder of .gguf files, the token from the flag
        gguf = tmp_path / "gguf"
        gguf.mkdir()
        (gguf / "tiny-capitals.Q8_0.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 8)
        proc = upload(hub, tmp_path, "--folder", gguf, "--repo_id", "me/tiny-capitals-GGUF", "--run_dir",
                      tmp_path / "run", "--license", "mit", "--access_token", TOKEN)
        assert proc.returncode == 0, proc.stderr
        repo = hub.repos[("model", "me/tiny-capitals-GGUF")]
        assert set(repo.files) == {"tiny-capitals.Q8_0.gguf", "README.md"} and len(repo.commits) == 1
        assert repo.files["tiny-capitals.Q8_0.gguf"] == (gguf / "tiny-capitals.Q8_0.gguf").read_bytes()
        assert len([r for r in hub.requests if r.method == "PUT"]) == 2  # by LFS as well
        meta = front_matter(repo.files["README.md"])
        assert meta["library_name"] == "gguf" and "gguf" in meta["tags"] and not repo.private
        assert meta["license"] == "mit" and meta["lit_gpt_data"]["datasets"][0]["fingerprint"] == fingerprint

        uploaded = b"".join(content for r in hub.repos.values() for content in r.files.values())
        assert TOKEN.encode() not in uploaded
        assert_token_nowhere(TOKEN, proc, tmp_path)


ERRORS_SCRIPT = """
import json, os, sys
sys.argv = ["upload.py"]
from lit_gpt.utils import UserError
from scripts.upload import main
messages = []
for token, args in json.loads(sys.argv_json):
    os.environ.pop("HF_TOKEN", None)
    if token:
        os.environ["HF_TOKEN"] = token
    try:
        main(**args)
        messages.append(None)
    except UserError as e:
        messages.append(str(e))
print(json.dumps(messages))
"""


def test_upload_errors_are_one_line_and_dry_run_uploads_nothing(run):
    tmp_path, fingerprint = run
    hf = {"folder": str(tmp_path / "hf"), "repo_id": "me/x"}
    cases = {  # message fragment -> (HF_TOKEN, main's arguments); one process (each costs seconds of imports)
        "needs a Hub token with write access": (None, hf),
        "lacks write permission for me": (READ_ONLY_TOKEN, hf),
        "rejected the access token (401": ("hf_NotAKnownToken000", hf),
        None: (None, {**hf, "run_dir": str(tmp_path / "run"), "dry_run": True}),  # no token needed, no request
    }
    script = ERRORS_SCRIPT.replace("sys.argv_json", repr(json.dumps(list(cases.values()))))
    with FakeHub(valid_tokens=(TOKEN, READ_ONLY_TOKEN), write_tokens=(TOKEN,)) as hub:
        proc = subprocess.run([sys.executable, "-c", script], env=hub_env(hub.url, tmp_path), cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        messages = json.loads(proc.stdout.splitlines()[-1])
        for fragment, message in zip(cases, messages):
            if fragment is None:
                assert message is None
            else:
                assert message is not None and fragment in message and "\n" not in message, (fragment, message)
        assert not any(key[1] == "me/x" for key in hub.repos)
        # a refused create_repo (+ huggingface_hub's repo_info) for the two tokens; no token and the dry run: nothing
        assert {r.path for r in hub.requests} == {"/api/repos/create", "/api/models/me/x"}
        assert len(hub.requests_for("/api/repos/create")) == 2
    card = (tmp_path / "hf" / "README.md").read_text()  # the dry run's card, for reading before an upload
    assert CARD_MARKER in card and fingerprint in card
    assert_token_nowhere(READ_ONLY_TOKEN, proc, tmp_path)


def test_the_token_is_never_shown_and_credential_files_are_refused(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"\x00" * 64)
    (hf / "notes.txt").write_text("export HF_TOKEN=hf_" + "Zz9" * 11 + "\n")
    base = ["--folder", hf, "--repo_id", "me/x"]
    with FakeHub(valid_tokens=(TOKEN, READ_ONLY_TOKEN), write_tokens=(TOKEN,)) as hub:
        shown = upload(hub, tmp_path, *base, "--access_token", TOKEN, "--print_config")
        assert shown.returncode == 0 and "access_token: '***'" in shown.stdout, shown.stderr
        helped = upload(hub, tmp_path, *base, "--access_token", TOKEN, "--help")
        assert helped.returncode == 0 and "--allow" in helped.stdout
        refused = upload(hub, tmp_path, *base, "--access_token", TOKEN)
        assert refused.returncode == 1 and refused.stderr == (
            f"error: --folder {hf}: refusing to upload what may be credentials: notes.txt (holds a Hugging Face "
            "token); remove them, or pass --allow notes.txt if they are safe to publish\n")
        assert hub.requests == []
        failed = upload(hub, tmp_path, *base, "--allow", "notes.txt", "--access_token", READ_ONLY_TOKEN)
        assert failed.returncode == 1 and "lacks write permission" in failed.stderr
        uploaded = upload(hub, tmp_path, *base, "--allow", "notes.txt", HF_TOKEN=TOKEN)
        assert uploaded.returncode == 0, uploaded.stderr
        assert "notes.txt" in hub.repos[("model", "me/x")].files
    for proc in (shown, helped, refused, uploaded):
        assert_token_nowhere(TOKEN, proc, tmp_path)
    assert_token_nowhere(READ_ONLY_TOKEN, failed, tmp_path)

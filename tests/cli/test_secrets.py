"""Tests for lit_gpt/cli/secrets.py: secret flags, redaction, and the files an upload must not send."""

import os

import pytest

from lit_gpt.cli.secrets import find_credentials, is_secret_flag, redact, secret_values

HF_TOKEN = "hf_" + "Ab1" * 12


@pytest.mark.parametrize("name, secret", [("access_token", True), ("--hf-token", True), ("api_key", True),
                                          ("acces_token", True), ("token", True), ("max_new_tokens", False),
                                          ("tokenizer_dir", False), ("eos_token_id", False)])
def test_is_secret_flag(name, secret):
    assert is_secret_flag(name) is secret


def test_secret_values_and_redact():
    argv = ["--repo_id", "a/b", "--access_token", "tok-one", "--api_key=tok-two", "--token", "--private", "true"]
    assert secret_values(argv, environ={"HF_TOKEN": "tok-env"}) == ["tok-one", "tok-two", "tok-env"]
    text = f"tok-one and tok-two, a task-{'x' * 30} id, {HF_TOKEN} and sk-{'Z9' * 12}"
    assert redact(text, ["tok-one", "tok-two"]) == f"*** and ***, a task-{'x' * 30} id, *** and ***"


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_find_credentials(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"n_layer": 2, "note": "task-abcdefghijklmnopqrstuvwxyz"}')
    (folder / "model.safetensors").write_bytes(b"\x00" * 4096)
    (folder / "notes.txt").write_text(f"login with {HF_TOKEN}\n")
    (folder / "sub" / "key.pem").write_text("certificate")
    (folder / "id_rsa.pub").write_text("ssh-rsa AAAA")
    (folder / "deploy.txt").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    (folder / "openai.cfg").write_text(f"key = sk-proj-{'q' * 40}\n")
    (folder / "weights.bin").write_bytes(b"\x01" * 100 + f'{{"token": "{HF_TOKEN}"}}'.encode())  # in the header
    outside = tmp_path / "secret.txt"
    outside.write_text("nothing secret in it, but not in the folder")
    os.symlink(outside, folder / "linked.txt")
    os.symlink(folder / "config.json", folder / "alias.json")  # a link inside the folder is fine
    found = find_credentials(folder, files_of(folder))
    assert [f.split(" ")[0] for f in found] == ["deploy.txt", "id_rsa.pub", "linked.txt", "notes.txt", "openai.cfg",
                                               "sub/key.pem", "weights.bin"]
    assert "notes.txt (holds a Hugging Face token)" in found and "deploy.txt (holds a private key)" in found
    assert f"linked.txt (a link to {outside}, outside the folder)" in found
    assert HF_TOKEN not in " ".join(found)
    allowed = find_credentials(folder, files_of(folder), allow=["./notes.txt", "sub/key.pem", "linked.txt"])
    assert [f.split(" ")[0] for f in allowed] == ["deploy.txt", "id_rsa.pub", "openai.cfg", "weights.bin"]

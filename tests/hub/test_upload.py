"""lit_gpt/hub/upload.py without a network: which files an upload takes, its format, and when the folder's own
README.md stays (the uploads themselves: tests/scripts/test_upload_script.py, against the stand-in Hub)."""

import pytest

from lit_gpt.hub.upload import find_model_files, plan_upload, write_card
from lit_gpt.hub.model_card import CARD_MARKER
from lit_gpt.utils import UserError


def test_formats_and_hidden_files(tmp_path):
    hf = tmp_path / "hf"
    (hf / ".cache" / "huggingface").mkdir(parents=True)
    (hf / ".cache" / "huggingface" / "x.lock").write_text("")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (hf / name).write_text("{}")
    folder, files, fmt = find_model_files(hf)
    assert (folder, sorted(files), fmt) == (hf, ["config.json", "model.safetensors", "tokenizer.json"], "hf")

    one = tmp_path / "m.Q4_0.gguf"
    one.write_bytes(b"GGUF")
    assert find_model_files(one) == (tmp_path, {"m.Q4_0.gguf": one}, "gguf")
    (hf / "m.Q4_0.gguf").write_bytes(b"GGUF")  # any folder holding .gguf files is a GGUF upload
    assert find_model_files(hf)[2] == "gguf"

    lit = tmp_path / "lit"
    lit.mkdir()
    (lit / "lit_model.pth.lora").write_bytes(b"")
    with pytest.raises(UserError, match="convert it first"):
        find_model_files(lit)
    with pytest.raises(UserError, match="no model found"):
        find_model_files(tmp_path / "hf" / ".cache")
    with pytest.raises(UserError, match="not .gguf"):
        find_model_files(hf / "config.json")


def test_generated_card_is_rewritten_an_authors_readme_is_kept(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    plan = plan_upload(tmp_path, "me/m")
    assert CARD_MARKER in plan.card and "README.md" not in plan.files
    assert write_card(plan, tmp_path) == tmp_path / "README.md"
    again = plan_upload(tmp_path, "me/m", license="mit")  # our own earlier card: replaced
    assert "license: mit" in again.card and "README.md" not in again.files

    (tmp_path / "README.md").write_text("# mine\n")
    kept = plan_upload(tmp_path, "me/m", license="mit")
    assert kept.card is None and kept.files["README.md"] == tmp_path / "README.md"
    assert write_card(kept, tmp_path) is None and (tmp_path / "README.md").read_text() == "# mine\n"


def test_files_that_may_be_credentials_are_refused_unless_allowed(tmp_path):
    hf = tmp_path / "hf"
    (hf / "keys").mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (hf / "model.safetensors").write_bytes(b"\x00" * 64)
    (hf / "notes.md").write_text("HF_TOKEN=hf_" + "x1" * 17 + "\n")
    (hf / "keys" / "id_rsa").write_text("not really")
    (tmp_path / "elsewhere.txt").write_text("outside")
    (hf / "extra.txt").symlink_to(tmp_path / "elsewhere.txt")
    (hf / ".netrc").write_text("machine huggingface.co password x")  # hidden: never sent, so not refused either
    with pytest.raises(UserError) as e:
        plan_upload(hf, "me/m")
    message = str(e.value)
    assert "\n" not in message and "hf_x1" not in message
    assert message.startswith(f"--folder {hf}: refusing to upload what may be credentials: extra.txt (a link to ")
    assert "keys/id_rsa (a credentials file by its name); notes.md (holds a Hugging Face token)" in message
    assert message.endswith("pass --allow extra.txt keys/id_rsa notes.md if they are safe to publish")
    plan = plan_upload(hf, "me/m", allow=["extra.txt", "keys/id_rsa", "notes.md"])
    assert sorted(plan.files) == ["config.json", "extra.txt", "keys/id_rsa", "model.safetensors", "notes.md"]

    one = tmp_path / "m.gguf"  # a single file named by the user may be a link
    one.symlink_to(hf / "model.safetensors")
    assert plan_upload(one, "me/m").files == {"m.gguf": one}

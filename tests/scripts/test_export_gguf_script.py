"""scripts/export_gguf.py: a tiny checkpoint with the real GPT-2 tokenizer exported in-process and read back; the
one-line errors of an unsupported model and a wrong --type."""

import json

import pytest
import torch

from helpers import assert_one_line_error, run_script
from lit_gpt.checkpoint import load_model
from lit_gpt.gguf.import_model import convert_gguf
from lit_gpt.gguf.reader import GGUFFile


@pytest.mark.slow
def test_export_script_writes_a_gguf_our_import_reads_back(tiny_checkpoint_dir, tmp_path, capsys):
    checkpoint_dir = tiny_checkpoint_dir("gpt2", weights=True)
    out = tmp_path / "models" / "tiny-Q8_0.gguf"
    code, stdout, _ = run_script(capsys, "export_gguf", "--checkpoint_dir", checkpoint_dir, "--output_path", out,
                                 "--type", "q8_0")
    assert code == 0
    assert stdout.startswith(f"wrote {out}: GGUF llama, Q8_0, 21 tensors (") and "tokenizer bpe (gpt-2)" in stdout
    assert [p.name for p in out.parent.iterdir()] == ["tiny-Q8_0.gguf"]  # no temporary file left
    assert GGUFFile(out).get("general.file_type") == 7  # llama.cpp's MOSTLY_Q8_0
    convert_gguf(out, tmp_path / "back")
    original, back = load_model(checkpoint_dir).state_dict(), load_model(tmp_path / "back").state_dict()
    assert torch.equal(back["ln_f.weight"], original["ln_f.weight"])  # norms stay F32
    assert (back["wte.weight"] - original["wte.weight"]).abs().max() < 0.01  # Q8_0 blocks


def test_unsupported_model_and_type_are_one_line_errors(tiny_checkpoint_dir, tmp_path, capsys):
    checkpoint_dir = tiny_checkpoint_dir("gpt-neox", weights=True)
    config = json.loads((checkpoint_dir / "lit_config.json").read_text())
    (checkpoint_dir / "lit_config.json").write_text(json.dumps({**config, "architecture": "GPTNeoXForCausalLM"}))
    out = tmp_path / "neox.gguf"
    code, _, stderr = run_script(capsys, "export_gguf", "--checkpoint_dir", checkpoint_dir, "--output_path", out)
    assert_one_line_error(code, stderr, "GGUF export of GPTNeoXForCausalLM models is not supported yet (supported: ")
    code, _, stderr = run_script(capsys, "export_gguf", "--checkpoint_dir", tmp_path / "nowhere", "--output_path",
                                 out)
    assert_one_line_error(code, stderr, "nowhere: checkpoint directory not found")
    assert not out.exists()


def test_the_output_never_replaces_a_file_of_the_checkpoint(tiny_checkpoint_dir, tmp_path, capsys):
    checkpoint_dir = tiny_checkpoint_dir("gpt2", weights=True)
    before = {p.name: p.read_bytes() for p in checkpoint_dir.iterdir()}
    (tmp_path / "model.gguf").symlink_to(checkpoint_dir / "lit_model.pth")
    for output, fragment in ((checkpoint_dir / "lit_model.pth", "lies inside --checkpoint_dir"),
                             (checkpoint_dir / "tokenizer.json", "lies inside --checkpoint_dir"),
                             (tmp_path / "model.gguf", f"(a link to {checkpoint_dir / 'lit_model.pth'}) lies inside")):
        code, _, stderr = run_script(capsys, "export_gguf", "--checkpoint_dir", checkpoint_dir, "--output_path", output)
        assert_one_line_error(code, stderr, f"--output_path {output}", fragment, "choose another --output_path")
    assert {p.name: p.read_bytes() for p in checkpoint_dir.iterdir()} == before

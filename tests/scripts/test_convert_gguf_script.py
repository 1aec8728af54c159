"""scripts/convert_gguf_checkpoint.py: a synthetic Q8_0 GGUF file in-process, an unsupported architecture."""

import subprocess
import sys

import gguf
import numpy as np
import pytest
import torch

from helpers import load_script, write_llama_gguf
from lit_gpt.checkpoint import load_model


def test_convert_script_on_a_synthetic_q8_0_gguf(tiny_model, tmp_path, root_dir, capsys):
    path = tmp_path / "tiny-q8.gguf"
    write_llama_gguf(path, tiny_model, gguf.GGMLQuantizationType.Q8_0)
    out = tmp_path / "checkpoints" / "Tiny"
    script = load_script(root_dir, "convert_gguf_checkpoint")  # in-process: no second torch import
    script.main(gguf_path=path, checkpoint_dir=out, dtype="bfloat16")
    assert f"Converted {path} to {out}" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"lit_model.pth", "lit_config.json", "tokenizer.json",
                                               "tokenizer_config.json", "generation_config.json"}
    assert load_model(out).wte.weight.dtype == torch.bfloat16


@pytest.mark.slow
def test_unsupported_architecture_is_a_one_line_error(tmp_path, root_dir):
    path = tmp_path / "mamba.gguf"
    writer = gguf.GGUFWriter(str(path), "mamba")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    result = subprocess.run([sys.executable, str(root_dir / "scripts/convert_gguf_checkpoint.py"), "--gguf_path",
                             str(path), "--checkpoint_dir", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=root_dir)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert str(path) in result.stderr and "'mamba' is not supported yet" in result.stderr
    assert not (tmp_path / "out").exists()

"""Convert a GGUF file (llama.cpp's format, possibly quantized) into a checkpoint dir.

    python scripts/convert_gguf_checkpoint.py --gguf_path SmolLM2-135M-Instruct.Q4_1.gguf \
        --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct

Weights are dequantized (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, K-quants, ...) to --dtype; the Config comes from the
GGUF metadata and the tokenizer files are rebuilt from the vocabulary stored in the file. GGUF architectures: llama
(Llama 2, SmolLM2, Mistral), qwen2, qwen3, phi3, gemma3 (lit_gpt.gguf.import_model.GGUF_ARCHITECTURES).

    python scripts/convert_gguf_checkpoint.py --gguf_path gemma-3-270m-q4_k_m.gguf \
        --checkpoint_dir checkpoints/google/gemma-3-270m
"""

import importlib.util
import sys
import time
from pathlib import Path
from typing import Literal

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.gguf.import_model import convert_gguf
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, PROMPT_STYLE_FILE, TOKENIZER_FILES
from lit_gpt.utils import check_output, output_lock, run_cli


def main(*, gguf_path: Path, checkpoint_dir: Path,
         dtype: Literal["float32", "bfloat16", "float16"] = "float32", overwrite: bool = False) -> None:
    """Convert a GGUF file into checkpoint_dir (lit_config.json, lit_model.pth, tokenizer files).

    Args:
        gguf_path: The .gguf file.
        checkpoint_dir: Output folder, e.g. checkpoints/ORG/NAME; its name picks the registry entry to match.
        dtype: Precision of the saved weights.
        overwrite: Replace the checkpoint of another model in checkpoint_dir (LoRA runs trained on it stop fitting).
    """
    start = time.perf_counter()
    check_output(checkpoint_dir, {"--gguf_path": gguf_path}, "--checkpoint_dir",
                 writes=(LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, PROMPT_STYLE_FILE, *TOKENIZER_FILES))
    with output_lock(checkpoint_dir, "--checkpoint_dir"):
        config = convert_gguf(gguf_path, checkpoint_dir, dtype, overwrite)
    repo = f" ({config.hf_repo_id})" if config.hf_repo_id else ""
    print(f"Converted {gguf_path} to {checkpoint_dir}: {config.name}{repo}, {config.n_layer} layers, width "
          f"{config.n_embd}, {dtype}, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)

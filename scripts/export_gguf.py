"""Export a checkpoint (base, merged LoRA or full fine-tune) as one GGUF file for llama.cpp, Ollama and LM Studio.

    python scripts/export_gguf.py --checkpoint_dir out/lora/alpaca/merged --output_path out/alpaca-F16.gguf

--type: f16 (default), bf16, f32, or quantized q8_0, q5_1, q5_0, q4_1, q4_0 (K-quants: run llama.cpp's
llama-quantize on the F16 file). Architectures: Llama 2/3.0, SmolLM2, Mistral (GGUF `llama`), Qwen2/2.5 (`qwen2`),
Qwen3 (`qwen3`), Phi-3 (`phi3`), Gemma 3 (`gemma3`); lit_gpt.gguf.export_model refuses, in one line, a model or tokenizer
the file could not describe exactly. The file is written under a temporary name and renamed when complete.
"""

import importlib.util
import sys
import time
from pathlib import Path
from typing import Literal

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.gguf.export_model import export_gguf
from lit_gpt.utils import check_output, log, run_cli

DEFAULT_TYPE = "f16"


def main(*, checkpoint_dir: Path, output_path: Path,
         type: Literal["f16", "bf16", "f32", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"] = DEFAULT_TYPE) -> None:
    """Export checkpoint_dir (lit_config.json, lit_model.pth, tokenizer files) as a GGUF file.

    Args:
        checkpoint_dir: a checkpoint directory (scripts/convert_hf_checkpoint.py, scripts/merge_lora.py, finetune/full.py)
        output_path: the .gguf file to write (replaced if it exists; not inside checkpoint_dir)
        type: the matrices' type; norms and biases stay F32
    """
    start = time.perf_counter()
    check_output(output_path, {"--checkpoint_dir": checkpoint_dir}, "--output_path")
    summary = export_gguf(checkpoint_dir, output_path, type)
    for note in summary.notes:
        log(f"note: {note}")
    print(f"wrote {summary.output_path}: GGUF {summary.architecture}, {summary.type_name}, {summary.n_tensors} "
          f"tensors ({summary.n_bytes / 1e6:.0f} MB), tokenizer {summary.tokenizer}, in "
          f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)

"""Peak memory of convert_hf_checkpoint on a random ~1.1B-parameter checkpoint (TinyLlama's shape, bf16, 2 shards).

    python scripts/dev/benchmark_convert.py [--dtype bfloat16] [--n_shards 2] [--workdir /tmp]

Prints JSON: shard sizes, the conversion's peak RSS, the RSS of a process that only imports the converter
(interpreter + torch), and peak minus that baseline as a multiple of the largest shard. Each measurement runs in a
fresh subprocess (ru_maxrss is per process). Needs about 2x the checkpoint size on disk; everything is deleted after.
"""

import json
import subprocess
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal


import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.config import Config
from lit_gpt.convert.hf_mapping import hf_config_dict, lit_to_hf
from lit_gpt.model import GPT
from lit_gpt.utils import run_cli

ROOT = Path(__file__).resolve().parents[2]
# The child prints its own peak RSS after running `code`: VmHWM, the high-water mark of this process image (Linux).
# Not ru_maxrss, which a child inherits from the parent across fork and exec.
CHILD = """
import re, sys, time
from lit_gpt.convert.hf import convert_hf_checkpoint
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
kib = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(int(kib) * 1024, seconds)
"""


def write_random_checkpoint(directory: Path, config: Config, dtype: torch.dtype, n_shards: int) -> "list[Path]":
    """HF-layout safetensors shards of random weights, generated one shard at a time (this process, not measured)."""
    from safetensors.torch import save_file

    with torch.device("meta"):
        shapes = {name: t.shape for name, t in lit_to_hf(GPT(config).state_dict(), config).items()}
    names = list(shapes)
    per_shard = -(-len(names) // n_shards)
    files, weight_map = [], {}
    for i in range(n_shards):
        file = directory / f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        shard_names = names[i * per_shard:(i + 1) * per_shard]
        shard = {name: (torch.randn(shapes[name]) * 0.02).to(dtype) for name in shard_names}
        save_file(shard, str(file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file.name))
        files.append(file)
        del shard
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (directory / "config.json").write_text(json.dumps(hf_config_dict(config, dtype)))
    return files


def peak_rss(code: str) -> "tuple[int, float]":
    """(peak RSS in bytes, seconds) of a fresh interpreter that imports the converter and runs `code`."""
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), code=code)], capture_output=True,
                         text=True, check=True)
    rss, seconds = out.stdout.split()[-2:]
    return int(rss), float(seconds)


def benchmark_convert(dtype: str = "bfloat16", n_shards: int = 2, workdir: "str | None" = None) -> dict:
    config = Config.from_name("tiny-llama-1.1b")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="benchmark-convert-") as tmp:
        checkpoint_dir = Path(tmp) / "TinyLlama-random"
        checkpoint_dir.mkdir()
        files = write_random_checkpoint(checkpoint_dir, config, getattr(torch, dtype), n_shards)
        baseline, _ = peak_rss("")
        peak, seconds = peak_rss(f"convert_hf_checkpoint({str(checkpoint_dir)!r})")
        shard_sizes = [f.stat().st_size for f in files]
        output_size = (checkpoint_dir / "lit_model.pth").stat().st_size
    largest = max(shard_sizes)
    return {
        "model": config.name, "dtype": dtype, "shard_bytes": shard_sizes, "lit_model_pth_bytes": output_size,
        "baseline_rss_bytes": baseline, "peak_rss_bytes": peak, "convert_seconds": round(seconds, 1),
        "peak_over_largest_shard": round(peak / largest, 3),
        "peak_minus_baseline_over_largest_shard": round((peak - baseline) / largest, 3),
    }


def main(*, dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16", n_shards: int = 2,
         workdir: "str | None" = None) -> None:
    """Measure and print the conversion's peak RSS as JSON.

    Args:
        dtype: dtype of the random checkpoint
        n_shards: number of safetensors shards
        workdir: where the temporary checkpoint goes (default: the system temp dir)
    """
    start = time.perf_counter()
    result = benchmark_convert(dtype, n_shards, workdir)
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run_cli(main)

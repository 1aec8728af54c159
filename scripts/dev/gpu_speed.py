"""The speed part of scripts/dev/gpu_check.sh: LoRA and full fine-tuning throughput of random-initialised models at
2048 tokens, ours and LitGPT 0.5.13 side by side, and our batched generation; plus the computed memory table.

    python scripts/dev/gpu_speed.py train --model SmolLM2-135M --out rows.jsonl
    python scripts/dev/gpu_speed.py generate --out rows.jsonl
    python scripts/dev/gpu_speed.py memory             # the README's table (computed, not measured)
    python scripts/dev/gpu_speed.py train --dry_run true --out rows.jsonl   # on a CPU: a tiny model, seconds

Training rows come from scripts/dev/benchmark.py's harness (`main`: each implementation in its own process, the
same random token rows of exactly --max_seq_length tokens, bf16-true, fused AdamW for ours, LitGPT's GPT and LoRA
classes in a minimal loop); generation rows from scripts/dev/benchmark_generate.py's `ours_run` (greedy, every
prompt generating exactly --max_new_tokens). LitGPT runs in this interpreter where `import litgpt` works (the GPU
check installs its wheel), else its column is skipped with that reason. MFU is given twice: against the GPU's
dense bf16 peak from NVIDIA's data sheets (where the GPU is in BF16_PEAK_TFLOPS) and against the best 2048^3 matmul
the benchmark measured. Each call appends one JSON line per row to --out as soon as the row is done, so a part
stopped by its time limit keeps the rows it finished; a row that fails is a row with its error.
"""

import contextlib
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.config import Config
from lit_gpt.lora import LoRAConfig
from lit_gpt.model import GPT
from lit_gpt.utils import run_cli

DEV_DIR = Path(__file__).resolve().parent
# dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets; the first name found in
# torch.cuda.get_device_name() wins (so "H100 PCIe" before "H100")
BF16_PEAK_TFLOPS = (("GH200", 989.4), ("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4),
                    ("A100", 312.0))
TRAIN_SETTING = dict(precision="bf16-true", dataset="random", max_seq_length=2048, micro_batch_size=4,
                     steps_per_run=2, warmup_steps=2, runs=3, accelerator="cuda")
DRY_RUN_SETTING = dict(precision="32-true", dataset="random", max_seq_length=64, micro_batch_size=2,
                       steps_per_run=1, warmup_steps=1, runs=1, accelerator="cpu", threads=1, max_examples=8)
DRY_RUN_CONFIG = dict(name="tiny", block_size=128, vocab_size=512, n_layer=2, n_head=4, n_embd=64, n_query_groups=2,
                      intermediate_size=128)
MEMORY_MODELS = ("SmolLM2-135M", "gemma-3-270m", "Qwen2.5-0.5B", "Llama-3.2-1B", "Llama-3.2-3B", "Llama-3.1-8B")


def load_dev_script(name: str):
    """scripts/dev/<name>.py as a module (a sibling script, not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location(f"dev_{name}", DEV_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bf16_peak_tflops() -> Optional[float]:
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def append_row(out: Path, row: dict) -> None:
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr, flush=True)


def comparable_config(model: str, directory: Path) -> Path:
    """The registry model as a lit_config.json the LitGPT baseline can build: rope scaling (Llama 3.2's long-context
    stretch of the rotary frequencies) dropped; the shapes, and so the FLOPs and memory, are the model's."""
    config = Config.from_name(model, rope_scaling=None)
    path = directory / f"{model}.json"
    config.save(path)
    return path


def implementation_summary(result: dict, peak: Optional[float]) -> dict:
    return {"tokens_per_s": result["tokens_per_s"], "achieved_tflops": result["achieved_tflops"],
            "mfu_vs_bf16_peak": round(result["achieved_tflops"] / peak, 4) if peak else None,
            "mfu_vs_measured_matmul": result["mfu"], "peak_memory_gb": result["peak_memory_gb"],
            "peak_memory_kind": result["peak_memory_kind"], "seconds_per_step": result["seconds_per_step_median"],
            "first_step_losses": result["first_step_losses"]}


def train_row(benchmark, config_path: Path, method: str, setting: dict, litgpt: bool) -> dict:
    """One benchmark.main call (its report goes to stderr, the log) summarized as a table row."""
    with contextlib.redirect_stdout(sys.stderr):
        report = benchmark.main(model=str(config_path), method=method, compare_litgpt=litgpt,
                                litgpt_python=sys.executable, **setting)
    peak = bf16_peak_tflops() if setting["accelerator"] == "cuda" else None
    row = {"ours": implementation_summary(report["ours"], peak)}
    if litgpt:
        row["litgpt"] = {**implementation_summary(report["litgpt"], peak),
                         "version": report["litgpt"]["versions"].get("litgpt")}
        row["speedup_vs_litgpt"] = report["speedup_vs_litgpt"]
        row["peak_memory_ratio_vs_litgpt"] = report["peak_memory_ratio_vs_litgpt"]
    return {**row, "gpu": report["machine"]["gpu"], "bf16_peak_tflops": peak,
            "measured_matmul_tflops": report["machine"]["matmul_tflops"],
            "computed_memory_gb": computed_memory_gb(Config.from_file(config_path), method, setting["precision"],
                                                     setting["micro_batch_size"], setting["max_seq_length"])}


def train(model: str = "SmolLM2-135M", out: Path = Path("gpu_speed.jsonl"), methods: str = "lora full",
          dry_run: bool = False) -> None:
    """LoRA and full fine-tuning rows of one model, ours and LitGPT's (where importable), appended to --out.

    Args:
        model: registry name (random weights in its shapes)
        out: JSON-lines file the rows are appended to
        methods: space-separated: lora, full
        dry_run: a 2-layer model on the CPU for a few seconds (checks that this part still runs)
    """
    benchmark = load_dev_script("benchmark")
    litgpt = importlib.util.find_spec("litgpt") is not None
    setting = DRY_RUN_SETTING if dry_run else TRAIN_SETTING
    with tempfile.TemporaryDirectory(prefix="gpu-speed-") as tmp:
        if dry_run:
            config_path = Path(tmp) / "tiny.json"
            Config(**DRY_RUN_CONFIG).save(config_path)
        else:
            config_path = comparable_config(model, Path(tmp))
        for method in methods.split():
            row = {"part": "train", "model": "tiny (dry run)" if dry_run else model, "method": method,
                   "precision": setting["precision"], "max_seq_length": setting["max_seq_length"],
                   "micro_batch_size": setting["micro_batch_size"],
                   "litgpt": None if litgpt else "skipped: litgpt is not importable in this interpreter"}
            start = time.perf_counter()
            try:
                row.update(train_row(benchmark, config_path, method, setting, litgpt))
            except (Exception, SystemExit) as e:  # a failed row is reported; the next one still runs
                row["error"] = f"{type(e).__name__}: {e}"[-3000:]
            row["seconds"] = round(time.perf_counter() - start, 1)
            append_row(out, row)


def generate(out: Path = Path("gpu_speed.jsonl"), model: str = "SmolLM2-135M", batch_sizes: str = "1 8 32",
             num_prompts: int = 32, batch1_prompts: int = 8, max_new_tokens: int = 64, runs: int = 2,
             dry_run: bool = False) -> None:
    """Batched greedy generation tokens/s of a random-initialised model (bf16 on CUDA), appended to --out.

    Args:
        out: JSON-lines file the rows are appended to
        model: registry name
        batch_sizes: space-separated batch sizes
        num_prompts: random prompts of 16 to 256 tokens
        batch1_prompts: how many of them batch size 1 times
        max_new_tokens: tokens generated per prompt
        runs: timed runs per batch size (median reported)
        dry_run: a 2-layer model on the CPU
    """
    ours_run = load_dev_script("benchmark_generate").ours_run
    name = "tiny (dry run)" if dry_run else model
    try:
        net, prompts = generation_setup(model, num_prompts, dry_run)
    except (Exception, SystemExit) as e:
        return append_row(out, {"part": "generation", "model": name, "batch_size": None, "prompts": num_prompts,
                                "error": f"{type(e).__name__}: {e}"[-3000:]})
    batch1 = None
    for batch_size in (int(b) for b in batch_sizes.split()):
        chunk = prompts[:batch1_prompts] if batch_size == 1 else prompts
        row = {"part": "generation", "model": name, "batch_size": batch_size, "prompts": len(chunk),
               "new_tokens": len(chunk) * max_new_tokens, "dtype": str(net.wte.weight.dtype)}
        try:
            ours_run(net, chunk[:batch_size], batch_size, 2)  # warm-up: allocator, kernels
            seconds = statistics.median(ours_run(net, chunk, batch_size, max_new_tokens) for _ in range(runs))
            row["tokens_per_s"] = round(row["new_tokens"] / seconds, 1)
            batch1 = row["tokens_per_s"] if batch_size == 1 else batch1
            row["speedup_vs_batch1"] = round(row["tokens_per_s"] / batch1, 2) if batch1 else None
        except (Exception, SystemExit) as e:
            row["error"] = f"{type(e).__name__}: {e}"[-3000:]
        append_row(out, row)


def generation_setup(model: str, num_prompts: int, dry_run: bool) -> tuple:
    """The random-initialised model (bf16 on CUDA; the tiny one in float32 on the CPU) and random prompts of
    different lengths (16 to 256 tokens; 16 to 96 for the tiny one)."""
    device = torch.device("cpu" if dry_run else "cuda")
    config = Config(**DRY_RUN_CONFIG) if dry_run else Config.from_name(model)
    torch.manual_seed(0)
    with torch.device(device):
        net = GPT(config).to(torch.float32 if dry_run else torch.bfloat16).eval()
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(16, 97 if dry_run else 257, (num_prompts,), generator=g).tolist()
    return net, [torch.randint(0, config.vocab_size, (n,), generator=g).to(device) for n in lengths]


def computed_memory_gb(config: Config, method: str, precision: str, micro_batch_size: int, tokens: int,
                       quantized: bool = False) -> dict:
    """A rough estimate (GB) of what training holds: weights (bf16: 2 bytes; mixed: float32 master weights, 4;
    NF4: ~0.53), gradients and AdamW's two moments of the trained weights (in their dtype), and the activations kept
    for backward without gradient checkpointing: per token and layer about (7 x width + 2 x key/value width +
    4 x MLP width) bf16 values (norm inputs and outputs, q/k/v, attention output, the MLP's gate, up, activation
    and product); flash attention keeps no score matrix, the fused loss no full logits. CUDA's allocator and
    kernels' workspaces add some."""
    with torch.device("meta"):
        model = GPT(config)
        total = sum(p.numel() for p in model.parameters())
        trained = total
        if method == "lora":
            LoRAConfig().apply(model)
            trained = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    param_bytes = 2 if precision in ("bf16-true", "16-true") else 4
    weights = total * (0.53 if quantized else param_bytes) + (trained if method == "lora" else 0) * param_bytes
    kv_width = 2 * config.n_query_groups * config.head_size
    per_token_layer = 2 * (7 * config.n_embd + kv_width + 4 * config.intermediate_size)
    activations = micro_batch_size * tokens * config.n_layer * per_token_layer
    parts = {"weights": weights, "gradients": trained * param_bytes, "adamw": 2 * trained * param_bytes,
             "activations": activations}
    return {**{k: round(v / 1e9, 2) for k, v in parts.items()}, "total": round(sum(parts.values()) / 1e9, 2)}


def memory(micro_batch_size: int = 1, tokens: int = 2048) -> None:
    """Prints the README's memory table: computed GB per model and method (not measured).

    Args:
        micro_batch_size: examples per forward pass
        tokens: tokens per example
    """
    methods = (("full", "bf16-true", False), ("full", "bf16-mixed", False), ("lora", "bf16-true", False),
               ("lora", "bf16-true", True))
    print("| model (parameters) | full bf16-true | full bf16-mixed | LoRA bf16-true | QLoRA nf4 |")
    print("|---|---|---|---|---|")
    for name in MEMORY_MODELS:
        config = Config.from_name(name)
        with torch.device("meta"):
            n = sum(p.numel() for p in GPT(config).parameters())
        cells = [computed_memory_gb(config, method, precision, micro_batch_size, tokens, quantized)["total"]
                 for method, precision, quantized in methods]
        print(f"| {name} ({n / 1e9:.2f} B) | " + " | ".join(f"{gb:.1f} GB" for gb in cells) + " |")


if __name__ == "__main__":
    run_cli([train, generate, memory])

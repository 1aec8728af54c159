"""Training speed and memory of our fine-tuning step, optionally side by side with LitGPT's.

    python scripts/dev/benchmark.py --method lora --precision 32-true --dataset fixed --threads 2 --compare_litgpt true
    python scripts/dev/benchmark.py --method full --precision 32-true --dataset dolly --max_examples 64 \
        --steps_per_run 0 --compare_litgpt true --litgpt_batching plain

The model is built from a registry name or a lit_config.json path with random weights (nothing is downloaded). The
examples come from a prepared dataset (`--data_dir`, its train.pt) or are made at run time (`--dataset`): `lima` or
`dolly` tokenizes the real rows in ../shared/datasets with the SmolLM2 tokenizer through our data pipeline (chat
format, prompt masked, truncated to --max_seq_length), so lengths and trained-token masks follow the real
distribution; `fixed` cuts the same token stream into rows of exactly --max_seq_length tokens, all trained (the
classic "micro-batch x sequence length" throughput setting); `random` is `fixed` with random token ids, which needs
nothing from ../shared/ (scripts/dev/gpu_speed.py on a GPU machine). Token ids are taken modulo the model's vocabulary.

The batches are those our training loop would train on (`lit_gpt.train.dataset.epoch_batches`: length-grouped for the
default shuffle order); each optimizer step takes one global batch of --batch_size examples split into micro-batches
of --micro_batch_size. The timed work is the first --steps_per_run global batches (0: the whole epoch); after
--warmup_steps steps, that same work is timed --runs times and the medians are reported. Each implementation runs in
its own process (scripts/dev/benchmark_worker.py, so peak RSS is its own) with --threads intra-op threads. On CPU
the processes stay alive side by side and take turns, one timed run each, the order alternating (--interleave): on a
shared machine whose speed drifts, that keeps the comparison fair; `speedup_vs_litgpt_paired_median` is the median
over those pairs of runs. The examples and batches: scripts/dev/benchmark_data.py.
Each process measures the matmul ceiling (a 2048^3 matmul in the training dtype, before and after its runs); the best
of all of them is the denominator of the model FLOPs utilisation (MFU).

Our step is the one finetune/lora.py and finetune/full.py run: `lit_gpt.train.step.train_step` (fused LM head + loss
on the trained positions only, Fabric precision, gradient clipping, fused AdamW, LR schedule).

--compare_litgpt runs LitGPT's own GPT (+ its LoRA classes) in a minimal loop on the same examples, same config,
init distribution, threads and optimizer: model(input_ids, lm_head_chunk_size=128),
litgpt.utils.chunked_cross_entropy, backward, AdamW step; on exactly our micro-batch tensors (--litgpt_batching
same) or on those examples batched as its own loader would, in order and padded to the longest (plain). LitGPT lives
in its own virtual environment:

    python -m venv /tmp/litgpt-venv && /tmp/litgpt-venv/bin/pip install torch==2.13.0 litgpt==0.5.13

(pass another with --litgpt_python). Output: one JSON object on stdout (progress on stderr). Tokens/s counts all
micro-batch positions (padding included) and, separately, the non-padding tokens (the speedup compares those); MFU
credits the non-padding tokens with `lit_gpt.model.flops_per_token` (minus the weight-gradient matmuls of frozen
weights for LoRA). Timings taken while other processes use the cores are meaningless: the report carries the load
average and tokens per CPU-second.
"""

import json
import os
import statistics
import subprocess
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Literal, Optional


import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from benchmark_data import batch_plan, load_examples, training_flops  # beside this script (sys.path[0])
from benchmark_worker import READY, RESULT, RUN_DONE
from lit_gpt.config import Config
from lit_gpt.precision import PRECISIONS, choose_precision
from lit_gpt.utils import UserError, check_typed_on_command_line, cpu_name, run_cli

ROOT = Path(__file__).resolve().parents[2]
WORKER_SCRIPT = Path(__file__).resolve().with_name("benchmark_worker.py")  # `python benchmark_worker.py SPEC.json`
DEFAULT_LITGPT_PYTHON = "/tmp/litgpt-venv/bin/python"
LITGPT_INSTALL = "python -m venv /tmp/litgpt-venv && /tmp/litgpt-venv/bin/pip install torch==2.13.0 litgpt==0.5.13"


# ---- the parent -------------------------------------------------------------------------------------------------------
class Worker:
    """One implementation in its own process (its own peak memory), warmed up, timing one run per `run()`."""

    def __init__(self, python: str, spec: dict, workdir: Path, name: str) -> None:
        spec_path = workdir / f"{name}.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
        print(f"[benchmark] {name}: building and warming up ...", file=sys.stderr, flush=True)
        self.name, self.stderr = name, open(workdir / f"{name}.stderr", "w+")
        self.proc = subprocess.Popen([python, str(WORKER_SCRIPT), str(spec_path)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     cwd=ROOT)
        self._expect(READY)

    def _expect(self, marker: str) -> str:
        for line in self.proc.stdout:
            if line.startswith(marker):
                return line[len(marker):].strip()
        self.proc.wait()
        self.stderr.seek(0)
        tail = "\n".join(self.stderr.read().strip().splitlines()[-15:])
        raise UserError(f"the {self.name} benchmark process failed (exit {self.proc.returncode}):\n{tail}")

    def run(self) -> None:
        self.proc.stdin.write("RUN\n")
        self.proc.stdin.flush()
        self._expect(RUN_DONE)

    def finish(self) -> dict:
        self.proc.stdin.write("END\n")
        self.proc.stdin.flush()
        result = json.loads(self._expect(RESULT))
        self.proc.wait()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def run_all(implementations: dict, workdir: Path, runs: int, interleave: bool) -> dict:
    """{name: (python, spec)} -> {name: result}. Interleaved: all workers are warmed up one after the other, then
    run r times each implementation once (the order alternating), so drifts in machine speed hit all alike; else each
    implementation runs all of its runs alone, one process at a time (needed where two do not fit in memory)."""
    results, workers = {}, []
    try:
        if not interleave:
            for name, (python, spec) in implementations.items():
                worker = Worker(python, spec, workdir, name)
                workers.append(worker)
                for _ in range(runs):
                    worker.run()
                results[name] = worker.finish()
            return results
        workers = [Worker(python, spec, workdir, name) for name, (python, spec) in implementations.items()]
        for r in range(runs):
            print(f"[benchmark] run {r + 1}/{runs}", file=sys.stderr, flush=True)
            for worker in workers if r % 2 == 0 else workers[::-1]:
                worker.run()
        return {worker.name: worker.finish() for worker in workers}
    finally:
        for worker in workers:
            worker.kill()


def summarize(result: dict, stats: dict, padded_tokens: int, flops: float, steps: int, ceiling: float) -> dict:
    runs = result["run_seconds"]
    median = statistics.median(runs)
    return {
        "tokens_per_s": round(padded_tokens / median, 1),
        "non_padding_tokens_per_s": round(stats["timed_real_tokens_per_run"] / median, 1),
        "examples_per_s": round(stats["timed_examples_per_run"] / median, 3),
        "seconds_per_step_median": round(median / steps, 3),
        "run_seconds": [round(s, 3) for s in runs],
        "run_tokens_per_s_min_max": [round(padded_tokens / max(runs), 1), round(padded_tokens / min(runs), 1)],
        # CPU time of the process (all threads) per run: on a machine shared with other work, wall time measures the
        # load as much as the code; tokens per CPU-second x threads approximates the unloaded tokens/s from above
        "tokens_per_cpu_second": round(padded_tokens / statistics.median(result["run_cpu_seconds"]), 1),
        "run_cpu_seconds": [round(s, 3) for s in result["run_cpu_seconds"]],
        "peak_memory_gb": round(result["peak_memory_bytes"] / 1e9, 3),
        "peak_memory_kind": result["peak_memory_kind"],
        "matmul_tflops_measured_here": round(result["matmul_tflops"], 4),
        "achieved_tflops": round(flops / median / 1e12, 4),
        "mfu": round(flops / median / 1e12 / ceiling, 4),
        "warmup_seconds": round(result["warmup_seconds"], 2),
        "init_seconds": round(result["init_seconds"], 2),
        "trainable_parameters": result["trainable_parameters"],
        "first_step_losses": [round(x, 4) for x in result["first_losses"]],
        "versions": {k: result[k] for k in ("torch", "python", "lightning", "litgpt") if k in result},
    }


def memory_traffic(result: dict, passes: int, bandwidth: float) -> dict:
    """The step against the memory ceiling: every forward+backward pass reads each weight at least twice, so
    2 x parameter bytes x passes per run over the run time is a floor on the bytes/s the step moves (activations,
    gradients and optimizer state come on top)."""
    median = statistics.median(result["run_seconds"])
    floor = 2 * result["parameter_bytes"] * passes / median / 1e9
    return {"weight_read_gbps_floor": round(floor, 2), "weight_read_share_of_bandwidth": round(floor / bandwidth, 4),
            "memory_gbps_measured_here": round(result["memory_gbps"], 2), "profile_top_ops": result["profile"]}


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lit_gpt", "scripts/dev/benchmark.py",
                                "scripts/dev/benchmark_data.py", "scripts/dev/benchmark_worker.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


def main(
    model: str = "SmolLM2-135M",
    method: Literal["lora", "full"] = "lora",
    precision: Optional[Literal[PRECISIONS]] = None,
    data_dir: Optional[Path] = None,
    dataset: Literal["lima", "alpaca", "dolly", "fixed", "random"] = "lima",
    max_examples: Optional[int] = None,
    max_seq_length: int = 512,
    micro_batch_size: int = 4,
    batch_size: Optional[int] = None,
    order: str = "shuffle",
    packing: bool = False,
    steps_per_run: int = 2,
    warmup_steps: int = 2,
    runs: int = 5,
    threads: Optional[int] = None,
    accelerator: Literal["auto", "cpu", "cuda"] = "auto",
    lora_r: int = 8,
    lora_alpha: float = 16.0,
    lora_dropout: float = 0.05,
    lora_targets: tuple = ("query", "value"),
    gradient_checkpointing: bool = False,
    compile: bool = False,
    compare_eager: bool = False,
    compare_autograd_layers: bool = False,
    seed: int = 1337,
    compare_litgpt: bool = False,
    litgpt_compile: bool = False,
    interleave: Optional[bool] = None,
    litgpt_batching: Literal["same", "plain"] = "same",
    litgpt_python: str = DEFAULT_LITGPT_PYTHON,
    n_layer: Optional[int] = None,
    profile: bool = False,
) -> dict:
    """Times our training step (and optionally LitGPT's) on a random-init model; prints JSON.

    Args:
        model: registry name (e.g. SmolLM2-135M) or path to a lit_config.json
        method: lora (only LoRA tensors trained) or full
        precision: training precision (Fabric's names); default: what finetune/ picks here (bf16-true where bf16 is
            native: CUDA with bf16, CPUs with AMX or AVX512-bf16; else 32-true)
        data_dir: a prepared dataset (its train.pt); overrides --dataset
        dataset: lima, alpaca or dolly (real rows, tokenized at run time), fixed (rows of exactly max_seq_length tokens)
            or random (as fixed, random token ids: no shared files needed; 64 rows unless --max_examples)
        max_examples: use only the first N rows of the data
        max_seq_length: longest input in tokens (longer examples are truncated)
        micro_batch_size: examples per forward/backward
        batch_size: examples per optimizer step (default: micro_batch_size, one micro-batch per step)
        order: the training loop's --order (shuffle groups batches by length)
        packing: ours packs each global batch into rows of max_seq_length (finetune/ --packing true);
            micro_batch_size then counts rows
        steps_per_run: optimizer steps (global batches) in one timed run; 0: the whole epoch (all of the data)
        warmup_steps: untimed steps first (kernel selection, compilation, allocator)
        runs: timed runs over the same batches; medians are reported (>= 5 for a report)
        threads: torch intra-op threads (default: all cores)
        accelerator: cpu, cuda or auto
        lora_r: LoRA rank
        lora_alpha: LoRA alpha
        lora_dropout: LoRA dropout
        lora_targets: LoRA targets (query, key, value, projection, mlp, head)
        gradient_checkpointing: recompute activations in backward (ours only)
        compile: run ours with --compile true (torch.compile'd blocks; compile time shows in warmup_seconds)
        compare_eager: with --compile, also run ours without it ("ours_eager")
        compare_autograd_layers: also run ours with RMSNorm and the gated MLP as plain autograd ops
            ("ours_autograd_layers"), i.e. without lit_gpt.layers' lean backward passes: an A/B of their speed and
            peak memory
        seed: seed of the weights, LoRA init, data order
        compare_litgpt: also run LitGPT's GPT + LoRA on the same examples (needs its venv, see the module docstring)
        litgpt_compile: torch.compile LitGPT's blocks too (its best case; `litgpt finetune` itself does not compile)
        interleave: keep all implementations' processes alive and alternate their runs, so a drift in machine speed
            hits all alike (default: on CPU; on CUDA they run one after the other, as two may not fit on one GPU)
        litgpt_batching: same (LitGPT trains on exactly our micro-batch tensors) or plain (the same examples in
            epoch order, padded to the longest of each micro-batch, as its own loader does; compare non-padding
            tokens/s then)
        litgpt_python: the python of the LitGPT venv (typed on the command line, not read from a --config file: it
            is run)
        n_layer: override the number of layers (quick checks)
        profile: after the timed runs, profile one step of each implementation and report its top operators
    """
    return run_benchmark(SimpleNamespace(**locals()))


def run_benchmark(s: SimpleNamespace) -> dict:
    """main's steps on its settings `s`: checked, the examples and the batch plan, the workers' timed runs, the
    report (printed as JSON)."""
    config, s = checked_settings(s)
    start = time.perf_counter()
    examples, data_source = load_examples(s.data_dir, s.dataset, s.max_seq_length, config.vocab_size, s.max_examples)
    prepare_seconds = time.perf_counter() - start
    plan = batch_plan(examples, s.max_seq_length, config.vocab_size, s.batch_size, s.micro_batch_size,
                      s.steps_per_run or None, s.seed, s.order, s.litgpt_batching, s.packing)
    flops = training_flops(config, plan["flops_lengths"], s.method)
    spec = worker_spec(s, config)
    report = report_head(s, config, spec, plan, data_source, prepare_seconds)
    implementations, results = run_implementations(s, spec, plan)
    # the machine's ceiling: the best of every process's measurements (each alone is noisy on a shared machine)
    ceiling = max(result["matmul_tflops"] for result in results.values())
    bandwidth = max(result["memory_gbps"] for result in results.values())
    report["machine"]["matmul_tflops"] = round(ceiling, 4)
    report["machine"]["memory_gbps"] = round(bandwidth, 2)
    for name, result in results.items():
        side = "litgpt" if name == "litgpt" else "ours"
        report[name] = {"compile": implementations[name][1]["compile"],
                        **summarize(result, plan["stats"], plan["padded_tokens"][side], flops,
                                    plan["stats"]["timed_steps_per_run"], ceiling),
                        **memory_traffic(result, plan["stats"][f"timed_passes_{side}"], bandwidth)}
    if s.compare_litgpt:
        report.update(litgpt_comparison(report, results))
    if s.compare_autograd_layers:
        report["lean_layers_vs_autograd"] = paired_comparison(report, results, "ours", "ours_autograd_layers")
    report["machine"]["load_average_after"] = os.getloadavg()
    # other processes on the cores make wall-clock numbers meaningless: say so in the report itself
    report["machine"]["quiet_before_start"] = report["machine"]["load_average_before"][0] < 0.75 * (os.cpu_count() or 1)
    print(json.dumps(report, indent=2))
    return report


def checked_settings(s: SimpleNamespace) -> tuple[Config, SimpleNamespace]:
    """The model's config and the settings with their defaults filled in (batch_size, accelerator, threads,
    precision); one line for each impossible one."""
    overrides = {"n_layer": s.n_layer} if s.n_layer is not None else {}
    model = s.model
    config = Config.from_file(model, **overrides) if model.endswith(".json") else Config.from_name(model, **overrides)
    batch_size = s.batch_size or s.micro_batch_size
    if batch_size % s.micro_batch_size:
        raise UserError(f"--batch_size {batch_size} is not a multiple of --micro_batch_size {s.micro_batch_size}")
    if s.runs < 1 or s.steps_per_run < 0 or s.warmup_steps < 0:
        raise UserError("--runs must be >= 1, --steps_per_run and --warmup_steps >= 0")
    if s.max_seq_length > config.block_size:
        raise UserError(f"--max_seq_length {s.max_seq_length} is longer than {config.name}'s block size {config.block_size}")
    accelerator = s.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError("--accelerator cuda: no CUDA device here")
    threads = s.threads or os.cpu_count() or 1
    precision = choose_precision(s.precision, cuda=accelerator == "cuda")
    if s.compare_litgpt:  # it runs that interpreter: only as typed on the command line, not from a --config file
        check_typed_on_command_line("litgpt_python", s.litgpt_python, DEFAULT_LITGPT_PYTHON)
    if s.compare_litgpt and not Path(s.litgpt_python).is_file():
        raise UserError(f"{s.litgpt_python}: no LitGPT environment; create it with `{LITGPT_INSTALL}` "
                        "or pass --litgpt_python")
    return config, SimpleNamespace(**{**vars(s), "batch_size": batch_size, "accelerator": accelerator,
                                      "threads": threads, "precision": precision})


def worker_spec(s: SimpleNamespace, config: Config) -> dict:
    """What every worker builds and runs (the plan's path is added once it is saved)."""
    return {"config": config.to_dict(), "method": s.method, "precision": s.precision,
            "micro_batch_size": s.micro_batch_size, "batch_size": s.batch_size, "max_seq_length": s.max_seq_length,
            "warmup_steps": s.warmup_steps, "runs": s.runs, "threads": s.threads, "device": s.accelerator,
            "seed": s.seed, "compile": s.compile, "packing": s.packing, "profile": s.profile, "gradient_checkpointing": s.gradient_checkpointing,
            "lora": {"r": s.lora_r, "alpha": s.lora_alpha, "dropout": s.lora_dropout, "targets": list(s.lora_targets)},
            # for the LitGPT worker, which does not import lit_gpt
            "windowed_layers": [config.is_windowed(i) for i in range(config.n_layer)]}


def report_head(s: SimpleNamespace, config: Config, spec: dict, plan: dict, data_source: str,
                prepare_seconds: float) -> dict:
    """The report's setting, data, machine and code sections (the results are added after the runs)."""
    return {
        "setting": {"model": config.name, "method": s.method, "precision": s.precision, "data": data_source,
                    "max_seq_length": s.max_seq_length, "micro_batch_size": s.micro_batch_size,
                    "batch_size": s.batch_size, "order": s.order, "packing": s.packing,
                    "steps_per_run": s.steps_per_run or "epoch",
                    "warmup_steps": s.warmup_steps, "runs": s.runs,
                    "litgpt_batching": s.litgpt_batching if s.compare_litgpt else None,
                    "threads": s.threads, "accelerator": s.accelerator,
                    "gradient_checkpointing": s.gradient_checkpointing,
                    "lora": spec["lora"] if s.method == "lora" else None},
        "data": {**plan["stats"], "prepare_seconds": round(prepare_seconds, 2)},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": torch.cuda.get_device_name()
                    if s.accelerator == "cuda" else None, "load_average_before": os.getloadavg()},
        "code": {"commit": git_commit()},
    }


def run_implementations(s: SimpleNamespace, spec: dict, plan: dict) -> tuple[dict, dict]:
    """{name: (python, spec)} of the implementations asked for, and {name: result} of their timed runs."""
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        workdir = Path(tmp)
        plan_path = workdir / "plan.pt"
        torch.save({k: plan[k] for k in ("examples", "batches", "micro_batches")}, plan_path)
        spec["plan"] = str(plan_path)
        implementations = {"ours": (sys.executable, {**spec, "implementation": "ours"})}
        if s.compile and s.compare_eager:
            implementations["ours_eager"] = (sys.executable, {**spec, "implementation": "ours", "compile": False})
        if s.compare_autograd_layers:
            implementations["ours_autograd_layers"] = (sys.executable, {**spec, "implementation": "ours",
                                                                        "autograd_layers": True})
        if s.compare_litgpt:
            implementations["litgpt"] = (s.litgpt_python, {**spec, "implementation": "litgpt",
                                                           "compile": s.litgpt_compile})
        interleave = s.accelerator == "cpu" if s.interleave is None else s.interleave
        return implementations, run_all(implementations, workdir, s.runs, interleave)


def paired_comparison(report: dict, results: dict, name: str, baseline: str) -> dict:
    """`name` against `baseline` (two of our variants on the same batches): the speedup from each interleaved pair
    of runs (their median) and the peak memory ratio."""
    return {"speedup_paired_median": round(statistics.median(
                b / a for a, b in zip(results[name]["run_seconds"], results[baseline]["run_seconds"])), 3),
            "speedups_paired": [round(b / a, 3) for a, b in zip(results[name]["run_seconds"],
                                                                 results[baseline]["run_seconds"])],
            "peak_memory_ratio": round(report[name]["peak_memory_gb"] / report[baseline]["peak_memory_gb"], 3)}


def litgpt_comparison(report: dict, results: dict) -> dict:
    """Ours (each variant) against LitGPT, which trained on the same examples: the ratio of useful (non-padding)
    tokens per second, its median over the interleaved pairs of runs, and the peak memory ratio."""
    litgpt, comparison = report["litgpt"], {}
    for name in (n for n in results if n != "litgpt"):
        suffix = name[len("ours"):]
        paired = paired_comparison(report, results, name, "litgpt")  # drift-robust: the median over pairs of runs
        comparison["speedup_vs_litgpt" + suffix] = round(report[name]["non_padding_tokens_per_s"]
                                                         / litgpt["non_padding_tokens_per_s"], 3)
        comparison["speedup_vs_litgpt_paired_median" + suffix] = paired["speedup_paired_median"]
        comparison["peak_memory_ratio_vs_litgpt" + suffix] = paired["peak_memory_ratio"]
    return comparison


if __name__ == "__main__":
    run_cli(main)

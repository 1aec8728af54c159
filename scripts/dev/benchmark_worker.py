"""One implementation's training steps, timed in a process of its own for scripts/dev/benchmark.py (which starts
`python benchmark_worker.py SPEC.json` and talks to it over stdin/stdout, see `timed_steps`).

Only the standard library and torch are imported up front: the LitGPT worker runs in LitGPT's virtual environment,
where lit_gpt need not be installed (`run_ours` imports it when it runs).
"""

import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

READY, RUN_DONE, RESULT = "BENCHMARK_READY", "BENCHMARK_RUN_DONE", "BENCHMARK_RESULT "  # worker -> parent lines
DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "32-true": torch.float32,
          "bf16-mixed": torch.float32, "16-mixed": torch.float32}
MATMUL_DTYPES = {"bf16-true": torch.bfloat16, "bf16-mixed": torch.bfloat16, "16-true": torch.float16,
                 "16-mixed": torch.float16, "32-true": torch.float32}


# ---- measurements used by both implementations ----------------------------------------------------------------------
def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (VmHWM) from /proc; 0 where there is no /proc."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else 0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(dtype: torch.dtype, device: torch.device, n: int = 2048, repeats: int = 5,
                  budget_seconds: float = 20.0) -> float:
    """Best-of-`repeats` TFLOP/s of an n x n x n matmul: the ceiling MFU is measured against (the workers take the
    better of a measurement before and one after the timed runs). Stops early after
    `budget_seconds` (bf16 without native bf16 units takes about a minute per matmul)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    start = time.perf_counter()
    a @ b  # warm-up: kernel selection, page faults
    synchronize(device)
    best = time.perf_counter() - start
    for _ in range(repeats):
        if time.perf_counter() - start > budget_seconds:
            break
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e12


def memory_gbps(device: torch.device, mib: int = 512, repeats: int = 5) -> float:
    """Best-of-`repeats` GB/s of copying a `mib` MiB tensor (far larger than the caches): bytes read plus bytes
    written over the time, the machine's other ceiling (a step whose share of it is higher than its share of the
    matmul peak is bound by memory traffic)."""
    src = torch.empty(mib * 2 ** 20, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)
    dst.copy_(src)  # page faults
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() / best / 1e9


def op_profile(step, work, top: int = 15) -> list:
    """One step under torch.profiler: the `top` operators by self time, [name, self ms, share of the step]."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as prof:
        step(work)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [[e.key, round(e.self_cpu_time_total / 1e3, 2), round(e.self_cpu_time_total / total, 4)]
            for e in events[:top]]


def compile_blocks(blocks: torch.nn.ModuleList) -> None:
    """LitGPT's blocks compiled as ours are (`GPT.compile_blocks`): each block in place, one compiled graph serving
    all of them; the head and loss stay eager."""
    for block in blocks:
        block.compile()


def timed_steps(step, steps: list, warmup_steps: int, device: torch.device, profile: bool = False) -> dict:
    """Runs `step(work)` on warm-up steps, then one timed run over all of `steps` each time the parent asks (a line
    "RUN" on stdin, answered by RUN_DONE), until it says "END": the parent interleaves the implementations' runs,
    so a slow patch of a shared machine hits all of them alike."""
    start = time.perf_counter()
    for k in range(warmup_steps):
        step(steps[k % len(steps)])
    synchronize(device)
    warmup_seconds = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run_seconds, run_cpu_seconds, step_seconds, losses = [], [], [], []
    print(READY, flush=True)
    for request in sys.stdin:
        if request.strip() != "RUN":
            break
        run_start, cpu_start = time.perf_counter(), time.process_time()
        for work in steps:
            t0 = time.perf_counter()
            losses.append(step(work))
            synchronize(device)
            step_seconds.append(time.perf_counter() - t0)
        run_seconds.append(time.perf_counter() - run_start)
        run_cpu_seconds.append(time.process_time() - cpu_start)  # all threads; less sensitive to other load
        print(RUN_DONE, flush=True)
    return {"warmup_seconds": warmup_seconds, "run_seconds": run_seconds, "run_cpu_seconds": run_cpu_seconds,
            "step_seconds": step_seconds, "first_losses": losses[: len(steps)], "last_loss": losses[-1] if losses else None,
            # after the timed runs, so the profiler's overhead touches none of them
            "profile": op_profile(step, steps[0]) if profile else None}


def worker_result(spec: dict, device: torch.device, timing: dict, ceiling: float, init_seconds: float,
                  extra: dict) -> dict:
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    extra = dict(extra)
    parameter_bytes = sum(p.numel() * p.element_size() for p in extra.pop("model").parameters())
    return {**timing, **extra, "matmul_tflops": ceiling, "init_seconds": init_seconds,
            "memory_gbps": memory_gbps(device),
            "parameter_bytes": parameter_bytes,
            "peak_memory_bytes": peak, "peak_memory_kind": "cuda_max_memory_allocated" if device.type == "cuda"
            else "peak_rss", "peak_rss_bytes": peak_rss_bytes(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "device": str(device)}


def setup_worker(spec: dict) -> torch.device:
    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # as our loop and LitGPT's scripts do: TF32 for 32-true
    return device


# ---- the two implementations ------------------------------------------------------------------------------------------
def run_ours(spec: dict) -> dict:
    """Our model, LoRA and the training loop's own step function on the planned batches."""
    import lightning as L

    from lit_gpt.config import Config
    from lit_gpt.lora import LoRAConfig, mark_only_lora_as_trainable
    from lit_gpt.model import GPT
    from lit_gpt.precision import param_dtype
    from lit_gpt.train.args import TrainArgs, check_batch_split
    from lit_gpt.train.dataset import TrainingSet
    from lit_gpt.train.packing import Packing
    from lit_gpt.train.step import make_optimizer, train_step

    device = setup_worker(spec)
    if spec.get("autograd_layers"):  # the A/B baseline: RMSNorm and the gated product as plain autograd ops
        import lit_gpt.layers

        lit_gpt.layers._saves_for_backward = lambda *tensors: False
    plan = torch.load(spec["plan"], weights_only=True)
    ceiling = matmul_tflops(MATMUL_DTYPES[spec["precision"]], device)
    start = time.perf_counter()
    config = Config(**spec["config"])
    args = TrainArgs(micro_batch_size=spec["micro_batch_size"], batch_size=spec["batch_size"],
                     precision=spec["precision"], gradient_checkpointing=spec["gradient_checkpointing"],
                     warmup_steps=10, seed=spec["seed"])
    fabric = L.Fabric(accelerator=device.type, devices=1, precision=spec["precision"], loggers=[])
    torch.manual_seed(spec["seed"])
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(param_dtype(spec["precision"]))  # build in the training dtype: no float32 copy in RAM
    try:
        model = GPT(config)
    finally:
        torch.set_default_dtype(default_dtype)
    if spec["method"] == "lora":
        lora = spec["lora"]
        LoRAConfig(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"], targets=tuple(lora["targets"])).apply(model)
        mark_only_lora_as_trainable(model)
    model.gradient_checkpointing = spec["gradient_checkpointing"]
    if spec["compile"]:
        model.compile_blocks()
    model = fabric.setup_module(model)
    optimizer = fabric.setup_optimizers(make_optimizer(model, args.learning_rate, args.weight_decay))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    train_set = TrainingSet(plan["examples"], spec["max_seq_length"], "benchmark", config.vocab_size)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    init_seconds = time.perf_counter() - start

    accum = check_batch_split(args, 1)
    packing = Packing(spec["max_seq_length"], spec["micro_batch_size"]) if spec.get("packing") else None
    steps_done = 0

    def step(batch: list) -> float:
        nonlocal steps_done
        result = train_step(fabric, model, optimizer, scheduler, train_set, batch, accum=accum, seed=args.seed,
                            step=steps_done, grad_clip=args.grad_clip, precision=spec["precision"], packing=packing)
        steps_done += 1
        return result.loss

    timing = timed_steps(step, plan["batches"], spec["warmup_steps"], device, spec.get("profile", False))
    ceiling = max(ceiling, matmul_tflops(MATMUL_DTYPES[spec["precision"]], device))
    return worker_result(spec, device, timing, ceiling, init_seconds,
                         {"implementation": "ours", "trainable_parameters": trainable, "lightning": L.__version__,
                          "model": model})


def run_litgpt(spec: dict) -> dict:
    """LitGPT's GPT and LoRA classes in a minimal loop over the same micro-batch tensors (runs in LitGPT's venv)."""
    from importlib.metadata import version

    from litgpt.utils import chunked_cross_entropy

    device = setup_worker(spec)
    plan = torch.load(spec["plan"], weights_only=True)
    dtype = DTYPES[spec["precision"]]
    if spec["precision"] not in ("bf16-true", "16-true", "32-true"):
        raise SystemExit(f"the LitGPT baseline runs true precisions only, not {spec['precision']}")
    ceiling = matmul_tflops(MATMUL_DTYPES[spec["precision"]], device)
    start = time.perf_counter()
    model = litgpt_model(spec, litgpt_config(spec), dtype, device)
    optimizer, trainable = litgpt_optimizer(model)
    init_seconds = time.perf_counter() - start

    def step(micro_batches: list) -> float:
        total = 0.0
        for input_ids, targets in micro_batches:
            input_ids, targets = input_ids.to(device), targets.to(device)
            logits = model(input_ids, lm_head_chunk_size=128)
            loss = chunked_cross_entropy(logits, targets) / len(micro_batches)
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return total

    timing = timed_steps(step, plan["micro_batches"], spec["warmup_steps"], device, spec.get("profile", False))
    ceiling = max(ceiling, matmul_tflops(MATMUL_DTYPES[spec["precision"]], device))
    return worker_result(spec, device, timing, ceiling, init_seconds,
                         {"implementation": "litgpt", "trainable_parameters": trainable, "litgpt": version("litgpt"),
                          "model": model})


def litgpt_config(spec: dict):
    """LitGPT's Config (with its LoRA settings) of our config in the spec."""
    from litgpt.lora import Config

    ours = spec["config"]
    lora = spec["lora"] if spec["method"] == "lora" else {"r": 0, "alpha": 1, "dropout": 0.0, "targets": []}
    windowed = spec["windowed_layers"]  # Config.is_windowed of each layer (lit_gpt is not imported here)
    gemma = dict(  # LitGPT's spelling of the Gemma switches (its RMSNorm adds the unit offset for "Gemma" names)
        scale_embeddings=ours["scale_embeddings"], attention_scores_scalar=ours["attention_scores_scalar"],
        post_attention_norm=ours["post_block_norms"], post_mlp_norm=ours["post_block_norms"], norm_qk=ours["norm_qk"],
        attention_logit_softcapping=ours["attention_logit_softcapping"],
        final_logit_softcapping=ours["final_logit_softcapping"],
        sliding_window_indices=[int(w) for w in windowed] if ours["sliding_window"] else None)
    if ours["rope_local_base"] is not None:
        gemma.update(rope_local_base_freq=ours["rope_local_base"], rope_indices=[int(w) for w in windowed])
    if ours["rope_scaling"] is not None:
        raise SystemExit("the LitGPT baseline here maps plain rotary embeddings only (set rope_scaling to null)")
    name = ours["name"].replace("gemma", "Gemma")  # LitGPT picks the (1 + weight) RMSNorm by a "Gemma" name
    if ours["norm_unit_offset"] != ("Gemma" in name):
        name = f"Gemma ({name})" if ours["norm_unit_offset"] else name.replace("Gemma", "G")
    return Config(
        **gemma,
        name=name, block_size=ours["block_size"], vocab_size=ours["vocab_size"],
        padded_vocab_size=ours["vocab_size"], n_layer=ours["n_layer"], n_head=ours["n_head"], n_embd=ours["n_embd"],
        n_query_groups=ours["n_query_groups"], head_size=ours["head_size"],
        rotary_percentage=ours["rotary_percentage"], rope_base=int(ours["rope_base"]),
        parallel_residual=ours["parallel_residual"], shared_attention_norm=ours["shared_attention_norm"],
        bias=ours["bias"], attn_bias=ours["attn_bias"], lm_head_bias=ours["lm_head_bias"],
        norm_class_name=ours["norm_class_name"], norm_eps=ours["norm_eps"], mlp_class_name=ours["mlp_class_name"],
        intermediate_size=ours["intermediate_size"], gelu_approximate=ours["gelu_approximate"],
        sliding_window_size=ours["sliding_window"],
        lora_r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
        **{f"lora_{t}": t in lora["targets"] for t in ("query", "key", "value", "projection", "mlp", "head")})


def litgpt_model(spec: dict, config, dtype: torch.dtype, device: torch.device):
    """LitGPT's GPT with our init (seeded as ours), tied weights where ours are, only LoRA trainable for lora."""
    from litgpt.lora import GPT, mark_only_lora_as_trainable

    torch.manual_seed(spec["seed"])
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = GPT(config)
    torch.set_default_dtype(torch.float32)
    with torch.no_grad():  # the same init as ours (LitGPT's GPT keeps PyTorch's defaults): same starting loss
        for module in model.modules():
            if type(module) in (torch.nn.Linear, torch.nn.Embedding):
                module.weight.normal_(0.0, 0.02)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
    if spec["config"]["tie_embeddings"]:  # same parameter count and memory as our model
        model.lm_head.linear.weight = model.transformer.wte.weight
    model.max_seq_length = spec["max_seq_length"]
    if spec["method"] == "lora":
        mark_only_lora_as_trainable(model)
    if spec["gradient_checkpointing"]:
        raise SystemExit("the LitGPT baseline has no gradient checkpointing switch in this minimal loop")
    if spec["compile"]:
        compile_blocks(model.transformer.h)
    model.train()
    return model


def litgpt_optimizer(model) -> tuple[torch.optim.Optimizer, int]:
    """AdamW as ours makes it (no decay on norms and biases); and the number of trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([g for g in ({"params": decay, "weight_decay": 0.01},
                                               {"params": no_decay, "weight_decay": 0.0}) if g["params"]], lr=3e-4)
    trainable = sum(p.numel() for p in params)
    return optimizer, trainable


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = run_ours(spec) if spec["implementation"] == "ours" else run_litgpt(spec)
    print(RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    worker_main(sys.argv[1])

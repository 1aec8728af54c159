"""Training speed and memory of our fine-tuning step, optionally side by side with LitGPT's.

    python scripts/dev/benchmark.py --method lora --precision 32-true --dataset fixed --threads 2 --compare_litgpt true
    python scripts/dev/benchmark.py --method full --precision 32-true --dataset dolly --max_examples 64 \
        --steps_per_run 0 --compare_litgpt true --litgpt_batching plain

The model is built from a registry name or a lit_config.json path with random weights (nothing is downloaded). The
examples come from a prepared dataset (`--data_dir`, its train.pt) or are made at run time (`--dataset`): `lima` or
`dolly` tokenizes the real rows in ../shared/datasets with the SmolLM2 tokenizer through our data pipeline (chat
format, prompt masked, truncated to --max_seq_length), so lengths and trained-token masks follow the real
distribution; `fixed` cuts the same token stream into rows of exactly --max_seq_length tokens, all trained (the
classic "micro-batch x sequence length" throughput setting). Token ids are taken modulo the model's vocabulary.

The batches are those our training loop would train on (`lit_gpt.train.dataset.epoch_batches`: length-grouped for the
default shuffle order); each optimizer step takes one global batch of --batch_size examples split into micro-batches
of --micro_batch_size. The timed work is the first --steps_per_run global batches (0: the whole epoch); after
--warmup_steps steps, that same work is timed --runs times and the medians are reported. Each implementation runs in
its own process (so peak RSS is its own) with --threads intra-op threads. On CPU the processes stay alive side by
side and take turns, one timed run each, the order alternating (--interleave): on a shared machine whose speed
drifts, that keeps the comparison fair; `speedup_vs_litgpt_paired_median` is the median over those pairs of runs.
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
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal, Optional


import torch

try:
    import lit_gpt  # noqa: F401  (the scripts use the installed package)
except ModuleNotFoundError:
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.config import Config as OurConfig  # (run_litgpt imports LitGPT's Config)
from lit_gpt.data.normalize import normalize
from lit_gpt.data.order import epoch_order
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.train.args import TrainArgs, check_batch_split
from lit_gpt.train.dataset import TrainingSet, epoch_batches, padding_stats, split_batch
from lit_gpt.train.step import make_optimizer, train_step
from lit_gpt.utils import check_typed_on_command_line, cpu_name

ROOT = Path(__file__).resolve().parents[2]
READY, RUN_DONE, RESULT = "BENCHMARK_READY", "BENCHMARK_RUN_DONE", "BENCHMARK_RESULT "  # worker -> parent lines
SHARED_DIR = ROOT.parent / "shared"
TOKENIZER_DIR = SHARED_DIR / "tokenizers" / "smollm2"
# shared file and its column mapping (as in scripts/prepare_lima.py / prepare_dolly.py)
DATASET_FILES = {"lima": ("datasets/lima/train.jsonl", None),
                 "dolly": ("datasets/dolly/dolly_3k.jsonl", {"input": "context", "output": "response"})}
DEFAULT_LITGPT_PYTHON = "/tmp/litgpt-venv/bin/python"
LITGPT_INSTALL = "python -m venv /tmp/litgpt-venv && /tmp/litgpt-venv/bin/pip install torch==2.13.0 litgpt==0.5.13"
WORKER_FLAG = "--_worker"  # internal: `benchmark.py --_worker spec.json` runs one implementation, prints JSON
DTYPES = {"bf16-true": torch.bfloat16, "16-true": torch.float16, "32-true": torch.float32,
          "bf16-mixed": torch.float32, "16-mixed": torch.float32}
MATMUL_DTYPES = {"bf16-true": torch.bfloat16, "bf16-mixed": torch.bfloat16, "16-true": torch.float16,
                 "16-mixed": torch.float16, "32-true": torch.float32}


# ---- measurements used by both implementations (stdlib + torch only: the LitGPT worker runs these too) -------------
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


def compile_blocks(blocks: torch.nn.ModuleList) -> None:
    """LitGPT's blocks compiled as ours are (`GPT.compile_blocks`): each block in place, one compiled graph serving
    all of them; the head and loss stay eager."""
    for block in blocks:
        block.compile()


def timed_steps(step, steps: list, warmup_steps: int, device: torch.device) -> dict:
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
            "step_seconds": step_seconds, "first_losses": losses[: len(steps)], "last_loss": losses[-1] if losses else None}


def worker_result(spec: dict, device: torch.device, timing: dict, ceiling: float, init_seconds: float,
                  extra: dict) -> dict:
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak_rss_bytes()
    return {**timing, **extra, "matmul_tflops": ceiling, "init_seconds": init_seconds,
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

    device = setup_worker(spec)
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
    steps_done = 0

    def step(batch: list) -> float:
        nonlocal steps_done
        result = train_step(fabric, model, optimizer, scheduler, train_set, batch, accum=accum, seed=args.seed,
                            step=steps_done, grad_clip=args.grad_clip, precision=spec["precision"])
        steps_done += 1
        return result.loss

    timing = timed_steps(step, plan["batches"], spec["warmup_steps"], device)
    ceiling = max(ceiling, matmul_tflops(MATMUL_DTYPES[spec["precision"]], device))
    return worker_result(spec, device, timing, ceiling, init_seconds,
                         {"implementation": "ours", "trainable_parameters": trainable, "lightning": L.__version__})


def run_litgpt(spec: dict) -> dict:
    """LitGPT's GPT and LoRA classes in a minimal loop over the same micro-batch tensors (runs in LitGPT's venv)."""
    from importlib.metadata import version

    from litgpt.lora import GPT, Config, mark_only_lora_as_trainable
    from litgpt.utils import chunked_cross_entropy

    device = setup_worker(spec)
    plan = torch.load(spec["plan"], weights_only=True)
    dtype = DTYPES[spec["precision"]]
    if spec["precision"] not in ("bf16-true", "16-true", "32-true"):
        raise SystemExit(f"the LitGPT baseline runs true precisions only, not {spec['precision']}")
    ceiling = matmul_tflops(MATMUL_DTYPES[spec["precision"]], device)
    start = time.perf_counter()
    ours = spec["config"]
    lora = spec["lora"] if spec["method"] == "lora" else {"r": 0, "alpha": 1, "dropout": 0.0, "targets": []}
    windowed = [OurConfig(**ours).is_windowed(i) for i in range(ours["n_layer"])]
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
    config = Config(
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
    if ours["tie_embeddings"]:  # same parameter count and memory as our model
        model.lm_head.linear.weight = model.transformer.wte.weight
    model.max_seq_length = spec["max_seq_length"]
    if spec["method"] == "lora":
        mark_only_lora_as_trainable(model)
    if spec["gradient_checkpointing"]:
        raise SystemExit("the LitGPT baseline has no gradient checkpointing switch in this minimal loop")
    if spec["compile"]:
        compile_blocks(model.transformer.h)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([g for g in ({"params": decay, "weight_decay": 0.01},
                                               {"params": no_decay, "weight_decay": 0.0}) if g["params"]], lr=3e-4)
    trainable = sum(p.numel() for p in params)
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

    timing = timed_steps(step, plan["micro_batches"], spec["warmup_steps"], device)
    ceiling = max(ceiling, matmul_tflops(MATMUL_DTYPES[spec["precision"]], device))
    return worker_result(spec, device, timing, ceiling, init_seconds,
                         {"implementation": "litgpt", "trainable_parameters": trainable, "litgpt": version("litgpt")})


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = run_ours(spec) if spec["implementation"] == "ours" else run_litgpt(spec)
    print(RESULT + json.dumps(result), flush=True)


# ---- data -------------------------------------------------------------------------------------------------------------
def dataset_examples(dataset: str, max_seq_length: int, vocab_size: int, limit: Optional[int]) -> list[dict]:
    """Real LIMA/Dolly rows through our data pipeline (SmolLM2 tokenizer, its chat format, prompt masked); `fixed`
    packs the same token stream into rows of exactly max_seq_length + 1 tokens (inputs and shifted targets), all trained."""
    from lit_gpt.prompts.styles import default_prompt_style
    from lit_gpt.tokenizer import Tokenizer
    from lit_gpt.utils import UserError

    relative_path, columns = DATASET_FILES["lima" if dataset == "fixed" else dataset]
    source = SHARED_DIR / relative_path
    if not source.is_file() or not TOKENIZER_DIR.is_dir():
        raise UserError(f"{source}: the shared datasets and tokenizer are needed for --dataset {dataset}; "
                        "pass --data_dir with a prepared dataset instead")
    rows = [normalize(row, source=dataset) for _, row in iter_records(source, columns=columns)]
    if limit is not None:
        rows = rows[:limit]
    tokenizer = Tokenizer(TOKENIZER_DIR)
    style = default_prompt_style(TOKENIZER_DIR)
    row_length = max_seq_length + 1  # training shifts: inputs = ids[:-1], targets = labels[1:]
    tokenized, _ = tokenize_examples(rows, tokenizer, style, row_length if dataset != "fixed" else 10 ** 9)
    examples = [{"input_ids": e["input_ids"] % vocab_size, "labels": torch.where(e["labels"] >= 0, e["labels"] % vocab_size,
                                                                                 e["labels"])} for e in tokenized]
    if dataset == "fixed":
        stream = torch.cat([e["input_ids"] for e in examples])
        n = stream.numel() // row_length
        examples = [{"input_ids": row.clone(), "labels": row.clone()} for row in stream[: n * row_length].view(n, row_length)]
    return examples


def load_examples(data_dir: Optional[Path], dataset: str, max_seq_length: int, vocab_size: int,
                  limit: Optional[int]) -> tuple[list[dict], str]:
    if data_dir is None:
        return dataset_examples(dataset, max_seq_length, vocab_size, limit), f"{dataset} (tokenized at run time)"

    train, _, manifest = load_prepared(data_dir)
    train = train[:limit] if limit is not None else train
    return [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in train], str(data_dir)


def batch_plan(examples: list[dict], max_seq_length: int, vocab_size: int, batch_size: int, micro_batch_size: int,
               steps: Optional[int], seed: int, order: str, litgpt_batching: str) -> dict:
    """The first `steps` global batches our loop would train on (all of the epoch for None), and LitGPT's
    micro-batches of the same examples: the same tensors (`same`), or (`plain`) those examples in the epoch order
    cut into micro-batches and padded to the longest, as a loader without length grouping does. Plus padding
    statistics of the whole epoch for the loop's batching and for plain batching."""
    data = TrainingSet(examples, max_seq_length, "benchmark", vocab_size)
    accum = batch_size // micro_batch_size
    epoch = epoch_batches(data, 0, seed, order, batch_size)
    if steps is not None and len(epoch) < steps:
        raise SystemExit(f"only {len(epoch)} batches of {batch_size} in the data; lower --steps_per_run")
    chosen = epoch[:steps] if steps is not None else epoch
    timed = [mb for b in chosen for mb in split_batch(b, accum)]
    plain_order = epoch_order(data.raw, 0, seed, order)
    if litgpt_batching == "plain":
        position = {i: k for k, i in enumerate(plain_order)}
        in_order = sorted((i for mb in timed for i in mb), key=position.__getitem__)
        litgpt_timed = [in_order[s: s + micro_batch_size] for s in range(0, len(in_order), micro_batch_size)]
    else:
        litgpt_timed = timed
    litgpt_steps = [litgpt_timed[s: s + accum] for s in range(0, len(litgpt_timed), accum)]
    micro_batches = [[data.collate(mb, torch.device("cpu")) for mb in step] for step in litgpt_steps]
    plain = [plain_order[s: s + micro_batch_size] for s in range(0, len(plain_order), micro_batch_size)]
    grouped = [mb for b in epoch for mb in split_batch(b, accum)]

    def share(mbs: list) -> float:
        real, padded = padding_stats(data, mbs)
        return round(real / padded, 4)

    real, padded = padding_stats(data, timed)
    trained = sum(data.n_targets[i] for mb in timed for i in mb)
    return {"examples": [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in data.raw],
            "batches": chosen, "micro_batches": micro_batches,
            "padded_tokens": {"ours": padded, "litgpt": padding_stats(data, litgpt_timed)[1]},
            "stats": {"examples_in_data": len(data), "timed_steps_per_run": len(chosen),
                      "timed_examples_per_run": sum(len(b) for b in chosen),
                      "timed_real_tokens_per_run": real, "timed_trained_tokens_per_run": trained,
                      "timed_tokens_per_run_ours": padded,
                      "timed_tokens_per_run_litgpt": padding_stats(data, litgpt_timed)[1],
                      "timed_micro_batch_shapes": [[len(mb), max(data.lengths[i] for i in mb)] for mb in timed][:16],
                      "non_padding_share_timed": round(real / padded, 4),
                      "non_padding_share_epoch_loop_batching": share(grouped),
                      "non_padding_share_epoch_plain_batching": share(plain),
                      "trained_token_share": round(sum(data.n_targets) / max(1, sum(data.lengths)), 4),
                      "length_mean": round(sum(data.lengths) / max(1, len(data)), 1),
                      "length_max": max(data.lengths)},
            "flops_lengths": [data.lengths[i] for mb in timed for i in mb]}


def training_flops(config, lengths: list[int], method: str) -> float:
    """Model FLOPs to train on these examples; LoRA skips the weight-gradient matmuls of the frozen weights."""
    from lit_gpt.model import flops_per_token

    weight_grad = flops_per_token(config, 0) / 3 if method == "lora" else 0.0  # 2 x params of the 6 x params
    return sum(n * (flops_per_token(config, n) - weight_grad) for n in lengths)


# ---- the parent -------------------------------------------------------------------------------------------------------
class Worker:
    """One implementation in its own process (its own peak memory), warmed up, timing one run per `run()`."""

    def __init__(self, python: str, spec: dict, workdir: Path, name: str) -> None:
        spec_path = workdir / f"{name}.json"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
        print(f"[benchmark] {name}: building and warming up ...", file=sys.stderr, flush=True)
        self.name, self.stderr = name, open(workdir / f"{name}.stderr", "w+")
        self.proc = subprocess.Popen([python, str(Path(__file__).resolve()), WORKER_FLAG, str(spec_path)], env=env,
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
        from lit_gpt.utils import UserError

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


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lit_gpt", "scripts/dev/benchmark.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else None
    except OSError:
        return None


def main(
    model: str = "SmolLM2-135M",
    method: Literal["lora", "full"] = "lora",
    precision: Optional[Literal["bf16-true", "bf16-mixed", "16-true", "16-mixed", "32-true"]] = None,
    data_dir: Optional[Path] = None,
    dataset: Literal["lima", "dolly", "fixed"] = "lima",
    max_examples: Optional[int] = None,
    max_seq_length: int = 512,
    micro_batch_size: int = 4,
    batch_size: Optional[int] = None,
    order: str = "shuffle",
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
    seed: int = 1337,
    compare_litgpt: bool = False,
    litgpt_compile: bool = False,
    interleave: Optional[bool] = None,
    litgpt_batching: Literal["same", "plain"] = "same",
    litgpt_python: str = DEFAULT_LITGPT_PYTHON,
    n_layer: Optional[int] = None,
) -> dict:
    """Times our training step (and optionally LitGPT's) on a random-init model; prints JSON.

    Args:
        model: registry name (e.g. SmolLM2-135M) or path to a lit_config.json
        method: lora (only LoRA tensors trained) or full
        precision: training precision (Fabric's names); default: what finetune/ picks here (bf16-true where bf16 is
            native: CUDA with bf16, CPUs with AMX or AVX512-bf16; else 32-true)
        data_dir: a prepared dataset (its train.pt); overrides --dataset
        dataset: lima or dolly (real rows, tokenized at run time) or fixed (rows of exactly max_seq_length tokens)
        max_examples: use only the first N rows of the data
        max_seq_length: longest input in tokens (longer examples are truncated)
        micro_batch_size: examples per forward/backward
        batch_size: examples per optimizer step (default: micro_batch_size, one micro-batch per step)
        order: the training loop's --order (shuffle groups batches by length)
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
    """
    from lit_gpt.config import Config
    from lit_gpt.utils import UserError

    overrides = {"n_layer": n_layer} if n_layer is not None else {}
    config = Config.from_file(model, **overrides) if model.endswith(".json") else Config.from_name(model, **overrides)
    batch_size = batch_size or micro_batch_size
    if batch_size % micro_batch_size:
        raise UserError(f"--batch_size {batch_size} is not a multiple of --micro_batch_size {micro_batch_size}")
    if runs < 1 or steps_per_run < 0 or warmup_steps < 0:
        raise UserError("--runs must be >= 1, --steps_per_run and --warmup_steps >= 0")
    if max_seq_length > config.block_size:
        raise UserError(f"--max_seq_length {max_seq_length} is longer than {config.name}'s block size {config.block_size}")
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise UserError("--accelerator cuda: no CUDA device here")
    threads = threads or os.cpu_count() or 1
    from lit_gpt.precision import choose_precision

    precision = choose_precision(precision, cuda=accelerator == "cuda")
    if compare_litgpt:  # it runs that interpreter: only as typed on the command line, not from a --config file
        check_typed_on_command_line("litgpt_python", litgpt_python, DEFAULT_LITGPT_PYTHON)
    if compare_litgpt and not Path(litgpt_python).is_file():
        raise UserError(f"{litgpt_python}: no LitGPT environment; create it with `{LITGPT_INSTALL}` "
                        "or pass --litgpt_python")

    start = time.perf_counter()
    examples, data_source = load_examples(data_dir, dataset, max_seq_length, config.vocab_size, max_examples)
    prepare_seconds = time.perf_counter() - start
    plan = batch_plan(examples, max_seq_length, config.vocab_size, batch_size, micro_batch_size, steps_per_run or None,
                      seed, order, litgpt_batching)
    flops = training_flops(config, plan["flops_lengths"], method)

    spec = {"config": config.to_dict(), "method": method, "precision": precision, "micro_batch_size": micro_batch_size,
            "batch_size": batch_size, "max_seq_length": max_seq_length, "warmup_steps": warmup_steps, "runs": runs,
            "threads": threads, "device": accelerator, "seed": seed, "compile": compile,
            "gradient_checkpointing": gradient_checkpointing,
            "lora": {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout, "targets": list(lora_targets)}}
    report = {
        "setting": {"model": config.name, "method": method, "precision": precision, "data": data_source,
                    "max_seq_length": max_seq_length, "micro_batch_size": micro_batch_size, "batch_size": batch_size,
                    "order": order, "steps_per_run": steps_per_run or "epoch", "warmup_steps": warmup_steps, "runs": runs,
                    "litgpt_batching": litgpt_batching if compare_litgpt else None,
                    "threads": threads, "accelerator": accelerator,
                    "gradient_checkpointing": gradient_checkpointing,
                    "lora": spec["lora"] if method == "lora" else None},
        "data": {**plan["stats"], "prepare_seconds": round(prepare_seconds, 2)},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": torch.cuda.get_device_name()
                    if accelerator == "cuda" else None, "load_average_before": os.getloadavg()},
        "code": {"commit": git_commit()},
    }
    with tempfile.TemporaryDirectory(prefix="benchmark-") as tmp:
        workdir = Path(tmp)
        plan_path = workdir / "plan.pt"
        torch.save({k: plan[k] for k in ("examples", "batches", "micro_batches")}, plan_path)
        spec["plan"] = str(plan_path)
        implementations = {"ours": (sys.executable, {**spec, "implementation": "ours"})}
        if compile and compare_eager:
            implementations["ours_eager"] = (sys.executable, {**spec, "implementation": "ours", "compile": False})
        if compare_litgpt:
            implementations["litgpt"] = (litgpt_python, {**spec, "implementation": "litgpt", "compile": litgpt_compile})
        results = run_all(implementations, workdir, runs, accelerator == "cpu" if interleave is None else interleave)
    # the machine's ceiling: the best of every process's measurements (each alone is noisy on a shared machine)
    ceiling = max(result["matmul_tflops"] for result in results.values())
    report["machine"]["matmul_tflops"] = round(ceiling, 4)
    for name, result in results.items():
        padded = plan["padded_tokens"]["litgpt" if name == "litgpt" else "ours"]
        report[name] = {"compile": implementations[name][1]["compile"],
                        **summarize(result, plan["stats"], padded, flops, plan["stats"]["timed_steps_per_run"],
                                     ceiling)}
    if compare_litgpt:  # all trained on the same examples: the ratio of useful (non-padding) tokens per second
        litgpt = report["litgpt"]
        for name in (n for n in results if n != "litgpt"):
            suffix = name[len("ours"):]
            report["speedup_vs_litgpt" + suffix] = round(report[name]["non_padding_tokens_per_s"]
                                                         / litgpt["non_padding_tokens_per_s"], 3)
            # drift-robust: the same ratio from each interleaved pair of runs, then the median
            report["speedup_vs_litgpt_paired_median" + suffix] = round(statistics.median(
                litgpt_s / ours_s for ours_s, litgpt_s in zip(results[name]["run_seconds"], results["litgpt"]["run_seconds"])), 3)
            report["peak_memory_ratio_vs_litgpt" + suffix] = round(report[name]["peak_memory_gb"]
                                                                   / litgpt["peak_memory_gb"], 3)
    report["machine"]["load_average_after"] = os.getloadavg()
    # other processes on the cores make wall-clock numbers meaningless: say so in the report itself
    report["machine"]["quiet_before_start"] = report["machine"]["load_average_before"][0] < 0.75 * (os.cpu_count() or 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    if sys.argv[1:2] == [WORKER_FLAG]:
        worker_main(sys.argv[2])
    else:
        from lit_gpt.utils import run_cli

        run_cli(main)

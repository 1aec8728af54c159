"""Generation speed: ours side by side with transformers' generate and lm-eval's Hugging Face backend.

Two workloads, on the same weights (a converted checkpoint, exported once with our converter to a Hugging Face
folder for the peers), the same prompts and the same dtype:

  fixed (default): the first --num_prompts IFEval prompts in the model's chat format, each generating exactly
    --max_new_tokens tokens (32; no stop at EOS, so all do the same work), batch after batch of each of
    --batch_sizes: ours through `generate_batch`, transformers through `generate` (left-padded). Runs alternate
    (ours, theirs, ...) --runs times; medians reported. Batch 1 times the first --batch1_prompts prompts only.

      python scripts/dev/benchmark_generate.py --batch_sizes "1 8 16 32" --max_new_tokens 32 --threads 2

    With --llama_bench PATH (llama.cpp's `llama-bench`, built as the README says), batch 1 also times llama.cpp
    on the same weights, exported with our GGUF writer in the same dtype (bf16, or f32 for float32), its runs
    interleaved with ours: `llama-bench -p 0 -n --max_new_tokens` (generation from an empty context, one thread
    count: --threads).

  ifeval: the real evaluation: IFEval prompts (all 541, or the first --limit) in the chat format, greedy, each
    until EOS or --max_new_tokens (1280, lm-eval's budget). Ours: continuous batching with --batch_size rows in
    flight (optionally --compile'd). transformers: `generate` in static batches of prompts sorted by length (a batch
    runs until its slowest row ends) at each of --hf_batch_sizes; the best is its number. lm-eval: `simple_evaluate`
    of its ifeval task (the same prompt file, the tokenizer's chat template, the same budget) with its `hf` model on
    the exported folder, timed end to end. IFEval scores and answer agreement with ours are reported beside speed.

      python scripts/dev/benchmark_generate.py --workload ifeval --device cuda --dtype bfloat16 --batch_size 64 \\
          --hf_batch_sizes "16 32 64"

Timings taken while other work uses the machine are meaningless: the load average is reported. Output: one JSON
object on stdout.
"""

import json
import os
import shutil
import statistics
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.convert.hf import convert_lit_checkpoint
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.eval import ifeval
from lit_gpt.gguf.export_model import export_gguf
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.infer.load import load
from lit_gpt.infer.lookup import DRAFT_TOKENS, check_draft_tokens
from lit_gpt.infer.sampling import generate_batch
from lit_gpt.utils import UserError, check_typed_on_command_line, run_cli

WORKLOADS = ("fixed", "ifeval")
PEERS = ("transformers", "lm-eval")
DTYPES = {"float32": (torch.float32, "32-true"), "bfloat16": (torch.bfloat16, "bf16-true")}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def left_padded(chunk: list, device: torch.device) -> "tuple[torch.Tensor, torch.Tensor]":
    """Ids and attention mask of prompts left-padded to the longest (what transformers' generate takes)."""
    longest = max(p.numel() for p in chunk)
    ids = torch.zeros(len(chunk), longest, dtype=torch.long, device=device)
    mask = torch.zeros(len(chunk), longest, dtype=torch.long, device=device)
    for row, p in enumerate(chunk):
        ids[row, longest - p.numel():], mask[row, longest - p.numel():] = p, 1
    return ids, mask


# ---- fixed: exactly max_new_tokens per prompt ------------------------------------------------------------------------
def ours_run(model, prompts: list, batch_size: int, max_new_tokens: int, compile: bool = False) -> float:
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        out = generate_batch(model, prompts[i: i + batch_size], max_new_tokens, temperature=0.0, compile=compile)
        assert all(len(ids) == max_new_tokens for ids in out)
    synchronize(prompts[0].device)
    return time.perf_counter() - start


def transformers_run(hf_model, prompts: list, batch_size: int, max_new_tokens: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            ids, mask = left_padded(prompts[i: i + batch_size], prompts[0].device)
            out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    min_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
            assert out.shape[1] == ids.shape[1] + max_new_tokens
    synchronize(prompts[0].device)
    return time.perf_counter() - start


def llama_bench_run(llama_bench: Path, gguf_file: Path, threads: int, max_new_tokens: int) -> float:
    """llama.cpp's tokens/s generating max_new_tokens from an empty context (llama-bench's tg test, one repetition)."""
    out = subprocess.run([str(llama_bench), "-m", str(gguf_file), "-t", str(threads), "-p", "0", "-n",
                          str(max_new_tokens), "-r", "1", "-o", "json"], capture_output=True, text=True)
    try:
        return float(json.loads(out.stdout)[0]["avg_ts"])
    except (ValueError, LookupError, TypeError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise UserError(f"--llama_bench {llama_bench}: exit code {out.returncode}, no result ({last})") from None


def fixed_workload(model, hf_model, prompts: list, sizes: list, batch1_prompts: int, max_new_tokens: int,
                   runs: int, compile: bool = False, llama_cpp: Optional[tuple] = None,
                   compare_compiled: bool = False) -> list:
    """Rows of tokens/s per batch size, each side's median over `runs` interleaved runs: ours (compiled with
    `compile`), ours compiled too (`compare_compiled`), transformers (`hf_model`), llama.cpp at batch 1 (`llama_cpp`:
    llama-bench, GGUF file, threads); the ratios of ours to each."""
    results = []
    for batch_size in sizes:
        chunk = prompts[:batch1_prompts] if batch_size == 1 else prompts
        tokens = len(chunk) * max_new_tokens
        sides = {"ours": lambda: ours_run(model, chunk, batch_size, max_new_tokens, compile)}
        if compare_compiled:
            sides["ours_compiled"] = lambda: ours_run(model, chunk, batch_size, max_new_tokens, True)
        if hf_model is not None:
            sides["transformers"] = lambda: transformers_run(hf_model, chunk, batch_size, max_new_tokens)
        if llama_cpp is not None and batch_size == 1:
            sides["llama_cpp"] = lambda: tokens / llama_bench_run(*llama_cpp, max_new_tokens)  # its seconds
        # warm-up: allocator, kernels; compiled, the whole length (a longer cache may compile once more)
        for compiled in {compile, compile or compare_compiled}:
            ours_run(model, chunk[:batch_size], batch_size, max_new_tokens if compiled else 2, compiled)
        if hf_model is not None:
            transformers_run(hf_model, chunk[:batch_size], batch_size, 2)
        seconds = {name: [] for name in sides}
        for _ in range(runs):
            for name, run in sides.items():
                seconds[name].append(run())
        row = {"batch_size": batch_size, "prompts": len(chunk), "new_tokens": tokens}
        row.update({f"{name}_tokens_per_s": round(tokens / statistics.median(s), 1) for name, s in seconds.items()})
        for name in sides:
            if name != "ours":
                row[f"ours_vs_{name}"] = round(row["ours_tokens_per_s"] / row[f"{name}_tokens_per_s"], 2)
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    batch1 = next((r["ours_tokens_per_s"] for r in results if r["batch_size"] == 1), None)
    for row in results:
        if batch1:
            row["ours_speedup_vs_batch1"] = round(row["ours_tokens_per_s"] / batch1, 2)
    return results


# ---- ifeval: until EOS or the budget ---------------------------------------------------------------------------------
def timed(device: torch.device, run) -> "tuple[object, dict]":
    """run()'s result, and its seconds and peak GPU memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    stats = {"seconds": round(time.perf_counter() - start, 3)}
    if device.type == "cuda":
        stats["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
    return result, stats


def speed(stats: dict, answers: list, prompts: int) -> dict:
    new_tokens = sum(len(a) for a in answers)
    return {**stats, "new_tokens": new_tokens, "tokens_per_s": round(new_tokens / stats["seconds"], 1),
            "prompts_per_s": round(prompts / stats["seconds"], 3)}


def ours_ifeval(model, prompts: list, stop_ids, max_new_tokens: int, batch_size: int, compile: bool,
                prompt_lookup: int) -> dict:
    """Continuous batching; a warm-up first whose rows end one after another (every batch shape a compiled step
    meets: its compile time is reported apart)."""
    device = prompts[0].device
    warm = [prompts[i % len(prompts)] for i in range(batch_size)]
    _, warm_up = timed(device, lambda: generate_batch(model, warm, [2 + i for i in range(batch_size)],
                                                      batch_size=batch_size, temperature=0.0, compile=compile))
    answers, stats = timed(device, lambda: generate_batch(model, prompts, max_new_tokens, batch_size=batch_size,
                                                          temperature=0.0, eos_id=stop_ids, compile=compile,
                                                          prompt_lookup=prompt_lookup))
    return {"batch_size": batch_size, "compile": compile, "prompt_lookup": prompt_lookup,
            "warm_up_seconds": warm_up["seconds"], **speed(stats, answers, len(prompts)), "answers": answers}


def lookup_comparison(model, prompts: list, stop_ids, max_new_tokens: int, batch_size: int, compile: bool,
                      lookups: "tuple[int, int]", runs: int, texts) -> dict:
    """Ours with two --prompt_lookup values, run after run in turn (`runs` each): seconds, tokens/s, the paired
    ratio of each round, and how many answers are the same (greedy either way; bf16 rounding may differ)."""
    rounds = []
    for _ in range(runs):
        pair = [ours_ifeval(model, prompts, stop_ids, max_new_tokens, batch_size, compile, k) for k in lookups]
        same = sum(a == b for a, b in zip(texts(pair[0].pop("answers")), texts(pair[1].pop("answers"))))
        rounds.append({"runs": pair, "same_answers": round(same / len(prompts), 4),
                       "speedup": round(pair[0]["seconds"] / pair[1]["seconds"], 3)})
        print(json.dumps(rounds[-1]), file=sys.stderr)
    return {"prompt_lookups": list(lookups), "rounds": rounds,
            "median_speedup": statistics.median(r["speedup"] for r in rounds)}


def transformers_ifeval(hf_model, prompts: list, stop_ids, max_new_tokens: int, batch_size: int) -> dict:
    """Static batches of length-sorted prompts, left-padded; each row's answer is cut at its first stop id."""
    stop_ids = sorted(stop_ids)
    order = sorted(range(len(prompts)), key=lambda i: -prompts[i].numel())
    answers: list = [None] * len(prompts)

    def run() -> None:
        for start in range(0, len(order), batch_size):
            rows = order[start: start + batch_size]
            ids, mask = left_padded([prompts[i] for i in rows], prompts[0].device)
            with torch.inference_mode():
                out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                        eos_token_id=stop_ids, pad_token_id=stop_ids[0])
            for i, new in zip(rows, out[:, ids.shape[1]:].tolist()):
                answers[i] = new[:next((k for k, t in enumerate(new) if t in stop_ids), len(new))]

    transformers_run(hf_model, prompts[:batch_size], batch_size, 2)  # warm-up
    _, stats = timed(prompts[0].device, run)
    return {"batch_size": batch_size, **speed(stats, answers, len(prompts)), "answers": answers}


LM_EVAL_TASK = """task: ifeval_local
include: {ifeval_yaml}
dataset_path: json
dataset_kwargs:
  data_files: {prompts}
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
  max_gen_toks: {max_new_tokens}
"""


def lm_eval_ifeval(hf_dir: Path, limit: Optional[int], dtype: str, device: torch.device, max_new_tokens: int,
                   batch_size: int, tokenizer) -> dict:
    """lm-eval's ifeval task on the local prompt file (offline) with its `hf` model, chat template applied; timed
    from `simple_evaluate` to its results. Its answers are re-tokenized with ours to count tokens."""
    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    task_dir = Path(tempfile.mkdtemp(prefix="lm-eval-task-", dir=hf_dir.parent))  # the run's scratch folder
    ifeval_yaml = Path(lm_eval.tasks.__file__).parent / "ifeval" / "ifeval.yaml"
    (task_dir / "ifeval_local.yaml").write_text(LM_EVAL_TASK.format(
        ifeval_yaml=ifeval_yaml, prompts=ifeval.DEFAULT_PROMPTS, max_new_tokens=max_new_tokens))
    model_args = f"pretrained={hf_dir},dtype={dtype},device={device}"
    results, stats = timed(device, lambda: lm_eval.simple_evaluate(
        model="hf", model_args=model_args, tasks=["ifeval_local"], task_manager=TaskManager(include_path=str(task_dir)),
        limit=limit, batch_size=batch_size, apply_chat_template=True, log_samples=True, bootstrap_iters=0))
    samples = sorted(results["samples"]["ifeval_local"], key=lambda s: s["doc_id"])
    texts = [s["filtered_resps"][0] for s in samples]
    contexts = [s["arguments"][0][0] for s in samples]  # (context, generation kwargs) of its one request
    metrics = results["results"]["ifeval_local"]
    scores = {name: round(metrics[f"{name},none"], 4) for name in ("prompt_level_strict_acc", "inst_level_strict_acc")}
    return {"batch_size": batch_size, "timed": "simple_evaluate end to end: model loading, setup, scoring included",
            **speed(stats, [tokenizer.encode_ids(t) for t in texts], len(texts)), "ifeval": scores, "texts": texts,
            "contexts": contexts}


def ifeval_scores(prompts: list, texts: list) -> dict:
    result = ifeval.score(prompts, texts)
    return {"prompt_level_strict_acc": round(result.prompt_level_strict_acc, 4),
            "inst_level_strict_acc": round(result.inst_level_strict_acc, 4)}


def ifeval_workload(loaded, hf_model, peers: list, limit: Optional[int], max_new_tokens: int, batch_size: int,
                    hf_batch_sizes: list, compile: bool, dtype: str, hf_dir: Optional[Path], prompt_lookup: int,
                    compare_lookup: Optional[int], runs: int) -> dict:
    model, tokenizer, style = loaded.model, loaded.tokenizer, loaded.style
    items = ifeval.load_prompts()[:limit]
    prompts = [encode_prompt(tokenizer, style, p.prompt, device=loaded.device) for p in items]
    stop_ids = set(tokenizer.stop_ids)

    def texts(answers: list) -> list:
        return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in answers]

    report = {"prompts": len(prompts), "prompt_tokens": sum(p.numel() for p in prompts)}
    if compare_lookup is not None:
        report["lookup_comparison"] = lookup_comparison(model, prompts, stop_ids, max_new_tokens, batch_size, compile,
                                                        (compare_lookup, prompt_lookup), runs, texts)
        return report
    ours = ours_ifeval(model, prompts, stop_ids, max_new_tokens, batch_size, compile, prompt_lookup)
    ours_texts = texts(ours.pop("answers"))
    report["ours"] = {**ours, "ifeval": ifeval_scores(items, ours_texts)}
    print(json.dumps({"ours": report["ours"]}), file=sys.stderr)
    if "transformers" in peers:
        runs = []
        for size in hf_batch_sizes:
            run = transformers_ifeval(hf_model, prompts, stop_ids, max_new_tokens, size)
            run["same_answers_as_ours"] = round(sum(a == b for a, b in zip(texts(run.pop("answers")), ours_texts))
                                                / len(prompts), 4)
            runs.append(run)
            print(json.dumps({"transformers": run}), file=sys.stderr)
        best = max(runs, key=lambda r: r["tokens_per_s"])
        report["transformers"] = {"runs": runs, "best": best,
                                  "ours_speedup": round(report["ours"]["tokens_per_s"] / best["tokens_per_s"], 2)}
    if "lm-eval" in peers:
        size = report["transformers"]["best"]["batch_size"] if "transformers" in report else max(hf_batch_sizes)
        run = lm_eval_ifeval(hf_dir, limit, dtype, loaded.device, max_new_tokens, size, tokenizer)
        ours_contexts = [tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
        run["same_prompts_as_ours"] = round(sum(a == b for a, b in zip(run.pop("contexts"), ours_contexts))
                                            / len(prompts), 4)
        run["same_answers_as_ours"] = round(sum(a.strip() == b for a, b in zip(run.pop("texts"), ours_texts))
                                            / len(prompts), 4)
        run["ours_speedup_in_seconds"] = round(run["seconds"] / report["ours"]["seconds"], 2)
        report["lm_eval_hf"] = run
    return report


def check_counts(at_least_one: list, lookups: dict, unknown_peers: set, peers: Optional[str],
                 llama_bench: Optional[Path]) -> None:
    """The flags' one-line errors; lookups: {flag: its number of draft tokens}."""
    if unknown_peers:
        raise UserError(f"--peers {peers}: choose from {' '.join(PEERS)}")
    for flag, value in lookups.items():
        check_draft_tokens(value, flag)
    if min(at_least_one) < 1:
        raise UserError("--batch_sizes, --hf_batch_sizes, --num_prompts, --runs, --max_new_tokens, --batch_size "
                        "and --limit must be at least 1")
    check_typed_on_command_line("llama_bench", llama_bench, None)
    if llama_bench is not None and not (llama_bench.is_file() and os.access(llama_bench, os.X_OK)):
        raise UserError(f"--llama_bench {llama_bench}: not an executable file (build llama-bench as README.md says)")


def main(checkpoint_dir: Path = Path("checkpoints") / SMOLLM2_REPO_ID, workload: str = "fixed",
         batch_sizes: str = "1 8 16 32", num_prompts: int = 32, batch1_prompts: int = 8,
         max_new_tokens: Optional[int] = None, runs: int = 3, limit: Optional[int] = None, batch_size: int = 64,
         hf_batch_sizes: str = "16 32 64", peers: Optional[str] = None, compile: bool = False,
         device: str = "cpu", threads: Optional[int] = None, dtype: str = "float32",
         compare_transformers: bool = True, llama_bench: Optional[Path] = None, compare_compiled: bool = False,
         prompt_lookup: int = DRAFT_TOKENS, compare_lookup: Optional[int] = None) -> dict:
    """Prints and returns the speed of ours and of the peers.

    Args:
        checkpoint_dir: a converted checkpoint (the packaged SmolLM2-135M-Instruct is converted there if missing)
        workload: fixed (exactly --max_new_tokens per prompt, several batch sizes) or ifeval (until EOS)
        batch_sizes: fixed: space-separated batch sizes
        num_prompts: fixed: how many IFEval prompts (batches of batch_size cover them)
        batch1_prompts: fixed: how many of them batch size 1 times
        max_new_tokens: tokens per prompt (fixed: exactly, default 32; ifeval: at most, default 1280)
        runs: fixed: timed runs per implementation and batch size (medians reported)
        limit: ifeval: the first N prompts (default all 541)
        batch_size: ifeval: our rows in flight
        hf_batch_sizes: ifeval: transformers' static batch sizes to try (the best is reported)
        peers: ifeval: which of "transformers lm-eval" to run (default both; "" for ours alone)
        compile: our decode step through torch.compile (fixed: the first run of each batch size compiles, untimed)
        device: cpu or cuda
        threads: torch threads (default: all cores)
        dtype: float32 or bfloat16
        compare_transformers: fixed: also time transformers' generate on the same weights
        llama_bench: fixed: llama.cpp's llama-bench binary; batch 1 also times llama.cpp on our GGUF export
        compare_compiled: fixed: also time our decode step through torch.compile, interleaved with the eager one
        prompt_lookup: ifeval: our draft tokens per step, copied from earlier in each sequence (0: none; the
            default is evaluate.py's)
        compare_lookup: ifeval: instead of the peers, ours with this --prompt_lookup value and with --prompt_lookup,
            in turn, --runs times each (paired ratios)
    """
    if workload not in WORKLOADS or dtype not in DTYPES:
        raise UserError(f"--workload is one of {', '.join(WORKLOADS)}; --dtype one of {', '.join(DTYPES)}")
    peer_list = (" ".join(PEERS) if peers is None else peers).split() if workload == "ifeval" else (
        ["transformers"] if compare_transformers else [])
    if compare_lookup is not None and workload == "ifeval":
        peer_list = []  # the comparison is ours against ours
    sizes = [int(b) for b in str(batch_sizes).split()]
    hf_sizes = [int(b) for b in str(hf_batch_sizes).split()]
    max_new_tokens = max_new_tokens or (1280 if workload == "ifeval" else 32)
    check_counts(sizes + hf_sizes + [num_prompts, runs, max_new_tokens, batch_size, limit or 1],
                 {"--prompt_lookup": prompt_lookup, "--compare_lookup": compare_lookup or 0}, set(peer_list) - set(PEERS), peers, llama_bench)
    torch.set_num_threads(threads or os.cpu_count() or 1)
    if not (checkpoint_dir / "lit_model.pth").is_file():
        install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    loaded = load(checkpoint_dir, device=device, precision=DTYPES[dtype][1])
    report = {"workload": workload, "model": str(checkpoint_dir), "device": str(loaded.device), "dtype": dtype,
              "threads": torch.get_num_threads(), "max_new_tokens": max_new_tokens}
    scratch = Path(tempfile.mkdtemp(prefix="benchmark-generate-"))  # the peers' copies of the weights, removed after
    try:
        hf_dir = hf_model = llama_cpp = None
        if peer_list:
            import transformers

            hf_dir = scratch / "hf"
            convert_lit_checkpoint(checkpoint_dir, hf_dir)
            if "transformers" in peer_list:
                hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=DTYPES[dtype][0])
                hf_model = hf_model.to(loaded.device).eval()
        if workload == "fixed":
            prompts = [encode_prompt(loaded.tokenizer, loaded.style, p.prompt, device=loaded.device)
                       for p in ifeval.load_prompts()[:num_prompts]]
            report["prompt_tokens"] = [p.numel() for p in prompts]
            if llama_bench is not None:
                export_gguf(checkpoint_dir, scratch / "model.gguf", "bf16" if dtype == "bfloat16" else "f32")
                llama_cpp = (llama_bench, scratch / "model.gguf", torch.get_num_threads())
            report["results"] = fixed_workload(loaded.model, hf_model, prompts, sizes, batch1_prompts,
                                               max_new_tokens, runs, compile, llama_cpp, compare_compiled)
        else:
            report.update(ifeval_workload(loaded, hf_model, peer_list, limit, max_new_tokens, batch_size,
                                          hf_sizes, compile, dtype, hf_dir, prompt_lookup, compare_lookup, runs))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["load_average"] = os.getloadavg()
    if loaded.device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(loaded.device)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

"""KV-cached attention on CPU, in one process, runs interleaved: the library's path against one it replaced
(--baseline): `sdpa_float32_cache`, SDPA over a float32 cache of one block (before `grouped_attention`), or
`all_rows`, every row reading every block up to the longest row's, in no order (before `rows_attending` and the
rows' order in `RowCache`), or `float32_softmax`, the scores scaled after the matmul, masked into a copy, the
softmax in float32 then cast, each block's weighted sum added from a temporary (before in-place masking and the
softmax in the model's dtype). Greedy generation of the first --num_prompts IFEval prompts, no EOS stop, so both sides
do the same work: exactly --max_new_tokens each, or, with --min_new_tokens, a budget drawn for each prompt between
the two (seeded: the same for both sides), so that rows of different lengths run together as in a real evaluation;
--batch_size rows in flight; --max_new_tokens 1 times the prefills alone.

    python scripts/dev/benchmark_attention.py --num_prompts 32 --max_new_tokens 384 --batch_size 32 --runs 2
    python scripts/dev/benchmark_attention.py --baseline all_rows --num_prompts 64 --min_new_tokens 64 \
        --max_new_tokens 1280 --batch_size 32 --runs 2
    python scripts/dev/benchmark_attention.py --baseline all_rows --step_lengths 150,1400 --batch_size 64 --runs 4

--step_lengths times single decode steps instead (no generation): rows whose caches hold lengths spread between
the two, as the rows of a long evaluation are at any moment; --step_positions 3 feeds 3 positions a row, as a step
with 2 draft tokens does; --profile_step true adds where each path's step spends its time, by operator:

    python scripts/dev/benchmark_attention.py --baseline float32_softmax --step_lengths 600,800 --batch_size 64 \
        --step_positions 3 --runs 4 --profile_step true
"""

import importlib.util
import itertools
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

import lit_gpt.model as model_module
from ab_runs import interleaved, library_path  # beside this script (sys.path[0])
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.eval import ifeval
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.infer.cache import RowCache
from lit_gpt.infer.load import load
from lit_gpt.infer.lookup import check_draft_tokens
from lit_gpt.infer.sampling import generate_batch
from lit_gpt.utils import UserError, run_cli


def sdpa_attention(q, k, v, mask, scale, softcap=None):
    """The replaced path: SDPA with enable_gqa, in the cache's float32, back to the model's dtype."""
    assert softcap is None, "the SDPA path has no softcapping: use a model without it"
    # the cache is one block (KV_CACHE_BLOCK_CPU None): its first positions are a view, as before
    k, v = (model_module.joined_positions(blocks, mask.shape[-1]) for blocks in (k, v))
    y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask, scale=scale,
                                       enable_gqa=q.shape[1] != k.shape[1])
    return y.to(q.dtype)


@contextmanager
def replaced_path():
    """The cache of one block in float32, read by SDPA, as before `grouped_attention`."""
    originals = model_module.grouped_attention, model_module.KV_CACHE_BLOCK_CPU, model_module.GPT.set_kv_cache

    def float32_cache(model, batch_size, max_seq_length=None, device=None, dtype=None):
        originals[2](model, batch_size, max_seq_length, device, torch.float32)

    model_module.grouped_attention, model_module.KV_CACHE_BLOCK_CPU = sdpa_attention, None
    model_module.GPT.set_kv_cache = float32_cache
    try:
        yield
    finally:
        model_module.grouped_attention, model_module.KV_CACHE_BLOCK_CPU, model_module.GPT.set_kv_cache = originals


@contextmanager
def all_rows_path():
    """Every row reads every block up to the longest row's; rows stay where they are, and an ended row is filled by
    the last one (one move), as before the rows were kept in order."""
    originals = model_module.rows_attending, RowCache._order_rows, RowCache.leave

    def leave(rows, row):
        last = rows.active - 1
        if row != last:
            rows._move(last, row)
        rows.positions[last] = 0
        rows.owner.pop()
        rows.length.pop()

    model_module.rows_attending = lambda mask, B, sizes: [(0, B)] * len(sizes)
    RowCache._order_rows, RowCache.leave = lambda rows: None, leave
    try:
        yield
    finally:
        model_module.rows_attending, RowCache._order_rows, RowCache.leave = originals


def float32_softmax_attention(q, k, v, mask, scale, softcap=None):
    """The replaced steps of `grouped_attention` over a KV cache's blocks (no softcap)."""
    assert softcap is None and isinstance(k, list), "the float32_softmax path is for cached steps without softcaps"
    B, n_head, T, hs = q.shape
    sizes, n_groups = [block.shape[2] for block in k], k[0].shape[1]
    rows = model_module.rows_attending(mask, B, sizes)
    mask = F.pad(mask, (0, sum(sizes) - mask.shape[-1]), value=False)
    q = q.reshape(B, n_groups, -1, hs)
    parts = [q[a:b] @ block[a:b].transpose(-2, -1) for (a, b), block in zip(rows, k)]
    if all(ab == (0, B) for ab in rows):
        scores = torch.cat(parts, dim=-1)
    else:
        scores = q.new_zeros(B, n_groups, q.shape[2], sum(sizes))
        for (a, b), part, start, n in zip(rows, parts, [0, *itertools.accumulate(sizes)], sizes):
            scores[a:b, ..., start: start + n] = part
    scores = scores.view(B, n_groups, n_head // n_groups, T, -1) * scale
    mask = mask[:, :, None] if mask.ndim == 4 else mask
    probs = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1, dtype=torch.float32).to(q.dtype)
    probs, y = probs.view(B, n_groups, -1, sum(sizes)), q.new_zeros(B, n_groups, q.shape[2], hs)
    for (a, b), block, start, n in zip(rows, v, [0, *itertools.accumulate(sizes)], sizes):
        y[a:b] += probs[a:b, ..., start: start + n] @ block[a:b]
    return y.view(B, n_head, T, hs)


@contextmanager
def float32_softmax_path():
    original = model_module.grouped_attention
    model_module.grouped_attention = float32_softmax_attention
    try:
        yield
    finally:
        model_module.grouped_attention = original


BASELINES = {"sdpa_float32_cache": replaced_path, "all_rows": all_rows_path, "float32_softmax": float32_softmax_path}


def main(checkpoint_dir: Path = Path("checkpoints") / SMOLLM2_REPO_ID, num_prompts: int = 32,
         max_new_tokens: int = 384, min_new_tokens: Optional[int] = None, batch_size: int = 32, runs: int = 2,
         threads: int = 2, baseline: str = "sdpa_float32_cache", step_lengths: Optional[str] = None,
         step_positions: int = 1, profile_step: bool = False, prompt_lookup: int = 0) -> dict:
    """Prints and returns the seconds of each run of each path.

    Args:
        checkpoint_dir: a converted checkpoint (the packaged SmolLM2-135M-Instruct is converted there if missing)
        num_prompts: the first N IFEval prompts
        max_new_tokens: tokens generated per prompt (the largest budget with --min_new_tokens)
        min_new_tokens: the smallest budget: each prompt's is drawn uniformly between the two (seed 0)
        batch_size: rows in flight
        runs: runs of each path, alternating which goes first
        threads: torch threads
        baseline: the replaced path: sdpa_float32_cache, all_rows or float32_softmax
        step_lengths: "SHORTEST,LONGEST": time single decode steps instead of generation, --batch_size rows whose
            caches hold lengths spread evenly between the two, longest first (the order RowCache keeps)
        step_positions: with --step_lengths, the positions each row feeds a step (1 + a step's draft tokens)
        profile_step: with --step_lengths, also each path's step by operator (shares of its time, torch.profiler)
        prompt_lookup: draft tokens per step (`generate_batch`'s, as evaluation runs; 0: one token per step)
    """
    if baseline not in BASELINES:
        raise UserError(f"--baseline {baseline}: choose one of {', '.join(BASELINES)}")
    check_draft_tokens(prompt_lookup)
    torch.set_num_threads(threads)
    if not (checkpoint_dir / "lit_model.pth").is_file():
        install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    loaded = load(checkpoint_dir, device="cpu", precision="bf16-true")
    paths = {"library": library_path, baseline: BASELINES[baseline]}
    load_before = os.getloadavg()
    if step_lengths is not None:
        lengths = spread_lengths(step_lengths, batch_size)
        _, ms = interleaved(paths, runs, lambda: decode_step_ms(loaded.model, lengths, step_positions))
        report = {"ms_per_step": ms, "paired_speedup": [round(s / g, 3) for g, s in zip(*ms.values())]}
        if profile_step:
            report["operator_shares"] = {name: profiled_under(path, loaded.model, lengths, step_positions)
                                         for name, path in paths.items()}
    else:
        prompts = [encode_prompt(loaded.tokenizer, loaded.style, p.prompt, device=loaded.device)
                   for p in ifeval.load_prompts()[:num_prompts]]
        budgets = max_new_tokens if min_new_tokens is None else torch.randint(
            min_new_tokens, max_new_tokens + 1, (num_prompts,), generator=torch.Generator().manual_seed(0)).tolist()
        seconds, answers = interleaved(paths, runs, lambda: generate_batch(
            loaded.model, prompts, budgets, batch_size=batch_size, temperature=0.0, prompt_lookup=prompt_lookup))
        a, b = (answers[name][-1] for name in paths)
        report = {"seconds": seconds, "new_tokens": sum(len(ids) for ids in a),
                  "paired_speedup": [round(s / g, 3) for g, s in zip(*seconds.values())],
                  "identical_answers": sum(x == y for x, y in zip(a, b)), "answers": len(a)}
    report.update(load_average_before=load_before, load_average_after=os.getloadavg())
    print(json.dumps(report, indent=2))
    return report


def spread_lengths(step_lengths: str, rows: int) -> torch.Tensor:
    """`rows` lengths spread evenly from the longest to the shortest of "SHORTEST,LONGEST"."""
    parts = step_lengths.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or not 0 < int(parts[0]) <= int(parts[1]):
        raise UserError(f"--step_lengths {step_lengths}: give SHORTEST,LONGEST, two positive numbers, e.g. 150,1400")
    return torch.linspace(int(parts[1]), int(parts[0]), rows).round().long()


@contextmanager
def cached_rows(model, lengths: torch.Tensor, positions: int, steps: int):
    """A KV cache of rows whose caches hold `lengths` positions (zeros: the same reads and matmuls as real keys) and
    room for `steps` more steps; yields the step's tokens (rows, positions) and the first step's input positions."""
    model.set_kv_cache(len(lengths), int(lengths.max()) + (steps + 1) * positions, device=torch.device("cpu"))
    try:
        yield torch.zeros(len(lengths), positions, dtype=torch.long), lengths[:, None] + torch.arange(positions)
    finally:
        model.clear_kv_cache()


@torch.inference_mode()
def decode_step_ms(model, lengths: torch.Tensor, positions: int = 1, steps: int = 6) -> float:
    """Milliseconds per decode step (the mean of `steps` after one untimed) of `positions` tokens a row (1 + the
    draft tokens of a step with drafts)."""
    with cached_rows(model, lengths, positions, steps) as (tokens, at):
        model(tokens, input_pos=at)
        start = time.perf_counter()
        for i in range(1, steps + 1):
            model(tokens, input_pos=at + i * positions)
        return round((time.perf_counter() - start) / steps * 1000, 1)


def profiled_under(path, model, lengths: torch.Tensor, positions: int) -> dict:
    with path():
        return step_profile(model, lengths, positions)


@torch.inference_mode()
def step_profile(model, lengths: torch.Tensor, positions: int, steps: int = 3, top: int = 8) -> dict:
    """The `top` operators' shares (%) of the self CPU time of `steps` decode steps (torch.profiler), one untimed
    step first."""
    with cached_rows(model, lengths, positions, steps) as (tokens, at):
        model(tokens, input_pos=at)
        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            for i in range(1, steps + 1):
                model(tokens, input_pos=at + i * positions)
    events = sorted(profiled.key_averages(), key=lambda event: -event.self_cpu_time_total)
    total = sum(event.self_cpu_time_total for event in events)
    return {event.key: round(100 * event.self_cpu_time_total / total, 1) for event in events[:top]}


if __name__ == "__main__":
    run_cli(main)

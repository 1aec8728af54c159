"""How fast a batch-1 decode step can read its weights: matrix-vector products over many weights in turn (so they
come from memory, not cache), in GB/s of weights read, beside a plain read of memory.

    python scripts/dev/benchmark_matvec.py --threads 2

Ways timed, each over the same `--weights` bf16 matrices of `--rows` x `--cols` (SmolLM2's MLP shape by default,
90 of them: 159 MB): `F.linear` (what the model runs), `torch.mv`, `F.linear` through a float32 copy of each weight,
and `F.linear` on weights repacked in oneDNN's blocked layout (`torch.ops.mkldnn._linear_pointwise`, a private
operator; skipped where missing); the memory ceiling is a float32 sum over a 160 MB tensor. Output: one JSON object.
"""

import importlib.util
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.utils import run_cli


def gb_per_s(step, items: list, runs: int, nbytes: int) -> float:
    """`nbytes` (what one pass over `items` reads) over the mean seconds of `runs` passes of `step` over them."""
    for item in items:  # warm-up
        step(item)
    start = time.perf_counter()
    for _ in range(runs):
        for item in items:
            step(item)
    return round(nbytes / ((time.perf_counter() - start) / runs) / 1e9, 1)


def packed_weights(weights: list) -> "list | None":
    try:
        return [torch.ops.mkldnn._reorder_linear_weight(w, 1) for w in weights]
    except (AttributeError, RuntimeError):
        return None


def main(rows: int = 1536, cols: int = 576, weights: int = 90, runs: int = 5, threads: int = 2) -> dict:
    """Prints and returns GB/s of each way of reading the weights.

    Args:
        rows: rows of each weight (output features)
        cols: columns of each weight (input features)
        weights: how many weights are read in turn
        runs: passes over all of them (their mean is timed)
        threads: torch threads
    """
    torch.set_num_threads(threads)
    ws = [torch.randn(rows, cols, dtype=torch.bfloat16) for _ in range(weights)]
    x, nbytes = torch.randn(1, cols, dtype=torch.bfloat16), weights * rows * cols * 2
    report = {"weights": weights, "shape": [rows, cols], "threads": threads,
              "load_average_before": list(os.getloadavg()),
              "linear": gb_per_s(lambda w: F.linear(x, w), ws, runs, nbytes),
              "mv": gb_per_s(lambda w: torch.mv(w, x[0]), ws, runs, nbytes),
              "linear_via_float32": gb_per_s(lambda w: F.linear(x.float(), w.float()), ws, runs, nbytes)}
    packed = packed_weights(ws)
    if packed is not None:
        report["linear_prepacked_onednn"] = gb_per_s(
            lambda w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], ""), packed, runs, nbytes)
    big = torch.randn(40_000_000)
    report["float32_sum_read"] = gb_per_s(lambda t: t.sum(), [big], runs, big.numel() * 4)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

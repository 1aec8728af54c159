"""Reference loss (evaluate.py --tasks reference_loss) in one process, runs interleaved: the library's per-token
loss through the fused head (lit_gpt.fused_loss: the answer positions' logits in chunks) against the path it
replaced, all answer positions' logits at once in float32 and F.cross_entropy. Same examples, same token-budget
batches, same model; the per-answer NLLs of the two paths are compared too.

    python scripts/dev/benchmark_reference_loss.py --limit 300 --batch_size 16 --runs 2
    python scripts/dev/benchmark_reference_loss.py --limit 100 --runs 1 --profile true   # where the time goes

--profile true adds one more run of the library's path under torch's profiler: each operator's share of the time and
the matmuls' rate by a count of their work (every padded position through the blocks' weights, the head on the
answer tokens).
"""

import importlib.util
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

import lit_gpt.eval.reference_loss as reference_module
from ab_runs import interleaved, library_path  # beside this script (sys.path[0])
from lit_gpt.eval.run import reference_examples
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.infer.load import load
from lit_gpt.utils import run_cli

SHARED_GPT4 = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "alpaca_gpt4" / "sample_999.json"


def logits_answer_nll(model, inputs, labels, device, eos_id=None):
    """The replaced `_answer_nll`: the head on the answer positions, all their logits at once, float32."""
    x, y = reference_module.padded_batch(inputs, labels, device)
    scored = y != -100
    logits = model(x, output_mask=scored).float()  # (answer tokens, vocab)
    token_nll = F.cross_entropy(logits, y[scored], reduction="none").double()
    row_of_token = torch.arange(len(inputs), device=device)[:, None].expand_as(y)[scored]
    text = y[scored] != (-100 if eos_id is None else eos_id)
    sums = torch.zeros(2, len(inputs), dtype=torch.float64, device=device)
    sums[0].index_add_(0, row_of_token, token_nll)
    sums[1].index_add_(0, row_of_token[text], token_nll[text])
    return tuple(sums.tolist())


def largest_logits(examples: list, model, batch_size: int) -> int:
    """The elements of the replaced path's largest logits tensor: the most answer tokens in one of reference_loss's
    batches, times the vocabulary."""
    block = model.config.block_size
    labels = [e["labels"][1:block + 1] for e in examples]
    batches = reference_module.token_budget_batches([lab.numel() for lab in labels], batch_size)
    return max(sum(int((labels[i] != -100).sum()) for i in rows) for rows in batches) * model.config.vocab_size


def matmul_flops(examples: list, model, batch_size: int) -> float:
    """The weight matmuls' FLOPs of one reference_loss pass: 2 x the blocks' matrix weights per padded position of
    its token-budget batches, 2 x n_embd x vocab per answer token (the head)."""
    block = model.config.block_size
    widths = [e["input_ids"][:block + 1].numel() - 1 for e in examples]
    padded = sum(len(rows) * max(widths[i] for i in rows)
                 for rows in reference_module.token_budget_batches(widths, batch_size))
    weights = sum(p.numel() for name, p in model.named_parameters() if name.startswith("blocks") and p.dim() == 2)
    answer_tokens = sum(int((e["labels"][1:block + 1] != -100).sum()) for e in examples)
    return 2.0 * weights * padded + 2.0 * model.config.n_embd * model.config.vocab_size * answer_tokens


def profiled(run, flops: float) -> dict:
    """The top operators' shares of the profiled time of run(), and aten::mm's rate by `flops`."""
    from torch.profiler import profile

    with profile() as prof:
        run()
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ops)
    mm_seconds = sum(e.self_cpu_time_total for e in ops if e.key == "aten::mm") / 1e6
    return {"shares": {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:8]},
            "mm_seconds": round(mm_seconds, 2),
            "mm_tflops": round(flops / mm_seconds / 1e12, 3) if mm_seconds else None}


@contextmanager
def replaced_path():
    original = reference_module._answer_nll
    reference_module._answer_nll = logits_answer_nll
    try:
        yield
    finally:
        reference_module._answer_nll = original


def main(checkpoint_dir: Path = Path("checkpoints") / SMOLLM2_REPO_ID, reference_data: Path = SHARED_GPT4,
         limit: Optional[int] = 300, batch_size: int = 16, runs: int = 2, threads: int = 2,
         precision: str = "bf16-true", profile: bool = False) -> dict:
    """Prints and returns the seconds of each run of each path.

    Args:
        checkpoint_dir: a converted checkpoint (the packaged SmolLM2-135M-Instruct is converted there if missing)
        reference_data: answers to score (default: the shared GPT-4 answers to Alpaca instructions)
        limit: the first N answers (None: all)
        batch_size: evaluate.py's --batch_size (rows of the longest example per forward)
        runs: runs of each path, alternating which goes first
        threads: torch threads
        precision: bf16-true or 32-true
        profile: one more run of the library's path, profiled (operator shares, the matmuls' TFLOP/s)
    """
    torch.set_num_threads(threads)
    if not (checkpoint_dir / "lit_model.pth").is_file():
        install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    loaded = load(checkpoint_dir, device="cpu", precision=precision)
    examples = reference_examples(reference_data, loaded.tokenizer, loaded.style, loaded.model.config.block_size,
                                  limit)
    paths = {"fused_per_token": library_path, "all_answer_logits": replaced_path}
    load_before = os.getloadavg()
    seconds, results = interleaved(paths, runs, lambda: reference_module.reference_loss(
        loaded.model, examples, micro_batch_size=batch_size))
    fused, plain = (results[name][-1] for name in paths)
    tokens = fused.tokens
    report = {"answers": fused.examples, "scored_tokens": tokens, "precision": precision, "batch_size": batch_size,
              "seconds": seconds,
              "scored_tokens_per_s": {name: round(tokens / min(s), 1) for name, s in seconds.items()},
              "paired_speedup": [round(p / f, 3) for f, p in zip(*seconds.values())],
              "mean_nll": {"fused_per_token": fused.mean_nll, "all_answer_logits": plain.mean_nll},
              "max_abs_difference_per_answer_mean_nll": max(
                  abs(a - b) for a, b in zip(fused.per_example_mean(), plain.per_example_mean())),
              "largest_logits_gb_replaced_path": round(largest_logits(examples, loaded.model, batch_size) * 4e-9, 2),
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    if profile:
        report["profile"] = profiled(lambda: reference_module.reference_loss(
            loaded.model, examples, micro_batch_size=batch_size), matmul_flops(examples, loaded.model, batch_size))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

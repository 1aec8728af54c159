"""Generation speed: our batched KV-cache generation at batch 1 and larger, side by side with transformers' generate.

    python scripts/dev/benchmark_generate.py --batch_sizes "1 8 16 32" --max_new_tokens 32 --threads 2

The weights are the real SmolLM2-135M-Instruct (the packaged GGUF, converted once to --checkpoint_dir; any converted
checkpoint dir works) and the prompts are the first --num_prompts IFEval prompts in the model's chat format, of
their natural, different lengths. Each implementation generates greedily exactly --max_new_tokens tokens per prompt
(no stop at EOS, so both do the same work), batch after batch of --batch_size prompts: ours through
`lit_gpt.infer.sampling.generate_batch` (left-padded), transformers through `generate` on the same weights (exported
with our converter), in the same dtype, left-padded with an attention mask. Runs alternate (ours, theirs, ours, ...)
--runs times in one process, so a drift in machine speed hits both; medians are reported, with the load average
(timings taken while other work uses the cores are meaningless). Batch 1 times the first --batch1_prompts prompts
only (it is the slow case). Output: one JSON object.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional


import torch

try:
    import lit_gpt  # noqa: F401  (the scripts use the installed package)
except ModuleNotFoundError:
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.convert.hf import convert_lit_checkpoint
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.eval.ifeval import load_prompts
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.infer.load import load
from lit_gpt.infer.sampling import generate_batch
from lit_gpt.utils import UserError, run_cli


def ours_run(model, prompts: list, batch_size: int, max_new_tokens: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        out = generate_batch(model, prompts[i: i + batch_size], max_new_tokens, temperature=0.0)
        assert all(len(ids) == max_new_tokens for ids in out)
    return time.perf_counter() - start


def transformers_run(hf_model, prompts: list, batch_size: int, max_new_tokens: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i: i + batch_size]
            longest = max(p.numel() for p in chunk)
            ids = torch.zeros(len(chunk), longest, dtype=torch.long)
            mask = torch.zeros(len(chunk), longest, dtype=torch.long)
            for row, p in enumerate(chunk):
                ids[row, longest - p.numel():], mask[row, longest - p.numel():] = p, 1
            out = hf_model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    min_new_tokens=max_new_tokens, do_sample=False, pad_token_id=0)
            assert out.shape[1] == longest + max_new_tokens
    return time.perf_counter() - start


def main(checkpoint_dir: Path = Path("checkpoints") / SMOLLM2_REPO_ID, batch_sizes: str = "1 8 16 32",
         num_prompts: int = 32, batch1_prompts: int = 8, max_new_tokens: int = 32, runs: int = 3,
         threads: Optional[int] = None, dtype: str = "float32", compare_transformers: bool = True) -> dict:
    """Prints and returns the tokens/s of each batch size, ours and transformers'.

    Args:
        checkpoint_dir: a converted checkpoint (the packaged SmolLM2-135M-Instruct is converted there if missing)
        batch_sizes: space-separated batch sizes
        num_prompts: how many IFEval prompts (batches of batch_size cover them)
        batch1_prompts: how many of them batch size 1 times
        max_new_tokens: tokens generated per prompt
        runs: timed runs per implementation and batch size (medians reported)
        threads: torch threads (default: all cores)
        dtype: float32 or bfloat16
        compare_transformers: also time transformers' generate on the same weights
    """
    sizes = [int(b) for b in str(batch_sizes).split()]
    if not sizes or min(sizes) < 1 or num_prompts < 1 or runs < 1 or max_new_tokens < 1:
        raise UserError("--batch_sizes, --num_prompts, --runs and --max_new_tokens must be at least 1")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    if not (checkpoint_dir / "lit_model.pth").is_file():
        install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    loaded = load(checkpoint_dir, device="cpu", precision={"float32": "32-true", "bfloat16": "bf16-true"}[dtype])
    model, tokenizer, style = loaded.model, loaded.tokenizer, loaded.style
    prompts = [encode_prompt(tokenizer, style, p.prompt) for p in load_prompts()[:num_prompts]]
    hf_model = None
    if compare_transformers:
        import transformers

        hf_dir = Path(tempfile.mkdtemp(prefix="hf-"))
        convert_lit_checkpoint(checkpoint_dir, hf_dir)
        hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch_dtype).eval()

    results = []
    for batch_size in sizes:
        chunk = prompts[:batch1_prompts] if batch_size == 1 else prompts
        tokens = len(chunk) * max_new_tokens
        ours_run(model, chunk[:batch_size], batch_size, 2)  # warm-up: allocator, kernels
        if hf_model is not None:
            transformers_run(hf_model, chunk[:batch_size], batch_size, 2)
        times = {"ours": [], "transformers": []}
        for _ in range(runs):
            times["ours"].append(ours_run(model, chunk, batch_size, max_new_tokens))
            if hf_model is not None:
                times["transformers"].append(transformers_run(hf_model, chunk, batch_size, max_new_tokens))
        row = {"batch_size": batch_size, "prompts": len(chunk), "new_tokens": tokens,
               "ours_tokens_per_s": round(tokens / statistics.median(times["ours"]), 1)}
        if hf_model is not None:
            row["transformers_tokens_per_s"] = round(tokens / statistics.median(times["transformers"]), 1)
            row["speedup_vs_transformers"] = round(row["ours_tokens_per_s"] / row["transformers_tokens_per_s"], 2)
        results.append(row)
        print(json.dumps(row), file=sys.stderr)
    batch1 = next((r["ours_tokens_per_s"] for r in results if r["batch_size"] == 1), None)
    for row in results:
        if batch1:
            row["ours_speedup_vs_batch1"] = round(row["ours_tokens_per_s"] / batch1, 2)
    report = {"model": str(checkpoint_dir), "dtype": dtype, "threads": torch.get_num_threads(),
              "max_new_tokens": max_new_tokens, "prompt_tokens": [p.numel() for p in prompts],
              "load_average": os.getloadavg(), "results": results}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

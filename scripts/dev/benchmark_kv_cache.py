"""The float32 KV cache of a bf16 model on CPU (`GPT.set_kv_cache`) against the bf16 cache it replaced, in one
process, runs interleaved: greedy generation of the first --num_prompts IFEval prompts, exactly --max_new_tokens
each (no EOS stop, so both sides do the same work), --batch_size rows in flight.

    python scripts/dev/benchmark_kv_cache.py --num_prompts 32 --max_new_tokens 384 --batch_size 32 --runs 2
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.eval import ifeval
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.infer.load import load
from lit_gpt.infer.sampling import generate_batch
from lit_gpt.model import GPT, KVCache
from lit_gpt.utils import run_cli


def bf16_cache(model: GPT, batch_size: int, max_seq_length=None, device=None, dtype=None) -> None:
    """The cache as it was before: in the model's own dtype."""
    max_seq_length = min(max_seq_length or model.config.block_size, model.config.block_size)
    for block in model.blocks:
        block.attn.kv_cache = KVCache(batch_size, model.config.n_query_groups, max_seq_length,
                                      model.config.head_size, model.wte.weight.device, model.wte.weight.dtype)


def main(checkpoint_dir: Path = Path("checkpoints") / SMOLLM2_REPO_ID, num_prompts: int = 32,
         max_new_tokens: int = 384, batch_size: int = 32, runs: int = 2, threads: int = 2) -> dict:
    """Prints and returns the seconds of each run of each cache.

    Args:
        checkpoint_dir: a converted checkpoint (the packaged SmolLM2-135M-Instruct is converted there if missing)
        num_prompts: the first N IFEval prompts
        max_new_tokens: tokens generated per prompt
        batch_size: rows in flight
        runs: runs of each cache, alternating which goes first
        threads: torch threads
    """
    torch.set_num_threads(threads)
    if not (checkpoint_dir / "lit_model.pth").is_file():
        install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    loaded = load(checkpoint_dir, device="cpu", precision="bf16-true")
    prompts = [encode_prompt(loaded.tokenizer, loaded.style, p.prompt, device=loaded.device)
               for p in ifeval.load_prompts()[:num_prompts]]
    caches = {"float32_cache": GPT.set_kv_cache, "bf16_cache": bf16_cache}
    seconds = {name: [] for name in caches}
    load_before = os.getloadavg()
    try:
        for r in range(runs):
            for name in list(caches) if r % 2 == 0 else list(caches)[::-1]:
                GPT.set_kv_cache = caches[name]
                start = time.perf_counter()
                generate_batch(loaded.model, prompts, max_new_tokens, batch_size=batch_size, temperature=0.0)
                seconds[name].append(round(time.perf_counter() - start, 2))
    finally:
        GPT.set_kv_cache = caches["float32_cache"]
    report = {"seconds": seconds, "new_tokens": num_prompts * max_new_tokens,
              "paired_speedup": [round(b / f, 3) for f, b in zip(seconds["float32_cache"], seconds["bf16_cache"])],
              "load_average_before": load_before, "load_average_after": os.getloadavg()}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

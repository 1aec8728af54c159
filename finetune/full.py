"""Fine-tune every weight of a checkpoint (full fine-tuning).

    python finetune/full.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --data_dir data/alpaca

The constants below are the defaults; each is also a flag (`--learning_rate 1e-5`) and can come from a YAML file
(`--config my.yaml`, e.g. the hyperparameters.yaml of an earlier run). Output (default out/full/<data name>) is a
checkpoint directory: lit_model.pth, lit_config.json, the tokenizer files, prompt_style.json and the run's
hyperparameters.yaml; checkpoints/step-N/, logs/ (csv/metrics.csv and the --logger's), loss.png.
"""

import importlib.util
import sys


# ---- hyperparameters: edit to change the defaults (shipped equal to lit_gpt's TrainArgs) ----
learning_rate = 3e-4
batch_size = 128  # examples per optimizer step, over all devices
micro_batch_size = 4  # examples per forward pass on one device (gradients are accumulated)
max_iters = None  # optimizer steps; None = all epochs
epochs = None  # passes over the data; None = as many as max_iters needs, else 1
weight_decay = 0.01
warmup_steps = 100
grad_clip = 1.0
override_max_seq_length = None  # None = the longest example
eval_interval = 100
eval_iters = None  # None = the whole test set
sample_max_new_tokens = 64
save_interval = 1000
seed = 1337
precision = None  # None = bf16-true where the hardware has native bf16, else 32-true
devices = 1
num_nodes = 1
strategy = "auto"  # fsdp shards weights and optimizer state over the devices
order = "shuffle"
packing = False  # True: several examples per row (no padding); micro_batch_size then counts rows of max_seq_length
neftune_noise_alpha = None  # NEFTune noise on the embeddings in training, e.g. 5; None = off
early_stopping_patience = None
gradient_checkpointing = False
compile = False  # True: torch.compile the blocks; ~40% less activation memory after a one-off compile (~1 min)
logger = "tensorboard"  # besides logs/csv/metrics.csv (always written): csv (only that), tensorboard, wandb, mlflow

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.train.cli import finetune_command
from lit_gpt.utils import run_cli

if __name__ == "__main__":
    run_cli(finetune_command("full", globals()))

"""Preference tuning: teach a checkpoint to prefer the chosen answer of each pair over the rejected one (DPO, IPO,
SimPO or ORPO), on pairs prepared by scripts/prepare_preferences.py.

    python finetune/dpo.py --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --data_dir data/pairs

It trains in the same loop as finetune/lora.py and full.py (epochs, validation, best weights, --resume auto). DPO
and IPO compare with a reference, the frozen base model: with --method lora the model with its LoRA switched off,
with --method full the base's log-probabilities computed once before training. The constants below are the defaults;
each is also a flag (`--loss ipo`, `--beta 0.2`) and can come from a YAML file (`--config my.yaml`). Output (default
out/dpo/<data name>): as finetune/lora.py's (or full.py's with --method full); logs/csv/metrics.csv adds the
train_/val_ accuracy (pairs whose chosen answer has the higher reward), reward_margin, chosen_reward and
rejected_reward.
"""

import importlib.util
import sys


# ---- the preference loss (shipped equal to lit_gpt's PreferenceArgs) ----
method = "lora"  # lora (reference = the model with LoRA off) or full (reference log-probabilities computed once)
loss = "dpo"  # dpo, ipo, simpo (no reference) or orpo (no reference, the SFT loss built in)
beta = None  # dpo/simpo: scale of the log-ratio; ipo: tau; orpo: lambda; None = dpo 0.1, ipo 0.1, simpo 2, orpo 0.1
label_smoothing = 0.0  # dpo: share of pairs assumed mislabeled (conservative DPO)
simpo_gamma = 0.5  # simpo: the target reward margin

# ---- the loop's hyperparameters (shipped equal to lit_gpt's TrainArgs and LoRAConfig; see finetune/lora.py) ----
learning_rate = 3e-4  # DPO usually takes less than SFT: e.g. 5e-5 with LoRA, 5e-7 to 5e-6 for full fine-tuning
batch_size = 128  # pairs per optimizer step, over all devices
micro_batch_size = 4  # pairs per forward pass on one device (each pair is two rows)
max_iters = None
epochs = None
weight_decay = 0.01
warmup_steps = 100
grad_clip = 1.0
lora_r = 8  # the lora_* settings apply with method = "lora"
lora_alpha = 16
lora_dropout = 0.05
lora_variant = "lora"
lora_query = True
lora_key = False
lora_value = True
lora_projection = False
lora_mlp = False
lora_head = False
override_max_seq_length = None
eval_interval = 100
eval_iters = None
sample_max_new_tokens = 64
save_interval = 1000
seed = 1337
precision = None
quantize = None  # with method = "lora" only
devices = 1
num_nodes = 1
strategy = "auto"
order = "shuffle"  # shuffle, as_given or by_source
packing = False  # each micro-batch's sequences share rows as long as its longest (no row longer than unpacked)
neftune_noise_alpha = None  # must stay None with dpo and ipo (the policy would differ from the reference by chance)
early_stopping_patience = None
gradient_checkpointing = False
compile = False
logger = "tensorboard"

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.train.cli import preference_command
from lit_gpt.utils import run_cli

if __name__ == "__main__":
    run_cli(preference_command(globals()))

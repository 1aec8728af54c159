"""The names of the files this project writes and reads, in one place (it imports nothing, so every module can).

A checkpoint directory: lit_config.json + lit_model.pth + the tokenizer files (+ prompt_style.json).
A LoRA run's out_dir: lit_model.pth.lora + lora_config.json + base_fingerprint.json beside the base's lit_config.json, the tokenizer files,
prompt_style.json and hyperparameters.yaml; checkpoints/step-N/ each hold the weights and (the newest) train_state.pth.
A prepared dataset: train.pt + test.pt + manifest.json.
"""

LIT_CONFIG_FILE = "lit_config.json"  # Config as JSON
LIT_WEIGHTS_FILE = "lit_model.pth"  # a full state dict of GPT
LORA_WEIGHTS_FILE = "lit_model.pth.lora"  # the LoRA tensors alone
LORA_CONFIG_FILE = "lora_config.json"  # LoRAConfig (r, alpha, dropout, targets)
BASE_FINGERPRINT_FILE = "base_fingerprint.json"  # in a LoRA run: which base weights it was trained on (BaseFingerprint)
PROMPT_STYLE_FILE = "prompt_style.json"  # the prompt style a model was (fine-)tuned with
HYPERPARAMETERS_FILE = "hyperparameters.yaml"  # a run's settings (rerun with --config), incl. its checkpoint_dir
HF_CONFIG_FILE = "config.json"  # Hugging Face's model config
MERGED_LORA_FILE = "merged_lora.json"  # in a merged checkpoint: which LoRA weights were folded in (their sha256)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json",
                   "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")

TRAIN_FILE = "train.pt"  # prepared examples, list[dict]
TEST_FILE = "test.pt"
MANIFEST_FILE = "manifest.json"
DATA_MANIFEST_FILE = "data_manifest.json"  # in a run's out_dir: the manifest of the data it trained on (model cards)

TRAIN_STATE_FILE = "train_state.pth"  # what resuming needs: trainable weights, optimizer, scheduler, TrainState
CHECKPOINTS_DIR = "checkpoints"  # out_dir/checkpoints/step-NNNNNN/
BEST_DIR = "best"  # out_dir/best/: the weights of the best validation (multi-epoch runs, early stopping)

LOCK_FILE = ".lit_gpt.lock"  # in a directory being written (a run's out_dir, a dataset): the writer's PID and host

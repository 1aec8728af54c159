"""What a run writes besides weights: the files that make out_dir self-describing (model config, tokenizer, prompt
style, LoRA config and base fingerprint, hyperparameters.yaml, the data's manifest as data_manifest.json), the loss
curve, train_summary.json and overfitting_summary.json.

train_summary.json holds the steps, epochs, final and best losses, the order and a hash of the first epoch's batches
(the same for every rerun with the same seed); overfitting_summary.json the best val loss with its epoch and step,
the final train/val gap and the per-epoch losses.
"""

from dataclasses import asdict
from pathlib import Path
from typing import Optional

import matplotlib.figure
import yaml

from lit_gpt.file_names import BEST_DIR, DATA_MANIFEST_FILE, HYPERPARAMETERS_FILE, LIT_CONFIG_FILE, PROMPT_STYLE_FILE
from lit_gpt.checkpoint import copy_tokenizer_files
from lit_gpt.lora import LoRAConfig
from lit_gpt.lora_merge import BaseFingerprint
from lit_gpt.prompts.styles import save_prompt_style
from lit_gpt.train.resume import weights_file_name
from lit_gpt.train.state import TrainState
from lit_gpt.utils import atomic_path, atomic_write_json, atomic_write_text, copy_file


def write_run_files(out_dir: Path, checkpoint_dir: Path, data_dir: Path, manifest: dict,
                    lora: Optional[LoRAConfig], hyperparameters: dict, method: str) -> None:
    """Model config, tokenizer files, prompt style, the LoRA config with the base weights' fingerprint and the
    settings (hyperparameters.yaml, which records the base checkpoint_dir): with them the weights in out_dir can be
    loaded without other input."""
    if (checkpoint_dir / LIT_CONFIG_FILE).is_file():
        copy_file(checkpoint_dir / LIT_CONFIG_FILE, out_dir / LIT_CONFIG_FILE)
    copy_tokenizer_files(checkpoint_dir, out_dir)
    if (data_dir / PROMPT_STYLE_FILE).is_file():
        copy_file(data_dir / PROMPT_STYLE_FILE, out_dir / PROMPT_STYLE_FILE)
    elif manifest.get("prompt_style"):
        save_prompt_style(manifest["prompt_style"], out_dir)
    if lora is not None:
        lora.save(out_dir)
        BaseFingerprint.of(checkpoint_dir).save(out_dir)  # loading refuses other weights of the same config
    # the data's manifest (its fingerprint, counts, sources) travels with the weights: the model card of an upload
    # names the data even after data_dir was moved or rebuilt
    atomic_write_json(out_dir / DATA_MANIFEST_FILE, manifest)
    run = {"checkpoint_dir": str(checkpoint_dir.resolve()), "data_dir": str(data_dir.resolve()),
           "out_dir": str(out_dir.resolve()), **hyperparameters}
    atomic_write_text(out_dir / HYPERPARAMETERS_FILE, f"# finetune/{method}.py settings; rerun with --config\n"
                      + yaml.safe_dump(run, sort_keys=False))


def run_summary(state: TrainState, steps_per_epoch: int, weights: str, weights_from_step: int, order: str,
                first_epoch_hash: str) -> dict:
    """train_summary.json."""
    return {"steps": state.step, "epochs": state.epochs_done(steps_per_epoch), "stop_reason": state.stop_reason,
            "tokens": state.tokens, "non_pad_share": state.tokens / max(1, state.padded_tokens),
            "final_train_loss": state.train_losses[-1][1] if state.train_losses else None,
            "final_val_loss": state.val_losses[-1][1] if state.val_losses else None,
            "best_val_loss": state.best_val_loss, "best_step": state.best_step, "best_epoch": state.best_epoch,
            "weights": weights, "weights_from_step": weights_from_step, "order": order,
            "first_epoch_order_hash": first_epoch_hash}


def overfitting_summary(state: TrainState, out_dir: Path, lora: bool, early_stopping_patience: Optional[int]) -> dict:
    """Where validation was best, how far apart train and val loss ended, and both per epoch."""
    epochs = state.epochs
    final_train = epochs[-1].train_loss if epochs else (state.train_losses[-1][1] if state.train_losses else None)
    final_val = state.val_losses[-1][1] if state.val_losses else None
    best = out_dir / BEST_DIR / weights_file_name(lora)
    return {"best_val_loss": state.best_val_loss, "best_step": state.best_step, "best_epoch": state.best_epoch,
            "best_weights": str(best.relative_to(out_dir)) if best.is_file() else None,
            "final_step": state.step, "final_train_loss": final_train, "final_val_loss": final_val,
            "final_gap": final_val - final_train if final_val is not None and final_train is not None else None,
            "gap_note": "final val loss minus the mean train loss of the last epoch",
            "stopped_early": state.stop_reason == "early_stopping",
            "early_stopping_patience": early_stopping_patience,
            "evals_without_improvement": state.evals_without_improvement,
            "per_epoch": [asdict(e) for e in epochs]}


def plot_loss(train_losses: list, val_losses: list, path: Path) -> None:
    """loss.png: train loss per step, validation loss at each validation. Drawn on a bare matplotlib Figure (no
    pyplot, so no GUI backend is chosen or needed)."""
    fig = matplotlib.figure.Figure(figsize=(7, 4))
    ax = fig.subplots()
    if train_losses:
        steps, losses = zip(*train_losses)
        ax.plot(steps, losses, label="train", linewidth=1)
    if val_losses:
        steps, losses = zip(*val_losses)
        ax.plot(steps, losses, "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")

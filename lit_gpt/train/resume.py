"""Saving and resuming a run: step checkpoints, the best-validation weights, and loading a training state back.

Step checkpoints (`lit_gpt.train.state`): the weights file of a step is the model part of its training state, in
the plain format consumers load (a full state dict, or the LoRA tensors alone). The training state of older steps
is deleted when a newer one is complete; their weights stay.
"""

import pickle
from pathlib import Path

import torch

from lit_gpt.file_names import (BASE_FINGERPRINT_FILE, BEST_DIR, CHECKPOINTS_DIR, HYPERPARAMETERS_FILE,
                                LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_CONFIG_FILE, LORA_WEIGHTS_FILE, PROMPT_STYLE_FILE,
                                TOKENIZER_FILES, TRAIN_STATE_FILE)
from lit_gpt.lora import LORA_TARGETS, is_lora_name
from lit_gpt.train.state import TrainState, checkpoint_steps, step_dir
from lit_gpt.utils import (UserError, atomic_torch_save, atomic_write_json, link_or_copy, remove_stale_temp_files,
                           temp_path, write_error)


def weights_file_name(lora: bool) -> str:
    return LORA_WEIGHTS_FILE if lora else LIT_WEIGHTS_FILE


def _model_filter(lora: bool):
    return {"model": lambda name, _: is_lora_name(name)} if lora else None


def save_step_checkpoint(fabric, out_dir: Path, model, optimizer, scheduler, state: TrainState, lora: bool) -> Path:
    """checkpoints/step-N/{weights, train_state.pth, the run's description files}. The training state is written
    last (renamed into place), so a step dir with train_state.pth is complete; then the training state of older
    steps is deleted. The description files (lit_config.json, lora_config.json, base_fingerprint.json,
    prompt_style.json, hyperparameters.yaml, tokenizer files; hard links where possible) make each step directory
    loadable on its own: generate/ and merge_lora.py take it like the run's final output."""
    directory = step_dir(out_dir, state.step)
    tmp = temp_path(directory / TRAIN_STATE_FILE)  # the same name on every rank is not needed: rank 0 writes it
    try:
        fabric.save(tmp, {"model": model, "optimizer": optimizer, "scheduler": scheduler, "train_state": state},
                    filter=_model_filter(lora))
    except Exception as e:
        problem = write_error(directory, e, "--out_dir")
        if problem is not None:
            raise problem from None
        raise
    fabric.barrier()
    if fabric.is_global_zero:
        weights = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)["model"]
        atomic_torch_save(weights, directory / weights_file_name(lora))
        for name in (LIT_CONFIG_FILE, LORA_CONFIG_FILE, BASE_FINGERPRINT_FILE, PROMPT_STYLE_FILE, HYPERPARAMETERS_FILE,
                     *TOKENIZER_FILES):
            if (out_dir / name).is_file():
                link_or_copy(out_dir / name, directory / name)
        tmp.replace(directory / TRAIN_STATE_FILE)
        for older in checkpoint_steps(out_dir):
            if older != directory:
                (older / TRAIN_STATE_FILE).unlink()
    fabric.barrier()
    return directory


def save_best_weights(fabric, out_dir: Path, model, state: TrainState, lora: bool, just_saved: bool) -> Path:
    """out_dir/best/{weights, best.json}: the weights at the best validation so far, replaced at each improvement.
    Links the step checkpoint's weights file when one was just written (`just_saved`), else saves the weights."""
    name = weights_file_name(lora)
    best_dir = out_dir / BEST_DIR
    tmp = temp_path(best_dir / name)
    if not just_saved:
        fabric.save(tmp, {"model": model}, filter=_model_filter(lora))
        fabric.barrier()
    if fabric.is_global_zero:
        if just_saved:
            link_or_copy(step_dir(out_dir, state.step) / name, best_dir / name)
        else:
            weights = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)["model"]
            atomic_torch_save(weights, best_dir / name)
            tmp.unlink()
        info = {"step": state.step, "epoch": state.best_epoch, "val_loss": state.best_val_loss, "weights": name}
        atomic_write_json(best_dir / "best.json", info)
    fabric.barrier()
    return best_dir


def restore_checkpoint(fabric, path: Path, model, optimizer, scheduler, state: TrainState, strict: bool) -> None:
    """Loads model, optimizer, scheduler and `state` from a train_state.pth, in place; refuses a state whose plan
    (data, batch size, seed, order) differs from this run's, since its data position would mean other batches."""
    plan = state.plan
    try:
        # weights_only: a train_state.pth holds tensors and plain containers only, so nothing in it is ever run
        # (also when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set). TrainState is restored from what Fabric hands back:
        # Fabric copies the dataclasses it is given.
        remainder = fabric.load(path, {"model": model, "optimizer": optimizer, "scheduler": scheduler},
                                strict=strict, weights_only=True)
        state.load_state_dict(remainder["train_state"])
    except pickle.UnpicklingError:
        raise UserError(f"{path}: refused: it holds objects other than tensors and plain values (not a training "
                        "state this project wrote); resume from a checkpoint of your own run") from None
    except (RuntimeError, KeyError, ValueError, EOFError) as e:
        raise UserError(f"{path}: cannot resume from this training state ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); it belongs to another model or method") from None
    changed = {k: (getattr(state.plan, k), new) for k, new in vars(plan).items() if getattr(state.plan, k) != new}
    if changed:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise UserError(f"{path}: cannot resume: the data position depends on settings that changed ({what}); "
                        "resume with the same data and settings")


def remove_unfinished_saves(out_dir: Path) -> None:
    """Deletes the temporary files a killed run left in its step and best directories (they can be as large as
    the model); nothing writes into those folders again, so the next write there would not clean them up."""
    for directory in [*out_dir.glob(f"{CHECKPOINTS_DIR}/step-*"), out_dir / BEST_DIR]:
        if directory.is_dir():
            remove_stale_temp_files(directory)


# settings that shape the weights or their meaning: a resumed run must keep them
FIXED_ON_RESUME = ("lora_r", "lora_alpha", "lora_variant", *(f"lora_{t}" for t in LORA_TARGETS), "precision",
                   "quantize")


def apply_changed_hyperparameters(saved: dict, current: dict, optimizer, scheduler, print=print) -> dict:
    """After a restore: the settings that differ from the saved run's. Those in FIXED_ON_RESUME are refused; the
    others apply from here on (the learning rate and weight decay are set in the restored optimizer and schedule,
    which would otherwise keep the old values) and are listed. Returns {name: (old, new)}."""
    changed = {k: (saved.get(k), v) for k, v in current.items() if k in saved and saved[k] != v}
    fixed = {k: v for k, v in changed.items() if k in FIXED_ON_RESUME}
    if fixed:
        what = ", ".join(f"--{k} {old!r} -> {new!r}" for k, (old, new) in fixed.items())
        raise UserError(f"cannot resume with {what}: it shapes the trained weights; resume with the saved value or "
                        "start a new run in another --out_dir")
    if "learning_rate" in changed:
        factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
        scheduler.base_lrs = [current["learning_rate"]] * len(scheduler.base_lrs)
        for group in optimizer.param_groups:
            group["initial_lr"] = current["learning_rate"]
            group["lr"] = current["learning_rate"] * factor
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    if "weight_decay" in changed:
        for group in optimizer.param_groups:
            if any(p.ndim >= 2 for p in group["params"]):  # norms and biases stay undecayed
                group["weight_decay"] = current["weight_decay"]
    if changed:
        print("resuming with changed settings (they apply from here on): "
              + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))
    return changed

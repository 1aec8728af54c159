"""Saving and resuming a run: step checkpoints, the best-validation weights, and loading a training state back.

Step checkpoints (`lit_gpt.train.state`): the weights file of a step is the model part of its training state, in
the plain format consumers load (a full state dict, or the LoRA tensors alone). The training state of older steps
is deleted when a newer one is complete; their weights stay.
"""

from pathlib import Path

import torch

from lit_gpt.files import BEST_DIR, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, TRAIN_STATE_FILE
from lit_gpt.lora import is_lora_name
from lit_gpt.train.state import TrainState, checkpoint_steps, step_dir
from lit_gpt.utils import UserError, atomic_torch_save, atomic_write_json, link_or_copy


def weights_file_name(lora: bool) -> str:
    return LORA_WEIGHTS_FILE if lora else LIT_WEIGHTS_FILE


def _model_filter(lora: bool):
    return {"model": lambda name, _: is_lora_name(name)} if lora else None


def save_step_checkpoint(fabric, out_dir: Path, model, optimizer, scheduler, state: TrainState, lora: bool) -> Path:
    """checkpoints/step-N/{weights, train_state.pth}. The training state is written last (renamed into place), so a
    step dir with train_state.pth is complete; then the training state of older steps is deleted."""
    directory = step_dir(out_dir, state.step)
    tmp = directory / f".{TRAIN_STATE_FILE}.tmp"
    fabric.save(tmp, {"model": model, "optimizer": optimizer, "scheduler": scheduler, "train_state": state},
                filter=_model_filter(lora))
    fabric.barrier()
    if fabric.is_global_zero:
        weights = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)["model"]
        atomic_torch_save(weights, directory / weights_file_name(lora))
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
    tmp = best_dir / f".{name}.state.tmp"
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
        # TrainState is restored from what Fabric hands back: Fabric copies dataclasses it is given
        remainder = fabric.load(path, {"model": model, "optimizer": optimizer, "scheduler": scheduler},
                                strict=strict)
        state.load_state_dict(remainder["train_state"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path}: cannot resume from this training state ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); it belongs to another model or method") from None
    changed = {k: (getattr(state.plan, k), new) for k, new in vars(plan).items() if getattr(state.plan, k) != new}
    if changed:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise UserError(f"{path}: cannot resume: the data position depends on settings that changed ({what}); "
                        "resume with the same data and settings")

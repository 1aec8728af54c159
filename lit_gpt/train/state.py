"""The state of a training run that resuming needs besides the weights and the optimizer: `TrainState`, saved in
every newest checkpoint's train_state.pth (as plain containers, so it loads with `weights_only=True`); and where to
find the checkpoint to resume from.

Checkpoints: `out_dir/checkpoints/step-NNNNNN/` holds the weights (`lit_model.pth`, or only the LoRA tensors in
`lit_model.pth.lora`) and, in the newest one only, `train_state.pth` (trainable weights, optimizer, scheduler,
TrainState). A step directory with train_state.pth is complete: that file is written last.
"""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional

from lit_gpt.file_names import CHECKPOINTS_DIR, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, TRAIN_STATE_FILE
from lit_gpt.utils import UserError


@dataclass
class TrainPlan:
    """What the position in the data depends on: a run resumes only with the same plan."""

    batch_size: int
    seed: int
    order: str
    n_train: int
    max_seq_length: int
    data_fingerprint: Optional[str]


@dataclass
class EpochRecord:
    """One epoch (or the part of one where a run stopped): mean train loss of its steps, val loss at its end."""

    epoch: float  # epochs completed at its end (fractional for a run stopped inside an epoch)
    step: int
    train_loss: Optional[float]
    val_loss: Optional[float]


@dataclass
class TrainState:
    plan: TrainPlan
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # global batches of the current epoch done
    tokens: int = 0  # real tokens trained on
    padded_tokens: int = 0  # tokens processed, padding included
    best_val_loss: Optional[float] = None
    best_step: Optional[int] = None
    best_epoch: Optional[float] = None
    evals_without_improvement: int = 0
    stop_reason: Optional[str] = None  # None while running; "done", "early_stopping"
    hyperparameters: dict = field(default_factory=dict)  # the flat settings the run is training with
    train_losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)

    def epochs_done(self, steps_per_epoch: int) -> float:
        return self.epoch + self.batch_in_epoch / steps_per_epoch

    # Fabric calls these on save and on load (fabric.load restores the object in place)
    def state_dict(self) -> dict:
        state = asdict(self)
        state["train_losses"] = [list(p) for p in self.train_losses]
        state["val_losses"] = [list(p) for p in self.val_losses]
        return state

    def load_state_dict(self, state: dict) -> None:
        try:
            loaded = TrainState.from_state_dict(state)
        except (TypeError, KeyError, ValueError) as e:
            raise ValueError(f"not a training state of this version ({type(e).__name__}: {e})") from None
        for f in fields(self):
            setattr(self, f.name, getattr(loaded, f.name))

    @classmethod
    def from_state_dict(cls, state: dict) -> "TrainState":
        values = dict(state)
        values["plan"] = TrainPlan(**values["plan"])
        values["epochs"] = [EpochRecord(**e) for e in values.get("epochs", [])]
        values["train_losses"] = [(int(s), float(v)) for s, v in values.get("train_losses", [])]
        values["val_losses"] = [(int(s), float(v)) for s, v in values.get("val_losses", [])]
        return cls(**values)


def step_dir(out_dir: Path, step: int) -> Path:
    return out_dir / CHECKPOINTS_DIR / f"step-{step:06d}"


def checkpoint_steps(out_dir: Path) -> list:
    """Step directories under out_dir/checkpoints that hold a complete training state, oldest first."""
    root = out_dir / CHECKPOINTS_DIR
    dirs = [d for d in root.glob("step-*") if (d / TRAIN_STATE_FILE).is_file()] if root.is_dir() else []
    return sorted(dirs, key=lambda d: d.name)


def find_resume_file(out_dir: Path, resume: Optional[str]) -> Optional[Path]:
    """The train_state.pth to resume from, or None for a fresh run. A fresh run is refused where out_dir holds an
    earlier run's checkpoints, or a model that no run left there (weights without checkpoints/: a checkpoint
    directory, which the run would overwrite)."""
    steps = checkpoint_steps(out_dir)
    if resume is None and steps:
        raise UserError(f"{out_dir}: holds checkpoints of an earlier run; continue it with --resume auto, "
                        "or choose another --out_dir")
    weights = [name for name in (LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE) if (out_dir / name).is_file()]
    if resume in (None, "auto") and not steps and weights:
        raise UserError(f"{out_dir}: holds {weights[0]} but no checkpoints/ of a fine-tuning run (a model of its "
                        "own, which the run would overwrite); choose another --out_dir")
    if resume is None:
        return None
    if resume == "auto":
        return steps[-1] / TRAIN_STATE_FILE if steps else None
    path = Path(resume)
    if path.is_dir():
        steps = checkpoint_steps(path)
        path = steps[-1] / TRAIN_STATE_FILE if steps else path / TRAIN_STATE_FILE
    if not path.is_file():
        raise UserError(f"{path}: no training state to resume from; pass --resume auto, an out_dir or a "
                        "checkpoints/step-* directory")
    return path

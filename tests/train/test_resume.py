"""lit_gpt/train/resume.py: resuming equals the uninterrupted run; the best-validation weights kept in best/.

The epoch runs overfit on purpose: a tiny model, full fine-tuning at a high learning rate, 4 real Alpaca-GPT-4 rows to
train on and 4 others to validate on, one step per epoch: the validation loss falls for a few epochs, then rises as
the model memorizes its few training answers. They also check overfitting_summary.json, early stopping after
`early_stopping_patience` validations without improvement, and the logged order hash.
"""

import csv
import itertools
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from helpers import ROOT, fast_args
from lit_gpt.data.order import order_hash
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.file_names import BEST_DIR
from lit_gpt.infer.load import load
from lit_gpt.lora import LoRAConfig
from lit_gpt.lora_merge import find_lora, save_merged_checkpoint
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.dataset import TrainingSet, epoch_batches
from lit_gpt.train.loop import Trainer, finetune
from lit_gpt.train.step import lr_factor, validate
from lit_gpt.utils import UserError

# tiny training steps (see conftest.one_thread); slow: training runs, stopped and resumed
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


# ---- resume ----------------------------------------------------------------------------------------------------------
def _stop_after_first_checkpoint(monkeypatch):
    real_save = Trainer.save_checkpoint

    def save_then_crash(trainer):
        step_dir = real_save(trainer)
        raise KeyboardInterrupt(f"simulated crash after {step_dir.name}")

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_crash)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_equals_uninterrupted_run(tmp_path, checkpoint, capitals_data, monkeypatch, method):
    lora = LoRAConfig(r=4, alpha=8, dropout=0.1, targets=("query", "value")) if method == "lora" else None
    args = fast_args(batch_size=4, micro_batch_size=2, epochs=2, save_interval=3, eval_interval=3)  # 8 steps
    whole = finetune(method, checkpoint, capitals_data, tmp_path / "whole", args, lora)

    with monkeypatch.context() as m:
        _stop_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            finetune(method, checkpoint, capitals_data, tmp_path / "resumed", args, lora)
    assert (tmp_path / "resumed" / "checkpoints" / "step-000003" / "train_state.pth").is_file()
    with pytest.raises(UserError, match="--resume auto"):  # refuses to start over an earlier run
        finetune(method, checkpoint, capitals_data, tmp_path / "resumed", args, lora)
    resumed = finetune(method, checkpoint, capitals_data, tmp_path / "resumed", args, lora, resume="auto")

    assert whole["steps"] == resumed["steps"] == 8
    name = "lit_model.pth.lora" if method == "lora" else "lit_model.pth"
    a = torch.load(tmp_path / "whole" / name, weights_only=True)
    b = torch.load(tmp_path / "resumed" / name, weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert resumed["final_val_loss"] == pytest.approx(whole["final_val_loss"], abs=1e-6)


# ---- several epochs: best weights, early stopping, overfitting summary -----------------------------------------------
OVERFIT = dict(learning_rate=0.05, batch_size=4, micro_batch_size=4, warmup_steps=0, eval_interval=1000,
               sample_max_new_tokens=0, seed=3, order="as_given", weight_decay=0.0)


@pytest.fixture(scope="module")
def setup(tiny_checkpoint_dir, shared_dir, tmp_path_factory):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", weights=True, block_size=96)
    source = shared_dir / "datasets" / "alpaca_gpt4" / "sample_999.json"
    data_dir = tmp_path_factory.mktemp("epochs") / "data"
    prepare(itertools.islice(iter_records(source), 8), name="gpt4", source_files=[source],
            checkpoint_dir=checkpoint_dir, destination_path=data_dir, test_split_fraction=0.5, max_seq_length=64)
    return checkpoint_dir, data_dir


def val_loss_of(weights_path, checkpoint_dir, data_dir, precision):
    """Validation loss of saved full weights, computed afresh in the precision the run used."""
    import lightning as L

    from lit_gpt.checkpoint import load_model
    from lit_gpt.precision import param_dtype

    model = load_model(checkpoint_dir, dtype=param_dtype(precision))
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    test = torch.load(data_dir / "test.pt", weights_only=True)
    fabric = L.Fabric(accelerator="cpu", devices=1, precision=precision)
    return validate(fabric, fabric.setup_module(model).eval(), TrainingSet(test, 95, "test", 49152), 4)


def tolerance(precision: str) -> float:
    return 1e-4 if precision == "32-true" else 2e-3  # bf16 keeps 8 bits of mantissa


@pytest.mark.both_default_precisions
def test_early_stopping_keeps_best_weights(setup, tmp_path, default_precision):
    checkpoint_dir, data_dir = setup
    out_dir = tmp_path / "run"
    summary = finetune("full", checkpoint_dir, data_dir, out_dir,
                       TrainArgs(epochs=40, early_stopping_patience=2, **OVERFIT))
    report = json.loads((out_dir / "overfitting_summary.json").read_text())
    epochs = report["per_epoch"]
    val = [e["val_loss"] for e in epochs]
    best = min(range(len(val)), key=val.__getitem__)
    # it stopped early, exactly `patience` validations after the best one, because val loss rose
    assert summary["stop_reason"] == "early_stopping" and report["stopped_early"] and len(epochs) < 40
    assert len(epochs) == best + 1 + 2 and val[-1] > val[best] and val[-2] > val[best]
    assert val[best] < val[0]  # it did learn before it overfit
    assert [e["epoch"] for e in epochs] == list(range(1, len(epochs) + 1)) and all(e["train_loss"] for e in epochs)
    assert report["best_epoch"] == best + 1 and report["best_step"] == epochs[best]["step"]
    assert report["best_val_loss"] == pytest.approx(val[best]) == summary["best_val_loss"]
    assert report["final_val_loss"] == pytest.approx(val[-1]) and report["final_train_loss"] == epochs[-1]["train_loss"]
    assert report["final_gap"] == pytest.approx(val[-1] - epochs[-1]["train_loss"]) and report["final_gap"] > 0
    # the best weights: in best/ and (under early stopping) at the top of out_dir, and they give the best val loss
    assert report["best_weights"] == f"{BEST_DIR}/lit_model.pth"
    assert json.loads((out_dir / BEST_DIR / "best.json").read_text())["step"] == report["best_step"]
    best_weights = torch.load(out_dir / BEST_DIR / "lit_model.pth", weights_only=True)
    final = torch.load(out_dir / "lit_model.pth", weights_only=True)
    assert all(torch.equal(best_weights[k], final[k]) for k in best_weights)
    assert val_loss_of(out_dir / BEST_DIR / "lit_model.pth", checkpoint_dir, data_dir,
                       default_precision) == pytest.approx(val[best], rel=tolerance(default_precision))
    last_step = torch.load(out_dir / "checkpoints" / f"step-{epochs[-1]['step']:06d}" / "lit_model.pth",
                           weights_only=True)
    assert not all(torch.equal(best_weights[k], last_step[k]) for k in best_weights)
    # the order is logged with a hash of the first epoch's batches, reproducible from the seed
    train = TrainingSet(torch.load(data_dir / "train.pt", weights_only=True), 95, "train", 49152)
    expected = order_hash([i for b in epoch_batches(train, 0, OVERFIT["seed"], "as_given", 4) for i in b])
    assert summary["order"] == "as_given" and summary["first_epoch_order_hash"] == expected


@pytest.mark.both_default_precisions
def test_without_early_stopping_best_is_kept_beside_the_last(setup, tmp_path, default_precision):
    checkpoint_dir, data_dir = setup
    out_dir = tmp_path / "run"
    summary = finetune("full", checkpoint_dir, data_dir, out_dir, TrainArgs(epochs=8, **OVERFIT))
    report = json.loads((out_dir / "overfitting_summary.json").read_text())
    val = [e["val_loss"] for e in report["per_epoch"]]
    assert summary["stop_reason"] == "done" and not report["stopped_early"] and len(val) == 8
    best = min(range(8), key=val.__getitem__)
    assert report["best_epoch"] == best + 1 and val[best] < val[-1]
    # top-level weights are the last step's; best/ holds the best epoch's
    assert summary["weights_from_step"] == 8
    assert val_loss_of(out_dir / "lit_model.pth", checkpoint_dir, data_dir,
                       default_precision) == pytest.approx(val[-1], rel=tolerance(default_precision))
    assert val_loss_of(out_dir / BEST_DIR / "lit_model.pth", checkpoint_dir, data_dir,
                       default_precision) == pytest.approx(val[best], rel=tolerance(default_precision))


# ---- resume with other settings, crafted state files, self-describing step checkpoints -----------------------
def _interrupt_after_first_checkpoint(monkeypatch):
    real = Trainer.save_checkpoint

    def save_then_crash(trainer):
        real(trainer)
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_crash)


def _logged_lr(out_dir) -> dict:
    rows = {}
    for path in sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv")):
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("lr"):
                    rows[int(float(row["iter"]))] = float(row["lr"])
    return rows


def test_resume_with_a_new_learning_rate_applies_it_and_says_so(run_setup, tmp_path, monkeypatch, capsys):
    checkpoint, data = run_setup
    args = fast_args(batch_size=2, micro_batch_size=2, epochs=1, save_interval=3, learning_rate=1e-3, warmup_steps=2)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            finetune("full", checkpoint, data, out, args)
    capsys.readouterr()
    new = fast_args(batch_size=2, micro_batch_size=2, epochs=1, save_interval=3, learning_rate=1e-4, warmup_steps=2)
    finetune("full", checkpoint, data, out, new, resume="auto")
    assert "resuming with changed settings (they apply from here on): learning_rate 0.001 -> 0.0001" in \
        capsys.readouterr().out
    lrs = _logged_lr(out)
    total = 7  # 14 examples / batch 2
    assert lrs[4] == pytest.approx(1e-4 * lr_factor(3, 2, total))  # the new rate, at the restored point of the schedule
    assert lrs[2] == pytest.approx(1e-3 * lr_factor(1, 2, total))  # before the interruption: the old one
    assert yaml.safe_load((out / "hyperparameters.yaml").read_text())["learning_rate"] == 1e-4
    state = torch.load(out / "checkpoints" / "step-000007" / "train_state.pth", weights_only=True)["train_state"]
    assert state["hyperparameters"]["learning_rate"] == 1e-4  # recorded as what it trained with


def test_resume_refuses_a_changed_lora_alpha(run_setup, tmp_path, monkeypatch):
    checkpoint, data = run_setup
    args = fast_args(batch_size=2, micro_batch_size=2, save_interval=3)
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            finetune("lora", checkpoint, data, out, args, LoRAConfig(r=4, alpha=8))
    with pytest.raises(UserError, match=r"cannot resume with --lora_alpha 8 -> 16: it shapes the trained weights"):
        finetune("lora", checkpoint, data, out, args, LoRAConfig(r=4, alpha=16), resume="auto")


def test_a_crafted_train_state_is_refused_and_never_run(run_setup, tmp_path, monkeypatch):
    """A pickle with a __reduce__ payload as train_state.pth: even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 the
    resume loads it with weights_only=True, so the payload never runs; the user gets one line, no traceback."""
    checkpoint, data = run_setup
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _interrupt_after_first_checkpoint(m)
        with pytest.raises(KeyboardInterrupt):
            finetune("full", checkpoint, data, out, fast_args(batch_size=2, micro_batch_size=2, save_interval=3))
    marker = tmp_path / "payload-ran"
    state_file = out / "checkpoints" / "step-000003" / "train_state.pth"
    crafted = (f"import os, torch\n"
               f"class Payload:\n"
               f"    def __reduce__(self):\n"
               f"        return (os.system, ('touch {marker}',))\n"
               f"torch.save({{'model': {{}}, 'train_state': Payload()}}, {str(state_file)!r})\n")
    subprocess.run([sys.executable, "-c", crafted], check=True)
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "finetune" / "full.py"), "--checkpoint_dir", str(checkpoint),
                           "--data_dir", str(data), "--out_dir", str(out), "--resume", "auto", "--batch_size", "2",
                           "--micro_batch_size", "2", "--precision", "32-true"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {state_file}: refused: it holds objects other")
    assert not marker.exists()


def test_a_step_checkpoint_can_be_generated_from_and_merged(run_setup, tmp_path):
    checkpoint, data = run_setup
    out = tmp_path / "run"
    finetune("lora", checkpoint, data, out, fast_args(batch_size=2, micro_batch_size=2, save_interval=3),
             LoRAConfig(r=4, alpha=8, dropout=0.0))
    step = out / "checkpoints" / "step-000003"
    lora = find_lora(step)  # its own lora_config.json, and the base recorded in its hyperparameters.yaml
    assert lora.base_dir.resolve() == checkpoint.resolve() and lora.config.r == 4
    assert load(lora_path=step, device="cpu").model.config.n_layer == 2
    merged = save_merged_checkpoint(lora, tmp_path / "merged")
    with pytest.raises(UserError, match="already holds a checkpoint; .* --overwrite true"):
        save_merged_checkpoint(lora, merged)  # another merge would replace the weights LoRA runs may depend on
    assert save_merged_checkpoint(lora, merged, overwrite=True) == merged
    # merging the same LoRA into the merged checkpoint again would apply the update twice
    with pytest.raises(UserError, match="already merged into"):
        find_lora(step, merged)

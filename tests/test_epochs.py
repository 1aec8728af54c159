"""Several epochs: per-epoch train/val loss, the best-validation weights kept in out_dir/best/, early stopping after
`early_stopping_patience` validations without improvement, overfitting_summary.json, and the logged order hash.

The runs overfit on purpose: a tiny model, full fine-tuning at a high learning rate, 4 real Alpaca-GPT-4 rows to
train on and 4 others to validate on, one step per epoch: the validation loss falls for a few epochs, then rises as
the model memorizes its few training answers.
"""

import itertools
import json

import pytest
import torch

from lit_gpt.data.order import order_hash
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.files import BEST_DIR
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.dataset import TrainingSet, epoch_batches
from lit_gpt.train.loop import finetune
from lit_gpt.train.step import validate


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

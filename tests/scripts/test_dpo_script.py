"""finetune/dpo.py as a user runs it, on a tiny model and tiny pairs prepared by scripts/prepare_preferences.py: the
held-out pairs' chosen-over-rejected accuracy rises from the base model's, the LoRA run's reference is the base model,
and a full fine-tuning run (reference log-probabilities computed once) resumes like an uninterrupted one with its
epochs and best-validation weights."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from helpers import CAPITALS, ROOT, fast_args, make_checkpoint, metrics_rows, run_script
from lit_gpt.checkpoint import load_model
from lit_gpt.config import Config
from lit_gpt.data.prepared import load_prepared
from lit_gpt.lora import LoRAConfig, load_lora_weights, lora_disabled
from lit_gpt.train.args import PreferenceArgs, hyperparameter_specs
from lit_gpt.train.cli import script_constants
from lit_gpt.train.loop import Trainer, finetune
from lit_gpt.train.dataset import training_sets
from lit_gpt.train.preference_step import PreferenceObjective, PreferenceSet, pair_logps

# tiny training steps (see conftest.one_thread); slow: the script in a real process, training runs
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


class CPU:
    """The bits of Fabric the objective's validation uses, for one process."""

    global_rank, world_size, device = 0, 1, torch.device("cpu")

    def all_reduce(self, tensor, reduce_op):
        return tensor


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint and 16 pairs (12 train, 4 held out): a full answer preferred over "I do not know."."""
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("ckpt"))
    rows = [{"prompt": f"What is the capital of {country}?", "chosen": f"The capital of {country} is {city}.",
             "rejected": "I do not know."} for country, city in CAPITALS]
    source = tmp_path_factory.mktemp("pairs") / "capitals.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in rows))
    data = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, ROOT / "scripts" / "prepare_preferences.py", "--data_path", source,
                    "--checkpoint_dir", checkpoint, "--destination_path", data, "--test_split_fraction", "0.25"],
                   env=ENV, check=True, capture_output=True)
    return checkpoint, data


def held_out(checkpoint, data) -> PreferenceSet:
    train_raw, test_raw, _ = load_prepared(data, format="preference")
    return training_sets(train_raw, test_raw, data, Config.from_file(checkpoint / "lit_config.json"), None,
                         kind=PreferenceSet)[1]


def held_out_metrics(model, val: PreferenceSet) -> dict:
    """The val_* metrics of `model` on the held-out pairs, with the base model's reference (LoRA switched off)."""
    return PreferenceObjective(PreferenceArgs(), lora=True).validate(CPU(), model, val, micro_batch_size=4)


def test_the_constants_are_the_library_defaults():
    spec = importlib.util.spec_from_file_location("finetune_dpo", ROOT / "finetune" / "dpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    constants = script_constants(vars(module))
    defaults = {name: default for name, (_, default, _) in hyperparameter_specs(preference=True).items()}
    assert constants == defaults


def test_lora_run_raises_the_held_out_accuracy_and_its_reference_is_the_base(setup, tmp_path):
    checkpoint, data = setup
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, ROOT / "finetune" / "dpo.py", "--checkpoint_dir", checkpoint,
                             "--data_dir", data, "--out_dir", out, "--batch_size", "4", "--epochs", "4",
                             "--learning_rate", "1e-2", "--warmup_steps", "1", "--eval_interval", "3",
                             "--lora_r", "4", "--lora_dropout", "0", "--lora_head", "true", "--precision", "32-true",
                             "--sample_max_new_tokens", "0", "--logger", "csv"],
                            env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    base, val = load_model(checkpoint).eval(), held_out(checkpoint, data)
    before = held_out_metrics(base, val)
    # the base model is its own reference: every reward 0, no pair ranked right, the loss log 2
    assert before["val_accuracy"] == 0.0 and before["val_loss"] == pytest.approx(math.log(2))
    rows = metrics_rows(out)
    validations = [row for row in rows if row["val_loss"]]
    assert len(validations) == 4  # each epoch's end
    accuracy = [float(row["val_accuracy"]) for row in validations]
    margins = [float(row["val_reward_margin"]) for row in validations]
    assert accuracy[-1] >= 0.75 and margins[-1] > margins[0] > 0
    assert float(validations[-1]["val_loss"]) < math.log(2)
    assert float(rows[0]["train_loss"]) == pytest.approx(math.log(2), abs=1e-6)  # LoRA starts as the base
    assert {"train_accuracy", "train_chosen_reward", "train_rejected_reward", "train_reward_margin"} <= set(rows[0])

    tuned = load_model(checkpoint)
    LoRAConfig.from_file(out).apply(tuned)
    load_lora_weights(tuned, out / "lit_model.pth.lora")
    after = held_out_metrics(tuned.eval(), val)  # the run's own last validation, from its saved weights
    assert after["val_accuracy"] == accuracy[-1]
    assert after["val_loss"] == pytest.approx(float(validations[-1]["val_loss"]), abs=1e-5)
    batch = val.collate(list(range(len(val))), torch.device("cpu"))
    with torch.no_grad():
        with lora_disabled(tuned):  # the reference: the trained model with LoRA off is the base model
            reference = pair_logps(tuned, *batch)
        expected, trained = pair_logps(base, *batch), pair_logps(tuned, *batch)
    torch.testing.assert_close(reference.chosen, expected.chosen)
    torch.testing.assert_close(reference.rejected, expected.rejected)
    assert float((trained.chosen - trained.rejected).mean()) > float((expected.chosen - expected.rejected).mean())


def test_full_run_resumes_like_an_uninterrupted_run_with_epochs_and_best_weights(setup, tmp_path, monkeypatch):
    checkpoint, data = setup
    args = fast_args(batch_size=4, micro_batch_size=2, epochs=2, save_interval=4, eval_interval=2,
                     learning_rate=1e-3, warmup_steps=1)  # 12 pairs: 3 steps an epoch, 6 in all

    def run(out, resume=None):
        objective = PreferenceObjective(PreferenceArgs(method="full"), lora=False)
        return finetune("full", checkpoint, data, tmp_path / out, args, resume=resume, objective=objective)

    whole = run("whole")
    real_save = Trainer.save_checkpoint

    def save_then_crash(trainer):
        step_dir = real_save(trainer)
        raise KeyboardInterrupt(f"simulated crash after {step_dir.name}")

    with monkeypatch.context() as m:
        m.setattr(Trainer, "save_checkpoint", save_then_crash)
        with pytest.raises(KeyboardInterrupt):
            run("resumed")
    assert (tmp_path / "resumed" / "checkpoints" / "step-000004" / "train_state.pth").is_file()
    # the resumed run's reference is the base model again (computed before the checkpoint is restored)
    resumed = run("resumed", resume="auto")

    assert whole["steps"] == resumed["steps"] == 6 and whole["epochs"] == 2
    a = torch.load(tmp_path / "whole" / "lit_model.pth", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "lit_model.pth", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    assert resumed["final_val_loss"] == pytest.approx(whole["final_val_loss"], abs=1e-6)
    assert whole["final_val_loss"] < math.log(2)
    assert whole["best_step"] is not None and (tmp_path / "whole" / "best" / "lit_model.pth").is_file()
    overfitting = json.loads((tmp_path / "whole" / "overfitting_summary.json").read_text())
    assert len(overfitting["per_epoch"]) == 2 and overfitting["best_val_loss"] == whole["best_val_loss"]
    assert (tmp_path / "whole" / "hyperparameters.yaml").read_text().startswith("# finetune/dpo.py settings")


def test_a_packed_run_trains_as_an_unpacked_one(setup, tmp_path, capsys):
    """--packing true: the same steps (sequences sharing rows, kept apart), so the same LoRA weights and metrics."""
    checkpoint, data = setup
    summaries, weights = [], []
    for packing in (False, True):
        args = fast_args(batch_size=4, micro_batch_size=4, max_iters=3, learning_rate=1e-2, packing=packing)
        out = tmp_path / f"packing_{packing}"
        summaries.append(finetune("lora", checkpoint, data, out, args, LoRAConfig(r=4, alpha=8, dropout=0.0),
                                  objective=PreferenceObjective(PreferenceArgs(), lora=True)))
        weights.append(torch.load(out / "lit_model.pth.lora", weights_only=True))
    assert "packing: each micro-batch's 8 sequences (4 pairs) share rows" in capsys.readouterr().out
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], atol=1e-5, rtol=1e-4)
    assert summaries[1]["final_val_loss"] == pytest.approx(summaries[0]["final_val_loss"], abs=1e-5)


def test_ddp_two_processes_equal_one_process(setup, tmp_path):
    # 12 pairs, batch 4: each rank scores 2 pairs a step (its own reference forward with LoRA off), sums reduced
    checkpoint, data = setup
    common = ["--checkpoint_dir", checkpoint, "--data_dir", data, "--batch_size", "4", "--epochs", "1",
              "--learning_rate", "1e-2", "--warmup_steps", "1", "--eval_interval", "3", "--lora_r", "4",
              "--lora_dropout", "0", "--precision", "32-true", "--sample_max_new_tokens", "0", "--logger", "csv"]
    runs = {"one": ["--micro_batch_size", "2"],
            "two": ["--devices", "2", "--strategy", "ddp", "--micro_batch_size", "1"]}
    for name, flags in runs.items():
        result = subprocess.run([sys.executable, ROOT / "finetune" / "dpo.py", *common, "--out_dir", tmp_path / name,
                                 *flags], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    one, two = metrics_rows(tmp_path / "one"), metrics_rows(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        for key in ("train_loss", "train_accuracy", "train_reward_margin", "val_loss", "val_accuracy"):
            if a[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-5), key

"""lit_gpt/train/loop.py: finetune in-process: loss falls, memorization, NaN stop, early stopping, max_iters, --compile,
NEFTune.

The runs use a tiny checkpoint with the real SmolLM2 tokenizer and prepared data in the lit_gpt.data contract format
(`checkpoint`, `capitals_data` in conftest.py; helpers.make_data)."""

import functools
import json
import shutil

import pytest
import torch

import lit_gpt.train.step
from helpers import SHARED, capital_pairs, fast_args, make_data, metrics_rows
from lit_gpt.infer.sampling import generate
from lit_gpt.lora import LoRAConfig
from lit_gpt.model import GPT
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.loop import TrainingDiverged, finetune
from lit_gpt.utils import UserError

# tiny training steps (see conftest.one_thread); slow: training runs to the end
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def alpaca_pairs(n: int, offset: int = 0, max_chars: int = 200):
    rows = json.loads((SHARED / "datasets" / "alpaca_gpt4" / "sample_999.json").read_text())[offset: offset + n]
    return [(r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"][:max_chars]) for r in rows]


def test_lora_loss_falls_and_out_dir_layout(tmp_path, checkpoint):
    data = make_data(tmp_path / "data", checkpoint, alpaca_pairs(24, max_chars=80), alpaca_pairs(4, offset=100),
                     name="alpaca")
    out = tmp_path / "out"
    summary = finetune("lora", checkpoint, data, out, fast_args(epochs=4, learning_rate=2e-2, eval_interval=2,
                                                                sample_max_new_tokens=4),
                       LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value", "mlp", "head")))
    rows = metrics_rows(out)
    train_losses = [float(r["train_loss"]) for r in rows if r.get("train_loss")]
    val_losses = [float(r["val_loss"]) for r in rows if r.get("val_loss")]
    val_steps = [int(r["iter"]) for r in rows if r.get("val_loss")]
    assert summary["steps"] == 12 and summary["epochs"] == 4 and len(train_losses) == 12
    assert sum(train_losses[-3:]) / 3 < 0.8 * sum(train_losses[:3]) / 3, train_losses
    assert val_losses[-1] < val_losses[0]
    assert val_steps == [2, 3, 4, 6, 8, 9, 10, 12]  # every 2 steps and at each epoch end (3 steps per epoch)
    assert {"iter", "epoch", "lr", "tokens_per_sec", "non_pad_share"} <= set(rows[0])
    for name in ("lit_model.pth.lora", "lora_config.json", "lit_config.json", "tokenizer.json",
                 "tokenizer_config.json", "prompt_style.json", "hyperparameters.yaml", "loss.png",
                 "train_summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "logs" / "tensorboard").glob("version_0/events.*"))
    lora_weights = torch.load(out / "lit_model.pth.lora", weights_only=True)
    assert lora_weights and all(k.endswith(("lora_A", "lora_B")) for k in lora_weights)
    assert "lm_head.lora_A" in lora_weights and "blocks.1.mlp.fc_2.lora_B" in lora_weights
    assert LoRAConfig.from_file(out).targets == ("query", "value", "mlp", "head")
    assert (out / "checkpoints" / "step-000012" / "train_state.pth").is_file()
    assert not list(out.rglob("*.tmp"))


def test_full_finetune_memorizes_16_examples(tmp_path, checkpoint, capitals_data):
    out = tmp_path / "out"
    # lr 1e-2: at 3e-2 the run was chaotic, float32 rounding alone (RMSNorm's backward in another order of
    # operations, gradients equal to 1e-6) moved its final loss from 0.006 to 0.052; at 1e-2 both end at 0.012
    summary = finetune("full", checkpoint, capitals_data, out,
                       fast_args(batch_size=16, micro_batch_size=16, epochs=150, learning_rate=1e-2, warmup_steps=3,
                                 weight_decay=0.0, eval_interval=1000))
    assert summary["final_train_loss"] < 0.05, summary
    # out_dir is a checkpoint directory: load it and check the model answers from memory (greedy)
    from lit_gpt.checkpoint import load_model

    model = load_model(out).eval()
    tokenizer = Tokenizer(out)
    prompt = tokenizer.encode("<|im_start|>user\nWhat is the capital of Kenya?<|im_end|>\n<|im_start|>assistant\n")
    answer = tokenizer.decode(generate(model, prompt, 12, temperature=0.0, eos_id=tokenizer.eos_id))
    assert answer == "Nairobi."


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, checkpoint, capitals_data):
    out = tmp_path / "out"
    args = fast_args(batch_size=4, micro_batch_size=4, epochs=4, learning_rate=1e30, grad_clip=None, save_interval=1,
                     warmup_steps=0)
    with pytest.raises(TrainingDiverged, match=r"not finite.*last good checkpoint is .*step-0000\d\d") as e:
        finetune("full", checkpoint, capitals_data, out, args)
    bad_step = int(str(e.value).split(":")[0].split()[1])
    steps = sorted(d.name for d in (out / "checkpoints").iterdir())
    assert steps[-1] == f"step-{bad_step - 1:06d}"  # the step before the bad one was saved and kept
    assert not (out / "lit_model.pth").exists()  # no final weights from a diverged run
    weights = torch.load(out / "checkpoints" / steps[-1] / "lit_model.pth", weights_only=True)
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_early_stopping_keeps_the_best_weights(tmp_path, checkpoint, capitals_data, monkeypatch):
    scripted = iter([3.0, 2.0, 2.5, 2.6, 2.7, 2.8])  # best at the 2nd validation, then 2 without improvement
    monkeypatch.setattr(lit_gpt.train.step, "validate", lambda *args, **kwargs: next(scripted))
    out = tmp_path / "out"
    summary = finetune("full", checkpoint, capitals_data, out,
                       fast_args(batch_size=8, epochs=5, eval_interval=1, early_stopping_patience=2))
    assert summary["stop_reason"] == "early_stopping" and summary["steps"] == 4
    assert summary["best_step"] == 2 and summary["weights_from_step"] == 2 and summary["best_val_loss"] == 2.0
    best = torch.load(out / "checkpoints" / "step-000002" / "lit_model.pth", weights_only=True)
    final = torch.load(out / "lit_model.pth", weights_only=True)
    last = torch.load(out / "checkpoints" / "step-000004" / "lit_model.pth", weights_only=True)
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert not all(torch.equal(last[k], final[k]) for k in last)


def test_max_iters_alone_trains_that_many_steps_across_epochs(tmp_path, checkpoint):
    """epochs=None (the scripts' default) with max_iters set runs max_iters steps, over as many epochs as needed;
    an explicit epochs count still stops first."""
    data = make_data(tmp_path / "data", checkpoint, alpaca_pairs(16, max_chars=60), alpaca_pairs(2, offset=100),
                     name="alpaca")  # 16 examples / batch 8 = 2 steps per epoch
    summary = finetune("full", checkpoint, data, tmp_path / "a", fast_args(epochs=None, max_iters=5), None)
    assert summary["steps"] == 5 and summary["epochs"] == 2.5
    summary = finetune("full", checkpoint, data, tmp_path / "b", fast_args(epochs=1, max_iters=5), None)
    assert summary["steps"] == 2


def test_compile_flag_compiles_the_blocks_and_trains_the_same(tmp_path, checkpoint, capitals_data, monkeypatch):
    """--compile true goes through GPT.compile_blocks, gives the eager run's losses, and the sample generation at
    validation (KV-cached, eager) still works; with FSDP it is refused in one line. Dynamo traces here with its eager
    backend (inductor's codegen takes minutes on 2 cores; its numerics are test_speed_equivalence's job)."""
    compiled = []
    original = GPT.compile_blocks
    monkeypatch.setattr(GPT, "compile_blocks", lambda self: (compiled.append(self), original(self))[-1])
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    losses = {}
    for flag in (False, True):
        out = tmp_path / f"compile-{flag}"
        finetune("lora", checkpoint, capitals_data, out, fast_args(max_iters=2, compile=flag, eval_interval=2,
                                                                    sample_max_new_tokens=3),
                 LoRAConfig(r=4, alpha=8, dropout=0.0))
        losses[flag] = [float(r["train_loss"]) for r in metrics_rows(out) if r.get("train_loss")]
    assert len(compiled) == 1 and compiled[0].compiled_blocks is not None
    assert len(losses[True]) == 2 and losses[True] == pytest.approx(losses[False], rel=1e-4)
    with pytest.raises(UserError, match="--compile true with --strategy fsdp"):
        finetune("lora", checkpoint, capitals_data, tmp_path / "fsdp", fast_args(compile=True, strategy="fsdp"),
                 LoRAConfig(r=4, alpha=8, dropout=0.0))


def test_16_bit_precision_on_a_cpu_is_refused(run_setup, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("the refusal is for machines without a GPU")
    checkpoint, data = run_setup
    with pytest.raises(UserError, match="--precision 16-mixed: float16 training needs a CUDA GPU"):
        finetune("full", checkpoint, data, tmp_path / "run", fast_args(precision="16-mixed"))
    assert not (tmp_path / "run").exists()  # a run that failed before its first checkpoint leaves no out_dir


def test_a_model_whose_embedding_lacks_the_special_tokens_is_refused_before_training(run_setup, tmp_path):
    checkpoint, data = run_setup
    small = shutil.copytree(checkpoint, tmp_path / "ckpt")
    config = json.loads((small / "lit_config.json").read_text())
    (small / "lit_config.json").write_text(json.dumps({**config, "vocab_size": 2}))  # <|im_end|> is 2
    with pytest.raises(UserError, match=r"'<\|im_end\|>' has id 2, outside the model's embedding"):
        finetune("lora", small, data, tmp_path / "run", fast_args(), LoRAConfig(r=4, alpha=8, dropout=0.0))
    assert not (tmp_path / "run").exists()


def test_no_test_split_is_said(run_setup, tmp_path, capsys):
    checkpoint, _ = run_setup
    data = make_data(tmp_path / "data", checkpoint, capital_pairs()[:4], [], name="no-test")
    finetune("full", checkpoint, data, tmp_path / "run", fast_args(batch_size=4, early_stopping_patience=2))
    assert ("test.pt has no examples: no validation, so no early stopping and no best checkpoint"
            in capsys.readouterr().out)


# ---- --logger --------------------------------------------------------------------------------------------------------
def test_logger_mlflow_gets_metrics_and_hyperparameters_once_csv_still_written(tmp_path, checkpoint, capitals_data,
                                                                               monkeypatch):
    import mlflow  # the mlflow extra, part of the test extra
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # set by the run: restored afterwards
    out = tmp_path / "out"
    finetune("lora", checkpoint, capitals_data, out, fast_args(max_iters=2, batch_size=4, logger="mlflow"))
    assert [int(r["iter"]) for r in metrics_rows(out)] == [1, 2]  # the CSV file is there whatever --logger says
    assert not (out / "logs" / "tensorboard").exists()

    client = mlflow.tracking.MlflowClient(tracking_uri=(out / "logs" / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("lit-gpt-data").experiment_id])
    assert run.info.run_name == "out" and run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.003" and run.data.params["logger"] == "mlflow"
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2]
    assert [m.value for m in losses] == pytest.approx([float(r["train_loss"]) for r in metrics_rows(out)])


def test_logger_wandb_offline(tmp_path, checkpoint, capitals_data, monkeypatch):
    import wandb  # noqa: F401 (the wandb extra, part of the test extra)
    monkeypatch.setenv("WANDB_MODE", "offline")  # no account, no network: the run is written under logs/wandb
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    finetune("lora", checkpoint, capitals_data, out, fast_args(max_iters=2, batch_size=4, logger="wandb"))
    (run_dir,) = (out / "logs" / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")  # the run's records (protobuf) that `wandb sync` would send
    records = log.read_bytes()
    assert b"learning_rate" in records and b"lora_r" in records  # the hyperparameters
    assert records.count(b"train_loss") >= 2 and b"val_loss" in records  # the metrics of both steps
    assert [int(r["iter"]) for r in metrics_rows(out)] == [1, 2]


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_logger_without_its_extra_is_one_line_naming_the_pip_command(tmp_path, checkpoint, capitals_data,
                                                                     monkeypatch, logger):
    monkeypatch.setitem(__import__("sys").modules, logger, None)  # as if the package were not installed
    with pytest.raises(UserError, match=rf"^--logger {logger} needs .*: pip install 'lit-gpt-data\[{logger}\]'$"):
        finetune("lora", checkpoint, capitals_data, tmp_path / "out", fast_args(logger=logger))
    assert not (tmp_path / "out").exists()


def test_neftune_noise_trains_differently_and_reproducibly(tmp_path, checkpoint, capitals_data):
    """--neftune_noise_alpha reaches the model: the losses move away from the noiseless run's, and a rerun with the
    same seed draws the same noise (torch's RNG is seeded per step)."""
    losses = {}
    for name, alpha in (("plain", None), ("noisy", 5.0), ("again", 5.0)):
        finetune("full", checkpoint, capitals_data, tmp_path / name,
                 fast_args(max_iters=2, epochs=None, neftune_noise_alpha=alpha))
        losses[name] = [float(r["train_loss"]) for r in metrics_rows(tmp_path / name) if r.get("train_loss")]
    assert len(losses["plain"]) == 2 and losses["noisy"] == losses["again"]
    assert all(a != b for a, b in zip(losses["noisy"], losses["plain"]))

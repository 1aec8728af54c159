"""finetune/lora.py and finetune/full.py on a CUDA GPU, run through the scripts' own command line in this process:
in bf16-true, bf16-mixed and 16-mixed the loss falls, `--resume auto` after a crash continues as the uninterrupted run
does, and the result merges (LoRA), generates and exports to GGUF; `--compile true`, `--quantize bnb.nf4` (QLoRA,
where bitsandbytes is importable) and `--devices 1 --strategy fsdp` train.

The model is a 2-layer GPT with a byte-level vocabulary (helpers.make_byte_level_checkpoint: nothing from ../shared/,
which the GPU machine lacks), the data 16 capital-city pairs. Skipped with the reason where no GPU is present;
scripts/dev/gpu_check.sh runs them where one is (LIT_GPT_CUDA_TESTS_DEVICE=cpu rehearses them on a CPU)."""

import importlib.util
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from helpers import (CUDA_TESTS_DEVICE as DEVICE, NO_CUDA, ROOT, capital_pairs, make_byte_level_checkpoint, make_data,
                     metrics_rows)
from lit_gpt.train.cli import finetune_command
from lit_gpt.train.loop import Trainer
from lit_gpt.utils import run_cli

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(NO_CUDA, reason="needs a CUDA GPU")]

PRECISIONS = ["bf16-true", "bf16-mixed", "16-mixed"]
# the tiny model's loss falls clearly within 8 steps (5.56 -> 3.2 on a CPU in bf16): LoRA on every target the
# random base has, full fine-tuning at a high learning rate
LEARNING_RATES = {"lora": "2e-2", "full": "1e-2"}
LORA_FLAGS = ["--lora_key", "true", "--lora_projection", "true", "--lora_mlp", "true", "--lora_head", "true"]
# 14 training examples in global batches of 4 (2 micro-batches of 2): 4 steps per epoch, 8 in all; a checkpoint
# every 3 steps (the crash comes after the first); validation (2 examples) at each epoch's end
RUN_FLAGS = ["--batch_size", "4", "--micro_batch_size", "2", "--epochs", "2", "--warmup_steps", "2",
             "--eval_interval", "1000", "--save_interval", "3", "--sample_max_new_tokens", "0", "--logger", "csv"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> "tuple[Path, Path]":
    checkpoint = make_byte_level_checkpoint(tmp_path_factory.mktemp("checkpoint"))
    pairs = capital_pairs()
    return checkpoint, make_data(tmp_path_factory.mktemp("data"), checkpoint, pairs[:14], pairs[14:], name="capitals")


@lru_cache(maxsize=None)
def script_main(relative_path: str):
    """The function `python <relative_path>` hands to run_cli (finetune/*.py build theirs from their constants)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location("cuda_test_" + path.stem + "_" + path.parent.name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if path.parent.name == "finetune":
        return finetune_command(path.stem, vars(module))
    return module.main


def cli(relative_path: str, *args) -> int:
    """`python <relative_path> *args`, in this process: its exit code."""
    try:
        run_cli(script_main(relative_path), args=[str(a) for a in args])
    except SystemExit as e:
        return e.code or 0
    return 0


def finetune(method: str, setup, out_dir: Path, *flags) -> int:
    checkpoint, data = setup
    return cli(f"finetune/{method}.py", "--checkpoint_dir", checkpoint, "--data_dir", data, "--out_dir", out_dir,
               "--learning_rate", LEARNING_RATES[method], *RUN_FLAGS, *(LORA_FLAGS if method == "lora" else []), *flags)


def train_losses(out_dir: Path) -> "list[float]":
    return [float(row["train_loss"]) for row in metrics_rows(out_dir) if row.get("train_loss")]


def assert_loss_falls(out_dir: Path) -> "list[float]":
    losses = train_losses(out_dir)
    assert len(losses) == 8 and sum(losses[-2:]) / 2 < 0.8 * losses[0], losses
    return losses


def weights(out_dir: Path, method: str) -> "dict[str, torch.Tensor]":
    return torch.load(out_dir / ("lit_model.pth.lora" if method == "lora" else "lit_model.pth"), weights_only=True)


def relative_difference(a: dict, b: dict) -> float:
    """|a - b| / |a| over all tensors together (float64 norms)."""
    assert a.keys() == b.keys() and a
    difference = sum(float((a[k].double() - b[k].double()).norm()) ** 2 for k in a) ** 0.5
    return difference / sum(float(a[k].double().norm()) ** 2 for k in a) ** 0.5


def needs_cuda_precision(precision: str) -> None:
    if precision.startswith("16-") and DEVICE != "cuda":
        pytest.skip("float16 training needs a CUDA GPU")


def crash_after_first_checkpoint(monkeypatch) -> None:
    real_save = Trainer.save_checkpoint

    def save_then_crash(trainer):
        step_dir = real_save(trainer)
        raise KeyboardInterrupt(f"simulated crash after {step_dir.name}")

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_crash)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("method", ["lora", "full"])
def test_finetune_falls_resumes_merges_generates_exports(method, precision, setup, tmp_path, monkeypatch, capsys,
                                                         record_property):
    """Resuming is exact where the kernels are: the resumed run's weights differ from the uninterrupted run's by no
    more than a second uninterrupted run's do (CUDA's atomics-based kernels, e.g. attention backward, are not
    bitwise reproducible; a resume that lost the optimizer state, the schedule or the data position is off by far
    more)."""
    needs_cuda_precision(precision)
    flags = ["--precision", precision]
    assert finetune(method, setup, tmp_path / "whole", *flags) == 0
    losses = assert_loss_falls(tmp_path / "whole")
    assert finetune(method, setup, tmp_path / "again", *flags) == 0
    with monkeypatch.context() as m:
        crash_after_first_checkpoint(m)
        assert finetune(method, setup, tmp_path / "resumed", *flags) == 130  # run_cli: interrupted
    assert (tmp_path / "resumed" / "checkpoints" / "step-000003" / "train_state.pth").is_file()
    assert finetune(method, setup, tmp_path / "resumed", *flags, "--resume", "auto") == 0

    whole = weights(tmp_path / "whole", method)
    noise = relative_difference(whole, weights(tmp_path / "again", method))
    resume_error = relative_difference(whole, weights(tmp_path / "resumed", method))
    record_property("train_losses", [round(x, 4) for x in losses])
    record_property("rerun_relative_difference", noise)
    record_property("resume_relative_difference", resume_error)
    assert resume_error <= 3 * noise + 1e-7, (resume_error, noise)
    assert train_losses(tmp_path / "resumed")[-5:] == pytest.approx(losses[-5:], rel=1e-2)

    result = tmp_path / "whole"
    if method == "lora":
        assert cli("scripts/merge_lora.py", "--lora_path", result / "lit_model.pth.lora",
                   "--out_dir", tmp_path / "merged") == 0
        assert cli("generate/lora.py", "--lora_path", result, "--prompt", "What is the capital of Peru?",
                   "--max_new_tokens", "8", "--temperature", "0", "--device", DEVICE) == 0
        result = tmp_path / "merged"
    else:
        assert cli("generate/full.py", "--checkpoint_dir", result, "--prompt", "What is the capital of Peru?",
                   "--max_new_tokens", "8", "--temperature", "0", "--device", DEVICE) == 0
    assert cli("scripts/export_gguf.py", "--checkpoint_dir", result, "--output_path", tmp_path / "model.gguf") == 0
    assert (tmp_path / "model.gguf").stat().st_size > 0
    assert "wrote" in capsys.readouterr().out


def test_qlora_bnb_nf4_trains(setup, tmp_path):
    """--quantize bnb.nf4: the frozen base in 4-bit NF4 (bitsandbytes), LoRA on top; its LoRA weights merge into the
    unquantized base."""
    if DEVICE != "cuda":
        pytest.skip("bitsandbytes' kernels need a CUDA GPU")
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (scripts/dev/gpu_wheels.txt)")
    assert finetune("lora", setup, tmp_path / "qlora", "--precision", "bf16-true", "--quantize", "bnb.nf4") == 0
    assert_loss_falls(tmp_path / "qlora")
    assert cli("scripts/merge_lora.py", "--lora_path", tmp_path / "qlora", "--out_dir", tmp_path / "merged") == 0


def test_fsdp_on_one_device_trains(setup, tmp_path):
    """`python finetune/full.py --devices 1 --strategy fsdp`: one shard (a process group of one), full state-dict
    checkpoints. In its own process: the process group and the environment variables it sets stay with it."""
    if DEVICE != "cuda":
        pytest.skip("the FSDP check is of CUDA")
    checkpoint, data = setup
    command = [sys.executable, ROOT / "finetune" / "full.py", "--checkpoint_dir", checkpoint, "--data_dir", data,
               "--out_dir", tmp_path / "fsdp", "--learning_rate", LEARNING_RATES["full"], *RUN_FLAGS,
               "--precision", "bf16-true", "--devices", "1", "--strategy", "fsdp"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_loss_falls(tmp_path / "fsdp")
    assert (tmp_path / "fsdp" / "lit_model.pth").is_file()


def test_compile_trains_like_eager(setup, tmp_path, record_property):
    """--compile true (torch.compile'd blocks, inductor's CUDA kernels) against the same run without it. Last in
    the file: compiling takes the longest, and a check stopped by its time limit has the other results."""
    flags = ["--precision", "bf16-true", "--max_iters", "4"]
    assert finetune("lora", setup, tmp_path / "eager", *flags) == 0
    assert finetune("lora", setup, tmp_path / "compiled", *flags, "--compile", "true") == 0
    eager, compiled = train_losses(tmp_path / "eager"), train_losses(tmp_path / "compiled")
    record_property("eager_losses", [round(x, 4) for x in eager])
    record_property("compiled_losses", [round(x, 4) for x in compiled])
    # bf16 rounds differently where inductor fuses kernels: on a CPU the losses drift apart by 1% in 4 steps
    assert len(compiled) == 4 and compiled == pytest.approx(eager, rel=5e-2)

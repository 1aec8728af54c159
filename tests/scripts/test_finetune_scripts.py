"""finetune/lora.py and finetune/full.py as a user runs them.

The constants ship equal to the library's defaults (TrainArgs, LoRAConfig) and are the CLI's defaults, a --config file
and flags beat them, bad input gives one line and exit 1, and 2 DDP processes (on one node, or on two "nodes" each
started by torchrun) train exactly like 1 process."""

import dataclasses
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ROOT, capital_pairs, fast_args, make_data, metrics_rows, run_as_main
from lit_gpt.lora import LoRAConfig
from lit_gpt.train.args import LORA_ONLY, TrainArgs, method_defaults
from lit_gpt.train.cli import script_constants
from lit_gpt.train.loop import finetune

# tiny training steps (see conftest.one_thread); slow: the finetune scripts in real processes
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
QUIET = ["--eval_interval", "1000", "--sample_max_new_tokens", "0", "--precision", "32-true"]


def run(args: list, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory, checkpoint) -> Path:
    pairs = capital_pairs()
    return make_data(tmp_path_factory.mktemp("data"), checkpoint, pairs[:14], pairs[14:], name="capitals")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_constants_are_the_library_defaults(method):
    # TrainArgs and LoRAConfig hold the defaults; the scripts repeat them as constants for users to edit
    spec = importlib.util.spec_from_file_location(f"finetune_{method}", ROOT / "finetune" / f"{method}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    constants, defaults = script_constants(vars(module)), method_defaults(method)
    differing = {name: (constants.get(name, "missing"), default) for name, default in defaults.items()
                 if name not in constants or constants[name] != default}
    assert not differing, f"finetune/{method}.py's constant -> TrainArgs/LoRAConfig default: {differing}"
    assert set(constants) == set(defaults)  # no constant the library does not know
    without = {f.name for f in dataclasses.fields(TrainArgs)} - set(constants)
    assert without == (set(LORA_ONLY) if method == "full" else set())  # the documented difference: no --quantize


def test_constants_are_defaults_config_and_flags_beat_them(tmp_path, checkpoint, data, capsys):
    script = tmp_path / "my_lora.py"
    source = (ROOT / "finetune" / "lora.py").read_text()
    assert "\nmax_iters = None" in source and "\nlearning_rate = 3e-4" in source
    script.write_text(source.replace("\nmax_iters = None", "\nmax_iters = 2"))

    code, help_text, _ = run_as_main(capsys, script, "--help")
    options = help_text[help_text.index("options:"):]
    max_iters_help = options[options.index("--max_iters"):options.index("--epochs")]
    assert code == 0 and "default: 2" in max_iters_help  # the CLI shows the edited constant
    assert "--lora_r" in help_text and "--quantize" in help_text

    config = tmp_path / "cfg.yaml"
    config.write_text("lora_r: 2\nlearning_rate: 0.005\nbatch_size: 4\n")
    out = tmp_path / "out"
    code, _, err = run_as_main(capsys, script, "--checkpoint_dir", checkpoint, "--data_dir", data, "--out_dir", out,
                               "--config", config, "--learning_rate", "0.002", "--micro_batch_size", "2", *QUIET)
    assert code == 0, err[-3000:]
    hparams = yaml.safe_load((out / "hyperparameters.yaml").read_text())
    assert hparams["max_iters"] == 2  # edited constant
    assert hparams["lora_r"] == 2 and hparams["batch_size"] == 4  # config file beats constants
    assert hparams["learning_rate"] == 0.002  # a flag after --config beats it
    assert hparams["lora_alpha"] == 16 and hparams["checkpoint_dir"] == str(checkpoint.resolve())
    assert LoRAConfig.from_file(out).r == 2
    assert [int(r["iter"]) for r in metrics_rows(out)] == [1, 2]
    assert (out / "lit_model.pth.lora").is_file()
    # the run's settings reload
    code, printed, err = run_as_main(capsys, script, "--config", out / "hyperparameters.yaml", "--print_config")
    assert code == 0 and yaml.safe_load(printed)["lora_r"] == 2, err


def test_bad_input_one_line_exit_1(tmp_path, checkpoint, data, capsys):
    no_train = tmp_path / "no_train"
    no_train.mkdir()
    (no_train / "manifest.json").write_text("{}")
    other_tokenizer = make_data(tmp_path / "other", checkpoint, capital_pairs()[:2], [], fingerprint="0123456789abcdef")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    lora, full = ROOT / "finetune" / "lora.py", ROOT / "finetune" / "full.py"
    (tmp_path / "link").symlink_to(checkpoint)
    base_weights = (checkpoint / "lit_model.pth").read_bytes()
    cases = {  # (script, data_dir, out_dir, extra flags) -> what the message must name
        "train.pt": (lora, no_train, tmp_path / "o1", []),
        "another tokenizer": (full, other_tokenizer, tmp_path / "o2", []),
        "a_file": (lora, data, a_file / "out", []),
        "CUDA": (lora, data, tmp_path / "o4", ["--quantize", "bnb.nf4"]),
        # the output would replace the base weights: refused, also through a symlink
        f"--out_dir {checkpoint} is the same path as --checkpoint_dir": (full, data, checkpoint, []),
        f"(a link to {checkpoint.resolve()}) is the same path as --checkpoint_dir": (full, data, tmp_path / "link", []),
        "lies inside --data_dir": (lora, data, data / "run", []),
    }
    for name, (script, data_dir, out_dir, extra) in cases.items():
        code, _, stderr = run_as_main(capsys, script, "--checkpoint_dir", checkpoint, "--data_dir", data_dir,
                                      "--out_dir", out_dir, *extra)
        assert code == 1, (name, stderr)
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
        assert name in stderr, stderr
    assert (checkpoint / "lit_model.pth").read_bytes() == base_weights


def test_ddp_two_processes_equal_one_process_same_global_batch(tmp_path, checkpoint, data):
    # 14 examples, batch 8: steps of 8 and 6 examples (the short one spreads 2,2,1,1 over 2 ranks x 2 micro-batches)
    common = dict(batch_size=8, epochs=2, learning_rate=1e-2, eval_interval=2, warmup_steps=1)
    lora = LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value", "head"))
    one = finetune("lora", checkpoint, data, tmp_path / "one", fast_args(micro_batch_size=4, **common), lora)

    flags = [f"--{k}={v}" for k, v in common.items()]
    result = run([ROOT / "finetune" / "lora.py", "--checkpoint_dir", checkpoint, "--data_dir", data, "--out_dir",
                  tmp_path / "two", "--devices", "2", "--strategy", "ddp", "--micro_batch_size", "2",
                  "--precision", "32-true", "--sample_max_new_tokens", "0", "--lora_r", "4", "--lora_alpha", "8",
                  "--lora_dropout", "0", "--lora_head", "true", *flags])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 device(s), 2 micro-batch(es) of 2" in result.stdout

    rows_one, rows_two = metrics_rows(tmp_path / "one"), metrics_rows(tmp_path / "two")
    assert len(rows_one) == len(rows_two) == 4
    for a, b in zip(rows_one, rows_two):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=1e-5)
        if a["val_loss"]:
            assert float(a["val_loss"]) == pytest.approx(float(b["val_loss"]), abs=1e-5)
    assert float(rows_one[-1]["train_loss"]) < float(rows_one[0]["train_loss"])
    w1 = torch.load(tmp_path / "one" / "lit_model.pth.lora", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "lit_model.pth.lora", weights_only=True)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=0)
    assert one["steps"] == 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_under_torchrun_equal_one_process(tmp_path, checkpoint, data):
    """2 "nodes" x 1 process on 127.0.0.1 (gloo), launched as on a cluster: one torchrun per node with --nnodes 2
    --node_rank 0/1 and the same --master_addr/--master_port, the script told --devices 1 --num_nodes 2. Same
    weights as one process with the same global batch."""
    common = dict(batch_size=8, max_iters=2, learning_rate=1e-2, warmup_steps=1)
    lora = LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value"))
    finetune("lora", checkpoint, data, tmp_path / "one", fast_args(micro_batch_size=4, **common), lora)

    port = free_port()
    script = [ROOT / "finetune" / "lora.py", "--checkpoint_dir", checkpoint, "--data_dir", data, "--out_dir",
              tmp_path / "two", "--devices", "1", "--num_nodes", "2", "--strategy", "ddp", "--micro_batch_size", "4",
              *QUIET, "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0", *(f"--{k}={v}" for k, v in
                                                                                     common.items())]
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank",
                               str(rank), "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port",
                               str(port), *map(str, script)], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (stdout, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    assert "2 device(s), 1 micro-batch(es) of 4" in outputs[0][0]  # rank 0 prints; 2 ranks x 4 = the batch of 8
    w1 = torch.load(tmp_path / "one" / "lit_model.pth.lora", weights_only=True)
    w2 = torch.load(tmp_path / "two" / "lit_model.pth.lora", weights_only=True)
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=0)
    losses_one = [float(r["train_loss"]) for r in metrics_rows(tmp_path / "one")]
    assert [float(r["train_loss"]) for r in metrics_rows(tmp_path / "two")] == pytest.approx(losses_one, abs=1e-5)
    assert len(losses_one) == 2

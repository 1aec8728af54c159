"""The training loop: batching plan, schedule, loss falls, memorization, resume == uninterrupted, NaN stop.

Helpers at the top build a tiny checkpoint with a real tokenizer and prepared data in the lit_gpt.data contract
format (train.pt/test.pt = list of example dicts, manifest.json); test_finetune_scripts.py uses them too.
"""

import functools
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import lit_gpt.train.loop
from conftest import SHARED, tiny_config
from lit_gpt.data.order import epoch_order
from lit_gpt.infer.sampling import generate
from lit_gpt.lora import LoRAConfig
from lit_gpt.model import GPT
from lit_gpt.precision import choose_precision, quantization_plugin
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.args import TrainArgs
from lit_gpt.train.dataset import TrainingSet, epoch_batches, padding_stats, split_batch
from lit_gpt.train.loop import Trainer, TrainingDiverged, finetune
from lit_gpt.train.step import lr_factor, validate
from lit_gpt.utils import UserError

TOKENIZER = SHARED / "tokenizers" / "smollm2"
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Chile", "Santiago"),
            ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Poland", "Warsaw"), ("Greece", "Athens"),
            ("Cuba", "Havana"), ("Iran", "Tehran"), ("Nepal", "Kathmandu"), ("Ghana", "Accra")]


def make_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """A 2-layer, 32-wide GPT (GQA, tied embeddings) with the real SmolLM2 tokenizer (49,152 tokens)."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER.iterdir():
        if f.name != "config.json":
            shutil.copyfile(f, directory / f.name)
    config = tiny_config(vocab_size=49152, tie_embeddings=True, block_size=256, **overrides)
    config.save(directory / "lit_config.json")
    torch.manual_seed(seed)
    torch.save(GPT(config).state_dict(), directory / "lit_model.pth")
    return directory


def chatml_example(tokenizer: Tokenizer, instruction: str, output: str, source: str = "test") -> dict:
    """One prepared example: ChatML prompt masked (-100), answer + <|im_end|> trained."""
    prompt = tokenizer.encode(f"<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n").tolist()
    answer = tokenizer.encode_ids(output) + [tokenizer.eos_id]
    ids = torch.tensor(prompt + answer)
    labels = torch.tensor([-100] * len(prompt) + answer)
    return {"input_ids": ids, "labels": labels, "source": source, "instruction": instruction, "input": "",
            "output": output, "id": f"{source}-{abs(hash(instruction)) % 10**8}"}


def make_data(directory: Path, checkpoint_dir: Path, train: list, test: list, name: str = "tiny",
              fingerprint: str = None) -> Path:
    """train/test: lists of (instruction, output) pairs, written in the prepared-data contract format."""
    tokenizer = Tokenizer(checkpoint_dir)
    directory.mkdir(parents=True, exist_ok=True)
    examples = {split: [chatml_example(tokenizer, i, o) for i, o in pairs] for split, pairs in
                (("train", train), ("test", test))}
    for split, rows in examples.items():
        torch.save(rows, directory / f"{split}.pt")
    manifest = {"name": name, "prompt_style": "chatml", "tokenizer_fingerprint": fingerprint or tokenizer.fingerprint,
                "tokenizer_dir": str(checkpoint_dir), "max_seq_length": 256, "mask_inputs": True,
                "truncation": "right", "fingerprint": f"test-{name}-{len(train)}-{len(test)}",
                "counts": {"train": len(train), "test": len(test)}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def capital_pairs():
    return [(f"What is the capital of {country}?", f"{city}.") for country, city in CAPITALS]


def alpaca_pairs(n: int, offset: int = 0, max_chars: int = 200):
    rows = json.loads((SHARED / "datasets" / "alpaca_gpt4" / "sample_999.json").read_text())[offset: offset + n]
    return [(r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"][:max_chars]) for r in rows]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread makes these tiny steps ~4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def capitals_data(tmp_path_factory, checkpoint) -> Path:
    pairs = capital_pairs()
    return make_data(tmp_path_factory.mktemp("capitals"), checkpoint, pairs, pairs[:2], name="capitals")


def fast_args(**overrides) -> TrainArgs:
    kw = dict(learning_rate=3e-3, batch_size=8, micro_batch_size=4, epochs=1, warmup_steps=2, eval_interval=1000,
              save_interval=1000, sample_max_new_tokens=0, precision="32-true")
    kw.update(overrides)
    return TrainArgs(**kw)


def metrics_rows(out_dir: Path) -> list:
    import csv

    files = sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv"))
    rows = []
    for f in files:
        rows += list(csv.DictReader(f.open()))
    return rows


# ---- the batching plan ----------------------------------------------------------------------------------------------
def _examples(lengths):
    raw = [{"input_ids": torch.arange(1, n + 2), "labels": torch.arange(1, n + 2)} for n in lengths]
    return TrainingSet(raw, max_seq_length=10_000, source="x", vocab_size=100_000)


def test_epoch_visits_every_example_once_and_reshuffles():
    data = _examples([(i * 37) % 50 + 1 for i in range(1000)])
    e0 = epoch_batches(data, 0, seed=1, order="shuffle", batch_size=16)
    e1 = epoch_batches(data, 1, seed=1, order="shuffle", batch_size=16)
    for batches in (e0, e1):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        assert len(batches) == math.ceil(1000 / 16)
    assert e0 != e1  # new order each epoch
    assert e0 == epoch_batches(data, 0, seed=1, order="shuffle", batch_size=16)  # deterministic
    assert e0 != epoch_batches(data, 0, seed=2, order="shuffle", batch_size=16)


def test_length_grouping_cuts_padding():
    data = _examples([(i * 7919) % 200 + 1 for i in range(2000)])
    micro = 4

    def share(batches):
        real = padded = 0
        for b in batches:
            r, p = padding_stats(data, split_batch(b, len(b) // micro or 1))
            real, padded = real + r, padded + p
        return real / padded

    grouped = share(epoch_batches(data, 0, 0, "shuffle", 32))
    # as_given keeps the batches' membership, only sorting inside them
    given = epoch_batches(data, 0, 0, "as_given", 32)
    assert [sorted(b) for b in given] == [list(range(s, min(s + 32, 2000))) for s in range(0, 2000, 32)]
    unsorted_share = share([list(range(s, min(s + 32, 2000))) for s in range(0, 2000, 32)])
    assert grouped > 0.95 > share(given) > unsorted_share
    print(f"non-pad share: length-grouped {grouped:.3f}, sorted within batch {share(given):.3f}, "
          f"none {unsorted_share:.3f}")


def test_split_batch_even_and_order_hook():
    assert split_batch(list(range(10)), 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert split_batch([0], 3) == [[0], [], []]
    assert epoch_order([{}] * 5, epoch=3, seed=0, order="as_given") == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match="--order 'sideways'"):
        epoch_order([{}] * 5, 0, 0, "sideways")


def test_lr_schedule_warmup_then_cosine_to_zero():
    factors = [lr_factor(s, 10, 100) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert factors[-1] < 0.01


def test_examples_shift_truncate_and_drop():
    raw = [{"input_ids": torch.tensor([1, 5, 6, 7, 2]), "labels": torch.tensor([-100, -100, 6, 7, 2])},
           {"input_ids": torch.tensor([1, 5, 6]), "labels": torch.tensor([-100, -100, -100])}]
    data = TrainingSet(raw, max_seq_length=3, source="t.pt", vocab_size=10)
    assert len(data) == 1 and data.dropped == 1 and data.truncated == 1
    assert data.inputs[0].tolist() == [1, 5, 6] and data.targets[0].tolist() == [-100, 6, 7]
    input_ids, targets = data.collate([0, 0], torch.device("cpu"))
    assert input_ids.shape == (2, 3) and targets[0].tolist() == [-100, 6, 7]
    with pytest.raises(UserError, match="t.pt example 0"):
        TrainingSet([{"input_ids": torch.tensor([1, 99])}], 8, "t.pt", 10)


class FakeRank:
    """The bits of Fabric that `validate` uses, for rank `rank` of `world`; all_reduce records the local sums."""

    def __init__(self, rank: int, world: int):
        self.global_rank, self.world_size, self.device, self.reduced = rank, world, torch.device("cpu"), []

    def all_reduce(self, tensor, reduce_op):
        self.reduced.append(tensor.clone())
        return tensor


def test_validation_splits_the_test_set_over_ranks_and_reduces_sums():
    torch.manual_seed(0)
    model = GPT(tiny_config())
    raw = [{"input_ids": torch.randint(0, 256, (n,)), "labels": torch.randint(0, 256, (n,))} for n in (5, 9, 3, 7, 12)]
    data = TrainingSet(raw, max_seq_length=64, source="test.pt", vocab_size=256)
    one = FakeRank(0, 1)
    loss = validate(one, model, data, micro_batch_size=2)
    ranks = [FakeRank(r, 2) for r in range(2)]
    for fake in ranks:
        validate(fake, model, data, micro_batch_size=2)
    torch.testing.assert_close(ranks[0].reduced[0] + ranks[1].reduced[0], one.reduced[0])
    assert one.reduced[0][1] == sum(data.n_targets) and loss == pytest.approx(float(one.reduced[0][0] / sum(data.n_targets)))
    assert ranks[1].reduced[0][1] > 0  # both ranks did part of the work
    limited = FakeRank(0, 1)
    validate(limited, model, data, micro_batch_size=2, eval_iters=1)  # only the first 2 examples
    assert limited.reduced[0][1] == data.n_targets[0] + data.n_targets[1]
    assert model.training  # validate restores the mode it found


# ---- training runs --------------------------------------------------------------------------------------------------
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
    summary = finetune("full", checkpoint, capitals_data, out,
                       fast_args(batch_size=16, micro_batch_size=16, epochs=150, learning_rate=3e-2, warmup_steps=3,
                                 weight_decay=0.0, eval_interval=1000))
    assert summary["final_train_loss"] < 0.05, summary
    # out_dir is a checkpoint directory: load it and check the model answers from memory (greedy)
    from lit_gpt.checkpoint import load_model

    model = load_model(out).eval()
    tokenizer = Tokenizer(out)
    prompt = tokenizer.encode("<|im_start|>user\nWhat is the capital of Kenya?<|im_end|>\n<|im_start|>assistant\n")
    answer = tokenizer.decode(generate(model, prompt, 12, temperature=0.0, eos_id=tokenizer.eos_id))
    assert answer == "Nairobi."


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
    monkeypatch.setattr(lit_gpt.train.loop, "validate", lambda *args, **kwargs: next(scripted))
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


def test_precision_default_follows_the_hardware(tmp_path):
    amx = tmp_path / "cpuinfo_amx"
    amx.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    avx2 = tmp_path / "cpuinfo_avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert choose_precision(None, cuda=False, cpuinfo=amx) == "bf16-true"
    assert choose_precision(None, cuda=False, cpuinfo=avx2) == "32-true"
    assert choose_precision("bf16-mixed", cuda=False, cpuinfo=avx2) == "bf16-mixed"
    with pytest.raises(UserError, match="--precision 'fp8'"):
        choose_precision("fp8")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        quantization_plugin("bnb.nf4", "bf16-true", cuda=False)
    with pytest.raises(UserError, match="cannot be combined"):
        quantization_plugin("bnb.nf4", "bf16-mixed", cuda=True)
    with pytest.raises(UserError, match="not supported"):
        quantization_plugin("bnb.nf3", "bf16-true", cuda=True)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install bitsandbytes"):
            quantization_plugin("bnb.nf4", "bf16-true", cuda=True)


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

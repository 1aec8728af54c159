"""lit_gpt/infer/load.py: `load`, the one way to load a model for inference: a plain checkpoint, a LoRA run merged into
its base (the same logits as the un-merged LoRA layers), a full fine-tune's out_dir; and one line for each mistake."""

import shutil

import pytest
import torch

from helpers import fast_args, make_checkpoint
from lit_gpt.checkpoint import load_model
from lit_gpt.infer.load import Loaded, load
from lit_gpt.lora import LoRAConfig, LoRALinear
from lit_gpt.lora_merge import find_lora, merged_model, save_merged_checkpoint, unmerged_model
from lit_gpt.train.loop import finetune
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread

IDX = torch.tensor([[1, 17, 300, 4096, 9, 2]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDX)


def test_plain_checkpoint(run_setup, capsys):
    checkpoint, _ = run_setup
    loaded = load(checkpoint, device="cpu", precision="32-true")
    assert isinstance(loaded, Loaded) and not loaded.model.training
    assert loaded.model.wte.weight.dtype == torch.float32 and loaded.device == torch.device("cpu")
    assert loaded.checkpoint_dir == checkpoint and loaded.lora_path is None and loaded.description == str(checkpoint)
    assert loaded.tokenizer.vocab_size == 49152 and loaded.style.name == "smollm2"  # no prompt_style.json: the default
    torch.testing.assert_close(logits(loaded.model), logits(load_model(checkpoint)), atol=0, rtol=0)
    assert load(checkpoint, device="cpu", precision="bf16-true").model.wte.weight.dtype == torch.bfloat16
    loaded.print_summary()
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"Loaded {checkpoint} (prompt style smollm2) in ") and "torch.float32, cpu" in line


def test_lora_run_is_merged_and_equals_the_unmerged_lora_layers(run_setup, lora_run):
    checkpoint, _ = run_setup
    loaded = load(lora_path=lora_run, device="cpu", precision="32-true")  # the base recorded beside the LoRA file
    assert loaded.checkpoint_dir.resolve() == checkpoint.resolve()
    assert loaded.lora_path == lora_run / "lit_model.pth.lora" and "r=4" in loaded.description
    assert loaded.style.name == "chatml"  # the run's prompt_style.json, not the base's
    assert not loaded.model.training and not any(isinstance(m, LoRALinear) for m in loaded.model.modules())
    assert loaded.model.config.tie_embeddings is False  # LoRA on the tied head: merged, the head has its own weight
    unmerged = unmerged_model(find_lora(lora_run))
    assert any(isinstance(m, LoRALinear) for m in unmerged.modules())
    torch.testing.assert_close(logits(loaded.model), logits(unmerged), atol=1e-5, rtol=0)
    assert (logits(loaded.model) - logits(load_model(checkpoint))).abs().max() > 1e-3  # the LoRA moved the model
    # checkpoint_dir overrides the recorded base; merged in the base's dtype, then cast
    moved = shutil.copytree(checkpoint, lora_run.parent / "moved-base")
    loaded = load(moved, lora_run, device="cpu", precision="bf16-true")
    assert loaded.checkpoint_dir == moved
    torch.testing.assert_close(logits(loaded.model), logits(merged_model(find_lora(lora_run)).bfloat16()), atol=0,
                               rtol=0)


def test_full_finetune_out_dir_is_a_checkpoint(run_setup, tmp_path):
    checkpoint, data = run_setup
    out = tmp_path / "full"
    finetune("full", checkpoint, data, out, fast_args(learning_rate=1e-2, max_iters=1))
    loaded = load(out, device="cpu", precision="32-true")
    assert loaded.checkpoint_dir == out and loaded.lora_path is None and loaded.style.name == "chatml"
    torch.testing.assert_close(logits(loaded.model), logits(load_model(out)), atol=0, rtol=0)
    assert (logits(loaded.model) - logits(load_model(checkpoint))).abs().max() > 1e-3


def test_lora_on_another_base_is_refused(lora_run, tmp_path):
    other = make_checkpoint(tmp_path / "wide", n_embd=64)
    with pytest.raises(UserError, match="another base model.*n_embd 32 != 64"):
        load(other, lora_run, device="cpu")
    bare = tmp_path / "bare"  # only the two LoRA files, no lit_config.json to compare: the tensor shapes tell
    bare.mkdir()
    for name in ("lit_model.pth.lora", "lora_config.json"):
        shutil.copy(lora_run / name, bare / name)
    with pytest.raises(UserError, match="another base model") as error:
        load(other, bare, device="cpu")
    assert "shape" in str(error.value)


def _copy_run(lora_run, tmp_path):
    return shutil.copytree(lora_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints", "logs"))


MISTAKES = {  # name -> (what to do to the files, load's arguments, fragments of the one line)
    "nothing given": (None, lambda run, tmp: {}, ["--checkpoint_dir", "--lora_path"]),
    "a LoRA run as a checkpoint": (None, lambda run, tmp: {"checkpoint_dir": run}, ["generate/lora.py"]),
    "no checkpoint dir": (None, lambda run, tmp: {"checkpoint_dir": tmp / "nowhere"}, ["not found"]),
    "no LoRA file": (None, lambda run, tmp: {"lora_path": tmp / "nowhere" / "lit_model.pth.lora"}, ["not found"]),
    "no hyperparameters.yaml": (lambda run: (run / "hyperparameters.yaml").unlink(), lambda run, tmp:
                                {"lora_path": run}, ["hyperparameters.yaml", "--checkpoint_dir"]),
    "not YAML": (lambda run: (run / "hyperparameters.yaml").write_text("a: [b"), lambda run, tmp: {"lora_path": run},
                 ["not valid YAML"]),
    "recorded base gone": (lambda run: (run / "hyperparameters.yaml").write_text("checkpoint_dir: /gone\n"),
                           lambda run, tmp: {"lora_path": run}, ["/gone", "--checkpoint_dir"]),
    "rank differs from its config": (lambda run: LoRAConfig(r=8, alpha=8, targets=("query", "value", "head"))
                                     .save(run), lambda run, tmp: {"lora_path": run}, ["rank 4", "r=8"]),
    "not a LoRA state dict": (lambda run: torch.save([1, 2], run / "lit_model.pth.lora"),
                              lambda run, tmp: {"lora_path": run}, ["not a LoRA state dict"]),
    "not a device": (None, lambda run, tmp: {"lora_path": run, "device": "gpu0"}, ["--device"]),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_mistake_is_one_line(mistake, lora_run, tmp_path):
    change, arguments, fragments = MISTAKES[mistake]
    run = _copy_run(lora_run, tmp_path)
    if change is not None:
        change(run)
    with pytest.raises(UserError) as error:
        load(**{"device": "cpu", **arguments(run, tmp_path)})
    message = str(error.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_a_style_or_vocabulary_the_tokenizer_cannot_serve_is_refused_before_the_weights_load(run_setup, tmp_path,
                                                                                             tiny_checkpoint_dir):
    checkpoint = shutil.copytree(run_setup[0], tmp_path / "ckpt", ignore=shutil.ignore_patterns("lit_model.pth"))
    with pytest.raises(UserError, match=r"prompt style llama3 needs '<\|start_header_id\|>' as one special token"):
        load(checkpoint, device="cpu", prompt_style="llama3")  # no weights: the refusal comes first
    assert load(run_setup[0], device="cpu", prompt_style="chatml").style.name == "chatml"  # the style asked for
    small = tiny_checkpoint_dir("gpt2", vocab_size=50000)  # <|endoftext|> (50256) past the embedding
    with pytest.raises(UserError, match="BOS has id 50256, outside the model's embedding .* of 50000 tokens"):
        load(small, device="cpu", prompt_style="alpaca")


def test_lora_merged_already_is_refused(lora_run, tmp_path):
    merged = save_merged_checkpoint(find_lora(lora_run), tmp_path / "merged")
    with pytest.raises(UserError, match="already merged into") as error:  # the update would be added twice
        load(merged, lora_run, device="cpu")
    assert "\n" not in str(error.value)

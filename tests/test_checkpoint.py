"""lit_gpt/checkpoint.py: the one checkpoint format (lit_config.json + lit_model.pth + tokenizer files)."""

import pytest
import torch

from helpers import tiny_config
from lit_gpt.checkpoint import (check_checkpoint_dir, copy_tokenizer_files, load_model, load_weights,
                                save_checkpoint)
from lit_gpt.config import Config
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, PROMPT_STYLE_FILE, TOKENIZER_FILES
from lit_gpt.model import GPT
from lit_gpt.prompts.styles import load_prompt_style
from lit_gpt.utils import UserError


def test_save_then_load_gives_the_same_model_tied_head_stored_once(tmp_path, tiny_checkpoint_dir):
    tokenizer_dir = tiny_checkpoint_dir("smollm2")
    config = tiny_config(vocab_size=49152, tie_embeddings=True)
    torch.manual_seed(0)
    model = GPT(config)
    out = save_checkpoint(tmp_path / "ckpt", config, model.state_dict(), tokenizer_dir, "chatml")
    stored = torch.load(out / LIT_WEIGHTS_FILE, weights_only=True)
    assert "lm_head.weight" not in stored  # the head is the embedding
    assert Config.from_file(out / LIT_CONFIG_FILE) == config
    assert load_prompt_style(out).name == "chatml" and (out / PROMPT_STYLE_FILE).is_file()
    assert (out / "tokenizer.json").read_bytes() == (tokenizer_dir / "tokenizer.json").read_bytes()
    loaded = load_model(out)
    assert loaded.lm_head.weight is loaded.wte.weight
    idx = torch.randint(0, config.vocab_size, (1, 7))
    torch.testing.assert_close(loaded(idx), model(idx))
    # the file without the head loads into a fresh model: load_weights ties the head to the embedding again
    plain = GPT(config)
    load_weights(plain, stored, source=out / LIT_WEIGHTS_FILE)
    torch.testing.assert_close(plain(idx), model(idx))


def test_copy_tokenizer_files_removes_stale_ones_only_when_asked(tmp_path, tiny_checkpoint_dir):
    source = tiny_checkpoint_dir("smollm2")
    target = tmp_path / "target"
    target.mkdir()
    (target / "tokenizer.model").write_text("left from another model")
    copied = copy_tokenizer_files(source, target)
    assert copied and set(copied) <= set(TOKENIZER_FILES)
    assert all((target / name).read_bytes() == (source / name).read_bytes() for name in copied)
    assert (target / "tokenizer.model").is_file()
    copy_tokenizer_files(source, target, remove_others=True)
    assert not (target / "tokenizer.model").exists()
    assert not list(target.glob(".*.tmp"))  # atomic copies leave no temp files


def test_check_checkpoint_dir_names_the_missing_piece(tmp_path):
    with pytest.raises(UserError, match="checkpoint directory not found"):
        check_checkpoint_dir(tmp_path / "nope")
    with pytest.raises(UserError, match="no lit_model.pth; convert it"):
        check_checkpoint_dir(tmp_path)
    assert check_checkpoint_dir(tmp_path, need_weights=False) == tmp_path
    torch.save({}, tmp_path / LIT_WEIGHTS_FILE)
    with pytest.raises(UserError, match="no lit_config.json"):
        check_checkpoint_dir(tmp_path)


def test_check_checkpoint_dir_for_data_needs_only_the_directory(tmp_path):
    """Data preparation reads only the tokenizer: no weights needed, and the hints say so."""
    with pytest.raises(UserError, match="--checkpoint_dir is required: tokenization is model-specific"):
        check_checkpoint_dir(None, tokenizer_only=True)
    with pytest.raises(UserError, match=r"--tokenizer_only is enough for data"):
        check_checkpoint_dir(tmp_path / "nope", tokenizer_only=True)
    assert check_checkpoint_dir(tmp_path, tokenizer_only=True) == tmp_path


def test_load_weights_refuses_weights_of_another_shape(tmp_path):
    small, wide = tiny_config(), tiny_config(n_embd=64)
    with pytest.raises(UserError, match="weights do not fit the model config"):
        load_weights(GPT(small), GPT(wide).state_dict(), source="wide.pth")
    state = GPT(small).state_dict()
    del state["ln_f.weight"]
    with pytest.raises(UserError, match="missing"):
        load_weights(GPT(small), state, source="partial.pth")
    load_weights(GPT(small), state, source="partial.pth", strict=False)  # allowed when asked for


def test_a_tied_checkpoint_loads_the_plain_pytorch_way(tmp_path, tiny_checkpoint_dir):
    """nanoGPT habit: GPT(config).load_state_dict(torch.load("lit_model.pth")), though the file stores the tied
    head once (as wte.weight)."""
    config = tiny_config(vocab_size=49152, tie_embeddings=True)
    torch.manual_seed(0)
    model = GPT(config)
    out = save_checkpoint(tmp_path / "ckpt", config, model.state_dict(), tiny_checkpoint_dir("smollm2"), "chatml")
    fresh = GPT(config)
    fresh.load_state_dict(torch.load(out / LIT_WEIGHTS_FILE, weights_only=True))  # strict: nothing missing
    assert fresh.lm_head.weight is fresh.wte.weight  # still one matrix
    idx = torch.randint(0, config.vocab_size, (1, 5))
    torch.testing.assert_close(fresh(idx), model(idx))
    untied = GPT(tiny_config(vocab_size=49152))
    state = untied.state_dict()
    del state["lm_head.weight"]
    with pytest.raises(RuntimeError, match="lm_head.weight"):  # an untied model still needs its own head
        GPT(tiny_config(vocab_size=49152)).load_state_dict(state)


def test_a_lora_run_is_sent_to_merge_lora(tmp_path):
    run = tmp_path / "out" / "lora"
    run.mkdir(parents=True)
    (run / "lit_model.pth.lora").write_bytes(b"")
    (run / "lit_config.json").write_text("{}")
    with pytest.raises(UserError) as e:
        check_checkpoint_dir(run)  # what scripts/export_gguf.py and the converters check first
    assert str(e.value) == (f"{run}: a LoRA run (lit_model.pth.lora), not a complete checkpoint; merge it into its "
                            f"base first with `python scripts/merge_lora.py --lora_path {run} --out_dir {run}/merged` "
                            f"and use {run}/merged")

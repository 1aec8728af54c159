"""lit_gpt/lora_merge.py: merging LoRA into its base. The merged state dict gives the un-merged model's logits for
every target (a tied head becomes untied; the model itself is left as it was), also through the HF export of fused
projections; a merged checkpoint loads as the LoRA run does, records what it holds and never replaces an input. A LoRA
run records its base weights' fingerprint: another base with the same config but other weights is refused."""

import json
import shutil

import pytest
import torch

from helpers import make_checkpoint, randomize_lora, tiny_config
from lit_gpt.checkpoint import checkpoint_fingerprint, load_model
from lit_gpt.lora import LoRAConfig, LoRALinear
from lit_gpt.lora_merge import (find_lora, merged_config, merged_model, merged_state_dict, save_merged_checkpoint,
                                unmerged_model)
from lit_gpt.model import GPT
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


@pytest.mark.parametrize("variant", ["lora", "rslora", "dora"])
@pytest.mark.parametrize("overrides", [dict(tie_embeddings=True), dict(mlp_class_name="GptNeoxMLP", bias=True,
                                                                       norm_class_name="LayerNorm")])
def test_merged_state_dict_equals_unmerged_forward_all_targets(overrides, variant):
    config = tiny_config(**overrides)
    torch.manual_seed(1)
    model = GPT(config)
    LoRAConfig(r=2, alpha=4, dropout=0.1, targets=("query", "key", "value", "projection", "mlp", "head"),
               variant=variant).apply(model)
    model.eval()  # after LoRAConfig.apply: the new dropout layers must be switched off too
    randomize_lora(model)
    n_lora = sum(isinstance(m, LoRALinear) for m in model.modules())
    assert n_lora == config.n_layer * (4 + (3 if config.mlp_class_name == "LLaMAMLP" else 2)) + 1
    idx = torch.randint(0, config.vocab_size, (2, 7))
    unmerged = model(idx)
    wte = model.wte.weight.detach().clone()

    merged_state = merged_state_dict(model)
    assert not any("lora_" in k or ".linear." in k for k in merged_state)
    plain = GPT(merged_config(model)).eval()
    plain.load_state_dict(merged_state)
    torch.testing.assert_close(plain(idx), unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(idx), unmerged)  # merged_state_dict leaves the model as it was
    if config.tie_embeddings:  # the head's update must not leak into the embedding
        assert merged_config(model).tie_embeddings is False
        torch.testing.assert_close(merged_state["wte.weight"], wte)
        assert not torch.allclose(merged_state["lm_head.weight"], wte)

    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.merge()
    torch.testing.assert_close(model(idx), unmerged, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.wte.weight, wte)  # in-place merge of a tied head leaves the embedding alone
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.unmerge()
    torch.testing.assert_close(model(idx), unmerged, atol=1e-5, rtol=1e-5)
    if config.tie_embeddings:
        assert model.lm_head.linear.weight is model.wte.weight


@pytest.mark.parametrize("family", ["phi3-longrope", "gemma3-window"])
def test_lora_on_projections_fused_in_hf_merges_into_the_exported_checkpoint(family):
    """Phi-3 stores q/k/v and gate/up as one matrix each: LoRA trains our split ones, the export stacks the merged
    weights back. transformers' model with the exported weights gives the LoRA model's logits."""
    pytest.importorskip("transformers")
    from helpers import TOKENS, random_hf_model
    from lit_gpt.config import Config
    from lit_gpt.convert.hf_mapping import hf_state_dict_to_lit, lit_to_hf

    hf_model = random_hf_model(family)
    config = Config.from_hf_config(hf_model.config.to_dict(), name=family)
    model = GPT(config).eval()
    model.load_state_dict(hf_state_dict_to_lit(hf_model.state_dict(), config))
    with torch.no_grad():
        base_logits = model(TOKENS)
    LoRAConfig(r=2, alpha=4, targets=("query", "key", "value", "projection", "mlp")).apply(model)
    randomize_lora(model)
    model.eval()
    with torch.no_grad():
        expected = model(TOKENS)
        hf_model.load_state_dict(lit_to_hf(merged_state_dict(model), config), strict=not config.tie_embeddings)
        got = hf_model(TOKENS).logits
    assert (expected - base_logits).abs().max() > 0.1  # the update moves the logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_merged_checkpoint_loads_as_the_lora_run(run_setup, lora_run, tmp_path):
    checkpoint, _ = run_setup
    lora = find_lora(lora_run)
    merged = save_merged_checkpoint(lora, tmp_path / "merged")
    for name in ("lit_config.json", "lit_model.pth", "tokenizer.json", "prompt_style.json", "merged_lora.json"):
        assert (merged / name).is_file(), name
    assert json.loads((merged / "prompt_style.json").read_text())["name"] == "chatml"  # the run's style
    record = json.loads((merged / "merged_lora.json").read_text())
    assert record["base_dir"] == str(checkpoint.resolve()) and len(record["lora_sha256"]) == 1
    idx = torch.tensor([[1, 17, 300, 4096, 9, 2]])
    with torch.no_grad():
        expected = unmerged_model(lora)(idx)
        torch.testing.assert_close(load_model(merged).eval()(idx), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(merged_model(lora)(idx), load_model(merged).eval()(idx), atol=0, rtol=0)
    for inputs, relation in ((checkpoint, "is the same path as --checkpoint_dir"), (lora_run, "contains --lora_path"),
                             (checkpoint / "merged", "lies inside --checkpoint_dir")):
        with pytest.raises(UserError, match=f"--out_dir {inputs} {relation}"):
            save_merged_checkpoint(lora, inputs)
    (tmp_path / "link").symlink_to(checkpoint)
    with pytest.raises(UserError, match=rf"--out_dir {tmp_path / 'link'} \(a link to {checkpoint}\) is the same"):
        save_merged_checkpoint(lora, tmp_path / "link")
    with pytest.raises(UserError, match="already holds a checkpoint; .* --overwrite true"):
        save_merged_checkpoint(lora, merged)


def test_a_lora_run_loads_only_onto_the_base_weights_it_was_trained_on(run_setup, lora_run, tmp_path, capsys):
    checkpoint, _ = run_setup
    record = json.loads((lora_run / "base_fingerprint.json").read_text())
    assert record["fingerprint"] == checkpoint_fingerprint(checkpoint)
    assert record["checkpoint_dir"] == str(checkpoint.resolve())
    step = sorted(lora_run.glob("checkpoints/step-*"))[-1]
    assert json.loads((step / "base_fingerprint.json").read_text()) == record  # each step loads on its own
    assert find_lora(step).base_dir == checkpoint

    other = make_checkpoint(tmp_path / "other", seed=1)  # the same config, other weights
    assert (other / "lit_config.json").read_text() == (checkpoint / "lit_config.json").read_text()
    with pytest.raises(UserError, match=f"trained on base weights with fingerprint {record['fingerprint']} .* but "
                                        f"{other} has {checkpoint_fingerprint(other)}: same config, other weights; "
                                        "pass the --checkpoint_dir it was trained on, or --force true"):
        find_lora(lora_run, other)
    capsys.readouterr()
    assert find_lora(lora_run, other, force=True).base_dir == other
    err = capsys.readouterr().err
    assert "warning: " in err and "used anyway (--force)" in err

    old = tmp_path / "old-run"  # a run from before fingerprints were recorded loads as before, with a note
    shutil.copytree(lora_run, old)
    (old / "base_fingerprint.json").unlink()
    assert find_lora(old, other).base_dir == other
    assert "records no fingerprint of its base weights" in capsys.readouterr().err


def test_the_fingerprint_reads_blocks_spread_over_a_large_file(tmp_path, monkeypatch):
    import lit_gpt.checkpoint as checkpoint_module

    checkpoint = make_checkpoint(tmp_path / "ckpt")
    monkeypatch.setattr(checkpoint_module, "FINGERPRINT_BLOCKS", 2)  # two MiB blocks: first and last
    size = (checkpoint / "lit_model.pth").stat().st_size
    assert size > 3 << 20
    before = checkpoint_fingerprint(checkpoint)
    with open(checkpoint / "lit_model.pth", "r+b") as f:  # a byte between the two blocks: not seen
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 1]))
    assert checkpoint_fingerprint(checkpoint) == before
    with open(checkpoint / "lit_model.pth", "r+b") as f:  # the last byte: seen
        f.seek(size - 1)
        byte = f.read(1)
        f.seek(size - 1)
        f.write(bytes([byte[0] ^ 1]))
    assert checkpoint_fingerprint(checkpoint) != before


def test_a_dora_run_saves_its_variant_and_magnitudes_and_merges_as_it_ran(run_setup, tmp_path):
    """The variant travels with the weights: a 2-step DoRA run's lora_config.json says dora, its LoRA file holds the
    trained magnitudes, and its merged checkpoint gives the unmerged DoRA model's logits."""
    from helpers import fast_args
    from lit_gpt.lora import row_norms
    from lit_gpt.train.loop import finetune
    from lit_gpt.utils import load_state_dict

    checkpoint, data = run_setup
    finetune("lora", checkpoint, data, tmp_path / "run", fast_args(learning_rate=2e-2, max_iters=2),
             LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value"), variant="dora"))
    lora = find_lora(tmp_path / "run")
    assert lora.config.variant == "dora" and "(dora, r=4" in lora.describe()
    magnitude = load_state_dict(lora.path)["blocks.0.attn.q.lora_magnitude"]
    base_q = load_model(checkpoint).blocks[0].attn.q.weight
    assert not torch.allclose(magnitude.float(), row_norms(base_q).float())  # trained away from ||W||
    merged = save_merged_checkpoint(lora, tmp_path / "merged")
    idx = torch.tensor([[1, 17, 300, 4096, 9, 2]])
    with torch.no_grad():
        torch.testing.assert_close(load_model(merged).eval()(idx), unmerged_model(lora)(idx), atol=1e-5, rtol=0)

"""finetune/, generate/ and scripts/ chained end to end on CPU, through the real command lines.

64 real Alpaca-GPT-4 rows -> scripts/prepare_alpaca.py -> finetune/lora.py (loss falls) -> generate/lora.py ->
scripts/merge_lora.py -> generate/base.py on the merged checkpoint (same sampled text) ->
scripts/convert_lit_checkpoint.py -> transformers (same logits); finetune/full.py -> generate/full.py; generate/chat.py
over stdin; one-line errors for LoRA files that do not fit.

The model (`base`, in conftest.py) is a 2-layer, 32-wide GPT with tied embeddings and the real SmolLM2 tokenizer
(ChatML prompt style with special tokens); LoRA is on query, value, MLP and the tied head, so the merge must untie the
head.
"""

import csv
import importlib.util
import io
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from lit_gpt.checkpoint import load_model
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.infer.load import load
from lit_gpt.infer.sampling import generate
from lit_gpt.lora import LoRAConfig
from lit_gpt.lora_merge import find_lora, unmerged_model
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.tokenizer import Tokenizer

pytestmark = pytest.mark.slow  # scripts chained end to end in real processes

PROMPT = "Give three tips for staying healthy."
MAX_NEW_TOKENS = 12
SEED = 7
SAMPLING = ["--temperature", 1.0, "--top_k", 50, "--seed", SEED, "--max_new_tokens", MAX_NEW_TOKENS]
LORA_FLAGS = ["--lora_r", 4, "--lora_alpha", 8, "--lora_dropout", 0.0, "--lora_mlp", "true", "--lora_head", "true"]
FAST_TRAINING = ["--precision", "32-true", "--batch_size", 8, "--micro_batch_size", 8, "--warmup_steps", 2,
                 "--eval_interval", 1000, "--sample_max_new_tokens", 0]


def run(script: str, *args, stdin: str = None, cwd: Path = None) -> subprocess.CompletedProcess:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], input=stdin, capture_output=True,
                          text=True, timeout=600, cwd=cwd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"{script}: {cpu:.1f} s CPU")  # the test budget is CPU time on a shared 2-core machine
    return proc


def run_ok(script: str, *args, **kwargs) -> subprocess.CompletedProcess:
    proc = run(script, *args, **kwargs)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-3000:]}"
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def load_script(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem + "_script", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_error(capsys, script: str, *args) -> str:
    """Runs a script's CLI in-process (faster than a subprocess for errors raised before any model is loaded): it
    must exit 1 with one line on stderr."""
    from lit_gpt.utils import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(load_script(script).main, args=[str(a) for a in args])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def greedy_text(model, tokenizer, prompt_ids) -> str:
    """Reference generation: plain lit_gpt.generate, stopping at the tokenizer's stop ids."""
    return tokenizer.decode(generate(model, prompt_ids, MAX_NEW_TOKENS, temperature=0.0, eos_id=tokenizer.stop_ids))


def sampled_text(model, tokenizer, prompt_ids) -> str:
    """What the scripts print with SAMPLING."""
    torch.manual_seed(SEED)
    return tokenizer.decode(generate(model, prompt_ids, MAX_NEW_TOKENS, temperature=1.0, top_k=50,
                                     eos_id=tokenizer.stop_ids))


def train_losses(out_dir: Path) -> list:
    files = sorted((out_dir / "logs" / "csv").glob("version_*/metrics.csv"))
    rows = [row for f in files for row in csv.DictReader(f.open())]
    return [float(r["train_loss"]) for r in rows if r.get("train_loss")]


# ---- the pipeline, built once per module (on `base`, a conftest.py fixture) --------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def data(work, base, shared_dir) -> Path:
    rows = json.loads((shared_dir / "datasets" / "alpaca_gpt4" / "sample_999.json").read_text())[:64]
    (work / "alpaca64.json").write_text(json.dumps(rows))
    run_ok("scripts/prepare_alpaca.py", "--data_path", work / "alpaca64.json", "--checkpoint_dir", base,
           "--destination_path", work / "data", "--max_seq_length", 64, "--test_split_fraction", 0.125, cwd=work)
    return work / "data"


@pytest.fixture(scope="module")
def lora_out(work, base, data) -> Path:
    out = work / "out" / "lora"
    run_ok("finetune/lora.py", "--checkpoint_dir", base, "--data_dir", data, "--out_dir", out, "--epochs", 2,
           "--learning_rate", 2e-2, *FAST_TRAINING, *LORA_FLAGS, cwd=work)
    return out


@pytest.fixture(scope="module")
def lora_text(lora_out, work) -> str:
    """generate/lora.py; the base checkpoint comes from the run's hyperparameters.yaml. Seeded sampling rather than
    greedy: after 14 steps a tiny model's greedy answer is EOS or one token repeated, sampled text has words."""
    proc = run_ok("generate/lora.py", "--lora_path", lora_out / "lit_model.pth.lora", "--prompt", PROMPT,
                  *SAMPLING, "--precision", "32-true", cwd=work)
    assert "r=4" in proc.stderr and "prompt style smollm2" in proc.stderr
    assert proc.stdout.endswith("\n")
    return proc.stdout[:-1]


@pytest.fixture(scope="module")
def merged(work, base, lora_out) -> Path:
    out = work / "merged"
    proc = run_ok("scripts/merge_lora.py", "--checkpoint_dir", base, "--lora_path", lora_out / "lit_model.pth.lora",
                  "--out_dir", out, cwd=work)
    assert str(out) in proc.stdout
    return out


# ---- LoRA ---------------------------------------------------------------------------------------------------------
def test_lora_run_loss_falls_and_run_files(lora_out, data):
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["prompt_style"] == "smollm2" and manifest["counts"]["rows_in"] == 64
    assert manifest["counts"]["train"] > 40 and manifest["counts"]["test"] > 4
    summary = json.loads((lora_out / "train_summary.json").read_text())
    losses = train_losses(lora_out)
    assert summary["steps"] == len(losses) == 14
    assert summary["final_train_loss"] < 0.8 * losses[0], (losses[0], summary["final_train_loss"])
    assert summary["final_val_loss"] < 0.9 * losses[0]
    print(f"LoRA: train loss {losses[0]:.3f} -> {summary['final_train_loss']:.3f}, val {summary['final_val_loss']:.3f}")
    assert LoRAConfig.from_file(lora_out) == LoRAConfig(r=4, alpha=8, dropout=0.0,
                                                        targets=("query", "value", "mlp", "head"))


def test_generate_lora_equals_unmerged_lora_model(lora_out, lora_text, base):
    """The script merges for speed; the unmerged LoRA layers (W x + s B A x) must give the same text."""
    lora = find_lora(lora_out / "lit_model.pth.lora")
    assert lora.base_dir == base.resolve()
    model, tokenizer = unmerged_model(lora), Tokenizer(base)
    prompt_ids = encode_prompt(tokenizer, get_prompt_style("smollm2"), PROMPT)
    assert tokenizer.decode(prompt_ids).endswith(f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n")
    assert lora_text == sampled_text(model, tokenizer, prompt_ids) and len(lora_text.split()) >= 3
    assert lora_text != sampled_text(load_model(base).eval(), tokenizer, prompt_ids)  # LoRA changed the model
    merged = load(lora_path=lora.path, device="cpu", precision="32-true").model
    assert greedy_text(model, tokenizer, prompt_ids) == greedy_text(merged, tokenizer, prompt_ids)


def test_merged_checkpoint_generates_the_same_and_converts_to_transformers(merged, lora_text, lora_out, work):
    for name in ("lit_config.json", "lit_model.pth", "tokenizer.json", "tokenizer_config.json", "prompt_style.json"):
        assert (merged / name).is_file(), name
    assert not list(merged.glob(".*.tmp")) and not (merged / "lit_model.pth.lora").exists()
    assert json.loads((merged / "prompt_style.json").read_text())["name"] == "smollm2"
    state = torch.load(merged / "lit_model.pth", weights_only=True)
    assert not any("lora" in k or ".linear." in k for k in state)
    assert json.loads((merged / "lit_config.json").read_text())["tie_embeddings"] is False  # LoRA on the tied head
    assert not torch.equal(state["lm_head.weight"], state["wte.weight"])

    proc = run_ok("generate/base.py", "--checkpoint_dir", merged, "--prompt", PROMPT, *SAMPLING,
                  "--precision", "32-true", cwd=work)
    assert proc.stdout == lora_text + "\n"

    # same logits as the unmerged LoRA model, and in transformers after conversion
    model = load_model(merged).eval()
    lora_model = unmerged_model(find_lora(lora_out))
    idx = encode_prompt(Tokenizer(merged), get_prompt_style("smollm2"), PROMPT).unsqueeze(0)
    with torch.no_grad():
        logits = model(idx)
        torch.testing.assert_close(lora_model(idx), logits, atol=1e-5, rtol=0)
    run_ok("scripts/convert_lit_checkpoint.py", "--checkpoint_dir", merged, "--output_dir", work / "hf", cwd=work)
    import transformers

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(work / "hf", dtype=torch.float32).eval()
    with torch.no_grad():
        hf_logits = hf_model(idx).logits
    torch.testing.assert_close(hf_logits, logits, atol=1e-4, rtol=0)


# ---- full fine-tuning ---------------------------------------------------------------------------------------------
def test_full_finetune_then_generate_full(work, base, data):
    out = work / "out" / "full"
    run_ok("finetune/full.py", "--checkpoint_dir", base, "--data_dir", data, "--out_dir", out, "--max_iters", 2,
           "--learning_rate", 3e-3, *FAST_TRAINING, cwd=work)
    assert (out / "lit_model.pth").is_file() and (out / "prompt_style.json").is_file()
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 2
    proc = run_ok("generate/full.py", "--checkpoint_dir", out, "--prompt", "Name a color.", "--input", "Be brief.",
                  *SAMPLING, "--precision", "32-true", cwd=work)
    tokenizer = Tokenizer(out)
    prompt_ids = encode_prompt(tokenizer, "smollm2", "Name a color.", input="Be brief.")
    assert tokenizer.decode(prompt_ids).endswith("user\nName a color.\n\nBe brief.<|im_end|>\n<|im_start|>assistant\n")
    assert proc.stdout == sampled_text(load_model(out).eval(), tokenizer, prompt_ids) + "\n"
    assert len(proc.stdout.split()) >= 3


# ---- chat ---------------------------------------------------------------------------------------------------------
def chat_answers(stdout: str) -> list:
    """The assistant answers in the chat's stdout (">> User: " prompts, ">> Assistant: answer" lines)."""
    return [part.split("\n>> User: ")[0] for part in stdout.split(">> Assistant: ")[1:]]


def test_chat_two_turns_reset_and_exit(work, lora_out, merged):
    first, second = "Give three tips for staying healthy.", "Which one is the most important?"
    proc = run_ok("generate/chat.py", "--lora_path", lora_out, "--temperature", 1.0, "--top_k", 50, "--seed", 5,
                  "--max_new_tokens", MAX_NEW_TOKENS, "--precision", "32-true",
                  stdin=f"{first}\n{second}\n/reset\n{first}\n/exit\nnever read\n", cwd=work)
    answers = chat_answers(proc.stdout)
    assert len(answers) == 3, proc.stdout  # nothing after /exit
    assert "(new conversation)" in proc.stderr

    # the same answers in-process (same seed, one random stream): the second turn saw the first exchange, the turn
    # after /reset saw only its own message
    model, tokenizer = load_model(merged).eval(), Tokenizer(merged)
    conversations = [[{"role": "user", "content": first}],
                     [{"role": "user", "content": first}, {"role": "assistant", "content": answers[0]},
                      {"role": "user", "content": second}],
                     [{"role": "user", "content": first}]]
    torch.manual_seed(5)
    expected = [tokenizer.decode(generate(model, encode_prompt(tokenizer, "smollm2", c), MAX_NEW_TOKENS,
                                          temperature=1.0, top_k=50, eos_id=tokenizer.stop_ids)) for c in conversations]
    assert answers == expected
    assert len(" ".join(answers).split()) >= 6


def test_chat_ends_at_end_of_input(merged, monkeypatch, capsys):
    chat = load_script("generate/chat.py")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello there\n"))
    chat.main(checkpoint_dir=merged, temperature=0.0, max_new_tokens=4, precision="32-true")
    out = capsys.readouterr().out
    assert out.count(">> Assistant: ") == 1 and out.endswith(">> User: \n")


def test_chat_compile_reaches_the_decode_step(merged, monkeypatch, capsys):
    """--compile true: every answer's decode step through torch.compile (generate_batch's compile)."""
    import lit_gpt.infer.sampling as sampling

    chat, seen = load_script("generate/chat.py"), []
    real = sampling.generate_batch
    monkeypatch.setattr(sampling, "generate_batch", lambda *a, **kw: seen.append(kw["compile"]) or real(*a, **kw))
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hello there\nAnd again\n"))
    chat.main(checkpoint_dir=merged, temperature=0.0, max_new_tokens=2, precision="32-true", compile=True)
    assert seen == [True, True] and capsys.readouterr().out.count(">> Assistant: ") == 2


# ---- bad input: one line naming the file, exit 1 ----------------------------------------------------------------
def test_missing_lora_file(work, base):
    missing = work / "nowhere" / "lit_model.pth.lora"
    proc = run("generate/lora.py", "--lora_path", missing, "--checkpoint_dir", base)
    assert_one_line_error(proc, str(missing), "not found")


def test_lora_rank_differs_from_its_config(work, lora_out, capsys):
    mixed = work / "mixed-rank"
    shutil.copytree(lora_out, mixed, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    LoRAConfig(r=8, alpha=8, dropout=0.0, targets=("query", "value", "mlp", "head")).save(mixed)
    line = cli_error(capsys, "scripts/merge_lora.py", "--lora_path", mixed / "lit_model.pth.lora",
                     "--out_dir", work / "never")
    assert str(mixed / "lit_model.pth.lora") in line and "rank 4" in line and "r=8" in line
    assert not (work / "never" / "lit_model.pth").exists()


def test_missing_base_checkpoint(work, lora_out, capsys):
    moved = work / "moved-run"
    shutil.copytree(lora_out, moved, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    gone = work / "deleted-base"
    (moved / "hyperparameters.yaml").write_text(f"checkpoint_dir: {gone}\n")
    proc = run("generate/chat.py", "--lora_path", moved / "lit_model.pth.lora")
    assert_one_line_error(proc, str(gone), "hyperparameters.yaml", "--checkpoint_dir")
    line = cli_error(capsys, "generate/lora.py", "--lora_path", moved, "--checkpoint_dir", work / "no-such-base")
    assert str(work / "no-such-base") in line and "not found" in line


def test_lora_from_another_base_model(work, lora_out, tiny_checkpoint_dir, capsys):
    other = tiny_checkpoint_dir("smollm2", weights=True, block_size=256, tie_embeddings=True, n_embd=64)
    line = cli_error(capsys, "generate/lora.py", "--lora_path", lora_out / "lit_model.pth.lora",
                     "--checkpoint_dir", other)
    assert "another base model" in line and "n_embd 32 != 64" in line and str(lora_out) in line
    # only the two LoRA files, no lit_config.json to compare: the tensor shapes tell
    bare = work / "bare-lora"
    bare.mkdir()
    for name in ("lit_model.pth.lora", "lora_config.json"):
        shutil.copy(lora_out / name, bare / name)
    line = cli_error(capsys, "scripts/merge_lora.py", "--lora_path", bare / "lit_model.pth.lora",
                     "--checkpoint_dir", other, "--out_dir", work / "never")
    assert "another base model" in line and "shape" in line and str(bare) in line
    line = cli_error(capsys, "scripts/merge_lora.py", "--lora_path", bare / "lit_model.pth.lora",
                     "--out_dir", work / "never")
    assert "hyperparameters.yaml" in line and "--checkpoint_dir" in line


def test_lora_on_other_weights_of_its_base_config_needs_force(work, lora_out, base, capsys):
    """A re-converted or further fine-tuned base with the same lit_config.json: the recorded fingerprint tells."""
    other = work / "other-weights"
    shutil.copytree(base, other)
    state = torch.load(other / "lit_model.pth", weights_only=True)
    state["wte.weight"] = state["wte.weight"] + 0.01
    torch.save(state, other / "lit_model.pth")
    for script, extra in (("generate/lora.py", []), ("scripts/merge_lora.py", ["--out_dir", work / "never"]),
                          ("scripts/evaluate.py", ["--out_dir", work / "never", "--limit", 1])):
        line = cli_error(capsys, script, "--lora_path", lora_out, "--checkpoint_dir", other, *extra)
        assert "same config, other weights" in line and str(other) in line and "--force true" in line, line
    assert not (work / "never").exists()
    load_script("scripts/merge_lora.py").main(lora_path=lora_out, checkpoint_dir=other, out_dir=work / "forced",
                                              force=True)
    assert (work / "forced" / "lit_model.pth").is_file() and "used anyway (--force)" in capsys.readouterr().err


def test_other_mistakes_point_to_the_right_script(work, lora_out, base, capsys):
    line = cli_error(capsys, "generate/full.py", "--checkpoint_dir", lora_out)
    assert "generate/lora.py" in line
    line = cli_error(capsys, "scripts/merge_lora.py", "--lora_path", lora_out, "--out_dir", base)
    assert f"--out_dir {base} is the same path as --checkpoint_dir" in line
    line = cli_error(capsys, "generate/chat.py")
    assert "--checkpoint_dir" in line

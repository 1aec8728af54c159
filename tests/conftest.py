import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

# 2-core CI machine: keep intra-op threads bounded so parallel work does not oversubscribe
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def root_dir() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read real tokenizers and datasets from ../shared/")
    return SHARED


def tiny_config(**overrides):
    """A few-layer model for CPU tests; architecture switches via overrides."""
    from lit_gpt.config import Config

    kw = dict(name="tiny", block_size=128, vocab_size=256, n_layer=2, n_head=4, n_embd=32, n_query_groups=2,
              intermediate_size=64)
    kw.update(overrides)
    return Config(**kw)


@pytest.fixture(scope="session")
def tiny_checkpoint_dir(tmp_path_factory, shared_dir):
    """Factory: `tiny_checkpoint_dir("smollm2" | "llama-2" | "mistral-v1" | "gpt-neox" | "gpt2", weights=False,
    **config_overrides)` -> a fresh checkpoint dir holding a copy of that shared tokenizer and the lit_config.json of
    a tiny_config whose vocab_size is the tokenizer's (plus random lit_model.pth weights when weights=True)."""
    import shutil

    from lit_gpt.files import TOKENIZER_FILES
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

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

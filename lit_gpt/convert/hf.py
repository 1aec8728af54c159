"""Weight conversion between Hugging Face checkpoints and ours, both ways, for every supported family (the name and
config mapping itself is `lit_gpt.convert.hf_mapping`).

HF -> ours streams: it reads one tensor at a time from each shard and writes it straight to its place in
`lit_model.pth`, so peak memory stays near one shard whatever the model size. The file is a normal `torch.save`
archive: `torch.save` first writes its skeleton (layout plus empty space for each tensor, `skip_data`), then each
tensor's bytes are written at their offset.
"""

import json
import math
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import torch

from lit_gpt.checkpoint import check_checkpoint_dir
from lit_gpt.config import Config
from lit_gpt.file_names import LIT_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE, TOKENIZER_FILES
from lit_gpt.convert.hf_mapping import family_names, hf_config_dict, hf_to_lit, lit_to_hf
from lit_gpt.json_files import read_json
from lit_gpt.model import GPT
from lit_gpt.utils import UserError, atomic_path, atomic_write_text, check_writable_dir, load_state_dict

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}




# ---- reading HF checkpoints ---------------------------------------------------------------------------------------
def hf_weight_files(checkpoint_dir: Path) -> "list[Path]":
    """The weight files of an HF checkpoint: safetensors first, else .bin; sharded ones through their index."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = checkpoint_dir / index_name
        if not index.is_file():
            continue
        weight_map = read_json(index, "shard index", fix="download it again").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise UserError(f"{index}: not a valid shard index (no weight_map of tensor name -> file name); download "
                            "it again")
        files = sorted({checkpoint_dir / file for file in weight_map.values()})
        for file in files:
            if not file.is_file():
                raise UserError(f"{file}: shard listed in {index.name} is missing; download the checkpoint again")
        return files
    for pattern in ("model*.safetensors", "pytorch_model*.bin"):
        files = sorted(checkpoint_dir.glob(pattern))
        if files:
            return files
    raise UserError(f"{checkpoint_dir}: no weights found (model.safetensors or pytorch_model.bin, possibly sharded); "
                    "download the checkpoint with scripts/download.py")


def read_hf_shard(path: Path, meta: bool = False) -> Iterator["tuple[str, torch.Tensor]"]:
    """Yields (name, tensor) one at a time. meta=True yields shape/dtype-only tensors read from the header."""
    if path.suffix == ".bin":  # memory-mapped: a tensor's pages are read when it is converted
        yield from load_state_dict(path).items()
        return
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as shard:
            for name in shard.keys():
                if meta:
                    view = shard.get_slice(name)
                    if view.get_dtype() not in SAFETENSORS_DTYPES:
                        raise UserError(f"{path}: {name} has dtype {view.get_dtype()}, which is not supported "
                                        "(quantized checkpoints are not); use the unquantized checkpoint")
                    yield name, torch.empty(view.get_shape(), dtype=SAFETENSORS_DTYPES[view.get_dtype()], device="meta")
                else:
                    yield name, shard.get_tensor(name)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e}); download it again") from None
    except Exception as e:  # safetensors' own error type is not exported under a stable name
        if type(e).__name__ != "SafetensorError":
            raise
        raise UserError(f"{path}: not a valid safetensors file ({e}); the file is truncated or corrupt, "
                        "download it again") from None


# ---- writing lit_model.pth incrementally --------------------------------------------------------------------------
class StateDictWriter:
    """Fills a `torch.save` archive of a state dict one tensor at a time, so the model is never whole in memory.

    Use it as a context manager. `layout` (name -> (shape, dtype)) is saved first with
    `torch.serialization.skip_data`: the archive then holds the pickled layout and an empty (sparse) record per
    tensor. torch.save numbers storages in the order it pickles them, so the i-th tensor of the layout is record
    data/i; `write` puts a tensor's bytes at that record's offset. FakeTensorMode gives the skeleton tensors shapes
    and dtypes without memory (its first use imports torch._dynamo: about two seconds, once)."""

    def __init__(self, path: Path, layout: "dict[str, tuple[torch.Size, torch.dtype]]") -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        with FakeTensorMode():  # shapes and dtypes without memory
            skeleton = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in layout.items()}
        with torch.serialization.skip_data(materialize_fake_tensors=True):
            torch.save(skeleton, path)
        with zipfile.ZipFile(path) as archive:  # record names are "<archive folder>/data/<i>"
            records = {info.filename.split("/", 1)[1]: info for info in archive.infolist()}
        self.file = open(path, "r+b")
        self.slots: dict[str, tuple[int, int]] = {}
        for i, (name, (shape, dtype)) in enumerate(layout.items()):
            record = records[f"data/{i}"]
            nbytes = math.prod(shape) * dtype.itemsize
            if record.file_size != nbytes:
                raise RuntimeError(f"torch.save laid out {name} in an unexpected order "
                                   f"({record.file_size} != {nbytes} bytes)")
            self.file.seek(record.header_offset + 26)  # zip local header: name and extra-field lengths at byte 26
            name_len, extra_len = struct.unpack("<HH", self.file.read(4))
            self.slots[name] = (record.header_offset + 30 + name_len + extra_len, nbytes)
        self.missing = set(layout)

    def write(self, name: str, tensor: torch.Tensor) -> None:
        offset, nbytes = self.slots[name]
        data = tensor.contiguous().reshape(-1).view(torch.uint8)  # little-endian bytes, as torch.save writes them
        assert data.numel() == nbytes, name
        self.file.seek(offset)
        self.file.write(data.numpy())
        self.missing.discard(name)

    def __enter__(self) -> "StateDictWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.file.close()
        if exc_type is None and self.missing:
            raise RuntimeError(f"tensors never written: {sorted(self.missing)[:3]}")


# ---- HF -> ours ---------------------------------------------------------------------------------------------------
def convert_hf_checkpoint(checkpoint_dir: "str | Path", model_name: Optional[str] = None,
                          dtype: Optional[str] = None) -> Path:
    """Writes lit_model.pth and lit_config.json into an HF checkpoint dir; tokenizer files stay where they are."""
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir, need_weights=False)
    if dtype is not None and dtype not in DTYPES:
        raise UserError(f"--dtype {dtype!r} is not supported; choose one of {', '.join(DTYPES)}")
    files = hf_weight_files(checkpoint_dir)
    config = Config.from_checkpoint(checkpoint_dir, model_name)
    family_names(config)
    target_dtype = DTYPES.get(dtype)

    # pass 1: names, shapes and dtypes from the headers only, checked against the model before anything is written
    found: dict[str, tuple[torch.Size, torch.dtype]] = {}
    for path in files:
        for hf_name, tensor in read_hf_shard(path, meta=True):
            for name, t in hf_to_lit(hf_name, tensor, config, path):
                found[name] = (t.shape, target_dtype or t.dtype)
    layout = check_layout(found, config, checkpoint_dir, "the checkpoint")

    # pass 2: tensor by tensor into their slots
    with atomic_path(checkpoint_dir / LIT_WEIGHTS_FILE) as tmp:
        try:
            with StateDictWriter(tmp, layout) as writer:
                for path in files:
                    for hf_name, tensor in read_hf_shard(path):
                        for name, t in hf_to_lit(hf_name, tensor, config, path):
                            writer.write(name, t.to(layout[name][1]))
        except OSError as e:
            raise UserError(f"{checkpoint_dir}: cannot write lit_model.pth ({e.strerror or e}); "
                            "check the free disk space") from None
    config.save(checkpoint_dir / LIT_CONFIG_FILE)
    return checkpoint_dir / LIT_WEIGHTS_FILE


def check_layout(found: dict, config: Config, source: Path, what: str) -> dict:
    """The converted names/shapes must be exactly the model's; returns them in the model's order."""
    with torch.device("meta"):
        expected = GPT(config).state_dict()
    if config.tie_embeddings:
        expected.pop("lm_head.weight")
    missing = [name for name in expected if name not in found]
    if missing:
        raise UserError(f"{source}: {what} lacks {len(missing)} weights the config needs "
                        f"(e.g. {missing[:2]}); the files are incomplete or belong to another config "
                        "(check config.json, --model_name)")
    unexpected = [name for name in found if name not in expected]
    if unexpected:
        raise UserError(f"{source}: {what} has weights the config does not know (e.g. {unexpected[:2]}); "
                        "they belong to another config (check config.json, --model_name)")
    for name, tensor in expected.items():
        if found[name][0] != tensor.shape:
            raise UserError(f"{source}: {name} has shape {tuple(found[name][0])}, the config expects "
                            f"{tuple(tensor.shape)}; the checkpoint and its config disagree")
    return {name: found[name] for name in expected}


# ---- ours -> HF ---------------------------------------------------------------------------------------------------
def convert_lit_checkpoint(checkpoint_dir: "str | Path", output_dir: "str | Path") -> Path:
    """Writes an HF folder (config.json, model.safetensors, the tokenizer files) from one of our checkpoints."""
    from safetensors.torch import save_file

    if (Path(checkpoint_dir) / LORA_WEIGHTS_FILE).is_file() and not (Path(checkpoint_dir) / LIT_WEIGHTS_FILE).is_file():
        raise UserError(f"{checkpoint_dir}: holds LoRA weights only; merge them into the base first (python "
                        f"scripts/merge_lora.py --lora_path {checkpoint_dir} --out_dir MERGED), then convert MERGED")
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    output_dir = Path(output_dir)
    if output_dir.resolve() == checkpoint_dir.resolve():
        raise UserError(f"{output_dir}: --output_dir must differ from --checkpoint_dir "
                        "(its config.json would be replaced)")
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE)
    hf_config_dict(config)  # fail on a config transformers cannot express before reading any weights
    source = checkpoint_dir / LIT_WEIGHTS_FILE
    state_dict = load_state_dict(source)
    if not isinstance(state_dict, dict) or not all(isinstance(t, torch.Tensor) for t in state_dict.values()):
        raise UserError(f"{source}: not a model state dict; convert the checkpoint again")
    if config.tie_embeddings:  # model.state_dict() of a tied model lists the head too
        state_dict.pop("lm_head.weight", None)
    check_layout({name: (t.shape, t.dtype) for name, t in state_dict.items()}, config, source, "the file")
    hf_state_dict = {name: t.contiguous() for name, t in lit_to_hf(state_dict, config, source).items()}
    check_writable_dir(output_dir)
    with atomic_path(output_dir / "model.safetensors") as tmp:
        save_file(hf_state_dict, str(tmp), metadata={"format": "pt"})
    hf_config = hf_config_dict(config, dtype=state_dict["wte.weight"].dtype)
    atomic_write_text(output_dir / "config.json", json.dumps(hf_config, indent=2))
    for file in TOKENIZER_FILES:
        if (checkpoint_dir / file).is_file():
            with atomic_path(output_dir / file) as tmp:
                shutil.copyfile(checkpoint_dir / file, tmp)
    return output_dir

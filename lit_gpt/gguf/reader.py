"""Reading a GGUF file (llama.cpp's format): its metadata, and its tensors as memory-mapped (possibly quantized) bytes.

`lit_gpt.gguf.import_model` turns what this reads into a checkpoint dir; the `gguf` package does the dequantizing.
"""

import math
import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from lit_gpt.utils import UserError

MISSING = object()  # GGUFFile.get's "no default": a missing key is an error


# ---- reading ---------------------------------------------------------------------------------------------------
# GGUF layout (little-endian): b"GGUF", u32 version, u64 tensor count, u64 metadata count; metadata entries (string
# key, u32 value type, value); tensor infos (string name, u32 n_dims, u64 dims fastest-first, u32 ggml type, u64
# offset); padding to `general.alignment` (32 by default); the tensor data. Strings are u64 length + UTF-8 bytes,
# arrays u32 item type + u64 count + items. gguf.GGUFReader wraps every item of every array in its own numpy view,
# which takes 10 s for a 262,144-token vocabulary; reading the metadata here with struct takes a fraction of a
# second. Tensor data stays a memory map, and the gguf package still does all the dequantizing.
_SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
READABLE_VERSIONS = (2, 3)  # version 1 had 32-bit counts; llama.cpp stopped writing it in 2023
MAX_DIMS = 4  # ggml's GGML_MAX_DIMS
KINDS = {"int": (lambda v: type(v) is int, "a whole number"),
         "float": (lambda v: type(v) in (int, float) and math.isfinite(v), "a finite number"),
         "bool": (lambda v: type(v) is bool, "true or false"),
         "str": (lambda v: type(v) is str, "a string"),
         "list": (lambda v: type(v) is list, "an array")}


class _Truncated(Exception):
    """The file ends before what its header announces (the message, if any, says which tensor)."""


class GGUFTensor(NamedTuple):
    name: str
    shape: tuple  # ggml's `ne`: fastest-varying dimension first, the reverse of PyTorch's
    tensor_type: Any  # gguf.GGMLQuantizationType
    data: np.ndarray  # uint8, read-only memory map, (rows..., bytes per row)


class _MetadataParser:
    def __init__(self, buffer) -> None:
        self.buffer, self.offset = buffer, 0

    def take(self, fmt: str, count: int = 1) -> tuple:
        size = struct.calcsize(f"<{fmt}") * count  # a crafted count of 2^64 is too long, not a struct.error
        if self.offset + size > len(self.buffer):
            raise _Truncated
        values = struct.unpack_from(f"<{count}{fmt}", self.buffer, self.offset)
        self.offset += size
        return values

    def string(self) -> str:
        (length,) = self.take("Q")
        if self.offset + length > len(self.buffer):
            raise _Truncated
        text = bytes(self.buffer[self.offset:self.offset + length]).decode("utf-8")
        self.offset += length
        return text

    def value(self, value_type: int) -> Any:
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            item_type, count = self.take("I")[0], self.take("Q")[0]
            if item_type in _SCALAR_FORMATS:
                return list(self.take(_SCALAR_FORMATS[item_type], count))
            return [self.value(item_type) for _ in range(count)]
        if value_type not in _SCALAR_FORMATS:
            raise ValueError(f"unknown metadata value type {value_type}")
        return self.take(_SCALAR_FORMATS[value_type])[0]


class GGUFFile:
    """A GGUF file: metadata by key, tensors (memory-mapped, possibly quantized blocks) by name, and its path for
    error messages. Wrong or damaged files give one-line errors."""

    def __init__(self, path: "str | Path") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: GGUF file not found")
        with open(self.path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise UserError(f"{self.path}: not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        try:
            self.metadata, self.tensors = self._parse(data)
        except (_Truncated, ValueError, UnicodeDecodeError) as e:  # ValueError: what _parse found inconsistent
            problem = f"{type(e).__name__}: {e}" if not isinstance(e, _Truncated) else \
                "it ends too early" + (f": {e}" if str(e) else "")
            raise UserError(f"{self.path}: cannot read the GGUF file ({problem}); it is truncated or corrupt, "
                            "download it again") from None

    def _parse(self, data: np.ndarray) -> tuple:
        import gguf

        parser = _MetadataParser(memoryview(data))
        parser.offset = 4
        (version,) = parser.take("I")
        if version not in READABLE_VERSIONS:
            byte_swapped = version & 0xFFFF == 0
            raise UserError(f"{self.path}: GGUF version {version} is not supported (readable: 2, 3)"
                            + ("; it is a big-endian file, convert it with llama.cpp's gguf tools" * byte_swapped))
        tensor_count, metadata_count = parser.take("Q", 2)
        metadata = {}
        for _ in range(metadata_count):
            key = parser.string()
            metadata[key] = parser.value(parser.take("I")[0])
        infos = []
        for _ in range(tensor_count):
            name = parser.string()
            (n_dims,) = parser.take("I")
            if not 1 <= n_dims <= MAX_DIMS:
                raise ValueError(f"tensor {name!r} has {n_dims} dimensions (GGUF allows 1 to {MAX_DIMS})")
            dims = parser.take("Q", n_dims)
            type_id, offset = parser.take("I")[0], parser.take("Q")[0]
            infos.append((name, dims, type_id, offset))
        alignment = metadata.get("general.alignment", 32)
        if type(alignment) is not int or not 1 <= alignment <= 1 << 30 or alignment & (alignment - 1):
            raise ValueError(f"general.alignment {alignment!r} is not a power of two")
        data_start = -(-parser.offset // alignment) * alignment
        tensors, spans = {}, []
        for name, dims, type_id, offset in infos:
            if name in tensors:
                raise ValueError(f"tensor {name!r} appears twice")
            tensors[name], span = _tensor(data, name, dims, type_id, offset, data_start, alignment)
            spans.append((span, name))
        _check_no_overlap(spans)
        return metadata, tensors

    def get(self, key: str, default: Any = MISSING) -> Any:
        """The metadata value of `key` (arrays as lists); without a default, a missing key is an error."""
        if key not in self.metadata:
            if default is MISSING:
                raise UserError(f"{self.path}: GGUF metadata has no {key!r}; the file is incomplete")
            return default
        return self.metadata[key]


def typed_metadata(gguf_file: Any, key: str, kind: str, default: Any = MISSING) -> Any:
    """`gguf_file.get(key, default)` checked to be of `kind` (KINDS: "int", "float", "bool", "str", "list"): a
    value of another type is one line naming the key. `gguf_file`: a GGUFFile or anything with its `.path` and `.get`
    (the export's planned file); the default, ours, is not checked."""
    value = gguf_file.get(key, default)
    if value is not default and not KINDS[kind][0](value):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise UserError(f"{gguf_file.path}: GGUF metadata {key} = {shown}: must be {KINDS[kind][1]}; the file is "
                        "damaged")
    return value


def _tensor(data: np.ndarray, name: str, dims: tuple, type_id: int, offset: int, data_start: int,
            alignment: int) -> tuple:
    """(the tensor, (its first byte, its end) in the file), its info checked against the file: a known type, whole
    blocks per row, an aligned offset, and bytes (its shape times its type's size) that lie inside the file."""
    import gguf

    try:
        tensor_type = gguf.GGMLQuantizationType(type_id)
    except ValueError:
        raise ValueError(f"tensor {name!r} has unknown type {type_id}") from None
    block_size, type_size = gguf.GGML_QUANT_SIZES[tensor_type]
    if dims[0] % block_size:
        raise ValueError(f"tensor {name!r}: rows of {dims[0]} do not fill whole {tensor_type.name} blocks")
    if offset % alignment:
        raise ValueError(f"tensor {name!r}: offset {offset} is not a multiple of the alignment {alignment}")
    row_bytes = dims[0] // block_size * type_size
    start = data_start + offset
    end = start + row_bytes * math.prod(dims[1:])  # Python ints: crafted dims cannot overflow
    if end > len(data):
        raise _Truncated(f"tensor {name!r} needs bytes {start:,} to {end:,}, the file has {len(data):,}")
    return GGUFTensor(name, dims, tensor_type, data[start:end].reshape(*reversed(dims[1:]), row_bytes)), (start, end)


def _check_no_overlap(spans: list) -> None:
    """Two tensors whose data share bytes are a crafted or damaged file (llama.cpp writes each once)."""
    spans = sorted(((start, end), name) for (start, end), name in spans if end > start)
    for ((_, end), name), ((start, _), other) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"tensors {name!r} and {other!r} share bytes of the file")

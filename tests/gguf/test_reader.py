"""lit_gpt/gguf/reader.py: GGUF files written byte by byte here from the format's description (so the reader is
checked against the layout, not against another reader) read back to the values and tensor bytes written; damaged
and unsupported files are one-line errors that name the file. That our reader and gguf.GGUFReader agree on a real
file: gguf/test_import_model.py."""

import struct

import gguf
import numpy as np
import pytest

from lit_gpt.gguf.reader import GGUFFile
from lit_gpt.utils import UserError

# GGUF metadata value types
U8, I8, U32, I32, F32, BOOL, STRING, ARRAY, U64, F64 = 0, 1, 4, 5, 6, 7, 8, 9, 10, 12
FORMATS = {U8: "B", I8: "b", U32: "I", I32: "i", F32: "f", BOOL: "?", U64: "Q", F64: "d"}
F32_TYPE, F16_TYPE, Q8_0_TYPE = 0, 1, 8  # ggml tensor types


def _string(text) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(data)) + data


def _value(value_type: int, value) -> bytes:
    if value_type == STRING:
        return _string(value)
    if value_type == ARRAY:
        item_type, items = value
        return struct.pack("<IQ", item_type, len(items)) + b"".join(_value(item_type, item) for item in items)
    if value_type not in FORMATS:  # a type the format does not have: its "value" is raw bytes
        return value
    return struct.pack("<" + FORMATS[value_type], value)


def gguf_bytes(metadata: dict, tensors: list, version: int = 3, alignment: int = 32) -> bytes:
    """A GGUF file: metadata {key: (type, value)}; tensors [(name, dims fastest-first, ggml type, data bytes)], each
    tensor's data at an `alignment` multiple from the start of the data section, which starts aligned too."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, (value_type, value) in metadata.items():
        out += _string(key) + struct.pack("<I", value_type) + _value(value_type, value)
    offset, data = 0, b""
    for name, dims, tensor_type, raw in tensors:
        out += _string(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, tensor_type, offset)
        padded = raw + b"\0" * (-len(raw) % alignment)
        data += padded
        offset += len(padded)
    return out + b"\0" * (-len(out) % alignment) + data


WEIGHT = np.arange(12, dtype=np.float32).reshape(3, 4)  # 3 rows of 4: ggml dims (4, 3)
NORM = np.linspace(-1, 1, 8).astype(np.float16)
QUANTIZED = np.linspace(-2, 2, 128, dtype=np.float32).reshape(2, 64)
METADATA = {
    "general.architecture": (STRING, "llama"),
    "llama.block_count": (U32, 2),
    "x.u8": (U8, 255), "x.i8": (I8, -3), "x.u64": (U64, 2**40), "x.f32": (F32, 0.5), "x.f64": (F64, 0.1),
    "x.bool": (BOOL, True),
    "tokenizer.ggml.tokens": (ARRAY, (STRING, ["a", "", "ß▁", "<|im_end|>"])),
    "x.ints": (ARRAY, (I32, [1, -2, 3])),
    "x.nested": (ARRAY, (ARRAY, [(U8, [1, 2]), (U8, [])])),
}


def tensors():
    q8 = gguf.quants.quantize(QUANTIZED, gguf.GGMLQuantizationType.Q8_0)
    return [("w", (4, 3), F32_TYPE, WEIGHT.tobytes()), ("norm", (8,), F16_TYPE, NORM.tobytes()),
            ("q", (64, 2), Q8_0_TYPE, q8.tobytes())]


def write(path, metadata=METADATA, tensor_list=None, **kwargs):
    path.write_bytes(gguf_bytes(metadata, tensors() if tensor_list is None else tensor_list, **kwargs))
    return path


def test_metadata_is_read_as_written(tmp_path):
    read = GGUFFile(write(tmp_path / "model.gguf"))
    assert read.metadata == {"general.architecture": "llama", "llama.block_count": 2, "x.u8": 255, "x.i8": -3,
                             "x.u64": 2**40, "x.f32": 0.5, "x.f64": 0.1, "x.bool": True,
                             "tokenizer.ggml.tokens": ["a", "", "ß▁", "<|im_end|>"], "x.ints": [1, -2, 3],
                             "x.nested": [[1, 2], []]}
    assert read.path == tmp_path / "model.gguf"


def test_tensors_are_memory_mapped_rows_of_their_bytes(tmp_path):
    read = GGUFFile(write(tmp_path / "model.gguf"))
    assert list(read.tensors) == ["w", "norm", "q"]
    w, norm, q = read.tensors.values()
    assert (w.name, w.shape, w.tensor_type) == ("w", (4, 3), gguf.GGMLQuantizationType.F32)
    assert w.data.shape == (3, 16) and np.array_equal(w.data.view(np.float32), WEIGHT)  # one row of bytes per row
    assert not w.data.flags.writeable  # a read-only map of the file, not a copy
    assert norm.data.shape == (16,) and np.array_equal(norm.data.view(np.float16), NORM)
    assert (q.shape, q.tensor_type, q.data.shape) == ((64, 2), gguf.GGMLQuantizationType.Q8_0, (2, 2 * 34))
    dequantized = gguf.quants.dequantize(q.data, q.tensor_type)
    assert dequantized.shape == (2, 64) and np.abs(dequantized - QUANTIZED).max() < 0.02


@pytest.mark.parametrize("padding", range(0, 32, 8))  # headers ending at every 8-byte offset within 32
def test_data_starts_at_the_next_multiple_of_32_by_default(tmp_path, padding):
    read = GGUFFile(write(tmp_path / "model.gguf", {**METADATA, "x.padding": (STRING, "p" * padding)}))
    assert np.array_equal(read.tensors["w"].data.view(np.float32), WEIGHT)
    assert np.array_equal(read.tensors["norm"].data.view(np.float16), NORM)


def test_a_custom_alignment_moves_the_data(tmp_path):
    metadata = {**METADATA, "general.alignment": (U32, 64)}
    read = GGUFFile(write(tmp_path / "model.gguf", metadata, alignment=64))
    assert read.get("general.alignment") == 64
    assert np.array_equal(read.tensors["norm"].data.view(np.float16), NORM)
    assert np.array_equal(read.tensors["w"].data.view(np.float32), WEIGHT)


def test_version_2_files_are_read(tmp_path):
    assert GGUFFile(write(tmp_path / "v2.gguf", version=2)).get("llama.block_count") == 2


def test_get_with_and_without_a_default(tmp_path):
    read = GGUFFile(write(tmp_path / "model.gguf"))
    assert read.get("x.i8") == -3 and read.get("x.missing", None) is None and read.get("x.missing", 7) == 7
    with pytest.raises(UserError, match=r"model\.gguf: GGUF metadata has no 'llama\.context_length'; the file is "
                                        "incomplete"):
        read.get("llama.context_length")


def test_files_that_are_not_gguf(tmp_path):
    with pytest.raises(UserError, match=r"nope\.gguf: GGUF file not found"):
        GGUFFile(tmp_path / "nope.gguf")
    (tmp_path / "model.bin").write_bytes(b"GGML" + b"\0" * 60)
    with pytest.raises(UserError, match=r"model\.bin: not a GGUF file \(it starts with b'GGML', not b'GGUF'\)"):
        GGUFFile(tmp_path / "model.bin")
    with pytest.raises(UserError, match=r"v1\.gguf: GGUF version 1 is not supported \(readable: 2, 3\)$"):
        GGUFFile(write(tmp_path / "v1.gguf", version=1))
    big_endian = bytearray(write(tmp_path / "big.gguf").read_bytes())
    big_endian[4:8] = struct.pack(">I", 3)
    (tmp_path / "big.gguf").write_bytes(big_endian)
    with pytest.raises(UserError, match=r"GGUF version 50331648 is not supported .*; it is a big-endian file"):
        GGUFFile(tmp_path / "big.gguf")


def corrupt(tmp_path, name, **kwargs):
    with pytest.raises(UserError) as error:
        GGUFFile(write(tmp_path / name, **kwargs))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / name}: cannot read the GGUF file (")
    assert message.endswith("); it is truncated or corrupt, download it again") and "\n" not in message
    return message


@pytest.mark.parametrize("end", [10, 100, -30])  # in the header, in the metadata, in the last tensor's data
def test_truncated_files(tmp_path, end):
    path = write(tmp_path / "model.gguf")
    path.write_bytes(path.read_bytes()[:end])  # (the last 24 bytes are the padding after the Q8_0 rows)
    with pytest.raises(UserError, match=r"model\.gguf: cannot read the GGUF file \(it ends too early[:)]"):
        GGUFFile(path)


def test_corrupt_files(tmp_path):
    w = tensors()[0]
    assert "tensor 'w' appears twice" in corrupt(tmp_path, "twice.gguf", tensor_list=[w, w])
    assert "tensor 'w' has unknown type 99" in corrupt(tmp_path, "type.gguf", tensor_list=[(*w[:2], 99, w[3])])
    assert "tensor 'q': rows of 48 do not fill whole Q8_0 blocks" in corrupt(
        tmp_path, "blocks.gguf", tensor_list=[("q", (48, 1), Q8_0_TYPE, b"\0" * 68)])
    assert "general.alignment 48 is not a power of two" in corrupt(
        tmp_path, "align.gguf", metadata={"general.alignment": (U32, 48)})
    assert "unknown metadata value type 13" in corrupt(tmp_path, "value.gguf", metadata={"x": (13, b"")})
    assert "UnicodeDecodeError" in corrupt(tmp_path, "utf8.gguf", metadata={"x": (STRING, b"\xff\xfe")})

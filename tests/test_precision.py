"""Tests for lit_gpt/precision.py: bf16 detection, the --precision default, param dtypes and --quantize checks."""

import sys
import types

import pytest
import torch

from lit_gpt import precision as P
from lit_gpt.precision import choose_precision, quantization_plugin
from lit_gpt.utils import UserError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny training steps: see conftest.one_thread

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Test CPU
flags\t\t: fpu vme sse sse2 avx avx2 {extra}
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu vme sse sse2 avx avx2 {extra}
"""


def write_cpuinfo(tmp_path, extra="", name="cpuinfo"):
    path = tmp_path / name
    path.write_text(CPUINFO.format(extra=extra))
    return path


@pytest.mark.parametrize("extra", ["amx_bf16", "avx512f avx512_bf16", "amx_tile amx_bf16 amx_int8"])
def test_cpu_supports_bf16_with_native_flags(tmp_path, extra):
    assert P.cpu_supports_bf16(write_cpuinfo(tmp_path, extra)) is True
    assert P.cpu_supports_bf16(str(write_cpuinfo(tmp_path, extra, "as_str"))) is True


@pytest.mark.parametrize("extra", ["", "avx512f avx512bw avx512_vnni", "amx_tile amx_int8", "avx512_fp16"])
def test_cpu_supports_bf16_without_native_flags(tmp_path, extra, monkeypatch):
    # a flags line decides on its own: the torch fallback must not be consulted
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: pytest.fail("fallback used"))
    assert P.cpu_supports_bf16(write_cpuinfo(tmp_path, extra)) is False


def test_cpu_supports_bf16_only_reads_flags_line(tmp_path, monkeypatch):
    # "amx_bf16" elsewhere than in the flags line does not count
    path = tmp_path / "cpuinfo"
    path.write_text("model name\t: amx_bf16 avx512_bf16\nflags\t\t: fpu sse avx2\n")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AMX")
    assert P.cpu_supports_bf16(path) is False


def test_cpu_supports_bf16_falls_back_to_torch_without_flags(tmp_path, monkeypatch):
    no_flags = tmp_path / "cpuinfo"
    no_flags.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # aarch64 style: no "flags" line
    missing = tmp_path / "does-not-exist"
    for capability, expected in [("AVX512", False), ("AVX2", False), ("DEFAULT", False), ("amx", True),
                                 ("AVX512_BF16", True)]:
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        assert P.cpu_supports_bf16(no_flags) is expected, capability
        assert P.cpu_supports_bf16(missing) is expected, capability
        assert P.cpu_supports_bf16(tmp_path) is expected, capability  # a directory: OSError, not a crash


@pytest.mark.parametrize("precision", P.PRECISIONS)
def test_choose_precision_explicit_values_are_returned(precision, tmp_path):
    cpuinfo = write_cpuinfo(tmp_path, "amx_bf16")
    for cuda in (None, True, False):
        assert P.choose_precision(precision, cuda=cuda, cpuinfo=cpuinfo) == precision


@pytest.mark.parametrize("bad", ["bf16", "32", "fp16", "BF16-TRUE", "", "64-true", "transformer-engine"])
def test_choose_precision_invalid_value(bad):
    with pytest.raises(UserError) as exc:
        P.choose_precision(bad, cuda=False)
    message = str(exc.value)
    assert repr(bad) in message
    assert all(p in message for p in P.PRECISIONS)


def test_choose_precision_default_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("asked CUDA on CPU"))
    assert P.choose_precision(None, cuda=False, cpuinfo=write_cpuinfo(tmp_path, "avx512_bf16")) == "bf16-true"
    assert P.choose_precision(None, cuda=False, cpuinfo=write_cpuinfo(tmp_path, "avx512f")) == "32-true"


@pytest.mark.parametrize("bf16", [True, False])
def test_choose_precision_default_on_cuda(tmp_path, monkeypatch, bf16):
    def native_bf16(including_emulation=True):  # a pre-Ampere GPU: bf16 tensors work, bf16 math is emulated
        return bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native_bf16)
    # the cpuinfo file is irrelevant once a GPU is used
    for extra in ("amx_bf16", ""):
        expected = "bf16-true" if bf16 else "32-true"
        assert P.choose_precision(None, cuda=True, cpuinfo=write_cpuinfo(tmp_path, extra)) == expected


def test_choose_precision_cuda_none_asks_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.choose_precision(None, cpuinfo=write_cpuinfo(tmp_path, "amx_bf16")) == "bf16-true"
    assert P.choose_precision(None, cpuinfo=write_cpuinfo(tmp_path, "")) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.choose_precision(None, cpuinfo=write_cpuinfo(tmp_path, "amx_bf16")) == "32-true"


@pytest.mark.parametrize("precision, dtype", [("bf16-true", torch.bfloat16), ("16-true", torch.float16),
                                              ("bf16-mixed", torch.float32), ("16-mixed", torch.float32),
                                              ("32-true", torch.float32)])
def test_param_dtype(precision, dtype):
    assert P.param_dtype(precision) is dtype


def test_quantization_plugin_none_when_not_quantizing():
    for precision in P.PRECISIONS + ("anything",):
        for cuda in (None, True, False):
            assert P.quantization_plugin(None, precision, cuda=cuda) is None


@pytest.mark.parametrize("bad", ["nf4", "bnb.int8", "bnb.nf8", "gptq.int4", ""])
def test_quantization_plugin_unknown_mode(bad):
    with pytest.raises(UserError, match="is not supported") as exc:
        P.quantization_plugin(bad, "bf16-true", cuda=True)
    assert all(m in str(exc.value) for m in P.QUANTIZE_MODES)


@pytest.mark.parametrize("mode", P.QUANTIZE_MODES)
def test_quantization_plugin_needs_cuda(mode, monkeypatch):
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        P.quantization_plugin(mode, "bf16-true", cuda=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="without --quantize"):
        P.quantization_plugin(mode, "bf16-true")


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_quantization_plugin_rejects_mixed_precision(precision):
    with pytest.raises(UserError, match="cannot be combined with --precision " + precision):
        P.quantization_plugin("bnb.nf4", precision, cuda=True)


def test_quantization_plugin_without_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` raise ImportError
    with pytest.raises(UserError, match="pip install bitsandbytes"):
        P.quantization_plugin("bnb.nf4", "bf16-true", cuda=True)


@pytest.mark.parametrize("quantize, precision, mode, dtype", [
    ("bnb.nf4", "bf16-true", "nf4", torch.bfloat16),
    ("bnb.nf4-dq", "16-true", "nf4-dq", torch.float16),
    ("bnb.fp4", "32-true", "fp4", torch.float32),
    ("bnb.fp4-dq", "bf16-true", "fp4-dq", torch.bfloat16),
    ("bnb.int8-training", "bf16-true", "int8-training", torch.float16),  # int8 needs float16 whatever --precision
])
def test_quantization_plugin_builds_fabric_plugin(monkeypatch, quantize, precision, mode, dtype):
    class Recorder:  # stands in for Fabric's plugin, whose constructor needs real bitsandbytes + CUDA
        def __init__(self, mode, dtype):
            self.mode, self.dtype = mode, dtype

    # fake modules keep the test fast (importing lightning takes seconds) and independent of what is installed
    plugins = types.ModuleType("lightning.fabric.plugins")
    plugins.BitsandbytesPrecision = Recorder
    monkeypatch.setitem(sys.modules, "lightning.fabric.plugins", plugins)
    monkeypatch.setitem(sys.modules, "bitsandbytes", types.ModuleType("bitsandbytes"))
    plugin = P.quantization_plugin(quantize, precision, cuda=True)
    assert isinstance(plugin, Recorder)
    assert (plugin.mode, plugin.dtype) == (mode, dtype)


def test_precision_default_follows_the_hardware(tmp_path):
    amx = tmp_path / "cpuinfo_amx"
    amx.write_text("processor : 0\nflags : fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    avx2 = tmp_path / "cpuinfo_avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx2 fma\n")
    assert choose_precision(None, cuda=False, cpuinfo=amx) == "bf16-true"
    assert choose_precision(None, cuda=False, cpuinfo=avx2) == "32-true"
    assert choose_precision("bf16-mixed", cuda=False, cpuinfo=avx2) == "bf16-mixed"
    with pytest.raises(UserError, match="--precision 'fp8'"):
        choose_precision("fp8")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        quantization_plugin("bnb.nf4", "bf16-true", cuda=False)
    with pytest.raises(UserError, match="cannot be combined"):
        quantization_plugin("bnb.nf4", "bf16-mixed", cuda=True)
    with pytest.raises(UserError, match="not supported"):
        quantization_plugin("bnb.nf3", "bf16-true", cuda=True)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="pip install bitsandbytes"):
            quantization_plugin("bnb.nf4", "bf16-true", cuda=True)


def test_inference_device_is_checked(monkeypatch):
    from lit_gpt.precision import device_and_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_and_dtype("cpu", "32-true") == (torch.device("cpu"), torch.float32)
    with pytest.raises(UserError, match="--device cuda:7: this machine has no CUDA GPU; use --device cpu"):
        device_and_dtype("cuda:7", None)
    with pytest.raises(UserError, match="--device 'gpu0': not a device"):
        device_and_dtype("gpu0", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match="this machine has 2 CUDA GPU\\(s\\), cuda:0 to cuda:1"):
        device_and_dtype("cuda:7", "32-true")

"""Precision and device: the `--precision` default for this machine, `--quantize` through bitsandbytes, and the
`--device` default of inference (`device_and_dtype`).

bf16 halves memory and is as fast or faster wherever the hardware has bf16 matrix units (recent NVIDIA GPUs, CPUs
with AMX or AVX512-BF16); elsewhere bf16 is emulated and slow, so float32 is the default there.
"""

import os
from pathlib import Path
from typing import Optional

import torch

from lit_gpt.utils import UserError

PRECISIONS = ("bf16-true", "bf16-mixed", "16-true", "16-mixed", "32-true")
DEFAULT_PRECISION_ENV = "LIT_GPT_DEFAULT_PRECISION"
QUANTIZE_MODES = ("bnb.nf4", "bnb.nf4-dq", "bnb.fp4", "bnb.fp4-dq", "bnb.int8-training")


def cpu_supports_bf16(cpuinfo: "str | Path" = "/proc/cpuinfo") -> bool:
    """True if the CPU has native bf16 matrix instructions (AMX or AVX512-BF16)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[-1].split())
            return bool(flags & {"amx_bf16", "avx512_bf16"})
    # no /proc/cpuinfo (macOS, Windows): ask torch which vector ISA its kernels were dispatched to
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "AMX" in capability or "BF16" in capability


def choose_precision(precision: Optional[str], cuda: Optional[bool] = None, cpuinfo: "str | Path" = "/proc/cpuinfo") -> str:
    """The given --precision, checked, or the default: the environment variable LIT_GPT_DEFAULT_PRECISION when set
    (so the whole test suite can be run as a machine with or without native bf16 would run it), else bf16-true where
    bf16 is native, else 32-true."""
    forced = os.environ.get(DEFAULT_PRECISION_ENV)
    if precision is None and forced:
        if forced not in PRECISIONS:
            raise UserError(f"{DEFAULT_PRECISION_ENV}={forced!r} is not a precision; use one of {', '.join(PRECISIONS)}")
        return forced
    if precision is not None:
        if precision not in PRECISIONS:
            raise UserError(f"--precision {precision!r} is not supported; use one of {', '.join(PRECISIONS)}")
        return precision
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        # native only: before Ampere (T4, V100) torch can create bf16 tensors but emulates the math, slowly
        return "bf16-true" if torch.cuda.is_bf16_supported(including_emulation=False) else "32-true"
    return "bf16-true" if cpu_supports_bf16(cpuinfo) else "32-true"


def param_dtype(precision: str) -> torch.dtype:
    """The dtype the weights are stored in during training (mixed precision keeps float32 master weights)."""
    return {"bf16-true": torch.bfloat16, "16-true": torch.float16}.get(precision, torch.float32)


def quantization_plugin(quantize: Optional[str], precision: str, cuda: Optional[bool] = None):
    """Fabric's BitsandbytesPrecision for --quantize, or None. Raises UserError where it cannot work."""
    if quantize is None:
        return None
    if quantize not in QUANTIZE_MODES:
        raise UserError(f"--quantize {quantize!r} is not supported; use one of {', '.join(QUANTIZE_MODES)}")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not cuda:
        raise UserError(f"--quantize {quantize} needs a CUDA GPU (bitsandbytes kernels); "
                        "on this machine train without --quantize")
    if "mixed" in precision:
        raise UserError(f"--quantize {quantize} cannot be combined with --precision {precision}; "
                        "use bf16-true, 16-true or 32-true")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(f"--quantize {quantize} needs the bitsandbytes package: pip install bitsandbytes") from None
    from lightning.fabric.plugins import BitsandbytesPrecision

    mode = quantize[len("bnb."):]
    dtype = torch.float16 if mode.startswith("int8") else param_dtype(precision)
    return BitsandbytesPrecision(mode=mode, dtype=dtype)


def device_and_dtype(device: Optional[str], precision: Optional[str]) -> tuple[torch.device, torch.dtype]:
    """--device (default cuda when available) and the weight dtype --precision asks for on it."""
    try:
        chosen = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError):
        raise UserError(f"--device {device!r}: not a device; use cpu, cuda or cuda:N") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device}: this machine has no CUDA GPU; use --device cpu")
        if chosen.index is not None and chosen.index >= count:
            raise UserError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif chosen.type != "cpu":
        raise UserError(f"--device {device}: only cpu and cuda devices are supported")
    return chosen, param_dtype(choose_precision(precision, cuda=chosen.type == "cuda"))


def check_precision_for_device(precision: str, cuda: bool) -> None:
    """float16 needs a GPU: on a CPU Lightning silently runs bf16-mixed instead of 16-mixed, so the log would lie."""
    if precision.startswith("16-") and not cuda:
        raise UserError(f"--precision {precision}: float16 training needs a CUDA GPU (on a CPU, Lightning would "
                        "run bf16-mixed instead); use bf16-true, bf16-mixed or 32-true")

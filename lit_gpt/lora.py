"""Low-rank adaptation (LoRA): train a small update B A beside each chosen frozen weight W.

A wrapped layer computes W x + b + s B A dropout(x) with A (r x in) random and B (out x r) zero at the start, so
training begins exactly at the base model. Variants (`LoRAConfig.variant`):
- lora: s = alpha / r (Hu et al., 2021);
- rslora: s = alpha / sqrt(r), rank-stabilized (Kalajdzievski, 2023): the update's size no longer shrinks as r grows;
- dora: weight-decomposed (Liu et al., 2024): the weight is m * (W + s B A) / ||W + s B A||, the norm of each output
  row (the paper's column norm of W^T), with a trained magnitude vector m (out,) that starts at the row norms of W.
  As in the paper's section 4.3 and PEFT, the norm is treated as a constant in backward (detached).

The base layer stays a child `linear` of `LoRALinear`, which keeps it a plain `nn.Linear` that quantization
(bitsandbytes) can replace; only the LoRA tensors are saved: `lit_model.pth.lora` holds
{"blocks.0.attn.q.lora_A": (r, in), "blocks.0.attn.q.lora_B": (out, r), ...} (DoRA also
"blocks.0.attn.q.lora_magnitude": (out,)) and `lora_config.json` the `LoRAConfig` needed to rebuild the layers,
variant included (a file without one is plain LoRA). Merging a fine-tune into its base (a plain GPT state dict with
the usual parameter names, a merged checkpoint) is in `lit_gpt.lora_merge`.
"""

import contextlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from lit_gpt.file_names import LORA_CONFIG_FILE
from lit_gpt.model import GPT
from lit_gpt.utils import UserError, atomic_write_text, load_state_dict
from lit_gpt.json_files import read_json

# what each LoRA target means in our GPT
LORA_TARGETS = {
    "query": "attn.q",
    "key": "attn.k",
    "value": "attn.v",
    "projection": "attn.proj (attention output)",
    "mlp": "mlp.fc_1/fc_2/proj or mlp.fc/proj",
    "head": "lm_head (the output layer; stays tied to the embedding when the model ties them)",
}
LORA_VARIANTS = {
    "lora": "the update scaled by alpha / r",
    "rslora": "rank-stabilized: the update scaled by alpha / sqrt(r), so that its size does not shrink as r grows",
    "dora": "weight-decomposed: a trained magnitude per output row times the normalized W + update",
}
LORA_TENSOR_NAMES = ("lora_A", "lora_B", "lora_magnitude")  # what a LoRA layer trains and saves
MAX_LORA_RANK = 1 << 13  # far above any useful rank (8 to 256 are usual); a lora_config.json with more is refused


@dataclass
class LoRAConfig:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple = ("query", "value")
    variant: str = "lora"

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.variant not in LORA_VARIANTS:
            raise UserError(f"--lora_variant {self.variant!r}: choose from "
                            + "; ".join(f"{k} ({v})" for k, v in LORA_VARIANTS.items()))
        if isinstance(self.r, bool) or not isinstance(self.r, int) or not 1 <= self.r <= MAX_LORA_RANK:
            # checked before any layer is built: a rank of 10^9 would have LoRALinear allocate terabytes
            raise UserError(f"--lora_r {self.r!r}: the LoRA rank must be a whole number from 1 to {MAX_LORA_RANK}")
        if not self.alpha > 0:
            raise UserError(f"--lora_alpha {self.alpha}: must be above 0 (the update is scaled by alpha / r, so 0 "
                            "would train nothing); the usual choice is 2 x r")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        unknown = [t for t in self.targets if t not in LORA_TARGETS]
        if unknown:
            raise UserError(f"unknown LoRA targets {unknown}; choose from {', '.join(LORA_TARGETS)}")
        if not self.targets:
            raise UserError("LoRA needs at least one target layer (e.g. --lora_query true)")

    @property
    def scaling(self) -> float:
        return lora_scaling(self.alpha, self.r, self.variant)

    def apply(self, model: GPT) -> "LoRAConfig":
        """Replaces the target Linears of `model` in place by LoRALinear wrappers around them. Base weights are kept
        as they are (same tensors, same dtype and device; a tied head stays tied)."""
        if any(isinstance(m, LoRALinear) for m in model.modules()):
            raise ValueError("the model already has LoRA layers")
        for parent, name in _target_layers(model, self.targets):
            linear = getattr(parent, name)
            tied = parent is model and name == "lm_head" and linear.weight is model.wte.weight
            setattr(parent, name, LoRALinear(linear, self.r, self.alpha, self.dropout, tied=tied,
                                             variant=self.variant))
        return self

    def save(self, directory: "str | Path") -> Path:
        path = Path(directory) / LORA_CONFIG_FILE
        atomic_write_text(path, json.dumps({**asdict(self), "targets": list(self.targets)}, indent=2) + "\n")
        return path

    @classmethod
    def from_file(cls, path: "str | Path") -> "LoRAConfig":
        """Reads lora_config.json (or the file in the given directory)."""
        path = Path(path)
        if path.is_dir():
            path = path / LORA_CONFIG_FILE
        if not path.is_file():
            raise UserError(f"{path}: LoRA config not found; point to the output directory of finetune/lora.py")
        data = read_json(path, "LoRA config", fix="point to the output directory of finetune/lora.py")
        data.setdefault("dropout", 0.0)
        # checked here, before any layer is built: a rank of 10^9 would have LoRALinear allocate terabytes
        checks = {"r": (lambda r: type(r) is int and 1 <= r <= MAX_LORA_RANK,
                        f"a whole number from 1 to {MAX_LORA_RANK}"),
                  "alpha": (lambda a: type(a) in (int, float) and 0 < a < 1e6, "a number above 0 (below 10^6)"),
                  "dropout": (lambda d: type(d) in (int, float) and 0 <= d < 1, "a number in [0, 1)"),
                  "targets": (lambda t: type(t) is list and all(type(x) is str for x in t), "a list of layer names")}
        for key, (fits, wanted) in checks.items():
            if key not in data:
                raise UserError(f"{path}: {key} missing; not a LoRA config written by finetune/lora.py")
            if not fits(data[key]):
                raise UserError(f"{path}: {key} = {data[key]!r}: must be {wanted}")
        try:
            return cls(r=data["r"], alpha=float(data["alpha"]), dropout=float(data["dropout"]),
                       targets=tuple(data["targets"]), variant=str(data.get("variant", "lora")))
        except UserError as e:
            raise UserError(f"{path}: {e}") from None


def lora_scaling(alpha: float, r: int, variant: str = "lora") -> float:
    """s, the factor of B A: alpha / sqrt(r) for rsLoRA, alpha / r otherwise."""
    return alpha / math.sqrt(r) if variant == "rslora" else alpha / r


class LoRALinear(nn.Module):
    """nn.Linear plus a trainable low-rank update (of a LORA_VARIANTS `variant`). `tied` marks a base weight shared
    with another module (the LM head tied to the embedding): merging then builds a separate merged weight instead of
    editing the shared one, as it does for DoRA, whose merged weight cannot be undone by a subtraction."""

    def __init__(self, linear: nn.Linear, r: int, alpha: float, dropout: float = 0.0, tied: bool = False,
                 variant: str = "lora") -> None:
        super().__init__()
        self.linear = linear
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.r, self.scaling, self.tied, self.variant = r, lora_scaling(alpha, r, variant), tied, variant
        weight = linear.weight
        dtype = weight.dtype if weight.is_floating_point() else torch.get_default_dtype()
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=weight.device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(self.out_features, r, device=weight.device, dtype=dtype))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.enabled = True  # False: the base layer alone (`lora_disabled`)
        self._unmerged_weight: tuple = ()  # the base weight while a tied or DoRA layer is merged
        if variant == "dora":  # m starts at ||W||: with B = 0 the layer starts exactly at the base layer
            self.lora_magnitude = nn.Parameter(row_norms(self._plain_weight().detach()).to(dtype))
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        # A like nn.Linear's default init, B zero: the update B A starts at exactly zero
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """s B A, the (out x in) update this layer adds to W (DoRA then rescales the rows of the sum)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def merged_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """The plain weight (out x in, `weight`'s dtype) this layer computes with: W + s B A, and for DoRA
        m / ||W + s B A|| times that, row by row (in the LoRA tensors' precision, e.g. float32 over a bf16 base)."""
        delta = self.delta_weight().detach()
        if self.variant != "dora":
            return weight + delta.to(weight.dtype)
        combined = weight.to(delta.dtype) + delta
        return (combined * (self.lora_magnitude.detach() / row_norms(combined)).view(-1, 1)).to(weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        if self.merged or not self.enabled:
            return y
        x_lora = self.dropout(x)
        lora = F.linear(F.linear(x_lora, self.lora_A.to(x.dtype)), self.lora_B.to(x.dtype)) * self.scaling
        if self.variant != "dora":
            return y + lora
        return self._dora_forward(x_lora, y, lora)

    def _dora_forward(self, x_lora: torch.Tensor, y: torch.Tensor, lora: torch.Tensor) -> torch.Tensor:
        """m / ||W + s B A|| (W x + s B A x) + b, written as PEFT writes it: the base output y is reused, and under
        dropout the rescaled base term sees the dropped-out input as the LoRA term does."""
        weight = self._plain_weight().to(x_lora.dtype)
        delta = self.delta_weight().detach().to(x_lora.dtype)
        scale = self.lora_magnitude.to(x_lora.dtype) / row_norms(weight + delta).detach()
        if isinstance(self.dropout, nn.Identity) or not self.training:
            base = y if self.linear.bias is None else y - self.linear.bias.to(y.dtype)
        else:
            base = F.linear(x_lora, weight)
        return y + (scale - 1) * base + scale * lora

    def merge(self) -> None:
        """Folds the update into the base weight so forward costs one matmul (inference)."""
        if self.merged:
            return
        weight = self._plain_weight()
        merged = self.merged_weight(weight.data)
        if self.tied or self.variant == "dora":
            self._unmerged_weight = (weight,)
            self.linear.weight = nn.Parameter(merged, requires_grad=False)
        else:
            weight.data.copy_(merged)
        self.merged = True

    def unmerge(self) -> None:
        if not self.merged:
            return
        if self._unmerged_weight:
            self.linear.weight = self._unmerged_weight[0]
            self._unmerged_weight = ()
        else:
            weight = self._plain_weight()
            weight.data.sub_(self.delta_weight().detach().to(weight.dtype))
        self.merged = False

    def _plain_weight(self) -> torch.Tensor:
        weight = self.linear.weight
        if not weight.is_floating_point() or type(self.linear) is not nn.Linear:
            if self.variant == "dora":  # its forward needs ||W + s B A|| at every step
                raise UserError("DoRA needs the base weights themselves (their row norms, at every step): train "
                                "--lora_variant dora without --quantize")
            raise UserError("cannot merge LoRA into a quantized base layer; load the base model without --quantize "
                            "to merge")
        return weight


def _target_layers(model: GPT, targets: "set[str] | tuple") -> Iterator[tuple[nn.Module, str]]:
    """(parent module, attribute name) of every Linear that `targets` selects."""
    for block in model.blocks:
        attn, mlp = block.attn, block.mlp
        for target, name in (("query", "q"), ("key", "k"), ("value", "v"), ("projection", "proj")):
            if target in targets:
                yield attn, name
        if "mlp" in targets:
            for name in ("fc_1", "fc_2", "fc", "proj"):
                if hasattr(mlp, name):
                    yield mlp, name
    if "head" in targets:
        yield model, "lm_head"


def row_norms(weight: torch.Tensor) -> torch.Tensor:
    """||W|| of each output row of an (out x in) weight: DoRA's column norm (the paper writes W as in x out)."""
    # float32 at least: a bf16 sum of squares over thousands of inputs would lose the norm's last digits
    return torch.linalg.norm(weight, dim=1, dtype=torch.promote_types(weight.dtype, torch.float32)).to(weight.dtype)


def is_lora_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in LORA_TENSOR_NAMES


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = is_lora_name(name)


@contextlib.contextmanager
def lora_disabled(model: nn.Module) -> Iterator[None]:
    """Inside it, every LoRA layer computes its base layer alone: the frozen base model's outputs from the model
    being trained, without a second copy of it (DPO's reference model)."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    if any(m.merged for m in layers):
        raise ValueError("lora_disabled needs unmerged LoRA layers (a merged update is part of the base weight)")
    for m in layers:
        m.enabled = False
    try:
        yield
    finally:
        for m in layers:
            m.enabled = True


def lora_state_dict(model: nn.Module) -> dict:
    """Only the LoRA tensors, under their parameter names ("blocks.0.attn.q.lora_A", ...)."""
    return {k: v for k, v in model.state_dict().items() if is_lora_name(k)}


def load_lora_weights(model: GPT, source: "str | Path | dict") -> None:
    """Loads LoRA tensors (a `lit_model.pth.lora` file or its dict) into a model that `LoRAConfig.apply` prepared.
    Every LoRA layer of the model must get its tensors and every tensor must fit, else UserError."""
    state = source if isinstance(source, dict) else load_state_dict(source)
    name = "LoRA weights" if isinstance(source, dict) else str(source)
    expected = set(lora_state_dict(model))
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UserError(f"{name}: LoRA weights do not fit the model (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}); use the lora_config.json and base checkpoint they were trained with")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise UserError(f"{name}: LoRA weights do not fit the model ({str(e).splitlines()[-1].strip()}); "
                        "use the lora_config.json and base checkpoint they were trained with") from None


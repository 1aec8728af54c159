"""The fine-tuning hyperparameters: `TrainArgs` (the loop's), the LoRA flags, their checks, and the flat
name -> value form that the scripts' constants, the command line and hyperparameters.yaml share.
"""

import importlib.util
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Optional

from lit_gpt.data.order import ORDERS, check_order
from lit_gpt.lora import LORA_TARGETS, LORA_VARIANTS, LoRAConfig
from lit_gpt.precision import PRECISIONS, QUANTIZE_MODES
from lit_gpt.utils import UserError


# --logger: the logger beside the CSV file (which is always written: tests, scripts and people read its rows)
LOGGERS = {"csv": "only the CSV file", "tensorboard": "logs/tensorboard",
           "wandb": "Weights & Biases (WANDB_PROJECT, default lit-gpt-data; WANDB_MODE=offline works without an "
                    "account; pip install 'lit-gpt-data[wandb]')",
           "mlflow": "MLflow (MLFLOW_TRACKING_URI, default logs/mlruns in out_dir; MLFLOW_EXPERIMENT_NAME, default "
                     "lit-gpt-data; pip install 'lit-gpt-data[mlflow]')"}
LOGGER_MODULES = {"wandb": ("wandb", "Weights & Biases"), "mlflow": ("mlflow", "MLflow")}  # the optional extras


def _hp(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainArgs:
    """Hyperparameters of the training loop, and the one home of their defaults: finetune/lora.py and full.py
    repeat them as constants for users to edit (tests/scripts/test_finetune_scripts.py checks that they agree)."""

    learning_rate: float = _hp(3e-4, "peak learning rate (AdamW), reached after the warmup")
    batch_size: int = _hp(128, "examples per optimizer step, over all devices")
    micro_batch_size: int = _hp(4, "examples per forward/backward pass on one device; "
                                   "batch_size / (micro_batch_size x devices) passes are accumulated per step")
    max_iters: Optional[int] = _hp(None, "stop after this many optimizer steps (None: train all epochs)")
    epochs: Optional[int] = _hp(None, "passes over the training set; training stops at max_iters or after the last "
                                      "epoch, whichever comes first (None: as many as max_iters needs, else 1)")
    weight_decay: float = _hp(0.01, "AdamW weight decay (norms and biases are not decayed)")
    warmup_steps: int = _hp(100, "linear warmup steps (at most half of all steps), then cosine decay to 0")
    grad_clip: Optional[float] = _hp(1.0, "clip the gradient norm to this (None: no clipping)")
    override_max_seq_length: Optional[int] = _hp(None, "truncate examples to this many input tokens "
                                                       "(None: the longest example, at most the model's block_size)")
    eval_interval: int = _hp(100, "validate every this many steps (and at the end of every epoch)")
    eval_iters: Optional[int] = _hp(None, "validation micro-batches per device (None: the whole test set)")
    sample_max_new_tokens: int = _hp(64, "tokens of the sample answer generated at each validation (0: none)")
    save_interval: int = _hp(1000, "save a checkpoint every this many steps (and at the end)")
    seed: int = _hp(1337, "seed of the LoRA init, the data order and dropout")
    precision: Optional[Literal[PRECISIONS]] = _hp(
        None, ", ".join(PRECISIONS) + " (None: bf16-true where bf16 is native, else 32-true)")
    quantize: Optional[Literal[QUANTIZE_MODES]] = _hp(
        None, "quantize the frozen base weights (LoRA only; CUDA + bitsandbytes): " + ", ".join(QUANTIZE_MODES))
    devices: int = _hp(1, "devices (GPUs or CPU processes) per node")
    num_nodes: int = _hp(1, "nodes (machines); launch with torchrun or SLURM")
    strategy: Literal["auto", "ddp", "fsdp"] = _hp("auto", "multi-device strategy: auto, ddp or fsdp")
    order: str = _hp("shuffle", "order of the examples in each epoch: "
                                + "; ".join(f"{k}: {v}" for k, v in ORDERS.items()))
    packing: bool = _hp(False, "pack several examples into each row of max_seq_length tokens (attention and positions "
                               "kept per example): the same examples, loss and gradients per step, no padding; "
                               "micro_batch_size then counts rows")
    neftune_noise_alpha: Optional[float] = _hp(None, "NEFTune: uniform noise on the embeddings in training, scaled "
                                                     "by alpha / sqrt(length x width); 5 is the paper's usual value "
                                                     "(None: off)")
    early_stopping_patience: Optional[int] = _hp(None, "stop after this many validations without a better val "
                                                       "loss and keep the best weights (None: off)")
    gradient_checkpointing: bool = _hp(False, "recompute activations in backward: less memory, ~30% slower")
    compile: bool = _hp(False, "torch.compile the transformer blocks: fused elementwise work, less activation memory "
                               "(fewer kernel launches on GPU), after a one-off compile of about a minute")
    logger: Literal[tuple(LOGGERS)] = _hp("tensorboard", "where the metrics go besides logs/csv/metrics.csv (always "
                                                  "written): " + "; ".join(f"{k}: {v}" for k, v in LOGGERS.items()))


PREFERENCE_LOSSES = ("dpo", "ipo", "simpo", "orpo")  # lit_gpt.train.preference
REFERENCE_LOSSES = ("dpo", "ipo")  # the ones that compare with a frozen reference model
NOT_FOR_PAIRS = ("by_length_asc", "by_length_desc", "curriculum")  # orders of instruction examples only
LOSS_BETAS = {"dpo": 0.1, "ipo": 0.1, "simpo": 2.0, "orpo": 0.1}  # --beta None: the papers' and TRL's defaults


@dataclass
class PreferenceArgs:
    """The preference loss of finetune/dpo.py and its settings (one home of their defaults, as TrainArgs)."""

    method: Literal["lora", "full"] = _hp("lora", "lora: train LoRA tensors, the reference is the same model with "
                                                  "LoRA off; full: every weight, the reference log-probabilities "
                                                  "computed once before training")
    loss: Literal[PREFERENCE_LOSSES] = _hp("dpo", "dpo, ipo, simpo (no reference) or orpo (no reference, the SFT "
                                                  "loss built in)")
    beta: Optional[float] = _hp(None, "dpo: scale of the log-ratio (higher: stay closer to the reference); ipo: tau; "
                                      "simpo: scale of the average log-probability; orpo: lambda, the weight of "
                                      "the odds-ratio term (None: the loss's usual value, "
                                      + ", ".join(f"{k} {v}" for k, v in LOSS_BETAS.items()) + ")")
    label_smoothing: float = _hp(0.0, "dpo: the share of pairs assumed mislabeled (conservative DPO), 0 to 0.5")
    simpo_gamma: float = _hp(0.5, "simpo: the target reward margin")

    @property
    def loss_beta(self) -> float:
        return self.beta if self.beta is not None else LOSS_BETAS[self.loss]


def check_preference_args(args: PreferenceArgs, train: TrainArgs) -> None:
    if args.loss not in PREFERENCE_LOSSES:
        raise UserError(f"--loss {args.loss!r}: choose from {', '.join(PREFERENCE_LOSSES)}")
    if args.beta is not None and not args.beta > 0:
        raise UserError(f"--beta {args.beta}: must be above 0")
    if not 0 <= args.label_smoothing < 0.5:
        raise UserError(f"--label_smoothing {args.label_smoothing}: must be in [0, 0.5)")
    if train.neftune_noise_alpha is not None and args.loss in REFERENCE_LOSSES:
        raise UserError(f"--neftune_noise_alpha with --loss {args.loss}: the noise would make the policy differ "
                        "from its reference by chance; use --neftune_noise_alpha null")
    if train.order in NOT_FOR_PAIRS:
        raise UserError(f"--order {train.order} is not available for preference pairs; use shuffle, by_source or "
                        "as_given")


LORA_HELP = {"r": "rank of the LoRA update",
             "alpha": "the LoRA update is scaled by alpha / r (rslora: alpha / sqrt(r))",
             "dropout": "dropout on the input of the LoRA path",
             "variant": "; ".join(f"{k}: {v}" for k, v in LORA_VARIANTS.items()),
             **{t: f"LoRA on {what}" for t, what in LORA_TARGETS.items()}}


def hyperparameter_specs(preference: bool = False) -> dict:
    """Every hyperparameter a script may set as a constant: name -> (type, default, help). The LoRA ones are
    `lora_r`, `lora_alpha`, `lora_dropout`, `lora_variant` and one switch per target layer (`lora_query`, ...);
    `preference` adds PreferenceArgs' (finetune/dpo.py)."""
    specs = {f.name: (f.type, f.default, f.metadata["help"])
             for f in (*fields(TrainArgs), *(fields(PreferenceArgs) if preference else ()))}
    default = LoRAConfig()
    for name, annotation in (("r", int), ("alpha", float), ("dropout", float), ("variant", str)):
        specs[f"lora_{name}"] = (annotation, getattr(default, name), LORA_HELP[name])
    for target in LORA_TARGETS:
        specs[f"lora_{target}"] = (bool, target in default.targets, LORA_HELP[target])
    return specs


# the documented differences between the two scripts: finetune/full.py has no LoRA flags and none of these
LORA_ONLY = ("quantize",)  # full fine-tuning updates every weight: no frozen base to quantize


def method_defaults(method: Literal["lora", "full"]) -> dict:
    """name -> default of every hyperparameter of a method: the constants finetune/<method>.py ships with (a test
    checks that they agree), and the names its --hyperparameters may set."""
    return {name: default for name, (_, default, _) in hyperparameter_specs().items()
            if method == "lora" or not (name.startswith("lora_") or name in LORA_ONLY)}


def typed_hyperparameters(values: dict, method: Literal["lora", "full"]) -> tuple[TrainArgs, Optional[LoRAConfig]]:
    """The loop's typed arguments that flat hyperparameters (the scripts' constants and flags) describe; a missing
    one takes its default, an unknown one is refused."""
    unknown = sorted(set(values) - set(method_defaults(method)))
    if unknown:
        raise UserError(f"hyperparameters {unknown} are not constants of finetune/{method}.py; see its --help")
    train_names = {f.name for f in fields(TrainArgs)}
    train = TrainArgs(**{k: v for k, v in values.items() if k in train_names})
    lora = lora_config_from_flags(values) if method == "lora" else None
    if lora is not None and lora.variant == "dora" and train.quantize is not None:
        raise UserError(f"--lora_variant dora with --quantize {train.quantize}: DoRA needs the base weights "
                        "themselves (their row norms, at every step); drop one of them")
    return train, lora


def typed_preference_hyperparameters(values: dict) -> tuple[PreferenceArgs, TrainArgs, Optional[LoRAConfig]]:
    """finetune/dpo.py's typed arguments: the preference settings, and the loop's of its --method (with --method
    full the LoRA flags do not apply and are left out)."""
    names = {f.name for f in fields(PreferenceArgs)}
    preference = PreferenceArgs(**{k: v for k, v in values.items() if k in names})
    if preference.method not in ("lora", "full"):
        raise UserError(f"--method {preference.method!r}: choose lora or full")
    full = preference.method == "full"
    if full and values.get("quantize") is not None:
        raise UserError("--quantize works only with --method lora: full fine-tuning updates every weight")
    rest = {k: v for k, v in values.items()
            if k not in names and not (full and (k.startswith("lora_") or k in LORA_ONLY))}
    train, lora = typed_hyperparameters(rest, preference.method)
    check_preference_args(preference, train)
    return preference, train, lora


def lora_config_from_flags(values: dict) -> LoRAConfig:
    """The LoRAConfig that the `lora_*` hyperparameters among `values` describe (missing ones: the defaults)."""
    specs = hyperparameter_specs()
    flags = {name[len("lora_"):]: values.get(name, specs[name][1]) for name in specs if name.startswith("lora_")}
    targets = tuple(t for t in LORA_TARGETS if flags[t])
    return LoRAConfig(r=flags["r"], alpha=flags["alpha"], dropout=flags["dropout"], targets=targets,
                      variant=flags["variant"])


def check_train_args(args: TrainArgs, method: str) -> None:
    positive = ("batch_size", "micro_batch_size", "eval_interval", "save_interval", "devices", "num_nodes")
    for name in positive:
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_iters", "epochs", "eval_iters", "early_stopping_patience", "override_max_seq_length"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name} must be >= 1 or None, got {value}")
    if args.learning_rate <= 0 or args.warmup_steps < 0 or args.weight_decay < 0:
        raise UserError("--learning_rate must be > 0, --warmup_steps and --weight_decay >= 0")
    if args.grad_clip is not None and not args.grad_clip > 0:
        raise UserError(f"--grad_clip {args.grad_clip}: must be above 0 (the largest gradient norm kept); "
                        "use --grad_clip null for no clipping")
    if args.neftune_noise_alpha is not None and not args.neftune_noise_alpha > 0:
        raise UserError(f"--neftune_noise_alpha {args.neftune_noise_alpha}: must be above 0 (e.g. 5); "
                        "use --neftune_noise_alpha null for no noise")
    if args.quantize is not None and method != "lora":
        raise UserError("--quantize works only with LoRA (finetune/lora.py): full fine-tuning updates every weight")
    if args.compile and args.strategy == "fsdp":
        raise UserError("--compile true with --strategy fsdp is not supported (FSDP re-wraps the blocks); "
                        "use one of them")
    check_order(args.order)
    check_logger(args.logger)


def check_logger(logger: str) -> None:
    """A known --logger whose package is installed (checked before the run loads anything)."""
    if logger not in LOGGERS:
        raise UserError(f"--logger {logger!r}: choose from {', '.join(LOGGERS)}")
    if logger in LOGGER_MODULES:
        module, what = LOGGER_MODULES[logger]
        if importlib.util.find_spec(module) is None:  # find_spec, not import: wandb takes seconds to import
            raise UserError(f"--logger {logger} needs {what}, an optional extra: pip install 'lit-gpt-data[{logger}]'")


def check_batch_split(args: TrainArgs, world_size: int) -> int:
    """Micro-batches each rank accumulates per optimizer step."""
    per_step = args.micro_batch_size * world_size
    if args.batch_size % per_step:
        raise UserError(f"--batch_size {args.batch_size} is not a multiple of --micro_batch_size "
                        f"{args.micro_batch_size} x {world_size} devices; use e.g. --batch_size "
                        f"{max(1, round(args.batch_size / per_step)) * per_step}")
    return args.batch_size // per_step


def flat_hyperparameters(train: TrainArgs, lora: Optional[LoRAConfig]) -> dict:
    """The run's settings as the scripts' constants name them (what hyperparameters.yaml records)."""
    values = asdict(train)
    if lora is not None:
        values.update({"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                       "lora_variant": lora.variant,
                       **{f"lora_{t}": t in lora.targets for t in LORA_TARGETS}})
    return values

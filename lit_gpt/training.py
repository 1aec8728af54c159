"""The one fine-tuning loop, shared by finetune/lora.py and finetune/full.py, on Lightning Fabric.

Epochs and batches: every epoch visits each training example once, in the order `data_order.epoch_order` gives
(reshuffled per epoch from --seed by default). The order is cut into global batches of `batch_size` examples; with
`--order shuffle`, chunks of about 100 micro-batches are first sorted by length, cut, and the batches shuffled, so
examples of similar length share a batch and little compute goes to padding. Each global batch is split into
`batch_size / micro_batch_size` micro-batches, dealt round-robin to the ranks; a rank accumulates its share of
gradients and synchronizes only on its last micro-batch. The plan depends only on the data, the seed, the order
and `batch_size`, so 2 ranks x micro-batch m train exactly like 1 rank x 2m, and a resumed run sees the same batches.

Loss: cross-entropy on response tokens only (labels -100 elsewhere), evaluated only where there is a target (the LM
head runs on those positions alone) and normalized by the number of target tokens in the whole global batch, so the
gradient is the token mean over the batch however it is split.

Checkpoints: `out_dir/checkpoints/step-NNNNNN/` holds the weights (`lit_model.pth` or only the LoRA tensors in
`lit_model.pth.lora`) and `train_state.pth` (trainable weights, optimizer, scheduler, data position), the latter
only in the newest checkpoint. Torch's RNG (dropout) is re-seeded from (seed, step, rank) before every step, so
resuming reproduces an uninterrupted run.

Epochs and overfitting: validation runs every `eval_interval` steps and at the end of every epoch; each epoch's mean
train loss and final val loss are logged. With more than one epoch or with early stopping, `out_dir/best/` keeps the
weights of the best validation so far (+ best.json); early stopping ends the run after `early_stopping_patience`
validations without improvement and puts the best weights at the top of out_dir. `overfitting_summary.json` holds
the best val loss with its epoch and step, the final train/val gap and the per-epoch losses; `train_summary.json`
the order and a hash of the first epoch's batches (the same for every rerun with the same seed).
"""

import inspect
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch

from lit_gpt.checkpoint import TOKENIZER_FILES, check_checkpoint_dir, load_model
from lit_gpt.config import Config
from lit_gpt.data import encode_prompt, load_prepared
from lit_gpt.data_order import ORDERS, check_order, epoch_order, may_regroup_by_length, order_hash
from lit_gpt.lora import LORA_TARGETS, LORA_WEIGHTS_FILE, LoRAConfig, is_lora_name, mark_only_lora_as_trainable
from lit_gpt.precision import QUANTIZE_MODES, choose_precision, param_dtype, quantization_plugin
from lit_gpt.prompts import save_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.utils import UserError, atomic_path, atomic_torch_save, atomic_write_text, check_writable_dir, num_parameters

LENGTH_GROUP_EXAMPLES = 400  # sort chunks of about 100 micro-batches of 4 by length (rounded up to whole batches)
TRAIN_STATE_FILE = "train_state.pth"
BEST_DIR = "best"  # out_dir/best/: the weights of the best validation (multi-epoch runs, early stopping)
FULL_WEIGHTS_FILE = "lit_model.pth"


def _hp(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainArgs:
    """Hyperparameters of the training loop. The scripts set their own defaults as module constants."""

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
    precision: Optional[Literal["bf16-true", "bf16-mixed", "16-mixed", "32-true"]] = _hp(
        None, "bf16-true, bf16-mixed, 16-mixed or 32-true (None: bf16-true where bf16 is native, else 32-true)")
    quantize: Optional[Literal[QUANTIZE_MODES]] = _hp(
        None, "quantize the frozen base weights (LoRA only; CUDA + bitsandbytes): " + ", ".join(QUANTIZE_MODES))
    devices: int = _hp(1, "devices (GPUs or CPU processes) per node")
    num_nodes: int = _hp(1, "nodes (machines); launch with torchrun or SLURM")
    strategy: Literal["auto", "ddp", "fsdp"] = _hp("auto", "multi-device strategy: auto, ddp or fsdp")
    order: str = _hp("shuffle", "order of the examples in each epoch: "
                                + "; ".join(f"{k}: {v}" for k, v in ORDERS.items()))
    early_stopping_patience: Optional[int] = _hp(None, "stop after this many validations without a better val "
                                                       "loss and keep the best weights (None: off)")
    gradient_checkpointing: bool = _hp(False, "recompute activations in backward: less memory, ~30% slower")
    compile: bool = _hp(False, "torch.compile the transformer blocks: fused elementwise work, less activation memory "
                               "(fewer kernel launches on GPU), after a one-off compile of about a minute")


LORA_HELP = {"r": "rank of the LoRA update", "alpha": "the LoRA update is scaled by alpha / r",
             "dropout": "dropout on the input of the LoRA path",
             **{t: f"LoRA on {what}" for t, what in LORA_TARGETS.items()}}


def hyperparameter_specs() -> dict:
    """Every hyperparameter a script may set as a constant: name -> (type, default, help)."""
    specs = {f.name: (f.type, f.default, f.metadata["help"]) for f in fields(TrainArgs)}
    for name, param in inspect.signature(LoRAConfig.from_flags).parameters.items():
        specs[f"lora_{name}"] = (param.annotation, param.default, LORA_HELP[name])
    return specs


# ---- the scripts' command line --------------------------------------------------------------------------------------
def script_cli(main: Callable, constants: dict) -> Callable:
    """`main` with one keyword parameter per hyperparameter constant of its script (default: the constant's value),
    for `run_cli`: the CLI shows every constant as a flag, editing a constant changes the default, a flag or a
    `--config` file beats it."""
    specs = hyperparameter_specs()
    stray = [name for name, value in constants.items()
             if not name.startswith("_") and name.islower() and name not in specs
             and (value is None or type(value) in (bool, int, float, str))]
    if stray:
        raise TypeError(f"{constants.get('__file__')}: constants {stray} are not known hyperparameters "
                        f"(known: {', '.join(specs)})")
    signature = inspect.signature(main)
    params = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    doc = [(main.__doc__ or "").rstrip()]
    for name, (annotation, _, help) in specs.items():
        if name in constants:
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=constants[name],
                                            annotation=annotation))
            doc.append(f"        {name}: {help}")

    def cli_main(**kwargs: Any) -> Any:
        return main(**kwargs)

    cli_main.__signature__ = signature.replace(parameters=params)
    cli_main.__doc__ = "\n".join(doc) + "\n"
    cli_main.__name__ = main.__name__
    return cli_main


def run_script(method: Literal["lora", "full"], constants: dict, checkpoint_dir: Path, data_dir: Path,
               out_dir: Optional[Path], resume: Optional[str], overrides: dict) -> dict:
    """The body of both scripts' `main`: the script's constants, overridden by the given values, run `finetune`."""
    specs = hyperparameter_specs()
    values = {name: constants[name] for name in specs if name in constants}
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise TypeError(f"unknown hyperparameters {unknown} for finetune/{method}.py")
    values.update(overrides)
    train_names = {f.name for f in fields(TrainArgs)}
    train = TrainArgs(**{k: v for k, v in values.items() if k in train_names})
    lora = None
    if method == "lora":
        lora = LoRAConfig.from_flags(**{k[len("lora_"):]: v for k, v in values.items() if k.startswith("lora_")})
    return finetune(method, checkpoint_dir, data_dir, out_dir, train, lora, resume, hyperparameters=values)


# ---- data -----------------------------------------------------------------------------------------------------------
class Examples:
    """Prepared examples shifted for next-token prediction: inputs[i] = input_ids[:-1], targets[i] = labels[1:]
    (-100 where there is nothing to learn), truncated to `max_seq_length` inputs. Examples without any target
    token are dropped (`raw` keeps the remaining dicts, index-aligned)."""

    def __init__(self, raw: list, max_seq_length: int, source: str, vocab_size: int) -> None:
        self.raw, self.inputs, self.targets = [], [], []
        self.truncated = self.dropped = 0
        for i, example in enumerate(raw):
            ids, labels = (example.get("input_ids"), example.get("labels")) if isinstance(example, dict) else (None, None)
            if not (isinstance(ids, torch.Tensor) and isinstance(labels, torch.Tensor) and ids.ndim == 1
                    and ids.shape == labels.shape and ids.numel() >= 2):
                raise UserError(f"{source} example {i}: needs 1-D `input_ids` and `labels` tensors of the same "
                                "length (at least 2 tokens); prepare the data again")
            if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
                raise UserError(f"{source} example {i}: token id {int(ids.max())} is outside the model's vocabulary "
                                f"of {vocab_size}; the data was prepared for another model")
            if ids.numel() - 1 > max_seq_length:
                ids, labels = ids[: max_seq_length + 1], labels[: max_seq_length + 1]
                self.truncated += 1
            target = labels[1:].long()
            if not bool((target != -100).any()):
                self.dropped += 1
                continue
            self.raw.append(example)
            self.inputs.append(ids[:-1].long())
            self.targets.append(target)
        self.lengths = [x.numel() for x in self.inputs]
        self.n_targets = [int((t != -100).sum()) for t in self.targets]

    def __len__(self) -> int:
        return len(self.inputs)

    def collate(self, indices: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, targets) right-padded to the longest; an empty list gives one padding token and no target
        (a rank without examples in a micro-batch still runs the forward/backward its peers wait for)."""
        if not indices:
            return torch.zeros(1, 1, dtype=torch.long, device=device), torch.full((1, 1), -100, device=device)
        T = max(self.lengths[i] for i in indices)
        input_ids = torch.zeros(len(indices), T, dtype=torch.long)
        targets = torch.full((len(indices), T), -100, dtype=torch.long)
        for row, i in enumerate(indices):
            input_ids[row, : self.lengths[i]] = self.inputs[i]
            targets[row, : self.lengths[i]] = self.targets[i]
        return input_ids.to(device), targets.to(device)


def epoch_batches(data: Examples, epoch: int, seed: int, order: str, batch_size: int) -> list:
    """The global batches (lists of example indices, each sorted by length) of one epoch, every example once."""
    lengths = data.lengths
    indices = epoch_order(data.raw, epoch, seed, order)
    regroup = may_regroup_by_length(order)
    if regroup:
        chunk = batch_size * max(1, math.ceil(LENGTH_GROUP_EXAMPLES / batch_size))
        indices = [i for s in range(0, len(indices), chunk)
                   for i in sorted(indices[s: s + chunk], key=lengths.__getitem__)]
    batches = [sorted(indices[s: s + batch_size], key=lengths.__getitem__)
               for s in range(0, len(indices), batch_size)]
    if regroup:
        random.Random(f"batches/{seed}/{epoch}").shuffle(batches)
    return batches


def split_batch(batch: list, parts: int) -> list:
    """`parts` consecutive slices of `batch`, sizes differing by at most one (a short last batch spreads evenly)."""
    q, r = divmod(len(batch), parts)
    out, start = [], 0
    for k in range(parts):
        n = q + (k < r)
        out.append(batch[start: start + n])
        start += n
    return out


def padding_stats(data: Examples, micro_batches: list) -> tuple[int, int]:
    """(real tokens, padded tokens) of the given micro-batches."""
    real = sum(data.lengths[i] for mb in micro_batches for i in mb)
    padded = sum(len(mb) * max(data.lengths[i] for i in mb) for mb in micro_batches if mb)
    return real, padded


# ---- schedule, optimizer ----------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based): linear warmup, cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, args: TrainArgs) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # the fused kernel updates every tensor in one pass instead of a dozen small ops per tensor (full fine-tuning of
    # SmolLM2-135M on 2 CPU cores: ~6x faster optimizer step); same update up to float rounding
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate, fused=fused)


# ---- checks -------------------------------------------------------------------------------------------------------
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
    if args.quantize is not None and method != "lora":
        raise UserError("--quantize works only with LoRA (finetune/lora.py): full fine-tuning updates every weight")
    if args.compile and args.strategy == "fsdp":
        raise UserError("--compile true with --strategy fsdp is not supported (FSDP re-wraps the blocks); "
                        "use one of them")
    check_order(args.order)


def check_batch_split(args: TrainArgs, world_size: int) -> int:
    """Micro-batches each rank accumulates per optimizer step."""
    per_step = args.micro_batch_size * world_size
    if args.batch_size % per_step:
        raise UserError(f"--batch_size {args.batch_size} is not a multiple of --micro_batch_size "
                        f"{args.micro_batch_size} x {world_size} devices; use e.g. --batch_size "
                        f"{max(1, round(args.batch_size / per_step)) * per_step}")
    return args.batch_size // per_step


def checkpoint_steps(out_dir: Path) -> list:
    """Step directories under out_dir/checkpoints that hold a complete training state, oldest first."""
    root = out_dir / "checkpoints"
    dirs = [d for d in root.glob("step-*") if (d / TRAIN_STATE_FILE).is_file()] if root.is_dir() else []
    return sorted(dirs, key=lambda d: d.name)


def find_resume_file(out_dir: Path, resume: Optional[str]) -> Optional[Path]:
    if resume is None:
        if checkpoint_steps(out_dir):
            raise UserError(f"{out_dir}: holds checkpoints of an earlier run; continue it with --resume auto, "
                            "or choose another --out_dir")
        return None
    if resume == "auto":
        steps = checkpoint_steps(out_dir)
        return steps[-1] / TRAIN_STATE_FILE if steps else None
    path = Path(resume)
    if path.is_dir():
        steps = checkpoint_steps(path)
        path = steps[-1] / TRAIN_STATE_FILE if steps else path / TRAIN_STATE_FILE
    if not path.is_file():
        raise UserError(f"{path}: no training state to resume from; pass --resume auto, an out_dir or a "
                        "checkpoints/step-* directory")
    return path


# ---- the run ------------------------------------------------------------------------------------------------------
class TrainingDiverged(UserError):
    """A non-finite loss or gradient: the run stops before the bad update, its checkpoints stay as they were."""


def finetune(method: Literal["lora", "full"], checkpoint_dir: "str | Path", data_dir: "str | Path",
             out_dir: "str | Path | None" = None, train: Optional[TrainArgs] = None,
             lora: Optional[LoRAConfig] = None, resume: Optional[str] = None,
             hyperparameters: Optional[dict] = None) -> dict:
    """Fine-tunes the checkpoint on the prepared data; returns the run summary (also in out_dir/train_summary.json).
    method "lora" trains only LoRA tensors (config `lora`), "full" every weight."""
    train = train or TrainArgs()
    lora = (lora or LoRAConfig()) if method == "lora" else None
    check_train_args(train, method)
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    tokenizer = Tokenizer(checkpoint_dir)
    train_raw, test_raw, manifest = load_prepared(data_dir, tokenizer)
    out_dir = Path(out_dir) if out_dir is not None else Path("out") / method / (manifest.get("name") or Path(data_dir).name)
    check_writable_dir(out_dir)
    resume_file = find_resume_file(out_dir, resume)
    precision = choose_precision(train.precision)
    plugin = quantization_plugin(train.quantize, precision)
    fabric = _make_fabric(train, precision, plugin, out_dir)
    accum = check_batch_split(train, fabric.world_size)
    fabric.launch()

    config = Config.from_file(checkpoint_dir / "lit_config.json")
    data_dir = Path(data_dir)
    train_set, val_set, max_seq_length = _examples(fabric, train_raw, test_raw, data_dir, config,
                                                   train.override_max_seq_length)

    hyperparameters = hyperparameters if hyperparameters is not None else _flat_hyperparameters(train, lora)
    if fabric.is_global_zero:
        _write_run_files(out_dir, checkpoint_dir, data_dir, manifest, lora, hyperparameters, method)
    fabric.loggers[1].log_hyperparams(hyperparameters)  # TensorBoard (the CSV logger has no hyperparameters)
    fabric.barrier()

    torch.manual_seed(train.seed)  # the LoRA init (identical on every rank)
    # on the CPU; fabric.setup_module moves it to the device (and quantizes the base layers under --quantize)
    model = load_model(checkpoint_dir, dtype=plugin.dtype if plugin is not None else param_dtype(precision))
    if lora is not None:
        lora.apply(model)
        mark_only_lora_as_trainable(model)
    model.gradient_checkpointing = train.gradient_checkpointing
    if train.compile:
        model.compile_blocks()
    fabric.print(f"{method}: training {num_parameters(model, requires_grad=True):,} of {num_parameters(model):,} "
                 f"parameters; precision {precision}{', base quantized ' + train.quantize if train.quantize else ''}; "
                 f"{fabric.world_size} device(s), {accum} micro-batch(es) of {train.micro_batch_size} per device per step")
    model = fabric.setup_module(model)
    if lora is not None:  # quantization replaced the base layers by new ones: freeze those too
        mark_only_lora_as_trainable(model)
    optimizer = fabric.setup_optimizers(make_optimizer(model, train))

    steps_per_epoch = math.ceil(len(train_set) / train.batch_size)
    if train.epochs is None:  # a Lit-GPT habit: only max_iters set means "train max_iters steps", over epochs as needed
        train.epochs = math.ceil(train.max_iters / steps_per_epoch) if train.max_iters else 1
    elif train.max_iters is not None and train.max_iters > train.epochs * steps_per_epoch:
        fabric.print(f"note: {train.epochs} epoch(s) are {train.epochs * steps_per_epoch} steps, fewer than "
                     f"max_iters={train.max_iters}; training stops after the last epoch (set epochs = None to run "
                     "max_iters steps)")
    total_steps = train.epochs * steps_per_epoch
    if train.max_iters is not None:
        total_steps = min(total_steps, train.max_iters)
    warmup = min(train.warmup_steps, total_steps // 2)
    if warmup < train.warmup_steps:
        fabric.print(f"warmup: {warmup} steps instead of {train.warmup_steps} (at most half of the {total_steps} steps)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps))

    plan = {"batch_size": train.batch_size, "seed": train.seed, "order": train.order, "n_train": len(train_set),
            "max_seq_length": max_seq_length, "data_fingerprint": manifest.get("fingerprint")}
    progress = {"iter_num": 0, "epoch": 0, "batch_in_epoch": 0, "tokens": 0, "padded_tokens": 0, "best_val_loss": None,
                "best_step": None, "evals_without_improvement": 0, "stop_reason": None, "plan": plan,
                "history": {"train": [], "val": []}}
    if resume_file is not None:
        progress = _resume(fabric, resume_file, model, optimizer, scheduler, plan, strict=lora is None)
        fabric.print(f"resumed from {resume_file.parent} at step {progress['iter_num']} "
                     f"(epoch {progress['epoch'] + 1}, batch {progress['batch_in_epoch']})")

    # the order actually trained (after any length grouping), fingerprinted so reruns can be checked to match
    first_epoch = [i for batch in epoch_batches(train_set, 0, train.seed, train.order, train.batch_size) for i in batch]
    first_epoch_hash = order_hash(first_epoch)
    fabric.print(f"order {train.order}: first epoch order hash {first_epoch_hash} (seed {train.seed})")
    run = _Run(fabric=fabric, model=model, optimizer=optimizer, scheduler=scheduler, args=train, out_dir=out_dir,
               train_set=train_set, val_set=val_set, accum=accum, total_steps=total_steps,
               steps_per_epoch=steps_per_epoch, progress=progress, lora=lora is not None, tokenizer=tokenizer,
               sample_prompt=_sample_prompt(tokenizer, manifest, val_set), precision=precision,
               first_epoch_hash=first_epoch_hash)
    try:
        _fit(run)
    finally:
        for logger in fabric.loggers:
            logger.finalize("success" if progress.get("stop_reason") else "failed")
    return _finish(run)


def _examples(fabric, train_raw: list, test_raw: list, data_dir: Path, config: Config,
              override_max_seq_length: Optional[int]) -> tuple[Examples, Examples, int]:
    """Train and test Examples cut to the longest example (or the override), at most the model's block_size."""
    longest = max((ex["input_ids"].numel() - 1 for ex in [*train_raw, *test_raw] if isinstance(ex, dict)
                   and isinstance(ex.get("input_ids"), torch.Tensor)), default=1)
    max_seq_length = min(override_max_seq_length or longest, config.block_size)
    train_set = Examples(train_raw, max_seq_length, str(data_dir / "train.pt"), config.vocab_size)
    val_set = Examples(test_raw, max_seq_length, str(data_dir / "test.pt"), config.vocab_size)
    if not len(train_set):
        raise UserError(f"{data_dir / 'train.pt'}: no example with a trained (response) token; prepare it again")
    for name, ds in (("train", train_set), ("test", val_set)):
        if ds.truncated or ds.dropped:
            fabric.print(f"{name}: {ds.truncated} examples truncated to {max_seq_length} tokens, "
                         f"{ds.dropped} dropped (no response token left)")
    return train_set, val_set, max_seq_length


@dataclass
class _Run:
    fabric: Any
    model: Any
    optimizer: Any
    scheduler: Any
    args: TrainArgs
    out_dir: Path
    train_set: Examples
    val_set: Examples
    accum: int
    total_steps: int
    steps_per_epoch: int
    progress: dict
    lora: bool
    tokenizer: Tokenizer
    sample_prompt: Optional[torch.Tensor]
    precision: str
    first_epoch_hash: str = ""
    last_saved_step: Optional[int] = None
    last_grad_norm: float = math.nan


def _fit(run: _Run) -> None:
    from tqdm import tqdm

    fabric, args, progress = run.fabric, run.args, run.progress
    if progress["iter_num"] >= run.total_steps or progress["stop_reason"] == "early_stopping":
        progress["stop_reason"] = progress["stop_reason"] or "done"
        return
    progress["stop_reason"] = None
    bar = tqdm(total=run.total_steps, initial=progress["iter_num"], desc="train", unit="step", dynamic_ncols=True,
               disable=not fabric.is_global_zero, mininterval=0.5)
    try:
        while progress["iter_num"] < run.total_steps and progress["stop_reason"] is None:
            epoch = progress["epoch"]
            batches = epoch_batches(run.train_set, epoch, args.seed, args.order, args.batch_size)
            while progress["batch_in_epoch"] < len(batches) and progress["iter_num"] < run.total_steps:
                batch = batches[progress["batch_in_epoch"]]
                t0 = time.perf_counter()
                lr = run.optimizer.param_groups[0]["lr"]
                loss, real, padded = _train_step(run, batch)
                progress["iter_num"] += 1
                progress["batch_in_epoch"] += 1
                progress["tokens"] += real
                progress["padded_tokens"] += padded
                step, epoch_done = progress["iter_num"], progress["batch_in_epoch"] == len(batches)
                if epoch_done:
                    progress["epoch"] += 1
                    progress["batch_in_epoch"] = 0
                progress["history"]["train"].append([step, loss])
                metrics = {"iter": step, "epoch": epoch + (progress["batch_in_epoch"] or len(batches)) / len(batches),
                           "train_loss": loss, "lr": lr, "grad_norm": run.last_grad_norm,
                           "tokens_per_sec": real / (time.perf_counter() - t0),
                           "non_pad_share": real / padded}
                last = step >= run.total_steps
                if len(run.val_set) and (step % args.eval_interval == 0 or epoch_done or last):
                    metrics["val_loss"] = _evaluate(run, bar)
                fabric.log_dict(metrics, step=step)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
                stop = last or progress["stop_reason"] is not None
                if epoch_done or stop:
                    _record_epoch(run, metrics, bar)
                if step % args.save_interval == 0 or stop:
                    _save_checkpoint(run)
                if epoch_done or stop:
                    break
        progress["stop_reason"] = progress["stop_reason"] or "done"
        if run.last_saved_step != progress["iter_num"]:
            _save_checkpoint(run)
    finally:
        bar.close()


def _train_step(run: _Run, batch: list) -> tuple[float, int, int]:
    """One optimizer step on a global batch; returns (mean token loss over the batch, real tokens, padded tokens)."""
    fabric, model, data = run.fabric, run.model, run.train_set
    world, rank = fabric.world_size, fabric.global_rank
    micro_batches = split_batch(batch, run.accum * world)
    mine = micro_batches[rank::world]
    n_targets = max(1, sum(data.n_targets[i] for i in batch))
    # dropout masks from (seed, step, rank): a resumed run draws the same ones
    torch.manual_seed(hash((run.args.seed, run.progress["iter_num"], rank)) & 0x7FFF_FFFF_FFFF_FFFF)
    loss_sum = torch.zeros((), device=fabric.device, dtype=torch.float64)
    for k, indices in enumerate(mine):
        input_ids, targets = data.collate(indices, fabric.device)
        with fabric.no_backward_sync(model, enabled=k < len(mine) - 1):
            # summed cross-entropy over the target positions; the LM head runs on those alone, chunk by chunk
            loss = model(input_ids, targets=targets)
            # ranks' gradients are averaged: scale so the total is the token mean over the whole global batch
            fabric.backward(loss * (world / n_targets))
        loss_sum += loss.detach()
    mean_loss = float(fabric.all_reduce(loss_sum, reduce_op="sum")) / n_targets
    # the norm is computed even without clipping: a finite loss can still give non-finite gradients
    grad_norm = float(fabric.clip_gradients(model, run.optimizer, max_norm=run.args.grad_clip or math.inf,
                                            error_if_nonfinite=False))
    problem = None if math.isfinite(mean_loss) else f"training loss is {mean_loss}"
    if problem is None and not math.isfinite(grad_norm) and run.precision != "16-mixed":  # fp16's scaler skips those
        problem = f"gradient norm is {grad_norm}"
    if problem is not None:
        run.optimizer.zero_grad(set_to_none=True)
        steps = checkpoint_steps(run.out_dir)
        kept = f"the last good checkpoint is {steps[-1]}" if steps else "no checkpoint was saved yet"
        raise TrainingDiverged(f"step {run.progress['iter_num'] + 1}: {problem} (not finite), stopped without "
                               f"updating the weights; {kept}; lower --learning_rate (now {run.args.learning_rate}) "
                               "and start again or --resume auto")
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    run.last_grad_norm = grad_norm
    real, padded = padding_stats(data, micro_batches)
    return mean_loss, real, padded


@torch.no_grad()
def validate(fabric, model, data: Examples, micro_batch_size: int, eval_iters: Optional[int] = None) -> float:
    """Mean response-token loss over the test set (or its first eval_iters x micro_batch_size x ranks examples),
    each rank taking every world_size-th micro-batch; sums and token counts are reduced across ranks."""
    world, rank = fabric.world_size, fabric.global_rank
    n = len(data) if eval_iters is None else min(len(data), eval_iters * micro_batch_size * world)
    by_length = sorted(range(n), key=data.lengths.__getitem__)
    batches = [by_length[s: s + micro_batch_size] for s in range(0, n, micro_batch_size)]
    per_rank = math.ceil(len(batches) / world)
    mine = batches[rank::world]
    mine += [[]] * (per_rank - len(mine))  # every rank runs as many forwards (FSDP gathers weights in each)
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, device=fabric.device, dtype=torch.float64)
    for indices in mine:
        input_ids, targets = data.collate(indices, fabric.device)
        totals[0] += model(input_ids, targets=targets)
        totals[1] += (targets != -100).sum()
    totals = fabric.all_reduce(totals, reduce_op="sum")
    model.train(was_training)
    return float(totals[0] / totals[1].clamp(min=1))


def _evaluate(run: _Run, bar) -> float:
    """Validation + sample answer + early-stopping bookkeeping (best weights are saved as a checkpoint)."""
    fabric, progress, args = run.fabric, run.progress, run.args
    t0 = time.perf_counter()
    val_loss = validate(fabric, run.model, run.val_set, args.micro_batch_size, args.eval_iters)
    step = progress["iter_num"]
    progress["history"]["val"].append([step, val_loss])
    message = f"step {step}: val loss {val_loss:.4f} ({time.perf_counter() - t0:.1f}s)"
    if run.sample_prompt is not None and args.sample_max_new_tokens > 0:
        message += f"\n  sample: {_generate_sample(run)!r}"
    if fabric.is_global_zero:
        bar.write(message)
    best = progress["best_val_loss"]
    if best is None or val_loss < best:
        progress["best_val_loss"], progress["best_step"] = val_loss, step
        progress["evals_without_improvement"] = 0
        progress["best_epoch"] = progress["epoch"] + progress["batch_in_epoch"] / run.steps_per_epoch
        if args.early_stopping_patience is not None:
            _save_checkpoint(run)  # the best weights must survive whatever comes after
        if args.early_stopping_patience is not None or args.epochs > 1:
            _save_best(run)
    else:
        progress["evals_without_improvement"] += 1
        if args.early_stopping_patience is not None and progress["evals_without_improvement"] >= args.early_stopping_patience:
            progress["stop_reason"] = "early_stopping"
            if fabric.is_global_zero:
                bar.write(f"early stopping: no better val loss in {args.early_stopping_patience} validations; "
                          f"best {progress['best_val_loss']:.4f} at step {progress['best_step']}")
    return val_loss


def _record_epoch(run: _Run, metrics: dict, bar) -> None:
    """One entry of progress["epochs"] at the end of an epoch (or of a run stopped inside one): the mean train loss
    of its steps and the validation loss at its end, for the log and overfitting_summary.json."""
    progress = run.progress
    epochs = progress.setdefault("epochs", [])
    since = epochs[-1]["step"] if epochs else 0
    losses = [loss for step, loss in progress["history"]["train"] if step > since]
    entry = {"epoch": round(metrics["epoch"], 4), "step": metrics["iter"],
             "train_loss": sum(losses) / len(losses) if losses else None, "val_loss": metrics.get("val_loss")}
    epochs.append(entry)
    if run.fabric.is_global_zero:
        bar.write(f"epoch {entry['epoch']:g} (step {entry['step']}): mean train loss {entry['train_loss']:.4f}"
                  + (f", val loss {entry['val_loss']:.4f}" if entry["val_loss"] is not None else ""))


def _sample_prompt(tokenizer: Tokenizer, manifest: dict, val_set: Examples) -> Optional[torch.Tensor]:
    """Prompt ids for the sample answer: the first held-out instruction in the data's prompt style, or (for rows
    without an instruction, e.g. conversations) the tokens the model saw before that example's first answer."""
    if not len(val_set):
        return None
    example = val_set.raw[0]
    if manifest.get("prompt_style") and example.get("instruction"):
        return encode_prompt(tokenizer, manifest["prompt_style"], example["instruction"], example.get("input") or "")
    first_target = int((val_set.targets[0] != -100).nonzero()[0])
    return val_set.inputs[0][: first_target + 1]


def _generate_sample(run: _Run) -> str:
    from lit_gpt.generate import generate

    model, prompt = run.model, run.sample_prompt
    max_new = min(run.args.sample_max_new_tokens, model.config.block_size - prompt.numel())
    if max_new <= 0:
        return ""
    was_training = model.training
    model.eval()
    try:  # greedy: every rank produces the same tokens, so they run the same number of forwards
        ids = generate(model, prompt.to(run.fabric.device), max_new, temperature=0.0, eos_id=run.tokenizer.stop_ids)
    finally:
        model.train(was_training)
    return run.tokenizer.decode(ids)


# ---- saving -------------------------------------------------------------------------------------------------------
def weights_file_name(lora: bool) -> str:
    return LORA_WEIGHTS_FILE if lora else FULL_WEIGHTS_FILE


def _save_checkpoint(run: _Run) -> Path:
    """checkpoints/step-N/{weights, train_state.pth}; the training state of older steps is deleted (their weights
    stay). The training state is written last, so a step dir with train_state.pth is complete."""
    fabric, progress = run.fabric, run.progress
    step = progress["iter_num"]
    step_dir = run.out_dir / "checkpoints" / f"step-{step:06d}"
    if run.last_saved_step == step:
        return step_dir
    tmp = step_dir / f".{TRAIN_STATE_FILE}.tmp"
    state = {"model": run.model, "optimizer": run.optimizer, "scheduler": run.scheduler, "progress": progress}
    model_filter = {"model": lambda name, _: is_lora_name(name)} if run.lora else None
    fabric.save(tmp, state, filter=model_filter)
    fabric.barrier()
    if fabric.is_global_zero:
        # the weights file is the model part of the training state, in the plain format consumers load
        weights = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)["model"]
        atomic_torch_save(weights, step_dir / weights_file_name(run.lora))
        os.replace(tmp, step_dir / TRAIN_STATE_FILE)
        for older in checkpoint_steps(run.out_dir):
            if older != step_dir:
                (older / TRAIN_STATE_FILE).unlink()
    fabric.barrier()
    run.last_saved_step = step
    return step_dir


def _save_best(run: _Run) -> Path:
    """out_dir/best/{weights, best.json}: the weights at the best validation so far, replaced at each improvement.
    Reuses the step checkpoint's weights file when one was just written, else saves the weights alone."""
    fabric, progress = run.fabric, run.progress
    step, name = progress["iter_num"], weights_file_name(run.lora)
    best_dir = run.out_dir / BEST_DIR
    just_saved = run.last_saved_step == step
    tmp = best_dir / f".{name}.state.tmp"
    if not just_saved:
        model_filter = {"model": lambda key, _: is_lora_name(key)} if run.lora else None
        fabric.save(tmp, {"model": run.model}, filter=model_filter)
        fabric.barrier()
    if fabric.is_global_zero:
        if just_saved:
            _link_or_copy(run.out_dir / "checkpoints" / f"step-{step:06d}" / name, best_dir / name)
        else:
            weights = torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)["model"]
            atomic_torch_save(weights, best_dir / name)
            tmp.unlink()
        info = {"step": step, "epoch": progress["best_epoch"], "val_loss": progress["best_val_loss"], "weights": name}
        atomic_write_text(best_dir / "best.json", json.dumps(info, indent=2) + "\n")
    fabric.barrier()
    return best_dir


def _link_or_copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)  # same file system: no second copy of a large file
        except OSError:
            shutil.copyfile(source, tmp)


def _resume(fabric, path: Path, model, optimizer, scheduler, plan: dict, strict: bool) -> dict:
    try:
        remainder = fabric.load(path, {"model": model, "optimizer": optimizer, "scheduler": scheduler}, strict=strict)
    except (RuntimeError, KeyError, ValueError) as e:
        raise UserError(f"{path}: cannot resume from this training state ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); it belongs to another model or method") from None
    progress = remainder["progress"]
    changed = {k: (progress["plan"].get(k), v) for k, v in plan.items() if progress["plan"].get(k) != v}
    if changed:
        what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise UserError(f"{path}: cannot resume: the data position depends on settings that changed ({what}); "
                        "resume with the same data and settings")
    return progress


def _finish(run: _Run) -> dict:
    """Final weights at the top of out_dir (the best checkpoint's under early stopping), loss.png, summary."""
    fabric, progress, out_dir = run.fabric, run.progress, run.out_dir
    use_best = run.args.early_stopping_patience is not None and progress["best_step"] is not None
    source_step = progress["best_step"] if use_best else progress["iter_num"]
    name = weights_file_name(run.lora)
    summary = {"steps": progress["iter_num"], "epochs": progress["epoch"] + progress["batch_in_epoch"] / run.steps_per_epoch,
               "stop_reason": progress["stop_reason"], "tokens": progress["tokens"],
               "non_pad_share": progress["tokens"] / max(1, progress["padded_tokens"]),
               "final_train_loss": progress["history"]["train"][-1][1] if progress["history"]["train"] else None,
               "final_val_loss": progress["history"]["val"][-1][1] if progress["history"]["val"] else None,
               "best_val_loss": progress["best_val_loss"], "best_step": progress["best_step"],
               "best_epoch": progress.get("best_epoch"), "weights": name, "weights_from_step": source_step,
               "order": run.args.order, "first_epoch_order_hash": run.first_epoch_hash}
    if fabric.is_global_zero:
        _link_or_copy(out_dir / "checkpoints" / f"step-{source_step:06d}" / name, out_dir / name)
        plot_loss(progress["history"], out_dir / "loss.png")
        atomic_write_text(out_dir / "train_summary.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(out_dir / "overfitting_summary.json", json.dumps(overfitting_summary(run), indent=2) + "\n")
        fabric.print(f"done: {summary['steps']} steps, {summary['epochs']:.2f} epochs, final train loss "
                     f"{summary['final_train_loss']:.4f}"
                     + (f", val loss {summary['final_val_loss']:.4f}" if summary["final_val_loss"] is not None else "")
                     + f", {summary['non_pad_share']:.0%} of batch tokens not padding; weights (step {source_step}) in "
                     f"{out_dir / name}")
    fabric.barrier()
    return summary


def overfitting_summary(run: _Run) -> dict:
    """Where validation was best, how far apart train and val loss ended, and both per epoch."""
    progress = run.progress
    epochs = progress.get("epochs", [])
    history = progress["history"]
    final_train = epochs[-1]["train_loss"] if epochs else (history["train"][-1][1] if history["train"] else None)
    final_val = history["val"][-1][1] if history["val"] else None
    best = run.out_dir / BEST_DIR / weights_file_name(run.lora)
    return {"best_val_loss": progress["best_val_loss"], "best_step": progress["best_step"],
            "best_epoch": progress.get("best_epoch"),
            "best_weights": str(best.relative_to(run.out_dir)) if best.is_file() else None,
            "final_step": progress["iter_num"], "final_train_loss": final_train, "final_val_loss": final_val,
            "final_gap": final_val - final_train if final_val is not None and final_train is not None else None,
            "gap_note": "final val loss minus the mean train loss of the last epoch",
            "stopped_early": progress["stop_reason"] == "early_stopping",
            "early_stopping_patience": run.args.early_stopping_patience,
            "evals_without_improvement": progress["evals_without_improvement"], "per_epoch": epochs}


def plot_loss(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history["train"]:
        steps, losses = zip(*history["train"])
        ax.plot(steps, losses, label="train", linewidth=1)
    if history["val"]:
        steps, losses = zip(*history["val"])
        ax.plot(steps, losses, "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _flat_hyperparameters(train: TrainArgs, lora: Optional[LoRAConfig]) -> dict:
    values = asdict(train)
    if lora is not None:
        values.update({"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                       **{f"lora_{t}": on for t, on in lora.flags().items()}})
    return values


def _write_run_files(out_dir: Path, checkpoint_dir: Path, data_dir: Path, manifest: dict,
                     lora: Optional[LoRAConfig], hyperparameters: dict, method: str) -> None:
    """What makes out_dir self-describing: model config, tokenizer, prompt style, settings (and the LoRA config)."""
    import yaml

    for name in ("lit_config.json", *TOKENIZER_FILES):
        if (checkpoint_dir / name).is_file():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(checkpoint_dir / name, tmp)
    if (data_dir / "prompt_style.json").is_file():
        with atomic_path(out_dir / "prompt_style.json") as tmp:
            shutil.copyfile(data_dir / "prompt_style.json", tmp)
    elif manifest.get("prompt_style"):
        save_prompt_style(manifest["prompt_style"], out_dir)
    if lora is not None:
        lora.save(out_dir)
    run = {"checkpoint_dir": str(checkpoint_dir.resolve()), "data_dir": str(data_dir.resolve()),
           "out_dir": str(out_dir.resolve()), **hyperparameters}
    atomic_write_text(out_dir / "hyperparameters.yaml", f"# finetune/{method}.py settings; rerun with --config\n"
                      + yaml.safe_dump(run, sort_keys=False))


def _make_fabric(args: TrainArgs, precision: str, plugin, out_dir: Path):
    import lightning as L
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger

    strategy: Any = args.strategy
    if strategy == "fsdp":
        from lightning.fabric.strategies import FSDPStrategy

        from lit_gpt.model import Block

        # full state dicts: checkpoints are single files; use_orig_params: LoRA mixes frozen and trainable weights
        strategy = FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full", use_orig_params=True)
    loggers = [CSVLogger(root_dir=out_dir / "logs", name="csv", flush_logs_every_n_steps=10),
               TensorBoardLogger(root_dir=out_dir / "logs", name="tensorboard")]
    try:
        fabric = L.Fabric(devices=args.devices, num_nodes=args.num_nodes, strategy=strategy,
                          precision=None if plugin is not None else precision,
                          plugins=plugin, loggers=loggers)
    except (ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"--devices {args.devices} --num_nodes {args.num_nodes} --strategy {args.strategy}: "
                        f"{str(e).splitlines()[0]}") from None
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    return fabric


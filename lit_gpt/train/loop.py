"""The one fine-tuning loop, shared by finetune/lora.py, finetune/full.py, finetune/dpo.py and the dataset
comparison, on Lightning Fabric: `finetune()` sets a run up (data, model, LoRA, optimizer, schedule, resume) and
`Trainer.fit()` trains it. Fabric itself (strategy, precision plugin, loggers): `lit_gpt.train.fabric`.

What is trained is an objective the loop calls (its data format and sets, a step, validation metrics):
`lit_gpt.train.step.TokenObjective` (instruction tuning, the default) or
`lit_gpt.train.preference_step.PreferenceObjective` (finetune/dpo.py).
Batches: `lit_gpt.train.dataset` (every epoch visits each example once; length-grouped global batches). A step:
`lit_gpt.train.step.train_step` (response-token loss, gradient accumulation, clipping, a non-finite step refused).
Checkpoints and resume: `lit_gpt.train.resume`; torch's RNG (dropout) is re-seeded from (seed, step, rank)
before every step, so resuming reproduces an uninterrupted run. The caller's RNG state is restored afterwards.

Epochs and overfitting: validation runs every `eval_interval` steps and at the end of every epoch; each epoch's mean
train loss and final val loss are logged. With more than one epoch or with early stopping, `out_dir/best/` keeps the
weights of the best validation so far (+ best.json); early stopping ends the run after `early_stopping_patience`
validations without improvement and puts the best weights at the top of out_dir.
"""

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Iterator, Literal, Optional

import lightning as L
import torch
from tqdm import tqdm

from lit_gpt.checkpoint import check_checkpoint_dir, load_model
from lit_gpt.config import Config
from lit_gpt.data.order import order_hash
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.tokenize import encode_prompt
from lit_gpt.file_names import CHECKPOINTS_DIR, LIT_CONFIG_FILE, TEST_FILE
from lit_gpt.infer.answer import continue_ids
from lit_gpt.lora import LoRAConfig, mark_only_lora_as_trainable
from lit_gpt.prompts.styles import get_prompt_style
from lit_gpt.precision import check_precision_for_device, choose_precision, param_dtype, quantization_plugin
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.args import TrainArgs, check_batch_split, check_train_args, flat_hyperparameters
from lit_gpt.train.resume import (apply_changed_hyperparameters, remove_unfinished_saves, restore_checkpoint,
                                        save_best_weights, save_step_checkpoint, weights_file_name)
from lit_gpt.train.dataset import TrainingSet, epoch_batches
from lit_gpt.train.packing import Packing
from lit_gpt.train.fabric import close_loggers, make_fabric
from lit_gpt.train.reports import overfitting_summary, plot_loss, run_summary, write_run_files
from lit_gpt.train.state import EpochRecord, TrainPlan, TrainState, checkpoint_steps, find_resume_file, step_dir
from lit_gpt.train.lock import run_lock
from lit_gpt.train.step import NonFiniteStep, TokenObjective, lr_factor, make_optimizer
from lit_gpt.utils import UserError, atomic_write_json, check_output, check_writable_dir, link_or_copy, num_parameters


class TrainingDiverged(UserError):
    """A non-finite loss or gradient: the run stops before the bad update, its checkpoints stay as they were."""


def finetune(method: Literal["lora", "full"], checkpoint_dir: "str | Path", data_dir: "str | Path",
             out_dir: "str | Path | None" = None, train: Optional[TrainArgs] = None,
             lora: Optional[LoRAConfig] = None, resume: Optional[str] = None,
             hyperparameters: Optional[dict] = None, objective=None) -> dict:
    """Fine-tunes the checkpoint on the prepared data; returns the run summary (also in out_dir/train_summary.json).
    method "lora" trains only LoRA tensors (config `lora`), "full" every weight. resume: None (a fresh run;
    refused where out_dir holds checkpoints), "auto" (the newest checkpoint in out_dir, if any) or a path.
    objective: what is trained (default `TokenObjective()`, instruction tuning; see lit_gpt.train.step)."""
    train = train or TrainArgs()
    objective = objective or TokenObjective()
    script = objective.script or method
    lora = (lora or LoRAConfig()) if method == "lora" else None
    check_train_args(train, method)
    checkpoint_dir = check_checkpoint_dir(checkpoint_dir)
    data_dir = Path(data_dir)
    tokenizer = Tokenizer(checkpoint_dir)
    train_raw, test_raw, manifest = load_prepared(data_dir, tokenizer, format=objective.data_format)
    if isinstance(manifest.get("prompt_style"), str):  # the style the data was prepared in (a mix: its inputs' one)
        style = get_prompt_style(manifest["prompt_style"])
        style.check_tokenizer(tokenizer, Config.from_checkpoint(checkpoint_dir).vocab_size)
    out_dir = Path(out_dir) if out_dir is not None else Path("out") / script / (manifest.get("name") or data_dir.name)
    check_output(out_dir, {"--checkpoint_dir": checkpoint_dir, "--data_dir": data_dir}, "--out_dir")
    with _removed_if_it_fails_early(out_dir), contextlib.ExitStack() as locked:
        check_writable_dir(out_dir)
        resume_file = find_resume_file(out_dir, resume)
        precision = choose_precision(train.precision)
        check_precision_for_device(precision, cuda=torch.cuda.is_available())
        plugin = quantization_plugin(train.quantize, precision)
        fabric = make_fabric(train, precision, plugin, out_dir)
        accum = check_batch_split(train, fabric.world_size)
        fabric.launch()
        locked.enter_context(run_lock(fabric, out_dir))  # one run at a time in out_dir

        train_set, val_set, max_seq_length = _training_sets(fabric, train, checkpoint_dir, data_dir, train_raw,
                                                            test_raw, objective)
        hyperparameters = hyperparameters if hyperparameters is not None else flat_hyperparameters(train, lora)
        _start_run(fabric, out_dir, checkpoint_dir, data_dir, manifest, lora, hyperparameters, script)

        cuda_devices = [fabric.device] if fabric.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):  # seeds below are the run's; the caller's RNG is restored
            torch.manual_seed(train.seed)  # the LoRA init (identical on every rank)
            model = _setup_model(fabric, method, checkpoint_dir, train, lora, plugin, precision, accum)
            if train.packing:
                fabric.print(objective.packing_note(max_seq_length, train.micro_batch_size))
            objective.prepare(fabric, model, train_set, val_set, train.micro_batch_size)  # before resuming: the base
            optimizer = fabric.setup_optimizers(make_optimizer(model, train.learning_rate, train.weight_decay))

            steps_per_epoch = math.ceil(len(train_set) / train.batch_size)
            epochs, total_steps, warmup = schedule(train, steps_per_epoch, fabric.print)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total_steps))

            plan = TrainPlan(batch_size=train.batch_size, seed=train.seed, order=train.order, n_train=len(train_set),
                             max_seq_length=max_seq_length, data_fingerprint=manifest.get("fingerprint"))
            state = TrainState(plan=plan, hyperparameters=hyperparameters)
            if resume_file is not None:
                _resume(fabric, resume_file, model, optimizer, scheduler, state, hyperparameters, strict=lora is None)
            trainer = Trainer(fabric=fabric, model=model, optimizer=optimizer, scheduler=scheduler, args=train,
                              epochs=epochs, out_dir=out_dir, train_set=train_set, val_set=val_set, accum=accum,
                              total_steps=total_steps, state=state, lora=lora is not None, tokenizer=tokenizer,
                              sample_prompt=sample_prompt(tokenizer, manifest, val_set), precision=precision,
                              objective=objective)
            try:
                trainer.fit()
            finally:
                close_loggers(fabric.loggers, "success" if state.stop_reason else "failed")
            return trainer.finish()


def _training_sets(fabric: L.Fabric, train: TrainArgs, checkpoint_dir: Path, data_dir: Path, train_raw: list,
                   test_raw: list, objective) -> tuple[TrainingSet, TrainingSet, int]:
    """The training and validation sets and max_seq_length; a warning where there is nothing to validate on."""
    config = Config.from_file(checkpoint_dir / LIT_CONFIG_FILE)
    train_set, val_set, max_seq_length = objective.training_sets(train_raw, test_raw, data_dir, config,
                                                                 train.override_max_seq_length, fabric.print)
    if not len(val_set):
        fabric.print(f"warning: {data_dir / TEST_FILE} has no examples: no validation"
                     + (", so no early stopping" if train.early_stopping_patience is not None else "")
                     + " and no best checkpoint (prepare with --test_split_fraction above 0 for them)")
    return train_set, val_set, max_seq_length


def _start_run(fabric: L.Fabric, out_dir: Path, checkpoint_dir: Path, data_dir: Path, manifest: dict,
               lora: Optional[LoRAConfig], hyperparameters: dict, method: str) -> None:
    """The run's files in out_dir (rank zero; a crashed save's leftovers removed) and its hyperparameters logged."""
    if fabric.is_global_zero:
        remove_unfinished_saves(out_dir)
        write_run_files(out_dir, checkpoint_dir, data_dir, manifest, lora, hyperparameters, method)
    for logger in fabric.loggers[1:]:  # once per run; the CSV logger has none (hyperparameters.yaml has them)
        logger.log_hyperparams(hyperparameters)
    fabric.barrier()


def _setup_model(fabric: L.Fabric, method: str, checkpoint_dir: Path, train: TrainArgs, lora: Optional[LoRAConfig],
                 plugin, precision: str, accum: int) -> torch.nn.Module:
    """The checkpoint's model with LoRA (initialized from torch's RNG), gradient checkpointing and compile as asked,
    set up by Fabric."""
    # on the CPU; fabric.setup_module moves it to the device (and quantizes the base layers under --quantize)
    model = load_model(checkpoint_dir, dtype=plugin.dtype if plugin is not None else param_dtype(precision))
    if lora is not None:
        lora.apply(model)
        mark_only_lora_as_trainable(model)
    model.gradient_checkpointing = train.gradient_checkpointing
    model.neftune_noise_alpha = train.neftune_noise_alpha
    if train.compile:
        model.compile_blocks()
    fabric.print(f"{method}: training {num_parameters(model, requires_grad=True):,} of "
                 f"{num_parameters(model):,} parameters; precision {precision}"
                 f"{', base quantized ' + train.quantize if train.quantize else ''}; {fabric.world_size} "
                 f"device(s), {accum} micro-batch(es) of {train.micro_batch_size} per device per step")
    model = fabric.setup_module(model)
    if lora is not None:  # quantization replaced the base layers by new ones: freeze those too
        mark_only_lora_as_trainable(model)
    return model


def _resume(fabric: L.Fabric, resume_file: Path, model, optimizer, scheduler, state: TrainState,
            hyperparameters: dict, strict: bool) -> None:
    """Restores the checkpoint into model, optimizer, scheduler and state; the hyperparameters that differ from the
    checkpoint's apply from here on."""
    restore_checkpoint(fabric, resume_file, model, optimizer, scheduler, state, strict=strict)
    apply_changed_hyperparameters(state.hyperparameters, hyperparameters, optimizer, scheduler, fabric.print)
    state.hyperparameters = hyperparameters
    fabric.print(f"resumed from {resume_file.parent} at step {state.step} "
                 f"(epoch {state.epoch + 1}, batch {state.batch_in_epoch})")


@contextlib.contextmanager
def _removed_if_it_fails_early(out_dir: Path) -> Iterator[None]:
    """A run that fails before its first checkpoint leaves nothing behind in an out_dir it created (a folder holding
    only lit_config.json would look like a result)."""
    created = not out_dir.exists()
    try:
        yield
    except BaseException:
        if created and out_dir.is_dir() and not (out_dir / CHECKPOINTS_DIR).exists():
            shutil.rmtree(out_dir, ignore_errors=True)
        raise


def schedule(args: TrainArgs, steps_per_epoch: int, print=print) -> tuple[int, int, int]:
    """(epochs, total steps, warmup steps) of a run. Only max_iters set means "train max_iters steps", over as many
    epochs as that needs (a Lit-GPT habit); epochs and max_iters both set: whichever ends first."""
    if args.epochs is None:
        epochs = math.ceil(args.max_iters / steps_per_epoch) if args.max_iters else 1
    else:
        epochs = args.epochs
        if args.max_iters is not None and args.max_iters > epochs * steps_per_epoch:
            print(f"note: {epochs} epoch(s) are {epochs * steps_per_epoch} steps, fewer than "
                  f"max_iters={args.max_iters}; training stops after the last epoch (set epochs = None to run "
                  "max_iters steps)")
    total_steps = epochs * steps_per_epoch
    if args.max_iters is not None:
        total_steps = min(total_steps, args.max_iters)
    warmup = min(args.warmup_steps, total_steps // 2)
    if warmup < args.warmup_steps:
        print(f"warmup: {warmup} steps instead of {args.warmup_steps} (at most half of the {total_steps} steps)")
    return epochs, total_steps, warmup


def sample_prompt(tokenizer: Tokenizer, manifest: dict, val_set: TrainingSet) -> Optional[torch.Tensor]:
    """Prompt ids for the sample answer at each validation: the first held-out instruction in the data's prompt
    style, or (for rows without an instruction, e.g. conversations) the tokens the model saw before that example's
    first answer."""
    if not len(val_set):
        return None
    example = val_set.raw[0]
    if example.get("prompt_ids") is not None:  # a preference pair: its prompt
        return example["prompt_ids"]
    if manifest.get("prompt_style") and example.get("instruction"):
        return encode_prompt(tokenizer, manifest["prompt_style"], example["instruction"], example.get("input") or "")
    first_target = int((val_set.targets[0] != -100).nonzero()[0])
    return val_set.inputs[0][: first_target + 1]


class Trainer:
    """One run's objects and the loop over them: steps, validation, epoch records, checkpoints, the final files."""

    def __init__(self, *, fabric, model, optimizer, scheduler, args: TrainArgs, epochs: int, out_dir: Path,
                 train_set: TrainingSet, val_set: TrainingSet, accum: int, total_steps: int, state: TrainState,
                 lora: bool, tokenizer: Tokenizer, sample_prompt: Optional[torch.Tensor], precision: str,
                 objective=None) -> None:
        self.fabric, self.model, self.optimizer, self.scheduler = fabric, model, optimizer, scheduler
        self.args, self.epochs, self.out_dir, self.lora, self.precision = args, epochs, out_dir, lora, precision
        self.train_set, self.val_set, self.accum, self.total_steps = train_set, val_set, accum, total_steps
        self.state, self.tokenizer, self.sample_prompt = state, tokenizer, sample_prompt
        self.objective = objective or TokenObjective()
        self.steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
        self.last_saved_step: Optional[int] = None
        # the order actually trained (after any length grouping), fingerprinted so reruns can be checked to match
        first = [i for b in epoch_batches(train_set, 0, args.seed, args.order, args.batch_size) for i in b]
        self.first_epoch_hash = order_hash(first)
        fabric.print(f"order {args.order}: first epoch order hash {self.first_epoch_hash} (seed {args.seed})")

    def fit(self) -> None:
        state, fabric = self.state, self.fabric
        if state.step >= self.total_steps or state.stop_reason == "early_stopping":
            state.stop_reason = state.stop_reason or "done"
            return
        state.stop_reason = None
        bar = tqdm(total=self.total_steps, initial=state.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not fabric.is_global_zero, mininterval=0.5)
        self.write = bar.write if fabric.is_global_zero else (lambda message: None)
        try:
            while state.step < self.total_steps and state.stop_reason is None:
                self.train_epoch(bar)
            state.stop_reason = state.stop_reason or "done"
            if self.last_saved_step != state.step:
                self.save_checkpoint()
        finally:
            bar.close()

    def train_epoch(self, bar: tqdm) -> None:
        """The current epoch's remaining batches, until its end or the run's: a step each, validation, the metrics
        logged, the epoch's record and checkpoints when due."""
        state, args = self.state, self.args
        epoch = state.epoch
        batches = epoch_batches(self.train_set, epoch, args.seed, args.order, args.batch_size)
        while state.batch_in_epoch < len(batches) and state.step < self.total_steps:
            metrics, epoch_done = self.train_batch(batches, epoch)
            step = metrics["iter"]
            last = step >= self.total_steps
            if len(self.val_set) and (step % args.eval_interval == 0 or epoch_done or last):
                metrics.update(self.evaluate())
            self.fabric.log_dict(metrics, step=step)
            bar.set_postfix(loss=f"{metrics['train_loss']:.4f}", lr=f"{metrics['lr']:.2e}", refresh=False)
            bar.update(1)
            stop = last or state.stop_reason is not None
            if epoch_done or stop:
                self.record_epoch(metrics)
            if step % args.save_interval == 0 or stop:
                self.save_checkpoint()
            if epoch_done or stop:
                break

    def train_batch(self, batches: list, epoch: int) -> tuple[dict, bool]:
        """One optimizer step on the epoch's next batch, counted in the state; its metrics and whether it ended the
        epoch."""
        state = self.state
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        result = self.step(batches[state.batch_in_epoch])
        state.step += 1
        state.batch_in_epoch += 1
        state.tokens += result.tokens
        state.padded_tokens += result.padded_tokens
        epoch_done = state.batch_in_epoch == len(batches)
        if epoch_done:
            state.epoch += 1
            state.batch_in_epoch = 0
        state.train_losses.append((state.step, result.loss))
        metrics = {"iter": state.step, "epoch": epoch + (state.batch_in_epoch or len(batches)) / len(batches),
                   "train_loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                   "tokens_per_sec": result.tokens / (time.perf_counter() - t0),
                   "non_pad_share": result.tokens / result.padded_tokens, **result.metrics}
        return metrics, epoch_done

    def step(self, batch: list):
        packing = Packing(self.state.plan.max_seq_length, self.args.micro_batch_size) if self.args.packing else None
        try:
            return self.objective.train_step(self.fabric, self.model, self.optimizer, self.scheduler, self.train_set,
                                             batch, accum=self.accum, seed=self.args.seed, step=self.state.step,
                                             grad_clip=self.args.grad_clip, precision=self.precision, packing=packing)
        except NonFiniteStep as e:
            steps = checkpoint_steps(self.out_dir)
            kept = f"the last good checkpoint is {steps[-1]}" if steps else "no checkpoint was saved yet"
            losses = [loss for _, loss in self.state.train_losses]
            if steps and losses and losses[-1] > 2 * min(losses):  # it was blowing up before it became NaN
                kept += (f" (but the loss had already risen from {min(losses):.3g} to {losses[-1]:.3g}, so it may "
                         "be damaged too: an earlier checkpoints/step-* is safer)")
            raise TrainingDiverged(f"step {self.state.step + 1}: {e} (not finite), stopped without updating the "
                                   f"weights; {kept}; lower --learning_rate (now {self.args.learning_rate}) and "
                                   "start again, or --resume auto (the new learning rate applies from there)") from None

    def evaluate(self) -> dict:
        """Validation + sample answer + early-stopping bookkeeping (best weights are saved as a checkpoint); the
        validation metrics, by their log names."""
        state, args = self.state, self.args
        t0 = time.perf_counter()
        metrics = self.objective.validate(self.fabric, self.model, self.val_set, args.micro_batch_size,
                                          args.eval_iters)
        val_loss = metrics["val_loss"]
        state.val_losses.append((state.step, val_loss))
        others = "".join(f", {name[len('val_'):]} {value:.4f}" for name, value in metrics.items() if name != "val_loss")
        message = f"step {state.step}: val loss {val_loss:.4f}{others} ({time.perf_counter() - t0:.1f}s)"
        if self.sample_prompt is not None and args.sample_max_new_tokens > 0:
            message += f"\n  sample: {self.sample_answer()!r}"
        self.write(message)
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            self.keep_best(val_loss)
        else:
            state.evals_without_improvement += 1
            if (args.early_stopping_patience is not None
                    and state.evals_without_improvement >= args.early_stopping_patience):
                state.stop_reason = "early_stopping"
                self.write(f"early stopping: no better val loss in {args.early_stopping_patience} validations; "
                           f"best {state.best_val_loss:.4f} at step {state.best_step}")
        return metrics

    def keep_best(self, val_loss: float) -> None:
        """A new best validation: recorded, and its weights kept where early stopping or several epochs need them."""
        state, args = self.state, self.args
        state.best_val_loss, state.best_step = val_loss, state.step
        state.evals_without_improvement = 0
        state.best_epoch = state.epochs_done(self.steps_per_epoch)
        if args.early_stopping_patience is not None:
            self.save_checkpoint()  # the best weights must survive whatever comes after
        if args.early_stopping_patience is not None or self.epochs > 1:
            save_best_weights(self.fabric, self.out_dir, self.model, state, self.lora,
                              just_saved=self.last_saved_step == state.step)

    def sample_answer(self) -> str:
        was_training = self.model.training
        self.model.eval()
        try:  # greedy: every rank produces the same tokens, so they run the same number of forwards
            prompt = self.sample_prompt.to(self.fabric.device)
            return continue_ids(self.model, self.tokenizer, prompt, self.args.sample_max_new_tokens).text
        finally:
            self.model.train(was_training)

    def record_epoch(self, metrics: dict) -> None:
        """An EpochRecord at the end of an epoch (or of a run stopped inside one): the mean train loss of its steps
        and the validation loss at its end, for the log and overfitting_summary.json."""
        state = self.state
        since = state.epochs[-1].step if state.epochs else 0
        losses = [loss for step, loss in state.train_losses if step > since]
        record = EpochRecord(epoch=round(metrics["epoch"], 4), step=metrics["iter"],
                             train_loss=sum(losses) / len(losses) if losses else None,
                             val_loss=metrics.get("val_loss"))
        state.epochs.append(record)
        self.write(f"epoch {record.epoch:g} (step {record.step}): mean train loss {record.train_loss:.4f}"
                   + (f", val loss {record.val_loss:.4f}" if record.val_loss is not None else ""))

    def save_checkpoint(self) -> Path:
        if self.last_saved_step != self.state.step:
            save_step_checkpoint(self.fabric, self.out_dir, self.model, self.optimizer, self.scheduler, self.state,
                                 self.lora)
            self.last_saved_step = self.state.step
        return step_dir(self.out_dir, self.state.step)

    def finish(self) -> dict:
        """Final weights at the top of out_dir (the best checkpoint's under early stopping), loss.png, summaries."""
        fabric, state, out_dir = self.fabric, self.state, self.out_dir
        use_best = self.args.early_stopping_patience is not None and state.best_step is not None
        source_step = state.best_step if use_best else state.step
        name = weights_file_name(self.lora)
        summary = run_summary(state, self.steps_per_epoch, name, source_step, self.args.order, self.first_epoch_hash)
        if fabric.is_global_zero:
            link_or_copy(step_dir(out_dir, source_step) / name, out_dir / name)
            plot_loss(state.train_losses, state.val_losses, out_dir / "loss.png")
            atomic_write_json(out_dir / "train_summary.json", summary)
            atomic_write_json(out_dir / "overfitting_summary.json",
                              overfitting_summary(state, out_dir, self.lora, self.args.early_stopping_patience))
            fabric.print(f"done: {summary['steps']} steps, {summary['epochs']:.2f} epochs, final train loss "
                         f"{summary['final_train_loss']:.4f}"
                         + (f", val loss {summary['final_val_loss']:.4f}"
                            if summary["final_val_loss"] is not None else "")
                         + f", {summary['non_pad_share']:.0%} of batch tokens not padding; weights (step "
                         f"{source_step}) in {out_dir / name}")
        fabric.barrier()
        return summary

"""The examples and batches scripts/dev/benchmark.py times: real LIMA/Alpaca/Dolly rows tokenized at run time (or a
fixed token stream, or a prepared dataset), the global batches our training loop would train on (and, with packing,
the rows it packs them into), LitGPT's micro-batches of the same examples, padding statistics and the model FLOPs of
the timed work."""

from pathlib import Path
from typing import Optional

import torch

from lit_gpt.data.normalize import BadRecord, normalize
from lit_gpt.data.order import epoch_order
from lit_gpt.data.prepared import load_prepared
from lit_gpt.data.records import iter_records
from lit_gpt.data.tokenize import tokenize_examples
from lit_gpt.prompts.styles import default_prompt_style
from lit_gpt.tokenizer import Tokenizer
from lit_gpt.train.dataset import TrainingSet, epoch_batches, padding_stats, split_batch
from lit_gpt.train.packing import Packing
from lit_gpt.utils import UserError

SHARED_DIR = Path(__file__).resolve().parents[2].parent / "shared"
TOKENIZER_DIR = SHARED_DIR / "tokenizers" / "smollm2"
# shared file and its column mapping (as in scripts/prepare_lima.py / prepare_dolly.py)
DATASET_FILES = {"lima": ("datasets/lima/train.jsonl", None),
                 "alpaca": ("datasets/alpaca/alpaca_random_9k.json", None),
                 "dolly": ("datasets/dolly/dolly_3k.jsonl", {"input": "context", "output": "response"})}


def dataset_examples(dataset: str, max_seq_length: int, vocab_size: int, limit: Optional[int]) -> list[dict]:
    """Real LIMA/Alpaca/Dolly rows through our data pipeline (SmolLM2 tokenizer, its chat format, prompt masked); `fixed`
    packs the same token stream into rows of exactly max_seq_length + 1 tokens (inputs and shifted targets), all trained."""
    relative_path, columns = DATASET_FILES["lima" if dataset == "fixed" else dataset]
    source = SHARED_DIR / relative_path
    if not source.is_file() or not TOKENIZER_DIR.is_dir():
        raise UserError(f"{source}: the shared datasets and tokenizer are needed for --dataset {dataset}; "
                        "pass --data_dir with a prepared dataset instead")
    rows = []
    for _, row in iter_records(source, columns=columns):
        try:
            rows.append(normalize(row, source=dataset))
        except BadRecord:  # dropped, as prepare drops them (Alpaca has a few rows with an empty output)
            continue
    if limit is not None:
        rows = rows[:limit]
    tokenizer = Tokenizer(TOKENIZER_DIR)
    style = default_prompt_style(TOKENIZER_DIR)
    row_length = max_seq_length + 1  # training shifts: inputs = ids[:-1], targets = labels[1:]
    tokenized, _ = tokenize_examples(rows, tokenizer, style, row_length if dataset != "fixed" else 10 ** 9)
    examples = [{"input_ids": e["input_ids"] % vocab_size, "labels": torch.where(e["labels"] >= 0, e["labels"] % vocab_size,
                                                                                 e["labels"])} for e in tokenized]
    if dataset == "fixed":
        stream = torch.cat([e["input_ids"] for e in examples])
        n = stream.numel() // row_length
        examples = [{"input_ids": row.clone(), "labels": row.clone()} for row in stream[: n * row_length].view(n, row_length)]
    return examples


def random_token_examples(n: int, max_seq_length: int, vocab_size: int) -> list[dict]:
    """n rows of exactly max_seq_length + 1 random token ids (inputs and shifted targets), all trained."""
    rows = torch.randint(0, vocab_size, (n, max_seq_length + 1), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row.clone(), "labels": row.clone()} for row in rows]


def load_examples(data_dir: Optional[Path], dataset: str, max_seq_length: int, vocab_size: int,
                  limit: Optional[int]) -> tuple[list[dict], str]:
    if data_dir is None and dataset == "random":
        return random_token_examples(limit or 64, max_seq_length, vocab_size), "random token ids"
    if data_dir is None:
        return dataset_examples(dataset, max_seq_length, vocab_size, limit), f"{dataset} (tokenized at run time)"

    train, _, manifest = load_prepared(data_dir)
    train = train[:limit] if limit is not None else train
    return [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in train], str(data_dir)


def batch_plan(examples: list[dict], max_seq_length: int, vocab_size: int, batch_size: int, micro_batch_size: int,
               steps: Optional[int], seed: int, order: str, litgpt_batching: str, packing: bool = False) -> dict:
    """The first `steps` global batches our loop would train on (all of the epoch for None), and LitGPT's
    micro-batches of the same examples: the same tensors (`same`), or (`plain`) those examples in the epoch order
    cut into micro-batches and padded to the longest, as a loader without length grouping does. Plus padding
    statistics of the whole epoch for the loop's batching and for plain batching. With `packing` our loop packs
    each global batch into rows of max_seq_length tokens, micro_batch_size rows a pass (lit_gpt.train.packing)."""
    data = TrainingSet(examples, max_seq_length, "benchmark", vocab_size)
    accum = batch_size // micro_batch_size
    epoch = epoch_batches(data, 0, seed, order, batch_size)
    if steps is not None and len(epoch) < steps:
        raise SystemExit(f"only {len(epoch)} batches of {batch_size} in the data; lower --steps_per_run")
    chosen = epoch[:steps] if steps is not None else epoch
    timed = [mb for b in chosen for mb in split_batch(b, accum)]
    packer = Packing(max_seq_length, micro_batch_size) if packing else None
    packed = [mb for b in chosen for mb in packer.micro_batches(data.lengths, b, 1)] if packer else None
    plain_order = epoch_order(data.raw, 0, seed, order)
    if litgpt_batching == "plain":
        position = {i: k for k, i in enumerate(plain_order)}
        in_order = sorted((i for mb in timed for i in mb), key=position.__getitem__)
        litgpt_timed = [in_order[s: s + micro_batch_size] for s in range(0, len(in_order), micro_batch_size)]
    else:
        litgpt_timed = timed
    litgpt_steps = [litgpt_timed[s: s + accum] for s in range(0, len(litgpt_timed), accum)]
    micro_batches = [[data.collate(mb, torch.device("cpu")) for mb in step] for step in litgpt_steps]
    plain = [plain_order[s: s + micro_batch_size] for s in range(0, len(plain_order), micro_batch_size)]
    grouped = [mb for b in epoch for mb in split_batch(b, accum)]

    def share(mbs: list) -> float:
        real, padded = padding_stats(data, mbs)
        return round(real / padded, 4)

    real, padded = padding_stats(data, timed) if packer is None else Packing.padding_stats(data, packed)
    trained = sum(data.n_targets[i] for mb in timed for i in mb)
    return {"examples": [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in data.raw],
            "batches": chosen, "micro_batches": micro_batches,
            "padded_tokens": {"ours": padded, "litgpt": padding_stats(data, litgpt_timed)[1]},
            "stats": {"examples_in_data": len(data), "timed_steps_per_run": len(chosen),
                      "timed_examples_per_run": sum(len(b) for b in chosen),
                      "timed_real_tokens_per_run": real, "timed_trained_tokens_per_run": trained,
                      "timed_tokens_per_run_ours": padded,
                      "timed_tokens_per_run_litgpt": padding_stats(data, litgpt_timed)[1],
                      "timed_micro_batch_shapes": [[len(mb), max(data.lengths[i] for i in mb)] for mb in timed][:16]
                      if packer is None else [[len(mb), max(sum(data.lengths[i] for i in row) for row in mb)]
                                              for mb in packed if mb][:16],
                      "packing": packing,
                      # forward+backward passes per run: each reads every weight at least twice (the memory floor)
                      "timed_passes_ours": len(timed) if packer is None else len(packed),
                      "timed_passes_litgpt": len(litgpt_timed),
                      "non_padding_share_timed": round(real / padded, 4),
                      "non_padding_share_epoch_loop_batching": share(grouped),
                      "non_padding_share_epoch_plain_batching": share(plain),
                      "trained_token_share": round(sum(data.n_targets) / max(1, sum(data.lengths)), 4),
                      "length_mean": round(sum(data.lengths) / max(1, len(data)), 1),
                      "length_max": max(data.lengths)},
            "flops_lengths": [data.lengths[i] for mb in timed for i in mb]}


def training_flops(config, lengths: list[int], method: str) -> float:
    """Model FLOPs to train on these examples; LoRA skips the weight-gradient matmuls of the frozen weights."""
    from lit_gpt.model import flops_per_token

    weight_grad = flops_per_token(config, 0) / 3 if method == "lora" else 0.0  # 2 x params of the 6 x params
    return sum(n * (flops_per_token(config, n) - weight_grad) for n in lengths)

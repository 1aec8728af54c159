"""The data doctor: checks prepared data (train.pt, test.pt, manifest.json) before you spend GPU hours on it.

    python scripts/inspect_data.py --data_dir data/lima
    python scripts/inspect_data.py --data_dir data/lima --show 3      # print 3 examples, trained tokens marked

Reports per source: examples, token lengths (a text histogram here, a PNG beside the data), the share of tokens
trained on, truncated examples and exact duplicates. Then the defects that silently hurt training: a trained span
that does not end with EOS (the model never learns to stop), doubled or missing BOS, empty responses, labels that
differ from input_ids, examples longer than max_seq_length, ids outside the vocabulary, test examples that are also
in train, data prepared with another tokenizer or not matching its manifest. Exits with status 1 when it finds any.
"""

import importlib.util
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

import matplotlib.figure

from lit_gpt.data.defects import example_defects
from lit_gpt.data.prepared import length_stats, load_prepared
from lit_gpt.data.tokenize import IGNORE_INDEX, decode_with_specials
from lit_gpt.utils import UserError, atomic_path, run_cli

COLORS = {False: "\033[2m", True: "\033[1;32m"}  # masked: dim, trained: bold green
RESET = "\033[0m"
BRACKETS = ("[[", "]]")  # trained text without a terminal
SHOWN_DEFECTS = 5  # example locations listed per defect
SHOWN_HISTOGRAMS = 6  # text histograms of the largest sources (the PNG has them all)
OVERLAP = "test examples also in train (exact duplicates: the test loss is optimistic)"


def load_tokenizer(manifest: dict, checkpoint_dir: Optional[Path]):
    from lit_gpt.tokenizer import Tokenizer

    directory = Path(checkpoint_dir) if checkpoint_dir else Path(manifest.get("tokenizer_dir", ""))
    if checkpoint_dir is None and not directory.is_dir():
        return None
    return Tokenizer(directory)


def duplicate_count(examples: list[dict]) -> int:
    keys = [e["input_ids"].numpy().tobytes() for e in examples]
    return len(keys) - len(set(keys))


def text_histogram(lengths: list[int], max_length: int, bins: int = 10, width: int = 40) -> list[str]:
    step = max(1, -(-max_length // bins))
    counts = Counter(min(n // step, bins - 1) for n in lengths)
    peak = max(counts.values(), default=1)
    return [f"  {b * step:>6}-{min((b + 1) * step, max_length):<6} {'#' * round(width * counts[b] / peak):<{width}} "
            f"{counts[b]}" for b in range(bins)]


def save_plot(by_source: dict, max_length: int, path: Path) -> None:
    fig = matplotlib.figure.Figure(figsize=(8, 4.5))  # no pyplot: no GUI backend chosen or needed
    ax = fig.subplots()
    ax.hist([[len(e["input_ids"]) for e in rows] for rows in by_source.values()], bins=40, range=(0, max_length),
            stacked=True, label=list(by_source))
    ax.axvline(max_length, color="k", linestyle="--", linewidth=1)
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    ax.set_title(f"{path.parent.name}: token lengths (max_seq_length {max_length})")
    if len(by_source) <= 12:
        ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic_path(path, "--plot") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def show_example(example: dict, tokenizer, color: bool) -> str:
    """The example's text with trained and masked stretches told apart. Each stretch's text is the difference of two
    decoded prefixes, so spaces and multi-byte characters at stretch boundaries come out as they are."""
    ids = example["input_ids"].tolist()
    trained = (example["labels"] != IGNORE_INDEX).tolist()
    boundaries = [0] + [i for i in range(1, len(ids)) if trained[i] != trained[i - 1]] + [len(ids)]
    prefixes = [decode_with_specials(tokenizer, ids[:b]) for b in boundaries]
    parts = []
    for k in range(len(boundaries) - 1):
        text = prefixes[k + 1][len(prefixes[k]):]
        flag = trained[boundaries[k]]
        if color:
            parts.append(f"{COLORS[flag]}{text}{RESET}")
        else:
            parts.append(f"{BRACKETS[0]}{text}{BRACKETS[1]}" if flag else text)
    return "".join(parts)


def find_defects(train: list, test: list, manifest: dict, tokenizer) -> tuple[dict, set]:
    """({defect: its locations}, id() of the examples with a defect, for the per-source counts)."""
    bos_id, eos_id, use_bos = manifest.get("bos_id"), manifest.get("eos_id"), manifest.get("use_bos", False)
    max_length = manifest.get("max_seq_length")
    splits = {"train": train, "test": test}

    defects: dict[str, list[str]] = defaultdict(list)
    defective = set()
    for split, examples in splits.items():
        expected = manifest.get("counts", {}).get(split)
        if expected is not None and expected != len(examples):
            defects["files do not match the manifest"].append(f"{split}.pt has {len(examples)} examples, the "
                                                              f"manifest says {expected}")
        for i, example in enumerate(examples):
            for defect in example_defects(example, bos_id, eos_id, use_bos, max_length):
                defects[defect].append(f"{split}[{i}] id={example.get('id')}")
                defective.add(id(example))
    if tokenizer is not None:
        if tokenizer.fingerprint != manifest.get("tokenizer_fingerprint"):
            defects["prepared with another tokenizer"].append(f"{tokenizer.checkpoint_dir}")
        for split, examples in splits.items():
            for i, example in enumerate(examples):
                if len(example["input_ids"]) and int(example["input_ids"].max()) >= tokenizer.vocab_size:
                    defects["token id outside the vocabulary"].append(f"{split}[{i}] id={example.get('id')}")
                    defective.add(id(example))

    train_keys = {e["input_ids"].numpy().tobytes() for e in train}
    for i, example in enumerate(test):  # a test example the model trains on makes the test loss optimistic
        if example["input_ids"].numpy().tobytes() in train_keys:
            defects[OVERLAP].append(f"test[{i}] id={example.get('id')}")
            defective.add(id(example))
    return defects, defective


def main(data_dir: Path = Path("data/alpaca"), show: int = 0, checkpoint_dir: Optional[Path] = None,
         plot: Optional[Path] = None, color: Optional[bool] = None) -> None:
    """Check prepared data and report per source; exit 1 on defects that would silently hurt training.

    Args:
        data_dir: directory with train.pt, test.pt and manifest.json from a scripts/prepare_*.py run
        show: print this many training examples with trained and masked tokens told apart
        checkpoint_dir: tokenizer to decode with (default: the one recorded in the manifest)
        plot: where to write the token-length histogram PNG (default: <data_dir>/token_lengths.png)
        color: colour the --show output (default: when printing to a terminal; otherwise [[trained]] brackets)
    """
    data_dir = Path(data_dir)
    train, test, manifest = load_prepared(data_dir)
    tokenizer = load_tokenizer(manifest, checkpoint_dir)
    defects, defective = find_defects(train, test, manifest, tokenizer)
    max_length = manifest.get("max_seq_length")

    everything = train + test
    by_source: dict[str, list[dict]] = defaultdict(list)
    for example in everything:
        by_source[example.get("source", "unknown")].append(example)

    print(f"{data_dir}: {len(train)} train + {len(test)} test examples; prompt style {manifest.get('prompt_style')}, "
          f"max_seq_length {max_length}, tokenizer {manifest.get('tokenizer_dir')}")
    counts = manifest.get("counts", {})
    if counts.get("dropped"):
        print("dropped while preparing: " + ", ".join(f"{n} {r}" for r, n in counts["dropped"].items()))
    header = f"{'source':<24} {'examples':>8} {'tokens p50':>10} {'p99':>6} {'max':>6} {'trained':>8} " \
             f"{'truncated':>9} {'dupl.':>6} {'defects':>7}"
    print(header)
    print("-" * len(header))
    sources = sorted(by_source.items(), key=lambda kv: -len(kv[1]))
    for source, rows in sources + [("(all)", everything)]:
        stats = length_stats(rows)
        total = sum(len(e["labels"]) for e in rows)
        trained = sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in rows)
        print(f"{source[:24]:<24} {len(rows):>8} {stats['p50']:>10} {stats['p99']:>6} {stats['max']:>6} "
              f"{trained / max(total, 1):>8.1%} {sum(bool(e.get('truncated')) for e in rows):>9} "
              f"{duplicate_count(rows):>6} {sum(id(e) in defective for e in rows):>7}")

    shown_sources = sources[:SHOWN_HISTOGRAMS] if len(sources) > 1 else []
    for source, rows in shown_sources + [("all sources", everything)]:
        print(f"\ntoken lengths, {source}:")
        print("\n".join(text_histogram([len(e["input_ids"]) for e in rows], max_length or 1)))
    plot = Path(plot) if plot else data_dir / "token_lengths.png"
    save_plot(by_source, max_length or max(len(e["input_ids"]) for e in everything), plot)
    print(f"histogram per source: {plot}")

    if show:
        if tokenizer is None:
            raise UserError(f"{manifest.get('tokenizer_dir')}: the tokenizer the data was prepared with is gone; "
                            "pass --checkpoint_dir to decode the examples")
        color = sys.stdout.isatty() if color is None else color
        legend = (f"{COLORS[True]}trained{RESET} / {COLORS[False]}masked{RESET}" if color
                  else f"{BRACKETS[0]}trained{BRACKETS[1]}, the rest masked")
        for example in train[:show]:
            print(f"\n--- {example.get('id')} ({example.get('source')}, {len(example['input_ids'])} tokens; {legend})")
            print(show_example(example, tokenizer, color))

    if defects:
        print("\ndefects:")
        for defect, where in defects.items():
            more = ", ..." if len(where) > SHOWN_DEFECTS else ""
            print(f"  {defect}: {len(where)} ({', '.join(where[:SHOWN_DEFECTS])}{more})")
        summary = ", ".join(f"{len(where)} {defect}" for defect, where in defects.items())
        fix = "remove the rows that are in the source twice, then prepare" if OVERLAP in defects else "prepare"
        raise UserError(f"{data_dir}: defects that would silently hurt training: {summary}; {fix} the data again "
                        "with scripts/prepare_*.py")
    print("\nno defects found")


if __name__ == "__main__":
    run_cli(main)

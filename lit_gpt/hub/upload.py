"""Uploads to the Hugging Face Hub: an HF-format folder (scripts/convert_lit_checkpoint.py) or GGUF files, with a
model card (`lit_gpt.hub.model_card`) as README.md.

One commit per upload: `HfApi.create_commit` with the files chosen here (what `upload_folder` does, without sending
hidden folders such as huggingface_hub's .cache/ or a lit-format checkpoint's training state along). huggingface_hub
decides per file between a regular and an LFS upload. Every Hub call goes through `translate_hub_errors`; the token
is handed to huggingface_hub only, never printed or written (the card holds no local paths either).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from huggingface_hub import CommitOperationAdd, HfApi, get_token

from lit_gpt.cli.secrets import find_credentials
from lit_gpt.file_names import HF_CONFIG_FILE, LIT_WEIGHTS_FILE, LORA_WEIGHTS_FILE
from lit_gpt.hub.download import check_repo_id, resolve_token, translate_hub_errors
from lit_gpt.hub.model_card import CARD_MARKER, RunFacts, render_card
from lit_gpt.utils import UserError, atomic_write_text

CARD_FILE = "README.md"
HF_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class UploadPlan:
    """What goes to the Hub: local file -> path in the repo, the model's format, and the card."""

    folder: Path  # the folder the files are in (a single .gguf file's parent)
    files: dict  # path in repo -> local Path
    model_format: str  # "hf" or "gguf"
    card: Optional[str]  # README.md to write and upload; None: the folder's own README.md goes as it is


def find_model_files(path: "str | Path") -> tuple[Path, dict, str]:
    """(folder, {path in repo: local file}, "hf" | "gguf") of an HF folder, a folder with .gguf files, or one .gguf
    file. Hidden files and folders are left out (.cache/ of huggingface_hub, .git/)."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".gguf":
            raise UserError(f"--folder {path}: a file that is not .gguf; pass a .gguf file or a folder")
        return path.parent, {path.name: path}, "gguf"
    if not path.is_dir():
        raise UserError(f"--folder {path}: no such file or folder")
    files = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)}
    if any(name.endswith(".gguf") for name in files):
        return path, files, "gguf"
    if HF_CONFIG_FILE in files and any(name.endswith(HF_WEIGHT_SUFFIXES) for name in files):
        return path, files, "hf"
    if LIT_WEIGHTS_FILE in files or LORA_WEIGHTS_FILE in files:
        raise UserError(f"--folder {path}: a lit-gpt-data checkpoint, not a Hub format; convert it first "
                        "(scripts/merge_lora.py for a LoRA run, then scripts/convert_lit_checkpoint.py or "
                        "scripts/export_gguf.py)")
    raise UserError(f"--folder {path}: no model found (an HF folder has {HF_CONFIG_FILE} and *.safetensors or *.bin, "
                    "a GGUF upload .gguf files)")


def check_no_credentials(path: "str | Path", folder: Path, files: dict, allow: "list[str] | tuple" = ()) -> None:
    """Refuses files that look like credentials (a token or private key inside, a credentials file's name) and, in
    a folder, links that lead out of it, unless `allow` names them (paths in the folder)."""
    found = find_credentials(folder, files, allow, check_links=Path(path).is_dir())  # not a file the user named
    if found:
        raise UserError(f"--folder {path}: refusing to upload what may be credentials: {'; '.join(found)}; remove "
                        f"them, or pass --allow {' '.join(f.split(' (')[0] for f in found)} if they are safe to publish")


def plan_upload(path: "str | Path", repo_id: str, run: Optional[RunFacts] = None, eval_report: Optional[dict] = None,
                license: Optional[str] = None, base_model: Optional[str] = None,
                allow: "list[str] | tuple" = ()) -> UploadPlan:
    """The files and the card of an upload (no network). A README.md of the author's own (without `CARD_MARKER`)
    is kept and uploaded instead of a generated card. Files that may be credentials are refused
    (`check_no_credentials`) unless `allow` names them."""
    folder, files, model_format = find_model_files(path)
    check_no_credentials(path, folder, files, allow)
    existing = files.get(CARD_FILE)
    if existing is not None and CARD_MARKER not in existing.read_text(encoding="utf-8", errors="replace"):
        return UploadPlan(folder, files, model_format, card=None)
    model_files = [name for name in files if name != CARD_FILE]
    card = render_card(repo_id, model_format, model_files, run, eval_report, license, base_model)
    return UploadPlan(folder, {name: p for name, p in files.items() if name != CARD_FILE}, model_format, card)


def write_card(plan: UploadPlan, path: "str | Path") -> Optional[Path]:
    """Writes the generated card beside the model (a folder upload), so that what was uploaded can be read locally.
    Not for a single .gguf file: its folder may hold other things whose README.md this is not."""
    if plan.card is None or Path(path).is_file():
        return None
    target = plan.folder / CARD_FILE
    atomic_write_text(target, plan.card)
    return target


def upload(plan: UploadPlan, repo_id: str, access_token: Optional[str] = None, private: bool = False,
           commit_message: Optional[str] = None) -> str:
    """Creates the repo if needed (an existing one is kept, also its visibility) and commits the plan's files and
    card in one commit; returns the commit URL."""
    repo_id = check_repo_id(repo_id)
    token = resolve_token(access_token)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(local))
                  for name, local in sorted(plan.files.items())]
    if plan.card is not None:
        operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=plan.card.encode("utf-8")))
    api = HfApi(token=token)
    with translate_hub_errors(repo_id, token, write=True):
        if token is None and get_token() is None:  # the token saved by `hf auth login`
            raise UserError(f"{repo_id}: uploading needs a Hub token with write access: set HF_TOKEN, pass "
                            "--access_token or run `hf auth login`")
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(repo_id, operations=operations,
                                 commit_message=commit_message or f"Upload {plan.model_format} model with lit-gpt-data")
    return info.commit_url

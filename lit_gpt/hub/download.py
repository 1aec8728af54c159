"""Downloads from the Hugging Face Hub: which files a checkpoint needs, the access token, and one-line errors.

Every Hub call goes through `translate_hub_errors`, which turns huggingface_hub's exceptions into a `UserError` that
names the repo and says what to do. The token is handed to huggingface_hub and never printed or written anywhere.
"""

import contextlib
import fnmatch
import glob
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional

from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import (
    DisabledRepoError,
    FileMetadataError,
    GatedRepoError,
    HFValidationError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)


from lit_gpt.registry import configs
from lit_gpt.file_names import HF_CONFIG_FILE, TOKENIZER_FILES
from lit_gpt.utils import UserError

# Weight formats in order of preference: the first one the repo has wins. safetensors loads without unpickling and
# memory-maps; .bin is only fetched from repos that have nothing else. "model*" / "pytorch_model*" are the
# transformers names (single file or shards + index); the bare "*.safetensors" catches repos with other names
# but only when no transformers-named file exists (Mistral repos also ship a duplicate consolidated.safetensors).
WEIGHT_FORMATS = (
    ("model*.safetensors", "model.safetensors.index.json"),
    ("*.safetensors", "*.safetensors.index.json"),
    ("pytorch_model*.bin", "pytorch_model.bin.index.json"),
)


class HubUnreachable(UserError):
    """The Hub could not be reached: no network, DNS, timeout, proxy, offline mode, or a server error (5xx)."""


def _network_error_types() -> tuple:
    """Transport-level exceptions of whichever HTTP client this huggingface_hub version uses."""
    types = [OfflineModeIsEnabled, LocalEntryNotFoundError, FileMetadataError]
    for module_name, class_names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                                     ("requests", ("ConnectionError", "Timeout"))):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        types += [getattr(module, name) for name in class_names if hasattr(module, name)]
    return tuple(types)


NETWORK_ERRORS = _network_error_types()


def resolve_token(access_token: Optional[str] = None) -> Optional[str]:
    """--access_token wins over $HF_TOKEN. None lets huggingface_hub fall back to a token saved by `hf auth login`."""
    token = access_token or os.environ.get("HF_TOKEN") or ""
    return token.strip() or None


def hub_endpoint() -> str:
    """The Hub's address for messages, without the user:password@ an HF_ENDPOINT mirror URL may carry."""
    return re.sub(r"//[^/@]*@", "//", constants.ENDPOINT)


def check_repo_id(repo_id: str) -> str:
    parts = repo_id.strip().split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise UserError(f"{repo_id!r}: not a Hub repo id; use ORG/NAME, e.g. HuggingFaceTB/SmolLM2-135M-Instruct")
    return repo_id.strip()


def repo_url(repo_id: str, repo_type: str = "model") -> str:
    """Where a person accepts a gated repo's licence (always the public Hub, also when HF_ENDPOINT is a mirror)."""
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


@contextlib.contextmanager
def translate_hub_errors(repo_id: str, token: Optional[str] = None, repo_type: str = "model",
                         filename: Optional[str] = None, write: bool = False) -> Iterator[None]:
    """Turns huggingface_hub/HTTP exceptions into one-line `UserError`s (`HubUnreachable` for network trouble).
    write: the calls upload (a refusal then names write access).

    The order matters: GatedRepoError is a RepositoryNotFoundError, every HfHubHTTPError is an OSError and
    LocalEntryNotFoundError (huggingface_hub's "could not reach the Hub and nothing cached") is a FileNotFoundError."""
    what = "dataset" if repo_type == "dataset" else "repo"
    try:
        yield
    except UserError:
        raise
    except GatedRepoError:
        if token:
            raise UserError(f"{repo_id}: gated {what}; the token was refused: accept the licence on "
                            f"{repo_url(repo_id, repo_type)} with the account the token belongs to "
                            "(HF_TOKEN or --access_token)") from None
        raise UserError(f"{repo_id}: gated {what}; accept the licence on {repo_url(repo_id, repo_type)} "
                        "and set HF_TOKEN (or --access_token)") from None
    except RepositoryNotFoundError:
        kind = "dataset" if repo_type == "dataset" else "model"
        raise UserError(f"{repo_id}: no such {kind} repository on the Hub (or it is private); check the spelling "
                        f"ORG/NAME{'' if token else ', and set HF_TOKEN for a private repo'}") from None
    except RevisionNotFoundError:
        raise UserError(f"{repo_id}: the Hub has no such revision of this {what}") from None
    except RemoteEntryNotFoundError:
        raise UserError(f"{repo_id}: the {what} has no file {filename or '(requested file)'}") from None
    except DisabledRepoError:
        raise UserError(f"{repo_id}: this {what} is disabled on the Hub") from None
    except HFValidationError:
        raise UserError(f"{repo_id!r}: not a valid Hub repo id; use ORG/NAME") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status is not None and status >= 500:
            raise HubUnreachable(f"{repo_id}: the Hub at {hub_endpoint()} answered with server error {status}; "
                                 "retry later") from None
        if status == 401:
            raise UserError(f"{repo_id}: the Hub rejected the access token (401 invalid credentials); check "
                            "HF_TOKEN or --access_token") from None
        if status == 403:
            if write:
                owner = repo_id.split("/")[0]
                raise UserError(f"{repo_id}: access denied (403); the token lacks write permission for {owner} "
                                "(use a write token of that account or organization)") from None
            raise UserError(f"{repo_id}: access denied (403); the token lacks read permission for this {what}") from None
        raise UserError(f"{repo_id}: the Hub refused the request (HTTP {status})") from None
    except NETWORK_ERRORS as e:
        raise HubUnreachable(f"{repo_id}: cannot reach the Hugging Face Hub at {hub_endpoint()} "
                             f"({type(e).__name__}); check the network connection (or HF_ENDPOINT / proxy settings) "
                             "and retry") from None
    except OSError as e:  # after the Hub's own errors, most of which are OSErrors too: disk full, permissions
        raise UserError(f"{e.filename or repo_id}: cannot write the download ({e.strerror or e}); check the free disk "
                        "space and the folder's permissions") from None


def list_repo_files(repo_id: str, token: Optional[str] = None, repo_type: str = "model") -> list[str]:
    """The repo's file names in one request. repo_info, not list_repo_files: the latter retries a dead network
    for ~20 s with backoff before failing, this one fails at once."""
    info = HfApi().repo_info(repo_id, repo_type=repo_type, token=token)
    if info.siblings is None:
        return HfApi().list_repo_files(repo_id, repo_type=repo_type, token=token)
    return [s.rfilename for s in info.siblings]


def select_checkpoint_files(repo_id: str, repo_files: list[str], tokenizer_only: bool = False) -> list[str]:
    """The files of `repo_files` a checkpoint needs: tokenizer files, plus config.json and one weight format."""
    selected = [f for f in repo_files if f in TOKENIZER_FILES]
    if tokenizer_only:
        if not selected:
            raise UserError(f"{repo_id}: the repo has none of the tokenizer files {', '.join(TOKENIZER_FILES)}")
        return selected
    if HF_CONFIG_FILE not in repo_files:
        raise UserError(f"{repo_id}: the repo has no {HF_CONFIG_FILE}; it is not a transformers model checkpoint")
    for weights, index in WEIGHT_FORMATS:
        weight_files = [f for f in repo_files if fnmatch.fnmatch(f, weights) and "/" not in f]
        if weight_files:
            selected += [HF_CONFIG_FILE, *weight_files]
            selected += [f for f in repo_files if fnmatch.fnmatch(f, index) and "/" not in f]
            return selected
    raise UserError(f"{repo_id}: the repo has no weights in safetensors or PyTorch .bin format "
                    "(model*.safetensors / pytorch_model*.bin)")


def download_checkpoint(repo_id: str, checkpoint_dir: "str | Path" = "checkpoints", access_token: Optional[str] = None,
                        tokenizer_only: bool = False) -> tuple[Path, list[str]]:
    """Downloads the checkpoint files of `repo_id` into checkpoint_dir/ORG/NAME; returns that folder and the files.

    huggingface_hub writes each file to a temporary name and renames it when complete, and resumes from what is
    already there, so an interrupted download is completed by running it again."""
    repo_id = check_repo_id(repo_id)
    token = resolve_token(access_token)
    local_dir = Path(checkpoint_dir) / repo_id
    existed = local_dir.exists()
    try:
        with translate_hub_errors(repo_id, token):
            files = select_checkpoint_files(repo_id, list_repo_files(repo_id, token), tokenizer_only)
            _check_writable(local_dir)
            snapshot_download(repo_id, local_dir=local_dir, token=token,
                              allow_patterns=[glob.escape(f) for f in files])
    except BaseException:
        if not existed:
            _remove_if_nothing_downloaded(local_dir, stop_at=Path(checkpoint_dir))
        raise
    return local_dir, files


def download_dataset_file(repo_id: str, filename: str, access_token: Optional[str] = None,
                          cache_dir: "str | Path | None" = None) -> Path:
    """One file of a (possibly gated) dataset repo, through the Hub cache; returns its local path.

    Offline, a file downloaded before is returned from the cache; otherwise `HubUnreachable`."""
    repo_id = check_repo_id(repo_id)
    token = resolve_token(access_token)
    with translate_hub_errors(repo_id, token, repo_type="dataset", filename=filename):
        try:
            repo_files = list_repo_files(repo_id, token, repo_type="dataset")
        except NETWORK_ERRORS:
            cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, repo_type="dataset")
            if isinstance(cached, str):
                return Path(cached)
            raise
        if filename not in repo_files:
            shown = ", ".join(repo_files[:10]) + (", ..." if len(repo_files) > 10 else "")
            raise UserError(f"{repo_id}: the dataset has no file {filename}; it has: {shown or '(no files)'}")
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", token=token, cache_dir=cache_dir))


def supported_models() -> list[tuple[str, str]]:
    """(name, Hub repo id) of every registered config."""
    return [(c["name"], c["hf_repo_id"]) for c in configs]


def _check_writable(local_dir: Path) -> None:
    try:
        local_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{local_dir}: cannot create the checkpoint folder ({e.strerror}); choose another "
                        "--checkpoint_dir") from None
    if not os.access(local_dir, os.W_OK):
        raise UserError(f"{local_dir}: not writable; choose another --checkpoint_dir")


def _remove_if_nothing_downloaded(local_dir: Path, stop_at: Path) -> None:
    """A failed first download leaves only huggingface_hub's .cache/ bookkeeping: remove it (and an emptied ORG/
    folder) so that the folder's existence does not suggest a checkpoint. Any received bytes (complete files, or
    .incomplete parts under .cache/) are kept so that the next run resumes."""
    if not local_dir.is_dir():
        return
    for path in local_dir.rglob("*"):
        downloaded = ".cache" not in path.relative_to(local_dir).parts or path.name.endswith(".incomplete")
        if downloaded and path.is_file() and path.stat().st_size > 0:
            return
    shutil.rmtree(local_dir, ignore_errors=True)
    parent = local_dir.parent
    while parent != stop_at and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent

"""What counts as a secret, so that none is printed, written or uploaded by mistake.

- Flags that carry one (`--access_token`, `--hf_token`, `--api_key`, ...): `lit_gpt.cli.parser` shows their values as
  `SECRET_MASK` in --print_config, --help and error messages (`redact`).
- Files that hold one (a Hub token or API key in the text, a private key, .netrc / id_rsa / *.pem by name) or a link
  that leads out of the folder: `find_credentials` lists them so that an upload can refuse them.
It imports nothing of the project, so that the CLI entry point (lit_gpt/utils.py) can use it.
"""

import fnmatch
import os
import re
from pathlib import Path
from typing import Iterable, Optional

SECRET_MASK = "***"  # what a secret flag's value is shown as
SECRET_FLAG = re.compile(r"(^|_)(token|api_key|apikey|secret|password)$")  # access_token, hf_token, api_key, ...

# What a secret looks like inside a file or a message; the look-behind keeps words such as "task-..." out.
SECRET_SHAPES = {
    "a Hugging Face token": re.compile(rb"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}"),
    "an API key (sk-...)": re.compile(rb"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}"),
    "a private key": re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----"),
}
CREDENTIAL_NAMES = (".env", ".env.*", "*.env", ".netrc", "_netrc", "*.pem", "id_rsa*", "id_dsa*", "id_ecdsa*",
                    "id_ed25519*", ".git-credentials", ".pypirc")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".gguf", ".bin", ".lora")
SCAN_BYTES = 16 << 20  # the part of a text-like file that is searched for secrets
WEIGHT_SCAN_BYTES = 1 << 20  # of a weights file: its header (a safetensors/GGUF header holds text metadata)


def is_secret_flag(name: str) -> bool:
    """Whether a flag (`access_token`, `--hf-token`, `api_key`; also a misspelt `acces_token`) carries a secret."""
    return bool(SECRET_FLAG.search(name.lstrip("-").replace("-", "_").lower()))


def secret_values(argv: Iterable[str], environ: Optional[dict] = None) -> list[str]:
    """The secrets given on a command line (`--access_token X`, `--access_token=X`) and in $HF_TOKEN."""
    argv = [str(a) for a in argv]
    found = []
    for i, arg in enumerate(argv):
        flag, sep, value = arg.partition("=")
        if not flag.startswith("--") or not is_secret_flag(flag):
            continue
        if sep:
            found.append(value)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            found.append(argv[i + 1])
    token = (os.environ if environ is None else environ).get("HF_TOKEN")
    return [s for s in found + [token or ""] if len(s.strip()) >= 4]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secret values and anything shaped like a token replaced by SECRET_MASK."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, SECRET_MASK)
    for shape in SECRET_SHAPES.values():
        text = re.sub(shape.pattern.decode(), SECRET_MASK, text)
    return text


def find_credentials(folder: Path, files: dict, allow: Iterable[str] = (), check_links: bool = True) -> list[str]:
    """'path (why)' for each of `files` (path in the folder -> local file) that looks like a credential: its name,
    its content (the first SCAN_BYTES; of a weights file its header), or (check_links) a link whose target lies
    outside `folder`. Paths in `allow` are not checked."""
    allowed = {Path(a).as_posix() for a in allow}
    root = folder.resolve()
    found = []
    for name, path in sorted(files.items()):
        if name in allowed:
            continue
        why = _credential_name(name) or (check_links and _leaves_folder(path, root)) or _secret_inside(path)
        if why:
            found.append(f"{name} ({why})")
    return found


def _credential_name(name: str) -> Optional[str]:
    base = name.rsplit("/", 1)[-1]
    return "a credentials file by its name" if any(fnmatch.fnmatch(base, p) for p in CREDENTIAL_NAMES) else None


def _leaves_folder(path: Path, root: Path) -> Optional[str]:
    resolved = path.resolve()
    if resolved == root or root in resolved.parents:
        return None
    return f"a link to {resolved}, outside the folder"


def _secret_inside(path: Path) -> Optional[str]:
    limit = WEIGHT_SCAN_BYTES if path.name.endswith(WEIGHT_SUFFIXES) else SCAN_BYTES
    try:
        with open(path, "rb") as f:
            head = f.read(limit)
    except OSError:  # the upload itself reports a file it cannot read
        return None
    for what, shape in SECRET_SHAPES.items():
        if shape.search(head):
            return f"holds {what}"
    return None

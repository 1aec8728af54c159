"""A stand-in Hugging Face Hub on 127.0.0.1 for the download tests: real huggingface_hub code talks HTTP to it.

It answers the endpoints huggingface_hub 2.x uses for snapshot_download / hf_hub_download / repo_info, and that
`datasets.load_dataset("ORG/NAME", ...)` uses on top of them (README.md and data files by resolve URL, the tree):
    GET       /api/{models,datasets}/ORG/NAME[/revision/REV]      repo info with `sha` and `siblings`
    GET       /api/{models,datasets}/ORG/NAME/tree/REV[/PATH]     file listing (?recursive=true: the whole subtree)
    GET       /api/{models,datasets}/ORG/NAME/auth-check          200, or GatedRepo for a token without access
    HEAD/GET  /ORG/NAME/resolve/REV/FILE, /datasets/ORG/NAME/resolve/REV/FILE
and, for uploads (HfApi.create_repo + create_commit / upload_folder; a write needs a token of `write_tokens`):
    POST      /api/repos/create                                   a new empty repo (409 with its url if it exists)
    POST      /api/validate-yaml                                  400 when a README.md's YAML header does not parse
    POST      /api/{models,datasets}/ORG/NAME/preupload/main      "lfs" for weight files (LFS_SUFFIXES, as the
                                                                  Hub's default .gitattributes), else "regular"
    POST      /[datasets/]ORG/NAME.git/info/lfs/objects/batch     LFS basic transfer: an upload (+ verify) action
    PUT       /lfs-upload/OID, POST /lfs-verify                   the LFS object's bytes (sha256 checked), verify
    POST      /api/{models,datasets}/ORG/NAME/commit/main         the ndjson commit: header, base64 "file" lines and
                                                                  "lfsFile" lines naming uploaded LFS objects
REV is main, another branch (`branches`, e.g. the Hub's Parquet conversion refs/convert/parquet, URL-encoded as
refs%2Fconvert%2Fparquet) or the commit sha of either.
with the headers the client relies on (ETag, X-Repo-Commit, Content-Length) and the Hub's error signalling
(X-Error-Code: RepoNotFound / GatedRepo / RevisionNotFound / EntryNotFound, X-Error-Message). As on the real Hub,
a gated repo's metadata is public and only its files need a token with access. Every request is recorded.
"""

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@dataclass
class FakeRepo:
    files: dict  # path in repo -> bytes (the main branch)
    branches: dict = field(default_factory=dict)  # other branch name -> its files (path -> bytes)
    gated: bool = False
    allowed_tokens: set = field(default_factory=set)  # tokens whose account accepted the gated repo's licence
    server_error: Optional[int] = None  # answer every request with this 5xx status
    private: bool = False
    commits: list = field(default_factory=list)  # the summary of every commit pushed to it

    @property
    def sha(self) -> str:
        return _commit_sha("main", self.files)

    def at(self, revision: str) -> Optional[tuple[str, dict]]:
        """(commit sha, files) of a branch name or commit sha; None for an unknown revision."""
        for name, files in {"main": self.files, **self.branches}.items():
            sha = _commit_sha(name, files)
            if revision in (name, sha):
                return sha, files
        return None


def _commit_sha(branch: str, files: dict) -> str:
    digest = hashlib.sha1(b"" if branch == "main" else branch.encode())
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + files[path] + b"\0")
    return digest.hexdigest()


@dataclass
class RecordedRequest:
    method: str
    path: str
    authorization: Optional[str]
    body: bytes = b""


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pth", ".pt")  # files the stand-in takes through LFS


class FakeHub:
    """`with FakeHub() as hub: hub.add_repo(...); env["HF_ENDPOINT"] = hub.url`"""

    def __init__(self, valid_tokens: tuple = (), write_tokens: Optional[tuple] = None) -> None:
        self.repos: dict[tuple[str, str], FakeRepo] = {}  # (repo_type, repo_id) -> repo
        self.valid_tokens = set(valid_tokens)  # any other bearer token gets 401 "Invalid credentials"
        # tokens that may create repos and commit (None: every valid token); others get 403, as a read token does
        self.write_tokens = set(valid_tokens if write_tokens is None else write_tokens)
        self.requests: list[RecordedRequest] = []
        self.lfs_objects: dict[str, bytes] = {}  # sha256 hex -> the bytes PUT to its upload action
        self._server: Optional[ThreadingHTTPServer] = None

    def add_repo(self, repo_id: str, files: dict, repo_type: str = "model", **kwargs) -> FakeRepo:
        def as_bytes(files: dict) -> dict:
            return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}

        kwargs["branches"] = {name: as_bytes(branch) for name, branch in kwargs.get("branches", {}).items()}
        repo = FakeRepo(files=as_bytes(files), **kwargs)
        self.repos[(repo_type, repo_id)] = repo
        return repo

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def requests_for(self, fragment: str) -> list[RecordedRequest]:
        return [r for r in self.requests if fragment in r.path]

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(_HubHandler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _HubHandler(BaseHTTPRequestHandler):
    fake_hub: FakeHub

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def do_PUT(self) -> None:
        """An LFS object's bytes, sent to the href of its upload action (no Authorization, as to S3)."""
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.fake_hub.requests.append(RecordedRequest("PUT", path, self.headers.get("Authorization"), body))
        self.send_body = True
        oid = path.rsplit("/", 1)[-1]
        if not path.startswith("/lfs-upload/") or hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, None, "the bytes do not match the LFS object id")
        self.fake_hub.lfs_objects[oid] = body
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        hub = self.fake_hub
        auth = self.headers.get("Authorization")
        path = urlsplit(self.path).path
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub.requests.append(RecordedRequest("POST", path, auth, body))
        self.send_body = True
        if path == "/lfs-verify":
            oid = json.loads(body)["oid"]
            return self._json({}) if oid in hub.lfs_objects else self._error(404, None, f"no LFS object {oid}")
        token = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if token is not None and token not in hub.valid_tokens:
            return self._error(401, None, "Invalid credentials in Authorization header")
        if path == "/api/validate-yaml":
            return self._validate_yaml(json.loads(body))
        if token is None:
            return self._error(401, None, "You must be authenticated to write")
        if token not in hub.write_tokens:
            return self._error(403, None, "You don't have the rights to write to this namespace")
        if path == "/api/repos/create":
            return self._create_repo(json.loads(body))
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[-4:] == ["info", "lfs", "objects", "batch"] and parts[-5].endswith(".git"):
            repo_type, names = ("dataset", parts[1:3]) if parts[0] == "datasets" else ("model", parts[:2])
            if self._repo(repo_type, f"{names[0]}/{names[1][:-len('.git')]}") is not None:
                return self._lfs_batch(json.loads(body))
            return
        if len(parts) == 6 and parts[0] == "api" and parts[1] in ("models", "datasets") and parts[5] == "main":
            repo = self._repo(parts[1][:-1], "/".join(parts[2:4]))
            if repo is None:
                return
            if parts[4] == "preupload":
                return self._json({"files": [{"path": f["path"], "shouldIgnore": False,
                                              "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                                              "oid": git_blob_sha(repo.files[f["path"]])
                                              if f["path"] in repo.files else None}
                                             for f in json.loads(body)["files"]]})
            if parts[4] == "commit":
                return self._commit(repo, "/".join(parts[2:4]), body)
        return self._error(404, None, "Not Found")

    # ---- routing ----------------------------------------------------------------------------------------------------
    def _handle(self, send_body: bool) -> None:
        hub = self.fake_hub
        auth = self.headers.get("Authorization")
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        hub.requests.append(RecordedRequest(self.command, path, auth))
        self.send_body = send_body
        token = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if token is not None and token not in hub.valid_tokens:
            return self._error(401, None, "Invalid credentials in Authorization header")

        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            repo_type = parts[1][:-1]
            repo_id, rest = "/".join(parts[2:4]), parts[4:]
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return
            if not rest or rest[0] == "revision":
                revision = self._revision(repo, rest[1] if len(rest) > 1 else "main")
                if revision is None:
                    return
                sha, files = revision
                return self._json({"id": repo_id, "sha": sha, "private": repo.private,
                                   "gated": "manual" if repo.gated else False,
                                   "siblings": [{"rfilename": f} for f in sorted(files)]})
            if rest == ["auth-check"]:
                return self._json({}) if self._may_read(repo, token) else self._gated(repo, token, repo.sha)
            if rest[0] == "tree" and len(rest) >= 2:
                revision = self._revision(repo, rest[1])
                if revision is None:
                    return
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._json(self._tree(revision[1], "/".join(rest[2:]), recursive))
            return self._error(404, None, "Not Found")

        repo_type = "model"
        if parts[:1] == ["datasets"]:
            repo_type, parts = "dataset", parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(repo_type, "/".join(parts[:2]))
            revision = repo and self._revision(repo, parts[3])
            if revision is None:
                return
            return self._resolve(repo, revision, "/".join(parts[4:]), token)
        return self._error(404, None, "Not Found")

    def _validate_yaml(self, request: dict) -> None:
        content = request.get("content", "")
        if content.startswith("---"):
            header = content.split("---", 2)[1]
            try:
                yaml.safe_load(header)
            except yaml.YAMLError as e:
                return self._error(400, None, "Invalid metadata", errors=[{"message": str(e)}])
        return self._json({"errors": [], "warnings": []})

    def _create_repo(self, request: dict) -> None:
        repo_type = request.get("type") or "model"
        repo_id = f"{request['organization']}/{request['name']}"
        url = f"{self.fake_hub.url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
        if (repo_type, repo_id) in self.fake_hub.repos:
            return self._error(409, None, "You already created this model repo", url=url)
        self.fake_hub.add_repo(repo_id, {}, repo_type=repo_type, private=request.get("visibility") == "private")
        return self._json({"url": url, "name": repo_id})

    def _commit(self, repo: FakeRepo, repo_id: str, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, None, "The first line of a commit must be its header")
        files = dict(repo.files)
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file" and value.get("encoding") == "base64":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile" and value.get("oid") in self.fake_hub.lfs_objects:
                files[value["path"]] = self.fake_hub.lfs_objects[value["oid"]]
            else:
                return self._error(400, None, f"cannot commit {line['key']} {value.get('path')} (an LFS file must "
                                              "be uploaded first)")
        repo.files = files
        repo.commits.append(lines[0]["value"]["summary"])
        return self._json({"commitUrl": f"{self.fake_hub.url}/{repo_id}/commit/{repo.sha}", "commitOid": repo.sha,
                           "success": True, "pullRequestUrl": None})

    def _lfs_batch(self, request: dict) -> None:
        url = self.fake_hub.url
        objects = [{"oid": o["oid"], "size": o["size"], "authenticated": True,
                    **({} if o["oid"] in self.fake_hub.lfs_objects else  # already there: no actions, no upload
                       {"actions": {"upload": {"href": f"{url}/lfs-upload/{o['oid']}"},
                                    "verify": {"href": f"{url}/lfs-verify"}}})}
                   for o in request["objects"]]
        return self._json({"transfer": "basic", "objects": objects})

    def _repo(self, repo_type: str, repo_id: str) -> Optional[FakeRepo]:
        repo = self.fake_hub.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        elif repo.server_error:
            self._error(repo.server_error, None, "Service Unavailable")
            return None
        return repo

    def _revision(self, repo: FakeRepo, revision: str) -> Optional[tuple[str, dict]]:
        found = repo.at(revision)
        if found is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return found

    def _tree(self, files: dict, prefix: str, recursive: bool) -> list[dict]:
        """The entries under `prefix`: its direct children, or with `recursive` every file and folder below it."""
        entries, folders = [], set()
        depth = prefix.count("/") + 1 if prefix else 0  # of a direct child's parent folder
        for path, content in sorted(files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            parents = path.split("/")[:-1]
            folders.update("/".join(parents[: i + 1]) for i in range(len(parents)))
            if recursive or len(parents) == depth:
                entries.append({"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path})
        entries += [{"type": "directory", "oid": git_blob_sha(f.encode()), "size": 0, "path": f}
                    for f in sorted(folders) if (not prefix or f.startswith(prefix + "/"))
                    and (recursive or f.count("/") == depth)]
        return entries

    def _resolve(self, repo: FakeRepo, revision: tuple[str, dict], filename: str, token: Optional[str]) -> None:
        sha, files = revision
        if not self._may_read(repo, token):
            return self._gated(repo, token, sha)
        content = files.get(filename)
        if content is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist on \"main\"", commit=sha)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{git_blob_sha(content)}"')
        self.send_header("X-Repo-Commit", sha)
        self.end_headers()
        if self.send_body:
            self.wfile.write(content)

    @staticmethod
    def _may_read(repo: FakeRepo, token: Optional[str]) -> bool:
        return not repo.gated or token in repo.allowed_tokens

    def _gated(self, repo: FakeRepo, token: Optional[str], sha: str) -> None:
        # 401 for anonymous requests, 403 for an account that has not accepted the licence (as the Hub does)
        self._error(401 if token is None else 403, "GatedRepo",
                    "Access to this repo is restricted. You must have access to it and be authenticated.", commit=sha)

    # ---- responses --------------------------------------------------------------------------------------------------
    def _json(self, data) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.send_body:
            self.wfile.write(body)

    def _error(self, status: int, code: Optional[str], message: str, commit: Optional[str] = None,
               **extra) -> None:
        body = json.dumps({"error": message, **extra}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.send_body:
            self.wfile.write(body)

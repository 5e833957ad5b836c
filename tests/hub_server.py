"""A local stand-in for the Hugging Face Hub's HTTP API, for testing `synth push`.

It answers the requests `huggingface_hub` (2.x) and `datasets` make to create a
dataset repo, read its info, refs and tree, create a branch, change its
visibility, pre-upload files (the `preupload` endpoint), upload LFS objects
(the git-LFS batch API and its `basic` transfer: a PUT then a verify), commit
(the ndjson `commit` endpoint) and download files (`resolve`, with ranges).
The routes, payloads and headers are the ones read in huggingface_hub's
`hf_api.py`, `_commit_api.py`, `lfs.py` and `file_download.py`.

Content reaches it by either transfer `huggingface_hub` uploads with: Xet
(its default whenever hf_xet is installed: a CAS token from `xet-write-token`,
then xorbs and shards to the CAS this server also is, under /cas; the files are
rebuilt from them) or LFS (HF_HUB_DISABLE_XET=1). Downloads never offer Xet
(no X-Xet-Hash header), so they are plain HTTP. Not spoken: Xet's
`xorb-grants` (hf_xet falls back to posting the xorb on a 404), global dedup
(every chunk query is a 404), LFS multipart, pull requests.

A commit is applied whole or not at all, as on the Hub: every `lfsFile` must
name an uploaded object of that size, every deletion an existing path, and a
`parentCommit` must be the branch's head, else nothing changes. Each request
is logged, and `faults` injects a failure into chosen requests (a status, a
dropped connection, or a commit applied whose response is then lost).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".bin", ".zip", ".gz", ".zst")
"""What the Hub's default .gitattributes stores with LFS (a subset)."""
GITATTRIBUTES = b"".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n".encode() for s in LFS_SUFFIXES)
PAGE = 1000


def git_blob_oid(data: bytes) -> str:
    """The git blob id the Hub reports as a regular file's `oid`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """A file in a commit's tree: its content's sha256 and whether it is LFS."""

    sha256: str
    size: int
    lfs: bool


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    files: dict[str, Entry]


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """Fails the `skip`+1-th .. `skip`+`times`-th request to `route`
    ("commit", "lfs-upload", "preupload", "lfs-batch", "xet-xorb", "xet-shard"). `action` is an HTTP
    status as a string, "drop" (close the connection, apply nothing) or
    "apply-then-drop" (commit only: apply it, then lose the response)."""

    route: str
    action: str
    skip: int = 0
    times: int = 1


class HubState:
    """Repos, commits and objects, guarded by one lock: each request sees a
    consistent state and a commit is atomic."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.commits: dict[str, Commit] = {}
        self.blobs: dict[str, bytes] = {}
        """File contents by sha256, however they came: inline, LFS or Xet."""
        self.xorbs: dict[str, bytes] = {}
        self.xet_tokens: set[str] = set()
        self.log: list[tuple[str, str, int]] = []
        self.commit_payloads: list[list[dict]] = []
        """Every ndjson commit body received (applied or not), parsed."""
        self.faults: list[Fault] = []
        self._counter = 0

    # -- repo content ---------------------------------------------------
    def new_commit(self, parent: str | None, title: str, files: dict[str, Entry]) -> Commit:
        self._counter += 1
        seed = json.dumps([parent, title, sorted(files), self._counter]).encode()
        c = Commit(hashlib.sha1(seed).hexdigest(), parent, title, files)
        self.commits[c.oid] = c
        return c

    def create_repo(self, repo_id: str, private: bool) -> Repo:
        """A new repo has one commit with a .gitattributes, as on the Hub."""
        sha = hashlib.sha256(GITATTRIBUTES).hexdigest()
        self.blobs[sha] = GITATTRIBUTES
        c = self.new_commit(None, "initial commit", {".gitattributes": Entry(sha, len(GITATTRIBUTES), False)})
        repo = self.repos[repo_id] = Repo(repo_id, private, {"main": c.oid})
        return repo

    def resolve(self, repo: Repo, revision: str) -> Commit | None:
        oid = repo.branches.get(revision) or (revision if revision in self.commits else None)
        return self.commits.get(oid) if oid else None

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """A revision's files and their bytes (for tests)."""
        with self.lock:
            c = self.resolve(self.repos[repo_id], revision)
            assert c is not None, revision
            return {p: self.blobs[e.sha256] for p, e in c.files.items()}

    def take_fault(self, route: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.route != route:
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    return None
                if f.times > 0:
                    f.times -= 1
                    return f.action
        return None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class Dropped(Exception):
    """Close the connection without a response."""


def file_info(path: str, e: Entry, data: bytes) -> dict[str, Any]:
    info: dict[str, Any] = {"type": "file", "path": path, "size": e.size}
    if e.lfs:
        pointer = lfs_pointer(e.sha256, e.size)
        info.update(oid=git_blob_oid(pointer), lfs={"oid": e.sha256, "size": e.size, "pointerSize": len(pointer)})
    else:
        info["oid"] = git_blob_oid(data)
    return info


def folder_info(path: str) -> dict[str, Any]:
    return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest()}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HubServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    # -- plumbing ---------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def body(self) -> bytes:
        """The request body, Content-Length or chunked (httpx streams file uploads)."""
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.raw = self.body() if self.command in ("POST", "PUT") else b""
        state = self.server.state
        try:
            status, payload, headers = self.route(url.path)
        except Dropped:
            state.log.append((self.command, url.path, 0))
            self.close_connection = True
            return
        except HubError as e:
            status, payload = e.status, {"error": e.message, **e.extra}
            headers = {"X-Error-Message": e.message, **({"X-Error-Code": e.code} if e.code else {})}
        state.log.append((self.command, url.path, status))
        self.reply(status, payload, headers)

    def reply(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        if isinstance(payload, bytes):
            data = payload
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", headers.get("Content-Length", str(len(data))))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def user(self, required: bool) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if token is None:
            if required:
                raise HubError(401, "You must be authenticated to access this resource")
            return None
        if token not in self.server.state.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.server.state.tokens[token]

    def repo(self, repo_id: str, write: bool = False) -> Repo:
        user = self.user(required=write)
        repo = self.server.state.repos.get(repo_id)
        owner = repo_id.split("/")[0]
        if repo is None or (repo.private and user != owner):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and user != owner:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def commit_at(self, repo: Repo, revision: str) -> Commit:
        c = self.server.state.resolve(repo, unquote(revision))
        if c is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return c

    def fault(self, route: str) -> str | None:
        action = self.server.state.take_fault(route)
        if action == "drop":
            raise Dropped
        if action and action.isdigit():
            raise HubError(int(action), f"injected failure of {route}")
        return action

    # -- routes -----------------------------------------------------------
    def route(self, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with self.server.state.lock:
            if parts[:2] == ["api", "repos"] and parts[2:] == ["create"]:
                return self.create_repo()
            if parts == ["api", "validate-yaml"]:
                return 200, {"errors": [], "warnings": []}, {}
            if parts == ["api", "whoami-v2"]:
                return 200, {"type": "user", "name": self.user(required=True)}, {}
            if len(parts) >= 4 and parts[:2] == ["api", "datasets"]:
                return self.api(f"{parts[2]}/{parts[3]}", parts[4:])
            if len(parts) >= 3 and parts[0] == "datasets" and parts[2].endswith(".git"):
                return self.lfs_batch(f"{parts[1]}/{parts[2].removesuffix('.git')}")
            if parts[0] == "__lfs":
                return self.lfs_object(parts[1:])
            if parts[0] == "cas":
                return self.cas(parts[1:])
            if len(parts) >= 5 and parts[0] == "datasets" and parts[3] == "resolve":
                return self.download(f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]))
        raise HubError(404, f"no route for {self.command} {path}")

    def create_repo(self) -> tuple[int, Any, dict[str, str]]:
        user = self.user(required=True)
        req = json.loads(self.raw)
        if req.get("type") != "dataset":
            raise HubError(400, "this stand-in holds dataset repos only")
        repo_id = f"{req.get('organization') or user}/{req['name']}"
        url = f"{self.server.base}/datasets/{repo_id}"
        if repo_id.split("/")[0] != user:
            namespace = repo_id.split("/")[0]
            raise HubError(403, f'You don\'t have the rights to create a dataset under the namespace "{namespace}"')
        if repo_id in self.server.state.repos:
            raise HubError(409, "You already created this dataset repo", url=url)
        self.server.state.create_repo(repo_id, private=req.get("visibility", "public") == "private")
        return 200, {"url": url, "name": repo_id}, {}

    def api(self, repo_id: str, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        kind = rest[0] if rest else "info"
        if kind == "info" or (kind == "revision" and self.command == "GET"):
            repo = self.repo(repo_id)
            return 200, self.info(repo, self.commit_at(repo, rest[1] if rest else "main")), {}
        if kind == "tree":
            repo = self.repo(repo_id)
            return self.tree(repo, self.commit_at(repo, rest[1]), "/".join(rest[2:]))
        if kind == "paths-info":
            repo = self.repo(repo_id)
            return 200, self.paths_info(self.commit_at(repo, rest[1])), {}
        if kind == "refs":
            repo = self.repo(repo_id)
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()]
            return 200, {"branches": branches, "tags": [], "converts": [], "pullRequests": []}, {}
        if kind == "branch" and self.command == "POST":
            return self.create_branch(self.repo(repo_id, write=True), rest[1])
        if kind == "settings" and self.command == "PUT":
            repo = self.repo(repo_id, write=True)
            visibility = json.loads(self.raw).get("visibility")
            if visibility is not None:
                repo.private = visibility == "private"
            return 200, {}, {}
        if kind in ("xet-write-token", "xet-read-token"):
            return self.xet_token(self.repo(repo_id, write=kind == "xet-write-token"))
        if kind == "preupload":
            self.fault("preupload")
            return 200, self.preupload(self.repo(repo_id, write=True), rest[1]), {}
        if kind == "commit":
            return self.commit(self.repo(repo_id, write=True), rest[1])
        raise HubError(404, f"no route for {self.command} /api/datasets/{repo_id}/{'/'.join(rest)}")

    def info(self, repo: Repo, c: Commit) -> dict[str, Any]:
        siblings = [{"rfilename": p} for p in sorted(c.files)]
        return {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": c.oid, "private": repo.private,
                "gated": False, "disabled": False, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
                "lastModified": "2026-01-01T00:00:00.000Z", "createdAt": "2026-01-01T00:00:00.000Z"}

    def entries(self, c: Commit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        """Files and folders under `prefix` ("" is the root): direct children,
        or every descendant if `recursive`."""
        blobs = self.server.state.blobs
        base = f"{prefix}/" if prefix else ""
        out: dict[str, dict[str, Any]] = {}
        for path, e in sorted(c.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base):].split("/")
            for i in range(1, len(parts)):
                folder = base + "/".join(parts[:i])
                if recursive or i == 1:
                    out.setdefault(folder, folder_info(folder))
            if recursive or len(parts) == 1:
                out[path] = file_info(path, e, blobs[e.sha256])
        return [out[k] for k in sorted(out)]

    def tree(self, repo: Repo, c: Commit, prefix: str) -> tuple[int, Any, dict[str, str]]:
        recursive = self.query.get("recursive", ["false"])[0].lower() == "true"
        if prefix and prefix not in c.files and not any(p.startswith(prefix + "/") for p in c.files):
            raise HubError(404, f"{prefix} does not exist", "EntryNotFound")
        items = self.entries(c, prefix, recursive)
        cursor = int(self.query.get("cursor", ["0"])[0])
        page, headers = items[cursor:cursor + PAGE], {}
        if cursor + PAGE < len(items):
            path = urlsplit(self.path).path
            flag = "true" if recursive else "false"
            headers["Link"] = f'<{self.server.base}{path}?recursive={flag}&cursor={cursor + PAGE}>; rel="next"'
        return 200, page, headers

    def paths_info(self, c: Commit) -> list[dict[str, Any]]:
        form = parse_qs(self.raw.decode())
        out = []
        for p in form.get("paths", []):
            p = p.strip("/")
            if p in c.files:
                e = c.files[p]
                out.append(file_info(p, e, self.server.state.blobs[e.sha256]))
            elif any(f.startswith(p + "/") for f in c.files):
                out.append(folder_info(p))
        return out

    def create_branch(self, repo: Repo, branch: str) -> tuple[int, Any, dict[str, str]]:
        if branch in repo.branches:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = (json.loads(self.raw or b"{}") or {}).get("startingPoint") or "main"
        repo.branches[branch] = self.commit_at(repo, start).oid
        return 200, {}, {}

    def preupload(self, repo: Repo, revision: str) -> dict[str, Any]:
        c = self.commit_at(repo, revision)
        files = []
        for f in json.loads(self.raw)["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] >= 10 * 2**20 or b"\0" in sample
            have = c.files.get(f["path"])
            oid = None
            if have is not None:
                data = self.server.state.blobs[have.sha256]
                oid = have.sha256 if have.lfs else git_blob_oid(data)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return {"files": files, "commitOid": c.oid}

    def commit(self, repo: Repo, revision: str) -> tuple[int, Any, dict[str, str]]:
        lines = [json.loads(line) for line in self.raw.decode().splitlines() if line.strip()]
        state = self.server.state
        state.commit_payloads.append(lines)
        action = self.fault("commit")
        branch = unquote(revision)
        if branch not in repo.branches:
            raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        head = state.commits[repo.branches[branch]]
        header = next(x["value"] for x in lines if x["key"] == "header")
        parent = header.get("parentCommit")
        if parent is not None and parent != head.oid:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {head.oid})")
        files = dict(head.files)
        for op in lines:
            self.apply(files, op["key"], op["value"])
        c = state.new_commit(head.oid, header["summary"], files)
        repo.branches[branch] = c.oid
        if action == "apply-then-drop":
            raise Dropped
        url = f"{self.server.base}/datasets/{repo.repo_id}/commit/{c.oid}"
        return 200, {"success": True, "commitOid": c.oid, "commitUrl": url, "pullRequestUrl": None}, {}

    def apply(self, files: dict[str, Entry], key: str, v: dict[str, Any]) -> None:
        """One ndjson operation on a copy of the tree; raises before anything is kept."""
        blobs = self.server.state.blobs
        if key == "file":
            data = base64.b64decode(v["content"])
            sha = hashlib.sha256(data).hexdigest()
            blobs[sha] = data
            files[v["path"]] = Entry(sha, len(data), False)
        elif key == "lfsFile":
            data = blobs.get(v["oid"])
            if data is None or ("size" in v and len(data) != v["size"]):
                raise HubError(400, f"LFS object {v['oid']} of {v['path']} was not uploaded")
            files[v["path"]] = Entry(v["oid"], len(data), True)
        elif key == "deletedFile":
            if files.pop(v["path"], None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {v['path']}", "EntryNotFound")
        elif key == "deletedFolder":
            gone = [p for p in files if p.startswith(v["path"].rstrip("/") + "/")]
            if not gone:
                raise HubError(404, f"A folder with this name doesn't exist: {v['path']}", "EntryNotFound")
            for p in gone:
                del files[p]
        elif key != "header":
            raise HubError(400, f"unknown commit operation {key}")

    # -- LFS ----------------------------------------------------------------
    def lfs_batch(self, repo_id: str) -> tuple[int, Any, dict[str, str]]:
        self.repo(repo_id, write=True)
        self.fault("lfs-batch")
        req = json.loads(self.raw)
        objects = []
        for o in req["objects"]:
            obj: dict[str, Any] = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.server.state.blobs:
                obj["actions"] = {
                    "upload": {"href": f"{self.server.base}/__lfs/{o['oid']}/{o['size']}"},
                    "verify": {"href": f"{self.server.base}/__lfs/verify"},
                }
            objects.append(obj)
        return 200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}

    def lfs_object(self, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        if rest == ["verify"]:
            req = json.loads(self.raw)
            if len(state.blobs.get(req["oid"], b"")) != req["size"] or req["oid"] not in state.blobs:
                raise HubError(404, f"object {req['oid']} not found")
            return 200, {}, {}
        self.fault("lfs-upload")
        oid, size = rest[0], int(rest[1])
        if hashlib.sha256(self.raw).hexdigest() != oid or len(self.raw) != size:
            raise HubError(400, f"uploaded content does not match {oid} ({len(self.raw)} of {size} bytes)")
        state.blobs[oid] = self.raw
        return 200, b"", {"ETag": f'"{oid}"'}

    # -- Xet -------------------------------------------------------------------
    def xet_token(self, repo: Repo) -> tuple[int, Any, dict[str, str]]:
        """A short-lived CAS token; the CAS is this server under /cas."""
        token = f"xet-{hashlib.sha1(f'{repo.repo_id}{len(self.server.state.xet_tokens)}'.encode()).hexdigest()}"
        self.server.state.xet_tokens.add(token)
        exp, cas = int(time.time()) + 3600, f"{self.server.base}/cas"
        headers = {"X-Xet-Cas-Url": cas, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
        return 200, {"accessToken": token, "exp": exp, "casUrl": cas}, headers

    def cas(self, rest: list[str]) -> tuple[int, Any, dict[str, str]]:
        state = self.server.state
        if self.headers.get("Authorization", "").removeprefix("Bearer ") not in state.xet_tokens:
            raise HubError(401, "no valid Xet token")
        version, kind = rest[0], rest[1]
        if kind == "chunks":  # global dedup: nothing known
            raise HubError(404, "chunk not found")
        if kind == "xorbs":
            key = rest[-1]
            if self.command == "HEAD":
                return (200 if key in state.xorbs else 404), b"", {}
            self.fault("xet-xorb")
            xorb_chunks(self.raw)  # a malformed xorb is refused here, as by CAS
            state.xorbs[key] = self.raw
            return 200, {"was_inserted": True}, {}
        if kind == "shards" and self.command == "POST":
            self.fault("xet-shard")
            try:
                files = shard_files(self.raw, state.xorbs)
            except ValueError as e:
                raise HubError(400, f"shard refused: {e}") from e
            for data in files:
                state.blobs[hashlib.sha256(data).hexdigest()] = data
            if version == "v2":
                return 200, b'{"type":"result"}\n', {"Content-Type": "application/x-ndjson"}
            return 200, {"result": 1}, {}
        raise HubError(404, f"no CAS route for {self.command} /{'/'.join(rest)}")

    # -- downloads -------------------------------------------------------------
    def download(self, repo_id: str, revision: str, path: str) -> tuple[int, Any, dict[str, str]]:
        repo = self.repo(repo_id)
        c = self.commit_at(repo, revision)
        e = c.files.get(path)
        if e is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        data = self.server.state.blobs[e.sha256]
        etag = e.sha256 if e.lfs else git_blob_oid(data)
        headers = {"X-Repo-Commit": c.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if e.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(e.size)})
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[6:].partition("-")
            start = int(start_s) if start_s else max(0, len(data) - int(end_s))
            end = min(int(end_s), len(data) - 1) if start_s and end_s else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, data[start:end + 1], headers
        return 200, data, headers


class HubServer(ThreadingHTTPServer):
    """`with HubServer({"hf_token": "me"}) as hub:` serves on hub.base until exit."""

    daemon_threads = True

    def __init__(self, tokens: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.state = HubState(tokens)
        self.base = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def url(self, repo_id: str, path: str, revision: str = "main") -> str:
        return f"{self.base}/datasets/{repo_id}/resolve/{quote(revision, safe='')}/{path}"


def online(monkeypatch: Any, hub: HubServer) -> None:
    """Point this process's `huggingface_hub` at `hub`. tests/conftest.py sets
    HF_HUB_OFFLINE=1 before it is imported, and its request hook refuses every
    request, even to a local endpoint, while `constants.HF_HUB_OFFLINE` is set;
    the endpoint and Xet switch are read from `constants` at call time too."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "ENDPOINT", hub.base)


# -- Xet ------------------------------------------------------------------------
# What `hf_xet` sends (read in huggingface/xet-core: xet_client/src/cas_client/
# remote_client.rs for the routes, xet_core_structures/src/xorb_object/ and
# metadata_shard/ for the formats): xorbs (`POST /v1/xorbs/default/<hash>`),
# sequences of compressed chunks; then shards (`POST /v1/shards`, or /v2 with an
# ndjson progress stream) listing, for each file, which chunks of which xorbs
# make it up. The server rebuilds every file of a shard from its xorbs and keeps
# it by sha256, which is what the commit's `lfsFile` lines name, as with LFS.

SHARD_TAG = bytes([72, 70, 82, 101, 112, 111, 77, 101, 116, 97, 68, 97, 116, 97, 0, 85, 105, 103, 69, 106, 123,
                   129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169])
XORB_FOOTER = b"XETBLOB"


def xet_hex(raw: bytes) -> str:
    """A Xet hash's text form: four little-endian u64, each printed as hex."""
    return "".join(raw[i:i + 8][::-1].hex() for i in range(0, 32, 8))


def lz4_block(src: bytes, out: bytearray) -> None:
    """Decode one LZ4 block onto `out` (matches may reach into earlier blocks)."""
    i = 0
    while i < len(src):
        token = src[i]
        i += 1
        n = token >> 4
        if n == 15:
            while True:
                n += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        out += src[i:i + n]
        i += n
        if i >= len(src):
            return
        offset = src[i] | src[i + 1] << 8
        i += 2
        m = token & 15
        if m == 15:
            while True:
                m += src[i]
                i += 1
                if src[i - 1] != 255:
                    break
        m += 4
        start = len(out) - offset
        if offset >= m:
            out += out[start:start + m]
        else:
            for k in range(m):
                out.append(out[start + k])


def lz4_frame(src: bytes) -> bytes:
    """The LZ4 frame format (lz4_flex's frame encoder)."""
    if src[:4] != b"\x04\x22\x4d\x18":
        raise ValueError("not an LZ4 frame")
    flg = src[4]
    i = 6 + (8 if flg & 0x08 else 0) + (4 if flg & 0x01 else 0) + 1
    out = bytearray()
    while True:
        size = int.from_bytes(src[i:i + 4], "little")
        i += 4
        if size == 0:
            return bytes(out)
        raw, size = size & 0x80000000, size & 0x7FFFFFFF
        block = src[i:i + size]
        i += size + (4 if flg & 0x10 else 0)
        if raw:
            out += block
        else:
            lz4_block(block, out)


def bg4_regroup(g: bytes) -> bytes:
    """Undo byte grouping: the 4 groups of bytes i%4 == 0..3, back in order."""
    n, rem = len(g) // 4, len(g) % 4
    sizes = [n + (1 if rem > k else 0) for k in range(4)]
    out = bytearray(len(g))
    pos = 0
    for k, size in enumerate(sizes):
        out[k::4] = g[pos:pos + size]
        pos += size
    return bytes(out)


def xorb_chunks(data: bytes) -> list[bytes]:
    """The uncompressed chunks of a serialized xorb, in order (its footer ignored)."""
    chunks, p = [], 0
    while p + 8 <= len(data) and data[p:p + 7] != XORB_FOOTER:
        h = data[p:p + 8]
        clen, scheme, ulen = int.from_bytes(h[1:4], "little"), h[4], int.from_bytes(h[5:8], "little")
        body = data[p + 8:p + 8 + clen]
        chunk = body if scheme == 0 else lz4_frame(body) if scheme == 1 else bg4_regroup(lz4_frame(body))
        if len(chunk) != ulen:
            raise ValueError(f"xorb chunk {len(chunks)}: {len(chunk)} bytes, header says {ulen}")
        chunks.append(chunk)
        p += 8 + clen
    return chunks


def shard_files(shard: bytes, xorbs: dict[str, bytes]) -> list[bytes]:
    """Every file a shard describes, rebuilt from the xorbs it names."""
    if shard[:32] != SHARD_TAG:
        raise ValueError("not a Xet shard")
    p, files = 48, []
    while True:
        file_hash = shard[p:p + 32]
        flags, n = int.from_bytes(shard[p + 32:p + 36], "little"), int.from_bytes(shard[p + 36:p + 40], "little")
        p += 48
        if file_hash == b"\xff" * 32:
            return files
        data = bytearray()
        for _ in range(n):
            e = shard[p:p + 48]
            xorb, size = xet_hex(e[:32]), int.from_bytes(e[36:40], "little")
            start, end = int.from_bytes(e[40:44], "little"), int.from_bytes(e[44:48], "little")
            if xorb not in xorbs:
                raise ValueError(f"shard names xorb {xorb}, never uploaded")
            segment = b"".join(xorb_chunks(xorbs[xorb])[start:end])
            if len(segment) != size:
                raise ValueError(f"xorb {xorb} chunks {start}..{end}: {len(segment)} bytes, shard says {size}")
            data += segment
            p += 48
        p += (48 * n if flags & 1 << 31 else 0) + (48 if flags & 1 << 30 else 0)
        files.append(bytes(data))

"""`synth push`: a run's dataset folder to the Hugging Face Hub.

What goes up is the dataset as `datasets` reads it: `data/` (every config's
shards, and with `export.images: files` the screenshots under `data/images/`
that the SFT views name: push refuses an output missing one), the card
(`README.md`, whose `configs:` the Hub's viewer follows), `manifest.json`
and LLaMA-Factory's `dataset_info.json`. Staging, the quality
caches and the annotation queue stay home: they are working state, and the
queue holds labelers' session hashes.

A push is ONE commit (`HfApi.create_commit`): every file added, and every
`data/` file of the target revision that this run does not have deleted in
the same commit, since a rebuilt run may have a different number of `-of-N`
shards and a stale shard would be read as part of the split. `upload_folder`
is not used: above 256 files it splits the push into several commits, the
deletions in the first, so a push failing midway left the Hub with part of the
new shards and none of the old. The file contents are uploaded first (LFS or
Xet, as `huggingface_hub` chooses) and reach the repo only with the commit,
whose `parentCommit` is the head the deletions were listed from: the Hub
shows the old dataset or the new one, never a mix.

A commit whose response is lost (a dropped connection, a proxy's 502) may
still have been applied: before reporting a failure, push reads the branch's
head and, if its tree is exactly this push, reports success; if the head did
not move after a dropped connection, it sends the commit once more (the same
`parentCommit`, so it can never apply twice).

The token comes from `--token`, `$HF_TOKEN` or `hf auth login`, and is never
printed. An output on an object store (synth.storage) is first copied to a
local temporary folder, only the files that are pushed: every byte passes
through this machine on its way to the Hub anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from synth import storage
from synth.export.images import referenced_files

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.hf_api import RepoFile

PUSHED = ["data/**", "README.md", "manifest.json", "dataset_info.json"]
"""What of a run's folder is the dataset (huggingface_hub allow_patterns)."""
IGNORED = ["**/.*", ".*"]


@dataclass(frozen=True)
class PushPlan:
    folder: str
    """The output: a local path or a filesystem URI."""
    files: list[str]
    bytes: int


def plan_push(out_dir: storage.Location) -> PushPlan:
    """The files `push` would upload, checked: shards and a card with configs."""
    from huggingface_hub.utils import filter_repo_objects

    fs, root = storage.resolve(out_dir)
    card = storage.join(root, "README.md")
    if not storage.exists(fs, card) or not storage.is_dir(fs, storage.join(root, "data")):
        raise FileNotFoundError(f"{out_dir}: no dataset card or data/ here; run `synth run PIPELINE` first")
    infos = storage.file_infos(fs, root, hidden=True, recursive=True)
    sizes = {posixpath.relpath(i.path, root): i.size or 0 for i in infos}
    files = list(filter_repo_objects(sorted(sizes), allow_patterns=PUSHED, ignore_patterns=IGNORED))
    if not any(f.startswith("data/") for f in files):
        raise FileNotFoundError(f"{storage.child(out_dir, 'data')}: no shards to push")
    missing = sorted(referenced_files(fs, root) - set(files))
    if missing:
        raise FileNotFoundError(
            f"{storage.child(out_dir, 'data')}: {len(missing)} image files the SFT views name are missing "
            f"(e.g. {missing[0]}); rebuild the export with `synth run`"
        )
    if "configs:" not in storage.read_text(fs, card):
        raise ValueError(
            f"{storage.child(out_dir, 'README.md')}: the card has no `configs:`; rebuild it with `synth run`"
        )
    return PushPlan(str(out_dir), files, sum(sizes[f] for f in files))


Say = Callable[[str], None]
"""Where push reports each phase: one line each (the CLI prints them to stderr)."""
UPLOAD_CHUNK_FILES = 64
UPLOAD_CHUNK_BYTES = 256 * 2**20
"""A progress line after this many files or bytes have been uploaded."""
AUTH_HINT = (
    "hint: the Hub refused the token. Set HF_TOKEN to a token with write access to {owner} "
    "(https://huggingface.co/settings/tokens), pass --token, or run `hf auth login`."
)


@dataclass(frozen=True)
class PushResult:
    url: str
    """The commit's URL (the branch head's if nothing had changed)."""
    added: int
    deleted: list[str]
    notes: list[str] = field(default_factory=list)
    """What push did besides the commit: repo or branch created, visibility."""


def push(
    out_dir: storage.Location,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    message: str | None = None,
    endpoint: str | None = None,
    say: Say | None = None,
) -> PushResult:
    """Create the dataset repo (and branch) if needed and commit the dataset
    in one commit. `private` is for a new repo; an existing private repo is
    made public when `private` is False, and an existing public repo is never
    made private (the notes say so)."""
    from huggingface_hub import HfApi

    plan = plan_push(out_dir)
    say = say or (lambda _line: None)
    fs, root = storage.resolve(out_dir)
    api = HfApi(endpoint=endpoint, token=token)
    notes = _ensure_repo(api, repo_id, private) + _ensure_branch(api, repo_id, revision)
    for note in notes:
        say(note)
    local = storage.is_local(fs)
    with contextlib.nullcontext(root) if local else tempfile.TemporaryDirectory(prefix="synth-push-") as folder:
        if not local:
            say(f"copying {len(plan.files)} files to {folder}")
            storage.download(fs, root, plan.files, Path(folder))
        title = message or f"synth: {len(plan.files)} files from {posixpath.basename(root.rstrip('/'))}"
        url, deleted = _commit(api, repo_id, revision or "main", Path(folder), plan.files, title, say)
    return PushResult(url, len(plan.files), deleted, notes)


def _ensure_repo(api: "HfApi", repo_id: str, private: bool) -> list[str]:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        return [f"created datasets/{repo_id} ({'private' if private else 'public'})"]
    if info.private and not private:
        api.update_repo_settings(repo_id, repo_type="dataset", private=False)
        return [f"datasets/{repo_id} was private: made it public (--public)"]
    if not info.private and private:
        return [f"datasets/{repo_id} exists and is public: left public (push never makes a repo private)"]
    return []


def _ensure_branch(api: "HfApi", repo_id: str, revision: str | None) -> list[str]:
    """`--revision dev` on a repo without that branch creates it from main."""
    from huggingface_hub.errors import RevisionNotFoundError

    if revision in (None, "main"):
        return []
    try:
        api.repo_info(repo_id, repo_type="dataset", revision=revision)
    except RevisionNotFoundError:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        return [f"created branch {revision} from main"]
    return []


def _commit(
    api: "HfApi", repo_id: str, revision: str, folder: Path, files: list[str], title: str, say: Say
) -> tuple[str, list[str]]:
    """Upload the contents, then one commit adding `files` and deleting the
    revision's other data/ files; returns (commit URL, deleted paths)."""
    from huggingface_hub import CommitOperationAdd

    head = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
    remote = api.list_repo_files(repo_id, repo_type="dataset", revision=head)
    keep = set(files)
    stale = sorted(f for f in remote if f.startswith("data/") and f not in keep)
    say(f"datasets/{repo_id}@{revision} has {len(remote)} files; {len(stale)} stale data/ files will be deleted")
    adds = [CommitOperationAdd(f, str(folder / f)) for f in files]
    _upload(api, repo_id, revision, adds, say)
    say(f"committing {len(adds)} files and {len(stale)} deletions in one commit")
    return _send(api, repo_id, revision, head, adds, stale, title, say), stale


def _send(
    api: "HfApi", repo_id: str, revision: str, head: str, adds: list, stale: list[str], title: str, say: Say
) -> str:
    """The commit, on top of `head` only; returns its URL. Its response lost,
    the branch tells whether it landed; not landed after a dropped connection,
    it is sent once more (the same parent: it cannot apply twice)."""
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    operations = [*adds, *(CommitOperationDelete(f) for f in stale)]
    for attempt in (1, 2):
        try:
            info = api.create_commit(repo_id, operations, commit_message=title, repo_type="dataset",
                                     revision=revision, parent_commit=head)
            return info.commit_url
        except Exception as e:  # noqa: BLE001 - the commit may have landed all the same
            landed = _landed(api, repo_id, revision, head, adds, stale)
            if landed is not None:
                say(f"the commit's response was lost ({type(e).__name__}), but the branch holds this push")
                return landed
            if attempt == 2 or isinstance(e, HfHubHTTPError) or not _is_transport_error(e):
                raise
            say(f"commit not applied ({type(e).__name__}: {e}); sending it once more")
    raise AssertionError("unreachable")


def _upload(api: "HfApi", repo_id: str, revision: str, adds: list, say: Say) -> None:
    """Upload the contents before the commit, a chunk at a time, for a
    progress line per chunk (the progress bars say nothing off a terminal).
    Nothing is visible in the repo until the commit."""
    total = sum((Path(a.path_or_fileobj).stat().st_size for a in adds))
    done = done_bytes = 0
    for chunk in _chunks(adds):
        api.preupload_lfs_files(repo_id, additions=chunk, repo_type="dataset", revision=revision, free_memory=False)
        done += len(chunk)
        done_bytes += sum(a.upload_info.size for a in chunk)
        say(f"uploaded {done}/{len(adds)} files ({done_bytes / 2**20:.1f} of {total / 2**20:.1f} MiB)")


def _chunks(adds: list) -> Iterator[list]:
    chunk: list = []
    size = 0
    for a in adds:
        chunk.append(a)
        size += a.upload_info.size
        if len(chunk) >= UPLOAD_CHUNK_FILES or size >= UPLOAD_CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _landed(api: "HfApi", repo_id: str, revision: str, head: str, adds: list, stale: list[str]) -> str | None:
    """The URL of the branch's new head if its tree is exactly this push
    (every file's content as sent, the stale files gone), else None."""
    from huggingface_hub.hf_api import RepoFile

    try:
        now = api.repo_info(repo_id, repo_type="dataset", revision=revision).sha
        if now == head:
            return None
        tree = api.list_repo_tree(repo_id, repo_type="dataset", revision=now, recursive=True)
        remote = {f.path: f for f in tree if isinstance(f, RepoFile)}
    except Exception:  # noqa: BLE001 - cannot tell: report the commit's own error
        return None
    if any(p in remote for p in stale) or not all(_same(remote.get(a.path_in_repo), a) for a in adds):
        return None
    return f"{api.endpoint}/datasets/{repo_id}/commit/{now}"


def _same(remote: "RepoFile | None", add: "CommitOperationAdd") -> bool:
    """The Hub's file has this content: LFS by sha256, a regular file by its git blob id."""
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == add.upload_info.sha256.hex()
    data = Path(add.path_or_fileobj).read_bytes()
    return remote.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_transport_error(e: BaseException) -> bool:
    """No HTTP response at all (connection dropped, reset, timed out)."""
    import httpx2

    return isinstance(e, (httpx2.TransportError, ConnectionError))


def _refused_token(response: object) -> bool:
    status = getattr(response, "status_code", None)
    try:
        path = response.request.url.path if status == 403 else ""  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # a response without its request
        path = ""
    return status == 401 or (status == 403 and path.startswith("/api/"))


def explain(e: BaseException, repo_id: str, token: str | None = None) -> str:
    """A failed push in full: every line of the error, and of the errors under
    it until one from the Hub (an upload's RuntimeError hides the HTTP error
    under it), plus what to do when the Hub refused the token: a 401, or a 403
    from its API (a 403 from the storage an upload URL points to is not about
    the token). The token itself is masked if it appears."""
    from huggingface_hub.errors import HfHubHTTPError

    lines: list[str] = []
    refused = False
    seen: BaseException | None = e
    while seen is not None:
        line = f"{type(seen).__name__}: {seen}".rstrip()
        if line not in lines:
            lines.append(line)
        refused = refused or _refused_token(getattr(seen, "response", None))
        if isinstance(seen, HfHubHTTPError):
            break  # its message has the HTTP error's
        seen = seen.__cause__
    text = "\ncaused by: ".join(lines)
    if refused:
        text += "\n" + AUTH_HINT.format(owner=repo_id.split("/")[0])
    return text.replace(token, "***") if token else text

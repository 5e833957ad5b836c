"""Where a run's files live: a local folder or any filesystem pyarrow knows.

`output_dir` is a local path (`out/web`, `/data/web`, `file:///data/web`) or a
URI that `pyarrow.fs.FileSystem.from_uri` opens: `s3://bucket/prefix`
(`?region=eu-west-1`, `?endpoint_override=minio:9000&scheme=http` for MinIO
and other S3-compatible stores), `gs://bucket/prefix`, `abfs://...`,
`hdfs://...`. This module is the only one that knows the difference:
`resolve` turns a location into a `(filesystem, path)` pair and the functions
below take that pair. Ray workers get the location as a string (`child` keeps a
URI's query string) and resolve it themselves.

What "atomic" means where:

- **local**: a whole file is written under a temporary name beside its
  target, fsynced, then renamed over it (`os.replace`); a reader or a resumed
  run sees the old file or the complete new one, never a half. A killed writer
  leaves a `.<name>.<hex>.tmp` file that its owner removes on the next start.
- **object stores**: an object appears whole when its upload completes, so
  there is no temporary name and no rename. The content is collected in memory
  and uploaded only once it is complete, because pyarrow's S3 output stream
  completes a half-written upload when it is closed by an exception.
- **folders**: `replace_dir` swaps a folder in with two renames locally; on
  object stores it copies the files over and deletes the originals, which is
  *not* atomic (see there).

Everything that is not local is treated like an object store.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import uuid
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.fs as pafs

Location = Path | str
"""A local path or a filesystem URI."""

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAM = re.compile(r"secret|token|password|credential|access_key|sas", re.IGNORECASE)
_LOCAL = pafs.LocalFileSystem()


class StorageError(ValueError):
    """A location that cannot be used; the message says why. `hides_input`:
    the location holds a secret, so error messages must not quote it."""

    hides_input = False


def is_uri(location: Location) -> bool:
    return isinstance(location, str) and bool(_URI.match(location))


def is_remote(location: Location) -> bool:
    """True for a location on something other than the local disk."""
    return is_uri(location) and not str(location).startswith("file://")


def absolute(location: Location) -> str:
    """The location as a string that means the same from any working directory."""
    return str(location) if is_uri(location) else os.path.abspath(location)


def child(location: Location, *parts: str) -> str:
    """`location` with `parts` appended to its path (a URI keeps its query)."""
    if not is_uri(location):
        return os.path.join(location, *parts)
    u = urlsplit(str(location))
    return urlunsplit(u._replace(path=posixpath.join(u.path or "/", *parts)))


def check(location: str) -> None:
    """Raise StorageError if `location` cannot be opened (unknown scheme, bad
    parameters, credentials written into it)."""
    if not is_uri(location):
        return
    u = urlsplit(location)
    if u.password or any(_SECRET_PARAM.search(k) for k, _, _ in (p.partition("=") for p in u.query.split("&"))):
        e = StorageError(
            f"credentials in the URI ({u.scheme}://{u.hostname or ''}{u.path}?...) would end up in the manifest "
            "and the logs; use the provider's own configuration instead (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or ~/.aws for s3://)"
        )
        e.hides_input = True
        raise e
    try:
        _, path = resolve(location)
    except (pa.ArrowException, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(
            f"pyarrow cannot open it ({first}); use a local path or a URI like s3://bucket/prefix"
        ) from None
    if not path.strip("/"):
        raise StorageError("the URI names no bucket or folder (e.g. s3://bucket/prefix)")


def resolve(location: Location) -> tuple[pafs.FileSystem, str]:
    """The (filesystem, path) pair for a location; one filesystem object per URI."""
    if not is_uri(location):
        return _LOCAL, os.path.abspath(location)
    return _from_uri(str(location))


@lru_cache(maxsize=128)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    fs, path = pafs.FileSystem.from_uri(uri)
    return (_LOCAL, path) if isinstance(fs, pafs.LocalFileSystem) else (fs, path)


def is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def join(path: str, *parts: str) -> str:
    """A path inside a filesystem with `parts` appended."""
    return posixpath.join(path, *parts)


def makedirs(fs: pafs.FileSystem, path: str) -> None:
    """Create a folder and its parents (object stores have no folders: nothing to do)."""
    if is_local(fs):
        os.makedirs(path, exist_ok=True)


@contextmanager
def atomic_output(fs: pafs.FileSystem, path: str) -> Iterator[IO[bytes]]:
    """A binary file to write `path` whole: it appears complete when the block
    ends without an exception, and not at all otherwise.

    Locally: a temporary file beside `path`, fsynced and renamed over it. On an
    object store: a memory buffer uploaded as one object at the end (a single
    PUT is atomic there already; buffering keeps a failed write from uploading
    a half). pyarrow writers (`pq.write_table(table, f)`) take the file as is."""
    if not is_local(fs):
        buffer = pa.BufferOutputStream()
        yield buffer
        with fs.open_output_stream(path) as out:
            out.write(buffer.getvalue())
        return
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes | str) -> None:
    """Write a whole file atomically (see `atomic_output`)."""
    with atomic_output(fs, path) as f:
        f.write(data.encode() if isinstance(data, str) else data)


def write_parquet(
    fs: pafs.FileSystem, path: str, table: pa.Table, before_rename: Callable[[], None] = lambda: None, **options: Any
) -> None:
    """Write `table` as one Parquet file, atomically (`atomic_output`).
    `before_rename` runs once it is encoded and not yet in place (crash points)."""
    import pyarrow.parquet as pq

    with atomic_output(fs, path) as f:
        pq.write_table(table, f, **options)
        before_rename()


def read_parquet_rows(fs: pafs.FileSystem, folder: str) -> Iterator[dict[str, Any]]:
    """The rows of every Parquet file in `folder` (a folder of batch files
    such as the quality caches), file by file."""
    import pyarrow.parquet as pq

    for path in list_files(fs, folder, ".parquet"):
        yield from pq.read_table(path, filesystem=fs).to_pylist()


def open_output(fs: pafs.FileSystem, path: str) -> pa.NativeFile:
    """A stream writing `path` directly (not atomic: for files in a temporary folder)."""
    makedirs(fs, posixpath.dirname(path))
    return fs.open_output_stream(path)


def _infos(fs: pafs.FileSystem, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))


def file_infos(
    fs: pafs.FileSystem, path: str, suffix: str = "", *, hidden: bool = False, recursive: bool = False
) -> list[pafs.FileInfo]:
    """Files under `path` whose names end with `suffix` (with size and mtime),
    sorted by path; names starting with '.' (temporary files) only with
    `hidden`. A missing folder has none."""
    return sorted(
        (
            i for i in _infos(fs, path, recursive)
            if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
            and (hidden or not i.base_name.startswith("."))
        ),
        key=lambda i: i.path,
    )


def list_files(
    fs: pafs.FileSystem, path: str, suffix: str = "", *, hidden: bool = False, recursive: bool = False
) -> list[str]:
    """The paths of `file_infos`."""
    return [i.path for i in file_infos(fs, path, suffix, hidden=hidden, recursive=recursive)]


def list_dirs(fs: pafs.FileSystem, path: str) -> list[str]:
    """The folders directly under `path` (hidden ones included), sorted."""
    return sorted(i.path for i in _infos(fs, path) if i.type == pafs.FileType.Directory)


def info(fs: pafs.FileSystem, path: str) -> pafs.FileInfo:
    return fs.get_file_info(path)


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return info(fs, path).type != pafs.FileType.NotFound


def is_dir(fs: pafs.FileSystem, path: str) -> bool:
    return info(fs, path).type == pafs.FileType.Directory


def delete(fs: pafs.FileSystem, path: str) -> None:
    """Delete a file; a missing one is no error."""
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def delete_dir(fs: pafs.FileSystem, path: str) -> None:
    """Delete a folder and everything in it; a missing one is no error."""
    if is_local(fs):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        fs.delete_dir(path)
    except FileNotFoundError:
        pass


def move(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Rename a file (an atomic rename locally; copy and delete on object stores)."""
    if is_local(fs):
        os.replace(src, dst)
    else:
        fs.move(src, dst)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(fs: pafs.FileSystem, path: str) -> str:
    return read_bytes(fs, path).decode()


def replace_dir(fs: pafs.FileSystem, new: str, current: str, between: Callable[[], None] = lambda: None) -> None:
    """Put folder `new` in the place of folder `current` (`between` is called
    after the old one is taken away, before the new one is in; the kill tests
    crash there).

    Locally: two renames (`current` to `.<name>-old-<hex>`, `new` to `current`),
    then the old copy is deleted; a crash between them leaves `current` missing,
    never half-written. On object stores there is no rename: `current` is
    deleted, every object of `new` is copied into it (server-side), then `new`
    is deleted. That is NOT atomic: a reader in between, or a crash, can see
    `current` missing or partly copied. Callers write what marks a complete
    result (the manifest) after this, and rebuild `current` on the next run.
    (S3 copies one object of at most 5 GB per request.)"""
    if is_local(fs):
        old = os.path.join(os.path.dirname(current), f".{os.path.basename(current)}-old-{uuid.uuid4().hex[:8]}")
        if os.path.exists(current):
            os.replace(current, old)
        between()
        os.replace(new, current)
        shutil.rmtree(old, ignore_errors=True)
        return
    delete_dir(fs, current)
    between()
    for src in list_files(fs, new, hidden=True, recursive=True):
        fs.copy_file(src, join(current, src[len(new.rstrip('/')) + 1 :]))
    delete_dir(fs, new)


def download(fs: pafs.FileSystem, root: str, files: list[str], dest: Path) -> None:
    """Copy `files` (paths relative to `root`) to the local folder `dest`."""
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(join(root, name), str(target), source_filesystem=fs, destination_filesystem=_LOCAL)


def cache_dir(output: Location, configured: str | None = None) -> str:
    """A local folder for what cannot live on an object store (SQLite files):
    `configured` if set, else `<output>/cache` for a local output, else
    `~/.cache/synth/<12 hex digits of the output URI's hash>`. A leading `~` is
    kept, so each node expands it to its own home (`os.path.expanduser`)."""
    if configured:
        return configured if configured.startswith("~") else os.path.abspath(configured)
    if not is_remote(output):
        return os.path.join(resolve(output)[1], "cache")
    return f"~/.cache/synth/{hashlib.sha256(str(output).encode()).hexdigest()[:12]}"

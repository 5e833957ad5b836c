"""Trac's per-episode reset, called by synth after each episode (site.yaml
`reset.hook`) while tracd keeps running.

The database is overwritten in place with SQLite's backup API (one step, under
SQLite's lock, so tracd's next query sees the whole pristine file), then
attachments and trac.ini are put back. Trac's CacheManager keeps a
generation number per cache in the `cache` table and refetches when the
number differs from the one it cached with; restoring would bring back old
numbers that may equal ones tracd cached changed data under (ABA), so the
restored copy gets every generation set past the live maximum (NOTES.md,
"Reset per episode")."""

from __future__ import annotations

import shutil
import sqlite3
from functools import lru_cache
from pathlib import Path

DB = Path("env/db/trac.db")


@lru_cache(maxsize=4)
def _pristine_db(pristine: Path) -> sqlite3.Connection:
    """The pristine database in memory (read once per worker process)."""
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    with sqlite3.connect(f"file:{pristine / DB}?mode=ro", uri=True) as src:
        src.backup(memory)
    return memory


def reset(data: Path, pristine: Path) -> None:
    live = sqlite3.connect(data / DB, timeout=30)
    try:
        (top,) = live.execute("SELECT COALESCE(MAX(generation), 0) FROM cache").fetchone()
        copy = sqlite3.connect(":memory:")
        _pristine_db(pristine).backup(copy)
        with copy:
            copy.execute("UPDATE cache SET generation = ?", (top + 1,))
        copy.backup(live, sleep=0.005)
        copy.close()
    finally:
        live.close()
    files, seed_files = data / "env" / "files", pristine / "env" / "files"
    if files.exists() and _tree(files) != _tree(seed_files):  # attachments added in the episode
        shutil.rmtree(files)
        if seed_files.exists():
            shutil.copytree(seed_files, files)
    ini, seed_ini = data / "env" / "conf" / "trac.ini", pristine / "env" / "conf" / "trac.ini"
    if ini.read_bytes() != seed_ini.read_bytes():  # admin panels write trac.ini; tracd reloads it on a new mtime
        shutil.copyfile(seed_ini, ini)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []

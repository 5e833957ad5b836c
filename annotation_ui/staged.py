"""Trajectories for review: the run's staging plus the queue's own.

Listing reads only small columns of the staging files (ids, source, status,
the steps' indexes), never the screenshots, and re-reads a file only when it
changed. Opening one trajectory reads just that row (the file's row groups
filtered by id); the last few opened are kept for their screenshots. File
paths come only from the server's `--out` folder, never from a request.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq

from annotation_ui.store import Store
from synth import storage
from synth.schema import STAGING_SCHEMA

TRAJECTORY_ID = re.compile(r"^[0-9a-f]{16}$")
_LIST_COLUMNS = [
    "trajectory_id", "task_id", "template_id", "source", "source_detail", "instruction", "status",
    "reject_reason", "started_at",
]


class Trajectories:
    """Summaries and full rows of every reviewable trajectory."""

    def __init__(self, store: Store, out_dir: storage.Location | None, cache_size: int = 6) -> None:
        self.store = store
        self.staging = storage.resolve(storage.child(out_dir, "staging")) if out_dir is not None else None
        """The staging folder as a (filesystem, path) pair: local or on an object store."""
        self._files: dict[str, tuple[tuple[int, int], list[dict[str, Any]]]] = {}
        self._where: dict[str, str] = {}
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _scan(self) -> list[dict[str, Any]]:
        """Summaries of the staged trajectories (cached per file, by mtime and size)."""
        rows: list[dict[str, Any]] = []
        if self.staging is None:
            return rows
        fs, folder = self.staging
        infos = storage.file_infos(fs, folder, ".parquet")
        with self._lock:
            live = {i.base_name for i in infos}
            for name in list(self._files):
                if name not in live:
                    del self._files[name]
            for info in infos:
                path, key = info.path, (info.mtime_ns or 0, info.size or 0)
                cached = self._files.get(info.base_name)
                if cached is None or cached[0] != key:
                    try:
                        pf = pq.ParquetFile(path, filesystem=fs)
                    except FileNotFoundError:
                        continue
                    names = set(pf.schema_arrow.names)
                    cols = [c for c in _LIST_COLUMNS if c in names]
                    table = pf.read(columns=cols + ["steps.list.element.index"])
                    summaries = []
                    for r in table.to_pylist():
                        steps = r.pop("steps") or []
                        summaries.append({**dict.fromkeys(_LIST_COLUMNS), **r, "num_steps": len(steps)})
                    cached = (key, summaries)
                    self._files[info.base_name] = cached
                for s in cached[1]:
                    self._where[s["trajectory_id"]] = path
                rows.extend(cached[1])
        return rows

    def list(self) -> list[dict[str, Any]]:
        """Every trajectory once: the queue's human ones, then the staged
        ones not already listed (a harvested human trajectory is in both)."""
        out: dict[str, dict[str, Any]] = {}
        for h in self.store.trajectory_summaries():
            out[h["trajectory_id"]] = {
                "trajectory_id": h["trajectory_id"],
                "task_id": h["task_id"],
                "template_id": h["template_id"],
                "source": "human",
                "source_detail": h["labeler"],
                "instruction": h["instruction"],
                "status": h["status"],
                "reject_reason": None if h["status"] == "accepted" else h["reason"],
                "started_at": h["created_at"],
                "num_steps": h["num_steps"],
            }
        for s in self._scan():
            out.setdefault(s["trajectory_id"], s)
        return list(out.values())

    def get(self, trajectory_id: str) -> dict[str, Any] | None:
        """One trajectory with its steps and screenshots, or None."""
        if not TRAJECTORY_ID.match(trajectory_id):
            return None
        with self._lock:
            if trajectory_id in self._cache:
                self._cache.move_to_end(trajectory_id)
                return self._cache[trajectory_id]
        row = self.store.trajectory(trajectory_id)
        if row is None:
            path = self._where.get(trajectory_id)
            if path is None:
                self._scan()
                path = self._where.get(trajectory_id)
            if path is None or self.staging is None or not storage.exists(self.staging[0], path):
                return None
            table = ds.dataset(path, schema=STAGING_SCHEMA, format="parquet", filesystem=self.staging[0]).to_table(
                filter=ds.field("trajectory_id") == trajectory_id
            )
            if table.num_rows == 0:
                return None
            row = table.slice(0, 1).to_pylist()[0]
        with self._lock:
            self._cache[trajectory_id] = row
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return row

    def forget(self, trajectory_id: str) -> None:
        with self._lock:
            self._cache.pop(trajectory_id, None)

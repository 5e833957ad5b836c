"""Staging: the append-only store of finished trajectories.

Workers write one Parquet file per batch of finished episodes, atomically
(synth.storage: locally a temporary name, fsync and rename; on an object store
one upload), so a file in staging is always complete and a batch is either
all there or not at all. A killed local run leaves at most some `.*.tmp`
files, removed at the next start. What is in staging is what a resumed run
skips; the final shards are derived from it and can always be rebuilt.

`staging_dir` is a local path or a filesystem URI (`s3://bucket/run/staging`).
"""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from synth import storage
from synth.faults import crash_point
from synth.schema import STAGING_SCHEMA, Trajectory, trajectories_to_table


def write_batch(staging_dir: storage.Location, trajectories: list[Trajectory], name: str) -> str:
    """Atomically add one staging file holding `trajectories`; returns its path."""
    fs, folder = storage.resolve(staging_dir)
    final = storage.join(folder, f"{name}.parquet")
    storage.write_parquet(fs, final, trajectories_to_table(trajectories), before_rename=lambda: crash_point("staging.write"),
                          compression="zstd")
    crash_point("staging.written")
    return final


def files(staging_dir: storage.Location) -> list[str]:
    """The staging files (paths in the location's filesystem), sorted."""
    fs, folder = storage.resolve(staging_dir)
    return storage.list_files(fs, folder, ".parquet")


def remove_partial(staging_dir: storage.Location) -> int:
    """Delete temporary files a killed writer left; returns how many."""
    fs, folder = storage.resolve(staging_dir)
    leftovers = [p for p in storage.list_files(fs, folder, ".tmp", hidden=True) if p.rsplit("/", 1)[-1].startswith(".")]
    for p in leftovers:
        storage.delete(fs, p)
    return len(leftovers)


def table(staging_dir: storage.Location, columns: list[str]) -> pa.Table | None:
    """`columns` of every staged row, or None if nothing is staged."""
    paths = files(staging_dir)
    if not paths:
        return None
    fs, _ = storage.resolve(staging_dir)
    return ds.dataset(paths, schema=STAGING_SCHEMA, format="parquet", filesystem=fs).to_table(columns=columns)


def finished_task_ids(staging_dir: storage.Location, source: str | None = None) -> set[str]:
    """Task ids with a staged trajectory (of `source`, if given)."""
    t = table(staging_dir, ["task_id", "source"])
    if t is None:
        return set()
    if source is not None:
        t = t.filter(pc.equal(t["source"], source))
    return set(t["task_id"].to_pylist())


def iter_rows(staging_dir: storage.Location, batch_rows: int = 64) -> Iterator[dict]:
    """Staged trajectories as dicts, file by file, in a bounded amount of memory."""
    fs, _ = storage.resolve(staging_dir)
    for path in files(staging_dir):
        with pq.ParquetFile(path, filesystem=fs) as pf:
            for batch in pf.iter_batches(batch_size=batch_rows):
                yield from batch.to_pylist()

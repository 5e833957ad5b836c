"""The human source in `synth run`: enqueue tasks, harvest trajectories, export verdicts.

`sync` is called once per run, after the other sources finished and before
the quality stage and export:

1. **enqueue** the planned tasks `sources.human.select` picks: tasks no
   solver can do, tasks the LLM agent failed (read from staging), every task
   of the listed templates, and a deterministic sample of the rest. A sample
   of those (`overlap`) gets `overlap_labelers` slots, so several labelers do
   the same task. Queue items are keyed by (task id, slot): enqueuing again
   changes nothing.
2. **harvest** the trajectories labelers submitted since the last run into
   `staging/`, each exactly once. A batch is written as one staging file
   named after its trajectory ids, and only then marked harvested; a crash in
   between leaves the ids in staging, so the retry sees them and only marks
   them.
3. **verdicts**: every reviewer verdict (the latest per trajectory) is
   written to `reviews.parquet` (atomically), where the quality stage reads it.

The output folder may be on an object store (synth.storage); the queue is a
SQLite file and stays local (`db_path`).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from annotation_ui.store import Store, decode_trajectory
from synth import staging, storage
from synth.config import HumanSourceConfig
from synth.schema import Task, Trajectory, stable_id

REVIEWS_SCHEMA = pa.schema(
    [
        ("trajectory_id", pa.string()),
        ("reviewer", pa.string()),
        ("verdict", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("comment", pa.string()),
        ("reviewed_at", pa.float64()),
        # the reviewer accepted a trajectory the judge failed, on purpose: the
        # judge was wrong (a false negative for the judge-accuracy measures)
        ("override_judge", pa.bool_()),
        ("override_reason", pa.string()),
    ]
)
HARVEST_BATCH = 200


def db_path(config: HumanSourceConfig, out_dir: storage.Location, cache_dir: str | None = None) -> Path:
    """The queue file: `config.db`, relative to the pipeline's output folder,
    or, when that is not on the local disk (SQLite cannot live on an object
    store), to the local `cache_dir` (default `storage.cache_dir(out_dir)`)."""
    p = Path(config.db).expanduser()
    if p.is_absolute():
        return p
    if storage.is_remote(out_dir):
        return Path(cache_dir or storage.cache_dir(out_dir)).expanduser() / p
    return Path(storage.resolve(out_dir)[1] if storage.is_uri(out_dir) else out_dir) / p


def open_store(config: HumanSourceConfig, out_dir: storage.Location, cache_dir: str | None = None) -> Store:
    path = db_path(config, out_dir, cache_dir)
    return Store(path, lease_seconds=config.lease_seconds, max_skips=config.max_skips)


def _fraction(*key: Any) -> float:
    """A stable number in [0, 1) for a key: the same task is sampled in every run."""
    return int(stable_id(*key), 16) / 16**16


def bootstrap_failed(staging_dir: storage.Location) -> set[str]:
    """Task ids the LLM agent attempted and never got accepted."""
    table = staging.table(staging_dir, ["task_id", "source", "status"])
    if table is None:
        return set()
    table = table.filter(pc.equal(table["source"], "bootstrap"))
    tried = set(table["task_id"].to_pylist())
    passed = set(table.filter(pc.equal(table["status"], "accepted"))["task_id"].to_pylist())
    return tried - passed


def select(config: HumanSourceConfig, tasks: list[Task], staging_dir: storage.Location) -> list[tuple[Task, str]]:
    """The tasks that go to people, each with the first rule that picked it."""
    sel = config.select
    failed = bootstrap_failed(staging_dir) if sel.bootstrap_failed else set()
    out = []
    for t in tasks:
        if sel.templates and any(fnmatch.fnmatchcase(t.template_id, pat) for pat in sel.templates):
            out.append((t, "template"))
        elif sel.no_solver and t.solver is None:
            out.append((t, "no_solver"))
        elif t.task_id in failed:
            out.append((t, "bootstrap_failed"))
        elif sel.sample and _fraction("human-sample", t.task_id) < sel.sample:
            out.append((t, "sample"))
    return out


def slots(config: HumanSourceConfig, task: Task) -> int:
    if config.overlap and _fraction("human-overlap", task.task_id) < config.overlap:
        return config.overlap_labelers
    return 1


PRIORITY = {"bootstrap_failed": 3, "no_solver": 2, "template": 1, "sample": 0}


def enqueue(
    store: Store, config: HumanSourceConfig, tasks: list[Task], staging_dir: storage.Location, run_id: str = ""
) -> int:
    """Add the selected tasks to the queue; returns how many items are new."""
    chosen = select(config, tasks, staging_dir)
    known = store.task_ids()
    fresh = [(t, r) for t, r in chosen if t.task_id not in known]
    if config.max_new_tasks is not None:
        fresh = fresh[: config.max_new_tasks]
    entries = [(t, slots(config, t), r, PRIORITY[r]) for t, r in fresh]
    # tasks already queued keep their items; a raised `overlap` may add slots
    entries += [(t, slots(config, t), r, PRIORITY[r]) for t, r in chosen if t.task_id in known]
    return store.enqueue_many(entries, run_id=run_id)


def _staged_ids(staging_dir: storage.Location) -> set[str]:
    table = staging.table(staging_dir, ["trajectory_id", "source"])
    if table is None:
        return set()
    return set(table.filter(pc.equal(table["source"], "human"))["trajectory_id"].to_pylist())


def harvest(store: Store, staging_dir: storage.Location, run_id: str = "") -> int:
    """Move submitted trajectories into staging, each exactly once; returns
    how many were written."""
    written = 0
    staged: set[str] | None = None
    while True:
        rows = store.unharvested(HARVEST_BATCH)
        if not rows:
            return written
        if staged is None:
            staged = _staged_ids(staging_dir)
        ids = [tid for tid, _ in rows]
        fresh = [(tid, data) for tid, data in rows if tid not in staged]
        name = ""
        if fresh:
            trajectories = []
            for _, data in fresh:
                row = decode_trajectory(data)
                row["run_id"] = row["run_id"] or run_id
                trajectories.append(Trajectory.model_validate(row))
            name = "human-" + stable_id("harvest", sorted(tid for tid, _ in fresh))
            staging.write_batch(staging_dir, trajectories, name)
            staged.update(tid for tid, _ in fresh)
            written += len(fresh)
        store.mark_harvested(ids, name or "already-staged")


def write_reviews(store: Store, location: storage.Location) -> int:
    """All verdicts (the latest per trajectory) as one Parquet file, atomically."""
    rows = store.latest_reviews()
    table = pa.Table.from_pylist(
        [{k: r[k] for k in REVIEWS_SCHEMA.names} for r in rows], schema=REVIEWS_SCHEMA
    )
    fs, path = storage.resolve(location)
    storage.write_parquet(fs, path, table)
    return len(rows)


def sync(
    config: HumanSourceConfig, tasks: list[Task], out_dir: storage.Location, run_id: str, cache_dir: str | None = None
) -> dict[str, int]:
    """Enqueue, harvest and write verdicts for one run; returns counts for a
    one-line summary: enqueued (new queue items), harvested (trajectories
    added to staging), reviews (verdicts written) and the queue by state."""
    store = open_store(config, out_dir, cache_dir)
    try:
        staging_dir = storage.child(out_dir, "staging")
        enqueued = enqueue(store, config, tasks, staging_dir, run_id)
        harvested = harvest(store, staging_dir, run_id)
        reviews = write_reviews(store, storage.child(out_dir, "reviews.parquet"))
        counts = store.counts()
    finally:
        store.close()
    return {"enqueued": enqueued, "harvested": harvested, "reviews": reviews, **{f"queue_{k}": v for k, v in counts.items()}}

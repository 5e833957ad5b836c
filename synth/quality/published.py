"""Replay a published dataset from its shards alone: `synth replay OUT`.

Every accepted row of `data/trajectories` carries what a replay needs: the
task it was recorded on (`task_config`: site, params, seed, judge), and per
step the action with its normalised coordinates, the element it acted on
(role, name, selector, box) and the wait before it (`waited_ms`). This module
re-runs them with the same Replayer the replay gate uses (a fresh context per
trajectory, settled pages, targets checked at their points) and reports which
pass their judge again: the check that a trainer's or evaluator's replayer
can reproduce the data, independent of staging and of the machine that made it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow.dataset as ds

from synth import storage
from synth.env import BrowserConfig
from synth.quality.replay import ReplayJob, ReplayResult, Replayer, ReplayStep
from synth.schema import POINTER_ACTIONS, Action, Element, Task

COLUMNS = ["trajectory_id", "template_id", "status", "task_config", "steps"]


def published_jobs(out_dir: storage.Location, templates: list[str] | None = None) -> Iterator[ReplayJob]:
    """A replay job per accepted trajectory in `OUT/data/trajectories`."""
    fs, root = storage.resolve(out_dir)
    folder = storage.join(root, "data", "trajectories")
    files = storage.list_files(fs, folder, ".parquet")
    if not files:
        raise FileNotFoundError(f"no Parquet shards in {storage.child(out_dir, 'data', 'trajectories')}")
    dataset = ds.dataset(files, format="parquet", filesystem=fs)
    missing = sorted(set(COLUMNS) - set(dataset.schema.names))
    if missing:
        raise ValueError(f"{folder} has no {', '.join(missing)} column: written by a synth before replays "
                         "could run from the shards; run `synth run` again to rebuild them")
    for batch in dataset.to_batches(columns=COLUMNS, filter=ds.field("status") == "accepted"):
        for row in batch.to_pylist():
            if templates and row["template_id"] not in templates:
                continue
            yield job_from_row(row)


def job_from_row(row: dict[str, Any]) -> ReplayJob:
    """The replay job of one published trajectory row."""
    if not row.get("task_config"):
        raise ValueError(f"trajectory {row['trajectory_id']} has no task_config")
    task = Task.model_validate_json(row["task_config"])
    steps = []
    for s in row["steps"]:
        action = Action.model_validate({k: v for k, v in s["action"].items() if v is not None})
        target = None
        if s.get("element") and action.name in POINTER_ACTIONS:
            target = Element.model_validate(s["element"])
        steps.append(ReplayStep(action.model_copy(update={"element_id": None}), s.get("waited_ms") or 0.0, target))
    return ReplayJob(row["trajectory_id"], task, steps)


@dataclass
class Report:
    replayed: int = 0
    passed: int = 0
    relocated: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    """Trajectory id -> why its replay failed."""
    by_template: dict[str, Counter] = field(default_factory=dict)


async def replay_published(
    out_dir: storage.Location,
    *,
    concurrency: int = 3,
    templates: list[str] | None = None,
    limit: int | None = None,
    browser: BrowserConfig | None = None,
    on_result: Callable[[ReplayJob, ReplayResult], None] | None = None,
) -> Report:
    """Replay the accepted trajectories of a published dataset on one browser,
    `concurrency` at once, each in a fresh context."""
    jobs = list(published_jobs(out_dir, templates))[:limit]
    replayer = Replayer(browser=browser or BrowserConfig(screenshots=False, snapshots=False))
    await replayer.setup()
    report, gate = Report(), asyncio.Semaphore(concurrency)

    async def one(job: ReplayJob) -> None:
        async with gate:
            result = await replayer.verify(job)
        counts = report.by_template.setdefault(job.task.template_id, Counter())
        counts["replayed"] += 1
        report.replayed += 1
        if result.passed:
            report.passed += 1
            counts["passed"] += 1
        else:
            report.failed[job.trajectory_id] = result.reason
        if result.relocated:
            report.relocated += 1
            counts["relocated"] += 1
        if on_result:
            on_result(job, result)

    try:
        await asyncio.gather(*(one(j) for j in jobs))
    finally:
        await replayer.teardown()
    return report

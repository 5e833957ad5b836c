"""`synth run`: tasks -> Ray source actors -> staging -> shards.

The driver instantiates the tasks, skips those already in staging (resume),
and feeds the rest in small batches to a pool of source actors, at most two
batches in flight per actor so every browser stays busy and few tasks sit in
memory. Each actor owns one browser and runs up to `contexts_per_actor`
episodes at once; it writes each finished batch to staging itself (atomic) and
returns only a summary. When every task is done the shards, manifest and card
are rebuilt from staging.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ray

from synth import staging
from synth.config import ConfigError, PipelineConfig, SourceConfig, load_pipeline
from synth.export.card import card, manifest, write_atomic
from synth.export.shards import export
from synth.schema import Task
from synth.tasks import tasks_from


MAX_BATCH_RETRIES = 3


class PipelineError(RuntimeError):
    """The run cannot go on; the message says why. What is staged is kept."""


@dataclass
class Progress:
    """What the driver reports while it runs (the CLI draws it with rich)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    accepted: int = 0
    rejected: int = 0
    steps: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(time.perf_counter() - self.started, 1e-9)


@dataclass
class RunResult:
    out_dir: Path
    run_id: str
    progress: Progress
    manifest: dict[str, Any]
    interrupted: bool = False


@ray.remote
class SourceActor:
    """A Ray actor around one Source (one browser). Async: its episodes
    interleave on one event loop, bounded by `contexts`."""

    def __init__(self, kind: str, options: dict[str, Any], staging_dir: str, name: str, contexts: int) -> None:
        from synth.sources import SolverSource

        sources = {"solver": SolverSource}
        self.source = sources[kind](**options)
        self.staging_dir, self.name = staging_dir, name
        self.gate = asyncio.Semaphore(contexts)
        self.ready = asyncio.Lock()
        self.started = False

    async def run_batch(self, tasks: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
        async with self.ready:
            if not self.started:
                await self.source.setup()
                self.started = True

        async def one(task: Task):
            async with self.gate:
                return await self.source.run(task)

        trajectories = await asyncio.gather(*(one(Task.model_validate(t)) for t in tasks))
        # Encoding and fsync take a while; off the loop, the other episodes on
        # this browser keep going meanwhile.
        await asyncio.to_thread(staging.write_batch, self.staging_dir, trajectories, f"{self.name}-{seq:06d}")
        return [{"task_id": t.task_id, "status": t.status, "steps": len(t.steps)} for t in trajectories]

    async def shutdown(self) -> None:
        await self.source.teardown()


def plan(config: PipelineConfig, base: Path) -> list[Task]:
    """Every task the pipeline asks for, in a stable order."""
    tasks: list[Task] = []
    for sel in config.tasks:
        # an absolute `templates` path replaces `base` (pathlib's `/`)
        tasks.extend(tasks_from(base / sel.templates, sel.include, sel.seeds_per_template))
    ids = [t.task_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ConfigError("tasks: the same template is selected twice (duplicate task ids)")
    return tasks


def _ray_init(config: PipelineConfig, address: str | None) -> bool:
    """Join a cluster (--address, $RAY_ADDRESS, ray.address) or start a local
    Ray. Returns True if this process started Ray (and so should stop it)."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or config.ray.address
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=config.ray.num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def _site_options(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sel in config.tasks:
        for site, opts in sel.site_options.items():
            out.setdefault(site, {}).update(opts)
    return out


@dataclass
class Plan:
    """A checked pipeline: its config and every task it asks for."""

    config_path: Path
    config: PipelineConfig
    tasks: list[Task]

    @property
    def out_dir(self) -> Path:
        return Path(self.config.output_dir)


def prepare(config_path: Path | str, limit: int | None = None) -> Plan:
    """Load and check the pipeline and its templates; raises ConfigError
    before anything runs or is written."""
    config_path = Path(config_path)
    config = load_pipeline(config_path)
    tasks = plan(config, config_path.parent.resolve())
    tasks = [t for t in tasks if t.solver] if config.sources.solver.enabled else []
    return Plan(config_path, config, tasks[:limit] if limit is not None else tasks)


def execute(
    p: Plan, *, address: str | None = None, on_progress: Callable[[Progress], None] | None = None
) -> RunResult:
    """Run the tasks not yet in staging, then rebuild shards, manifest and card."""
    config, out_dir = p.config, p.out_dir
    staging_dir = out_dir / "staging"
    staging.remove_partial(staging_dir)
    done = staging.finished_task_ids(staging_dir)
    todo = [t for t in p.tasks if t.task_id not in done]
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    progress = Progress(total=len(p.tasks), skipped=len(p.tasks) - len(todo), done=len(p.tasks) - len(todo))
    if on_progress:
        on_progress(progress)
    interrupted = False
    if todo:
        started_ray = _ray_init(config, address)
        try:
            _drive(config, config.sources.solver, "solver", todo, staging_dir, run_id, progress, on_progress)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if started_ray:
                ray.shutdown()
    if interrupted:
        return RunResult(out_dir, run_id, progress, {}, interrupted=True)
    stats = export(out_dir, config.export.rows_per_shard, config.export.row_group_mb)
    m = manifest(config.name, stats, config.model_dump(mode="json"), {"pipeline": str(p.config_path)})
    write_atomic(out_dir / "manifest.json", json.dumps(m, indent=2))
    write_atomic(out_dir / "README.md", card(m, config.export.license))
    return RunResult(out_dir, run_id, progress, m)


def run(
    config_path: Path | str,
    *,
    address: str | None = None,
    limit: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    return execute(prepare(config_path, limit), address=address, on_progress=on_progress)


def _drive(
    config: PipelineConfig,
    source: SourceConfig,
    kind: str,
    todo: list[Task],
    staging_dir: Path,
    run_id: str,
    progress: Progress,
    on_progress: Callable[[Progress], None] | None,
) -> None:
    options = {
        "browser": config.browser,
        "site_options": _site_options(config),
        "run_id": run_id,
        "episode_timeout_s": source.episode_timeout_s,
    }
    resources: dict[str, Any] = {"num_cpus": source.num_cpus}
    if source.memory_mb:
        resources["memory"] = source.memory_mb * 2**20
    def new_actor(i: int) -> ray.actor.ActorHandle:
        return SourceActor.options(**resources).remote(
            kind, options, str(staging_dir.resolve()), f"{run_id}-{kind}{i}", source.contexts_per_actor
        )

    actors = [new_actor(i) for i in range(source.actors)]
    size = config.ray.batch_size
    batches = deque(todo[i : i + size] for i in range(0, len(todo), size))
    in_flight: dict[ray.ObjectRef, tuple[int, ray.actor.ActorHandle, list[Task]]] = {}
    failures: dict[str, int] = {}
    seq = 0

    def submit(i: int) -> None:
        nonlocal seq
        if batches:
            batch = batches.popleft()
            ref = actors[i].run_batch.remote([t.model_dump(mode="json") for t in batch], seq)
            in_flight[ref] = (i, actors[i], batch)
            seq += 1

    for i in range(len(actors)):
        for _ in range(2):
            submit(i)
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            i, handle, batch = in_flight.pop(ready[0])
            try:
                summaries = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                # The worker died (killed, out of memory): nothing of this batch
                # was staged, so it goes back on the queue for a new actor.
                key = batch[0].task_id
                failures[key] = failures.get(key, 0) + 1
                if failures[key] > MAX_BATCH_RETRIES:
                    raise PipelineError(
                        f"tasks {[t.task_id for t in batch]} lost their worker {failures[key]} times; last: {e}"
                    ) from None
                if actors[i] is handle:
                    actors[i] = new_actor(i)
                batches.appendleft(batch)
                submit(i)
                continue
            except ray.exceptions.RayTaskError as e:
                raise PipelineError(f"{kind} worker failed: {e.cause!r}") from None
            for summary in summaries:
                progress.done += 1
                progress.steps += summary["steps"]
                if summary["status"] == "accepted":
                    progress.accepted += 1
                else:
                    progress.rejected += 1
            if on_progress:
                on_progress(progress)
            submit(i)
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=False)
        try:
            ray.get([a.shutdown.remote() for a in actors], timeout=20)
        except Exception:  # noqa: BLE001 - shutting down; the actors die with Ray anyway
            pass

"""`synth run`: tasks -> source actors -> staging -> quality -> shards.

The driver instantiates the tasks, skips those already in staging (resume),
and feeds the rest to one pool of Ray actors per enabled source
(synth.workers). Each actor owns one browser and runs up to
`contexts_per_actor` episodes at once; it writes each finished batch to
staging itself (atomic) and returns only a summary. Then the quality stage
(synth.quality.stage) judges every staged trajectory, replaying on a pool of
replay actors, and the shards, manifest and card are rebuilt from staging
with its verdicts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter, deque
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import ray

from synth import staging, storage
from synth.config import ConfigError, PipelineConfig, SourceConfig, format_validation_error, load_pipeline
from synth.faults import crash_point
from synth.plugins import PluginError, Plugins
from synth.export.card import card, manifest
from synth.export.shards import export
from synth.quality.replay import ReplayJob, ReplayResult, sampled, unpack_steps
from synth.quality.stage import ReplayCache, assess, replay_settings
from synth.schema import Task
from synth.tasks import TaskList, TaskSet, seed_range, select_templates
from synth.workers import Pool, PipelineError, ReplayActor, SourceActor, drive

MIN_EPISODES_FOR_FAILURE_CHECK = 20
"""Episodes a source must have finished before its failure share is judged."""

__all__ = ["PipelineError", "Plan", "Progress", "RunResult", "execute", "prepare", "run"]


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
    by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    stopped: dict[str, str] = field(default_factory=dict)
    """Sources that stopped early, with why (a spent budget)."""
    nodes: Counter = field(default_factory=Counter)
    """Episodes recorded per Ray node in this run."""
    replay_total: int = 0
    replayed: int = 0
    replay_passed: int = 0
    replay_failed: int = 0
    replay_steps: int = 0
    replay_started: float | None = None
    stage: str = "record"
    """What the run is doing: record, quality, export."""

    @property
    def steps_per_s(self) -> float:
        return self.steps / max(time.perf_counter() - self.started, 1e-9)

    @property
    def replay_steps_per_s(self) -> float:
        if self.replay_started is None:
            return 0.0
        return self.replay_steps / max(time.perf_counter() - self.replay_started, 1e-9)

    def replays_done(self, results: list[ReplayResult], steps: int) -> None:
        if self.replay_started is None:
            self.replay_started = time.perf_counter()
        self.replayed += len(results)
        self.replay_passed += sum(r.passed for r in results)
        self.replay_failed += sum(not r.passed for r in results)
        self.replay_steps += steps


@dataclass
class RunResult:
    out_dir: str
    run_id: str
    progress: Progress
    manifest: dict[str, Any]
    interrupted: bool = False


def plan(config: PipelineConfig, base: Path, limit: int | None = None) -> TaskSet:
    """Every task the pipeline asks for (the first `limit`), in a stable
    order, instantiated only when iterated."""
    selections = []
    for sel in config.tasks:
        # an absolute `templates` path replaces `base` (pathlib's `/`)
        for site, tpl in select_templates(base / sel.templates, sel.include):
            selections.append((site, tpl, seed_range(tpl, sel.seeds_per_template)))
    return TaskSet(selections, limit)


class RaySession:
    """Ray, started on first use: join a cluster (--address, $RAY_ADDRESS,
    ray.address) or start a local Ray; stopped at the end only if this
    process started it. A run with nothing to record or replay never starts it."""

    def __init__(self, config: PipelineConfig, address: str | None) -> None:
        self.config, self.address, self.started = config, address, False

    def ensure(self) -> None:
        if ray.is_initialized():
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or self.config.ray.address
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # A local Ray killed a moment ago (a crash, then the resume) can
            # make the next start time out while its old processes die off.
            for attempt in range(3):
                try:
                    # "local": a new Ray of our own, never one `ray start` left running here
                    ray.init(address="local", num_cpus=self.config.ray.num_cpus, include_dashboard=False,
                             log_to_driver=True)
                    break
                except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its node times out starting
                    ray.shutdown()
                    if attempt == 2:
                        raise PipelineError(
                            f"a local Ray did not start in 3 attempts ({str(e).strip().splitlines()[0]}); nothing "
                            f"was recorded. Its processes time out when the machine is overloaded (load average "
                            f"{os.getloadavg()[0]:.0f} on {os.cpu_count()} cores now): run again when it is "
                            f"quieter, or join a running cluster with --address"
                        ) from e
                    time.sleep(3)
        self.started = True

    def __enter__(self) -> "RaySession":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            ray.shutdown()


def _judge_precision(config: PipelineConfig, config_path: Path) -> dict[str, float | None] | None:
    """Each template's measured judge precision from `quality.judge_accuracy.report`."""
    report = config.quality.judge_accuracy.report
    if report is None:
        return None
    path = config_path.parent.resolve() / report
    try:
        templates = json.loads(path.read_text())["templates"]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(
            f"{config_path}: quality.judge_accuracy.report: cannot read {path} ({e}); make it with "
            f"`synth judges eval {config_path} --json {report}`"
        ) from e
    return {tid: figures.get("precision") for tid, figures in templates.items()}


def pipeline_site_options(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sel in config.tasks:
        for site, opts in sel.site_options.items():
            out.setdefault(site, {}).update(opts)
    return out


@dataclass
class Job:
    """One source's share of a plan: its config and the tasks it selects."""

    kind: str
    config: SourceConfig
    tasks: TaskSet | TaskList


@dataclass
class Plan:
    """A checked pipeline: its config, every task it asks for, and which
    sources run which of them (sources that cannot run are in `skipped`)."""

    config_path: Path
    config: PipelineConfig
    tasks: TaskSet
    jobs: list[Job]
    skipped: dict[str, str] = field(default_factory=dict)
    plugins: Plugins = field(default_factory=Plugins)
    """What every worker imports first (the pipeline's `plugins:`)."""
    judge_precision: dict[str, float | None] | None = None
    """Each template's measured judge precision (`quality.judge_accuracy`), read
    when the pipeline is prepared so a missing report stops it before recording."""

    @property
    def out_dir(self) -> str:
        """A local path or a filesystem URI (synth.storage)."""
        return self.config.output_dir


ACTOR_SOURCES = ("solver", "bootstrap")
"""Sources that run as Ray actor pools, in the order they are fed."""


def prepare(config_path: Path | str, limit: int | None = None) -> Plan:
    """Load and check the pipeline and its templates; raises ConfigError
    before anything runs or is written."""
    from synth.sources import get_source

    config_path = Path(config_path)
    config = load_pipeline(config_path)
    plugins = Plugins(tuple(config.plugins), (str(config_path.parent.resolve()), os.getcwd()))
    try:
        plugins.load()
    except PluginError as e:
        raise ConfigError(f"{config_path}: {e}") from None
    tasks = plan(config, config_path.parent.resolve(), limit)
    tasks.check()
    config.judges.export_env(storage.cache_dir(config.output_dir, config.cache_dir))  # before Ray starts its workers
    jobs, skipped = [], {}
    sections = {kind: getattr(config.sources, kind) for kind in ACTOR_SOURCES}
    sections.update(_plugin_sources(config, config_path))
    for kind, source_config in sections.items():
        if not source_config.enabled:
            continue
        try:
            cls = get_source(kind)
        except KeyError:
            skipped[kind] = "not installed"
            continue
        reason = cls.unavailable(source_config)
        if reason:
            skipped[kind] = reason
            continue
        own = cls.plan(source_config, tasks)
        if own is not None:  # a source with a plan of its own (exploration walks)
            jobs.append(Job(kind, source_config, own))
            continue
        selected = tasks.where(lambda t: cls.selects(t, source_config))
        seeds = getattr(source_config, "seeds_per_template", None)  # a source that takes a few seeds of each
        jobs.append(Job(kind, source_config, selected.first_seeds(seeds) if seeds else selected))
    return Plan(config_path, config, tasks, jobs, skipped, plugins, _judge_precision(config, config_path))


def _plugin_sources(config: PipelineConfig, config_path: Path) -> dict[str, SourceConfig]:
    """`sources.<kind>` sections of plugin sources, each checked against its
    source's config model; an unknown kind says where sources come from."""
    from pydantic import ValidationError

    from synth.sources import SOURCES

    out = {}
    for kind, raw in config.sources.plugin_sections().items():
        if kind not in SOURCES:
            raise ConfigError(f"{config_path}: sources.{kind}: {SOURCES.unknown(kind)}")
        try:
            out[kind] = SOURCES[kind].config_model.model_validate(raw or {})
        except ValidationError as e:
            raise ConfigError(format_validation_error(config_path, e, None).replace(
                f"{config_path}: ", f"{config_path}: sources.{kind}.")) from None
    return out


def execute(
    p: Plan, *, address: str | None = None, on_progress: Callable[[Progress], None] | None = None
) -> RunResult:
    """Run the tasks not yet in staging, pass everything staged through the
    quality gates, then rebuild shards, manifest and card."""
    config, out_dir = p.config, p.out_dir
    staging_dir = storage.child(out_dir, "staging")
    cache_dir = storage.cache_dir(out_dir, config.cache_dir)
    staging.remove_partial(staging_dir)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    staged = staging.table(staging_dir, ["task_id", "template_id", "seed", "source"])  # read once for every job
    todo = [(job, *_still_to_do(job, staged)) for job in p.jobs]
    total = sum(len(j.tasks) for j in p.jobs)
    remaining = sum(n for _, _, n in todo)
    progress = Progress(total=total, skipped=total - remaining, done=total - remaining)
    notify = on_progress or (lambda progress: None)
    notify(progress)
    extra: dict[str, Any] = {"pipeline": str(p.config_path)}
    with RaySession(config, address) as session:
        try:
            if remaining:
                session.ensure()
                ahead = ReplayAhead(config, out_dir, run_id, progress, notify) if config.quality.replay.ahead else None
                _record(config, [(job, tasks, n) for job, tasks, n in todo if n], staging_dir, run_id, progress, notify,
                        ahead)
                staging.remove_partial(staging_dir)  # left by a worker that died mid-write
            if config.sources.human.enabled:
                from annotation_ui.harvest import sync

                extra["human"] = sync(config.sources.human, p.tasks, out_dir, run_id, cache_dir)
            progress.stage = "quality"
            notify(progress)
            verdicts, gates = assess(
                out_dir,
                config.quality,
                p.tasks,
                replay=lambda jobs: _replay(config, session, jobs, run_id, progress, notify),
                reference=[p.config_path.parent.resolve() / r for r in config.quality.dedup.reference],
                cache_dir=cache_dir,
                judge_precision=p.judge_precision,
                proposing=[job.kind for job in p.jobs if _proposes(job.kind)],
            )
        except KeyboardInterrupt:
            return RunResult(out_dir, run_id, progress, {}, interrupted=True)
    progress.stage = "export"
    notify(progress)
    stats = export(out_dir, config.export.rows_per_shard, config.export.row_group_mb, verdicts, formats=config.export.formats,
                   native=config.export.native, images=config.export.images)
    if progress.nodes:
        extra["nodes_this_run"] = dict(progress.nodes)
    m = manifest(config.name, stats, config.model_dump(mode="json"), {**extra, "gates": gates})
    crash_point("manifest")
    fs, root = storage.resolve(out_dir)
    storage.write_atomic(fs, storage.join(root, "manifest.json"), json.dumps(m, indent=2))
    storage.write_atomic(fs, storage.join(root, "README.md"), card(m, config.export.license))
    return RunResult(out_dir, run_id, progress, m)


def run(
    config_path: Path | str,
    *,
    address: str | None = None,
    limit: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunResult:
    return execute(prepare(config_path, limit), address=address, on_progress=on_progress)


def _proposes(kind: str) -> bool:
    from synth.sources import get_source

    return get_source(kind).proposes


def _actor_resources(source: SourceConfig) -> dict[str, Any]:
    resources: dict[str, Any] = {"num_cpus": source.num_cpus}
    if source.memory_mb:
        resources["memory"] = source.memory_mb * 2**20
    return resources


def _still_to_do(job: Job, staged: pa.Table | None) -> tuple[Iterator[Task], int]:
    """The job's tasks without a trajectory from its source in `staged`, as
    they come (skipping the staged ones), and how many there are."""
    if staged is None:
        return iter(job.tasks), len(job.tasks)
    done = _done(staged, job.kind)
    planned_done = sum(job.tasks.contains(template_id, seed) for template_id, seed in done.values())
    return (t for t in job.tasks if t.task_id not in done), len(job.tasks) - planned_done


def _done(staged: pa.Table | None, kind: str) -> dict[str, tuple[str, int]]:
    """The planned tasks (id: (template id, seed)) with a staged trajectory of
    source `kind` (a proposing source's trajectories carry the tasks they
    proposed: `Source.planned` names the planned task they came from)."""
    from synth.sources import get_source

    if staged is None:
        return {}
    cls = get_source(kind)
    mine = staged.filter(pc.equal(staged["source"], kind))
    rows = zip(mine["task_id"].to_pylist(), mine["template_id"].to_pylist(), mine["seed"].to_pylist(), strict=True)
    planned = (cls.planned(*row) for row in rows)
    return {task_id: (template_id, seed) for task_id, template_id, seed in planned}


def _record(
    config: PipelineConfig,
    jobs: list[tuple[Job, Iterator[Task], int]],
    staging_dir: str,
    run_id: str,
    progress: Progress,
    notify: Callable[[Progress], None],
    ahead: "ReplayAhead | None" = None,
) -> None:
    """One pool of source actors per job, fed until every task is staged;
    with `ahead`, a pool of replay actors verifying what they record meanwhile."""
    pools = []
    for job, tasks, count in jobs:
        options = {"browser": config.browser, "site_options": pipeline_site_options(config), "run_id": run_id,
                   "config": job.config, "cache_dir": storage.cache_dir(config.output_dir, config.cache_dir)}

        def new_actor(i: int, job: Job = job, options: dict = options) -> ray.actor.ActorHandle:
            return SourceActor.options(**_actor_resources(job.config)).remote(
                job.kind, options, storage.absolute(staging_dir), f"{run_id}-{job.kind}{i}",
                job.config.contexts_per_actor, ahead is not None, Plugins.current(),
            )

        def on_results(pool: Pool, summaries: list[dict[str, Any]]) -> None:
            _count(progress, pool, summaries)
            if ahead is not None:
                ahead.offer(summaries)
            notify(progress)

        def still_todo(batch: list[Task], kind: str = job.kind) -> list[Task]:
            done = _done(staging.table(staging_dir, ["task_id", "template_id", "seed", "source"]), kind)
            return [t for t in batch if t.task_id not in done]

        pool = Pool(job.kind, new_actor, job.config.actors, tasks, config.ray.batch_size, on_results,
                    key=lambda t: t.task_id, still_todo=still_todo, total=count)
        pool.max_failure_share = job.config.max_failure_share
        pools.append(pool)
    if ahead is not None:
        pools.append(ahead.pool)
    try:
        drive(pools, payload=lambda pool, batch: [t.model_dump(mode="json") for t in batch])
    finally:
        if ahead is not None and ahead.pool.actors:
            ahead.pool.release()  # their CPUs go to the quality stage's own replays, if any


def _count(progress: Progress, pool: Pool, summaries: list[dict[str, Any]]) -> None:
    by = progress.by_source.setdefault(pool.name, {"done": 0, "accepted": 0, "cost_usd": 0.0})
    for summary in summaries:
        if "recovered" in summary:
            # staged by a worker that died before it could report: done
            progress.done += summary["recovered"]
            continue
        if "stopped" in summary:
            # The source said stop (its budget is spent): feed it no more.
            progress.stopped[pool.name] = summary["stopped"]
            progress.total -= summary["not_run"] + pool.stop(summary["stopped"])
            continue
        progress.done += summary.get("task_done", True)  # a walk's segments count as one task
        progress.steps += summary["steps"]
        progress.nodes[summary.get("node", "")] += 1
        by["done"] += 1
        by["cost_usd"] += summary.get("cost_usd", 0.0)
        if summary["status"] == "accepted":
            progress.accepted += 1
            by["accepted"] += 1
        else:
            progress.rejected += 1
        if summary.get("error"):
            errors = by.setdefault("errors", Counter())
            errors[_error_kind(summary["error"])] += 1
    _check_failures(by, pool)


def _error_kind(error: str) -> str:
    """An error without its details (ids, numbers), to count alike ones together."""
    return re.sub(r"\d+(\.\d+)?", "N", error.split("\n")[0])[:160]


def _check_failures(by: dict[str, Any], pool: Pool) -> None:
    """Stop a run whose episodes mostly fail (a broken site, a bad template)
    instead of burning through the task list; what is staged is kept."""
    errors = sum(by.get("errors", Counter()).values())
    share = pool.max_failure_share
    if by["done"] >= MIN_EPISODES_FOR_FAILURE_CHECK and errors > share * by["done"]:
        common = ", ".join(f"{n}x {kind!r}" for kind, n in by["errors"].most_common(3))
        raise PipelineError(
            f"{pool.name}: {errors} of {by['done']} episodes ended in an error "
            f"(more than sources.{pool.name}.max_failure_share = {share}); most common: {common}"
        )


REPLAY_TIMEOUT_S = 60.0


def replay_timeout_s(config: PipelineConfig) -> float:
    """One replay's time: `quality.replay.episode_timeout_s`, else the
    solver's (no stricter than the recordings it verifies) and at least
    `REPLAY_TIMEOUT_S` (a pipeline that gives its solver seconds, to find
    hangs fast, still gives a cold replay time to load)."""
    return config.quality.replay.episode_timeout_s or max(REPLAY_TIMEOUT_S, config.sources.solver.episode_timeout_s)


def _replay_options(config: PipelineConfig, run_id: str) -> dict[str, Any]:
    return {
        "browser": config.browser.model_copy(update={"screenshots": False, "snapshots": False}),
        "site_options": pipeline_site_options(config),
        "run_id": run_id,
        "config": SourceConfig(episode_timeout_s=replay_timeout_s(config)),
    }


def _replay_pool(
    config: PipelineConfig, run_id: str, items: Any, on_results: Callable[[Pool, list], None], actors: int | None = None,
    num_cpus: float | None = None,
) -> Pool:
    rc = config.quality.replay
    options = _replay_options(config, run_id)
    cpus = rc.num_cpus if num_cpus is None else num_cpus
    return Pool(
        "replay",
        lambda i: ReplayActor.options(num_cpus=cpus).remote(options, rc.contexts_per_actor, Plugins.current()),
        rc.actors if actors is None else actors, items, config.ray.batch_size, on_results, key=lambda job: job.trajectory_id,
        payload=lambda batch: batch,
    )


def _replay(
    config: PipelineConfig,
    session: RaySession,
    jobs: list[ReplayJob],
    run_id: str,
    progress: Progress,
    notify: Callable[[Progress], None],
) -> list[ReplayResult]:
    """Replay jobs on a pool of replay actors (cold pages, no screenshots):
    what the quality stage finds neither replayed ahead nor cached."""
    session.ensure()
    results: list[ReplayResult] = []
    progress.replay_total += len(jobs)
    steps = {j.trajectory_id: len(j.steps) for j in jobs}

    def on_results(pool: Pool, batch: list[ReplayResult]) -> None:
        results.extend(batch)
        progress.replays_done(batch, sum(steps.get(r.trajectory_id, 0) for r in batch))
        notify(progress)

    drive([_replay_pool(config, run_id, jobs, on_results)])
    return results


class _Feed:
    """An iterator over a queue that grows while it is consumed: empty for
    now is not exhausted for good (workers.Pool takes a fresh slice each time)."""

    def __init__(self) -> None:
        self.queue: deque[ReplayJob] = deque()

    def __iter__(self) -> "_Feed":
        return self

    def __next__(self) -> ReplayJob:
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()


class ReplayAhead:
    """Replay verification beside recording: each accepted trajectory a source
    actor returns is replayed on replay actors while the sources go on, and
    the result lands in the replay gate's cache (`quality/replay/`, atomic
    batch files), so the quality stage finds it there instead of replaying
    everything after recording ends.

    Only what the gate would replay is sent ahead: sampled trajectories, and
    of exact duplicates (same dedup key) only the one the gate would keep
    (fewest steps, then smallest id). Near-duplicate grouping still happens at
    the end, over keys; a representative not replayed ahead (or a promoted
    one) is replayed then. Killing the run loses at most the batches in
    flight: resume and totals are as without it."""

    def __init__(
        self, config: PipelineConfig, out_dir: str, run_id: str, progress: Progress, notify: Callable[[Progress], None]
    ) -> None:
        self.config, self.progress, self.notify = config, progress, notify
        self.cache = ReplayCache(storage.child(out_dir, "quality", "replay"))
        self.settings = replay_settings(config.quality)
        self.best: dict[str, tuple[int, str]] = {}
        """Per exact dedup key, the (steps, id) of the trajectory replayed for it."""
        self.steps: dict[str, int] = {}
        self.feed = _Feed()
        # Its actors reserve no CPU: they use what recording leaves, and can
        # never hold back a source actor (a replacement for a dead one
        # included) that they would then wait for. They start with the first
        # trajectory to replay. `quality.replay.num_cpus` is for the stage's
        # own replays after recording.
        self.pool = _replay_pool(config, run_id, self.feed, self._done, actors=0, num_cpus=0)
        self.pool.streaming = True  # fed by the source pools' results

    def offer(self, summaries: list[dict[str, Any]]) -> None:
        q = self.config.quality
        for summary in summaries:
            r = summary.get("replay")
            if r is None or not sampled(r["trajectory_id"], q.replay.sample_rate):
                continue
            if self.cache.get(r["trajectory_id"], self.settings) is not None:
                continue
            key = hashlib.blake2b(r["key"].encode(), digest_size=12).hexdigest()
            rank = (r["num_steps"], r["trajectory_id"])
            if key in self.best and self.best[key] <= rank:
                continue  # an exact duplicate of one replayed already
            self.best[key] = rank
            self.steps[r["trajectory_id"]] = r["num_steps"]
            if not self.pool.actors:
                self.pool.actors = [self.pool.new_actor(i) for i in range(self.config.quality.replay.actors)]
            self.feed.queue.append(ReplayJob(
                r["trajectory_id"], Task.model_validate(r["task"]), unpack_steps(r["steps"]), r["noop"],
                q.minimality.mode != "off", q.minimality.exhaustive, r.get("keep", []),
            ))
            self.progress.replay_total += 1

    def _done(self, pool: Pool, results: list[ReplayResult]) -> None:
        self.cache.add(results, self.settings)
        self.progress.replays_done(results, sum(self.steps.pop(r.trajectory_id, 0) for r in results))
        self.notify(self.progress)

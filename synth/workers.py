"""Ray actors and the loop that feeds them; with `pipeline.RaySession`, the
only code that knows Ray.

Work goes to a pool of actors in small batches, at most two in flight per
actor, so every browser stays busy while few items sit in memory. An actor
that dies (killed, out of memory) loses only its in-flight batches: they go
back on the queue for a fresh actor, up to `MAX_BATCH_RETRIES` times each.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import threading
from contextlib import contextmanager
from collections import Counter, deque
from typing import Any, Callable, Iterable, Iterator, Sized

import ray

from synth import staging
from synth.plugins import Plugins
from synth.episode import INFRASTRUCTURE_ERRORS, abandon_after, failed_trajectory, lost_to_infrastructure, timed_out
from synth.schema import Task, Trajectory

MAX_BATCH_RETRIES = 3
HANG_GRACE_S = 30.0
"""Beyond a source's own episode timeout, how long an episode may take before
the actor abandons it as hung (its browser is then replaced)."""


class PipelineError(RuntimeError):
    """The run cannot go on; the message says why. What is staged is kept."""


class _Worker:
    """Shared by the actors: lazy async setup, at most `contexts` items at once."""

    def __init__(self, contexts: int) -> None:
        self.gate = asyncio.Semaphore(contexts)
        self.ready = asyncio.Lock()
        self.started = False

    async def _start(self, source: Any) -> None:
        async with self.ready:
            if not self.started:
                await source.setup()
                self.started = True


@ray.remote
class SourceActor(_Worker):
    """One Source (one browser). Its episodes interleave on one event loop;
    it writes each finished batch to staging itself and returns summaries."""

    def __init__(
        self, kind: str, options: dict[str, Any], staging_dir: str, name: str, contexts: int,
        replay_ahead: bool = False, plugins: Plugins | None = None,
    ) -> None:
        from synth.sources import get_source

        (plugins or Plugins()).load()  # the driver's `plugins:`, before any name is looked up
        super().__init__(contexts)
        self.source = get_source(kind)(**options)
        self.staging_dir, self.name = staging_dir, name
        self.replay_ahead = replay_ahead
        """Return with each accepted trajectory what its replay needs, so the
        driver can verify it while recording goes on (pipeline.ReplayAhead)."""

    async def run_batch(self, tasks: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
        from synth.sources import SourceExhausted

        await self._start(self.source)

        async def one(task: Task) -> list[Trajectory] | SourceExhausted:
            async with self.gate:
                try:
                    if self.source.proposes:  # one task of its own plan, many trajectories
                        return await self.source.run_all(task)
                    return [await self._attempts(task)]
                except SourceExhausted as e:
                    return e

        results = await asyncio.gather(*(one(Task.model_validate(t)) for t in tasks))
        made = [r for r in results if not isinstance(r, SourceExhausted)]
        trajectories = [t for ts in made for t in ts]
        last = {ts[-1].trajectory_id for ts in made if ts}
        if trajectories:
            # Encoding and fsync take a while; off the loop, the other episodes
            # on this browser keep going meanwhile.
            await asyncio.to_thread(staging.write_batch, self.staging_dir, trajectories, f"{self.name}-{seq:06d}")
        node = ray.get_runtime_context().get_node_id()
        by_id = {t["task_id"]: t for t in tasks}
        summaries: list[dict[str, Any]] = [
            {"task_id": t.task_id, "status": t.status, "steps": len(t.steps), "cost_usd": t.cost_usd,
             "error": t.error, "node": node, "task_done": t.trajectory_id in last,
             **({"replay": replay_payload(t, by_id.get(t.task_id) or json.loads(t.task_config),
                                         proposed=t.task_id not in by_id)}
                if self.replay_ahead and t.status == "accepted" else {})}
            for t in trajectories
        ]
        stopped = [str(r) for r in results if isinstance(r, SourceExhausted)]
        if stopped:
            summaries.append({"stopped": stopped[0], "not_run": len(stopped)})
        return summaries

    async def _attempts(self, task: Task) -> Trajectory:
        """Run a task; an episode lost to the browser (crash, hang) is retried
        on a fresh browser (one that ran out of time on a browser that still
        answers, on the same one) up to `episode_retries` times, then kept as failed
        with the reason. A hung episode is abandoned after its timeout (one
        per episode the source's run plays) plus a grace period, so one
        stuck page cannot stall the actor."""
        config = self.source.config
        limit = config.episode_timeout_s * self.source.episodes_per_run + min(HANG_GRACE_S, config.episode_timeout_s)
        for attempt in range(config.episode_retries + 1):
            generation = self.source.generation
            t = await abandon_after(self.source.run(task), limit)
            if t is None:
                t = failed_trajectory(task, self.source.kind, self.source.detail(task),
                                      f"episode hung for {limit:.0f}s", self.source.run_id)
            if not lost_to_infrastructure(t):
                return t
            same_browser = await _ran_out_of_time(self.source, t.error)
            if attempt < config.episode_retries:
                # one line per retry, on the driver's stderr (Ray forwards it):
                # the only trace of a retry that then succeeds
                print(f"synth: {task.task_id} ({task.template_id}) lost to the browser on attempt {attempt + 1} "
                      f"of {config.episode_retries + 1}, retrying on "
                      f"{'the same browser (it still answers)' if same_browser else 'a fresh browser'}: {t.error}",
                      file=sys.stderr, flush=True)
            if not same_browser:
                await self.source.recover(generation)
        t.error = f"{t.error} (after {config.episode_retries + 1} attempts)"
        t.reject_reason = f"error: {t.error}"
        return t

    async def shutdown(self) -> None:
        await self.source.teardown()


def replay_payload(t: Trajectory, task: dict[str, Any], proposed: bool = False) -> dict[str, Any]:
    """What replaying `t` ahead of the quality stage needs, compact: the
    packed steps (~1.7 KB), the steps that may be unnecessary, the dedup key.
    A `proposed` task's (exploration's) key is its instruction: the stage
    keeps one of the proposals that share an instruction, whatever their
    steps, so replaying the others ahead would be wasted (on Trac, 123 of
    296 replays ahead were)."""
    from synth.quality.dedup import action_key, normalize_instruction
    from synth.quality.replay import noop_steps, pack_steps, steps_of

    key = "instruction:" + normalize_instruction(t.instruction) if proposed else \
        action_key(t.instruction, [s.action for s in t.steps])
    return {"trajectory_id": t.trajectory_id, "task": task, "steps": pack_steps(steps_of(t)),
            "noop": noop_steps(t), "key": key,
            "num_steps": len(t.steps), "keep": [i for i, s in enumerate(t.steps) if s.role != "normal"]}


@ray.remote
class ReplayActor(_Worker):
    """One Replayer (one browser) verifying recorded trajectories."""

    def __init__(self, options: dict[str, Any], contexts: int, plugins: Plugins | None = None) -> None:
        from synth.quality.replay import Replayer

        (plugins or Plugins()).load()
        super().__init__(contexts)
        self.replayer = Replayer(**options)

    async def run_batch(self, jobs: list[Any], seq: int) -> list[Any]:
        await self._start(self.replayer)

        async def one(job):
            async with self.gate:
                for _ in range(self.replayer.config.episode_retries + 1):
                    generation = self.replayer.generation
                    result = await self.replayer.verify(job)
                    if result.passed or not INFRASTRUCTURE_ERRORS.search(result.reason):
                        break
                    if await _ran_out_of_time(self.replayer, result.reason):
                        continue  # no verdict either, but its browser still answers: its neighbours go on
                    await self.replayer.recover(generation)  # a crashed browser is no verdict
                return result

        return list(await asyncio.gather(*(one(j) for j in jobs)))

    async def shutdown(self) -> None:
        await self.replayer.teardown()


async def _ran_out_of_time(source: Any, error: str | None) -> bool:
    """The episode used up its time on a browser that still answers (a slow
    machine, a slow site): only it is lost. Throwing the browser away would
    end every other episode on it too (at load 100, five shop episodes a run
    were lost that way and retried). A crash or a hang still costs the browser."""
    responsive = getattr(source, "responsive", None)
    return timed_out(error) and responsive is not None and await responsive()


class Pool:
    """A set of actors of one kind and the batches they work through, taken
    from `items` only as actors are ready for them (so an iterator of 100k
    tasks is never held at once). `on_results(pool, results)` sees each
    finished batch's return value."""

    def __init__(
        self,
        name: str,
        new_actor: Callable[[int], ray.actor.ActorHandle],
        actors: int,
        items: Iterable[Any],
        batch_size: int,
        on_results: Callable[["Pool", list[Any]], None],
        key: Callable[[Any], str] = str,
        still_todo: Callable[[list[Any]], list[Any]] = lambda batch: batch,
        total: int | None = None,
        payload: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.name, self.new_actor, self.on_results, self.key = name, new_actor, on_results, key
        self.payload = payload
        """What an actor receives for a batch (default: drive's `payload`)."""
        self.still_todo = still_todo
        """What of a batch whose worker died is still to do (a worker can die
        right after it staged the batch, before the driver heard back)."""
        self._items, self.batch_size = iter(items), batch_size
        self.total = len(items) if total is None and isinstance(items, Sized) else total
        self.taken = 0
        self.requeued: deque[list[Any]] = deque()
        """Batches whose worker died, run again before any new one."""
        self.actors = [new_actor(i) for i in range(actors)]
        self.stopped: str | None = None
        self.max_failure_share = 1.0
        self.streaming = False
        """Items may still arrive after the pool ran dry (a queue others
        fill): its actors are kept until the feeding loop ends."""
        self.exhausted = False

    def next_batch(self) -> list[Any]:
        """The next batch to submit; empty when there is none (or the pool stopped)."""
        if self.stopped:
            return []
        if self.requeued:
            return self.requeued.popleft()
        batch = list(itertools.islice(self._items, self.batch_size))
        self.taken += len(batch)
        if not batch and not self.streaming:
            self.exhausted = True
        return batch

    def release(self) -> None:
        """Stop the actors of a pool that has nothing left to do, so the
        resources they reserve (`num_cpus`) go to the pools still working:
        replay actors waiting for a CPU the finished source actors hold would
        otherwise wait for ever."""
        actors, self.actors = self.actors, []
        try:
            ray.get([a.shutdown.remote() for a in actors], timeout=20)
        except Exception:  # noqa: BLE001 - they are killed next either way
            pass
        for a in actors:
            ray.kill(a)

    def stop(self, why: str) -> int:
        """Feed this pool no more; returns how many items are dropped (those
        not yet taken are counted only if the pool knows its total)."""
        self.stopped = why
        self.exhausted = True
        dropped = sum(len(b) for b in self.requeued) + (self.total - self.taken if self.total is not None else 0)
        self.requeued.clear()
        self._items = iter(())
        return dropped


_ctrl_c = threading.Event()


@contextmanager
def _noticing_ctrl_c() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered. One
    that lands while Ray's core is calling back into Python can be lost (the
    Cython layer reports "Exception ignored" and goes on, as in ray#7734), so
    the feeding loop checks the flag itself between waits."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _ctrl_c.clear()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        _ctrl_c.set()
        if previous is not signal.SIG_IGN:
            (previous if callable(previous) else signal.default_int_handler)(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def drive(pools: list[Pool], payload: Callable[[Pool, list[Any]], Any] = lambda pool, batch: batch) -> None:
    """Feed every pool's batches to its actors until all are done."""
    with _noticing_ctrl_c():
        _drive(pools, payload)


def _drive(pools: list[Pool], payload: Callable[[Pool, list[Any]], Any]) -> None:
    in_flight: dict[ray.ObjectRef, tuple[Pool, int, ray.actor.ActorHandle, list[Any]]] = {}
    failures: dict[str, int] = {}
    seq = 0

    def submit(pool: Pool, i: int) -> None:
        nonlocal seq
        batch = pool.next_batch()
        if batch:
            data = pool.payload(batch) if pool.payload is not None else payload(pool, batch)
            ref = pool.actors[i].run_batch.remote(data, seq)
            in_flight[ref] = (pool, i, pool.actors[i], batch)
            seq += 1

    def refill() -> None:
        """At most two batches in flight per actor; a pool whose items arrive
        while the others run (replays of what was just recorded) gets its idle
        actors fed as soon as there is something for them."""
        busy = Counter((id(p), i) for p, i, _, _ in in_flight.values())
        for pool in pools:
            for i in range(len(pool.actors)):
                for _ in range(2 - busy[(id(pool), i)]):
                    submit(pool, i)

    def release_finished() -> None:
        working = {id(p) for p, *_ in in_flight.values()}
        for pool in pools:
            if pool.actors and pool.exhausted and not pool.requeued and id(pool) not in working:
                pool.release()

    refill()
    interrupted = False
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            if _ctrl_c.is_set():
                raise KeyboardInterrupt
            if not ready:
                continue
            pool, i, handle, batch = in_flight.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                # The worker died: nothing of this batch was kept, so it goes
                # back on the queue for a new actor.
                key = f"{pool.name}:{pool.key(batch[0])}"
                failures[key] = failures.get(key, 0) + 1
                if failures[key] > MAX_BATCH_RETRIES:
                    raise PipelineError(
                        f"{pool.name}: a batch starting with {pool.key(batch[0])} lost its worker "
                        f"{failures[key]} times; last: {e}"
                    ) from None
                if pool.actors[i] is handle:
                    pool.actors[i] = pool.new_actor(i)
                left = pool.still_todo(batch)
                if left:
                    pool.requeued.appendleft(left)
                if len(left) < len(batch):
                    pool.on_results(pool, [{"recovered": len(batch) - len(left)}])
                refill()
                continue
            except ray.exceptions.RayTaskError as e:
                raise PipelineError(f"{pool.name} worker failed: {e.cause!r}") from None
            pool.on_results(pool, results)
            refill()
            release_finished()
        if _ctrl_c.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C: no polite shutdown, ray.shutdown() kills the actors
        raise
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=False)
        if not interrupted:
            try:
                ray.get([a.shutdown.remote() for pool in pools for a in pool.actors], timeout=20)
            except Exception:  # noqa: BLE001 - shutting down; the actors die with Ray anyway
                pass

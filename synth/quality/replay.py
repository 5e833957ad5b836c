"""Replay verification and minimality: run a recorded action sequence again.

A trajectory is only trusted if its actions, re-executed by their recorded
coordinates in a fresh environment on the same task and seed, make the judge
pass again: this catches a judge fooled by timing, a page that was already in
a lucky state, or a solver that acted through something other than the
recorded actions. Each step waits what the recorder waited (`waited_ms`)
before acting, as the original did.

Minimality asks the same question with steps left out: if the judge still
passes without a step, the step was unnecessary, noise that breaks the link
between actions and goal (Aguvis). Trying every step costs one replay per
step, so by default only the steps that changed nothing visible (the page
state before the next step equals the state before this one) are tried, all
at once, then one by one if that fails.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Sequence

from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.quality.consistency import state_key
from synth.schema import Action, Observation, Task, Trajectory
from synth.sources import BrowserSource


@dataclass(frozen=True)
class ReplayStep:
    action: Action
    waited_ms: float = 0.0


def pack_steps(steps: Sequence[ReplayStep]) -> bytes:
    """Steps as compact JSON: the quality stage holds them for every passing
    trajectory until its replay, and as objects they cost ~1.7 KB a step."""
    return json.dumps([[s.action.model_dump(mode="json", exclude_none=True), s.waited_ms] for s in steps]).encode()


def unpack_steps(packed: bytes) -> list[ReplayStep]:
    return [ReplayStep(Action.model_validate(a), w) for a, w in json.loads(packed)]


@dataclass
class ReplayJob:
    """One trajectory to verify: the task, its steps, and which steps may be
    unnecessary (tried only when minimality is on)."""

    trajectory_id: str
    task: Task
    steps: list[ReplayStep]
    noop_steps: list[int] = field(default_factory=list)
    minimality: bool = False
    exhaustive: bool = False


@dataclass
class ReplayResult:
    trajectory_id: str
    passed: bool
    reason: str = ""
    unnecessary: list[int] = field(default_factory=list)
    """Steps whose removal (together) still passes, verified by a replay."""


def steps_of(t: Trajectory) -> list[ReplayStep]:
    """The replayable form of a trajectory: coordinates, not element ids (the
    ids were the recorder's means to aim; the point is what it did)."""
    return [ReplayStep(s.action.model_copy(update={"element_id": None}), s.waited_ms) for s in t.steps]


def noop_steps(t: Trajectory) -> list[int]:
    """Steps after which the page state did not change (candidates for
    removal). The last step's effect is unknown, so it is never one, nor are
    answer/done, which change nothing on the page by design."""
    out = []
    for i, (a, b) in enumerate(zip(t.steps, t.steps[1:])):
        if a.action.name in ("answer", "done", "scroll") or a.error:
            continue
        if state_key(a.observation) == state_key(b.observation):
            out.append(i)
    return out


def sampled(trajectory_id: str, rate: float) -> bool:
    """A stable sample: the same trajectories at the same rate on every run."""
    if rate >= 1.0:
        return True
    h = int.from_bytes(hashlib.blake2b(trajectory_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < rate


class Replayer(BrowserSource):
    """Replays jobs on one browser; a BrowserSource for its lifecycle (browser,
    sites, page pool), not a trajectory source."""

    kind = "replay"

    async def run(self, task: Task) -> Trajectory:  # pragma: no cover - not a source
        raise NotImplementedError("a Replayer verifies recorded trajectories; use verify()")

    async def replay(self, task: Task, steps: Sequence[ReplayStep]) -> tuple[bool, str]:
        async def policy(env: BrowserEnv, obs: Observation) -> None:
            for step in steps:
                if step.waited_ms:
                    await env.wait(step.waited_ms)
                await env.step(step.action)
                if env.steps[-1].error:
                    raise RuntimeError(f"step {len(env.steps) - 1} failed on replay: {env.steps[-1].error}")

        t = await run_episode(
            await self.env(task), task, policy, source="solver", source_detail="replay",
            run_id=self.run_id, timeout_s=self.episode_timeout_s,
        )
        return t.status == "accepted", t.reject_reason or ""

    async def verify(self, job: ReplayJob) -> ReplayResult:
        passed, reason = await self.replay(job.task, job.steps)
        result = ReplayResult(job.trajectory_id, passed, reason)
        if passed and job.minimality:
            result.unnecessary = await self._unnecessary(job)
        return result

    async def _unnecessary(self, job: ReplayJob) -> list[int]:
        candidates = list(range(len(job.steps) - 1)) if job.exhaustive else job.noop_steps
        if not candidates:
            return []

        async def passes_without(drop: set[int]) -> bool:
            kept = [s for i, s in enumerate(job.steps) if i not in drop]
            return (await self.replay(job.task, kept))[0]

        if await passes_without(set(candidates)):
            return candidates
        removable: list[int] = []
        if len(candidates) > 1:
            for i in candidates:
                if await passes_without(set(removable) | {i}):
                    removable.append(i)
        return removable

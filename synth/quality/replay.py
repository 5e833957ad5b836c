"""Replay verification and minimality: run a recorded action sequence again.

A trajectory is only trusted if its actions, re-executed by their recorded
coordinates in a fresh environment on the same task and seed, make the judge
pass again: this catches a judge fooled by timing, a page that was already in
a lucky state, or a solver that acted through something other than the
recorded actions.

A replay runs no kinder than a new user's browser: a fresh context per
replay, or a pooled page whose caches and storage were emptied first (cold
cache, empty storage), on sites whose episodes allow reusing pages. It does not depend on the machine's load either: before each action it
waits what the recorder chose to wait (`waited_ms`), then for the page to
settle (BrowserEnv.settle) and for the recorded target (role and name) to be
at the recorded point. If the target never comes there, the action aims at it
by its recorded selector, and the verdict says so (`relocated`).

Minimality asks the same question with steps left out: if the judge still
passes without a step, the step was unnecessary, noise that breaks the link
between actions and goal (Aguvis). Trying every step costs one replay per
step, so by default only the steps that changed nothing visible (the page
state before the next step equals the state before this one) are tried, all
at once, then one by one if that fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Sequence

from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.quality.consistency import state_key
from synth.schema import POINTER_ACTIONS, Action, Box, Element, Observation, Task, Trajectory
from synth.sources import BrowserSource


@dataclass(frozen=True)
class ReplayStep:
    action: Action
    waited_ms: float = 0.0
    target: Element | None = None
    """The element the recording acted on (role, name, selector matter)."""


def _target_fields(el: Element | None) -> dict | None:
    if el is None:
        return None
    return {"role": el.role, "name": el.name, "selector": el.selector, "w": el.box.width, "h": el.box.height}


def pack_steps(steps: Sequence[ReplayStep]) -> bytes:
    """Steps as compact JSON: the quality stage holds them for every passing
    trajectory until its replay, and as objects they cost ~1.7 KB a step."""
    return json.dumps(
        [[s.action.model_dump(mode="json", exclude_none=True), s.waited_ms, _target_fields(s.target)] for s in steps]
    ).encode()


def _target(fields: dict | None) -> Element | None:
    if not fields:
        return None
    return Element(id=0, tag="", role=fields["role"], name=fields["name"], selector=fields["selector"],
                   box=Box(x=0, y=0, width=fields["w"], height=fields["h"]))


def unpack_steps(packed: bytes) -> list[ReplayStep]:
    return [ReplayStep(Action.model_validate(a), w, _target(t)) for a, w, t in json.loads(packed)]


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
    keep: list[int] = field(default_factory=list)
    """Steps minimality never tries: a mistake and its recovery (labelled),
    which a replay without them may well pass."""


@dataclass
class ReplayResult:
    trajectory_id: str
    passed: bool
    reason: str = ""
    unnecessary: list[int] = field(default_factory=list)
    """Steps whose removal (together) still passes, verified by a replay."""
    relocated: list[int] = field(default_factory=list)
    """Steps whose recorded target was not at the recorded point on replay
    and was aimed at by its selector instead (the layout moved)."""
    replay_s: float = 0.0
    """Seconds the replay took (browser time, waits included)."""
    minimality_s: float = 0.0
    """Seconds the minimality tries took after it (0 if none were made)."""


def steps_of(t: Trajectory) -> list[ReplayStep]:
    """The replayable form of a trajectory: coordinates, not element ids (the
    ids were the recorder's means to aim; the point is what it did)."""
    return [
        ReplayStep(s.action.model_copy(update={"element_id": None}), s.waited_ms,
                   s.element if s.action.name in POINTER_ACTIONS else None)
        for s in t.steps
    ]


def noop_steps(t: Trajectory) -> list[int]:
    """Steps after which the page state did not change (candidates for
    removal). The last step's effect is unknown, so it is never one, nor are
    answer/done, which change nothing on the page by design, nor a recovery
    variant's mistake and recovery (a mistake undone leaves the state as it
    was: that is the point of the data, not noise)."""
    out = []
    for i, (a, b) in enumerate(zip(t.steps, t.steps[1:])):
        if a.action.name in ("answer", "done", "scroll") or a.error or a.role != "normal":
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
    replays = True

    async def run(self, task: Task) -> Trajectory:  # pragma: no cover - not a source
        raise NotImplementedError("a Replayer verifies recorded trajectories; use verify()")

    async def env(self, task: Task) -> BrowserEnv:
        """No kinder than a new user's browser: a fresh context per replay, or
        on sites that allow reusing pages a pooled page made as cold (empty
        caches and storage, BrowserEnv._make_cold), which costs less."""
        return BrowserEnv(await self.browser(), await self.site(task.site), self.browser_config, self._pages, cold=True)

    async def replay(self, task: Task, steps: Sequence[ReplayStep]) -> tuple[bool, str, list[int]]:
        """Whether the judge passes again, why not, and which steps had to
        find their target by its selector."""
        relocated: list[int] = []

        async def policy(env: BrowserEnv, obs: Observation) -> None:
            for i, step in enumerate(steps):
                if step.waited_ms:
                    await asyncio.sleep(step.waited_ms / 1000)
                await env.step(step.action, expected=step.target)
                if env.target == "relocated":
                    relocated.append(i)
                if env.steps[-1].error:
                    raise RuntimeError(f"step {len(env.steps) - 1} failed on replay: {env.steps[-1].error}")
            if not env.finished:
                await env.settle()  # judged on a settled page, as the recording's last observation was

        t = await run_episode(
            await self.env(task), task, policy, source="solver", source_detail="replay",
            run_id=self.run_id, timeout_s=self.episode_timeout_s,
        )
        return t.status == "accepted", t.reject_reason or "", relocated

    async def verify(self, job: ReplayJob) -> ReplayResult:
        began = time.monotonic()
        passed, reason, relocated = await self.replay(job.task, job.steps)
        result = ReplayResult(job.trajectory_id, passed, reason, relocated=relocated,
                              replay_s=round(time.monotonic() - began, 3))
        if passed and job.minimality:
            began = time.monotonic()
            result.unnecessary = await self._unnecessary(job)
            result.minimality_s = round(time.monotonic() - began, 3)
        return result

    async def _unnecessary(self, job: ReplayJob) -> list[int]:
        candidates = list(range(len(job.steps) - 1)) if job.exhaustive else job.noop_steps
        keep = set(job.keep)
        candidates = [i for i in candidates if i not in keep]
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

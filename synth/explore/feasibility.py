"""Feasibility and acceptance of proposed tasks.

A proposal (already checked by `explore_segment`: its judge passes on the
segment's own end state and fails at its start) becomes data only when

- a fresh, cold episode replaying the segment's actions passes the judge
  again (the replay gate's Replayer: a new user's browser, the site's
  pristine state), and steps the minimality gate finds unnecessary are
  trimmed, the trimmed replay being what is kept;
- its instruction is no exact or near duplicate of an existing task's
  (templates' instructions and earlier proposals; synth.quality.dedup).

Before either, `drop_stray_typing` re-records a segment without the text it
typed that neither its instruction names nor a page it saw shows (the walk
draws words from the whole walk, and a field the site does not keep leaves
no trace): the consistency gate would reject it as ungrounded, and the
minimality gate never tries leaving out a step that changed the page.

Rejected proposals keep their reason.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.explore.propose import SOURCE, Proposal
from synth.quality.consistency import ungrounded_typing
from synth.quality.dedup import near_duplicate_groups, normalize_instruction
from synth.quality.replay import ReplayJob, Replayer, ReplayStep, noop_steps, steps_of
from synth.schema import Observation, Task, Trajectory


async def replay_recorded(replayer: Replayer, task: Task, steps: Sequence[ReplayStep], detail: str) -> Trajectory:
    """Replay steps in a cold episode and keep the recording (Replayer.replay
    keeps only the verdict): the fresh trajectory a proposal's data is."""

    async def policy(env: BrowserEnv, obs: Observation) -> None:
        for step in steps:
            if step.waited_ms:
                await asyncio.sleep(step.waited_ms / 1000)
            await env.step(step.action, expected=step.target)
            if env.steps[-1].error:
                raise RuntimeError(f"step {len(env.steps) - 1} failed on replay: {env.steps[-1].error}")
        if not env.finished:
            await env.settle()

    t = await run_episode(await replayer.env(task), task, policy, source=SOURCE, source_detail=detail,
                          run_id=replayer.run_id, timeout_s=replayer.episode_timeout_s)
    return t


async def verify(replayer: Replayer, proposal: Proposal, exhaustive: bool = False) -> Proposal:
    """Replay the proposal cold; trim unnecessary steps (minimality); keep the
    trimmed replay as its trajectory, or reject it with the reason."""
    if proposal.status != "proposed" or proposal.task is None:
        return proposal
    task, segment = proposal.task, proposal.segment
    steps = steps_of(segment)
    fresh = await replay_recorded(replayer, task, steps, segment.source_detail)
    if fresh.status != "accepted":
        return proposal.reject(f"replay: {fresh.reject_reason}")
    job = ReplayJob(segment.trajectory_id, task, steps, noop_steps(segment), minimality=True, exhaustive=exhaustive)
    unnecessary = await replayer._unnecessary(job)  # the minimality gate's own ablation search
    if unnecessary:
        kept = [s for i, s in enumerate(steps) if i not in set(unnecessary)]
        fresh = await replay_recorded(replayer, task, kept, segment.source_detail)
        if fresh.status != "accepted":
            return proposal.reject(f"replay of the trimmed steps: {fresh.reject_reason}")
    proposal.trimmed = unnecessary
    proposal.trajectory = fresh.model_copy(update={"replay_passed": True})
    proposal.status, proposal.reason = "accepted", None
    return proposal


TEXT_FIELDS = {"textbox", "searchbox", "combobox"}


def without_typing(steps: Sequence[ReplayStep], typed: Sequence[int]) -> tuple[list[ReplayStep], list[int]]:
    """`steps` without the type steps `typed` and what the walk did to type
    them (`Walker._fill`: a click on the field, a select-all); the kept steps
    and the indices left out."""
    drop: set[int] = set()
    for i in typed:
        drop.add(i)
        j = i - 1
        if j >= 0 and steps[j].action.name == "press" and steps[j].action.key == "ControlOrMeta+a":
            drop.add(j)
            j -= 1
        target = steps[j].target if j >= 0 else None
        if target is not None and steps[j].action.name == "click" and target.role in TEXT_FIELDS:
            drop.add(j)
    return [s for k, s in enumerate(steps) if k not in drop], sorted(drop)


async def drop_stray_typing(replayer: Replayer, proposal: Proposal) -> Proposal:
    """A proposal whose segment typed text that is grounded nowhere (see the
    module doc) gets the segment re-recorded without that typing, in a cold
    episode, if the derived judge passes on it and nothing ungrounded is
    left; otherwise it stays as it was (and the consistency gate rejects it)."""
    if proposal.status != "proposed" or proposal.task is None:
        return proposal
    stray = ungrounded_typing(proposal.segment)
    if not stray:
        return proposal
    kept, _ = without_typing(steps_of(proposal.segment), stray)
    fresh = await replay_recorded(replayer, proposal.task, kept, proposal.segment.source_detail)
    if fresh.status == "accepted" and not ungrounded_typing(fresh):
        old = proposal.segment  # what writing its instruction spent stays on the record
        proposal.segment = fresh.model_copy(update={"tokens_in": old.tokens_in, "tokens_out": old.tokens_out,
                                                    "cost_usd": old.cost_usd})
    return proposal


def dedup(proposals: Sequence[Proposal], existing: Sequence[str] = (), threshold: float = 0.8) -> None:
    """Reject proposals whose instruction duplicates (exactly, or as a near
    duplicate of word 3-grams at `threshold`) an existing task's or an
    earlier proposal's; the first of a group is kept."""
    live = [p for p in proposals if p.status in ("proposed", "accepted") and p.task is not None]
    texts = [normalize_instruction(t) for t in existing] + [normalize_instruction(p.task.instruction or "") for p in live]  # type: ignore[union-attr]
    groups = near_duplicate_groups(texts, threshold) if texts else []
    first: dict[int, int] = {}
    for i, g in enumerate(groups):
        first.setdefault(g, i)
    for j, p in enumerate(live):
        i = len(existing) + j
        head = first[groups[i]]
        if head != i:
            whose = f"existing task {existing[head]!r}" if head < len(existing) else \
                f"proposal {live[head - len(existing)].task.task_id}"  # type: ignore[union-attr]
            p.reject(f"duplicate: the instruction {p.task.instruction!r} duplicates {whose}")  # type: ignore[union-attr]

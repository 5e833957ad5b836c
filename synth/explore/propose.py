"""From an exploration segment to a proposed task with a program judge.

`explore_segment` runs one segment (a fresh episode), reads the site's state
before and after, and turns the evidence into a Task: the judge from the
evidence (`evidence`), the instruction from the writer. The segment's own
episode is recorded with that task, judged on its own end state, as any
source's trajectory is.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NamedTuple, Protocol
from urllib.parse import urlsplit

from synth.env import BrowserEnv
from synth.episode import finish
from synth.explore import evidence as ev
from synth.explore.walk import Walker, local, route_of
from synth.judges import JudgeContext, run_judge
from synth.schema import JudgeSpec, Observation, Task, Trajectory, Verdict, stable_id

SOURCE = "explore"
ERROR_PAGE = re.compile(r"\b(invalid|error|not found|forbidden|sorry|oops|failed)\b", re.IGNORECASE)
"""A view whose title says it went wrong is not a task to propose."""


@dataclass
class Evidence:
    """What a segment did, as the writer sees it (and an LLM writer's prompt)."""

    kind: str  # state | view | none
    judge: JudgeSpec | None
    instruction: str
    """The template-free writer's instruction (the fallback when no model writes one)."""
    summary: str
    """One line: the change or the view, for logs and prompts."""
    change: ev.Change | None = None


@dataclass
class Proposal:
    """A proposed task and the trajectories behind it, with its verdict."""

    site: str
    segment: Trajectory
    """The exploration episode, recorded with the proposed task (or the seed)."""
    task: Task | None
    evidence: Evidence
    stop: str = ""
    status: str = "rejected"
    reason: str | None = None
    trajectory: Trajectory | None = None
    """The accepted data: a fresh cold episode replaying the segment, trimmed."""
    trimmed: list[int] = field(default_factory=list)

    def reject(self, reason: str) -> "Proposal":
        self.status, self.reason = "rejected", reason
        return self


class Written(NamedTuple):
    """A writer's instruction, its name, and what writing it spent."""

    instruction: str
    writer: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class Writer(Protocol):
    async def __call__(self, evidence: Evidence, segment: list[Any], site: str) -> Written:
        """The instruction for the evidence, by whom, at what cost."""


async def template_free(evidence: Evidence, segment: list[Any], site: str) -> Written:
    return Written(evidence.instruction, "evidence")


def seed_task(site: str, start_url: str | None, seed: int, params: dict[str, Any] | None = None,
              segment: str | None = None) -> Task:
    """The task an exploration episode starts from: no instruction, a judge
    that never passes (a segment that proposes nothing is recorded rejected).
    `segment` (a walk's id and the segment's place in it) keeps the ids of
    two segments from the same page apart."""
    key = (site, start_url, seed) if segment is None else (site, start_url, seed, segment)
    return Task(
        task_id=stable_id("explore-seed", *key), template_id=f"explore/{site}", site=site,
        start_url=start_url, params=dict(params or {}), seed=seed,
        judge=JudgeSpec(type="state_match", path="$.__explore__", expected=True),
    )


def view_of(state: Any, prefix: str = "$") -> tuple[str, dict[str, Any]] | None:
    """Where a site's state is only its view (Datasette's path and query,
    maybe under one key such as `page`): its JSON path and the view."""
    if not isinstance(state, dict):
        return None
    if set(state) <= {"path", "query", "title"} and "path" in state:
        return prefix, state
    if len(state) == 1:
        (key, inner), = state.items()
        return view_of(inner, f"{prefix}.{key}")
    return None


def page_title(obs: Observation | None) -> str:
    """The page's first short h1 (else other heading), else its title before a ' – Site' suffix."""
    if obs is None:
        return ""
    headings = [e for e in obs.elements if e.role == "heading" and 2 < len(e.name) <= 60]
    for e in sorted(headings, key=lambda e: e.tag != "h1"):
        return re.sub(r"Link to this section$", "", e.name).strip().rstrip(":")
    return re.split(r" [–|-] ", obs.title)[0].strip()[:60]


def headed(title: str) -> str:
    """The page's heading, for a view's summary: the writer names the page by
    it, so the instruction check must see it to confirm the page was reached."""
    return f", a page headed {json.dumps(title, ensure_ascii=False)}" if title else ""


def derive(before: Any, after: Any, start_url: str, final_url: str, typed: list[str], title: str) -> Evidence:
    """The evidence of a segment and the judge and instruction it implies."""
    changes = ev.record_changes(before, after) if before is not None and after is not None else []
    view = view_of(after)
    moved = bool(final_url) and local(final_url) != local(start_url)
    is_view = view is not None if changes else moved  # a site whose state is its view, or a page reached
    if is_view and ERROR_PAGE.search(title):
        return Evidence("none", None, "", f"reached an error page ({title!r})")
    if is_view and (dated := ev.near_today(urlsplit(final_url).query)):
        return Evidence("none", None, "", f"the address names {dated}, a date near today's: the site computed it "
                                          "from its clock, and another day the same actions reach another")
    if changes and view is not None:
        at, state = view
        judges = [{"type": "state_match", "path": f"{at}.{k}", "expected": state[k]} for k in ("path", "query")
                  if k in state]
        return Evidence("view", JudgeSpec(type="all_of", judges=judges), ev.write_view_state(state, title),
                        f"view {state}" + headed(title))
    if changes:
        change = ev.trim_fields(ev.primary_change(changes, typed), typed)
        return Evidence("state", ev.state_judge(change), ev.write_change(change),
                        f"{change.kind} {change.path}: {change.record}", change)
    if is_view:
        return Evidence("view", ev.url_judge(final_url), ev.write_view(final_url, title),
                        f"reached {local(final_url)}" + headed(title))
    return Evidence("none", None, "", "nothing changed and no other page reached")


async def judge_offline(spec: JudgeSpec, task: Task, state: Any, url: str, answer: str | None = None) -> Verdict:
    """A judge's verdict on a recorded state and URL (the segment's start)."""

    class Frozen:
        name = task.site

        async def state(self, page: Any, task: Task) -> Any:
            if state is None:
                raise NotImplementedError("no state")
            return state

    ctx = JudgeContext(page=None, site=Frozen(), task=task, answer=answer, final_url=url)  # type: ignore[arg-type]
    return await run_judge(spec, ctx)


async def read_state(env: BrowserEnv) -> Any:
    try:
        return await env.site.state(env.page, env.task)
    except NotImplementedError:
        return None


async def explore_segment(
    env: BrowserEnv, seed: Task, walker: Walker, writer: Writer = template_free, *, run_id: str = "",
    timeout_s: float = 120.0, answer_share: float = 0.5,
) -> Proposal:
    """One segment: reset, walk, read the evidence, propose, judge the end
    state. A segment that changed nothing answers, with `answer_share`
    chance, a question about a value its last page shows (an answer step)."""
    started_at, t0 = time.time(), time.perf_counter()
    error: str | None = None
    before = after = None
    start_url = final_url = ""
    try:
        obs = await env.reset(seed)
        start_url = obs.url
        before = await read_state(env)
        await asyncio.wait_for(walker.segment(env, obs, before), timeout_s)
        after = await read_state(env)
        final_url = env.page.url
    except Exception as e:  # noqa: BLE001 - a failed walk is a rejected segment with its reason
        error = f"explore: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    evidence = derive(before, after, start_url, final_url, walker.typed, page_title(env.obs)) if error is None \
        else Evidence("none", None, "", error)
    if evidence.kind in ("view", "none") and error is None and walker.rng.random() < answer_share:
        evidence = await read_a_fact(env, walker, final_url) or evidence
    task: Task | None = None
    written = Written("", "explore")
    if evidence.judge is not None:
        written = await writer(evidence, env.steps, seed.site)
        task = proposed_task(seed, start_url, written.instruction, evidence)
    trajectory = await finish(env, task or seed, source=SOURCE, source_detail=written.writer, started_at=started_at,
                              t0=t0, run_id=run_id, error=error)
    if written.tokens_in or written.tokens_out or written.cost_usd:  # the writer's model call, as a source's are
        trajectory = trajectory.model_copy(update={"tokens_in": written.tokens_in, "tokens_out": written.tokens_out,
                                                   "cost_usd": written.cost_usd})
    proposal = Proposal(seed.site, trajectory, task, evidence, stop=walker.reason)
    if task is None:
        return proposal.reject(f"no proposal: {evidence.summary}")
    if not trajectory.verdict.passed:
        return proposal.reject(f"end state: the derived judge fails on the segment's own end: {trajectory.verdict.reason}")
    at_start = await judge_offline(task.judge, task, before, start_url)
    if at_start.passed:
        return proposal.reject(f"trivial: the derived judge already passes at the start ({at_start.reason})")
    proposal.status = "proposed"
    return proposal


async def read_a_fact(env: BrowserEnv, walker: Walker, final_url: str) -> Evidence | None:
    """Answer with a value the page shows (a recorded answer step) and
    propose the question it answers; None when the page shows no labelled value."""
    found = [f for f in ev.facts(env.obs.elements if env.obs is not None else []) if not ev.near_today(f.value)]
    if not found:
        return None
    fact = walker.rng.choice(found)
    title = page_title(env.obs)
    await env.submit_answer(fact.value)
    return Evidence("answer", ev.answer_judge(fact.value, final_url), ev.write_question(fact, title),
                    f"read {fact.label}={fact.value!r}" + (f" of {fact.row!r}" if fact.row else "") + f" on {title!r}")


def proposed_task(seed: Task, start_url: str, instruction: str, evidence: Evidence) -> Task:
    """The task a segment proposes: starts where the segment started, on the same content seed."""
    start = local(start_url)
    judge = evidence.judge
    assert judge is not None
    return Task(
        task_id=stable_id("explore", seed.task_id, start, instruction, judge.model_dump()),
        template_id=f"explore/{seed.site}/{evidence.kind}", site=seed.site, instruction=instruction,
        start_url=start, params={**seed.params, "route": route_of(start_url)}, judge=judge, seed=seed.seed,
        max_steps=max(seed.max_steps, 10),
    )


Runner = Callable[[Task], Awaitable[Proposal]]

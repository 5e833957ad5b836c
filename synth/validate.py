"""`synth tasks validate`: prove each task prototype's solver and judge.

For every prototype (template) with a solver, instantiate it and, on N
instances each, run in a real browser:

- the **solver**: the judge must pass (and the episode end without error);
- negative controls, where the judge must **fail**:
  - **no-op**: do nothing, then `done`;
  - **wrong answer** (prototypes whose judge reads an answer): answer with a
    plausible wrong value, another instance's expected answer;
  - **other instance** (a mutated end state): run the solver of a different
    instance of the same prototype in this episode, so the site ends in a
    realistic state that is wrong for this instance (the other product in the
    cart, the other post voted on, another URL, another answer).

Prototypes whose instances all share one judge spec (MiniWoB++: every seed is
judged by `miniwob_reward`, the page itself holds what is right) have no
instance whose judge expects something else; for them what is wrong for one
seed is what another seed's page made right, and a wrong element of the same
kind. Their controls are:

  - **other instance**: another seed's solution (its recorded actions, by
    their coordinates and typed text) replayed on this seed's page: the
    buttons, fields and links where the other seed had them, the other seed's
    text typed. If that replay does exactly this seed's own work (the same
    elements acted on, the same text, in order: the layout and target happened
    to coincide, or the task's solution does not depend on the seed) it is no
    control; it is counted as `coincided`, reported in the notes, and the next
    seed is tried (up to `OTHER_SEED_TRIES` seeds).
  - **near miss**: this seed's own solution with one target moved to a
    sibling: a click whose element has another of the same kind in view
    (tag, role and a class in common, another name or both unnamed: another
    post's menu icon) clicks that one instead, or a choice from a list takes
    another option; the rest is replayed as recorded, and the last such step
    is moved first. The wrong button, option, checkbox, link, date or e-mail:
    the mistake an agent makes. An accepted near miss that did this seed's own
    work (a sibling of the same effect), or whose moved click changed nothing
    on the page (the tab already open: the run is then the solution without
    that click, and it passing says the solver explored, not that the judge
    accepts wrong work), is no control either; the next click is tried (up
    to `NEAR_MISS_TRIES`). A solution with no such click has no near miss (a
    note says so).

Only a control that MiniWoB *ends* with a wrong result tests its reward code;
one that never ends the episode is rejected the way a no-op is. Tasks whose
every ending is right (focus-text: the only thing to do is focus the only
field) can only be tested by controls that do not end them.

A judge that passes a control is a false accept. Each prototype must also
yield at least `min_distinct` distinct instances (instruction and judge) over
its declared seeds. The report gives, per prototype, the solver pass rate and
the false accepts per control; `ok` is False on any failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from synth.env import BrowserConfig, BrowserEnv, launch_browser
from synth.episode import run_episode
from synth.judges import normalise_text
from synth.quality.consistency import state_key
from synth.quality.replay import ReplayStep, steps_of
from synth.schema import POINTER_ACTIONS, Element, JudgeSpec, Observation, Task, Trajectory
from synth.tasks import Template, instantiate, load_templates

CONTROLS = ("no-op", "wrong answer", "other instance", "near miss")
OTHER_SEED_TRIES = 3
"""Seeds whose solutions the other-instance control replays on one seed's
page, at most, until one does not coincide with that seed's own work."""
NEAR_MISS_TRIES = 3
"""Steps the near-miss control changes, at most, until one is a control."""


@dataclass
class ControlStats:
    runs: int = 0
    false_accepts: int = 0
    errors: int = 0
    """Runs that ended in an error before the judge (still a rejection, but a
    weaker control than one that ran to the end)."""
    examples: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)
    """Why each rejected run was rejected (the judge's reason or the error)."""
    coincided: int = 0
    """Runs accepted because they did exactly this instance's own work (the
    other seed's solution was right here too): not controls, not counted in
    `runs`; see the report's notes."""
    inert: int = 0
    """Near misses accepted whose moved click changed nothing on the page (so
    the run was the solution without that click): not controls, not counted."""
    inapplicable: int = 0
    """Instances the control had nothing to run on (no sibling target, every
    try coincided or was inert)."""


@dataclass
class PrototypeReport:
    template_id: str
    difficulty: str | None
    seeds: int
    distinct: int | None
    """Distinct (instruction, judge) pairs over the declared seeds; None when
    the site writes the instruction itself (MiniWoB++)."""
    instances: int = 0
    solver_passes: int = 0
    solver_steps: int = 0
    solver_failures: list[str] = field(default_factory=list)
    controls: dict[str, ControlStats] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    """Failures that are not a single episode's (no solver, too few instances)."""
    notes: list[str] = field(default_factory=list)
    """What the controls could not test, and why (not failures)."""

    @property
    def pass_rate(self) -> float:
        return self.solver_passes / self.instances if self.instances else 0.0

    @property
    def false_accepts(self) -> int:
        return sum(c.false_accepts for c in self.controls.values())

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.instances > 0
            and self.solver_passes == self.instances
            and self.false_accepts == 0
        )


Policy = Callable[[BrowserEnv, Observation], Awaitable[None]]


def expected_answers(spec: JudgeSpec | dict[str, Any]) -> list[str]:
    """Every answer a judge (or any judge inside all_of) would accept."""
    data = spec.model_dump() if isinstance(spec, JudgeSpec) else spec
    if data.get("type") == "string_match":
        exp = data.get("expected")
        return [exp] if isinstance(exp, str) else [str(e) for e in exp or []]
    if data.get("type") == "all_of":
        return [a for sub in data.get("judges", []) for a in expected_answers(sub)]
    return []


def _judge_key(task: Task) -> str:
    return json.dumps(task.judge.model_dump(), sort_keys=True, default=str)


def distinct_instances(tasks: list[Task]) -> int:
    return len({(t.instruction, _judge_key(t)) for t in tasks})


def other_instance(task: Task, pool: list[Task]) -> Task | None:
    """An instance of the same prototype whose judge expects something else
    (and whose answers, if any, differ from this one's once normalised)."""
    mine = {normalise_text(a) for a in expected_answers(task.judge)}
    for other in pool:
        if other.task_id == task.task_id or _judge_key(other) == _judge_key(task):
            continue
        if mine & {normalise_text(a) for a in expected_answers(other.judge)}:
            continue
        return other
    return None


def _noop() -> Policy:
    async def noop(env: BrowserEnv, obs: Observation) -> None:
        await env.done()

    return noop


def _answer(text: str) -> Policy:
    async def wrong(env: BrowserEnv, obs: Observation) -> None:
        await env.submit_answer(text)

    return wrong


def _as_other(solver: Policy, other: Task) -> Policy:
    """The solver, told it is solving `other` (its instruction and task)."""

    async def run(env: BrowserEnv, obs: Observation) -> None:
        env.instruction = other.instruction or env.instruction
        env.task = other
        await solver(env, obs)

    return run


async def act(env: BrowserEnv, steps: list[ReplayStep], aim: bool = False) -> None:
    """Act recorded steps again, each after its recorded wait, by their
    coordinates and text; `aim`: at the recorded element, found by its
    selector if it is no longer at its point. A failed step raises; an
    episode the site ended stops it."""
    for step in steps:
        if step.waited_ms:
            await asyncio.sleep(step.waited_ms / 1000)
        await env.step(step.action, expected=step.target if aim else None)
        if env.steps[-1].error:
            raise RuntimeError(f"step {len(env.steps) - 1} failed: {env.steps[-1].error}")
        if env.finished:
            return


def replayed(steps: list[ReplayStep], move: tuple[int, dict[str, Any]] | None = None) -> Policy:
    """Recorded steps acted again by their coordinates and text (no looking
    for the recorded target: where it was is what is replayed); `move`
    changes one step's action (index, fields: another point, another option)."""
    if move is not None:
        i, update = move
        steps = [*steps[:i], dataclasses.replace(steps[i], action=steps[i].action.model_copy(update=update)),
                 *steps[i + 1:]]

    async def run(env: BrowserEnv, obs: Observation) -> None:
        await act(env, steps)
        if not env.finished:
            await env.settle()  # judged on a settled page, as the recording was

    return run


def typo(text: str) -> str:
    """`text` with its last character changed: a plausible wrong value (a
    digit for a digit), still a value the field takes."""
    last = text[-1]
    return text[:-1] + ("1" if last.isdigit() and last != "1" else "2" if last.isdigit() else "x" if last != "x" else "y")


def work(t: Trajectory) -> list[tuple[Any, ...]]:
    """What a trajectory did: each action with the element it acted on (tag,
    role, name, id and where it was, to 4 px) and the text or key it typed.
    Two runs on one seed's page that did the same work reach the same state."""
    out = []
    for s in t.steps:
        a = s.action
        if a.name in ("scroll", "wait"):
            continue
        el = s.element if a.name in POINTER_ACTIONS else None
        if el is not None:
            cx, cy = el.box.center
            target = (el.tag, el.role, el.name, el.html_id, round(cx / 4), round(cy / 4))
        else:
            target = None
        out.append((a.name, target, a.text, a.key))
    return out


CLICKS = ("click", "double_click")


def _same_kind(a: Element, b: Element) -> bool:
    """Elements of one kind: the same tag and role, and a class in common
    (state classes such as `ui-state-active` aside, siblings share one)."""
    if a.tag != b.tag or a.role != b.role:
        return False
    ca, cb = set(a.html_class.split()), set(b.html_class.split())
    return ca == cb or bool(ca & cb)


def _active(e: Element) -> bool:
    return any("active" in c or "selected" in c for c in e.html_class.split())


def near_misses(t: Trajectory) -> list[tuple[int, dict[str, Any], Element, Element]]:
    """Where a near miss may act instead: for each click whose element has
    a sibling of the same kind in the step's observation (`_same_kind`, in
    view, of another name or both unnamed, not focused), the click moved to
    the sibling's centre; for each choice from a list (`select`), another of
    its options. Each as (step, the action's new fields, the element, the
    sibling), the last first (the final choice is what a task is about;
    earlier clicks are often exploration). Preferred: a sibling not already
    active or selected (the open tab: clicking it does nothing), one no step
    acts on, the nearest in document order after the target."""
    acted = {s.element.id for s in t.steps if s.element is not None}
    out = []
    for i, s in enumerate(t.steps):
        el, obs, a = s.element, s.observation, s.action
        if el is None or s.error:
            continue
        if a.name == "select" and a.text is not None:
            options = [e for e in obs.elements if e.parent == el.id and e.role == "option" and e.name
                       and e.name != a.text and (e.value or e.name) != a.text]
            if options:
                other = min(options, key=lambda e: (e.id < el.id, abs(e.id - el.id)))
                out.append((i, {"text": other.value or other.name}, el, other))
            continue
        if a.name not in CLICKS or a.x is None:
            continue
        siblings = [
            e for e in obs.elements
            if e.id != el.id and _same_kind(e, el) and (e.name != el.name or not e.name) and e.in_view
            and not e.focused and e.box.width > 1 and e.box.height > 1 and obs.area.contains(*e.box.center)
        ]
        if siblings:
            other = min(siblings, key=lambda e: (_active(e), e.id in acted, e.id < el.id, abs(e.id - el.id)))
            x, y = obs.normalise(*other.box.center)
            out.append((i, {"x": x, "y": y}, el, other))
    return out[::-1]


def _inert(t: Trajectory, i: int) -> bool:
    """Whether step `i` changed nothing observable (the page state before the
    next step is the state before it). The last step's effect is unknown: not inert."""
    return i + 1 < len(t.steps) and state_key(t.steps[i].observation) == state_key(t.steps[i + 1].observation)


def _shared_judge(tasks: list[Task]) -> bool:
    """Whether every instance has the same judge spec (the page, not the
    judge, holds what is right: MiniWoB++)."""
    return len(tasks) > 1 and len({_judge_key(t) for t in tasks}) == 1


def _reason(t: Trajectory) -> str:
    return f"seed {t.seed}: {t.reject_reason or t.verdict.reason}"[:300]


async def validate(
    templates: list[Path | str] | Path | str,
    instances: int = 5,
    concurrency: int = 2,
    browser: BrowserConfig | None = None,
    min_distinct: int = 50,
    include: list[str] | None = None,
    episode_timeout_s: float = 90.0,
    on_episode: Callable[[], None] | None = None,
) -> list[PrototypeReport]:
    """Validate every prototype under `templates` (files or folders)."""
    from synth.solver import get_solver

    paths = templates if isinstance(templates, list) else [templates]
    pairs: list[tuple[str, Template]] = [p for path in paths for p in load_templates(path)]
    if include:
        pairs = [(s, t) for s, t in pairs if t.id in include or f"{s}/{t.id}" in include]
    reports: list[PrototypeReport] = []
    # (report, kind, task, run): `run` gives the trajectory to count, or None
    # when the control had nothing to run on
    jobs: list[tuple[PrototypeReport, str, Task, Callable[[], Awaitable[Trajectory | None]]]] = []
    solutions: dict[str, asyncio.Future[Trajectory]] = {}

    async def episode(task: Task, policy: Policy, detail: str) -> Trajectory:
        async with gate:
            env = BrowserEnv(chromium, sites[task.site], config)
            return await run_episode(env, task, policy, source="solver", source_detail=detail,
                                     timeout_s=episode_timeout_s)

    def solution(task: Task, solver_name: str) -> asyncio.Future[Trajectory]:
        """The solver's run on `task`, once (the report's, or another seed's
        solution for the other-instance control)."""
        if task.task_id not in solutions:
            solutions[task.task_id] = asyncio.ensure_future(episode(task, get_solver(solver_name), solver_name))
        return solutions[task.task_id]

    def other_seeds(report: PrototypeReport, task: Task, solver_name: str, candidates: list[Task]) -> Callable:
        async def run() -> Trajectory | None:
            stats = report.controls["other instance"]
            own = await solution(task, solver_name)
            if own.status != "accepted":
                return None  # the solver's failure is the report's
            for other in candidates:
                theirs = await solution(other, solver_name)
                if theirs.status != "accepted":
                    continue
                t = await episode(task, replayed(steps_of(theirs)), f"control:other-instance:seed-{other.seed}")
                if t.verdict.passed and work(t) == work(own):
                    stats.coincided += 1
                    continue
                return t
            stats.inapplicable += 1
            return None

        return run

    def moved(report: PrototypeReport, task: Task, solver_name: str) -> Callable:
        async def run() -> Trajectory | None:
            stats = report.controls["near miss"]
            own = await solution(task, solver_name)
            if own.status != "accepted":
                return None
            own_steps = steps_of(own)
            candidates = near_misses(own)
            if not candidates:
                stats.inapplicable += 1
                return None
            for i, update, was, instead in candidates[:NEAR_MISS_TRIES]:
                what = (f"{instead.role} {instead.name[:40]!r}" if "x" in update
                        else f"option {update['text'][:40]!r} of {was.role} {was.name[:40]!r}")
                detail = f"control:near-miss: step {i} on {what} instead of {was.name[:40]!r}"
                t = await episode(task, replayed(own_steps, (i, update)), detail)
                if not t.verdict.passed:
                    return t
                if work(t) == work(own):
                    stats.coincided += 1
                    continue
                # accepted: a false accept, unless the moved click did nothing
                # at all (a sibling already in that state, such as the open
                # tab): the run is then the solution without that click, and
                # its passing says the click was not needed (the solver
                # explored), not that the judge accepts wrong work
                if _inert(t, i):
                    stats.inert += 1
                    continue
                return t
            stats.inapplicable += 1
            return None

        return run

    for site, tpl in pairs:
        all_tasks = instantiate(site, tpl)
        report = PrototypeReport(
            template_id=f"{site}/{tpl.id}",
            difficulty=tpl.difficulty,
            seeds=len(all_tasks),
            distinct=distinct_instances(all_tasks) if tpl.intent is not None else None,
            controls={name: ControlStats() for name in CONTROLS},
        )
        reports.append(report)
        if report.distinct is not None and report.distinct < min(min_distinct, report.seeds):
            report.problems.append(f"only {report.distinct} distinct instances over {report.seeds} seeds (need {min_distinct})")
        if report.distinct is not None and report.seeds < min_distinct:
            report.problems.append(f"declares {report.seeds} seeds, fewer than the {min_distinct} instances required")
        if not tpl.solver:
            report.problems.append("no solver: nothing can show the task is completable")
            continue
        solver_name = tpl.solver
        solver = get_solver(solver_name)
        chosen = all_tasks[:instances]
        report.instances = len(chosen)
        shared = _shared_judge(all_tasks)
        for n, task in enumerate(chosen):
            jobs.append((report, "solver", task, functools.partial(solution, task, solver_name)))
            jobs.append((report, "no-op", task, functools.partial(episode, task, _noop(), "control:no-op")))
            answers = expected_answers(task.judge)
            other = None if shared else other_instance(task, all_tasks)
            if answers:
                wrong = expected_answers(other.judge)[0] if other is not None else "I could not find it"
                jobs.append((report, "wrong answer", task,
                             functools.partial(episode, task, _answer(wrong), "control:wrong-answer")))
            if shared:
                # the other chosen seeds first (their solutions run anyway), then the next ones
                later = chosen[n + 1:] + chosen[:n] + all_tasks[len(chosen):]
                jobs.append((report, "other instance", task,
                             other_seeds(report, task, solver_name, later[:OTHER_SEED_TRIES])))
                jobs.append((report, "near miss", task, moved(report, task, solver_name)))
            elif other is not None:
                jobs.append((report, "other instance", task, functools.partial(
                    episode, task, _as_other(solver, other), "control:other-instance")))
            else:
                report.problems.append(f"seed {task.seed}: no other instance with a different judge to test against")

    async def one(job: tuple[PrototypeReport, str, Task, Callable[[], Awaitable[Trajectory | None]]]) -> None:
        report, kind, task, run = job
        t = await run()
        if kind == "solver":
            assert t is not None
            if t.status == "accepted":
                report.solver_passes += 1
                report.solver_steps += len(t.steps)
            else:
                report.solver_failures.append(_reason(t))
        elif t is not None:
            stats = report.controls[kind]
            stats.runs += 1
            if t.verdict.passed:
                stats.false_accepts += 1
                replayed = t.source_detail.startswith(("control:near-miss", "control:other-instance:seed-"))
                stats.examples.append(_reason(t) + (f" [{t.source_detail}]" if replayed else ""))
            else:
                stats.rejections.append(_reason(t))
                if t.error:
                    stats.errors += 1
        if on_episode is not None:
            on_episode()

    from playwright.async_api import async_playwright

    from synth.sites import get_site

    config = browser or BrowserConfig(screenshots=False)
    gate = asyncio.Semaphore(max(1, concurrency))
    sites: dict[str, Any] = {}
    async with async_playwright() as playwright:
        chromium = await launch_browser(playwright, config)
        try:
            for site_name in sorted({task.site for _, _, task, _ in jobs}):
                sites[site_name] = get_site(site_name)
                await sites[site_name].start()
            await asyncio.gather(*(one(j) for j in jobs))
            await asyncio.gather(*solutions.values())
        finally:
            await chromium.close()
            for site in sites.values():
                await site.stop()  # an application site's instances are processes of their own
    for report in reports:
        _note(report)
    return reports


def _note(report: PrototypeReport) -> None:
    """Say what the controls could not test (and why), so a clean table does
    not claim more than was run."""
    other, miss = report.controls["other instance"], report.controls["near miss"]
    if other.coincided:
        report.notes.append(
            f"other instance: {other.coincided} replay(s) of another seed's solution did this seed's own work "
            "(the same elements and text: the layout coincided, or the solution does not depend on the seed) "
            "and were not counted"
        )
    if other.inapplicable:
        report.notes.append(
            f"other instance: for {other.inapplicable} seed(s) no other seed's solution (of "
            f"{OTHER_SEED_TRIES} tried) did anything but this seed's own work"
        )
    if miss.coincided or miss.inert:
        report.notes.append(
            f"near miss: {miss.coincided + miss.inert} accepted moved click(s) were not counted "
            f"({miss.coincided} did this seed's own work; {miss.inert} changed nothing on the page, so the "
            "solution passed without that click)"
        )
    if miss.inapplicable:
        report.notes.append(
            f"near miss: for {miss.inapplicable} seed(s) the solution has no click with a sibling of the same "
            "kind, nor a choice with another option, to take instead"
            + (" that is a control" if miss.coincided or miss.inert else "")
        )


def count_episodes(templates: list[Path | str], instances: int, include: list[str] | None = None) -> int:
    """How many episodes `validate` will run (for a progress bar)."""
    n = 0
    for path in templates:
        for site, tpl in load_templates(path):
            if include and tpl.id not in include and f"{site}/{tpl.id}" not in include:
                continue
            if not tpl.solver:
                continue
            shared = _shared_judge(instantiate(site, tpl, seeds=min(tpl.seeds.count, 5)))
            n += min(instances, tpl.seeds.count) * (3 + int(bool(expected_answers(tpl.judge))) + int(shared))
    return n

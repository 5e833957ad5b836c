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

A judge that passes a control is a false accept. Each prototype must also
yield at least `min_distinct` distinct instances (instruction and judge) over
its declared seeds. The report gives, per prototype, the solver pass rate and
the false accepts per control; `ok` is False on any failure.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from synth.env import BrowserConfig, BrowserEnv, launch_browser
from synth.episode import run_episode
from synth.judges import normalise_text
from synth.schema import JudgeSpec, Observation, Task, Trajectory
from synth.tasks import Template, instantiate, load_templates

CONTROLS = ("no-op", "wrong answer", "other instance")


@dataclass
class ControlStats:
    runs: int = 0
    false_accepts: int = 0
    errors: int = 0
    """Runs that ended in an error before the judge (still a rejection, but a
    weaker control than one that ran to the end)."""
    examples: list[str] = field(default_factory=list)


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
    jobs: list[tuple[PrototypeReport, str, Task, Policy, str]] = []
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
        solver = get_solver(tpl.solver)
        chosen = all_tasks[:instances]
        report.instances = len(chosen)
        for task in chosen:
            jobs.append((report, "solver", task, solver, tpl.solver))
            jobs.append((report, "no-op", task, _noop(), "control:no-op"))
            answers = expected_answers(task.judge)
            other = other_instance(task, all_tasks)
            if answers:
                wrong = expected_answers(other.judge)[0] if other is not None else "I could not find it"
                jobs.append((report, "wrong answer", task, _answer(wrong), "control:wrong-answer"))
            if other is not None:
                jobs.append((report, "other instance", task, _as_other(solver, other), "control:other-instance"))
            else:
                report.problems.append(f"seed {task.seed}: no other instance with a different judge to test against")

    async def one(job: tuple[PrototypeReport, str, Task, Policy, str]) -> None:
        report, kind, task, policy, detail = job
        async with gate:
            env = BrowserEnv(chromium, sites[task.site], config)
            t = await run_episode(env, task, policy, source="solver", source_detail=detail,
                                  timeout_s=episode_timeout_s)
        if kind == "solver":
            if t.status == "accepted":
                report.solver_passes += 1
                report.solver_steps += len(t.steps)
            else:
                report.solver_failures.append(_reason(t))
        else:
            stats = report.controls[kind]
            stats.runs += 1
            if t.verdict.passed:
                stats.false_accepts += 1
                stats.examples.append(_reason(t))
            elif t.error:
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
            for site_name in sorted({task.site for _, _, task, _, _ in jobs}):
                sites[site_name] = get_site(site_name)
                await sites[site_name].start()
            await asyncio.gather(*(one(j) for j in jobs))
        finally:
            await chromium.close()
    return reports


def count_episodes(templates: list[Path | str], instances: int, include: list[str] | None = None) -> int:
    """How many episodes `validate` will run (for a progress bar)."""
    n = 0
    for path in templates:
        for site, tpl in load_templates(path):
            if include and tpl.id not in include and f"{site}/{tpl.id}" not in include:
                continue
            if not tpl.solver:
                continue
            n += min(instances, tpl.seeds.count) * (3 + int(bool(expected_answers(tpl.judge))))
    return n

"""`synth judges eval`: every judge's accuracy against an oracle that shares
no code with it.

For each template of a pipeline (or template files), on N instances, a
labelled set is made in a real browser:

- positives, as they come: the template's solver run, and a replay of that
  run in a fresh episode;
- negatives, made rather than waited for: the solver's run perturbed and
  replayed (`PERTURBATIONS`: the last step dropped, stopped halfway, a
  different value typed, a neighbouring option chosen or a sibling clicked
  instead, a wrong answer submitted, nothing done).

Each trajectory gets the judge's verdict (the task's own judge, as the
pipeline runs it) and a label from the **oracle**, which never reads the
judge's spec or code:

- where the site has a verdict of its own on an ended episode
  (`Site.outcome`: MiniWoB++'s reward, computed by the benchmark's task code),
  that verdict;
- otherwise the site's whole data state after the episode (the application's
  database or store, `Site.state`) and the answer, compared with those the
  template's reference solver reached on the same instance: correct if the
  state is the same (every record, not only those a judge looks at: a side
  effect the judge does not check is a difference) and the answer the same
  up to case, spacing and surrounding punctuation.

So a perturbation the oracle finds still correct (dropping a trailing step
that did nothing) is a positive, and a judge that checks too little (another
item in the cart, the wrong record edited) shows as a false accept. What the
oracle cannot see: a reference solver that is itself wrong (it defines
correct here; `synth tasks validate` and people reading its runs check it).

The report gives, per template and per judge type: true and false accepts
and rejects, precision, recall and Cohen's kappa, and the disagreements.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from synth.env import BrowserConfig, BrowserEnv, launch_browser
from synth.episode import run_episode
from synth.quality.consistency import check
from synth.quality.replay import ReplayStep, steps_of
from synth.schema import JudgeSpec, Observation, Task, Trajectory
from synth.sites import Site, get_site
from synth.tasks import Template, instantiate
from synth.validate import expected_answers, near_misses, replayed, typo

Policy = Callable[[BrowserEnv, Observation], Awaitable[None]]

PERTURBATIONS = (
    "last step dropped", "stopped early", "different value typed", "neighbour chosen",
    "wrong answer", "nothing done",
)
POSITIVES = ("solver", "solver replayed")


# ---------------------------------------------------------------- the oracle


@dataclass
class EndState:
    """What the oracle reads of an ended episode, before the judge runs."""

    state: Any = None
    """The site's data state (`Site.state`), or None where it has none."""
    outcome: bool | None = None
    """The site's own verdict (`Site.outcome`), where it has one."""
    error: str | None = None


def _answer_key(text: str | None) -> str | None:
    if text is None:
        return None
    return re.sub(r"\s+", " ", text).strip().strip(".,;:!?\"'").casefold()


def state_diff(a: Any, b: Any, path: str = "$", limit: int = 3) -> list[str]:
    """Where two JSON states differ (at most `limit` places), by JSON path."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'missing' if k not in a else 'extra'}")
            else:
                out += state_diff(a[k], b[k], f"{path}.{k}", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items, the reference has {len(b)}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += state_diff(x, y, f"{path}[{i}]", limit)
            if len(out) >= limit:
                break
        return out[:limit]
    return [] if a == b else [f"{path}: {json.dumps(a, default=str)[:60]} (reference {json.dumps(b, default=str)[:60]})"]


def oracle_label(end: EndState, answer: str | None, reference: tuple[EndState, str | None] | None) -> tuple[bool, str]:
    """Whether the episode did the task, and why (see the module docstring)."""
    if end.outcome is not None:
        return end.outcome, "the site's own verdict"
    if reference is None:
        return False, "no reference run to compare with"
    ref, ref_answer = reference
    if end.error is not None or end.state is None:
        return False, f"no end state ({end.error or 'the site has no state'})"
    diff = state_diff(end.state, ref.state)
    if diff:
        return False, "state differs: " + "; ".join(diff)
    if _answer_key(ref_answer) != _answer_key(answer):
        return False, f"answer {answer!r}, the reference answered {ref_answer!r}"
    return True, "the reference's end state" + (" and answer" if ref_answer is not None else "")


def with_end_state(policy: Policy, ends: dict[str, EndState], key: str) -> Policy:
    """The policy, then the oracle's reading of the page it leaves (also when
    it fails: a half-done episode has a state too)."""

    async def run(env: BrowserEnv, obs: Observation) -> None:
        try:
            await policy(env, obs)
        finally:
            ends[key] = await read_end_state(env)

    return run


async def read_end_state(env: BrowserEnv) -> EndState:
    site, page, task = env.site, env.page, env.task
    if page is None or page.is_closed() or task is None:
        return EndState(error="the page is gone")
    try:
        state = await site.state(page, task)
    except NotImplementedError:
        return EndState()
    except Exception as e:  # noqa: BLE001 - the oracle reports it; the judge still runs
        return EndState(error=f"{type(e).__name__}: {e}"[:200])
    return EndState(state=state, outcome=site.outcome(state))


# ---------------------------------------------------------------- perturbations


def _typed(steps: list[ReplayStep], other_texts: list[str]) -> list[ReplayStep] | None:
    """The last typed text replaced (the value a form takes, after any
    search that found the page): by another instance's text where one
    differs, else the same text with its last character changed (a typo:
    the value is wrong, the form still fills)."""
    for i in reversed(range(len(steps))):
        s, text = steps[i], steps[i].action.text
        if s.action.name != "type" or not text:
            continue
        wrong = next((o for o in other_texts if o and o != text), None) or typo(text)
        return steps[:i] + [ReplayStep(s.action.model_copy(update={"text": wrong}), s.waited_ms, s.target)] + steps[i + 1:]
    return None


def _answered(steps: list[ReplayStep], wrong: str) -> list[ReplayStep] | None:
    for i, s in enumerate(steps):
        if s.action.name == "answer":
            changed = s.action.model_copy(update={"text": wrong})
            return steps[:i] + [ReplayStep(changed, s.waited_ms, s.target)] + steps[i + 1:]
    return None


MAX_NEIGHBOURS = 3
"""Steps the neighbour perturbation moves, one run each (the last first)."""


def perturbations(t: Trajectory, task: Task, others: list[tuple[Task, Trajectory]]) -> list[tuple[str, Policy]]:
    """The negatives made from one accepted solver run: (kind, policy)."""
    steps = steps_of(t)
    out: list[tuple[str, Policy]] = []
    acting = [i for i, s in enumerate(steps) if s.action.name != "done"]
    if acting:  # `done` changes nothing: drop the last step that acts
        out.append(("last step dropped", replayed([s for i, s in enumerate(steps) if i != acting[-1]])))
    if len(acting) >= 3:
        out.append(("stopped early", replayed(steps[: acting[len(acting) // 2]])))
    other_texts = [s.action.text or "" for _, o in others for s in steps_of(o) if s.action.name == "type"]
    typed = _typed(steps, other_texts[::-1])
    if typed is not None:
        out.append(("different value typed", replayed(typed)))
    for i, update, _, _ in near_misses(t)[:MAX_NEIGHBOURS]:
        out.append(("neighbour chosen", replayed(steps, (i, update))))
    mine = {_answer_key(a) for a in expected_answers(task.judge)} | {_answer_key(t.answer)}
    wrong = next(
        (a for o, _ in others for a in expected_answers(o.judge) if _answer_key(a) not in mine),
        next((o.answer for _, o in others if o.answer and _answer_key(o.answer) not in mine), None),
    )
    answered = _answered(steps, wrong or "I could not find it")
    if answered is not None:
        out.append(("wrong answer", replayed(answered)))

    async def nothing(env: BrowserEnv, obs: Observation) -> None:
        await env.done()

    out.append(("nothing done", nothing))
    return out


# ---------------------------------------------------------------- the labelled set


@dataclass
class Labelled:
    template_id: str
    judge: str
    seed: int
    kind: str
    judge_passed: bool
    correct: bool
    oracle: str
    judge_reason: str
    trajectory_id: str = ""
    flags: list[str] = field(default_factory=list)
    """The consistency gate's rejecting flags (the template's `ignore` aside):
    what the pipeline adds to the judge before it accepts."""

    @property
    def accepted(self) -> bool:
        """Whether the pipeline would accept it: the judge and the consistency gate."""
        return self.judge_passed and not self.flags


def judge_name(spec: JudgeSpec | dict[str, Any]) -> str:
    data = spec.model_dump() if isinstance(spec, JudgeSpec) else spec
    if data.get("type") == "all_of":
        return "all_of(" + ",".join(sorted({judge_name(j) for j in data.get("judges", [])})) + ")"
    return str(data.get("type"))


@dataclass
class Accuracy:
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    disagreements: list[Labelled] = field(default_factory=list)
    fp_after_gates: int = 0
    """False accepts the consistency gate still lets through."""

    def add(self, item: Labelled) -> None:
        if item.accepted and not item.correct:
            self.fp_after_gates += 1
        if item.judge_passed and item.correct:
            self.tp += 1
        elif item.judge_passed:
            self.fp += 1
            self.disagreements.append(item)
        elif item.correct:
            self.fn += 1
            self.disagreements.append(item)
        else:
            self.tn += 1

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def negatives(self) -> int:
        return self.tn + self.fp

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa between the judge and the oracle (two raters, two
        labels): observed agreement beyond what their rates give by chance."""
        n = self.n
        if not n:
            return None
        observed = (self.tp + self.tn) / n
        chance = ((self.tp + self.fp) * (self.tp + self.fn) + (self.tn + self.fn) * (self.tn + self.fp)) / n**2
        if chance == 1:
            return 1.0 if observed == 1 else 0.0
        return (observed - chance) / (1 - chance)

    def summary(self) -> dict[str, Any]:
        return {"n": self.n, "negatives": self.negatives, "tp": self.tp, "fp": self.fp, "tn": self.tn,
                "fn": self.fn, "precision": self.precision, "recall": self.recall, "kappa": self.kappa,
                "fp_after_gates": self.fp_after_gates}


@dataclass
class JudgeReport:
    items: list[Labelled] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    """Template id -> why it has no labelled set (no solver, solver failed)."""

    def by(self, key: Callable[[Labelled], str]) -> dict[str, Accuracy]:
        out: dict[str, Accuracy] = {}
        for item in self.items:
            out.setdefault(key(item), Accuracy()).add(item)
        return dict(sorted(out.items()))

    def by_template(self) -> dict[str, Accuracy]:
        return self.by(lambda i: i.template_id)

    def by_judge(self) -> dict[str, Accuracy]:
        return self.by(lambda i: i.judge)

    def below(self, min_precision: float = 1.0, min_recall: float = 0.99, min_n: int = 30) -> dict[str, str]:
        """Templates that miss the targets, and how."""
        out = {}
        for tid, acc in self.by_template().items():
            why = []
            if acc.precision is not None and acc.precision < min_precision:
                why.append(f"precision {acc.precision:.2f} < {min_precision:.2f}")
            if acc.recall is not None and acc.recall < min_recall:
                why.append(f"recall {acc.recall:.2f} < {min_recall:.2f}")
            if acc.n < min_n or acc.negatives * 2 < min(acc.n, min_n):
                why.append(f"{acc.n} labelled ({acc.negatives} negative); the target asks {min_n}, half negative")
            if why:
                out[tid] = "; ".join(why)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "templates": {k: a.summary() for k, a in self.by_template().items()},
            "judges": {k: a.summary() for k, a in self.by_judge().items()},
            "problems": self.problems,
            "items": [asdict(i) for i in self.items],
        }


async def evaluate(
    pairs: Iterable[tuple[str, Template]],
    instances: int = 8,
    concurrency: int = 2,
    browser: BrowserConfig | None = None,
    site_options: dict[str, dict[str, Any]] | None = None,
    episode_timeout_s: float = 90.0,
    on_episode: Callable[[], None] | None = None,
) -> JudgeReport:
    """The labelled set and its judge verdicts for every template in `pairs`."""
    from playwright.async_api import async_playwright

    from synth.solver import get_solver

    report = JudgeReport()
    config = browser or BrowserConfig(screenshots=False)
    gate = asyncio.Semaphore(max(1, concurrency))
    sites: dict[str, Site] = {}
    ends: dict[str, EndState] = {}

    async def episode(task: Task, policy: Policy, kind: str, n: int = 0) -> tuple[Trajectory, EndState]:
        key = f"{task.task_id}:{kind}:{n}"
        async with gate:
            env = BrowserEnv(chromium, sites[task.site], config)
            t = await run_episode(env, task, with_end_state(policy, ends, key), source="solver",
                                  source_detail=f"judge-eval:{kind}:{n}", timeout_s=episode_timeout_s)
        if on_episode:
            on_episode()
        return t, ends.pop(key, EndState(error="the episode ended before its policy ran"))

    def label(task: Task, kind: str, t: Trajectory, end: EndState, ref: tuple[EndState, str | None] | None) -> None:
        correct, why = oracle_label(end, t.answer, ref)
        rules = consistency.get(task.template_id)
        flags = [f for f in check(t, rules=rules) if f not in (rules.ignore if rules else ())]
        report.items.append(Labelled(
            task.template_id, judge_name(task.judge), task.seed, kind, t.verdict.passed and t.error is None,
            correct, why, t.reject_reason or t.verdict.reason, t.trajectory_id, flags,
        ))

    async def template(site: str, tpl: Template) -> None:
        tid = f"{site}/{tpl.id}"
        if not tpl.solver:
            report.problems[tid] = "no solver to make the reference run"
            return
        solver = get_solver(tpl.solver)
        tasks = instantiate(site, tpl, seeds=min(instances, tpl.seeds.count))
        runs = await asyncio.gather(*(episode(task, solver, "solver") for task in tasks))
        solved = [(task, t) for task, (t, _) in zip(tasks, runs) if t.status == "accepted"]
        if not solved:
            report.problems[tid] = f"the solver passed none of {len(tasks)} instances: {runs[0][0].reject_reason}"
            return
        jobs = []
        for task, (t, end) in zip(tasks, runs):
            if t.status != "accepted":
                continue  # the solver's failure is validate's business; it is no reference
            ref = (end, t.answer)
            label(task, "solver", t, end, ref)
            others = [(o, ot) for o, ot in solved if o.task_id != task.task_id]
            kinds = [("solver replayed", replayed(steps_of(t))), *perturbations(t, task, others)]
            jobs += [(task, kind, policy, ref, n) for n, (kind, policy) in enumerate(kinds)]

        async def one(task: Task, kind: str, policy: Policy, ref: tuple[EndState, str | None], n: int) -> None:
            t, end = await episode(task, policy, kind, n)
            label(task, kind, t, end, ref)

        await asyncio.gather(*(one(*job) for job in jobs))

    pairs = list(pairs)
    consistency = {f"{site}/{tpl.id}": tpl.consistency for site, tpl in pairs if tpl.consistency is not None}
    async with async_playwright() as playwright:
        chromium = await launch_browser(playwright, config)
        try:
            for name in sorted({site for site, _ in pairs}):
                sites[name] = get_site(name, **(site_options or {}).get(name, {}))
                await sites[name].start()
            await asyncio.gather(*(template(site, tpl) for site, tpl in pairs))
        finally:
            await chromium.close()
            for s in sites.values():
                await s.stop()
    return report


def count_episodes(pairs: Iterable[tuple[str, Template]], instances: int) -> int:
    """An estimate for a progress bar: a solver run, its replay and the
    perturbations that usually apply."""
    return sum(min(instances, tpl.seeds.count) * 6 for _, tpl in pairs if tpl.solver)


def load_report(path: Path | str) -> dict[str, Any]:
    """A saved `synth judges eval --json` report."""
    return json.loads(Path(path).read_text())

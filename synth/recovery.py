"""Recovery variants: a solver's successful trajectory, replayed with one
plausible mistake and its recovery in the middle, verified.

The `recovery` source (`sources.recovery:` in a pipeline) takes tasks whose
template has a solver. For each it records, in fresh episodes:

1. the solver's clean run (the reference; not staged: the solver source
   stages its own);
2. a mistake point chosen from the clean run (`candidates`), by the task's
   seed: a typed value (`typo`: a wrong value typed, then the field's text
   selected and the right value typed over it; a date or time field, whose
   text cannot be selected, clicked again where the run clicked into it and
   retyped from its first part), a choice from a list (`wrong-option`:
   another option, then the right one), a click with a sibling of the same
   kind in view (`wrong-click`: the sibling clicked; then, as the page
   reacted, back to the page it left, the sibling clicked again where it
   toggles, the right element clicked twice where the sibling steps the view
   the other way (a calendar's Next for its Prev: once to step back, once as
   meant), or the right element clicked, which replaces the wrong choice), a
   form sent with text fields filled (`early-submit`: the form sent before
   one of its empty fields is filled, the others filled as the clean run
   does; kept only if the site visibly refuses it, then the field filled
   with the clean run's text and the form sent again);
3. the clean prefix replayed up to and including that step, in its own
   episode, and the site's state and the page's state read there;
4. the variant: the prefix, the mistake (`role: mistake`), the recovery
   (`role: recovery`, with a `reflection` written from the mistake and its
   elements), the original step; then the state is read and must equal the
   clean prefix's (the site's data state where it has one, and the page's
   state, `page_key`): a mistake that left a lasting side effect (an item
   added, a record deleted) fails here and the variant is dropped with the
   reason; then the rest of the clean run, each step aimed at its recorded
   element (found by its selector if the layout moved), and the task's judge.

A variant that fails is a rejected trajectory whose reason says why
(`recovery: ...`), so `synth stats` counts them by reason. An accepted
variant then goes through every quality gate (its replay includes the
mistake); minimality never removes its labelled steps, consistency does not
flag the mistake, and the SFT views keep the mistake in the history only: it
is never a training target (synth/export/formats.py `steps`).
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Literal

from pydantic import Field

from synth.config import SourceConfig
from synth.env import BrowserEnv
from synth.episode import run_episode
from synth.quality.replay import ReplayStep, steps_of
from synth.schema import Action, Element, Monologue, Observation, Step, Task, Trajectory, Verdict, trajectory_id
from synth.sources import BrowserSource, register_source
from synth.validate import act, near_misses, typo

KINDS = ("typo", "wrong-option", "wrong-click", "early-submit")
Kind = Literal["typo", "wrong-option", "wrong-click", "early-submit"]
TOGGLES = {"checkbox", "switch", "menuitemcheckbox"}
TEXT_FIELDS = {"textbox", "searchbox", "spinbutton"}
SEGMENTED = {"date", "datetime", "time"}
"""Date and time inputs: Chromium edits them one part (month, day, year) at a
time, and Control+a selects no text in them: a wrong value is retyped from
the first part, clicked again as the run clicked into it."""
OPPOSITES = {frozenset(p) for p in (("prev", "next"), ("previous", "next"), ("back", "forward"), ("up", "down"),
                                    ("left", "right"), ("older", "newer"), ("earlier", "later"),
                                    ("decrease", "increase"), ("-", "+"), ("<", ">"), ("‹", "›"), ("«", "»"))}
"""Names of two controls that step a view opposite ways (a calendar's Prev
and Next): a click on one is undone by a click on the other, which then has
to be clicked once more for the step meant."""
ERROR_CLASS = re.compile(r"error|warning|invalid|danger", re.I)
"""A class token of an element that shows a site's refusal (`error`,
`system-message warning`, `is-invalid`, `alert-danger`)."""
LASTING = "the mistake left a lasting change in the site's data (not undone by the recovery)"


class RecoveryConfig(SourceConfig):
    """`sources.recovery:`: which mistakes, on how many seeds per template."""

    kinds: list[Kind] = Field(default_factory=lambda: list(KINDS), description="mistake kinds to make")
    seeds_per_template: int | None = Field(
        10, gt=0, description="the first N seeds of each template with a solver get a variant (null: all)"
    )
    include: list[str] | None = Field(None, description="only these template ids (default: every one with a solver)")


@dataclass(frozen=True)
class Mistake:
    kind: str
    step: int
    """The clean run's step the mistake is made in place of (then redone)."""
    update: dict[str, Any]
    """The mistaken action's fields over the original's (another point, option or text)."""
    right: str
    wrong: str
    where: str
    """The element acted on, in words, for the reflection."""
    skipped: tuple[int, ...] = ()
    """early-submit: the clean run's steps that fill the field (the click
    into it, the typing), left out before the mistake and acted as its recovery."""


def element_name(el: Element | None) -> str:
    """An element in words, as reflections name it."""
    if el is None:
        return "the page"
    return f"the {el.role} '{el.name[:40]}'" if el.name else f"the {el.role or el.tag}"


def candidates(t: Trajectory, kinds: list[str]) -> list[Mistake]:
    """Every mistake the clean run `t` offers, of the given kinds."""
    out: list[Mistake] = []
    if "typo" in kinds:
        for i, s in enumerate(t.steps):
            if s.action.name == "type" and s.action.text and len(s.action.text) >= 2 and i > 0:
                field_el = t.steps[i - 1].element if t.steps[i - 1].action.name == "click" else None
                out.append(Mistake("typo", i, {"text": typo(s.action.text)}, s.action.text,
                                   typo(s.action.text), element_name(field_el) if field_el else "the field"))
    for i, update, was, instead in near_misses(t):
        if "text" in update and "wrong-option" in kinds:
            out.append(Mistake("wrong-option", i, update, t.steps[i].action.text or "", update["text"], element_name(was)))
        elif "x" in update and "wrong-click" in kinds:
            out.append(Mistake("wrong-click", i, update, was.name, instead.name, instead.role or instead.tag))
    if "early-submit" in kinds:
        out += early_submits(t)
    return out


def _sends_form(t: Trajectory, j: int) -> bool:
    """Whether step `j` is a click on a button after which another URL
    loaded: a form sent to the site (MiniWoB's Submit, which loads nothing,
    is not one: its episode ends instead of the site refusing)."""
    s = t.steps[j]
    return (s.action.name == "click" and not s.error and s.element is not None and s.element.role == "button"
            and j + 1 < len(t.steps) and t.steps[j + 1].observation.url != s.observation.url)


def _filled_fields(t: Trajectory, j: int) -> list[tuple[int, int]]:
    """The empty text fields the clean run fills on the page of the form it
    sends at step `j`, as (the click into the field, the typing): back from
    `j` to another URL or an Enter (which sends a form itself)."""
    url, out = t.steps[j].observation.url, []
    for i in range(j - 1, 0, -1):
        s, before = t.steps[i], t.steps[i - 1]
        if s.observation.url != url or (s.action.name == "press" and (s.action.key or "").endswith("Enter")):
            break
        field_el = before.element
        if (s.action.name == "type" and s.action.text and not s.error and before.action.name == "click"
                and field_el is not None and field_el.role in TEXT_FIELDS and not field_el.value
                and before.observation.url == url):
            out.append((i - 1, i))
    return out[::-1]


def early_submits(t: Trajectory) -> list[Mistake]:
    """Every form the clean run sends, once for each empty text field it
    fills there first: the form sent without that field."""
    out = []
    for j in range(len(t.steps)):
        if not _sends_form(t, j):
            continue
        for click, typed in _filled_fields(t, j):
            field_el = t.steps[click].element
            label = field_el.name.rstrip(" :") if field_el is not None and field_el.name else ""
            out.append(Mistake("early-submit", j, {}, t.steps[typed].action.text or "", "",
                               f"'{label}'" if label else element_name(field_el), skipped=(click, typed)))
    return out


def reflection(m: Mistake, undo: str, refusal: str = "") -> str:
    """What went wrong and what undoes it, from the mistake and its elements
    (and, for an early submit, what the site said when it refused it)."""
    if m.kind == "early-submit":
        said = f" ({refusal[:100]!r})" if refusal else ""
        return f"Submitting without {m.where} was refused{said}: fill in {m.where} with '{m.right}' and submit again."
    if m.kind == "typo" and undo == "reclick":
        return (f"I typed '{m.wrong}' into {m.where} instead of '{m.right}'; click its first part again "
                f"and type '{m.right}'.")
    if m.kind == "typo":
        return f"I typed '{m.wrong}' into {m.where} instead of '{m.right}'; select its text and type '{m.right}'."
    if m.kind == "wrong-option":
        return f"I chose '{m.wrong}' in {m.where} instead of '{m.right}'; choose '{m.right}'."
    wrong, right = f"'{m.wrong}'" if m.wrong else f"another {m.where}", f"'{m.right}'" if m.right else "the right one"
    if undo == "back":
        return f"Clicking {wrong} opened the wrong page; go back and click {right}."
    if undo == "toggle":
        return f"I clicked {wrong} by mistake; click it again to undo it, then click {right}."
    if undo == "reopen":
        return f"Clicking {wrong} instead of {right} closed the list {right} was in; open it again and click {right}."
    if undo == "reverse":
        return (f"I clicked {wrong} instead of {right}, a step the other way; click {right} twice: "
                "to undo it, then as meant.")
    return f"I clicked {wrong} instead of {right}; click {right}."


def mark(steps: Iterable[Step], role: str, why: str | None = None) -> None:
    """Label `steps` with `role`; with `why`, a recovery's reflection, which
    is also the thought of a step that has none (synth/quality/mistakes.py
    labels the real mistakes it finds with this too)."""
    for step in steps:
        step.role = role  # type: ignore[assignment]
        if why:
            step.reflection = why
            if step.monologue is None:
                step.monologue = Monologue(thought=why)


def _mark(env: BrowserEnv, since: int, role: str, why: str | None = None) -> None:
    mark(env.steps[since:], role, why)


class NotRecovered(RuntimeError):
    """The state after the recovery is not the clean run's: the variant is dropped."""


def page_key(obs: Observation) -> str:
    """The page's state, compared between the clean prefix and the variant:
    the URL and, element by element in document order, its place in the tree
    (its parent's place), tag, role, name, value, checked state and focus.

    Not the element ids (which `state_key` reads): an id is the order in
    which one episode's snapshots first saw a node, so it counts the nodes
    the mistake showed (the wrong tab's panel, a menu, another page of
    results), not what the page shows; after any such mistake every node
    shown later has another id than in the clean run, on the same page."""
    place = {e.id: i for i, e in enumerate(obs.elements)}
    sig = "|".join(f"{place.get(e.parent) if e.parent is not None else ''}:{e.tag}:{e.role}:{e.name}:{e.value}"
                   f":{e.checked}:{e.focused}" for e in obs.elements)
    return hashlib.blake2b(f"{obs.url}\n{sig}".encode(), digest_size=8).hexdigest()


def _opposite(a: str, b: str) -> bool:
    """Whether controls named `a` and `b` step a view opposite ways."""
    def norm(name: str) -> str:
        name = name.strip().lower()
        return re.sub(r"[^a-z]", "", name) if re.search(r"[a-z]", name) else name
    return frozenset((norm(a), norm(b))) in OPPOSITES


def _shown(obs: Observation, el: Element) -> bool:
    """Whether the recorded element `el` is on the page (the same role and
    name, and the same selector where both have one)."""
    return any(e.role == el.role and e.name == el.name and (e.selector == el.selector or not e.selector
                                                           or not el.selector) for e in obs.elements)


def _opener(env: BrowserEnv, steps: list[ReplayStep], m: Mistake) -> int | None:
    """Where a wrong click picked from a popup that closed (a calendar's
    day): the clean run's last click before the mistake point on an element
    still shown, which opened the popup, if the element to click (named) is
    no longer shown, and the steps between were clicks in the popup (not
    typing: an autocomplete's entries come back only by typing). None elsewhere."""
    right = steps[m.step].target
    if env.obs is None or right is None or not right.name or _shown(env.obs, right):
        return None
    for j in range(m.step - 1, -1, -1):
        target = steps[j].target
        if steps[j].action.name != "click" or target is None:
            return None
        if _shown(env.obs, target):
            return j
    return None


async def _state(env: BrowserEnv) -> tuple[Any, str]:
    """The site's data state (None where it has none) and the page's state."""
    try:
        data = await env.site.state(env.page, env.task)
    except NotImplementedError:
        data = None
    return data, page_key(env.obs) if env.obs is not None else ""


async def _mistake(env: BrowserEnv, action: Action, expected: Element | None = None) -> None:
    """Act the mistake and label it; a mistake the browser could not act is no variant."""
    start = len(env.steps)
    await env.step(action, expected=expected)
    if env.steps[-1].error:
        raise NotRecovered(f"the mistake failed: {env.steps[-1].error}")
    _mark(env, start, "mistake")


async def _rest(env: BrowserEnv, rest: list[ReplayStep], expected: tuple[Any, str]) -> None:
    """After the recovery: the step just acted must have worked, the site's
    data and the page must be the clean run's at this point (a lasting side
    effect of the mistake fails here), then the rest of the clean run."""
    if env.steps[-1].error:
        raise NotRecovered(f"the step after the recovery failed: {env.steps[-1].error}")
    got = await _state(env)
    if got[0] != expected[0]:
        raise NotRecovered(LASTING)
    if got[1] != expected[1]:
        raise NotRecovered("the page after the recovery is not the clean run's page at that point")
    await act(env, rest, aim=True)
    if not env.finished:
        await env.settle()


async def _document(env: BrowserEnv) -> float:
    """Which document the page shows (its time origin: a new one per load)."""
    return await env.page.evaluate("() => performance.timeOrigin")


_BLOCKED = """origin => {
  // the same document: nothing was sent; the browser reports a blocked
  // submit by focusing the first field that fails its constraints
  if (performance.timeOrigin !== origin) return null;
  const el = document.activeElement;
  if (!el || !el.willValidate || !el.form || el.form.noValidate || !el.matches(":invalid")) return null;
  return el.validationMessage || null;
}"""


def _shows_error(e: Element) -> bool:
    return bool(e.name) and (e.role == "alert" or any(ERROR_CLASS.search(c) for c in e.html_class.split()))


def _message(obs: Observation, e: Element) -> str:
    """An error element's text without its own controls' names in front
    (Trac's "close" link before "Warning: ...")."""
    text = e.name
    for child in obs.elements:
        if child.parent == e.id and child.role in ("link", "button") and text.startswith(child.name):
            text = text[len(child.name):].lstrip()
    return text or e.name


async def refusal(env: BrowserEnv, before: Observation | None, document: float) -> str | None:
    """What the site said refusing the form just sent, or None if it did not
    visibly refuse: the browser's validation message of the field it
    stopped at (HTML5 constraints, the form not sent), else an error or
    warning on the page it answered with that `before` did not show."""
    blocked = await env.page.evaluate(_BLOCKED, document)
    if blocked:
        return blocked
    if env.obs is None:
        return None
    old = {e.name for e in before.elements if _shows_error(e)} if before is not None else set()
    new = [e for e in env.obs.elements if _shows_error(e) and e.name not in old]
    if not new:
        return None
    return _message(env.obs, min(new, key=lambda e: (not e.in_view, e.role != "alert", len(e.name))))


async def _act_undo(env: BrowserEnv, m: Mistake, undo: str, steps: list[ReplayStep]) -> None:
    """Act the undo `RecoverySource._undo` chose, before the right act
    (nothing for 'replace': the right act itself replaces the wrong choice)."""
    original = steps[m.step]
    if undo == "retype":
        await env.press("Control+a")
    elif undo == "back":
        await env.go_back()
    elif undo == "toggle":  # the wrong element clicked again
        await env.step(original.action.model_copy(update={"x": m.update["x"], "y": m.update["y"]}))
    elif undo == "reverse":  # the right control steps back what the wrong one stepped
        await env.step(original.action, expected=original.target)
    elif undo == "reclick":  # a date field: clicked again where the run clicked into it
        if m.step == 0 or steps[m.step - 1].action.name != "click":
            raise NotRecovered("no click into the date field to act again")
        await env.step(steps[m.step - 1].action, expected=steps[m.step - 1].target)
    elif undo == "reopen":  # the wrong pick closed the popup: opened again as the run opened it
        into = steps[_opener(env, steps, m)]
        await env.step(into.action, expected=into.target)


def _on_page(env: BrowserEnv, recorded: Element | None, what: str) -> Element:
    """The recorded element on the page as it is now (the same role and
    name, the same HTML id where it has one): acted by its id, so it is
    scrolled to wherever the refusal left it."""
    if recorded is None or env.obs is None:
        raise NotRecovered(f"{what} was not recorded")
    same = [e for e in env.obs.elements if e.role == recorded.role and e.name == recorded.name]
    found = [e for e in same if e.html_id == recorded.html_id] or same
    if not found:
        raise NotRecovered(f"{what} ({element_name(recorded)}) is not on the page that refused the form")
    return found[0]


def _as_dropped(t: Trajectory) -> None:
    """A variant whose mistake was not undone, or whose rest did not replay,
    is a dropped variant (rejected with the reason), not an error: errors
    count against the source's `max_failure_share` and are retried. Only a
    lost browser stays an error."""
    from synth.episode import lost_to_infrastructure

    if t.error is None or lost_to_infrastructure(t):
        return
    # "<source> <detail>: NotRecovered: <why> at recovery.py:NNN" -> "<why>"
    why = t.error.removeprefix(f"{t.source} {t.source_detail}: ")
    why = re.sub(r"^(?:NotRecovered|RuntimeError): | at [\w.]+\.py:\d+$", "", why)
    t.error, t.status = None, "rejected"
    t.verdict = Verdict(passed=False, reason=why)
    t.reject_reason = f"recovery: {why}"


@register_source
class RecoverySource(BrowserSource):
    kind: ClassVar[str] = "recovery"
    config_model: ClassVar[type[SourceConfig]] = RecoveryConfig
    replays: ClassVar[bool] = True  # a variant is the clean run's actions plus two or three: timers lifted as on replay
    episodes_per_run: ClassVar[int] = 3  # the clean run, the prefix to the mistake, the variant

    @classmethod
    def selects(cls, task: Task, config: SourceConfig) -> bool:
        include = getattr(config, "include", None)
        return task.solver is not None and (not include or task.template_id in include
                                            or task.template_id.split("/", 1)[-1] in include)

    def detail(self, task: Task) -> str:
        return f"{task.solver}:recovery"


    async def _episode(self, task: Task, policy: Any, detail: str) -> Trajectory:
        return await run_episode(await self.env(task), task, policy, source=self.kind, source_detail=detail,
                                 run_id=self.run_id, timeout_s=self.episode_timeout_s)

    def _dropped(self, task: Task, why: str) -> Trajectory:
        import time

        from synth.episode import record

        t = record(task, source=self.kind, source_detail=self.detail(task), verdict=Verdict(passed=False, reason=why),
                   error=None, started_at=time.time(), run_id=self.run_id)
        t.reject_reason = f"recovery: {why}"
        return t

    async def run(self, task: Task) -> Trajectory:
        from synth.solver import get_solver

        clean = await self._episode(task, get_solver(task.solver or ""), f"{task.solver}:clean")
        if clean.status != "accepted":
            return self._dropped(task, f"the solver's own run failed ({clean.reject_reason})")
        options = candidates(clean, list(self.config.kinds))  # type: ignore[attr-defined]
        if not options:
            return self._dropped(task, "no mistake point (no typed value, list, sibling or sent form to take instead)")
        m = random.Random(task.task_id).choice(options)
        steps = steps_of(clean)
        reference: dict[str, Any] = {}

        async def prefix(env: BrowserEnv, obs: Observation) -> None:
            await act(env, steps[: m.step + 1], aim=True)
            reference["state"] = await _state(env)

        ref = await self._episode(task, prefix, f"{task.solver}:prefix")
        if "state" not in reference:
            return self._dropped(task, f"the clean prefix did not replay ({ref.reject_reason})")
        undone: dict[str, str] = {}
        policy = (self._early_submit(m, steps, reference["state"]) if m.kind == "early-submit"
                  else self._variant(m, steps, reference["state"], undone))
        t = await self._episode(task, policy, f"{task.solver}:{m.kind}@{m.step}")
        _as_dropped(t)
        if undone.get("how") == "back":  # the wrong click opened another page: its own kind of mistake
            t.source_detail = t.source_detail.replace(":wrong-click@", ":wrong-page@")
            t.trajectory_id = trajectory_id(task.task_id, self.kind, t.source_detail)
        return t

    def _variant(self, m: Mistake, steps: list[ReplayStep], expected: tuple[Any, str], undone: dict[str, str]) -> Any:
        async def policy(env: BrowserEnv, obs: Observation) -> None:
            await act(env, steps[: m.step], aim=True)
            original = steps[m.step]
            url = env.page.url
            await _mistake(env, original.action.model_copy(update=m.update))
            undo = undone["how"] = await self._undo(env, m, url, steps)
            start = len(env.steps)
            if undo != "replace":
                await _act_undo(env, m, undo, steps)
                _mark(env, start, "recovery", reflection(m, undo))
                start = len(env.steps)
            await env.step(original.action, expected=original.target)
            if undo == "replace":
                _mark(env, start, "recovery", reflection(m, undo))  # the right act replaces the wrong choice
            await _rest(env, steps[m.step + 1:], expected)

        return policy

    @staticmethod
    def _early_submit(m: Mistake, steps: list[ReplayStep], expected: tuple[Any, str]) -> Any:
        """The form sent without the field `m.skipped` fills (the clean run's
        other steps up to the submit acted as recorded), kept only if the
        site refuses it visibly; then the field filled on the page it
        answered with, the form sent again, the state checked and the rest."""
        async def policy(env: BrowserEnv, obs: Observation) -> None:
            await act(env, [s for i, s in enumerate(steps[: m.step]) if i not in m.skipped], aim=True)
            before, shown, document = await _state(env), env.obs, await _document(env)
            submit, field_step = steps[m.step], steps[m.skipped[0]]
            await _mistake(env, submit.action, submit.target)
            said = await refusal(env, shown, document)
            if (await _state(env))[0] != before[0]:
                raise NotRecovered(LASTING)  # the site took the form: whatever it made stays
            if said is None:
                raise NotRecovered("the site did not refuse the early submit (no validation message, no error shown)")
            start = len(env.steps)
            await env.click(_on_page(env, field_step.target, "the field"))
            await env.type(steps[m.skipped[-1]].action.text or "")
            await env.click(_on_page(env, submit.target, "the submit button"))
            _mark(env, start, "recovery", reflection(m, "refill", said))
            await _rest(env, steps[m.step + 1:], expected)

        return policy

    @staticmethod
    async def _undo(env: BrowserEnv, m: Mistake, url_before: str, steps: list[ReplayStep]) -> str:
        """How the mistake is undone: 'back' (it navigated), 'toggle' (it
        checked something that clicking again unchecks), 'reverse' (it
        stepped the view the other way: the right control clicked once more),
        'reopen' (it picked from a popup, which closed: the run's click that
        opened it acted again), 'replace' (the right act replaces the wrong
        choice: tabs, radios, options), 'retype' (the text selected and typed over), 'reclick' (a
        date or time field, whose text is not selectable: clicked into again)."""
        if m.kind == "typo":
            field_el = env.steps[-1].element
            return "reclick" if field_el is not None and field_el.role in SEGMENTED else "retype"
        if m.kind == "wrong-option":
            return "replace"
        if env.page.url != url_before:
            return "back"
        last = env.steps[-1].element
        if last is not None and last.role in TOGGLES:
            return "toggle"
        if _opposite(m.right, m.wrong):
            return "reverse"
        if _opener(env, steps, m) is not None:
            return "reopen"
        return "replace"

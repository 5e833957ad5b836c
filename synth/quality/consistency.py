"""Consistency checks: is each step a sound training example?

Each check is a named flag on the trajectory (`consistency_flags`); a flagged
trajectory is rejected with the flags as its reason, and stays in the data.

- `target_missing`: a pointer action with no element under its point.
- `target_not_observed`: the action's element was not in the observation the
  action was taken on (the agent could not have seen it).
- `click_outside_target`: the recorded point is outside its element's box.
- `typed_text_ungrounded`: typed text the agent had no source for: it is not
  in the instruction, not on any page seen before it was typed (as words, not
  as a fragment of one: "7" is not grounded by "2017"), and not what the task
  asks to compute (below). A hallucinated value.
- `loop`: the same action repeated on the same page state (it did nothing the
  first time: noise that breaks the action-goal link, as Aguvis found).
- `too_many_steps`: more steps than the template allows.
- `step_error`: a step whose action failed.

Per template (a task template's `consistency:` field, `TemplateConsistency`):

    consistency:
      typed_text: computed           # the task asks to compute what is typed
      ignore: [loop]                 # flags recorded but not rejecting

`typed_text: computed` declares that what the agent types is computed from
what it sees (a sum, a count, a date moved by a week), so it appears on no
page. Typed text is then also grounded when it is the task's answer: one of
the values under the judge's `expected` fields (normalised as `string_match`
compares them), or, when the judge spec holds no expected value because the
judge reads the page (MiniWoB++'s own reward), the text typed last in a
trajectory the judge passed (that text is what the judge read and accepted).
Any other typed text still has to be seen. Without the declaration the
judge's expected values ground nothing: a solver that typed them without
having seen them read the judge, not the page.

`ignore` is the per-template form of the pipeline's
`quality.consistency.ignore`: the flags are still recorded, they do not reject
this template's trajectories. Prefer a declaration that says why (such as
`typed_text: computed`) to silencing a flag.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import json
from typing import Any, Collection, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.schema import POINTER_ACTIONS, Observation, Step, Trajectory

FLAGS = (
    "target_missing",
    "target_not_observed",
    "click_outside_target",
    "typed_text_ungrounded",
    "answer_ungrounded",
    "loop",
    "too_many_steps",
    "step_error",
)


class TemplateConsistency(BaseModel):
    """A template's `consistency:` field (see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    typed_text: Literal["seen", "computed"] = Field(
        "seen",
        description="seen: typed text must be in the instruction or on a page seen before; computed: the task "
        "asks to compute what is typed, so the task's answer is grounded too",
    )
    ignore: list[str] = Field(default_factory=list, description="flags recorded but not rejecting")

    @field_validator("ignore")
    @classmethod
    def _known_flags(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(FLAGS))
        if unknown:
            raise ValueError(f"unknown flags {unknown}; known: {', '.join(FLAGS)}")
        return v


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def grounded(text: str, haystack: str) -> bool:
    """Whether typed text comes from what the agent read: every word of it
    (case aside) is a word there, not a fragment of one ("05/20/2010" grounds
    "2010-05-20"; "2017" does not ground "7")."""
    words = set(_words(text))
    return words <= set(_words(haystack))  # no words (punctuation, spaces): nothing to hallucinate


def expected_values(judge: dict[str, Any]) -> list[str]:
    """The values under a judge spec's `expected` fields (any depth, inner
    judges of all_of too), as text."""
    out: list[str] = []

    def leaves(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                leaves(x)
        elif isinstance(v, list):
            for x in v:
                leaves(x)
        elif isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out.append(str(v))

    def walk(spec: Any) -> None:
        if not isinstance(spec, dict):
            return
        if "expected" in spec:
            leaves(spec["expected"])
        for sub in spec.get("judges") or []:
            walk(sub)

    walk(judge)
    return out


def computed_answers(traj: Trajectory) -> tuple[set[str], int | None]:
    """What a computed task's answer is: the judge's expected values
    (normalised), and, when the judge holds none, the index of the last typed
    step of a judge-passed trajectory (see the module doc)."""
    from synth.judges import normalise_text

    try:
        judge = json.loads(traj.task_config).get("judge") or {}
    except (ValueError, AttributeError):
        judge = {}
    answers = {normalise_text(v) for v in expected_values(judge)}
    if answers or not traj.verdict.passed:
        return answers, None
    typed = [i for i, s in enumerate(traj.steps) if s.action.name == "type" and s.action.text]
    return answers, typed[-1] if typed else None


def page_text(obs: Observation) -> str:
    return " ".join(f"{e.name} {e.value or ''}" for e in obs.elements)


def state_key(obs: Observation) -> str:
    sig = "|".join(f"{e.id}:{e.name}:{e.value}:{e.checked}:{e.focused}" for e in obs.elements)
    return hashlib.blake2b(f"{obs.url}\n{sig}".encode(), digest_size=8).hexdigest()


def _action_key(step: Step) -> str:
    a = step.action
    coords = tuple(round(v, 2) if v is not None else None for v in (a.x, a.y, a.x2, a.y2, a.dx, a.dy))
    return f"{a.name}{coords}{a.text!r}{a.key!r}"


def step_flags(step: Step, instruction: str, seen_text: str, answers: Collection[str] = ()) -> set[str]:
    """Flags one step raises on its own. `answers`: what the task asks to
    compute (normalised), grounded though no page shows it."""
    flags: set[str] = set()
    a, obs = step.action, step.observation
    if step.error:
        flags.add("step_error")
    if a.name in POINTER_ACTIONS and not step.error:
        if step.element is None:
            flags.add("target_missing")
        else:
            if obs.element(step.element.id) is None:
                flags.add("target_not_observed")
            if a.x is not None and a.y is not None:
                x, y = obs.denormalise(a.x, a.y)
                if not step.element.box.contains(x, y):
                    flags.add("click_outside_target")
    if a.name in ("type", "answer") and a.text and not grounded(a.text, instruction + " " + seen_text):
        if not answers or _normalised(a.text) not in answers:
            flags.add("typed_text_ungrounded" if a.name == "type" else "answer_ungrounded")
    return flags


def _normalised(text: str) -> str:
    from synth.judges import normalise_text

    return normalise_text(text)


def check(traj: Trajectory, max_steps: int | None = None, rules: TemplateConsistency | None = None) -> list[str]:
    """All flags of a trajectory, in FLAGS order. `rules`: its template's
    `consistency:` declaration (`typed_text: computed` grounds the answer)."""
    flags: set[str] = set()
    seen_text = ""
    repeats: set[tuple[str, str]] = set()
    answers: set[str] = set()
    last_typed = None
    if rules is not None and rules.typed_text == "computed":
        answers, last_typed = computed_answers(traj)
    for i, step in enumerate(traj.steps):
        seen_text += " " + page_text(step.observation)
        mine = answers | ({_normalised(step.action.text or "")} if i == last_typed else set())
        if step.role != "mistake":  # a recovery variant's deliberate mistake is wrong by design
            flags |= step_flags(step, traj.instruction, seen_text, mine)
        key = (state_key(step.observation), _action_key(step))
        if key in repeats and step.action.name not in ("answer", "done"):
            flags.add("loop")
        repeats.add(key)
    if max_steps is not None and sum(s.role == "normal" for s in traj.steps) > max_steps:
        flags.add("too_many_steps")  # a recovery variant's mistake and recovery are not counted
    return [f for f in FLAGS if f in flags]


def ungrounded_typing(traj: Trajectory) -> list[int]:
    """The type steps that raise `typed_text_ungrounded` (as `check` finds
    them, for a template without a `consistency:` declaration)."""
    seen_text, out = "", []
    for i, step in enumerate(traj.steps):
        seen_text += " " + page_text(step.observation)
        if step.role != "mistake" and step.action.name == "type" \
                and "typed_text_ungrounded" in step_flags(step, traj.instruction, seen_text):
            out.append(i)
    return out


@dataclass(frozen=True)
class ConsistencyCheck:
    """A quality gate: adds `consistency_flags` to each trajectory.

    `max_steps` maps template ids to their step bound; `ignore` names flags
    that are recorded but do not reject; `templates` maps template ids to
    their `consistency:` declarations (their own `ignore` adds to the gate's)."""

    max_steps: dict[str, int] = field(default_factory=dict)
    ignore: frozenset[str] = frozenset()
    templates: dict[str, TemplateConsistency] = field(default_factory=dict)

    def __call__(self, trajectories: Iterable[Trajectory]) -> Iterator[Trajectory]:
        for t in trajectories:
            t.consistency_flags = check(t, self.max_steps.get(t.template_id), self.templates.get(t.template_id))
            yield t

    def rejects(self, t: Trajectory) -> list[str]:
        rules = self.templates.get(t.template_id)
        ignore = self.ignore | set(rules.ignore if rules is not None else ())
        return [f for f in t.consistency_flags if f not in ignore]

"""Real mistakes and their corrections, found in a recorded trajectory.

A recovery variant (synth/recovery.py) makes its mistake on purpose and knows
which steps are the mistake and the recovery. A model or a person acting
(the LLM agent, a labeler) makes real ones and corrects them; such a
trajectory passes its judge, and without labels its mistake would be a
training target, its typed slip would be flagged `typed_text_ungrounded`,
and minimality might remove the correction. This module finds, from the
recorded steps alone (actions, their target elements, typed text, chosen
options, the observations before and after each step), the patterns that are
a mistake and its correction beyond doubt, and labels them as recovery
variants are labelled: `role` 'mistake' and 'recovery', and on the first
recovery step a `reflection` written from the kind and the elements (in
synth.recovery's words).

The patterns, each on one page (no navigation in between unless it is the
pattern), with only passive steps (scrolls, hovers, failed steps) between:

- `typo`: text typed into a field, then that field's text removed (a select
  all, backspaces: the recovery) and other text typed, the field then holding
  exactly the new text. Nothing but editing keys on that field in between (an
  Enter would have sent the first text: then it was used, not a slip).
- `wrong-option`: an option chosen in a list, then at once another one in
  the same list (the recovery), the list's value changed both times.
- `wrong-click`: a checkbox (or switch) ticked and at once unticked, or the
  other way (the second click is the recovery); a radio button chosen and at
  once another of its group (the first one observed unchecked again).
- `wrong-page`: a click that opened another page, then at once a go back (or
  a navigation) to the page it left (the recovery). Not when the same element
  is clicked again on that page, nor when a later typed text or answer is
  found only on the page the click opened: then it was read, so needed.

Two patterns that share a step (a chain: three options in a row, a box
ticked three times) are left unlabelled: which step was the mistake is not
certain. A trajectory that has labels already (a recovery variant) is left
as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator
from urllib.parse import urldefrag

from synth.quality.consistency import grounded, page_text
from synth.recovery import TOGGLES, Mistake, element_name, mark, reflection
from synth.schema import Element, Observation, Step, Trajectory

KINDS = ("typo", "wrong-option", "wrong-click", "wrong-page")
PASSIVE = {"scroll", "hover"}
"""Steps that change nothing a pattern depends on."""
EDIT_KEY = re.compile(r"(?:(?:Control|Meta|ControlOrMeta)\+(?:Shift\+)?[aA]|(?:(?:Control|Alt|Shift)\+)*"
                      r"(?:Backspace|Delete|Home|End|ArrowLeft|ArrowRight))")
"""Keys that select or remove a field's text, nothing else (not Enter, not Tab)."""
SELECT_ALL = re.compile(r"(?:Control|Meta|ControlOrMeta)\+[aA]")


@dataclass(frozen=True)
class Detected:
    """One mistake and the steps that correct it."""

    kind: str
    mistake: tuple[int, ...]
    recovery: tuple[int, ...]
    reflection: str

    @property
    def steps(self) -> set[int]:
        return {*self.mistake, *self.recovery}


# ---------------------------------------------------------------- reading steps


def _acts(step: Step) -> bool:
    return step.error is None and step.action.name not in PASSIVE


def _next_act(t: Trajectory, i: int) -> int | None:
    """The first step after `i` that acts."""
    return next((k for k in range(i + 1, len(t.steps)) if _acts(t.steps[k])), None)


def _prev_act(t: Trajectory, i: int) -> int | None:
    return next((k for k in range(i - 1, -1, -1) if _acts(t.steps[k])), None)


def _after(t: Trajectory, i: int) -> Observation | None:
    """The observation after step `i` (None after the last step)."""
    return t.steps[i + 1].observation if i + 1 < len(t.steps) else None


def _same(a: Element | None, b: Element | None) -> bool:
    """The same element of one document: element ids are stable within one."""
    if a is None or b is None:
        return False
    if a.selector and b.selector and a.selector != b.selector:
        return False
    return a.id == b.id and a.role == b.role and a.name == b.name


def _in(obs: Observation | None, el: Element) -> Element | None:
    """`el` as `obs` shows it (its value, checked state)."""
    if obs is None:
        return None
    return next((e for e in obs.elements if e.id == el.id and e.role == el.role and e.name == el.name), None)


def _doc(url: str) -> str:
    return urldefrag(url)[0]


def _one_page(t: Trajectory, first: int, last: int) -> bool:
    """Steps `first`..`last` and the observation after `last` are on one page."""
    if last + 1 >= len(t.steps):
        return False
    return len({_doc(t.steps[k].observation.url) for k in range(first, last + 2)}) == 1


def _on(t: Trajectory, k: int, name: str, el: Element | None) -> bool:
    s = t.steps[k]
    return s.action.name == name and _same(s.element, el)


def _holds(value: str | None, text: str) -> bool:
    """Whether a field showing `value` holds exactly `text` (a password
    field shows one '*' per character)."""
    return value == text or (value is not None and len(value) == len(text) > 0 and set(value) == {"*"})


def _quoted(el: Element) -> str:
    return f"'{el.name[:40]}'" if el.name else ""


# ---------------------------------------------------------------- the patterns


def typos(t: Trajectory) -> Iterator[Detected]:
    for i, s in enumerate(t.steps):
        field = s.element
        if s.action.name != "type" or not s.action.text or not _acts(s) or field is None:
            continue
        between, j = [], None
        for k in range(i + 1, len(t.steps)):
            step = t.steps[k]
            if not _acts(step):
                continue
            if _on(t, k, "type", field):
                j = k
            elif (_on(t, k, "click", field) or _on(t, k, "double_click", field)
                  or (_on(t, k, "press", field) and EDIT_KEY.fullmatch(step.action.key or ""))):
                between.append(k)
                continue
            break
        if j is None or not _one_page(t, i, j):
            continue
        wrong, right = s.action.text, t.steps[j].action.text or ""
        first, fixed = _in(_after(t, i), field), _in(_after(t, j), field)
        if wrong == right or first is None or fixed is None or not _holds(fixed.value, right):
            continue
        if first.value == fixed.value or (wrong not in (first.value or "") and set(first.value or "") != {"*"}):
            continue
        m = Mistake("typo", i, {}, right, wrong, element_name(field))
        selected = any(SELECT_ALL.fullmatch(t.steps[k].action.key or "") for k in between)
        why = (reflection(m, "retype") if selected
               else f"I typed '{wrong}' into {m.where} instead of '{right}'; clear it and type '{right}'.")
        # as in a recovery variant: the steps that undo the typing are the
        # recovery, the right text typed after them is a normal step
        yield Detected("typo", (i,), tuple(between) or (j,), why)


def wrong_options(t: Trajectory) -> Iterator[Detected]:
    for i, s in enumerate(t.steps):
        box = s.element
        if s.action.name != "select" or not _acts(s) or box is None:
            continue
        j = _next_act(t, i)
        if j is None or not _on(t, j, "select", box) or not _one_page(t, i, j):
            continue
        wrong, right = s.action.text or "", t.steps[j].action.text or ""
        first, fixed = _in(_after(t, i), box), _in(_after(t, j), box)
        if wrong == right or first is None or fixed is None or first.value == fixed.value:
            continue
        m = Mistake("wrong-option", i, {}, right, wrong, element_name(box))
        yield Detected("wrong-option", (i,), (j,), reflection(m, "replace"))


def _then(t: Trajectory, j: int) -> str:
    """The name of the element the next step after a recovery clicks, as the
    reflection names what comes next ('' when it does something else)."""
    k = _next_act(t, j)
    if k is None or t.steps[k].action.name != "click" or t.steps[k].element is None:
        return ""
    return t.steps[k].element.name[:40]


def wrong_clicks(t: Trajectory) -> Iterator[Detected]:
    """A box ticked and at once unticked; a radio button chosen and at once
    another of its group."""
    for i, s in enumerate(t.steps):
        el = s.element
        if s.action.name != "click" or not _acts(s) or el is None or el.role not in TOGGLES | {"radio"}:
            continue
        j = _next_act(t, i)
        if j is None or t.steps[j].action.name != "click" or t.steps[j].element is None or not _one_page(t, i, j):
            continue
        before, first = _in(s.observation, el), _in(_after(t, i), el)
        if before is None or first is None or before.checked is None or first.checked == before.checked:
            continue
        other = t.steps[j].element
        if el.role in TOGGLES and _same(other, el):
            undone = _in(_after(t, j), el)
            if undone is not None and undone.checked == before.checked:
                yield Detected("wrong-click", (i,), (j,), _toggle_reflection(el, _then(t, j)))
        elif el.role == "radio" and other.role == "radio" and not _same(other, el) and first.checked:
            chosen, left = _in(_after(t, j), other), _in(_after(t, j), el)
            if chosen is not None and left is not None and chosen.checked and left.checked is False:
                m = Mistake("wrong-click", i, {}, other.name, el.name, el.role)
                yield Detected("wrong-click", (i,), (j,), reflection(m, "replace"))


def _toggle_reflection(el: Element, then: str) -> str:
    if then:
        return reflection(Mistake("wrong-click", 0, {}, then, el.name, el.role), "toggle")
    return f"I clicked {_quoted(el) or element_name(el)} by mistake; click it again to undo it."


def wrong_pages(t: Trajectory) -> Iterator[Detected]:
    for i, s in enumerate(t.steps):
        el, after = s.element, _after(t, i)
        if s.action.name != "click" or not _acts(s) or el is None or after is None:
            continue
        left = _doc(s.observation.url)
        if _doc(after.url) == left:
            continue
        j = _next_act(t, i)
        if j is None:
            continue
        back = t.steps[j].action
        returned = _after(t, j)
        if not (back.name == "go_back" or (back.name == "navigate" and _doc(back.text or "") == left)):
            continue
        if returned is None or _doc(returned.url) != left:
            continue
        if _clicked_elsewhere(t, i, left) or _read_there(t, i, j):
            continue
        then = _then(t, j)
        if then:
            why = reflection(Mistake("wrong-click", i, {}, then, el.name, el.role), "back")
        else:
            why = f"Clicking {_quoted(el) or element_name(el)} opened the wrong page; go back."
        yield Detected("wrong-page", (i,), (j,), why)


def _clicked_elsewhere(t: Trajectory, i: int, url: str) -> bool:
    """Whether the element step `i` clicked is clicked again on that page
    (after going back the document may be new: compared by role and name)."""
    el = t.steps[i].element
    return any(k != i and s.action.name == "click" and s.element is not None and _doc(s.observation.url) == url
               and (s.element.role, s.element.name) == (el.role, el.name) for k, s in enumerate(t.steps))


def _read_there(t: Trajectory, i: int, j: int) -> bool:
    """Whether text typed or answered after `j` is found on the page step `i`
    opened (the observations of steps i+1..j) and on no other page seen
    before it, nor in the instruction: then that page was read, not a slip."""
    seen, there = t.instruction, ""
    for k, s in enumerate(t.steps):
        if i < k <= j:
            there += " " + page_text(s.observation)
        else:
            seen += " " + page_text(s.observation)
        text = s.action.text
        if k > j and s.action.name in ("type", "answer") and text and not grounded(text, seen):
            if grounded(text, seen + there):
                return True
    return False


PATTERNS: tuple[Callable[[Trajectory], Iterator[Detected]], ...] = (typos, wrong_options, wrong_clicks, wrong_pages)


# ---------------------------------------------------------------- finding and labelling


def detect(t: Trajectory) -> list[Detected]:
    """The unambiguous mistake-and-correction patterns of `t`, by first step;
    none for a trajectory whose steps are labelled already."""
    if any(s.role != "normal" for s in t.steps):
        return []
    found = [d for pattern in PATTERNS for d in pattern(t)]
    claims: dict[int, int] = {}
    for d in found:
        for k in d.steps:
            claims[k] = claims.get(k, 0) + 1
    return sorted((d for d in found if all(claims[k] == 1 for k in d.steps)), key=lambda d: min(d.steps))


def labels(found: list[Detected]) -> dict[int, tuple[str, str | None]]:
    """Step index -> (role, reflection): the reflection on each mistake's
    first recovery step."""
    out: dict[int, tuple[str, str | None]] = {}
    for d in found:
        out.update({k: ("mistake", None) for k in d.mistake})
        out.update({k: ("recovery", None) for k in d.recovery})
        out[d.recovery[0]] = ("recovery", d.reflection)
    return out


def label(t: Trajectory, marks: dict[int, tuple[str, str | None]]) -> None:
    """Write `marks` into `t`'s steps as synth.recovery labels its variants."""
    for k, (role, why) in marks.items():
        mark([t.steps[k]], role, why)

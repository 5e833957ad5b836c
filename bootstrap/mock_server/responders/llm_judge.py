"""Answers synth's LLM-judge prompt (synth/llm_judge.py) by rules over its
text, so the real client and the verdict parsing run in tests. The verdict:

* every `must show: "X"` line of the rubric needs X on the final page;
* an answer (not "(no answer)") must occur on the final page (the agent read
  it there), and equal a rubric's `answer: "X"` if it gives one;
* with neither an answer nor a `must show`, every "quoted" phrase of the task
  must be on the final page.

Text compares case-folded with whitespace collapsed. With the `wrong` fault
the verdict is flipped; a rubric line `mock: prose` makes the reply prose
instead of JSON (a model that ignores the format) until the repair turn,
`mock: broken json` JSON cut off (every time), `mock: no reason` a JSON
verdict without a reason. The server's own `malformed` fault also gives a
reply that is not JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bootstrap.mock_server.responders import responder

MARKER = "<synth-llm-judge>"


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if part.get("type") == "text")


def _sections(text: str) -> dict[str, str]:
    """`## Name` headed sections of the prompt, by name (without a count in parentheses)."""
    out = {}
    for m in re.finditer(r"^## ([^\n(]+?)(?: \([^)]*\))?\n(.*?)(?=^## |\Z)", text, re.M | re.S):
        out[m.group(1).strip()] = m.group(2).strip()
    return out


def _fold(text: str) -> str:
    return " ".join(text.lower().split())


def decide(sections: dict[str, str]) -> tuple[bool, str]:
    """The rules of the module doc: (passed, reason)."""
    rubric = sections.get("Rubric", "")
    page = _fold(sections.get("Final page", "").partition("Text:")[2])
    answer = sections.get("Answer", "(no answer)")
    answer = None if answer == "(no answer)" else answer
    shown = re.findall(r'must show: "([^"]+)"', rubric, re.I)
    problems = [f'"{x}" is not on the final page' for x in shown if _fold(x) not in page]
    if answer is not None:
        if _fold(answer) not in page:
            problems.append(f"the answer {answer!r} does not appear on the final page")
        expected = re.search(r'answer: "([^"]+)"', rubric, re.I)
        if expected and _fold(expected.group(1)) != _fold(answer):
            problems.append(f"the answer {answer!r} is not {expected.group(1)!r}")
    elif not shown:
        quoted = re.findall(r'"([^"]+)"', sections.get("Task", ""))
        problems += [f'"{x}" from the task is not on the final page' for x in quoted if _fold(x) not in page]
    if problems:
        return False, "; ".join(problems) + "."
    what = f"the answer {answer!r} is on the final page" if answer is not None else "the final page shows the result"
    return True, what + "."


@responder(priority=4)
def llm_judge(request: dict[str, Any]) -> str | None:
    messages = request.get("messages") or []
    if not messages or MARKER not in _text(messages[0]):
        return None
    user = next(_text(m) for m in messages if m.get("role") == "user")  # the evidence, not a repair turn
    sections = _sections(user)
    rubric = sections.get("Rubric", "")
    repairing = len(messages) > 2
    if "mock: prose" in rubric and not repairing:
        return "The agent seems to have done it, I think it passes."
    if "mock: broken json" in rubric:
        return '{"verdict": "pass", "reason": "the page shows it"'  # cut off, every time
    passed, reason = decide(sections)
    if request.get("mock_fault") == "wrong":
        passed, reason = not passed, "(deliberately wrong) " + reason
    if "mock: no reason" in rubric:
        return json.dumps({"verdict": "pass" if passed else "fail"})
    return json.dumps({"verdict": "pass" if passed else "fail", "reason": reason})

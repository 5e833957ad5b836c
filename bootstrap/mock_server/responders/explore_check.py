"""Answers synth's instruction check (synth/explore/check.py) by a rule, so
the real client, the verdict parsing and its repair turn run in tests: the
instruction and the trajectory agree when every "quoted" phrase and every
number of the instruction occurs in the actions, the evidence or the answer
(case-folded, whitespace collapsed, double quotes dropped). With the `wrong` fault the verdict is
flipped; the server's `malformed` fault gives a reply that is not JSON."""

from __future__ import annotations

import json
import re
from typing import Any

from bootstrap.mock_server.responders import responder

MARKER = "<synth-explore-check>"


def _fold(text: str) -> str:
    """Case and spacing folded, double quotes (and their JSON escapes) dropped:
    the writer names a heading 'Results for "QLED"' as "Results for QLED"."""
    return " ".join(text.replace('\\"', " ").replace('"', " ").lower().split())


def _sections(text: str) -> dict[str, str]:
    return {m.group(1).strip(): m.group(2).strip()
            for m in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)}


@responder(priority=20)
def explore_check(request: dict[str, Any]) -> str | None:
    messages = request.get("messages") or []
    if not messages or MARKER not in str(messages[0].get("content", "")):
        return None
    sections = _sections(str(messages[1].get("content", "")))
    instruction = sections.get("Instruction", "")
    done = _fold(" ".join(sections.get(k, "") for k in ("Actions", "Evidence", "Answer")))
    named = re.findall(r'"([^"]+)"', instruction) + re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", instruction)
    missing = [n for n in named if _fold(n) not in done]
    agree = not missing
    if request.get("mock_fault") == "wrong":
        agree = not agree
    reason = (f"the trajectory never touches {missing[0]!r}, which the instruction names" if missing
              else "every value the instruction names is in what the trajectory did")
    return json.dumps({"verdict": "pass" if agree else "fail", "reason": reason})

"""Answers synth's hindsight instruction writer (synth/explore/llm.py): the
draft reworded by rules (so the real client, cache and the check that the
reply names every checked value run in tests). With the `wrong` fault the
reply drops the draft's last word (a value the judge checks)."""

from __future__ import annotations

import re
from typing import Any

from bootstrap.mock_server.responders import responder

MARKER = "<synth-explore-writer>"
REWORDS = [(r"^Open the ", "Go to the "), (r"^Set the ", "Change the "), (r"^Add an? ", "Create a new "),
           (r"^Remove ", "Delete "), (r"^Search for ", "Look up "),
           (r"^What is ", "What's ")]


@responder(priority=20)
def explore_writer(request: dict[str, Any]) -> str | None:
    messages = request.get("messages") or []
    if not messages or MARKER not in str(messages[0].get("content", "")):
        return None
    draft = re.search(r"^## Draft\n(.*)$", str(messages[-1].get("content", "")), re.M)
    text = draft.group(1).strip() if draft else ""
    for pattern, repl in REWORDS:
        text = re.sub(pattern, repl, text)
    if request.get("mock_fault") == "wrong":
        text = text.rsplit(" ", 1)[0]
    return text if text.endswith(("?", ".", "!")) else text + "."

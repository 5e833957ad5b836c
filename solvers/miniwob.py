"""Programmatic solvers for MiniWoB++ tasks.

Each reads the instruction (MiniWoB's utterance) and the compact snapshot, and
acts only through BrowserEnv, so every click and keystroke is recorded. They
are checked against MiniWoB's own reward code (tests/test_solvers_miniwob.py).
"""

from __future__ import annotations

import re

from solvers import register_solver
from synth.env import BrowserEnv
from synth.schema import Observation


def quoted(instruction: str) -> list[str]:
    """The double-quoted strings of an instruction, in order."""
    return re.findall(r'"([^"]*)"', instruction)


@register_solver("miniwob.click-button")
async def click_button(env: BrowserEnv, obs: Observation) -> None:
    (label,) = quoted(env.instruction)
    await env.click(obs.find(label, role="button"))

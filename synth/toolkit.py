"""What most solvers need, for any site: read the instruction, find an
element relative to another, fill a field as a person does, search, page
through results. Every helper acts only through BrowserEnv, so each action
is recorded.

    from synth import toolkit
    from synth.solver import register_solver

    @register_solver("mybooks.book-price")
    async def book_price(env, obs):
        title = toolkit.parse(r"What does (.+) cost\\?", env.instruction)[1]
        obs = await toolkit.search(env, obs, title)
        obs = await toolkit.click_through_pages(env, obs, title)
        await env.submit_answer(obs.find(html_class="price").name)

Elements are found with `Observation.find(text, role=..., html_id=...,
html_class=...)`; `synth sites snapshot SITE URL` prints what a solver sees.
"""

from __future__ import annotations

import re
from typing import Any

from synth.env import BrowserEnv
from synth.schema import Element, Observation

__all__ = ["parse", "after", "fill", "search", "click_through_pages"]


def parse(pattern: str, instruction: str) -> re.Match[str]:
    """Match the whole instruction (whitespace collapsed) against `pattern`,
    or raise ValueError quoting both: a solver must not guess."""
    m = re.fullmatch(pattern, " ".join(instruction.split()), flags=re.S)
    if m is None:
        raise ValueError(f"instruction {instruction!r} does not match {pattern!r}")
    return m


def after(obs: Observation, anchor: Element, **criteria: Any) -> Element:
    """The first element after `anchor` in document order matching
    `criteria` (the field after its label, the button in a row)."""
    start = obs.elements.index(anchor)
    later = [e for e in obs.find_all(**criteria) if obs.elements.index(e) > start]
    if not later:
        raise LookupError(f"no element matches {criteria} after [{anchor.id}] {anchor.name!r}")
    return later[0]


async def fill(env: BrowserEnv, field: Element, text: str) -> Observation:
    """Click into a field and type, replacing what it held (select all
    first), as a person would."""
    await env.click(field)
    if field.value:
        await env.press("Control+A")
    return await env.type(text)


async def search(env: BrowserEnv, obs: Observation, text: str, box: Element | None = None) -> Observation:
    """Type into the search box (the page's first `searchbox` unless given)
    and press Enter."""
    await fill(env, box or obs.find(role="searchbox"), text)
    return await env.press("Enter")


async def click_through_pages(
    env: BrowserEnv, obs: Observation, text: str, next_link: str = "Next", **criteria: Any
) -> Observation:
    """Click the link named `text`, following the `next_link` link from page
    to page of the results until it shows."""
    while True:
        found = obs.find_all(text, role="link", **criteria)
        if found:
            return await env.click(found[0])
        nxt = obs.find_all(next_link, role="link")
        if not nxt:
            raise LookupError(f"no link {text!r} on any page of the results")
        obs = await env.click(nxt[0])

"""Solvers for the Trac prototypes (apps/trac/templates), acting only
through BrowserEnv as a person does: the search box's quickjump (`#12` opens
ticket 12), the ticket page's "Modify Ticket" form, "New Ticket"."""

from __future__ import annotations

import re

from synth import toolkit
from synth.env import BrowserEnv
from synth.schema import Observation
from synth.solver import register_solver


async def open_ticket(env: BrowserEnv, obs: Observation, number: str) -> Observation:
    """Type `#N` into the search box: Trac jumps straight to the ticket."""
    obs = await toolkit.search(env, obs, f"#{number}", box=obs.find("Search:", role="textbox"))
    if f"/ticket/{number}" not in obs.url:
        raise RuntimeError(f"searching #{number} led to {obs.url}, not the ticket")
    return obs


async def modify(env: BrowserEnv, obs: Observation) -> Observation:
    """Unfold the "Modify Ticket" section of a ticket page (folded by default)."""
    if not obs.find_all("Summary:", role="textbox"):
        obs = await env.click(obs.find("Modify Ticket", role="link"))
    return obs


async def submit(env: BrowserEnv, obs: Observation) -> Observation:
    """Submit the ticket form; Trac answers with the ticket page again, or
    with the form and a warning."""
    obs = await env.click(obs.find("Submit changes", role="button"))
    warnings = [e.name for e in obs.find_all(html_class="warning") if e.name]
    if warnings:
        raise RuntimeError(f"Trac refused the change: {warnings}")
    return obs


@register_solver("trac.ticket-owner")
async def ticket_owner(env: BrowserEnv, obs: Observation) -> None:
    number = toolkit.parse(r"Who owns ticket #(\d+)\? Answer with the owner's full name\.", env.instruction)[1]
    obs = await open_ticket(env, obs, number)
    owner = toolkit.after(obs, obs.find("Owned by:", role="rowheader"))
    await env.submit_answer(owner.name)


@register_solver("trac.find-ticket")
async def find_ticket(env: BrowserEnv, obs: Observation) -> None:
    summary = toolkit.parse(r'Which ticket is titled "(.+)"\? Answer with its number, like #12\.', env.instruction)[1]
    obs = await toolkit.search(env, obs, f'"{summary}"', box=obs.find("Search:", role="textbox"))
    for link in obs.find_all(role="link"):  # "#107: task: Clean up logging (new)", "... (closed: fixed)"
        m = re.fullmatch(r"(#\d+): \w+: (.+) \((\w+)(?:: \w+)?\)", link.name)
        if m and m[2] == summary:
            await env.submit_answer(m[1])
            return
    raise LookupError(f"no search result titled {summary!r}")


@register_solver("trac.create-ticket")
async def create_ticket(env: BrowserEnv, obs: Observation) -> None:
    kind, component, priority, summary = toolkit.parse(
        r'Create an? (\w+) ticket in the (.+) component with (\w+) priority and the summary "(.+)"\.', env.instruction
    ).groups()
    obs = await env.click(obs.find("NEW TICKET", role="link"))
    obs = await toolkit.fill(env, obs.find("Summary:", role="textbox"), summary)
    obs = await env.select(obs.find("Type:", role="combobox"), kind)
    obs = await env.select(obs.find("Priority:", role="combobox"), priority)
    obs = await env.select(obs.find("Component:", role="combobox"), component)
    obs = await env.click(obs.find("Create ticket", role="button"))
    if "/ticket/" not in obs.url:
        raise RuntimeError(f"the ticket was not created: still on {obs.url}")
    await env.done()


@register_solver("trac.comment-on-ticket")
async def comment_on_ticket(env: BrowserEnv, obs: Observation) -> None:
    text, number = toolkit.parse(r'Add the comment "(.+)" to ticket #(\d+)\.', env.instruction).groups()
    obs = await open_ticket(env, obs, number)
    obs = await toolkit.fill(env, obs.find(role="textbox", html_id="comment"), text)
    await submit(env, obs)
    await env.done()


@register_solver("trac.resolve-ticket")
async def resolve_ticket(env: BrowserEnv, obs: Observation) -> None:
    number, resolution = toolkit.parse(r"Close ticket #(\d+) with the resolution (\w+)\.", env.instruction).groups()
    obs = await modify(env, await open_ticket(env, obs, number))
    radio = obs.find("resolve", role="radio")
    obs = await env.click(radio)
    obs = await env.select(toolkit.after(obs, obs.find("resolve", role="radio"), role="combobox"), resolution)
    await submit(env, obs)
    await env.done()


@register_solver("trac.reassign-ticket")
async def reassign_ticket(env: BrowserEnv, obs: Observation) -> None:
    number, login = toolkit.parse(r"Reassign ticket #(\d+) to .+ \(user name (\w+)\)\.", env.instruction).groups()
    obs = await modify(env, await open_ticket(env, obs, number))
    obs = await env.click(obs.find("reassign", role="radio"))
    obs = await toolkit.fill(env, toolkit.after(obs, obs.find("reassign", role="radio"), role="textbox"), login)
    await submit(env, obs)
    await env.done()


@register_solver("trac.set-priority")
async def set_priority(env: BrowserEnv, obs: Observation) -> None:
    number, priority = toolkit.parse(r"Change the priority of ticket #(\d+) to (\w+)\.", env.instruction).groups()
    obs = await modify(env, await open_ticket(env, obs, number))
    obs = await env.select(obs.find("Priority:", role="combobox"), priority)
    await submit(env, obs)
    await env.done()


@register_solver("trac.add-keyword")
async def add_keyword(env: BrowserEnv, obs: Observation) -> None:
    keyword, number = toolkit.parse(
        r"Add the keyword (\S+) to ticket #(\d+), keeping its other keywords\.", env.instruction
    ).groups()
    obs = await modify(env, await open_ticket(env, obs, number))
    field = obs.find("Keywords:", role="textbox")
    await env.click(field)
    await env.press("End")
    obs = await env.type(f" {keyword}" if field.value else keyword)
    await submit(env, obs)
    await env.done()

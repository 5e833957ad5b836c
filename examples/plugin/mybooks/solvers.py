"""Solvers for the mybooks templates, written with synth's toolkit."""

from __future__ import annotations

from synth import toolkit
from synth.env import BrowserEnv
from synth.schema import Observation
from synth.solver import register_solver


async def open_book(env: BrowserEnv, obs: Observation, title: str) -> Observation:
    """Search the title, then click it in the results (paging if needed)."""
    obs = await toolkit.search(env, obs, title)
    return await toolkit.click_through_pages(env, obs, title, html_class="title")


@register_solver("mybooks.book-price")
async def book_price(env: BrowserEnv, obs: Observation) -> None:
    title = toolkit.parse(r"How much does the book (.+) cost\? Answer with its price\.", env.instruction)[1]
    obs = await open_book(env, obs, title)
    await env.submit_answer(obs.find(html_class="price").name)


@register_solver("mybooks.book-author")
async def book_author(env: BrowserEnv, obs: Observation) -> None:
    title = toolkit.parse(r"Who wrote (.+)\? Answer with the author's name\.", env.instruction)[1]
    obs = await open_book(env, obs, title)
    await env.submit_answer(obs.find(html_class="author").name)


@register_solver("mybooks.add-to-list")
async def add_to_list(env: BrowserEnv, obs: Observation) -> None:
    title = toolkit.parse(r"Add (.+) to your reading list\.", env.instruction)[1]
    obs = await open_book(env, obs, title)
    await env.click(obs.find("Add to reading list", role="button"))
    await env.done()

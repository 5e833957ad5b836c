"""Rules for the bundled sites (synth/sites/shop, synth/sites/forum).

Solved: shop/product-price ("What is the price of the X? Answer with its
price.") and forum/author-karma ("How much karma does the author of the post
"X" have? Answer with the number."): search from the header's search box,
open the result (following "Next" pages), read the answer off the page.
"""

from __future__ import annotations

import re

from bootstrap.mock_server.agent_prompt import AgentPrompt, El
from bootstrap.mock_server.policy import Act, answer, click, fill, rule

PRICE = re.compile(r"^\$[\d,]+\.\d\d$")


def _after(p: AgentPrompt, anchor: El, pred) -> El | None:
    i = p.elements.index(anchor)
    return next((e for e in p.elements[i + 1 :] if pred(e)), None)


def _visible_link(p: AgentPrompt, name: str) -> El | None:
    return next((e for e in p.find("link", name) if not e.offscreen), None)


def search_for(p: AgentPrompt, text: str, what: str) -> Act | None:
    """Find `text` with the header search: open its result link, else page on,
    else type the query and press Enter."""
    link = _visible_link(p, text)
    if link is not None:
        return click(link, f"The {what} is listed; I open it.")
    box = p.first("searchbox")
    if box is None:
        return None
    typing = fill(p, box, text, "search")
    if typing is not None:
        return typing
    results = "/search" in p.url
    nxt = _visible_link(p, "Next")
    if results and nxt is not None:
        return click(nxt, f"The {what} is not on this page of results; I go to the next one.")
    if results and any(h.ok and h.action.startswith("pyautogui.press") for h in p.history[-1:]):
        return None  # searched and not found: give up
    return Act("press", f"The query is typed; I press Enter to search for the {what}.", text="enter")


@rule(r"What is the price of the (.+)\? Answer with its price\.")
def shop_product_price(p: AgentPrompt, m):
    name = m[1]
    heading = p.first("heading", name)
    if heading is not None:
        price = _after(p, heading, lambda e: bool(PRICE.match(e.name)))
        if price is not None:
            return answer(price.name, f"The product page shows the price {price.name}.")
    return search_for(p, name, "product")


@rule(r'How much karma does the author of the post "(.+)" have\? Answer with the number\.')
def forum_author_karma(p: AgentPrompt, m):
    title = m[1]
    karma = p.first(None, "Karma")  # a <dt>: "term" as Chromium has it ("text" in older snapshots)
    if karma is not None:
        value = _after(p, karma, lambda e: e.role in ("definition", "text") and bool(re.fullmatch(r"-?[\d,]+", e.name)))
        if value is not None:
            return answer(value.name, f"The author's profile shows {value.name} karma.")
    heading = p.first("heading", title)
    if heading is not None:
        byline = _after(p, heading, lambda e: e.name.startswith("Posted by "))
        if byline is not None:
            author = byline.name.split()[2]
            link = _after(p, byline, lambda e: e.role == "link" and e.name == author)
            return click(link, f"The post is by {author}; I open their profile.")
    return search_for(p, title, "post")

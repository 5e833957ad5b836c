"""The exploration walk: a seeded policy that drives BrowserEnv like any source.

Each segment is one episode: a fresh reset (the site's pristine state) at a
page the explorer already knows, then steps until the budget is spent, a
page it had never reached is reached, or the site's state changed. Across
segments the `Memory` keeps what was touched (routes, elements, forms), so
the policy prefers what it has not done yet: unvisited links and pages
first, forms it has not filled. Form fields get text the site itself shows
(link texts, headings, cells) or, for sandbox sites, values from their
content tables; selects get one of their own options.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from synth.env import BrowserEnv
from synth.schema import Element, Observation

CLICKABLE = {"link", "button", "menuitem", "tab", "checkbox", "radio", "switch", "option"}
FIELDS = {"textbox", "searchbox", "spinbutton", "combobox", "listbox"}
AVOID_NAME = re.compile(r"log ?out|sign ?out|log off|powered by|^\s*$", re.IGNORECASE)
AVOID_HREF = re.compile(
    r"logout|signout|log-out|\.(csv|json|zip|tsv|txt|xml|rss|atom|db|diff|patch)(\?|$)|[?&]_?format=|raw-attachment"
    r"|/export/|/zip-|download|^javascript:|^mailto:",
    re.IGNORECASE,
)
SKIP_TYPES = {"password", "file", "hidden", "date", "datetime-local", "time", "color", "range", "submit", "image",
              "reset", "month", "week"}
_NUMBER = re.compile(r"\d+")
SECONDARY = re.compile(r"preview|cancel|reset|back|clear", re.IGNORECASE)
"""Form buttons that do not submit (chosen less often)."""
FAMILY = 8
"""Distinct names under one parent path (not the root) from which the walk
takes them for one kind of page: Trac's /wiki/TracGuide, /wiki/TracLogging
... are pages of the wiki as /ticket/12 and /ticket/7 are tickets."""


def route_of(url: str) -> str:
    """A page's route: its path with numbers as `{n}`, and its query keys
    (not values): /ticket/12 and /ticket/7 are one route, a filter is another."""
    parts = urlsplit(url)
    path = _NUMBER.sub("{n}", parts.path.rstrip("/") or "/")
    keys = sorted({k for k, _ in parse_qsl(parts.query) if k not in ("_next", "page", "_size")})
    return path + ("?" + "&".join(keys) if keys else "")


def local(url: str) -> str:
    """Path and query: what a later segment (maybe on another instance of the
    site, on another port) starts at."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass
class Candidate:
    element: Element
    kind: str  # link | button | check | field | select
    href: str | None = None
    form: str | None = None
    input_type: str = ""
    options: list[str] = field(default_factory=list)

    @property
    def searches(self) -> bool:
        """A search box (every page of some sites has one; it changes nothing)."""
        text = f"{self.element.name} {self.element.html_class} {self.form or ''}".lower()
        return self.element.role == "searchbox" or "search" in text

    @property
    def key(self) -> str:
        return f"{self.element.role}:{self.element.name[:60]}"


@dataclass
class Memory:
    """What the explorer has touched, across segments: routes (with a URL to
    start from), elements acted on per route, forms submitted per route."""

    routes: dict[str, str] = field(default_factory=dict)
    acted: set[str] = field(default_factory=set)
    forms: set[str] = field(default_factory=set)
    form_routes: dict[str, str] = field(default_factory=dict)
    """Routes where a form field was seen, with a URL to start from."""
    untried: dict[str, int] = field(default_factory=dict)
    """Per route, how many of its elements were never acted on (last seen);
    a start page is weighted by it up to 10, so a page of a hundred links (an
    index) does not draw every segment."""
    words: list[str] = field(default_factory=list)
    _seen_words: set[str] = field(default_factory=set)
    children: dict[str, set[str]] = field(default_factory=dict)
    """Per parent path (below the root), the names seen under it in links."""

    def learn_links(self, hrefs: list[str]) -> None:
        for href in hrefs:
            parent, _, name = urlsplit(href).path.rstrip("/").rpartition("/")
            if parent and name and not _NUMBER.fullmatch(name):
                self.children.setdefault(parent, set()).add(name)

    def route(self, url: str) -> str:
        """`route_of`, with a name under a parent that has `FAMILY` or more
        (a wiki's pages, a forum's users) taken as `{x}`: a link to one more
        of them is not a new kind of page, and does not end a segment."""
        route = route_of(url)
        path, sep, query = route.partition("?")
        parent, _, name = path.rpartition("/")
        if parent and name and len(self.children.get(parent, ())) >= FAMILY:
            return f"{parent}/{{x}}{sep}{query}"
        return route

    def learn_words(self, texts: list[str]) -> None:
        """Keep short texts that read as words (not ratings, prices or codes).
        Invisible characters (a zero-width space Trac puts before a link) are
        dropped, and a text with a double quote is not kept: the instruction
        quotes the values it names."""
        for t in texts:
            t = " ".join("".join(c for c in t if unicodedata.category(c) != "Cf").split())
            if '"' in t:
                continue
            letters = sum(c.isalpha() for c in t)
            if 3 <= len(t) <= 40 and letters >= max(3, len(t) // 2) and t not in self._seen_words \
                    and not AVOID_NAME.search(t):
                self._seen_words.add(t)
                self.words.append(t)

    def share_first_pages(self, links: list[str], walk: int, walks: int) -> list[str]:
        """Make this memory walk `walk` of `walks` of one site: of the routes
        the start page links to (its navigation: every walk finds them
        first), it knows all but its share (`owner`) before its first
        segment. Routes of a kind of page (`{n}`, `{x}`: a product, a wiki
        page) are left out: walks open different ones, different tasks. Reaching a known route does not end a segment, so each of
        those pages is proposed as a view by one walk, not by every walk
        again (the rest would be duplicates), and the other walks start
        segments there and go deeper. Returns the routes it was given."""
        self.learn_links(links)
        given = []
        for href in links:
            route = self.route(href)
            if "{" in route:
                continue  # a kind of page (a product, a wiki page): walks open different ones
            if route not in self.routes and owner(route, walks) != walk:
                self.routes[route] = local(href)
                given.append(route)
        return given

    def start_url(self, rng: random.Random, form: bool = False) -> str | None:
        """A known page to start a segment at, weighted to routes with
        untried elements; with `form`, one where a form was seen."""
        if form and self.form_routes:
            routes = sorted(self.form_routes)
            return self.form_routes[rng.choice(routes)]
        if not self.routes:
            return None
        routes = sorted(self.routes)
        weights = [1 + 3 * min(self.untried.get(r, 0), 10) for r in routes]
        return self.routes[rng.choices(routes, weights)[0]]


def owner(route: str, walks: int) -> int:
    """The walk (of `walks`) that proposes the view of `route` if the start
    page links to it: a stable hash, the same on every run."""
    digest = hashlib.blake2b(route.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % walks


_PROBE_JS = """ids => ids.map(id => {
  const n = window.__synth.byId(id);
  if (!n) return null;
  const a = n.closest('a'), f = n.closest('form');
  const forms = [...document.forms];
  return {
    href: a ? a.href : null, target: a ? a.target : '',
    form: f ? (f.getAttribute('action') || location.pathname) + '#' + forms.indexOf(f) : null,
    // a text input that asks for a number (inputmode) takes one, as type=number does
    type: /^(numeric|decimal)$/i.test(n.getAttribute('inputmode') || '') ? 'number'
      : (n.getAttribute('type') || '').toLowerCase(), disabled: !!n.disabled || !!n.readOnly,
    options: n.tagName === 'SELECT' ? [...n.options].filter(o => !o.disabled).map(o => o.label) : null,
  };
})"""


async def candidates(env: BrowserEnv, obs: Observation) -> list[Candidate]:
    """The elements worth acting on, with what the page says of them (a
    link's target, a field's form, type and options); links off the site,
    downloads, log-outs and disabled fields are left out."""
    els = [e for e in obs.elements if (e.role in CLICKABLE or e.role in FIELDS) and e.box.width > 0 and e.box.height > 0
           and e.tag != "option"]  # a <select>'s options are chosen with `select`, not clicked
    if not els:
        return []
    probes = await env.page.evaluate(_PROBE_JS, [e.id for e in els])
    origin = urlsplit(obs.url)
    out = []
    for el, p in zip(els, probes):
        if p is None or p["disabled"] or AVOID_NAME.search(el.name or " ") and el.role not in FIELDS:
            continue
        href = p["href"]
        if href is not None:
            h = urlsplit(href)
            if (h.scheme, h.netloc) != (origin.scheme, origin.netloc) or AVOID_HREF.search(href) or p["target"] == "_blank":
                continue
            if (h.path, h.query) == (origin.path, origin.query):
                continue  # an anchor on this page
        if el.role in FIELDS or el.tag in ("input", "textarea", "select") and el.role not in ("button", "checkbox", "radio"):
            if p["type"] in SKIP_TYPES:
                continue
            kind = "select" if el.tag == "select" else "field"
            if kind == "select" and len(p["options"] or []) < 2:
                continue
        elif el.role in ("checkbox", "radio", "switch"):
            kind = "check"
        else:
            kind = "link" if href is not None else "button"
        out.append(Candidate(el, kind, href, p["form"], p["type"], p["options"] or []))
    return out


class Walker:
    """Walks one segment per call, from a fresh reset, sharing its Memory."""

    def __init__(self, memory: Memory, rng: random.Random, budget: int = 8, extra_words: list[str] | None = None):
        self.memory = memory
        self.rng = rng
        self.budget = budget
        self.memory.learn_words(extra_words or [])
        self.typed: list[str] = []
        """What the segment typed or selected (its instruction's values come from these)."""
        self.reason = ""
        self.form_mode = False
        """This segment fills a form first (it started where one was seen)."""
        self._known_before: set[str] = set()
        """Routes known before the segment began: reaching another ends it."""

    async def segment(self, env: BrowserEnv, obs: Observation, state_before: Any) -> None:
        """Act until the budget is spent, a new route is reached or the state changed."""
        self.typed, self.reason = [], "budget"
        self._known_before = set(self.memory.routes)
        self._see(obs)
        while len(env.steps) < self.limit:
            cands = await candidates(env, obs)
            self._count_untried(obs, cands)
            if not cands:
                self.reason = "nothing to act on"
                return
            pick = self._choose(obs, cands)
            before_route = self.memory.route(obs.url)
            if pick.kind in ("field", "select"):
                obs = await self._fill_form(env, obs, pick, cands)
            else:
                obs = await self._click(env, obs, pick)
            self._see(obs)
            if await self._stop(env, obs, before_route, state_before):
                return

    @property
    def limit(self) -> int:
        """This segment's step budget: twice as long when it fills a form first."""
        return self.budget * (2 if self.form_mode else 1)

    # ------------------------------------------------------------ choosing

    def _weight(self, route: str, c: Candidate) -> float:
        w = 1.0 if f"{route}|{c.key}" in self.memory.acted else 6.0
        if c.kind == "link" and c.href is not None and self.memory.route(c.href) not in self.memory.routes:
            w *= 4
        if c.kind in ("field", "select") and f"{route}|{c.form}" not in self.memory.forms:
            w *= 3
        if c.kind == "button":
            w *= 2  # buttons change things more often than links do
        if self.form_mode and c.kind in ("field", "select") and not c.searches:
            w *= 30
        if not c.element.in_view:
            w *= 0.5
        return w

    def _choose(self, obs: Observation, cands: list[Candidate]) -> Candidate:
        route = self.memory.route(obs.url)
        return self.rng.choices(cands, [self._weight(route, c) for c in cands])[0]

    def _count_untried(self, obs: Observation, cands: list[Candidate]) -> None:
        self.memory.learn_links([c.href for c in cands if c.href])
        route = self.memory.route(obs.url)
        if any(c.kind in ("field", "select") and not c.searches for c in cands):
            self.memory.form_routes.setdefault(route, local(obs.url))
        self.memory.untried[route] = sum(f"{route}|{c.key}" not in self.memory.acted for c in cands)

    def _see(self, obs: Observation) -> None:
        self.memory.routes.setdefault(self.memory.route(obs.url), local(obs.url))
        self.memory.learn_words([e.name for e in obs.elements if e.role in ("link", "heading", "cell", "option", "text")])

    # ------------------------------------------------------------ acting

    async def _into_view(self, env: BrowserEnv, obs: Observation, el: Element) -> tuple[Observation, Element | None]:
        """Scroll an off-screen element into view (a recorded scroll) and find it again."""
        if el.in_view:
            return obs, el
        dy = round((el.box.y - obs.area.y - obs.area.height / 3) / obs.area.height, 3)
        obs = await env.scroll(dy=dy)
        again = obs.element(el.id)
        return obs, again if again is not None and again.in_view else None

    async def _click(self, env: BrowserEnv, obs: Observation, pick: Candidate) -> Observation:
        route = self.memory.route(obs.url)
        self.memory.acted.add(f"{route}|{pick.key}")
        obs, el = await self._into_view(env, obs, pick.element)
        if el is None or len(env.steps) >= self.limit:
            return obs
        return await env.click(el)

    async def _fill_form(self, env: BrowserEnv, obs: Observation, pick: Candidate, cands: list[Candidate]) -> Observation:
        """Fill the picked field and some others of its form, then submit it
        (one of its buttons, submitting ones four times as likely as a
        preview or cancel; Enter when it has none)."""
        route = self.memory.route(obs.url)
        self.memory.forms.add(f"{route}|{pick.form}")
        fields = [c for c in cands if c.form == pick.form and c.kind in ("field", "select", "check")]
        share = {"field": 0.7, "select": 0.5, "check": 0.2}
        chosen = [c for c in fields if c is pick or self.rng.random() < share[c.kind]]
        radios = [c for c in fields if c.input_type == "radio" and c not in chosen]
        if radios and not any(c.input_type == "radio" for c in chosen) and self.rng.random() < 0.8:
            chosen.append(self.rng.choice(radios))  # an option group (a colour) is usually required
        for c in chosen:
            cost = (2 if c.kind == "field" else 1) + (0 if c.element.in_view else 1)
            if len(env.steps) + cost > self.limit - 2:  # keep two steps to submit (a scroll, the click)
                continue
            self.memory.acted.add(f"{route}|{c.key}")
            obs = await self._fill(env, obs, c)
        if len(env.steps) >= self.limit:
            return obs
        # the form's buttons now: a submit button may be enabled only once required fields are filled
        buttons = [c for c in await candidates(env, obs) if c.form == pick.form and c.kind == "button"
                   and pick.form is not None]
        if buttons:
            button = self.rng.choices(buttons, [1 if SECONDARY.search(b.element.name) else 4 for b in buttons])[0]
            self.memory.acted.add(f"{route}|{button.key}")
            obs, el = await self._into_view(env, obs, obs.element(button.element.id) or button.element)
            if el is not None and len(env.steps) < self.limit:
                return await env.click(el)
            return obs
        return await env.press("Enter")

    async def _fill(self, env: BrowserEnv, obs: Observation, c: Candidate) -> Observation:
        obs, el = await self._into_view(env, obs, obs.element(c.element.id) or c.element)
        if el is None or len(env.steps) >= self.limit:
            return obs
        if c.kind == "check":
            return await env.click(el)
        if c.kind == "select":
            options = [o for o in c.options if o.strip() and o != (el.value or "")] or c.options
            option = self.rng.choice(options)
            self.typed.append(option.strip())
            return await env.select(el, option)
        text = self.value_for(c)
        self.typed.append(text)
        obs = await env.click(el)
        if el.value:
            obs = await env.press("ControlOrMeta+a")
        return await env.type(text)

    def value_for(self, c: Candidate) -> str:
        """Text for a field, from what the site shows (or its content)."""
        if c.input_type == "number" or c.element.role == "spinbutton":
            return str(self.rng.randint(1, 4))
        if c.input_type == "email":
            return f"{self.rng.choice(['alex', 'sam', 'kim'])}@example.com"
        words = self.memory.words or ["example"]
        text = self.rng.choice(words)
        name = f"{c.element.name} {c.element.html_class}".lower()
        if c.element.role == "searchbox" or "search" in name:
            tokens = [t for t in re.findall(r"[A-Za-z]{4,}", text)] or [text]
            return self.rng.choice(tokens)
        if c.element.tag == "textarea":
            return f"{text}: {self.rng.choice(words)}."
        return text

    # ------------------------------------------------------------ stopping

    async def _stop(self, env: BrowserEnv, obs: Observation, before_route: str, state_before: Any) -> bool:
        route = self.memory.route(obs.url)
        if env.steps and env.steps[-1].action.name in ("type", "select") or env.steps and env.steps[-1].error:
            return bool(env.steps[-1].error) and self._why("a step failed")
        if route != before_route and route not in self._known_before:
            return self._why("new page")
        if state_before is not None:
            try:
                now = await env.site.state(env.page, env.task)
            except Exception:  # noqa: BLE001 - a state that cannot be read stops nothing
                return False
            if now != state_before:
                return self._why("state changed")
        return False

    def _why(self, reason: str) -> bool:
        self.reason = reason
        return True


"""BrowserEnv: one Playwright page per episode, every step recorded.

A worker owns one browser (`launch_browser`); each episode gets a fresh
context, so cookies, storage and caches never leak between episodes. `reset`
and `step` return the Observation the agent sees next. `step` resolves the
action's target (by element id or by point) to coordinates and the element
actually under them, runs it with trusted mouse and keyboard input, and
records a `Step` holding the observation *before* the action. An action that
fails (element gone, timeout) becomes the step's `error`; only a dead page
raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import weakref
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, Playwright
from playwright.async_api import Error as PlaywrightError
from pydantic import BaseModel, ConfigDict, Field

from synth.schema import POINTER_ACTIONS, Action, Box, Element, Monologue, Observation, Step, Task
from synth.sites.base import Site

DEFAULT_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SNAPSHOT_JS = resources.files("synth").joinpath("snapshot.js").read_text()
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium(configured: str | None = "auto") -> str | None:
    """The Chromium to launch: the configured path, else $SYNTH_CHROMIUM, else a
    system Chromium; None means Playwright's own downloaded browser."""
    if configured not in (None, "", "auto", "playwright"):
        if not Path(configured).exists():
            raise FileNotFoundError(f"browser.executable_path {configured!r} does not exist")
        return configured
    if configured == "playwright":
        return None
    env = os.environ.get("SYNTH_CHROMIUM")
    if env:
        if not Path(env).exists():
            raise FileNotFoundError(f"$SYNTH_CHROMIUM={env!r} does not exist")
        return env
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium")


class BrowserConfig(BaseModel):
    """How workers launch their browser (`browser:` in a pipeline)."""

    model_config = ConfigDict(extra="forbid")
    executable_path: str | None = Field(
        "auto", description="'auto' (system Chromium, else Playwright's), 'playwright', or a path"
    )
    headless: bool = True
    args: list[str] = Field(default_factory=lambda: list(DEFAULT_ARGS))
    action_timeout_ms: int = Field(
        15000, gt=0,
        description="Playwright's timeout for an action's checks (a select's actionability) and a screenshot; "
        "on a loaded machine (load average 60+ on 2 cores) 5 s failed correct replays of long shop checkouts",
    )
    navigation_timeout_ms: int = Field(20000, gt=0)
    screenshots: bool = True
    snapshots: bool = Field(True, description="take the accessibility snapshot each observation (replays need none)")
    max_elements: int = Field(1500, gt=0, description="cap on snapshot elements per observation")
    observations_per_browser: int = Field(
        4, gt=0,
        description="observations (snapshot + screenshot) one browser takes at once; more episodes wait their "
        "turn instead of missing the screenshot timeout on a busy machine",
    )
    settle_timeout_ms: int = Field(
        3000, ge=0,
        description="longest wait for a settled page before each observation and replayed action "
        "(no animation, request, short timer or image load pending, a still layout); 0 turns it off",
    )


async def launch_browser(playwright: Playwright, config: BrowserConfig) -> Browser:
    return await playwright.chromium.launch(
        executable_path=find_chromium(config.executable_path),
        headless=config.headless,
        args=config.args,
    )


MAX_AUTO_SCROLLS = 3

_observing: weakref.WeakKeyDictionary[Browser, asyncio.Semaphore] = weakref.WeakKeyDictionary()
_cdp_sessions: weakref.WeakKeyDictionary[Page, Any] = weakref.WeakKeyDictionary()


def observation_gate(browser: Browser, limit: int) -> asyncio.Semaphore:
    """The one gate per browser that bounds its concurrent observations: with
    64 episodes on one Chromium, 64 screenshots at once queue inside the
    browser until they miss their timeout; behind this gate they queue here
    and each one, once started, has the renderer to itself."""
    gate = _observing.get(browser)
    if gate is None:
        gate = _observing[browser] = asyncio.Semaphore(limit)
    return gate


@dataclass
class Resolved:
    """An action with its coordinates filled in, the element under them, and
    either an error or a scroll that must come first."""

    action: Action
    element: Element | None = None
    error: str | None = None
    scroll: Action | None = None


class EpisodeError(RuntimeError):
    """The episode cannot go on (the page crashed or closed)."""


class StepLimitReached(EpisodeError):
    """The task's `max_steps` were used up before the episode ended."""


class PagePool:
    """Idle (context, page) pairs of one browser, per site, for sites that
    allow `reuse_page`. Only pages whose episode ended cleanly come back."""

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[BrowserContext, Page]]] = {}

    def take(self, site: str) -> tuple[BrowserContext, Page] | None:
        idle = self._idle.get(site)
        while idle:
            context, page = idle.pop()
            if not page.is_closed():
                return context, page
        return None

    def give(self, site: str, context: BrowserContext, page: Page) -> None:
        self._idle.setdefault(site, []).append((context, page))

    async def close(self) -> None:
        for pairs in self._idle.values():
            for context, _ in pairs:
                try:
                    await context.close()
                except PlaywrightError:
                    pass
        self._idle.clear()


class BrowserEnv:
    """One episode at a time on one page: a fresh context per episode, or,
    for sites that declare `reuse_page`, a pooled page with a new document.

        env = BrowserEnv(browser, site)
        obs = await env.reset(task)
        obs = await env.click(obs.find("Submit", role="button"))
        await env.close()
    """

    def __init__(
        self,
        browser: Browser,
        site: Site,
        config: BrowserConfig | None = None,
        pages: PagePool | None = None,
        cold: bool = False,
    ) -> None:
        """`cold`: every episode starts as a new user's browser would, also on
        a pooled page (verification replays): see `_make_cold`."""
        self.browser = browser
        self.site = site
        self.config = config or BrowserConfig()
        self.pages = pages if site.reuse_page else None
        self.cold = cold
        self._healthy = False
        self.context: BrowserContext | None = None
        self.page: Page | None = None
        self.task: Task | None = None
        self.instruction = ""
        self.area: Box | None = None
        self.root: str | None = None
        self.steps: list[Step] = []
        self.answer: str | None = None
        self.finished = False
        self.obs: Observation | None = None
        self._waited_ms = 0.0
        self._settle_ms = 0.0
        self._settled = True
        self.target: str = "matched"
        """How the last replayed pointer action found its recorded target:
        matched (at the recorded point), relocated (by its selector: the
        layout moved), missing (neither; acted at the recorded point)."""
        self._navigating = False
        self._loaded = asyncio.Event()
        self._requested = asyncio.Event()
        self._watching = False
        self._in_flight: dict[Any, float] = {}
        """Requests the page started that have not finished, with when they
        started (only on pages of their own context, see `_watch`)."""
        self._request_done = asyncio.Event()

    async def __aenter__(self) -> BrowserEnv:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ---------------------------------------------------------------- lifecycle

    async def reset(self, task: Task) -> Observation:
        """Open a fresh context, let the site set the task up, observe."""
        await self.close()
        self.task, self.steps, self.answer, self.finished = task, [], None, False
        self.obs = None  # never the last episode's page, should this one fail to set up
        self._waited_ms = self._settle_ms = 0.0
        reused = self.pages.take(self.site.name) if self.pages is not None else None
        if reused is not None:
            self.context, self.page = reused
            await self.context.clear_cookies()
            await self.page.mouse.move(0, 0)  # where a new page's pointer is, not over the last episode's target
            if self.cold:
                await self._make_cold(self.page)
        else:
            self.context = await self.browser.new_context(viewport=self.site.viewport)
            self.context.set_default_timeout(self.config.action_timeout_ms)
            self.context.set_default_navigation_timeout(self.config.navigation_timeout_ms)
            await self.context.add_init_script(SNAPSHOT_JS)
            self.page = await self.context.new_page()
        self._healthy = False
        # Pooled pages of recordings are not watched (speed, see `_watch`);
        # cold ones are: their loads are what a replay must wait for.
        self._watching = self.cold or reused is None and (self.pages is None or not self.site.reuse_page)
        if self._watching:
            self._watch(self.page)
        setup = await self.site.setup(self.page, task)
        self._healthy = True
        self.instruction = task.instruction or setup.instruction
        self.area, self.root = setup.area, setup.root
        self.obs = await self.observe()
        return self.obs

    async def _make_cold(self, page: Page) -> None:
        """Make a pooled page as cold as a fresh context: the previous
        episode's origin loses its storage (local, session, IndexedDB, cache
        storage, service workers) and the browser its HTTP and memory caches
        (`Network.clearBrowserCache`; tests/test_replay.py counts the fetches
        of a cacheable image). The page keeps its renderer, which is what makes
        reuse cheap."""
        session = _cdp_sessions.get(page)
        if session is None:
            session = _cdp_sessions[page] = await page.context.new_cdp_session(page)
        origin = await page.evaluate(
            "() => { try { sessionStorage.clear(); } catch (e) {} return location.origin; }"
        )
        if origin and origin != "null":
            await session.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        await session.send("Network.clearBrowserCache")

    def discard_page(self) -> None:
        """Never reuse this episode's page (it ended in an error)."""
        self._healthy = False

    async def close(self) -> None:
        """End the episode: hand a healthy reusable page back to the pool,
        otherwise close the context."""
        if self.context is None:
            return
        context, page, self.context, self.page = self.context, self.page, None, None
        if page is not None:
            await self.site.teardown(page)
        if page is not None and self._watching:
            self._unwatch(page)
        if self.pages is not None and self._healthy and page is not None and not page.is_closed():
            self.pages.give(self.site.name, context, page)
            return
        try:
            await context.close()
        except PlaywrightError:
            pass  # the browser may already be gone; nothing left to free

    # ---------------------------------------------------------------- navigations

    WATCHED = ("request", "requestfinished", "requestfailed", "load")

    def _watch(self, page: Page) -> None:
        """Follow main-frame navigations, so a step that starts one (a link, a
        form submit, Enter in a search box) is observed on the new document,
        not on the old one or half-way (multi-page sites such as the shop);
        and count the requests in flight, which `settle` waits for. Pooled
        pages (sites that `reuse_page`, living in page JavaScript) are not
        watched: a `request` listener makes Playwright send every request's
        event, which costs their recording speed; a fresh context is."""
        self._navigating = False
        self._loaded.set()
        self._in_flight.clear()
        for event in self.WATCHED:
            page.on(event, getattr(self, f"_on_{event}"))

    def _unwatch(self, page: Page) -> None:
        for event in self.WATCHED:
            try:
                page.remove_listener(event, getattr(self, f"_on_{event}"))
            except (KeyError, ValueError):
                pass
        self._in_flight.clear()

    def _main_frame_navigation(self, request: Any) -> bool:
        try:
            return self.page is not None and request.is_navigation_request() and request.frame == self.page.main_frame
        except PlaywrightError:  # a service worker's request has no frame
            return False

    def _on_request(self, request: Any) -> None:
        if request.resource_type not in ("eventsource", "websocket"):  # these never finish
            self._in_flight[request] = time.perf_counter()
        if self._main_frame_navigation(request):
            self._navigating = True
            self._loaded.clear()
            self._requested.set()

    def _on_requestfinished(self, request: Any) -> None:
        if self._in_flight.pop(request, None) is not None and not self._in_flight:
            self._request_done.set()

    def _on_requestfailed(self, request: Any) -> None:
        self._on_requestfinished(request)
        if self._main_frame_navigation(request):
            self._on_load()

    def _on_load(self, *_: Any) -> None:
        self._navigating = False
        self._loaded.set()

    NAVIGATION_GRACE_S = 0.3
    """How long an action that may navigate (a click on a link or button,
    Enter) is given to start a navigation before the page is observed."""

    async def _follow_navigation(self, action: Action, element: Element | None) -> None:
        """If the action started a navigation, wait until the new document has
        loaded, so the next observation is of the new page. Sites whose
        episodes live in page JavaScript (`reuse_page`) are not watched."""
        if self.site.reuse_page:
            return
        if not self._navigating and _may_navigate(action, element):
            try:
                await asyncio.wait_for(self._requested.wait(), self.NAVIGATION_GRACE_S)
            except asyncio.TimeoutError:
                pass  # it did not navigate
        if self._navigating:
            try:
                await asyncio.wait_for(self._loaded.wait(), self.config.navigation_timeout_ms / 1000)
            except asyncio.TimeoutError:
                pass  # observe what is there; a dead page raises in observe()

    # ---------------------------------------------------------------- observing

    def _area(self) -> Box:
        if self.area is not None:
            return self.area
        vp = self.page.viewport_size or self.site.viewport
        return Box(x=0, y=0, width=vp["width"], height=vp["height"])

    async def observe(self, snapshot: bool = False) -> Observation:
        """Once the page has settled: a screenshot of the observed area plus
        the compact snapshot. `snapshot`: take the snapshot even where the
        config takes none (what a judge reads, see `_act`)."""
        page = self._page()
        area = self._area()
        snapshot = snapshot or self.config.snapshots
        try:
            if snapshot or self.config.screenshots:
                await self.settle()  # otherwise nothing is observed: the next action settles first
            shot = None
            async with observation_gate(self.browser, self.config.observations_per_browser):
                # A JSON string crosses Playwright's protocol far faster than the
                # same data as an object (bench/record.py: 4 ms against 9 ms).
                if snapshot:
                    snap = json.loads(await self._snapshot_json(page, area))
                else:
                    snap = {"url": page.url, "title": "", "elements": []}
                if self.config.screenshots:
                    clip = area.model_dump() if self.area is not None else None
                    shot = await page.screenshot(clip=clip, type="png")
        except PlaywrightError as e:
            self._healthy = False
            raise EpisodeError(f"cannot observe the page: {_first_line(e)}") from e
        return Observation(
            url=snap["url"],
            title=snap["title"],
            area=area,
            screenshot=shot,
            elements=[Element.model_validate(el) for el in snap["elements"]],
        )

    async def settle(self, point: tuple[float, float] | None = None, expected: Element | None = None) -> dict[str, Any]:
        """Wait (at most `settle_timeout_ms`) until the page has settled: no
        document loading, animation, request, short timer or image load
        pending, and a layout that held still for a frame (snapshot.js,
        `settle`). With `point` and `expected`, also until that element (by
        role and name) is at the point. The time is recorded in the next step
        (`settle_ms`), and whether it settled (`settled`)."""
        if not self.config.settle_timeout_ms:
            return {"settled": True, "ms": 0.0}
        req: dict[str, Any] = {"timeout": self.config.settle_timeout_ms, "area": self._area().model_dump(),
                               "root": self.root}
        if point is not None and expected is not None:
            req["point"] = {"x": point[0], "y": point[1]}
            req["expected"] = {"role": expected.role, "name": expected.name, "selector": expected.selector,
                               "width": expected.box.width, "height": expected.box.height}
        started = time.perf_counter()
        res = await self._settle_in_page(req)
        if self._in_flight and await self._requests_finished(started):
            res = await self._settle_in_page(req)  # what the responses changed
        elif self._in_flight:
            res = {**res, "settled": False, "why": f"{len(self._in_flight)} request(s) still in flight"}
        res["ms"] = (time.perf_counter() - started) * 1000
        self._settle_ms += res["ms"]
        self._settled = res["settled"]
        return res

    async def _settle_in_page(self, req: dict[str, Any]) -> dict[str, Any]:
        page = self._page()
        for _ in range(3):
            try:
                return await page.evaluate("r => window.__synth.settle(r)", req)
            except PlaywrightError as e:
                if "context was destroyed" not in str(e) and "navigat" not in str(e) and "__synth" not in str(e):
                    raise
                await page.wait_for_load_state("load")
        return {"settled": False, "ms": 0.0, "why": "the document kept changing"}

    async def _requests_finished(self, since: float) -> bool:
        """Wait until no request the page started is in flight (requests it
        started before `since` minus the settle timeout are long polls and not
        waited for); False if the settle timeout ran out first."""
        limit = self.config.settle_timeout_ms / 1000
        while True:
            now = time.perf_counter()
            if not any(now - t < limit for t in self._in_flight.values()):
                return True
            left = limit - (now - since)
            if left <= 0:
                return False
            self._request_done.clear()
            try:
                await asyncio.wait_for(self._request_done.wait(), min(left, 0.05))
            except asyncio.TimeoutError:
                pass

    async def _snapshot_json(self, page: Page, area: Box) -> str:
        """The snapshot; if a navigation replaces the document while it is
        taken, wait for the new one to load and take it there."""
        args = [area.model_dump(), self.config.max_elements, self.root]
        script = "([a, n, r]) => JSON.stringify(window.__synth.snapshot(a, n, r))"
        for _ in range(3):
            try:
                return await page.evaluate(script, args)
            except PlaywrightError as e:
                if "context was destroyed" not in str(e) and "navigat" not in str(e):
                    raise
                try:
                    await page.wait_for_load_state("load")
                except PlaywrightError:
                    pass
        return await page.evaluate(script, args)

    def _page(self) -> Page:
        if self.page is None:
            raise EpisodeError("no episode is open: call reset(task) first")
        return self.page

    # ---------------------------------------------------------------- acting

    async def step(self, action: Action, expected: Element | None = None) -> Observation:
        """Run one action, record it with the observation it was taken on, observe.

        If the action aims at an element outside the observed area, a scroll
        step is recorded first (as a person would scroll), then the action.
        `expected` (replays): the element the recording acted on; a pointer
        action then waits until it is at the recorded point, and aims at it by
        its selector if it never comes there (see `target`)."""
        if self.obs is None:
            raise EpisodeError("no episode is open: call reset(task) first")
        if self.finished:
            raise EpisodeError("the episode already ended with answer/done")
        for _ in range(MAX_AUTO_SCROLLS):
            if self.task is not None and len(self.steps) >= self.task.max_steps:
                raise StepLimitReached(f"step limit reached: {self.task.max_steps} steps ({self.task.template_id})")
            started = time.perf_counter()
            if expected is not None:
                action = await self._find_target(action, expected)
            elif not (self.config.snapshots or self.config.screenshots):
                await self.settle()  # the observation did not
            resolved = await self._resolve(action, self.obs)
            if resolved.scroll is None:
                return await self._act(resolved, started)
            await self._act(Resolved(resolved.scroll), started)
        started = time.perf_counter()
        error = f"element [{action.element_id}] is still out of view after {MAX_AUTO_SCROLLS} scrolls"
        return await self._act(Resolved(action, error=error), started)

    async def _find_target(self, action: Action, expected: Element) -> Action:
        """Wait until the recorded target is at the action's point; if it never
        is, aim where its selector finds it (and say so in `target`)."""
        self.target = "matched"
        if action.name not in POINTER_ACTIONS or action.x is None or action.y is None:
            await self.settle()
            return action
        try:
            res = await self.settle(self.obs.denormalise(action.x, action.y), expected)
        except PlaywrightError as e:
            self._healthy = False
            raise EpisodeError(f"page is gone: {_first_line(e)}") from e
        if res.get("target", True):
            return action
        if res.get("relocated"):
            self.target = "relocated"
            x, y = self.obs.normalise(res["relocated"]["x"], res["relocated"]["y"])
            return action.model_copy(update={"x": x, "y": y})
        self.target = "missing"
        return action

    async def _act(self, resolved: Resolved, started: float) -> Observation:
        action, obs_before = resolved.action, self.obs
        if action.name == "answer" and not self.config.snapshots:
            # A judge reads the page an answer is given on (string_match
            # `shown`): replays that take no snapshots still take this one,
            # or a right answer would never be shown to them.
            obs_before = self.obs = await self.observe(snapshot=True)
        self._requested.clear()
        error = resolved.error or await self._execute(action, resolved.element)
        if action.name not in ("answer", "done"):
            await self._follow_navigation(action, resolved.element)
        if action.name in ("answer", "done"):
            self.finished = True
            if action.name == "answer":
                self.answer = action.text or ""
        self.steps.append(
            Step(
                index=len(self.steps),
                observation=obs_before,
                action=action,
                element=resolved.element,
                error=error,
                duration_ms=(time.perf_counter() - started) * 1000,
                waited_ms=self._waited_ms,
                settle_ms=self._settle_ms,
                settled=self._settled,
            )
        )
        self._waited_ms = self._settle_ms = 0.0
        if not self.finished:
            self.obs = await self.observe()
        return self.obs

    async def _resolve(self, action: Action, obs: Observation) -> Resolved:
        """Fill in coordinates (normalised) and the element under them."""
        pointer = action.name in POINTER_ACTIONS
        if action.name in ("type", "press"):
            # The snapshot taken after the last action already knows the focus.
            return Resolved(action, next((e for e in obs.elements if e.focused), None))
        if pointer and action.element_id is not None:
            req = {"id": action.element_id, "area": obs.area.model_dump()}
        elif (pointer or action.name == "scroll") and action.x is not None and action.y is not None:
            px, py = obs.denormalise(action.x, action.y)
            req = {"x": px, "y": py, "area": obs.area.model_dump()}
        elif pointer:
            return Resolved(action, error=f"{action.name} needs element_id or x/y")
        else:
            return Resolved(action)
        try:
            res = json.loads(await self._page().evaluate("r => JSON.stringify(window.__synth.resolve(r))", req))
        except PlaywrightError as e:
            self._healthy = False
            raise EpisodeError(f"page is gone: {_first_line(e)}") from e
        if res.get("error"):
            return Resolved(action, error=res["error"])
        if res.get("scroll"):
            s = res["scroll"]
            x, y = obs.normalise(s["x"], s["y"])
            dx, dy = round(s["dx"] / obs.area.width, 4), round(s["dy"] / obs.area.height, 4)
            # One axis per recorded step (vertical first), as a wheel scrolls
            # and as every target format writes a scroll; the other axis, if
            # still needed, is the next auto-scroll step.
            if dy:
                dx = 0.0
            return Resolved(action, scroll=Action(name="scroll", x=x, y=y, dx=dx, dy=dy))
        element = Element.model_validate(res["element"]) if res.get("element") else None
        update: dict[str, Any] = {}
        if res.get("x") is not None and action.name != "scroll":
            update["x"], update["y"] = obs.normalise(res["x"], res["y"])
        if element is not None and pointer:
            update["element_id"] = element.id
        return Resolved(action.model_copy(update=update) if update else action, element)

    async def _execute(self, action: Action, element: Element | None) -> str | None:
        """Run the action on the page; return an error message instead of raising."""
        page = self._page()
        obs = self.obs
        try:
            n = action.name
            if n in POINTER_ACTIONS:
                px, py = obs.denormalise(action.x, action.y)
            if n in ("click", "double_click", "right_click"):
                await self._point_at(px, py)
            if n == "click":
                await page.mouse.click(px, py)
            elif n == "double_click":
                await page.mouse.dblclick(px, py)
            elif n == "right_click":
                await page.mouse.click(px, py, button="right")
            elif n == "hover":
                await page.mouse.move(px, py)
            elif n == "drag":
                if action.x2 is None or action.y2 is None:
                    return "drag needs x2/y2"
                tx, ty = obs.denormalise(action.x2, action.y2)
                await page.mouse.move(px, py)
                await page.mouse.down()
                await page.mouse.move(tx, ty, steps=8)
                await page.mouse.up()
            elif n == "type":
                await page.keyboard.type(action.text or "")
            elif n == "press":
                if not action.key:
                    return "press needs a key"
                await page.keyboard.press(action.key)
            elif n == "scroll":
                if action.x is not None and action.y is not None:
                    await page.mouse.move(*obs.denormalise(action.x, action.y))
                await page.mouse.wheel(
                    (action.dx or 0.0) * obs.area.width, (action.dy or 0.0) * obs.area.height
                )
                await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
            elif n == "select":
                if element is None:
                    return "select: no element under the point"
                handle = await page.evaluate_handle("id => window.__synth.byId(id)", element.id)
                target = handle.as_element()
                if target is None:
                    return f"select: element [{element.id}] is gone"
                await target.select_option(action.text or "")
            elif n == "navigate":
                await page.goto(action.text or "", wait_until="load")
            elif n == "go_back":
                await page.go_back(wait_until="load")
            # answer / done change nothing on the page.
        except PlaywrightError as e:
            if page.is_closed():
                self._healthy = False
                raise EpisodeError(f"page closed during {action.name}: {_first_line(e)}") from e
            return f"{action.name} failed: {_first_line(e)}"
        return None

    async def _point_at(self, px: float, py: float) -> None:
        """Move the pointer onto the point and let what hovering starts settle
        before pressing, as a person's hand does: an icon that swaps in its
        hover image (loading from a cold cache, collapsing meanwhile) or a menu
        that opens on hover would otherwise make the press land on whatever
        is there in that instant, so a click would pass or fail by timing."""
        await self._page().mouse.move(px, py)
        await self.settle()

    # ---------------------------------------------------------------- conveniences

    def _target(self, target: Element | int | tuple[float, float]) -> dict[str, Any]:
        if isinstance(target, Element):
            return {"element_id": target.id}
        if isinstance(target, int):
            return {"element_id": target}
        x, y = target
        return {"x": x, "y": y}

    async def _intended(self, action: Action, why: str | None) -> Observation:
        """Run `action`; `why`, the intent a solver states, becomes the recorded
        step's thought (the planning views' "Thought:"), as a labeler's does."""
        before = len(self.steps)
        obs = await self.step(action)
        if why and why.strip() and len(self.steps) > before and self.steps[-1].action.name == action.name:
            self.steps[-1].monologue = Monologue(thought=why.strip())
        return obs

    async def click(self, target: Element | int | tuple[float, float], why: str | None = None) -> Observation:
        return await self._intended(Action(name="click", **self._target(target)), why)

    async def double_click(self, target: Element | int | tuple[float, float], why: str | None = None) -> Observation:
        return await self._intended(Action(name="double_click", **self._target(target)), why)

    async def right_click(self, target: Element | int | tuple[float, float], why: str | None = None) -> Observation:
        return await self._intended(Action(name="right_click", **self._target(target)), why)

    async def hover(self, target: Element | int | tuple[float, float], why: str | None = None) -> Observation:
        return await self._intended(Action(name="hover", **self._target(target)), why)

    async def type(self, text: str, why: str | None = None) -> Observation:
        return await self._intended(Action(name="type", text=text), why)

    async def press(self, key: str, why: str | None = None) -> Observation:
        return await self._intended(Action(name="press", key=key), why)

    async def select(self, target: Element | int, option: str, why: str | None = None) -> Observation:
        return await self._intended(Action(name="select", text=option, **self._target(target)), why)

    async def scroll(
        self, dy: float, dx: float = 0.0, at: tuple[float, float] | None = None, why: str | None = None
    ) -> Observation:
        where = {"x": at[0], "y": at[1]} if at else {}
        return await self._intended(Action(name="scroll", dx=dx, dy=dy, **where), why)

    async def drag(self, source: Element | tuple[float, float], target: Element | tuple[float, float]) -> Observation:
        def point(t: Element | tuple[float, float]) -> tuple[float, float]:
            if isinstance(t, Element):
                return self.obs.normalise(*t.box.center)
            return t

        (x, y), (x2, y2) = point(source), point(target)
        return await self.step(Action(name="drag", x=x, y=y, x2=x2, y2=y2))

    async def navigate(self, url: str) -> Observation:
        return await self.step(Action(name="navigate", text=url))

    async def go_back(self) -> Observation:
        return await self.step(Action(name="go_back"))

    async def submit_answer(self, text: str) -> Observation:
        return await self.step(Action(name="answer", text=text))

    async def done(self) -> Observation:
        return await self.step(Action(name="done"))

    async def wait(self, ms: float) -> Observation:
        """Let the page settle (animations, delayed content) and observe again.
        Not an action: nothing is recorded."""
        await asyncio.sleep(ms / 1000)
        self._waited_ms += ms
        self.obs = await self.observe()
        return self.obs


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _may_navigate(action: Action, element: Element | None) -> bool:
    """Whether an action can start a navigation: a click on a link or a
    button (a form submit), or Enter (submitting a form from a field)."""
    if action.name == "press":
        return (action.key or "").split("+")[-1] in ("Enter", "NumpadEnter")
    if action.name in ("click", "double_click") and element is not None:
        return element.role in ("link", "button") or element.tag in ("a", "button")
    return False


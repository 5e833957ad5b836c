"""Labelers' episodes, recorded on the server through BrowserEnv.

The server holds one browser (a `BrowserSource`, as the other sources do) and
one `BrowserEnv` episode per leased task. Each click, keystroke or scroll the
labeler makes on the page becomes one `env.step(Action)`, so a human
trajectory has exactly the shape of a solver's or the LLM agent's. The actions
as the labeler gave them are kept (with the optional thought) as the lease's
draft: undo resets the episode and replays all but the last, and a restarted
server replays the whole draft.

`finish` judges the page and builds the Trajectory the way
`synth.episode.run_episode` does, for an episode driven step by step from the
outside rather than by a policy coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from synth.actions import to_aguvis
from synth.env import BrowserConfig, BrowserEnv, EpisodeError, StepLimitReached
from synth.episode import _describe, finish as finish_episode
from synth.schema import Action, Monologue, Observation, Task, Trajectory
from synth.sources import BrowserSource

log = logging.getLogger("synth.annotate")

SOURCE = "human"
MAX_THOUGHT = 2000
MAX_TEXT = 2000


async def finish(
    env: BrowserEnv,
    task: Task,
    *,
    source_detail: str,
    attempt: int = 0,
    run_id: str = "",
    started_at: float,
    t0: float,
    error: str | None = None,
    source: str = SOURCE,
) -> Trajectory:
    """Judge the open page, close the episode, return the Trajectory, exactly
    as `run_episode` ends a policy's episode."""
    return await finish_episode(
        env, task, source=source, source_detail=source_detail, started_at=started_at, t0=t0,
        attempt=attempt, run_id=run_id, error=error,
    )


class ActionError(ValueError):
    """The labeler's request is not a valid action; the message says why."""


_POINTER = {"click", "double_click", "right_click", "hover"}
_KEYS = {
    "Enter", "Tab", "Escape", "Backspace", "Delete", "Space", "ArrowUp", "ArrowDown", "ArrowLeft",
    "ArrowRight", "Home", "End", "PageUp", "PageDown",
}
_MODIFIERS = ("Control", "Shift", "Alt", "Meta")


def _fraction(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ActionError(f"{name} must be a number")
    if not 0 <= v <= 1:  # compared before float(): float(10**400) overflows
        raise ActionError(f"{name} must be a fraction of the screenshot in [0, 1]")
    return round(float(v), 4)


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > 40:
        raise ActionError("press needs a key")
    parts = key.split("+") if key != "+" else ["+"]
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if last and (p in _KEYS or len(p) == 1 or (p.startswith("F") and p[1:].isdigit() and 1 <= int(p[1:]) <= 12)):
            continue
        if not last and p in _MODIFIERS:
            continue
        raise ActionError(f"unknown key {key!r}")
    return key


def action_from_request(body: dict[str, Any]) -> Action:
    """The labeler's request as a canonical Action; only what the page offers
    is accepted (pointer actions by point, typing, keys, scroll, back, select)."""
    name = body.get("name")
    if name in _POINTER:
        return Action(name=name, x=_fraction(body.get("x"), "x"), y=_fraction(body.get("y"), "y"))
    if name == "type":
        text = body.get("text")
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            raise ActionError(f"type needs 1-{MAX_TEXT} characters of text")
        return Action(name="type", text=text)
    if name == "press":
        return Action(name="press", key=_key(body.get("key")))
    if name == "scroll":
        dy = body.get("dy", 0.0)
        dx = body.get("dx", 0.0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and -5 <= v <= 5 for v in (dx, dy)):
            raise ActionError("scroll needs dx/dy as fractions of the screen in [-5, 5]")
        extra = {}
        if body.get("x") is not None and body.get("y") is not None:
            extra = {"x": _fraction(body["x"], "x"), "y": _fraction(body["y"], "y")}
        return Action(name="scroll", dx=round(float(dx), 4), dy=round(float(dy), 4), **extra)
    if name == "select":
        text = body.get("text")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise ActionError("select needs the option's text")
        return Action(name="select", x=_fraction(body.get("x"), "x"), y=_fraction(body.get("y"), "y"), text=text)
    if name == "go_back":
        return Action(name="go_back")
    raise ActionError(f"unknown action {name!r}")


def clean_thought(thought: Any) -> str:
    if thought is None:
        return ""
    if not isinstance(thought, str):
        raise ActionError("thought must be text")
    return thought.strip()[:MAX_THOUGHT]


@dataclass
class LiveEpisode:
    """One labeler's open episode on one leased item."""

    item_id: int
    user_id: int
    labeler: str
    task: Task
    env: BrowserEnv
    draft: list[dict[str, Any]] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.perf_counter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    resets: int = 0
    broken: str | None = None
    site_done: bool = False
    """The site ended the episode itself (MiniWoB's own end of task): the
    labeler can only submit (or undo) now, since a further click would start
    a new episode on the same page."""

    @property
    def version(self) -> str:
        return f"{self.resets}-{len(self.env.steps)}"

    @property
    def obs(self) -> Observation | None:
        return self.env.obs

    def state(self) -> dict[str, Any]:
        """What the labeler page draws: instruction, steps so far, the
        elements (for hover outlines and select menus), never page HTML."""
        env, obs = self.env, self.env.obs
        steps = [
            {
                "index": s.index,
                "action": to_aguvis(s.action),
                "name": s.action.name,
                "thought": s.monologue.thought if s.monologue else "",
                "error": s.error,
                "element": (s.element.name or s.element.role)[:80] if s.element else "",
            }
            for s in env.steps
        ]
        elements = []
        if obs is not None:
            a = obs.area
            for el in obs.elements:
                if not el.in_view and el.role != "option":
                    continue
                x, y = (el.box.x - a.x) / a.width, (el.box.y - a.y) / a.height
                elements.append(
                    {
                        "id": el.id,
                        "parent": el.parent,
                        "tag": el.tag,
                        "role": el.role,
                        "name": el.name[:120],
                        "value": (el.value or "")[:120],
                        "box": [round(x, 4), round(y, 4), round(el.box.width / a.width, 4), round(el.box.height / a.height, 4)],
                    }
                )
                if len(elements) >= 600:
                    break
        return {
            "item_id": self.item_id,
            "template_id": self.task.template_id,
            "site": self.task.site,
            "instruction": env.instruction,
            "url": obs.url if obs else "",
            "area": {"width": obs.area.width, "height": obs.area.height} if obs else None,
            "version": self.version,
            "steps": steps,
            "max_steps": self.task.max_steps,
            "finished": env.finished,
            "done": self.site_done,
            "elements": elements,
            "last_error": env.steps[-1].error if env.steps else None,
            "broken": self.broken,
        }


class _ServerBrowser(BrowserSource):
    """The server's browser: a BrowserSource that is driven step by step by
    labelers instead of running whole tasks."""

    kind = SOURCE

    async def run(self, task: Task) -> Trajectory:  # pragma: no cover - not used as a pipeline source
        raise NotImplementedError("human episodes are driven by labelers through the annotation server")


class Recorder:
    """Open episodes by queue item, on one browser."""

    def __init__(
        self,
        browser: BrowserConfig | None = None,
        site_options: dict[str, dict[str, Any]] | None = None,
        max_episodes: int = 64,
        parallel: int = 4,
    ) -> None:
        browser = browser or BrowserConfig()
        # People wait for a step anyway; a loaded machine must not turn a slow
        # screenshot into a lost episode.
        browser = browser.model_copy(update={"action_timeout_ms": max(browser.action_timeout_ms, 20000)})
        self.source = _ServerBrowser(browser, site_options)
        self.episodes: dict[int, LiveEpisode] = {}
        self.max_episodes = max_episodes
        self._opening: dict[int, asyncio.Lock] = {}
        self._gate = asyncio.Semaphore(parallel)
        """At most `parallel` browser operations at once: twenty labelers
        pressing "next" together queue up instead of starving each other."""

    async def start(self) -> None:
        await self.source.setup()

    async def stop(self) -> None:
        for item_id in list(self.episodes):
            await self.close(item_id)
        await self.source.teardown()

    async def _replay(self, ep: LiveEpisode, draft: list[dict[str, Any]]) -> None:
        """Reset the episode and run `draft` again (undo, server restart)."""
        await ep.env.reset(ep.task)
        ep.resets += 1
        ep.draft = []
        ep.site_done = False
        for entry in draft:
            await ep.env.step(Action.model_validate(entry["action"]))
            if entry.get("thought"):
                ep.env.steps[-1].monologue = Monologue(thought=entry["thought"])
            ep.draft.append(entry)
        ep.site_done = await self._site_done(ep)

    @staticmethod
    async def _site_done(ep: LiveEpisode) -> bool:
        """Whether the site says its episode has ended (a page that cannot
        answer counts as not ended: the next step will tell)."""
        page = ep.env.page
        if page is None or ep.env.finished:
            return False
        try:
            return await ep.env.site.episode_done(page)
        except Exception as e:  # noqa: BLE001
            log.warning("episode_done failed", extra={"item": ep.item_id, "error": str(e)})
            return False

    async def open(self, item_id: int, user_id: int, labeler: str, task: Task, draft: list[dict[str, Any]]) -> LiveEpisode:
        """The labeler's episode for this item: the open one, or a new one
        with the saved draft replayed."""
        lock = self._opening.setdefault(item_id, asyncio.Lock())
        async with lock:
            ep = self.episodes.get(item_id)
            if ep is not None and ep.user_id == user_id and ep.broken is None:
                return ep
            if ep is not None:
                await self.close(item_id)
            if len(self.episodes) >= self.max_episodes:
                raise EpisodeError(f"the server has {self.max_episodes} open episodes; try again shortly")
            for attempt in range(2):  # one retry: a fresh page after a failed one
                env = await self.source.env(task)
                ep = LiveEpisode(item_id, user_id, labeler, task, env)
                try:
                    async with self._gate:
                        await self._replay(ep, draft)
                except Exception as e:  # noqa: BLE001
                    env.discard_page()
                    await env.close()
                    if attempt == 1:
                        raise
                    log.warning("opening episode failed, retrying", extra={"item": item_id, "error": str(e)})
                    continue
                self.episodes[item_id] = ep
                return ep
            raise AssertionError("unreachable")

    async def act(self, ep: LiveEpisode, action: Action, thought: str = "") -> None:
        """Run one action; the step is recorded by BrowserEnv. A dead page
        marks the episode broken (the next open replays the draft)."""
        async with ep.lock:
            if ep.env.finished:
                raise ActionError("the episode has ended; submit it")
            if ep.site_done:
                raise ActionError("the task is complete: submit it (or undo the last step)")
            try:
                async with self._gate:
                    await ep.env.step(action)
            except StepLimitReached as e:
                raise ActionError(f"{e}: undo a step or submit") from None
            except EpisodeError as e:
                ep.broken = str(e)
                ep.env.discard_page()
                raise
            if thought:
                ep.env.steps[-1].monologue = Monologue(thought=thought)
            ep.draft.append({"action": action.model_dump(exclude_none=True), "thought": thought})
            ep.site_done = await self._site_done(ep)

    async def undo(self, ep: LiveEpisode) -> None:
        async with ep.lock:
            if not ep.draft:
                raise ActionError("nothing to undo")
            async with self._gate:
                await self._replay(ep, ep.draft[:-1])

    async def submit(
        self, ep: LiveEpisode, answer: str | None, thought: str, attempt: int
    ) -> Trajectory:
        """Add the answer (if any) as the last step, judge, close the episode."""
        async with ep.lock:
            error = None
            if answer is not None and not ep.env.finished:
                try:
                    await ep.env.step(Action(name="answer", text=answer))
                    if thought:
                        ep.env.steps[-1].monologue = Monologue(thought=thought)
                except EpisodeError as e:
                    error = f"{SOURCE} {ep.labeler}: {_describe(e)}"
            self.episodes.pop(ep.item_id, None)
            self._opening.pop(ep.item_id, None)
            async with self._gate:
                return await finish(
                    ep.env, ep.task, source_detail=ep.labeler, attempt=attempt,
                    started_at=ep.started_at, t0=ep.t0, error=error,
                )

    async def close(self, item_id: int) -> None:
        ep = self.episodes.pop(item_id, None)
        self._opening.pop(item_id, None)
        if ep is not None:
            try:
                await ep.env.close()
            except Exception as e:  # noqa: BLE001 - closing a dead page must not stop the sweep
                log.warning("closing episode failed", extra={"item": item_id, "error": str(e)})

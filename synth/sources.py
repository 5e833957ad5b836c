"""Trajectory sources: a small lifecycle class each, nothing about Ray.

`setup()` once per worker (start Playwright, launch the browser, start the
sites), `run(task) -> Trajectory` for each task (several may run at once on one
browser, each in its own context), `teardown()` at the end. A Ray actor wraps a
source (synth.pipeline); tests and benchmarks use it directly.

Sources register by kind (`@register_source`), with the pipeline config section
they read (`sources.<kind>`). `selects(task)` says which planned tasks a source
takes; `unavailable(config)` names what is missing (an endpoint, a key) so the
pipeline can skip the source with one line instead of failing the run.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from playwright.async_api import Browser, Playwright, async_playwright

from synth.config import SourceConfig
from synth.env import BrowserConfig, BrowserEnv, PagePool, launch_browser
from synth.episode import abandon_after, run_episode
from synth.plugins import Registry
from synth.schema import Task, Trajectory
from synth.sites import SITES, Site, get_site

if TYPE_CHECKING:
    from synth.tasks import TaskList, TaskSet


class SourceExhausted(Exception):
    """Raised by `run` when the source must stop taking tasks (a spent budget).
    The task is not recorded; the pipeline stops feeding this source."""


class Source(ABC):
    kind: ClassVar[str]
    config_model: ClassVar[type[SourceConfig]] = SourceConfig
    """The pipeline section `sources.<kind>` of a plugin source is checked
    against this (a SourceConfig subclass with the source's own fields)."""

    @classmethod
    def typed_config(cls, config: SourceConfig | None) -> SourceConfig:
        """`config` as this source's `config_model` (a worker may be handed the
        base SourceConfig, or its fields as another model)."""
        if isinstance(config, cls.config_model):
            return config
        return cls.config_model.model_validate(config.model_dump() if config is not None else {})

    @classmethod
    def selects(cls, task: Task, config: SourceConfig) -> bool:
        """Whether this source should run `task`. Decided per template: the
        pipeline asks with one task of each template and runs all of its tasks
        or none."""
        return True

    @classmethod
    def unavailable(cls, config: SourceConfig) -> str | None:
        """Why this source cannot run with `config` (None: it can)."""
        return None

    @classmethod
    def plan(cls, config: SourceConfig, planned: "TaskSet") -> "TaskList | None":
        """Tasks this source plans itself (an exploration's walks), or None:
        it runs the planned tasks it `selects`."""
        return None

    episodes_per_run: ClassVar[int] = 1
    """Episodes `run` plays for one task, each within `episode_timeout_s`:
    the worker gives a run that many timeouts before it takes it for hung."""

    proposes: ClassVar[bool] = False
    """Its trajectories are recorded with tasks it proposed while running
    (their `task_config`), not with planned ones; `run_all` runs a task of
    its own plan and returns every trajectory it made."""

    @classmethod
    def planned(cls, task_id: str, template_id: str, seed: int) -> tuple[str, str, int]:
        """(task id, template id, seed) of the planned task a staged trajectory
        of this source was made for (resume skips those): its own task's,
        except for a source that proposes tasks."""
        return task_id, template_id, seed

    async def run_all(self, task: Task) -> list[Trajectory]:
        """Every trajectory one task of this source's plan makes (`proposes`)."""
        return [await self.run(task)]

    @abstractmethod
    async def setup(self) -> None: ...

    @abstractmethod
    async def run(self, task: Task) -> Trajectory: ...

    @abstractmethod
    async def teardown(self) -> None: ...

    generation: int = 0

    def detail(self, task: Task) -> str:
        """The `source_detail` this source records for `task` (solver, model, labeler)."""
        return task.solver or self.kind

    async def recover(self, generation: int | None = None) -> None:
        """Called after an episode was lost to infrastructure (a crash, a hang)."""


class BrowserSource(Source):
    """A source that owns one browser and a site object per site name."""

    def __init__(
        self,
        browser: BrowserConfig | None = None,
        site_options: dict[str, dict[str, Any]] | None = None,
        run_id: str = "",
        config: SourceConfig | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.cache_dir = cache_dir
        """A local folder for caches a source keeps between runs (the pipeline's
        `cache_dir`; may start with `~`, this node's home)."""
        self.browser_config = browser or BrowserConfig()
        self.site_options = site_options or {}
        self.run_id = run_id
        self.config = self.typed_config(config)
        self.episode_timeout_s = self.config.episode_timeout_s
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pages = PagePool()
        self._sites: dict[str, Site] = {}
        self._relaunch = asyncio.Lock()
        self._closing: set[asyncio.Future] = set()
        self.generation = 0
        """How many browsers this source has launched (see recover)."""

    async def setup(self) -> None:
        self._playwright = await async_playwright().start()
        self._browser = await launch_browser(self._playwright, self.browser_config)

    async def browser(self) -> Browser:
        """The worker's browser, relaunched if it died (a crashed Chromium
        costs the episodes that were on it, not the worker)."""
        async with self._relaunch:
            if self._browser is None or not self._browser.is_connected():
                # a new generation only for a browser that died unnoticed:
                # recover() counted the one it threw away already, and counting
                # twice would make the next recover(generation) of an episode
                # on this new browser a no-op (a retry on the same browser)
                died = self._browser is not None
                self._pages = PagePool()  # pages of a dead browser are gone
                if self._playwright is None:
                    await self.setup()
                else:
                    self._browser = await launch_browser(self._playwright, self.browser_config)
                if died:
                    self.generation += 1
            return self._browser

    replays: ClassVar[bool] = False
    """Whether this source's episodes verify recorded actions (replays, recovery
    variants): its sites then get their `replay_options` over the pipeline's,
    lifting limits that measure the machine rather than the trajectory."""

    def options_for(self, site: str) -> dict[str, Any]:
        """The keyword arguments the site named `site` is made with."""
        options = self.site_options.get(site, {})
        return {**options, **SITES[site].replay_options} if self.replays else options

    async def site(self, name: str) -> Site:
        if name not in self._sites:
            site = get_site(name, **self.options_for(name))
            await site.start()
            self._sites[name] = site
        return self._sites[name]

    async def env(self, task: Task) -> BrowserEnv:
        return BrowserEnv(await self.browser(), await self.site(task.site), self.browser_config, self._pages)

    async def responsive(self, within_s: float = 20.0) -> bool:
        """Whether the browser still answers: a context opened and closed
        within `within_s` (on a frozen browser, the probe is abandoned)."""
        browser = self._browser
        if browser is None or not browser.is_connected():
            return False

        async def probe() -> bool:
            context = await browser.new_context()
            await context.close()
            return True

        try:
            return await abandon_after(probe(), within_s) is True
        except Exception:  # noqa: BLE001 - a browser that errors does not answer
            return False

    async def recover(self, generation: int | None = None) -> None:
        """Throw the browser away (it crashed or hangs); the next episode
        launches a fresh one. With `generation` (read before the failed
        episode), only that browser: episodes that shared it fail together
        and must not each throw away the fresh one."""
        async with self._relaunch:
            if generation is not None and generation != self.generation:
                return
            browser, self._browser, self._pages = self._browser, None, PagePool()
            self.generation += 1
        if browser is not None:
            # Closing a frozen browser can hang and its cancellation too: do it
            # in the background, never waiting on it.
            closing = asyncio.ensure_future(browser.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def teardown(self) -> None:
        await self._pages.close()
        for site in self._sites.values():
            await site.stop()
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        self._browser = self._playwright = None


SOURCES: Registry[type[Source]] = Registry("source", "synth.sources")
"""Source kinds; a package adds one through a `synth.sources` entry point
(synth's own LLM agent, `bootstrap.source`, is declared that way)."""


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: register the source under its `kind`."""
    return SOURCES.register(cls.kind, cls)


def get_source(kind: str) -> type[Source]:
    return SOURCES[kind]


@register_source
class SolverSource(BrowserSource):
    """Programmatic solvers: the task's `solver` drives the episode."""

    kind = "solver"

    @classmethod
    def selects(cls, task: Task, config: SourceConfig) -> bool:
        return task.solver is not None

    async def run(self, task: Task) -> Trajectory:
        from synth.solver import get_solver

        if not task.solver:
            raise ValueError(f"task {task.task_id} ({task.template_id}) has no solver")
        return await run_episode(
            await self.env(task),
            task,
            get_solver(task.solver),
            source=self.kind,
            source_detail=task.solver,
            run_id=self.run_id,
            timeout_s=self.episode_timeout_s,
        )

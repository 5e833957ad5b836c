"""Trajectory sources: a small lifecycle class each, nothing about Ray.

`setup()` once per worker (start Playwright, launch the browser, start the
sites), `run(task) -> Trajectory` for each task (several may run at once on one
browser, each in its own context), `teardown()` at the end. A Ray actor wraps a
source (synth.pipeline); tests and benchmarks use it directly.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any

from playwright.async_api import Browser, Playwright, async_playwright

from synth.env import BrowserConfig, BrowserEnv, PagePool, launch_browser
from synth.episode import run_episode
from synth.schema import Task, Trajectory
from synth.sites import Site, get_site


class Source(ABC):
    kind: str

    @abstractmethod
    async def setup(self) -> None: ...

    @abstractmethod
    async def run(self, task: Task) -> Trajectory: ...

    @abstractmethod
    async def teardown(self) -> None: ...


class BrowserSource(Source):
    """A source that owns one browser and a site object per site name."""

    def __init__(
        self,
        browser: BrowserConfig | None = None,
        site_options: dict[str, dict[str, Any]] | None = None,
        run_id: str = "",
        episode_timeout_s: float = 120.0,
    ) -> None:
        self.browser_config = browser or BrowserConfig()
        self.site_options = site_options or {}
        self.run_id = run_id
        self.episode_timeout_s = episode_timeout_s
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._pages = PagePool()
        self._sites: dict[str, Site] = {}
        self._relaunch = asyncio.Lock()

    async def setup(self) -> None:
        self._playwright = await async_playwright().start()
        self._browser = await launch_browser(self._playwright, self.browser_config)

    async def browser(self) -> Browser:
        """The worker's browser, relaunched if it died (a crashed Chromium
        costs the episodes that were on it, not the worker)."""
        async with self._relaunch:
            if self._browser is None or not self._browser.is_connected():
                self._pages = PagePool()  # pages of a dead browser are gone
                if self._playwright is None:
                    await self.setup()
                else:
                    self._browser = await launch_browser(self._playwright, self.browser_config)
            return self._browser

    async def site(self, name: str) -> Site:
        if name not in self._sites:
            site = get_site(name, **self.site_options.get(name, {}))
            await site.start()
            self._sites[name] = site
        return self._sites[name]

    async def env(self, task: Task) -> BrowserEnv:
        return BrowserEnv(await self.browser(), await self.site(task.site), self.browser_config, self._pages)

    async def teardown(self) -> None:
        await self._pages.close()
        for site in self._sites.values():
            await site.stop()
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        self._browser = self._playwright = None


class SolverSource(BrowserSource):
    """Programmatic solvers: the task's `solver` drives the episode."""

    kind = "solver"

    async def run(self, task: Task) -> Trajectory:
        from solvers import get_solver

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

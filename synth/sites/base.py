"""The site contract, after BrowserGym's task API.

A site prepares a page for a task and reports what it knows about the
episode: `setup(page, task)` loads the start page and returns the goal (the
instruction) and the part of the page to observe; `state(page, task)` returns
the episode's state as JSON for `state_match` judges. Sites register by name in
`SITES` (`@register_site`); a package makes its site modules known through a
`synth.sites` entry point (see `synth.plugins`), as synth does for its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from playwright.async_api import Page

from synth.plugins import Registry
from synth.schema import Box, Task


@dataclass(frozen=True)
class Setup:
    instruction: str
    area: Box | None = None
    """The region to screenshot and normalise against; None means the viewport."""
    root: str | None = None
    """CSS selector of the part of the document to snapshot; None means the body."""


class Site(ABC):
    name: ClassVar[str]
    viewport: ClassVar[dict[str, int]] = {"width": 1280, "height": 720}
    reuse_page: ClassVar[bool] = False
    """True when an episode lives entirely in the page's JavaScript, so loading
    the start page again is a clean start: BrowserEnv may then keep one page
    per concurrent slot (cookies cleared, a new document each episode) instead
    of a fresh context, which costs a new renderer process and cold caches.
    Sites with server-side or stored state leave it False."""
    replay_options: ClassVar[dict[str, Any]] = {}
    """Options a verification replay gives the site over the pipeline's: a
    replay checks that the recorded actions reach the goal, so a limit that
    measures the machine's speed rather than the trajectory (a task timer
    that a busy machine's replay overruns) is lifted here."""

    async def start(self) -> None:
        """Start whatever the site needs in this process (servers). Idempotent."""

    async def stop(self) -> None:
        """Stop what start() started."""

    @abstractmethod
    async def setup(self, page: Page, task: Task) -> Setup:
        """Open the task's start page in `page` and return its goal."""

    async def teardown(self, page: Page) -> None:
        """The episode on `page` has ended (judged): free what setup() took
        for it. Called before its context closes."""

    async def state(self, page: Page, task: Task) -> dict[str, Any]:
        """The episode's state as JSON, for state_match judges."""
        raise NotImplementedError(f"site {self.name!r} has no state endpoint")

    async def episode_done(self, page: Page) -> bool:
        """True once the site itself ended the episode (a benchmark's own end
        of task): whoever drives the page by hand must stop acting then."""
        return False

    def outcome(self, state: Any) -> bool | None:
        """The site's own verdict on an ended episode from its `state()`,
        where the site has one (a benchmark's reward function); None when it
        has none. `synth judges eval` labels trajectories with it, and
        otherwise by comparing states with a reference run."""
        return None

    def describe(self, task: Task) -> str:
        return f"{self.name}:{task.template_id} seed {task.seed}"


SITES: Registry[type[Site]] = Registry("site", "synth.sites")


def register_site(cls: type[Site]) -> type[Site]:
    """Class decorator: register the site under its `name`."""
    return SITES.register(cls.name, cls)


def get_site(name: str, **options: Any) -> Site:
    """A new instance of the site registered as `name`."""
    return SITES[name](**options)

"""The site contract, after BrowserGym's task API.

A site prepares a page for a task and reports what it knows about the
episode: `setup(page, task)` loads the start page and returns the goal (the
instruction) and the part of the page to observe; `state(page, task)` returns
the episode's state as JSON for `state_match` judges. Sites register by name in
`SITES`; adding one is one module plus one `@register_site` line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from playwright.async_api import Page

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

    async def start(self) -> None:
        """Start whatever the site needs in this process (servers). Idempotent."""

    async def stop(self) -> None:
        """Stop what start() started."""

    @abstractmethod
    async def setup(self, page: Page, task: Task) -> Setup:
        """Open the task's start page in `page` and return its goal."""

    async def state(self, page: Page, task: Task) -> dict[str, Any]:
        """The episode's state as JSON, for state_match judges."""
        raise NotImplementedError(f"site {self.name!r} has no state endpoint")

    def describe(self, task: Task) -> str:
        return f"{self.name}:{task.template_id} seed {task.seed}"


SITES: dict[str, Callable[..., Site]] = {}


def register_site(cls: type[Site]) -> type[Site]:
    SITES[cls.name] = cls
    return cls


def get_site(name: str, **options: Any) -> Site:
    # Import the bundled sites so their registrations run.
    import synth.sites  # noqa: F401

    if name not in SITES:
        raise KeyError(f"unknown site {name!r}; known sites: {', '.join(sorted(SITES))}")
    return SITES[name](**options)
